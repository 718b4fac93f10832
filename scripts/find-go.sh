#!/bin/sh
# Prints the path of a go command new enough for this module (go.mod's
# go line), found even where sudo has reset PATH (Debian's sudo
# secure_path has no /usr/local/go/bin). It looks, in order, at $GO when
# set, go on PATH, $GOROOT/bin/go, /usr/local/go/bin/go, the go of the
# user who ran sudo (~/sdk/go*/bin, ~/go/bin, ~/.local/go/bin), Debian's
# /usr/lib/go/bin/go and /usr/lib/go-1.*/bin/go, and /snap/bin/go. It
# prints $(go env GOROOT)/bin/go, so that gofmt next to it is the same
# release. A go older than go.mod asks for is used only when it can fetch
# the right toolchain itself (Go 1.21 or later with GOTOOLCHAIN not
# "local"). When there is none, it says what to install and exits 1.
#
# The Makefile and the scripts under scripts/ run it; a script sources
# nothing, it runs: GO=$(scripts/find-go.sh) || exit 1.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
need=$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$root/go.mod")

# ver_ge A B: version A >= version B (1.26.0 style).
ver_ge() {
	[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

home=""
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
	home=$(getent passwd "$SUDO_USER" | cut -d: -f6 || true)
fi

candidates() {
	[ -n "${GO:-}" ] && command -v "$GO" 2>/dev/null || true
	command -v go 2>/dev/null || true
	[ -n "${GOROOT:-}" ] && echo "$GOROOT/bin/go"
	echo /usr/local/go/bin/go
	if [ -n "$home" ]; then
		ls -d "$home"/sdk/go*/bin/go 2>/dev/null | sort -rV || true
		echo "$home/go/bin/go"
		echo "$home/.local/go/bin/go"
	fi
	echo /usr/lib/go/bin/go
	ls -d /usr/lib/go-1.*/bin/go 2>/dev/null | sort -rV || true
	echo /snap/bin/go
}

old=""    # the first go found, too old, for the message
switch="" # a too-old go that can fetch the right toolchain
for g in $(candidates); do
	[ -x "$g" ] || continue
	# Asked outside the module, so that this go reports its own release
	# rather than fetching the one go.mod names.
	v=$(cd / && "$g" env GOVERSION 2>/dev/null) || continue
	v=${v#go}
	v=${v%%[!0-9.]*}
	[ -n "$v" ] || continue
	if ver_ge "$v" "$need"; then
		r=$(cd / && "$g" env GOROOT 2>/dev/null) || r=""
		if [ -n "$r" ] && [ -x "$r/bin/go" ]; then
			echo "$r/bin/go"
		else
			echo "$g"
		fi
		exit 0
	fi
	[ -n "$old" ] || old="$g (go$v)"
	if [ -z "$switch" ] && ver_ge "$v" 1.21 && [ "$(cd / && "$g" env GOTOOLCHAIN)" != local ]; then
		switch=$g
	fi
done
if [ -n "$switch" ]; then
	echo "find-go: $switch is older than go$need; it will fetch go$need (GOTOOLCHAIN)" >&2
	echo "$switch"
	exit 0
fi
{
	if [ -n "$old" ]; then
		echo "otpgate: error: Go $need or later is needed; found only $old"
	else
		echo "otpgate: error: Go $need or later is needed and no go command was found"
		echo "  (looked on PATH, in \$GOROOT, /usr/local/go/bin, /usr/lib/go*/bin and /snap/bin)"
	fi
	arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
	echo "otpgate: hint: install Go $need or later from https://go.dev/dl/ into /usr/local/go:"
	echo "  rm -rf /usr/local/go && tar -C /usr/local -xzf go$need.linux-$arch.tar.gz"
	echo "  (apt's golang-go is too old: Go 1.19 in Debian 12, 1.24 in Debian 13);"
	echo "  a go elsewhere: make GO=/path/to/go"
} >&2
exit 1
