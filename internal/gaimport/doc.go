// Package gaimport reads a google-authenticator-libpam state file
// (~/.google_authenticator) so that otpgate can take the user over without
// a new scan: the secret, the step size, the window, the scratch codes.
//
// Open reads the file the way a root process must read a file in a user's
// home (the pam_oath CVE-2024-47191 lesson): the last path component is
// opened with O_NOFOLLOW, and the open descriptor, not the path, is
// checked: a regular file, owned by the user, not writable by group or
// others. Parse reads its content and refuses what otpgate cannot carry
// over (HOTP, a secret shorter than 128 bits, a step size out of range).
package gaimport
