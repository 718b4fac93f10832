package verify

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/authlog"
	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

// secretB is the second authenticator's secret in these tests.
var secretB = []byte("abcdefghijklmnopqrstuvwxyz012345")

// addAuthenticator gives alice a second authenticator, labelled label.
func (f *fixture) addAuthenticator(label string, s []byte, p totp.Params) {
	f.t.Helper()
	l, err := f.v.Store.Lock("alice", time.Second)
	if err != nil {
		f.t.Fatal(err)
	}
	defer l.Unlock()
	u, err := l.ReadUser()
	if err != nil {
		f.t.Fatal(err)
	}
	u.Authenticators = append(u.Authenticators, keystore.Authenticator{Label: label, Secret: s, Params: p, Created: f.now})
	if err := l.WriteUser(u); err != nil {
		f.t.Fatal(err)
	}
}

func codeOf(t testing.TB, s []byte, step int64, p totp.Params) string {
	t.Helper()
	c, err := totp.CodeAt(s, uint64(step), p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTwoAuthenticators: codes of both authenticators are accepted, each
// once; replay is tracked per authenticator, so a code of A does not use
// up B's step (both apps show a code for the same step); the log line
// names the authenticator.
func TestTwoAuthenticators(t *testing.T) {
	f := newFixture(t, nil)
	var log bytes.Buffer
	f.v.Log = authlog.Dial(t.TempDir()+"/no-syslog", "otpgate", &log)
	f.addAuthenticator("phone", secretB, totp.Default)
	a := f.code(startStep)
	b := codeOf(t, secretB, startStep, totp.Default)
	if a == b {
		t.Fatal("the two secrets give the same code; pick another")
	}

	r := f.try(a)
	if r.Outcome != Accepted || r.Label != keystore.DefaultLabel {
		t.Fatalf("A's code: %+v", r)
	}
	if st := f.state(); st.LastStep(keystore.DefaultLabel) != startStep || st.LastStep("phone") != 0 {
		t.Errorf("after A's code: %+v; B's step must not move", st.LastSteps)
	}
	r = f.try(b)
	if r.Outcome != Accepted || r.Label != "phone" {
		t.Fatalf("B's code of the same step after A's: %+v", r)
	}
	for name, c := range map[string]string{"A": a, "B": b} {
		if r := f.try(c); r.Outcome != Denied || r.Reason != "replayed" {
			t.Errorf("%s's code again: %v %s, want denied/replayed", name, r.Outcome, r.Reason)
		}
	}
	if st := f.state(); st.LastStep(keystore.DefaultLabel) != startStep || st.LastStep("phone") != startStep || st.Failures != 2 {
		t.Errorf("state: %+v", st)
	}
	// A's next step is still good after B was used.
	if r := f.try(f.code(startStep + 1)); r.Outcome != Accepted || r.Label != keystore.DefaultLabel {
		t.Errorf("A's next code: %+v", r)
	}
	out := log.String()
	for _, want := range []string{"outcome=accepted method=totp authenticator=default", "outcome=accepted method=totp authenticator=phone"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "outcome=denied method") || strings.Contains(out, "reason=replayed failures=1 authenticator") {
		t.Errorf("a denial names an authenticator:\n%s", out)
	}
}

// TestRemoveOneAuthenticator: with one of two removed, the other keeps
// working, the removed one's codes are wrong, and its last step leaves the
// state at the next write.
func TestRemoveOneAuthenticator(t *testing.T) {
	f := newFixture(t, nil)
	f.addAuthenticator("phone", secretB, totp.Default)
	if r := f.try(codeOf(t, secretB, startStep, totp.Default)); r.Outcome != Accepted {
		t.Fatalf("B: %+v", r)
	}
	l, err := f.v.Store.Lock("alice", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := l.ReadUser()
	u.Authenticators = u.Authenticators[:1]
	if err := l.WriteUser(u); err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	if r := f.try(codeOf(t, secretB, startStep+1, totp.Default)); r.Outcome != Denied || r.Reason != "wrong-code" {
		t.Errorf("removed B's code: %v %s", r.Outcome, r.Reason)
	}
	if r := f.try(f.code(startStep + 1)); r.Outcome != Accepted || r.Label != keystore.DefaultLabel {
		t.Errorf("A after B's removal: %+v", r)
	}
	if st := f.state(); len(st.LastSteps) != 1 || st.LastStep(keystore.DefaultLabel) != startStep+1 {
		t.Errorf("state keeps a removed authenticator: %+v", st.LastSteps)
	}
}

// TestMixedDigits: a user with a 6-digit and an 8-digit authenticator has
// codes of both lengths accepted, each by its authenticator; an 8-digit
// input is then a code, never a scratch code.
func TestMixedDigits(t *testing.T) {
	f := newFixture(t, nil)
	p8 := totp.Params{Algorithm: "SHA256", Digits: 8, Period: 60}
	f.addAuthenticator("token", secretB, p8)
	step8 := totp.Step(f.now, 60)
	if r := f.try(codeOf(t, secretB, step8, p8)); r.Outcome != Accepted || r.Label != "token" {
		t.Fatalf("8-digit code: %+v", r)
	}
	if r := f.try(f.code(startStep)); r.Outcome != Accepted || r.Label != keystore.DefaultLabel {
		t.Fatalf("6-digit code: %+v", r)
	}
	if r := f.try("12345678"); r.Outcome != Denied || r.Reason != "wrong-code" {
		t.Errorf("a wrong 8-digit input: %v %s, want a wrong code", r.Outcome, r.Reason)
	}
	if k, _ := Classify("12345678", 6, 8); k != kindTOTP {
		t.Errorf("Classify(8 digits, 6 and 8) = %d, want a TOTP code", k)
	}
	if k, _ := Classify("123456", 8, 6); k != kindTOTP {
		t.Errorf("Classify(6 digits, 8 and 6) = %d, want a TOTP code", k)
	}
	if k, _ := Classify("1234567", 6, 8); k != kindWrong {
		t.Errorf("Classify(7 digits, 6 and 8) = %d, want wrong", k)
	}
	// A backup code still works for a user with several authenticators.
	if r := f.try(f.backups[0]); r.Outcome != Accepted || r.Method != "backup" || r.Label != "" {
		t.Errorf("backup code: %+v", r)
	}
}

// TestEveryWindowComputed: the TOTP work of an attempt does not depend on
// which authenticator (if any) matched: with A's code, B's code and a
// wrong code, every authenticator's window is computed. Counted through
// the code-computing hook the test installs.
func TestEveryWindowComputed(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.MaxFailures = 100 })
	f.addAuthenticator("b", secretB, totp.Default)
	f.addAuthenticator("c", []byte("ZYXWVUTSRQPONMLKJIHGFEDCBA"), totp.Default)
	var calls int
	matchHook = func() { calls++ }
	defer func() { matchHook = nil }()
	for name, c := range map[string]string{
		"A":     f.code(startStep),
		"B":     codeOf(t, secretB, startStep, totp.Default),
		"wrong": "000000",
		"A old": f.code(startStep),
	} {
		calls = 0
		f.try(c)
		if calls != 3 {
			t.Errorf("%s: %d windows computed, want 3", name, calls)
		}
	}
}

// TestOneCodeTwoAuthenticators: when a code matches two authenticators
// (here two with one secret, as two secrets that share a code for a step
// would), it is accepted once and uses up both steps: it cannot come back
// through the other.
func TestOneCodeTwoAuthenticators(t *testing.T) {
	f := newFixture(t, nil)
	f.addAuthenticator("copy", secret, totp.Default)
	c := f.code(startStep)
	if r := f.try(c); r.Outcome != Accepted || r.Label != keystore.DefaultLabel {
		t.Fatalf("first use: %+v", r)
	}
	if r := f.try(c); r.Outcome != Denied || r.Reason != "replayed" {
		t.Errorf("second use: %v %s, want denied/replayed", r.Outcome, r.Reason)
	}
	if st := f.state(); st.LastStep("copy") != startStep {
		t.Errorf("the other authenticator's step: %v", st.LastSteps)
	}
}

// TestVersion1Files: a store written by otpgate before several
// authenticators is used as it is: the version 1 user file is the
// authenticator "default", the version 1 state's last_step is its step
// (that code stays used). An attempt rewrites the state as version 2 and
// leaves the user file alone; a spent backup code rewrites the user file
// as version 2, with the same secret.
func TestVersion1Files(t *testing.T) {
	f := newFixture(t, nil)
	hash, err := backupcode.Hash("AAAAA11111")
	if err != nil {
		t.Fatal(err)
	}
	userV1 := fmt.Sprintf("version = 1\nsecret = %q\nalgorithm = \"SHA1\"\ndigits = 6\nperiod = 30\ncreated = 2025-01-01T00:00:00Z\nbackup_codes = [%q]\n",
		totp.EncodeSecret(secret), hash)
	stateV1 := fmt.Sprintf("version = 1\nfailures = 1\nlast_step = %d\n", startStep)
	for path, data := range map[string]string{f.v.Store.UserPath("alice"): userV1, f.v.Store.StatePath("alice"): stateV1} {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if r := f.try(f.code(startStep)); r.Outcome != Denied || r.Reason != "replayed" {
		t.Fatalf("the code of the version 1 last_step: %v %s, want replayed", r.Outcome, r.Reason)
	}
	if r := f.try(f.code(startStep + 1)); r.Outcome != Accepted || r.Label != keystore.DefaultLabel {
		t.Fatalf("the next code: %+v", r)
	}
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read(f.v.Store.UserPath("alice")); got != userV1 {
		t.Errorf("an attempt rewrote the version 1 user file:\n%s", got)
	}
	if got := read(f.v.Store.StatePath("alice")); !strings.HasPrefix(got, "version = 2\n") || len(got) != keystore.StateFileSize {
		t.Errorf("state after an attempt (%d bytes):\n%s", len(got), got)
	}
	if r := f.try("AAAAA-11111"); r.Outcome != Accepted || r.Method != "backup" {
		t.Fatalf("the version 1 backup code: %+v", r)
	}
	got := read(f.v.Store.UserPath("alice"))
	u, err := keystore.ParseUser([]byte(got))
	if err != nil || !strings.HasPrefix(got, "version = 2\n") || len(u.Authenticators) != 1 || string(u.Authenticators[0].Secret) != string(secret) || len(u.BackupHashes) != 0 {
		t.Errorf("user file after a spent backup code: %v\n%s", err, got)
	}
	if r := f.try(f.code(startStep + 1)); r.Outcome != Denied || r.Reason != "replayed" {
		t.Errorf("a used code after the rewrite: %v %s", r.Outcome, r.Reason)
	}
}

// BenchmarkVerifyTOTP8 is BenchmarkVerifyTOTP for a user with
// keystore.MaxAuthenticators authenticators: every window is computed.
func BenchmarkVerifyTOTP8(b *testing.B) {
	f := newFixture(b, func(c *config.Config) { c.MaxFailures = 100 })
	for i := 2; i <= keystore.MaxAuthenticators; i++ {
		f.addAuthenticator(fmt.Sprintf("a%d", i), secretB, totp.Default)
	}
	n := 0
	for b.Loop() {
		if r := f.try("000000"); r.Outcome != Denied {
			b.Fatalf("%v %v", r.Outcome, r.Err)
		}
		if n++; n%90 == 0 {
			b.StopTimer()
			l, err := f.v.Store.Lock("alice", time.Second)
			if err != nil {
				b.Fatal(err)
			}
			l.WriteState(keystore.State{})
			l.Unlock()
			b.StartTimer()
		}
	}
}
