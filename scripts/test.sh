#!/bin/sh
# Runs every test: vet, the race detector over all packages (the fuzz
# targets' seed corpora run as part of go test), and the multi-process and
# PAM tests, which build their own binaries. Each test binary has a
# timeout, so a hang fails instead of stalling.
set -eu
cd "$(dirname "$0")/.."
echo "== go vet"
go vet ./...
echo "== gofmt"
bad=$(gofmt -l . | grep -v '^testdata/' || true)
if [ -n "$bad" ]; then echo "gofmt needed on: $bad" >&2; exit 1; fi
# As root the tools were installed by test-deps.sh: a missing one is a failure.
if [ "$(id -u)" -eq 0 ]; then export OTPGATE_REQUIRE_TOOLS=1; fi
echo "== go test -race"
go test -race -count=1 -timeout 20m ./...
echo "== all tests passed"
