#!/bin/sh
# Installs the Debian packages the tests use, when run as root and any is
# missing. As a normal user it only says which are missing; the tests that
# need them then skip and say so.
set -eu
pkgs="gcc libc6-dev make libpam0g-dev openssh-server openssh-client sudo pamtester oathtool zbar-tools libpam-google-authenticator git fail2ban lintian debootstrap man-db docker.io postgresql libnss-extrausers"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "test-deps: not root, not installing:$missing (tests needing them will skip)" >&2
	exit 0
fi
echo "test-deps: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
