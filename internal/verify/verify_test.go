package verify

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

var secret = []byte("12345678901234567890")

// start is the first second of step 59000000 (2026-02-01).
const startStep = 59000000

type fixture struct {
	t       testing.TB
	v       *Verifier
	now     time.Time
	backups []string
}

// newFixture enrolls alice with a known secret and three backup codes in a
// fresh store, with the clock pinned at the start of startStep.
func newFixture(t testing.TB, edit func(*config.Config)) *fixture {
	t.Helper()
	cfg := config.Default()
	cfg.Store = t.TempDir() + "/store"
	if edit != nil {
		edit(&cfg)
	}
	f := &fixture{t: t, now: time.Unix(startStep*30, 0), backups: []string{"AAAAA-11111", "BBBBB-22222", "CCCCC-33333"}}
	store := keystore.New(cfg.Store)
	f.v = &Verifier{Store: store, Config: cfg, Now: func() time.Time { return f.now }}
	u := keystore.User{Authenticators: []keystore.Authenticator{{Label: keystore.DefaultLabel, Secret: secret, Params: totp.Default, Created: f.now}}}
	for _, c := range f.backups {
		n, _ := backupcode.Normalize(c)
		h, err := backupcode.Hash(n)
		if err != nil {
			t.Fatal(err)
		}
		u.BackupHashes = append(u.BackupHashes, h)
	}
	l, err := store.Lock("alice", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if err := l.WriteUser(u); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) code(step int64) string {
	c, err := totp.CodeAt(secret, uint64(step), totp.Default)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fixture) try(code string) Result {
	return f.v.Verify(Request{User: "alice", Code: code, Service: "test"})
}

func (f *fixture) state() keystore.State {
	st, err := f.v.Store.ReadState("alice")
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

func TestWindow(t *testing.T) {
	for _, tc := range []struct {
		delta int64
		ok    bool
	}{{-2, false}, {-1, true}, {0, true}, {1, true}, {2, false}} {
		f := newFixture(t, nil)
		r := f.try(f.code(startStep + tc.delta))
		if (r.Outcome == Accepted) != tc.ok {
			t.Errorf("step %+d at window 1: %v (%s), want accepted=%v", tc.delta, r.Outcome, r.Reason, tc.ok)
		}
	}
	// The exact second boundaries of one step, window 0.
	for _, tc := range []struct {
		offset int64
		ok     bool
	}{{-1, false}, {0, true}, {29, true}, {30, false}, {31, false}} {
		f := newFixture(t, func(c *config.Config) { c.Window = 0 })
		f.now = time.Unix(startStep*30+tc.offset, 0)
		r := f.try(f.code(startStep))
		if (r.Outcome == Accepted) != tc.ok {
			t.Errorf("code of step T checked at T*30%+ds, window 0: %v, want accepted=%v", tc.offset, r.Outcome, tc.ok)
		}
	}
}

func TestReplay(t *testing.T) {
	f := newFixture(t, nil)
	if r := f.try(f.code(startStep)); r.Outcome != Accepted {
		t.Fatalf("first use: %v %s", r.Outcome, r.Reason)
	}
	if r := f.try(f.code(startStep)); r.Outcome != Denied || r.Reason != "replayed" {
		t.Errorf("second use: %v %s, want denied/replayed", r.Outcome, r.Reason)
	}
	// A code of step T-1 after step T was accepted.
	if r := f.try(f.code(startStep - 1)); r.Outcome != Denied {
		t.Errorf("older code after a newer one: %v", r.Outcome)
	}
	if r := f.try(f.code(startStep + 1)); r.Outcome != Accepted {
		t.Errorf("next step's code: %v %s", r.Outcome, r.Reason)
	}
	if st := f.state(); st.LastStep(keystore.DefaultLabel) != startStep+1 || st.Failures != 0 {
		t.Errorf("state after success: %+v", st)
	}
}

func TestLockout(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.MaxFailures = 3; c.LockDuration = time.Minute })
	for i := 1; i <= 3; i++ {
		r := f.try("000000")
		if r.Outcome != Denied || r.Failures != i {
			t.Fatalf("wrong code %d: %v failures=%d", i, r.Outcome, r.Failures)
		}
		if i == 3 && !r.LockedUntil.Equal(f.now.Add(time.Minute)) {
			t.Errorf("third failure did not lock: %v", r.LockedUntil)
		}
	}
	// Locked: the right code and a backup code are refused, and not counted.
	if r := f.try(f.code(startStep)); r.Outcome != Locked {
		t.Errorf("right code while locked: %v", r.Outcome)
	}
	if r := f.try(f.backups[0]); r.Outcome != Locked {
		t.Errorf("backup code while locked: %v", r.Outcome)
	}
	if st := f.state(); st.Failures != 3 {
		t.Errorf("failures while locked = %d, want 3", st.Failures)
	}
	f.now = f.now.Add(time.Minute)
	if r := f.try(f.code(startStep + 2)); r.Outcome != Accepted {
		t.Errorf("right code after the lock ran out: %v %s", r.Outcome, r.Reason)
	}
	// After the lock, a fresh run: one failure does not lock again.
	if r := f.try("000000"); r.Outcome != Denied || r.Failures != 1 || !r.LockedUntil.IsZero() {
		t.Errorf("failure after the lock: %+v", r)
	}
}

func TestBackupCodes(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.MaxFailures = 3 })
	for _, in := range []string{"bbbbb 22222", "AAAAA-11111"} {
		r := f.try(in)
		if r.Outcome != Accepted || r.Method != "backup" {
			t.Fatalf("backup %q: %v %s", in, r.Outcome, r.Reason)
		}
	}
	if r := f.try("AAAAA-11111"); r.Outcome != Denied {
		t.Errorf("used backup code again: %v", r.Outcome)
	}
	u, err := f.v.Store.ReadUser("alice")
	if err != nil || len(u.BackupHashes) != 1 {
		t.Fatalf("hashes left: %d, %v", len(u.BackupHashes), err)
	}
	// Wrong backup codes count against the same lockout.
	f.try("ZZZZZ-99999")
	r := f.try("ZZZZZ-99998")
	if r.Outcome != Denied || r.LockedUntil.IsZero() || r.Failures != 3 {
		t.Errorf("third failure (backup-shaped): %+v", r)
	}
}

func TestParallelGoroutines(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.MaxFailures = 100 })
	code := f.code(startStep)
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if f.try(code).Outcome == Accepted {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if accepted != 1 {
		t.Errorf("%d accepted, want exactly 1", accepted)
	}
}

func TestNotEnrolledAndInvalid(t *testing.T) {
	f := newFixture(t, nil)
	r := f.v.Verify(Request{User: "bob", Code: "123456"})
	if r.Outcome != NotEnrolled {
		t.Errorf("bob: %v", r.Outcome)
	}
	// No lock file for a name that is not enrolled.
	if _, err := f.v.Store.ReadState("bob"); err != nil {
		t.Error(err)
	}
	for _, u := range []string{"../alice", ".alice", "a/b", ""} {
		if r := f.v.Verify(Request{User: u, Code: "123456"}); r.Outcome != Denied || !errors.Is(r.Err, keystore.ErrInvalidUser) {
			t.Errorf("user %q: %v %v", u, r.Outcome, r.Err)
		}
	}
}

func TestBrokenStateFailsClosed(t *testing.T) {
	f := newFixture(t, nil)
	// Garbage in place of the state, as the owner, bypassing the store.
	path := f.v.Store.StatePath("alice")
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("failures = \"many\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := f.try(f.code(startStep))
	if r.Outcome != Failed || r.Err == nil || !strings.Contains(r.Err.Error(), f.v.Store.StatePath("alice")) {
		t.Errorf("broken state: %v %v", r.Outcome, r.Err)
	}
}

func TestClassify(t *testing.T) {
	for in, want := range map[string]int{
		"123456": kindTOTP, " 123456 ": kindTOTP, "12345678": kindBackup, "1234 5678": kindBackup, "12345": kindWrong, "123456789": kindWrong,
		"ABCDE-12345": kindBackup, "abcde12345": kindBackup, "1234567890": kindBackup,
		"": kindWrong, "12345a": kindWrong, "hunter2": kindWrong,
	} {
		if got, _ := Classify(in, 6); got != want {
			t.Errorf("Classify(%q) = %d, want %d", in, got, want)
		}
	}
	// For a user with 8-digit codes, 8 digits are a code, not a scratch code.
	if got, norm := Classify("12345678", 8); got != kindTOTP || norm != "12345678" {
		t.Errorf("Classify(12345678, 8) = %d %q, want a TOTP code", got, norm)
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"123456", "12345678", "ABCDE-12345", "abcde 12345", "", "\x00\xff", "OIL00-00000"} {
		f.Add(s, 6)
	}
	f.Fuzz(func(t *testing.T, in string, digits int) {
		kind, norm := Classify(in, digits)
		switch kind {
		case kindTOTP:
			if len(norm) != digits || strings.Trim(norm, "0123456789") != "" {
				t.Fatalf("TOTP %q from %q", norm, in)
			}
		case kindBackup:
			n, ok := backupcode.Normalize(norm)
			if !ok {
				n, ok = backupcode.NormalizeScratch(norm)
				ok = ok && digits != backupcode.ScratchLength
			}
			if !ok || n != norm {
				t.Fatalf("backup %q from %q", norm, in)
			}
		case kindWrong:
			if norm != "" {
				t.Fatalf("wrong input kept %q", norm)
			}
		}
	})
}

// BenchmarkVerifyTOTP is one wrong TOTP attempt end to end: lock, read both
// files, count and persist the attempt, check three steps, unlock.
func BenchmarkVerifyTOTP(b *testing.B) {
	f := newFixture(b, func(c *config.Config) { c.MaxFailures = 100 })
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
