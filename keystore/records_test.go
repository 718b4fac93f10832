package keystore

import (
	"bytes"
	"fmt"
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
	one := func(a Authenticator, hashes ...string) User {
		if a.Label == "" {
			a.Label = DefaultLabel
		}
		return User{Authenticators: []Authenticator{a}, BackupHashes: hashes}
	}
	ok := Authenticator{Label: "ok", Secret: testSecret, Params: totp.Default}
	nine := make([]Authenticator, MaxAuthenticators+1)
	for i := range nine {
		nine[i] = ok
		nine[i].Label = fmt.Sprintf("a%d", i)
	}
	for name, u := range map[string]User{
		"short secret":     one(Authenticator{Secret: make([]byte, MinSecretBytes-1), Params: totp.Default}),
		"no secret":        one(Authenticator{Params: totp.Default}),
		"zero params":      one(Authenticator{Secret: testSecret}),
		"MD5":              one(Authenticator{Secret: testSecret, Params: totp.Params{Algorithm: "MD5", Digits: 6, Period: 30}}),
		"digits 7":         one(Authenticator{Secret: testSecret, Params: totp.Params{Algorithm: "SHA1", Digits: 7, Period: 30}}),
		"bad hash":         one(ok, "plaintext"),
		"too many hashes":  one(ok, manyHashes(maxBackupCodes+1)...),
		"year 10000":       one(Authenticator{Secret: testSecret, Params: totp.Default, Created: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}),
		"no authenticator": {},
		"nine":             {Authenticators: nine},
		"no label":         {Authenticators: []Authenticator{{Secret: testSecret, Params: totp.Default}}},
		"label with space": one(Authenticator{Label: "my phone", Secret: testSecret, Params: totp.Default}),
		"label 33":         one(Authenticator{Label: strings.Repeat("a", 33), Secret: testSecret, Params: totp.Default}),
		"label used twice": {Authenticators: []Authenticator{ok, ok}},
	} {
		if data, err := MarshalUser(u); err == nil {
			t.Errorf("%s: MarshalUser succeeded (%d bytes); ParseUser would refuse the file", name, len(data))
		}
	}
}

func TestMarshalStateRefuses(t *testing.T) {
	for name, st := range map[string]State{
		"negative failures":  {Failures: -1},
		"negative last step": {LastSteps: map[string]int64{"a": -1}},
		"bad label":          {LastSteps: map[string]int64{"a b": 1}},
		"nine last steps":    {LastSteps: map[string]int64{"1": 1, "2": 1, "3": 1, "4": 1, "5": 1, "6": 1, "7": 1, "8": 1, "9": 1}},
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
		u := User{Authenticators: []Authenticator{{Label: "x", Secret: bytes.Repeat([]byte{0xa5}, 64), Params: p, Created: time.Unix(1700000000, 0).UTC()}}}
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
	want := User{Authenticators: []Authenticator{{Label: DefaultLabel, Secret: testSecret, Params: totp.Default}}}
	if !equalUser(u, want) {
		t.Errorf("ParseUser = %+v", u)
	}
	st, err := ParseState([]byte("version = 1\nfailures = 0\nlast_step = 0\n"))
	if err != nil || !equalState(st, State{}) {
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
	if want := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC); !u.Authenticators[0].Created.Equal(want) {
		t.Errorf("Created = %v, want %v", u.Authenticators[0].Created, want)
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
	// The largest state: every authenticator, the longest labels, the
	// largest numbers and times.
	full := map[string]int64{}
	for i := range MaxAuthenticators {
		full[fmt.Sprintf("%d%s", i, strings.Repeat(".", MaxLabelLen-1))] = math.MaxInt64
	}
	for _, st := range []State{
		{},
		{Failures: 1, LastFailure: big},
		{Failures: 100, LockedUntil: big, LastFailure: big, LastSuccess: big, LastSteps: map[string]int64{DefaultLabel: math.MaxInt64}},
		{LastSteps: map[string]int64{DefaultLabel: 59_999_999}, LastSuccess: big},
		{Failures: math.MaxInt, LockedUntil: big, LastFailure: big, LastSuccess: big, LastSteps: full},
	} {
		data, err := MarshalState(st)
		if err != nil {
			t.Fatalf("MarshalState(%+v): %v", st, err)
		}
		if len(data) != StateFileSize {
			t.Errorf("MarshalState(%+v) is %d bytes, want %d", st, len(data), StateFileSize)
		}
		back, err := ParseState(data)
		if err != nil || !equalState(back, st) {
			t.Errorf("ParseState(MarshalState(%+v)) = %+v, %v", st, back, err)
		}
	}
}

// A version 1 user file is read as one authenticator labelled
// DefaultLabel, and a version 1 state file's last_step as that
// authenticator's; rewriting them makes version 2 files that say the same.
func TestReadVersion1(t *testing.T) {
	v1 := "version = 1\nsecret = \"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"\nalgorithm = \"SHA256\"\ndigits = 8\nperiod = 60\ncreated = 2024-05-06T07:08:09Z\nbackup_codes = [\"" + testHash1 + "\"]\n"
	u, err := ParseUser([]byte(v1))
	if err != nil {
		t.Fatal(err)
	}
	want := User{
		Authenticators: []Authenticator{{Label: DefaultLabel, Secret: testSecret, Params: totp.Params{Algorithm: "SHA256", Digits: 8, Period: 60}, Created: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)}},
		BackupHashes:   []string{testHash1},
	}
	if !equalUser(u, want) {
		t.Fatalf("ParseUser(v1) = %+v\nwant %+v", u, want)
	}
	out := mustMarshalUser(t, u)
	if !strings.HasPrefix(string(out), "version = 2\n") || !strings.Contains(string(out), `label = "default"`) {
		t.Errorf("rewritten v1 file:\n%s", out)
	}
	if back, err := ParseUser(out); err != nil || !equalUser(back, want) || back.Fingerprint() != u.Fingerprint() {
		t.Errorf("rewritten v1 file reads %+v, %v", back, err)
	}

	st, err := ParseState([]byte("version = 1\nfailures = 2\nlast_step = 59000000\nlast_success = 2026-01-01T00:00:00Z\n"))
	if err != nil {
		t.Fatal(err)
	}
	if st.LastStep(DefaultLabel) != 59000000 || st.Failures != 2 || len(st.LastSteps) != 1 {
		t.Errorf("ParseState(v1) = %+v", st)
	}
	back, err := ParseState(mustMarshalState(t, st))
	if err != nil || !equalState(back, st) {
		t.Errorf("rewritten v1 state reads %+v, %v", back, err)
	}
}

func TestValidLabel(t *testing.T) {
	for _, ok := range []string{"a", "default", "phone-2", "yubikey_5.nfc", strings.Repeat("Z", MaxLabelLen), "-", "..", "0"} {
		if err := ValidLabel(ok); err != nil {
			t.Errorf("ValidLabel(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("a", MaxLabelLen+1), "my phone", "a/b", "é", "a\nb", "a=b", `a"b`, "a\x00"} {
		err := ValidLabel(bad)
		if err == nil {
			t.Errorf("ValidLabel(%q) accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), "A-Z, a-z, 0-9") {
			t.Errorf("ValidLabel(%q) = %v: does not say what a label may hold", bad, err)
		}
	}
}

// The fingerprint changes with any authenticator: one added, removed,
// relabelled, or a secret replaced.
func TestFingerprintCoversEveryAuthenticator(t *testing.T) {
	u := testUser()
	two := testUser()
	two.Authenticators = append(two.Authenticators, Authenticator{Label: "b", Secret: testSecret, Params: totp.Default})
	relabel := testUser()
	relabel.Authenticators[0].Label = "other"
	secret := testUser()
	secret.Authenticators[0].Secret = []byte("abcdefghijklmnopqrst")
	twoB := testUser()
	twoB.Authenticators = append(twoB.Authenticators, Authenticator{Label: "b", Secret: []byte("abcdefghijklmnopqrst"), Params: totp.Default})
	seen := map[string]string{}
	for name, x := range map[string]User{"one": u, "two": two, "relabelled": relabel, "secret": secret, "second secret": twoB} {
		fp := x.Fingerprint()
		if other, dup := seen[fp]; dup {
			t.Errorf("%s and %s have the same fingerprint", name, other)
		}
		seen[fp] = name
	}
	spent := testUser()
	spent.BackupHashes = nil
	if spent.Fingerprint() != u.Fingerprint() {
		t.Error("spending a backup code changed the fingerprint")
	}
}
