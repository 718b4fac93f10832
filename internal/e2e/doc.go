// Package e2e holds otpgate's end-to-end tests (all in _test.go files): a
// real sshd, the OpenSSH client, sudo and su, driving pam_otpgate.so and
// otpgate-helper the way a login does. Loopback only: sshd listens on
// 127.0.0.1 and nothing else is contacted.
//
// They need root and sshd, ssh, sudo, su, oathtool, cc and go; without
// them each test skips and says why, unless OTPGATE_REQUIRE_TOOLS is set
// (scripts/test.sh sets it for root), and then it fails.
//
//	go test -count=1 -v ./internal/e2e/    # as root
//
// What they change on the machine, all removed when each test ends: users
// named otpe2e-XXXXXX (useradd, userdel -r), /etc/pam.d/sshd-otpe2e-XXXXXX
// and /etc/pam.d/sudo-otpe2e-XXXXXX, /etc/sudoers.d/otpe2e-XXXXXX, and
// /run/sshd (created if missing, left in place). /etc/pam.d/sshd,
// /etc/pam.d/sudo and /etc/pam.d/su are never written: sshd runs as a
// renamed copy (its PAM service is its program name), sudo gets
// pam_service= in its drop-in, and su runs in a private mount namespace
// with the test stack bind-mounted over /etc/pam.d/su (su's service name
// is fixed). A run killed half-way leaves its users and files behind; the
// next run removes those older than 30 minutes (sweepStale).
//
// Every ssh, sudo and su runs under a 30 s timeout in its own process
// group, killed as a whole when the time is up: a hang is a failure.
//
// Timing, on a 2-core machine: the whole package takes about 60 s when
// the machine is otherwise idle (57–61 s with -race, TestSSHCheck about
// 15 s of it), and up to twice that while other tests load both cores. About
// 2 s of it is building the module, the helper and otpgate. Most of the
// rest is pam_unix's 2 s delay after each wrong password and sshd's own
// failure delay; a successful ssh login takes 0.2–0.4 s, sudo or su 0.2 s,
// and the 20 parallel logins 2.5–5 s.
package e2e
