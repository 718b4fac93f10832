package gaimport

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// MaxFileSize bounds what is read: a real file is a few hundred bytes.
const MaxFileSize = 64 << 10

// FileName is the file's name in a home directory.
const FileName = ".google_authenticator"

// Source is a file read by Open. Remove unlinks exactly the file that was
// read.
type Source struct {
	Path  string
	Data  []byte
	dirfd int
	file  *os.File // kept open until Close, so its inode cannot be reused by a replacement
	base  string
	dev   uint64
	ino   uint64
}

// Open reads the google-authenticator file at path for the account with
// uid. It refuses a symbolic link (the last component is opened with
// O_NOFOLLOW), anything but a regular file, a file not owned by uid, and
// one writable by group or others: the descriptor is checked with fstat,
// so the file checked is the file read. Close the Source when done.
func Open(path string, uid int) (*Source, error) {
	dir, base := filepath.Split(filepath.Clean(path))
	if dir == "" {
		dir = "."
	}
	if base == "" || base == "." || base == ".." || base == "/" {
		return nil, fmt.Errorf("%s is not a file name", path)
	}
	dirfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	s := &Source{Path: path, dirfd: dirfd, base: base}
	if err := s.read(uid); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Source) read(uid int) error {
	fd, err := unix.Openat(s.dirfd, s.base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return fmt.Errorf("%s is a symbolic link; refused (a link can point otpgate, running as root, at another user's file); replace it with the file itself", s.Path)
	}
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%s: %w", s.Path, os.ErrNotExist)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", s.Path, err)
	}
	f := os.NewFile(uintptr(fd), s.Path)
	s.file = f
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("%s: %w", s.Path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("%s is not a regular file; refused", s.Path)
	case int(st.Uid) != uid:
		return fmt.Errorf("%s is owned by uid %d, not by the user (uid %d); refused: check who wrote it, then chown it to the user", s.Path, st.Uid, uid)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("%s is writable by group or others; refused (anyone who could write it could have planted a secret); check its content, then run chmod go-w on it", s.Path)
	case st.Size > MaxFileSize:
		return fmt.Errorf("%s is %d bytes, over the %d of a google-authenticator file; refused", s.Path, st.Size, MaxFileSize)
	}
	s.dev, s.ino = st.Dev, st.Ino
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return fmt.Errorf("%s: %w", s.Path, err)
	}
	if len(data) > MaxFileSize {
		return fmt.Errorf("%s grew over %d bytes while read; refused", s.Path, MaxFileSize)
	}
	s.Data = data
	return nil
}

// Remove unlinks the file that was read, through the directory opened
// then, and only if the name still points at the same file.
func (s *Source) Remove() error {
	var st unix.Stat_t
	if err := unix.Fstatat(s.dirfd, s.base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("removing %s: %w", s.Path, err)
	}
	if st.Dev != s.dev || st.Ino != s.ino {
		return fmt.Errorf("%s was replaced after it was read; it was not removed", s.Path)
	}
	if err := unix.Unlinkat(s.dirfd, s.base, 0); err != nil {
		return fmt.Errorf("removing %s: %w", s.Path, err)
	}
	return nil
}

// Close releases the file and the directory Open kept for Remove.
func (s *Source) Close() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
	if s.dirfd >= 0 {
		unix.Close(s.dirfd)
		s.dirfd = -1
	}
}
