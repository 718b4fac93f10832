#!/bin/sh
# The otpgate image's entry point: host keys at first start, the otpgate
# helper daemon, then sshd in the foreground (PID 1, logging to standard
# error), so that `docker logs` shows sshd's lines and every otpgate
# attempt line.
#
#   SSHD_PORT  the port sshd listens on (default 22), for --network host
#   arguments  passed on to sshd, e.g. -o ListenAddress=127.0.0.1
set -eu

# Host keys: made once per container (kept across restarts of it). The
# image has none, so two containers never share one.
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
chmod 0755 /run/sshd

# The host name, at 127.0.1.1 as Debian's installer writes it, when the
# container's /etc/hosts lacks it (--network none): sudo looks it up and
# would print "unable to resolve host" each time.
h=$(hostname)
grep -q "[[:space:]]$h\([[:space:]]\|\$\)" /etc/hosts 2>/dev/null || printf '127.0.1.1\t%s\n' "$h" >>/etc/hosts || true

# The store: a fresh volume (or an empty directory mounted here) gets the
# modes otpgate requires; a store that has files is left as it is (otpgate
# refuses one with loose modes and says how to fix it).
store=/var/lib/otpgate
mkdir -p "$store"
if [ -z "$(ls -A "$store")" ]; then
	chown root:root "$store"
	chmod 0700 "$store"
fi
for d in users state locks; do
	[ -e "$store/$d" ] || install -d -o root -g root -m 0700 "$store/$d"
done

# The helper daemon. The module and otpgate connect to its socket first;
# while it is down (between a crash and the restart below) they find
# nobody accepting and start the helper themselves, so no login hangs.
# Restarted a second after it stops; its lines (one per attempt) go to
# its standard error, which is the container's.
helper=$(for p in /usr/libexec/otpgate/otpgate-helper /usr/lib/otpgate/otpgate-helper; do [ -x "$p" ] && echo "$p" && break; done)
[ -n "$helper" ] || { echo "otpgate-entrypoint: otpgate-helper is not installed" >&2; exit 1; }
install -d -o root -g root -m 0755 /run/otpgate
(
	while :; do
		"$helper" --listen /run/otpgate/helper.sock || true
		echo "otpgate-entrypoint: otpgate-helper stopped; restarting it in 1 s" >&2
		sleep 1
	done
) &
i=0
while [ ! -S /run/otpgate/helper.sock ] && [ "$i" -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done

port=${SSHD_PORT:-22}
case $port in
'' | *[!0-9]*)
	echo "otpgate-entrypoint: SSHD_PORT=$port is not a port number" >&2
	exit 2
	;;
esac
exec /usr/sbin/sshd -D -e -p "$port" "$@"
