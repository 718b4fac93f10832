#!/bin/sh
# A throwaway walk through otpgate on this machine: a store in a temporary
# directory, the user "demo" enrolled from a QR code in the terminal, then
# codes checked the way a login checks them. Nothing outside the temporary
# directory is touched; it is removed at the end.
set -eu
cd "$(dirname "$0")/.."
make -s go
dir=$(mktemp -d /tmp/otpgate-demo.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/config.toml" <<EOC
issuer = "otpgate-demo"
store = "$dir/store"
[lockout]
max_failures = 5
lock_duration = "1m"
EOC
otpgate() { ./bin/otpgate --config "$dir/config.toml" "$@"; }

echo "== Enrolling user 'demo' (store: $dir/store)"
otpgate enroll --user demo
echo "== Now type codes from the app (or a backup code); an empty line ends the demo."
echo "   Each code works once; five wrong ones lock 'demo' for a minute."
while printf 'code: ' && read -r code && [ -n "$code" ]; do
	echo "$code" | otpgate verify --user demo || true
	otpgate status --user demo | sed 's/^/   /'
done
