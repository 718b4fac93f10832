package keystore

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/totp"
)

// Valid argon2id hashes in the exact form backupcode.Hash writes (of the
// codes ABCDE12345 and 0123456789), fixed so seeds and tests are stable.
const (
	testHash1 = "$argon2id$v=19$m=8192,t=2,p=1$FGQqI+l4pheonsPl0bYebg$mbEuFCkwYl2th5Kfn+tr+7UPdB79jwxPW+fWbZv0164"
	testHash2 = "$argon2id$v=19$m=8192,t=2,p=1$yN6aLYFEw98efbCkcfktYA$mtQDiXltYibqzeLFfRMRLrHTAkv087LZVvVmsR1sw88"
)

// testSecret is 160 bits, like the secrets otpgate makes.
var testSecret = []byte("12345678901234567890")

// foreignUID owns files in the root-only wrong-owner tests.
const foreignUID = 12345

func testUser() User {
	return User{
		Authenticators: []Authenticator{{
			Label:   DefaultLabel,
			Secret:  slices.Clone(testSecret),
			Params:  totp.Default,
			Created: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
		}},
		BackupHashes: []string{testHash1, testHash2},
	}
}

func testState() State {
	return State{
		Failures:    3,
		LockedUntil: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		LastSteps:   map[string]int64{DefaultLabel: 56789012},
		LastSuccess: time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC),
		LastFailure: time.Date(2024, 5, 6, 7, 8, 11, 0, time.UTC),
	}
}

func mustMarshalUser(t testing.TB, u User) []byte {
	t.Helper()
	data, err := MarshalUser(u)
	if err != nil {
		t.Fatalf("MarshalUser: %v", err)
	}
	return data
}

func mustMarshalState(t testing.TB, st State) []byte {
	t.Helper()
	data, err := MarshalState(st)
	if err != nil {
		t.Fatalf("MarshalState: %v", err)
	}
	return data
}

// newStore returns a store in a fresh directory that does not exist yet.
func newStore(t *testing.T) *Store {
	t.Helper()
	return New(filepath.Join(t.TempDir(), "store"))
}

// enrolledStore returns a store where alice has a user file, a state file
// and a lock file, none of them locked.
func enrolledStore(t *testing.T) *Store {
	t.Helper()
	s := newStore(t)
	l, err := s.Lock("alice", time.Second)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	defer l.Unlock()
	if err := l.WriteUser(testUser()); err != nil {
		t.Fatalf("WriteUser: %v", err)
	}
	if err := l.WriteState(testState()); err != nil {
		t.Fatalf("WriteState: %v", err)
	}
	return s
}

// outsideFile makes a file outside any store with the given content and
// mode, set with chmod so the umask does not matter.
func outsideFile(t *testing.T, content []byte, mode fs.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// snapshot records what is at a path without following a final symbolic
// link and without opening anything but a regular file (a FIFO must not
// be opened: that would block).
type snapshot struct {
	exists  bool
	mode    fs.FileMode
	uid     uint32
	nlink   uint64
	data    []byte   // regular files
	link    string   // symbolic links
	entries []string // directories
}

func snap(t *testing.T, path string) snapshot {
	t.Helper()
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return snapshot{}
	}
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	s := snapshot{exists: true, mode: fi.Mode(), uid: st.Uid, nlink: uint64(st.Nlink)}
	switch {
	case fi.Mode().IsRegular():
		if s.data, err = os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
	case fi.Mode()&fs.ModeSymlink != 0:
		if s.link, err = os.Readlink(path); err != nil {
			t.Fatal(err)
		}
	case fi.IsDir():
		ents, err := os.ReadDir(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			s.entries = append(s.entries, e.Name())
		}
	}
	return s
}

func (a snapshot) equal(b snapshot) bool {
	return a.exists == b.exists && a.mode == b.mode && a.uid == b.uid &&
		a.nlink == b.nlink && bytes.Equal(a.data, b.data) && a.link == b.link &&
		slices.Equal(a.entries, b.entries)
}

// checkUnchanged fails unless every path still looks as in before.
func checkUnchanged(t *testing.T, before map[string]snapshot) {
	t.Helper()
	for path, want := range before {
		if got := snap(t, path); !got.equal(want) {
			t.Errorf("%s changed:\n before %+v\n after  %+v", path, want, got)
		}
	}
}

// within runs f in a goroutine and fails the test when it has not
// returned after d: a FIFO or a lock must never make the store hang.
func within(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		t.Fatalf("%s did not return within %v", what, d)
		return nil
	}
}

// wantRefused fails unless err is an error that names path.
func wantRefused(t *testing.T, what string, err error, path string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: succeeded, want it refused", what)
		return
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("%s: error %q does not name %s", what, err, path)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root can make a file owned by another uid")
	}
}

func chmod(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func fileMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}
