#!/bin/sh
# Benchmarks. First the Go benchmarks: one verification end to end (files,
# lock, TOTP) and one backup-code hash. Then, as root, internal/tools/pambench
# through real libpam (pamtester, the module and helper as make install
# lays them out): before and after, the working tree and a baseline git
# revision each against google-authenticator-libpam (the anchor), with a
# wrong code and with a right one, in the same run, as ratios; and the
# timing of the four answers without the code (unknown user, not enrolled,
# locked, wrong code), with the check that an unknown and a not-enrolled
# user see the same thing. The working tree runs in exec mode (mode=exec)
# and in daemon mode (mode=daemon, against an otpgate-helper --listen the
# bench starts from the same build; its CPU time is counted too), each as
# a ratio to google-authenticator-libpam. Then the daemon under load
# (internal/tools/daemonload over the socket): authentications per second
# on one user and on USERS users with CLIENTS connections at once, its
# RSS at rest and after 10,000 and 20,000 authentications, and one client
# at a time with the store on disk and on a tmpfs. It prints markdown
# snippets for docs/SECURITY.md and docs/PERFORMANCE.md. Then, as root,
# the PostgreSQL backend: internal/tools/execbench (the exec path of the
# files-only otpgate-helper next to otpgate-helper-pg, the driver linked:
# start-up and a whole attempt, the store on disk and on a tmpfs, and a
# postgres login through exec) and internal/tools/pgload (the daemon
# against a throwaway database next to the files backend, one user and
# USERS users, CLIENTS connections), and pgstore's BenchmarkVerify.
#
# Environment:
#   BASELINE=<git rev>  the "before" (default cedc831, the tree before the
#                       security work of issue 7); BASELINE= skips it. It is
#                       built in a temporary git worktree, removed after.
#   TIMING=<n>          samples of each answer (default 1000; 0 skips).
#   N=<n>               authentications of each kind per module for the
#                       ratios (default 300).
#   LOAD=<n>            authentications of each daemon load block (default
#                       5000: two rounds of one user and USERS users make
#                       20,000; 0 skips the load).
#   CLIENTS=<n>         connections at once in the load (default 16).
#   USERS=<n>           users of the many-users load (default 100).
#   PGLOAD=<n>          authentications of each block of the PostgreSQL
#                       daemon load (default 2000; 0 skips it and execbench).
set -eu
cd "$(dirname "$0")/.."
# The go command: the one make put first on PATH, else the same search
# make does (sudo's PATH has no /usr/local/go/bin); gofmt comes with it.
GO=$(scripts/find-go.sh) || exit 1
PATH=$(dirname "$GO"):$PATH
export PATH
go test -run=NONE -bench=. -benchmem -count=3 ./internal/verify/ ./internal/backupcode/
if [ "$(id -u)" -eq 0 ]; then
	go run ./internal/tools/pambench -n "${N:-300}" -timing "${TIMING:-1000}" -baseline "${BASELINE-cedc831}" \
		-load "${LOAD:-5000}" -clients "${CLIENTS:-16}" -users "${USERS:-100}"
	if [ "${PGLOAD:-2000}" -gt 0 ]; then
		go test -run=NONE -bench=. -benchmem -count=3 ./internal/pgstore/
		go run ./internal/tools/execbench -n 300
		if [ -d /dev/shm ]; then
			go run ./internal/tools/execbench -n 300 -postgres=false -store-in /dev/shm
		fi
		go run ./internal/tools/pgload -n "${PGLOAD:-2000}" -clients "${CLIENTS:-16}" -users "${USERS:-100}"
	fi
else
	echo "bench: not root, skipping the pamtester comparison and timing (they write to /etc/pam.d) and the PostgreSQL benchmarks (the cluster runs as postgres)" >&2
fi
