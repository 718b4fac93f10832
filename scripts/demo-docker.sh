#!/bin/sh
# make demo, in Docker: a container of the otpgate image (make docker)
# whose sshd listens on 127.0.0.1 of this machine (port 2222 unless
# DEMO_PORT says otherwise; --network host, so no bridge is needed), and a
# demo user in it with a password, an enrolled authenticator and a key
# made here. Every attempt line scrolls by below the instructions (docker
# logs -f). Ctrl-C removes the container, its volume and the key; nothing
# on this machine outside build/ and the images is changed.
# DEMO_SELFTEST=1: instead of following the log, log in once through the
# real ssh client (the key, then a code from oathtool answered by an
# SSH_ASKPASS script) and exit with its status.
set -eu
cd "$(dirname "$0")/.."
port=${DEMO_PORT:-2222}
name=otpgate-demo
user=otpgate-demo
pass=demo-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')

# A Docker daemon: started here when none answers (root; DEMO=docker).
scripts/debian-base.sh --dockerd || {
	echo "demo-docker: no Docker daemon (run as root, or use the demo without Docker: make demo DEMO=local)" >&2
	exit 2
}
need=""
for p in openssh-client oathtool; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ] && [ "$(id -u)" -eq 0 ]; then
	echo "demo-docker: installing$need"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

dir=$(mktemp -d /tmp/otpgate-demo-docker.XXXXXX)
echo "== building the image otpgate:latest (make docker; the first time takes a few minutes)"
contrib/docker/build.sh >"$dir/build.log" 2>&1 || { cat "$dir/build.log" >&2; rm -rf "$dir"; exit 1; }
cleanup() {
	echo
	echo "== removing the container $name, its volume and $dir"
	docker rm -f -v "$name" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
# Ctrl-C is how the demo ends: clean up and exit 0, not 130; a failure
# keeps its status.
trap cleanup EXIT
trap 'exit 0' INT TERM
docker rm -f -v "$name" >/dev/null 2>&1 || true

echo "== starting $name: sshd on 127.0.0.1:$port"
docker run -d --name "$name" --network host -e SSHD_PORT="$port" \
	otpgate:latest -o ListenAddress=127.0.0.1 >/dev/null
i=0
until docker logs "$name" 2>&1 | grep -q "Server listening on 127.0.0.1 port $port"; do
	i=$((i + 1))
	if [ "$i" -gt 50 ] || [ "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" != true ]; then
		docker logs "$name" >&2
		echo "demo-docker: sshd did not start (is port $port free? DEMO_PORT=... picks another)" >&2
		exit 1
	fi
	sleep 0.2
done

# The label in the authenticator app (with --network host the container
# has this machine's host name).
docker exec "$name" sed -i '1i issuer = "otpgate-demo"' /etc/otpgate/config.toml

echo "== user $user in the container, password $pass"
docker exec "$name" useradd -m -s /bin/bash -G sudo "$user"
echo "$user:$pass" | docker exec -i "$name" chpasswd

echo "== enrolling $user: scan the QR code with an authenticator app"
t=""
[ -t 1 ] && t=-t
docker exec $t "$name" otpgate enroll --user "$user" --no-confirm
# The first authenticator's secret (indented in its [[authenticator]] table).
secret=$(docker exec "$name" sed -n 's/^[[:space:]]*secret = "\(.*\)"$/\1/p' "/var/lib/otpgate/users/$user.toml" | head -n 1)

ssh-keygen -q -t ed25519 -N "" -C "$user@otpgate-demo" -f "$dir/id_ed25519"
docker exec -i "$name" sh -c "install -d -o $user -g $user -m 0700 /home/$user/.ssh &&
	cat >/home/$user/.ssh/authorized_keys && chown $user:$user /home/$user/.ssh/authorized_keys &&
	chmod 0600 /home/$user/.ssh/authorized_keys" <"$dir/id_ed25519.pub"

cat <<EOM

== otpgate is in front of sshd and sudo in the container $name. In another terminal:

    ssh -i $dir/id_ed25519 -p $port -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no $user@127.0.0.1

   The key is checked first, then: Verification code: from the app, or without a phone:
       oathtool --totp -b $secret
   (a backup code printed above works too, once)

   In that session, sudo asks for the password ($pass), then a new code.
   Each code works once; 5 wrong ones lock $user for 15 minutes:
       docker exec $name otpgate status --user $user
       docker exec $name otpgate unlock --user $user

   The container's log follows (sshd and one otpgate line per attempt).
   Ctrl-C here removes the container, its volume and the key.

EOM
if [ "${DEMO_SELFTEST:-}" = 1 ]; then
	cat >"$dir/askpass" <<'EOA'
#!/bin/sh
oathtool --totp -b "$DEMO_SECRET"
EOA
	chmod 755 "$dir/askpass"
	echo "== self-test: one login through ssh"
	DEMO_SECRET=$secret SSH_ASKPASS="$dir/askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=none \
		ssh -i "$dir/id_ed25519" -p "$port" -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no \
		-o LogLevel=error -o IdentitiesOnly=yes "$user@127.0.0.1" 'echo demo-login-ok' </dev/null
	exit $?
fi
docker logs -f --tail 0 "$name" 2>&1 || true
