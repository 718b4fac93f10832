#!/bin/sh
# Builds the image otpgate:latest (IMAGE= to name another) from
# contrib/docker/Dockerfile: what `make docker` runs. Run it as root, or as
# a user the Docker daemon accepts.
#
#  1. scripts/debian-base.sh: a Docker daemon (started when none answers)
#     and the base, debian:bookworm-slim or, where no registry answers,
#     otpgate-base:bookworm made with debootstrap.
#  2. otpgate's Debian package, built on this machine by `make deb` (the
#     image has no Go, and no Go image can be pulled everywhere), in a
#     copy of the working tree (build/docker/src).
#  3. docker build --network host (apt inside reaches this machine's
#     mirror), with the context build/docker/context: the package and the
#     few files the Dockerfile copies. Layers are cached by content:
#     rebuilding with no change in otpgate takes seconds.
set -eu
cd "$(dirname "$0")/../.."
image=${IMAGE:-otpgate:latest}
work=build/docker
ctx=$work/context

say() { echo "docker-build: $*" >&2; }

# One build at a time in build/docker (make docker and the test).
mkdir -p "$work"
exec 8>"$work/.lock"
flock 8

base=$(scripts/debian-base.sh)
say "base image: $base"

rm -rf "$ctx"
mkdir -p "$ctx/pkg" "$ctx/sshd_config.d"
cp contrib/docker/Dockerfile contrib/docker/entrypoint.sh "$ctx/"
cp contrib/sshd_config.d/otpgate-pam.conf "$ctx/sshd_config.d/"

# make deb in a copy of the working tree under build/docker/src: it
# rebuilds bin/ and build/ with the package's paths, and the tree's own
# stay as they are for the people and tests that use them. The same path
# every time, so that the C objects (which record it) come out identical.
# The version and maintainer are the tree's (the copy has no .git).
version=$({ [ -e .git ] && git -c safe.directory='*' describe --tags --always --dirty 2>/dev/null; } || head -n1 VERSION 2>/dev/null || echo devel)
maintainer=$(git -c safe.directory='*' log -1 --format='%an <%ae>' 2>/dev/null || echo 'otpgate <root@localhost>')
say "building the Debian package of otpgate $version (make deb, in $work/src)"
rm -rf "$work/src"
mkdir -p "$work/src"
git -c safe.directory='*' ls-files -co --exclude-standard |
	while IFS= read -r f; do [ -f "$f" ] && printf '%s\n' "$f"; done |
	tar -cf - -T - | tar -C "$work/src" -xf -
make -s -C "$work/src" deb VERSION="$version" DEB_MAINTAINER="$maintainer" >&2
set -- "$work"/src/dist/otpgate_*.deb
[ $# -eq 1 ] && [ -f "$1" ] || { say "error: make deb left no single dist/otpgate_*.deb in $work/src"; exit 1; }
say "package: $(basename "$1")"
cp "$1" "$ctx/pkg/otpgate.deb"

say "docker build -t $image (base $base)"
docker build --network host --build-arg BASE="$base" -t "$image" -f "$ctx/Dockerfile" "$ctx" >&2
say "built $image"
