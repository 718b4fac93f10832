#!/bin/sh
# Runs every test: vet, the race detector over all packages (the fuzz
# targets' seed corpora run as part of go test), and the multi-process and
# PAM tests, which build their own binaries. Each test binary has a
# timeout, so a hang fails instead of stalling.
set -eu
cd "$(dirname "$0")/.."
# The go command: the one make put first on PATH, else the same search
# make does (sudo's PATH has no /usr/local/go/bin); gofmt comes with it.
GO=$(scripts/find-go.sh) || exit 1
PATH=$(dirname "$GO"):$PATH
export PATH
echo "== go vet"
"$GO" vet ./...
echo "== gofmt"
bad=$(gofmt -l . | grep -v '^testdata/' || true)
if [ -n "$bad" ]; then echo "gofmt needed on: $bad" >&2; exit 1; fi
# As root the tools were installed by test-deps.sh: a missing one is a failure.
if [ "$(id -u)" -eq 0 ]; then export OTPGATE_REQUIRE_TOOLS=1; fi
echo "== go test -race"
# Verbose into a log, and on the terminal the package results, every
# failure and every skip with its reason (a normal user skips what needs
# root, and is told so here).
log=$(mktemp /tmp/otpgate-test.XXXXXX)
status=0
"$GO" test -race -count=1 -timeout 20m -v ./... >"$log" 2>&1 || status=$?
awk '
	/^(ok|FAIL|panic:)/ { print; buf = ""; next }
	/^=== / { buf = ""; next }
	/^ *--- (FAIL|SKIP)/ { print; printf "%s", buf; buf = ""; next }
	/^ *--- PASS/ { buf = ""; next }
	/^ +[A-Za-z0-9_]+_test\.go:[0-9]+: / { buf = buf $0 "\n" }
' "$log"
if [ "$status" -ne 0 ]; then
	echo "== tests FAILED (full log: $log)" >&2
	exit "$status"
fi
skips=$(grep -c -- '--- SKIP' "$log" || true)
rm -f "$log"
echo "== all tests passed ($skips skipped)"
