package keystore

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/totp"
)

func TestDecodeSecret(t *testing.T) {
	want := testSecret
	for _, s := range []string{
		"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
		"gezdgnbvgy3tqojqgezdgnbvgy3tqojq",
		"GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ",
		"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ====",
	} {
		got, err := DecodeSecret(s)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("DecodeSecret(%q) = %q, %v; want %q", s, got, err, want)
		}
	}
	for _, s := range []string{
		"",
		"GEZDGNBVGY3TQOJQGEZDGNBV",               // 120 bits
		"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ1",       // 1 is not base32
		"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQG",      // 33 characters: not whole bytes
		"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZ",    // 35
		"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGN", // 38: Go's decoder drops the last 6
		"GEZDGNBVGY3TQOJQ-GEZDGNBVGY3TQOJQ",
	} {
		if got, err := DecodeSecret(s); err == nil {
			t.Errorf("DecodeSecret(%q) = %q, want an error", s, got)
		} else if len(s) >= 16 && strings.Contains(err.Error(), s[:16]) {
			t.Errorf("DecodeSecret error %q quotes the secret", err)
		}
	}
	// Exactly 128 bits is enough.
	if got, err := DecodeSecret("GEZDGNBVGY3TQOJQGEZDGNBVGY"); err != nil || len(got) != MinSecretBytes {
		t.Errorf("DecodeSecret of 128 bits = %d bytes, %v", len(got), err)
	}
}

func TestMarshalUserRefuses(t *testing.T) {
	for name, u := range map[string]User{
		"short secret":    {Secret: make([]byte, MinSecretBytes-1), Params: totp.Default},
		"no secret":       {Params: totp.Default},
		"zero params":     {Secret: testSecret},
		"MD5":             {Secret: testSecret, Params: totp.Params{Algorithm: "MD5", Digits: 6, Period: 30}},
		"digits 7":        {Secret: testSecret, Params: totp.Params{Algorithm: "SHA1", Digits: 7, Period: 30}},
		"bad hash":        {Secret: testSecret, Params: totp.Default, BackupHashes: []string{"plaintext"}},
		"too many hashes": {Secret: testSecret, Params: totp.Default, BackupHashes: manyHashes(maxBackupCodes + 1)},
		"year 10000":      {Secret: testSecret, Params: totp.Default, Created: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if data, err := MarshalUser(u); err == nil {
			t.Errorf("%s: MarshalUser succeeded (%d bytes); ParseUser would refuse the file", name, len(data))
		}
	}
}

func TestMarshalStateRefuses(t *testing.T) {
	for name, st := range map[string]State{
		"negative failures":  {Failures: -1},
		"negative last step": {LastStep: -1},
		"year 10000":         {LockedUntil: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"year 0":             {LastFailure: time.Date(0, 6, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if data, err := MarshalState(st); err == nil {
			t.Errorf("%s: MarshalState succeeded; ParseState would refuse the file:\n%s", name, data)
		}
	}
}

func TestParseUserAllParams(t *testing.T) {
	for _, p := range []totp.Params{
		{Algorithm: "SHA1", Digits: 6, Period: 30},
		{Algorithm: "SHA256", Digits: 8, Period: 60},
		{Algorithm: "SHA512", Digits: 8, Period: totp.MinPeriod},
		{Algorithm: "SHA512", Digits: 6, Period: totp.MaxPeriod},
	} {
		u := User{Secret: bytes.Repeat([]byte{0xa5}, 64), Params: p, Created: time.Unix(1700000000, 0).UTC()}
		got, err := ParseUser(mustMarshalUser(t, u))
		if err != nil || !equalUser(got, u) {
			t.Errorf("%+v: round trip gave %+v, %v", p, got, err)
		}
	}
}

// A file without the optional keys parses, with zero values.
func TestParseMinimal(t *testing.T) {
	u, err := ParseUser([]byte("version = 1\nsecret = \"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"\nalgorithm = \"SHA1\"\ndigits = 6\nperiod = 30\n"))
	if err != nil {
		t.Fatalf("ParseUser: %v", err)
	}
	if !bytes.Equal(u.Secret, testSecret) || u.Params != totp.Default || !u.Created.IsZero() || len(u.BackupHashes) != 0 {
		t.Errorf("ParseUser = %+v", u)
	}
	st, err := ParseState([]byte("version = 1\nfailures = 0\nlast_step = 0\n"))
	if err != nil || st != (State{}) {
		t.Errorf("ParseState = %+v, %v", st, err)
	}
}

// Times are kept in UTC to the second, so a file rewritten after a read
// says the same thing.
func TestTimesNormalized(t *testing.T) {
	u, err := ParseUser([]byte("version = 1\nsecret = \"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"\nalgorithm = \"SHA1\"\ndigits = 6\nperiod = 30\ncreated = 2024-05-06T09:08:09.999+02:00\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC); !u.Created.Equal(want) {
		t.Errorf("Created = %v, want %v", u.Created, want)
	}
	st, err := ParseState([]byte("version = 1\nfailures = 0\nlast_step = 0\nlocked_until = 2030-01-01T00:00:00.5-01:00\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2030, 1, 1, 1, 0, 0, 0, time.UTC); !st.LockedUntil.Equal(want) {
		t.Errorf("LockedUntil = %v, want %v", st.LockedUntil, want)
	}
}

// Times a file cannot hold after a rewrite are refused when read.
func TestTimesOutOfRange(t *testing.T) {
	for _, c := range []string{
		"created = 9999-12-31T23:00:00-05:00", // year 10000 in UTC
		"created = 0001-01-01T00:00:00+01:00", // year 0 in UTC
	} {
		data := "version = 1\nsecret = \"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"\nalgorithm = \"SHA1\"\ndigits = 6\nperiod = 30\n" + c + "\n"
		if u, err := ParseUser([]byte(data)); err == nil {
			// Accepting is fine only if it survives a rewrite.
			out, err := MarshalUser(u)
			if err != nil {
				t.Errorf("%s: parsed, but MarshalUser fails: %v", c, err)
				continue
			}
			if _, err := ParseUser(out); err != nil {
				t.Errorf("%s: parsed, but the rewritten file does not: %v\n%s", c, err, out)
			}
		}
	}
}

func manyHashes(n int) []string {
	h := make([]string, n)
	for i := range h {
		h[i] = testHash1
	}
	return h
}

// TestStateFileSize: every state file is StateFileSize bytes, whatever it
// holds, so that the write of a success and of a failure (with or without
// a lock) are the same size and a file-size limit or a nearly full disk
// cannot fail one and not the other. The padding reads back as nothing.
func TestStateFileSize(t *testing.T) {
	big := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	for _, st := range []State{
		{},
		{Failures: 1, LastFailure: big},
		{Failures: 100, LockedUntil: big, LastFailure: big, LastSuccess: big, LastStep: math.MaxInt64},
		{LastStep: 59_999_999, LastSuccess: big},
	} {
		data, err := MarshalState(st)
		if err != nil {
			t.Fatalf("MarshalState(%+v): %v", st, err)
		}
		if len(data) != StateFileSize {
			t.Errorf("MarshalState(%+v) is %d bytes, want %d", st, len(data), StateFileSize)
		}
		back, err := ParseState(data)
		if err != nil || back != st {
			t.Errorf("ParseState(MarshalState(%+v)) = %+v, %v", st, back, err)
		}
	}
}
