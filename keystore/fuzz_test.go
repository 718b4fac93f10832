package keystore

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/totp"
)

func userSeeds(t testing.TB) [][]byte {
	full := mustMarshalUser(t, testUser())
	minimal := mustMarshalUser(t, User{Authenticators: []Authenticator{{Label: "m", Secret: testSecret, Params: totp.Params{Algorithm: "SHA512", Digits: 8, Period: 60}}}})
	two := testUser()
	two.Authenticators = append(two.Authenticators, Authenticator{Label: "phone-2.b_c", Secret: testSecret, Params: totp.Params{Algorithm: "SHA256", Digits: 8, Period: 60}})
	v1 := "version = 1\nsecret = \"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"\nalgorithm = \"SHA1\"\ndigits = 6\nperiod = 30\ncreated = 2024-05-06T07:08:09Z\nbackup_codes = [\"" + testHash1 + "\"]\n"
	return [][]byte{
		full,
		minimal,
		mustMarshalUser(t, two),
		[]byte(v1),
		[]byte(strings.Replace(v1, "version = 1", "version = 2", 1)),
		[]byte(v1 + "[[authenticator]]\nlabel = \"x\"\n"),
		[]byte(strings.Replace(string(full), `label = "default"`, `label = 'de"fault'`, 1)),
		[]byte(""),
		[]byte("version = 1\n"),
		[]byte("\x00\xff garbage ]["),
		[]byte(strings.Replace(string(full), "version = 2", "version = 1", 1)),
		[]byte(strings.Replace(string(full), "created = 2024-05-06T07:08:09Z", "created = 2024-05-06T09:08:09.5+02:00", 1)),
		[]byte(strings.Replace(string(full), "created = 2024-05-06T07:08:09Z", "created = 2024-05-06", 1)),
		[]byte(strings.Replace(string(full), "created = 2024-05-06T07:08:09Z", "created = 07:08:09", 1)),
		[]byte(strings.Replace(string(full), "created = 2024-05-06T07:08:09Z", "created = 9999-12-31T23:59:59-23:59", 1)),
		[]byte(strings.Replace(string(full), `secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"`, `secret = "gezd gnbv gy3t qojq gezd gnbv gy3t qojq==="`, 1)),
		[]byte(strings.Replace(string(full), `secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"`, `secret = 'GEZDGNBVGY3TQOJQ\nGEZDGNBVGY3TQOJQ'`, 1)),
		[]byte("version = 1\nsecret = \"\"\"\nGEZDGNBVGY3TQOJQ\r\nGEZDGNBVGY3TQOJQ\"\"\"\nalgorithm = \"SHA1\"\ndigits = 6\nperiod = 30\nbackup_codes = []\n"),
		[]byte("version = 1\nsecret = \"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"\nalgorithm = \"SHA1\"\ndigits = 6\nperiod = 30\n[x]\n"),
		[]byte("version = 2\nbackup_codes = []\n[[authenticator]]\nlabel = \"a\"\nsecret = \"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"\nalgorithm = \"SHA1\"\ndigits = 6\nperiod = 30\n[[authenticator]]\nlabel = \"b\"\nsecret = \"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"\nalgorithm = \"SHA512\"\ndigits = 8\nperiod = 60\n"),
	}
}

func stateSeeds(t testing.TB) [][]byte {
	full := mustMarshalState(t, testState())
	return [][]byte{
		full,
		mustMarshalState(t, State{}),
		mustMarshalState(t, State{Failures: 1 << 40, LastSteps: map[string]int64{"a": 1<<63 - 1, "b.c": 0, DefaultLabel: 5}}),
		[]byte("version = 1\nfailures = 2\nlast_step = 59000000\n"),
		[]byte("version = 2\nfailures = 0\n[[authenticator]]\nlabel = \"a\"\nlast_step = 1\n[[authenticator]]\nlabel = \"a\"\nlast_step = 2\n"),
		[]byte("version = 2\nfailures = 0\nlast_step = 1\n"),
		[]byte(""),
		[]byte("\x00\xff garbage ]["),
		[]byte("version = 1\nfailures = -1\nlast_step = 0\n"),
		[]byte("version = 1\nfailures = 0\nlast_step = 0\nlocked_until = 1979-05-27T00:32:00.999999-07:00\n"),
		[]byte("version = 1\nfailures = 0\nlast_step = 0\nlast_success = 1979-05-27\nlast_failure = 00:32:00\n"),
		[]byte("version = 1\nfailures = 0\nlast_step = 0\nlocked_until = 0001-01-01T00:00:00Z\n"),
		[]byte("version = 1\nfailures = 0\nlast_step = 0\nlocked_until = 9999-12-31T23:59:59-01:00\n"),
		[]byte("version = 1\nfailures = 9223372036854775807\nlast_step = 0\n"),
	}
}

// FuzzParseUser: ParseUser never panics, and what it accepts survives
// MarshalUser and ParseUser unchanged (a rewrite never loses or breaks a
// user's enrollment).
func FuzzParseUser(f *testing.F) {
	for _, s := range userSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := ParseUser(data)
		if err != nil {
			return
		}
		if n := len(u.Authenticators); n == 0 || n > MaxAuthenticators {
			t.Fatalf("accepted %d authenticators", n)
		}
		for _, a := range u.Authenticators {
			if len(a.Secret) < MinSecretBytes {
				t.Fatalf("accepted a %d-byte secret", len(a.Secret))
			}
			if err := a.Params.Check(); err != nil {
				t.Fatalf("accepted bad params: %v", err)
			}
			if err := ValidLabel(a.Label); err != nil {
				t.Fatalf("accepted a bad label: %v", err)
			}
		}
		out, err := MarshalUser(u)
		if err != nil {
			t.Fatalf("ParseUser accepted %q, MarshalUser refuses %+v: %v", data, u, err)
		}
		u2, err := ParseUser(out)
		if err != nil {
			t.Fatalf("ParseUser refuses what MarshalUser wrote: %v\n%s", err, out)
		}
		if !equalUser(u, u2) {
			t.Fatalf("round trip changed the user:\n %+v\n %+v", u, u2)
		}
		out2, err := MarshalUser(u2)
		if err != nil || string(out2) != string(out) {
			t.Fatalf("MarshalUser is not stable: %v\n%s\n%s", err, out, out2)
		}
	})
}

// FuzzParseState: like FuzzParseUser, for state files.
func FuzzParseState(f *testing.F) {
	for _, s := range stateSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseState(data)
		if err != nil {
			return
		}
		if st.Failures < 0 || len(st.LastSteps) > MaxAuthenticators || slices.ContainsFunc(slices.Collect(maps.Values(st.LastSteps)), func(s int64) bool { return s < 0 }) {
			t.Fatalf("accepted negative values: %+v", st)
		}
		out, err := MarshalState(st)
		if err != nil {
			t.Fatalf("ParseState accepted %q, MarshalState refuses %+v: %v", data, st, err)
		}
		st2, err := ParseState(out)
		if err != nil {
			t.Fatalf("ParseState refuses what MarshalState wrote: %v\n%s", err, out)
		}
		if !equalState(st, st2) {
			t.Fatalf("round trip changed the state:\n %+v\n %+v", st, st2)
		}
		for _, tm := range []time.Time{st.LockedUntil, st.LastSuccess, st.LastFailure} {
			if tm.Location() != time.UTC {
				t.Fatalf("time %v not in UTC", tm)
			}
		}
	})
}
