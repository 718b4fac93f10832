package keystore

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/totp"
)

func TestEmptyStore(t *testing.T) {
	s := newStore(t)
	if _, err := s.ReadUser("alice"); !errors.Is(err, ErrNotEnrolled) {
		t.Errorf("ReadUser in a missing store: %v, want ErrNotEnrolled", err)
	}
	st, err := s.ReadState("alice")
	if err != nil || !equalState(st, State{}) {
		t.Errorf("ReadState in a missing store: %+v, %v; want the zero State", st, err)
	}
	users, err := s.Users()
	if err != nil || len(users) != 0 {
		t.Errorf("Users in a missing store: %q, %v; want none", users, err)
	}
	if _, err := os.Lstat(s.Dir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("reading created the store directory (%v); only Lock may", err)
	}
}

func TestRoundTrip(t *testing.T) {
	s := newStore(t)
	l, err := s.Lock("alice", time.Second)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	defer l.Unlock()
	if l.User() != "alice" {
		t.Errorf("User() = %q", l.User())
	}
	// Enrolled, but no state written yet.
	if _, err := l.ReadUser(); !errors.Is(err, ErrNotEnrolled) {
		t.Errorf("ReadUser before WriteUser: %v, want ErrNotEnrolled", err)
	}

	u := testUser()
	u.Authenticators[0].Created = time.Date(2024, 5, 6, 9, 8, 9, 123456789, time.FixedZone("x", 2*3600))
	if err := l.WriteUser(u); err != nil {
		t.Fatalf("WriteUser: %v", err)
	}
	if st, err := l.ReadState(); err != nil || !equalState(st, State{}) {
		t.Errorf("ReadState with no state file: %+v, %v; want the zero State", st, err)
	}
	st := testState()
	if err := l.WriteState(st); err != nil {
		t.Fatalf("WriteState: %v", err)
	}

	got, err := s.ReadUser("alice")
	if err != nil {
		t.Fatalf("ReadUser: %v", err)
	}
	want := testUser()
	want.Authenticators[0].Created = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC) // UTC, whole seconds
	if !equalUser(got, want) {
		t.Errorf("ReadUser = %+v\nwant %+v", got, want)
	}
	if got, err := l.ReadUser(); err != nil || !equalUser(got, want) {
		t.Errorf("Lock.ReadUser = %+v, %v", got, err)
	}
	gotSt, err := s.ReadState("alice")
	if err != nil {
		t.Fatalf("ReadState: %v", err)
	}
	if !equalState(gotSt, st) {
		t.Errorf("ReadState = %+v\nwant %+v", gotSt, st)
	}

	// A second write replaces the first.
	st.Failures, st.LockedUntil = 0, time.Time{}
	st.SetLastStep(DefaultLabel, st.LastStep(DefaultLabel)+1)
	if err := l.WriteState(st); err != nil {
		t.Fatalf("WriteState: %v", err)
	}
	if gotSt, err := l.ReadState(); err != nil || !equalState(gotSt, st) {
		t.Errorf("ReadState after rewrite = %+v, %v; want %+v", gotSt, err, st)
	}
	u2 := testUser()
	u2.BackupHashes = nil
	u2.Authenticators[0].Secret = []byte("abcdefghijklmnopqrstuvwxyz012345")
	u2.Authenticators = append(u2.Authenticators, Authenticator{Label: "phone.2", Secret: testSecret, Params: totp.Params{Algorithm: "SHA256", Digits: 8, Period: 60}})
	if err := l.WriteUser(u2); err != nil {
		t.Fatalf("WriteUser: %v", err)
	}
	if got, err := l.ReadUser(); err != nil || !equalUser(got, u2) {
		t.Errorf("ReadUser after rewrite = %+v, %v; want %+v", got, err, u2)
	}

	// Modes: directories 0700, files 0600, whatever the umask.
	for _, d := range []string{s.Dir(), filepath.Join(s.Dir(), "users"), filepath.Join(s.Dir(), "state"), filepath.Join(s.Dir(), "locks")} {
		if m := fileMode(t, d); m != fs.ModeDir|0o700 {
			t.Errorf("%s has mode %v, want drwx------", d, m)
		}
	}
	lockPath := filepath.Join(s.Dir(), "locks", "alice.lock")
	for _, f := range []string{s.UserPath("alice"), s.StatePath("alice"), lockPath} {
		if m := fileMode(t, f); m != 0o600 {
			t.Errorf("%s has mode %v, want -rw-------", f, m)
		}
	}
	if want := filepath.Join(s.Dir(), "users", "alice.toml"); s.UserPath("alice") != want {
		t.Errorf("UserPath = %s, want %s", s.UserPath("alice"), want)
	}
	if want := filepath.Join(s.Dir(), "state", "alice.toml"); s.StatePath("alice") != want {
		t.Errorf("StatePath = %s, want %s", s.StatePath("alice"), want)
	}
	// No temporary file is left behind.
	for _, d := range []string{"users", "state"} {
		if _, err := os.Lstat(filepath.Join(s.Dir(), d, ".alice.toml.tmp")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s/.alice.toml.tmp is left over (%v)", d, err)
		}
	}

	// Users lists enrolled users only, sorted, and skips other names.
	lb, err := s.Lock("bob", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := lb.WriteUser(testUser()); err != nil {
		t.Fatal(err)
	}
	lb.Unlock()
	lc, err := s.Lock("carol", time.Second) // state only: not enrolled
	if err != nil {
		t.Fatal(err)
	}
	if err := lc.WriteState(State{Failures: 1}); err != nil {
		t.Fatal(err)
	}
	lc.Unlock()
	for _, junk := range []string{".alice.toml.tmp", "notes.txt", ".hidden.toml"} {
		if err := os.WriteFile(filepath.Join(s.Dir(), "users", junk), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	users, err := s.Users()
	if err != nil {
		t.Fatalf("Users: %v", err)
	}
	if want := []string{"alice", "bob"}; !slices.Equal(users, want) {
		t.Errorf("Users = %q, want %q", users, want)
	}

	// RemoveUser removes the enrollment only: the state (with its failure
	// count) and the lock file stay.
	if err := l.RemoveUser(); err != nil {
		t.Fatalf("RemoveUser: %v", err)
	}
	if _, err := s.ReadUser("alice"); !errors.Is(err, ErrNotEnrolled) {
		t.Errorf("ReadUser after RemoveUser: %v, want ErrNotEnrolled", err)
	}
	if gotSt, err := s.ReadState("alice"); err != nil || !equalState(gotSt, st) {
		t.Errorf("ReadState after RemoveUser = %+v, %v; want %+v", gotSt, err, st)
	}
	if _, err := os.Lstat(lockPath); err != nil {
		t.Errorf("lock file gone after RemoveUser: %v", err)
	}
	if err := l.RemoveUser(); err != nil {
		t.Errorf("RemoveUser of a removed user: %v, want nil", err)
	}
	if users, err := s.Users(); err != nil || !slices.Equal(users, []string{"bob"}) {
		t.Errorf("Users after RemoveUser = %q, %v", users, err)
	}

	// Nothing is written after Unlock.
	l.Unlock()
	l.Unlock() // twice is harmless
	if err := l.WriteUser(testUser()); err == nil {
		t.Error("WriteUser after Unlock succeeded")
	}
	if err := l.WriteState(State{}); err == nil {
		t.Error("WriteState after Unlock succeeded")
	}
	if err := l.RemoveUser(); err == nil {
		t.Error("RemoveUser after Unlock succeeded")
	}
	if _, err := s.ReadUser("alice"); !errors.Is(err, ErrNotEnrolled) {
		t.Errorf("a write after Unlock changed the store: ReadUser = %v", err)
	}
}

func TestRemoveUserMissingStore(t *testing.T) {
	s := newStore(t)
	l, err := s.Lock("alice", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if err := l.RemoveUser(); err != nil {
		t.Errorf("RemoveUser with no users/ directory: %v", err)
	}
}

// A writer killed between creating its temporary file and the rename
// leaves .<user>.toml.tmp behind; the next write must clear it, whatever
// it is, without touching anything it points to.
func TestStaleTempFile(t *testing.T) {
	s := enrolledStore(t)
	outside := outsideFile(t, []byte("outside\n"), 0o644)
	before := map[string]snapshot{outside: snap(t, outside)}
	tmps := map[string]func(path string) error{
		"users": func(p string) error { return os.WriteFile(p, []byte("half a fi"), 0o600) },
		"state": func(p string) error { return os.Symlink(outside, p) },
	}
	for dir, mk := range tmps {
		if err := mk(filepath.Join(s.Dir(), dir, ".alice.toml.tmp")); err != nil {
			t.Fatal(err)
		}
	}
	// A stale temp file does not disturb reading.
	if _, err := s.ReadUser("alice"); err != nil {
		t.Errorf("ReadUser with a stale temp file: %v", err)
	}

	l, err := s.Lock("alice", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	u := testUser()
	u.BackupHashes = []string{testHash2}
	if err := l.WriteUser(u); err != nil {
		t.Fatalf("WriteUser over a stale temp file: %v", err)
	}
	st := State{Failures: 4, LastSteps: map[string]int64{DefaultLabel: 9}}
	if err := l.WriteState(st); err != nil {
		t.Fatalf("WriteState over a stale temp symlink: %v", err)
	}
	for dir := range tmps {
		if _, err := os.Lstat(filepath.Join(s.Dir(), dir, ".alice.toml.tmp")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s/.alice.toml.tmp still there after a write (%v)", dir, err)
		}
	}
	if got, err := s.ReadUser("alice"); err != nil || !equalUser(got, u) {
		t.Errorf("ReadUser = %+v, %v; want %+v", got, err, u)
	}
	if got, err := s.ReadState("alice"); err != nil || !equalState(got, st) {
		t.Errorf("ReadState = %+v, %v; want %+v", got, err, st)
	}
	checkUnchanged(t, before)
}

// Locking creates the store and its locks/ directory, mode 0700, under an
// existing parent, but never the parent itself.
func TestLockCreatesStore(t *testing.T) {
	parent := t.TempDir()
	s := New(filepath.Join(parent, "store"))
	l, err := s.Lock("alice", time.Second)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	l.Unlock()
	if m := fileMode(t, s.Dir()); m != fs.ModeDir|0o700 {
		t.Errorf("store has mode %v, want drwx------", m)
	}
	s2 := New(filepath.Join(parent, "missing", "store"))
	if _, err := s2.Lock("alice", time.Second); err == nil {
		t.Error("Lock made a store under a missing parent")
	}
	if _, err := os.Lstat(filepath.Join(parent, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lock created the missing parent (%v)", err)
	}
}

func equalUser(a, b User) bool {
	return slices.EqualFunc(a.Authenticators, b.Authenticators, func(a, b Authenticator) bool {
		return a.Label == b.Label && string(a.Secret) == string(b.Secret) && a.Params == b.Params && a.Created.Equal(b.Created)
	}) && slices.Equal(a.BackupHashes, b.BackupHashes)
}

func equalState(a, b State) bool {
	return a.Failures == b.Failures && maps.Equal(a.LastSteps, b.LastSteps) &&
		a.LockedUntil.Equal(b.LockedUntil) && a.LastSuccess.Equal(b.LastSuccess) &&
		a.LastFailure.Equal(b.LastFailure)
}

// A write that fails leaves the previous file as it was, and says which
// file it could not write.
func TestFailedWriteKeepsOld(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("needs a non-root user: root writes into a read-only directory anyway")
	}
	s := enrolledStore(t)
	l, err := s.Lock("alice", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	for _, d := range []string{"users", "state"} {
		dir := filepath.Join(s.Dir(), d)
		chmod(t, dir, 0o500)
		defer chmod(t, dir, 0o700)
	}
	before := map[string]snapshot{
		s.UserPath("alice"):  snap(t, s.UserPath("alice")),
		s.StatePath("alice"): snap(t, s.StatePath("alice")),
	}
	u := testUser()
	u.BackupHashes = nil
	wantRefused(t, "WriteUser into a read-only directory", l.WriteUser(u), s.UserPath("alice"))
	wantRefused(t, "WriteState into a read-only directory", l.WriteState(State{}), s.StatePath("alice"))
	checkUnchanged(t, before)
	if got, err := s.ReadUser("alice"); err != nil || !equalUser(got, testUser()) {
		t.Errorf("ReadUser after a failed write = %+v, %v", got, err)
	}
	if got, err := s.ReadState("alice"); err != nil || !equalState(got, testState()) {
		t.Errorf("ReadState after a failed write = %+v, %v", got, err)
	}
}

func TestEnrolled(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "store"))
	if ok, err := s.Enrolled("alice"); ok || err != nil {
		t.Fatalf("no store: %v %v", ok, err)
	}
	l, err := s.Lock("alice", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Enrolled("alice"); ok || err != nil {
		t.Fatalf("store without users/: %v %v", ok, err)
	}
	if err := l.WriteUser(testUser()); err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	if ok, err := s.Enrolled("alice"); !ok || err != nil {
		t.Fatalf("enrolled alice: %v %v", ok, err)
	}
	if ok, err := s.Enrolled("bob"); ok || err != nil {
		t.Fatalf("bob: %v %v", ok, err)
	}
	if _, err := s.Enrolled("../alice"); err != ErrInvalidUser {
		t.Fatalf("invalid name: %v", err)
	}
}
