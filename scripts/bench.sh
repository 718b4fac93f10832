#!/bin/sh
# Benchmarks: the cost of one verification (files, lock, TOTP) and of one
# backup-code hash. The comparison with google-authenticator-libpam
# through pamtester comes with the PAM module.
set -eu
cd "$(dirname "$0")/.."
go test -run=NONE -bench=. -benchmem -count=5 ./internal/verify/ ./internal/backupcode/
