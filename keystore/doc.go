// Package keystore keeps otpgate's per-user files: the secret (users/),
// the changing attempt state (state/) and the lock files (locks/) under one
// store directory, by default /var/lib/otpgate.
//
// Every path is opened from "/" one component at a time with O_NOFOLLOW, so
// a symbolic link anywhere in the path is refused rather than followed. The
// store directory and each of its parents must be owned by root or by the
// effective uid and must not be group- or world-writable; the one
// exception is a root-owned sticky directory such as /tmp above the store.
// Every file must be a regular file with one link, owned by the effective
// uid, without group or other permission bits, and at most MaxFileSize
// bytes.
//
// Writes go to a temporary file in the same directory (O_CREAT|O_EXCL|
// O_NOFOLLOW, mode 0600), are fsynced, renamed over the old file, and the
// directory is fsynced, so a crash leaves either the old or the new file.
// Writing is only possible through a held Lock, an flock on
// locks/<user>.lock, a file that is never renamed or removed.
package keystore
