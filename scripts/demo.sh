#!/bin/sh
# otpgate for real, thrown away afterwards: a copy of sshd on 127.0.0.1
# (port 2222 unless DEMO_PORT says otherwise) with otpgate in front of it,
# and a demo user to log in as, who has a password and an enrolled
# authenticator. Everything it makes (the user, /etc/pam.d/sshd-otpgate-demo,
# the sshd copy, a temporary directory) is removed when it stops (Ctrl-C).
# /etc/pam.d/sshd and the system's sshd are not touched.
# DEMO_SELFTEST=1: instead of waiting for Ctrl-C, log in once through the
# real ssh client (the password, then a code from oathtool, answered by an
# SSH_ASKPASS script) and exit with its status; the tests run it so.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
	echo "demo: run as root (it adds a user and starts an sshd on 127.0.0.1): sudo make demo" >&2
	exit 2
fi
# The go command: the one make put first on PATH, else the same search
# make does (sudo's PATH has no /usr/local/go/bin).
GO=$(scripts/find-go.sh) || exit 1
PATH=$(dirname "$GO"):$PATH
export PATH
port=${DEMO_PORT:-2222}
user=otpgate-demo
pass=demo-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
svc=sshd-otpgate-demo

need=""
for p in openssh-server openssh-client libpam0g-dev oathtool gcc make; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
	echo "demo: installing$need"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

dir=$(mktemp -d /tmp/otpgate-demo.XXXXXX)
chmod 755 "$dir"
sshd_pid=""
cleanup() {
	[ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
	rm -f "/etc/pam.d/$svc" "/usr/sbin/$svc"
	userdel -r "$user" 2>/dev/null || true
	rm -rf "$dir"
}
# Ctrl-C is how the demo ends: clean up and exit 0, not 130.
trap cleanup EXIT
trap 'exit 0' INT TERM

echo "== building otpgate into $dir"
CGO_ENABLED=0 "$GO" build -trimpath -ldflags='-s -w' -o "$dir/otpgate" ./cmd/otpgate
CGO_ENABLED=0 "$GO" build -trimpath -ldflags='-s -w' -o "$dir/otpgate-helper" ./cmd/otpgate-helper
# The module straight into $dir, not through make's build/ (which a
# concurrent make deb or test may be rewriting): the same flags, with the
# demo's helper and a daemon socket that does not exist, so that it never
# talks to a helper daemon this machine may run.
${CC:-cc} -fPIC -Wall -Wextra -Werror -std=c99 -D_GNU_SOURCE -O2 -shared \
	-DOTPGATE_HELPER="\"$dir/otpgate-helper\"" -DOTPGATE_SOCKET="\"$dir/no-daemon.sock\"" \
	-Wl,--version-script=pam/exports.map -o "$dir/pam_otpgate.so" pam/pam_otpgate.c -lpam
chmod 0644 "$dir/pam_otpgate.so"

cat >"$dir/config.toml" <<EOC
issuer = "otpgate-demo"
store = "$dir/store"
[lockout]
max_failures = 5
lock_duration = "1m"
EOC

echo "== user $user, password $pass"
userdel -r "$user" 2>/dev/null || true
useradd -m -s /bin/bash "$user"
echo "$user:$pass" | chpasswd

echo "== enrolling $user: scan the QR code with an authenticator app"
"$dir/otpgate" --config "$dir/config.toml" enroll --user "$user" --no-confirm
# The first authenticator's secret (the file has one, indented in its
# [[authenticator]] table).
secret=$(sed -n 's/^[[:space:]]*secret = "\(.*\)"$/\1/p' "$dir/store/users/$user.toml" | head -n 1)
if [ -z "$secret" ]; then
	echo "demo: found no secret in $dir/store/users/$user.toml" >&2
	exit 1
fi

# The password (pam_unix through common-auth), then the code.
cat >"/etc/pam.d/$svc" <<EOP
@include common-auth
auth required $dir/pam_otpgate.so helper=$dir/otpgate-helper config=$dir/config.toml
@include common-account
@include common-session
EOP
# A copy of sshd under another name has its own PAM service: that name.
cp /usr/sbin/sshd "/usr/sbin/$svc"
ssh-keygen -q -t ed25519 -N "" -f "$dir/hostkey"
mkdir -p /run/sshd
cat >"$dir/sshd_config" <<EOS
ListenAddress 127.0.0.1
Port $port
HostKey $dir/hostkey
PidFile none
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication no
AuthenticationMethods keyboard-interactive
AllowUsers $user
EOS
"/usr/sbin/$svc" -D -e -f "$dir/sshd_config" 2>"$dir/sshd.log" &
sshd_pid=$!
sleep 1
kill -0 "$sshd_pid" 2>/dev/null || { cat "$dir/sshd.log" >&2; exit 1; }

cat <<EOM

== otpgate is in front of an sshd on 127.0.0.1:$port. In another terminal:

    ssh -p $port -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no $user@127.0.0.1

   Password: $pass
   Verification code: from the app, or without a phone:
       oathtool --totp -b $secret
   (a backup code printed above works too, once)

   Each code works once; 5 wrong ones lock $user for a minute. Watch:
       $dir/otpgate --config $dir/config.toml status --user $user

   Ctrl-C here stops sshd and removes the user and every file.
EOM
if [ "${DEMO_SELFTEST:-}" = 1 ]; then
	cat >"$dir/askpass" <<'EOA'
#!/bin/sh
case "$1" in
*assword*) printf '%s\n' "$DEMO_PASS" ;;
*) oathtool --totp -b "$DEMO_SECRET" ;;
esac
EOA
	chmod 755 "$dir/askpass"
	echo "== self-test: one login through ssh"
	DEMO_PASS=$pass DEMO_SECRET=$secret SSH_ASKPASS="$dir/askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=none \
		ssh -p "$port" -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=error \
		"$user@127.0.0.1" 'echo demo-login-ok' </dev/null
	exit $?
fi
wait "$sshd_pid"
