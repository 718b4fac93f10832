package keystore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// MaxFileSize is the largest store file read, in bytes.
const MaxFileSize = 64 << 10

// owners says which owners and modes a walk accepts.
type owners struct {
	uid int // the effective uid: files must be owned by it
}

func (o owners) dirOK(st *unix.Stat_t) bool {
	return st.Uid == 0 || int(st.Uid) == o.uid
}

// openDir opens the absolute directory path for reading, walking from "/"
// with O_NOFOLLOW and checking every directory on the way. With create, a
// missing last component is made with mode 0700.
func (o owners) openDir(path string, create bool) (int, error) {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return -1, fmt.Errorf("%s is not a clean absolute path; use the full path, without .. or trailing /", path)
	}
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening /: %w", err)
	}
	if err := o.checkDir(fd, "/", true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	cur := ""
	for i, name := range parts {
		if name == "" {
			continue
		}
		cur += "/" + name
		last := i == len(parts)-1
		flags := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if last {
			flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		}
		next, err := unix.Openat(fd, name, flags, 0)
		if errors.Is(err, unix.ENOENT) && last && create {
			if err = unix.Mkdirat(fd, name, 0o700); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = unix.Openat(fd, name, flags, 0)
			}
		}
		if err != nil {
			err = dirError(fd, name, cur, err)
		}
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
		if err := o.checkDir(fd, cur, !last); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

// checkDir refuses a directory that someone other than root or the
// effective uid could change. A parent (not the store itself) may be a
// root-owned sticky directory such as /tmp.
func (o owners) checkDir(fd int, path string, parent bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !o.dirOK(&st) {
		return fmt.Errorf("%s is owned by uid %d; it must be owned by root (chown root:root %s)", path, st.Uid, path)
	}
	if st.Mode&0o022 != 0 {
		if parent && st.Uid == 0 && st.Mode&unix.S_ISVTX != 0 {
			return nil
		}
		return fmt.Errorf("%s is group- or world-writable; run chmod go-w %s", path, path)
	}
	return nil
}

// openSub opens (with create, makes) the subdirectory name of the store
// directory dirfd.
func (o owners) openSub(dirfd int, dirPath, name string, create bool) (int, error) {
	path := filepath.Join(dirPath, name)
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dirfd, name, flags, 0)
	if errors.Is(err, unix.ENOENT) && create {
		if err = unix.Mkdirat(dirfd, name, 0o700); err == nil || errors.Is(err, unix.EEXIST) {
			fd, err = unix.Openat(dirfd, name, flags, 0)
		}
		if err == nil {
			err = unix.Fsync(dirfd)
		}
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, dirError(dirfd, name, path, err)
	}
	if err := o.checkDir(fd, path, false); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// dirError is pathError for a directory name in dirfd. Opening a
// symbolic link with O_DIRECTORY|O_NOFOLLOW fails with ENOTDIR, not ELOOP;
// such a link must not be reported as "not a directory, remove it" (it
// may well be /var/lib on some hosts).
func dirError(dirfd int, name, path string, err error) error {
	var st unix.Stat_t
	if errors.Is(err, unix.ENOTDIR) && unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("%s is a symbolic link; otpgate never follows links in its store path, give the real directory instead", path)
	}
	return pathError(path, err)
}

// pathError turns an open error into a message that says what to do.
func pathError(path string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%s is a symbolic link; otpgate never follows links in its store, remove it", path)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s is not a directory; remove it", path)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%s: %w", path, os.ErrNotExist)
	}
	return fmt.Errorf("%s: %w%s", path, err, fix(err, filepath.Dir(path)))
}

// checkFile refuses anything but a regular file with one link, owned by
// the effective uid, with no group or other bits, of at most MaxFileSize.
func (o owners) checkFile(st *unix.Stat_t, path string) error {
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("%s is not a regular file; remove it", path)
	case st.Nlink != 1:
		return fmt.Errorf("%s has %d hard links; remove the extra links", path, st.Nlink)
	case int(st.Uid) != o.uid:
		return fmt.Errorf("%s is owned by uid %d, not %d; run chown %d %s", path, st.Uid, o.uid, o.uid, path)
	case st.Mode&0o077 != 0:
		return fmt.Errorf("%s has mode %04o; run chmod 600 %s", path, st.Mode&0o7777, path)
	case st.Size > MaxFileSize:
		return fmt.Errorf("%s is %d bytes, over the %d-byte limit; it is not an otpgate file", path, st.Size, MaxFileSize)
	}
	return nil
}

// readFile reads name in dirfd after checking it. A missing file is
// reported with os.ErrNotExist.
func (o owners) readFile(dirfd int, dirPath, name string) ([]byte, error) {
	path := filepath.Join(dirPath, name)
	// O_NONBLOCK: opening a FIFO must not wait for a writer.
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, pathError(path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := o.checkFile(&st, path); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s is over the %d-byte limit; it is not an otpgate file", path, MaxFileSize)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%s is empty; restore it from backup or remove it", path)
	}
	return data, nil
}

// checkTarget refuses to replace name in dirfd when it exists and is not a
// file readFile would accept: a link, FIFO or foreign file there is a sign
// of tampering that must be looked at, not silently overwritten.
func (o owners) checkTarget(dirfd int, dirPath, name string) error {
	path := filepath.Join(dirPath, name)
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("%s is a symbolic link; otpgate never follows links in its store, remove it", path)
	}
	return o.checkFile(&st, path)
}

// writeFile atomically replaces name in dirfd with data. The caller holds
// the user's lock, so the fixed temporary name cannot be in use by another
// writer; a leftover from a killed writer is removed first.
func (o owners) writeFile(dirfd int, dirPath, name string, data []byte) error {
	path := filepath.Join(dirPath, name)
	if err := o.checkTarget(dirfd, dirPath, name); err != nil {
		return err
	}
	tmp := "." + name + ".tmp"
	if err := unix.Unlinkat(dirfd, tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing stale %s: %w", filepath.Join(dirPath, tmp), err)
	}
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("writing %s: %w%s", path, err, fix(err, dirPath))
	}
	f := os.NewFile(uintptr(fd), tmp)
	err = unix.Fchmod(fd, 0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(dirfd, tmp, dirfd, name)
	}
	if err == nil {
		err = unix.Fsync(dirfd)
		if err != nil {
			// The rename happened; only its durability is in doubt.
			return fmt.Errorf("writing %s: syncing the directory: %w", path, err)
		}
		return nil
	}
	unix.Unlinkat(dirfd, tmp, 0)
	return fmt.Errorf("writing %s: %w; the previous file is unchanged%s", path, err, fix(err, dirPath))
}

// fix says what to do about an error the file system gave, where that is
// clear.
func fix(err error, dir string) string {
	switch {
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return "; free space on the file system that holds " + dir
	case errors.Is(err, unix.EROFS):
		return "; the file system that holds " + dir + " is read-only: remount it read-write"
	case errors.Is(err, unix.EFBIG):
		return "; a file-size limit (ulimit -f) stopped the write"
	}
	return ""
}

// removeFile removes name from dirfd, if it is there.
func (o owners) removeFile(dirfd int, dirPath, name string) error {
	path := filepath.Join(dirPath, name)
	if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return unix.Fsync(dirfd)
}
