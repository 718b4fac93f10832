#!/bin/sh
# Builds the image otpgate:latest (IMAGE= to name another) from
# contrib/docker/Dockerfile: what `make docker` runs. Run it as root, or as
# a user the Docker daemon accepts.
#
#  1. scripts/debian-base.sh: a Docker daemon (started when none answers)
#     and the base, debian:bookworm-slim or, where no registry answers,
#     otpgate-base:bookworm made with debootstrap.
#  2. otpgate's Debian package, built on this machine by `make deb` (the
#     image has no Go, and no Go image can be pulled everywhere).
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

# The package's name, from the Makefile's DEB_FILE (the version comes from
# git describe), so that a package someone else builds meanwhile is not
# taken for ours.
say "building the Debian package (make deb)"
make -s deb >&2
deb=$(printf 'print-deb-file:\n\t@echo $(DEB_FILE)\n' | make -s --no-print-directory -f Makefile -f - print-deb-file 2>/dev/null || true)
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
	arch=$(dpkg --print-architecture)
	deb=$(ls -t dist/otpgate_*_"$arch".deb 2>/dev/null | head -n 1)
fi
[ -n "$deb" ] && [ -f "$deb" ] || { say "error: make deb left no dist/otpgate_*.deb"; exit 1; }
say "package: $deb"
cp "$deb" "$ctx/pkg/otpgate.deb"

say "docker build -t $image (base $base)"
docker build --network host --build-arg BASE="$base" -t "$image" -f "$ctx/Dockerfile" "$ctx" >&2
say "built $image"
