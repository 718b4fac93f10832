package keystore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The subdirectories of a store.
const (
	usersDir = "users"
	stateDir = "state"
	locksDir = "locks"
)

// ErrNotEnrolled is returned when a user has no user file.
var ErrNotEnrolled = errors.New("not enrolled")

// ErrLockTimeout is returned when another attempt holds a user's lock for
// longer than the wait allowed.
var ErrLockTimeout = errors.New("timed out waiting for the user's lock")

// Store is a store directory. It holds no open files: every call walks the
// path again, so a store replaced underneath a long-running process is
// checked afresh.
type Store struct {
	dir string
	own owners
}

// New returns the store at dir, an absolute path, checked against the
// effective uid. Nothing is opened until a method is called.
func New(dir string) *Store {
	return &Store{dir: dir, own: owners{uid: os.Geteuid()}}
}

// Dir returns the store directory.
func (s *Store) Dir() string { return s.dir }

// UserPath returns the path of user's secret file.
func (s *Store) UserPath(user string) string {
	return filepath.Join(s.dir, usersDir, user+".toml")
}

// StatePath returns the path of user's state file.
func (s *Store) StatePath(user string) string {
	return filepath.Join(s.dir, stateDir, user+".toml")
}

// sub opens subdirectory name of the store. Without create, a missing
// store or subdirectory is os.ErrNotExist.
func (s *Store) sub(name string, create bool) (int, error) {
	top, err := s.own.openDir(s.dir, create)
	if err != nil {
		return -1, fmt.Errorf("keystore: %w", err)
	}
	defer unix.Close(top)
	fd, err := s.own.openSub(top, s.dir, name, create)
	if err != nil {
		return -1, fmt.Errorf("keystore: %w", err)
	}
	return fd, nil
}

func (s *Store) read(sub, user string) ([]byte, error) {
	if err := ValidUser(user); err != nil {
		return nil, err
	}
	fd, err := s.sub(sub, false)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	data, err := s.own.readFile(fd, filepath.Join(s.dir, sub), user+".toml")
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	return data, nil
}

// ReadUser reads user's enrollment. A user without a file is
// ErrNotEnrolled.
func (s *Store) ReadUser(user string) (User, error) {
	data, err := s.read(usersDir, user)
	if errors.Is(err, os.ErrNotExist) {
		return User{}, ErrNotEnrolled
	}
	if err != nil {
		return User{}, err
	}
	u, err := ParseUser(data)
	if err != nil {
		return User{}, fmt.Errorf("keystore: %s: %w; fix it or re-enroll the user with otpgate enroll --force", s.UserPath(user), err)
	}
	return u, nil
}

// Enrolled reports whether user has a user file, without reading or
// checking it (ReadUser does that): a cheap look before taking a lock.
func (s *Store) Enrolled(user string) (bool, error) {
	if err := ValidUser(user); err != nil {
		return false, err
	}
	fd, err := s.sub(usersDir, false)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	err = unix.Fstatat(fd, user+".toml", &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("keystore: %s: %w", s.UserPath(user), err)
	}
	return true, nil
}

// ReadState reads user's state. A missing file is the zero State.
func (s *Store) ReadState(user string) (State, error) {
	data, err := s.read(stateDir, user)
	if errors.Is(err, os.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, err
	}
	st, err := ParseState(data)
	if err != nil {
		return State{}, fmt.Errorf("keystore: %s: %w; run otpgate unlock --user %s to rewrite it", s.StatePath(user), err, user)
	}
	return st, nil
}

// Users lists the user names with a user file, sorted.
func (s *Store) Users() ([]string, error) {
	fd, err := s.sub(usersDir, false)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), filepath.Join(s.dir, usersDir))
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("keystore: listing %s: %w", f.Name(), err)
	}
	var users []string
	for _, n := range names {
		user, ok := strings.CutSuffix(n, ".toml")
		if ok && ValidUser(user) == nil {
			users = append(users, user)
		}
	}
	sort.Strings(users)
	return users, nil
}

// Lock is a held lock on one user's files; only a Lock can write them.
type Lock struct {
	s    *Store
	user string
	fd   int
}

// Lock takes the flock on locks/<user>.lock, creating the store and its
// subdirectories if needed, waiting at most wait for another holder.
func (s *Store) Lock(user string, wait time.Duration) (*Lock, error) {
	if err := ValidUser(user); err != nil {
		return nil, err
	}
	dir, err := s.sub(locksDir, true)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dir)
	path := filepath.Join(s.dir, locksDir, user+".lock")
	fd, err := unix.Openat(dir, user+".lock", unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", pathError(path, err))
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("keystore: %s: %w", path, err)
	}
	if err := s.own.checkFile(&st, path); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("keystore: %w", err)
	}
	deadline := time.Now().Add(wait)
	pause := time.Millisecond
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &Lock{s: s, user: user, fd: fd}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			unix.Close(fd)
			return nil, fmt.Errorf("keystore: locking %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			unix.Close(fd)
			return nil, fmt.Errorf("keystore: %s: %w", path, ErrLockTimeout)
		}
		time.Sleep(pause)
		if pause < 16*time.Millisecond {
			pause *= 2
		}
	}
}

// Unlock releases the lock. The lock file stays.
func (l *Lock) Unlock() {
	if l.fd >= 0 {
		unix.Close(l.fd) // closing the last descriptor drops the flock
		l.fd = -1
	}
}

// User returns the locked user's name.
func (l *Lock) User() string { return l.user }

// ReadUser reads the locked user's enrollment.
func (l *Lock) ReadUser() (User, error) { return l.s.ReadUser(l.user) }

// ReadState reads the locked user's state.
func (l *Lock) ReadState() (State, error) { return l.s.ReadState(l.user) }

func (l *Lock) write(sub string, data []byte) error {
	if l.fd < 0 {
		return errors.New("keystore: write after Unlock")
	}
	fd, err := l.s.sub(sub, true)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := l.s.own.writeFile(fd, filepath.Join(l.s.dir, sub), l.user+".toml", data); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	return nil
}

// WriteUser atomically replaces the locked user's enrollment.
func (l *Lock) WriteUser(u User) error {
	data, err := MarshalUser(u)
	if err != nil {
		return fmt.Errorf("keystore: %s: %w", l.s.UserPath(l.user), err)
	}
	return l.write(usersDir, data)
}

// WriteState atomically replaces the locked user's state.
func (l *Lock) WriteState(st State) error {
	data, err := MarshalState(st)
	if err != nil {
		return fmt.Errorf("keystore: %s: %w", l.s.StatePath(l.user), err)
	}
	return l.write(stateDir, data)
}

// RemoveUser removes the locked user's enrollment; the state stays, so the
// failure count survives a reset.
func (l *Lock) RemoveUser() error {
	if l.fd < 0 {
		return errors.New("keystore: remove after Unlock")
	}
	fd, err := l.s.sub(usersDir, false)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := l.s.own.removeFile(fd, filepath.Join(l.s.dir, usersDir), l.user+".toml"); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	return nil
}
