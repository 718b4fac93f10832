#!/bin/sh
# Makes sure a Docker daemon answers and a Debian 12 (bookworm) base image
# is there, then prints the name of that image on standard output, for
# `docker build --build-arg BASE=...`:
#
#     base=$(scripts/debian-base.sh)          # debian:bookworm-slim, or the local one
#     scripts/debian-base.sh --dockerd        # only the daemon
#
# 1. The daemon: when `docker info` fails and we are root, it starts
#    `dockerd --bridge=none --iptables=false` in the background (log in
#    /var/log/otpgate-dockerd.log) and waits up to 60 s for it. No bridge
#    and no iptables work on hosts that allow neither; containers then use
#    --network none or --network host, and builds need --network host.
# 2. The base: $OTPGATE_BASE_IMAGE (default debian:bookworm-slim) when it
#    is there or can be pulled; otherwise otpgate-base:bookworm, made once
#    with debootstrap (--variant=minbase, trimmed like the slim image) from
#    the Debian mirror this machine's apt uses (/etc/apt/sources.list and
#    sources.list.d), imported with `docker import`. Its apt sources name
#    that same mirror, so apt-get inside a build (--network host) reaches
#    it. The local image is kept: later runs take seconds.
#
# Needs root for dockerd and debootstrap (installed here when missing).
# Exit status: 0 with the image name printed, 1 when no daemon or base
# could be had (the reason on stderr).
set -eu

want=${OTPGATE_BASE_IMAGE:-debian:bookworm-slim}
local_tag=otpgate-base:bookworm
suite=bookworm
log=/var/log/otpgate-dockerd.log

say() { echo "debian-base: $*" >&2; }
die() { say "error: $*"; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

apt_install() {
	is_root || die "$1 is missing; install it (apt-get install $1) or run as root"
	say "installing $1"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}

ensure_dockerd() {
	command -v docker >/dev/null 2>&1 || apt_install docker.io
	docker info >/dev/null 2>&1 && return 0
	is_root || die "no Docker daemon answers (docker info fails) and only root can start one"
	if ! command -v dockerd >/dev/null 2>&1 && [ ! -x /usr/sbin/dockerd ]; then
		apt_install docker.io
	fi
	dockerd=$(command -v dockerd || echo /usr/sbin/dockerd)
	say "no Docker daemon answers; starting $dockerd --bridge=none --iptables=false (log: $log)"
	# Its own session, so that it outlives this script and its caller's
	# process group.
	setsid "$dockerd" --bridge=none --iptables=false >>"$log" 2>&1 </dev/null &
	i=0
	while ! docker info >/dev/null 2>&1; do
		i=$((i + 1))
		[ "$i" -le 60 ] || die "dockerd did not answer within 60 s; see $log"
		sleep 1
	done
}

# mirror SUITE prints the first URI of a "deb" source for SUITE in this
# machine's apt sources (one-line and deb822 formats).
mirror() {
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		# deb [options] URI SUITE COMPONENTS...
		sed -e 's/\[[^]]*\]//' "$f" | awk -v s="$1" '$1 == "deb" && $3 == s { print $2; exit }'
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v s="$1" '
			function flush() { if (deb && suite && uri != "") { print uri; found = 1; exit } deb = suite = 0; uri = "" }
			/^[ \t]*$/ { flush(); next }
			/^Types:/ { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
			/^URIs:/ { uri = $2 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) suite = 1 }
			END { if (!found) flush() }
		' "$f"
	done
}

make_base() {
	is_root || die "$want cannot be pulled and building $local_tag with debootstrap needs root"
	command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
	main=$(mirror "$suite" | head -n 1)
	security=$(mirror "$suite-security" | head -n 1)
	main=${main:-http://deb.debian.org/debian}
	security=${security:-http://deb.debian.org/debian-security}
	keyring=/usr/share/keyrings/debian-archive-keyring.gpg
	[ -f "$keyring" ] || apt_install debian-archive-keyring
	root=$(mktemp -d /var/tmp/otpgate-debian-base.XXXXXX)
	# shellcheck disable=SC2064
	trap "rm -rf '$root'" EXIT INT TERM
	say "building $local_tag with debootstrap from $main (a minute or two, once)"
	debootstrap --variant=minbase --keyring="$keyring" "$suite" "$root" "$main" >"$root.log" 2>&1 ||
		{ tail -n 20 "$root.log" >&2; rm -f "$root.log"; die "debootstrap failed"; }
	rm -f "$root.log"
	# What the official slim image does: no documentation, manual pages or
	# translations from later installs, no apt caches, no daemons started
	# by package scripts during a build.
	cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<-'EOF'
		path-exclude /usr/share/doc/*
		path-include /usr/share/doc/*/copyright
		path-exclude /usr/share/man/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/locale/*
		path-include /usr/share/locale/locale.alias
	EOF
	cat >"$root/etc/apt/apt.conf.d/docker-clean" <<-'EOF'
		DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		Dir::Cache::pkgcache "";
		Dir::Cache::srcpkgcache "";
	EOF
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 0755 "$root/usr/sbin/policy-rc.d"
	rm -f "$root/etc/apt/sources.list"
	cat >"$root/etc/apt/sources.list.d/debian.sources" <<-EOF
		Types: deb
		URIs: $main
		Suites: $suite $suite-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

		Types: deb
		URIs: $security
		Suites: $suite-security
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
	find "$root/usr/share/doc" ! -type d ! -name copyright -delete
	rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* \
		"$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
		"$root"/var/log/* "$root"/tmp/* "$root"/dev/*
	: >"$root/etc/hostname"
	# Every file owned by root, as it is in the tree; the mtime is the
	# import's, so the layer differs between machines but not its content.
	tar --numeric-owner -C "$root" -c . |
		docker import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			--message "debootstrap --variant=minbase $suite $main" - "$local_tag" >/dev/null
	rm -rf "$root"
	trap - EXIT INT TERM
	say "made $local_tag"
}

ensure_dockerd
[ "${1:-}" = "--dockerd" ] && exit 0

if docker image inspect "$want" >/dev/null 2>&1; then
	echo "$want"
	exit 0
fi
if docker image inspect "$local_tag" >/dev/null 2>&1; then
	echo "$local_tag"
	exit 0
fi
say "trying docker pull $want"
if timeout 60 docker pull -q "$want" >/dev/null 2>&1; then
	echo "$want"
	exit 0
fi
say "cannot pull $want (no registry reachable)"
is_root || die "$want cannot be pulled and building $local_tag with debootstrap needs root"
# One build at a time, for callers that run in parallel (make docker and
# a test, or two engineers' tests).
exec 9>/var/lock/otpgate-debian-base.lock
flock 9
docker image inspect "$local_tag" >/dev/null 2>&1 || make_base
echo "$local_tag"
