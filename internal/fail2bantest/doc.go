// Package fail2bantest holds the test of contrib/fail2ban against lines a
// real otpgate-helper wrote: it starts the daemon (otpgate-helper --listen)
// twice, once logging to a syslog socket of the test's own and once to
// standard error (a host without syslog), drives attempts at it (right,
// wrong, replayed and locked codes, hostile user names, services and
// remote hosts, self-mode requests from a normal user), renders the lines
// as /var/log/auth.log and the journal show them, and checks with
// fail2ban-regex exactly which lines the filter matches and which host it
// takes from each. It needs root (the daemon and a private mount
// namespace for /dev/log) and fail2ban; it has no non-test code.
package fail2bantest
