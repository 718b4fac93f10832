#!/bin/sh
# Benchmarks. First the Go benchmarks: one verification end to end (files,
# lock, TOTP) and one backup-code hash. Then, as root, pamtester through
# pam_otpgate against the same through google-authenticator-libpam (the
# anchor), in the same run, printed as ratios.
set -eu
cd "$(dirname "$0")/.."
go test -run=NONE -bench=. -benchmem -count=3 ./internal/verify/ ./internal/backupcode/
if [ "$(id -u)" -eq 0 ]; then
	go run ./internal/tools/pambench -n 100
else
	echo "bench: not root, skipping the pamtester comparison (it writes to /etc/pam.d)" >&2
fi
