package dockertest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

// askpass answers ssh's prompts in the container: the verification code
// from $TEST_CODE; any other prompt (a password) gets no answer. Each
// prompt is written to standard error, which is ssh's.
const askpass = `#!/bin/sh
echo "askpass: $1" >&2
case "$1" in
*"erification code"*) printf '%s\n' "$TEST_CODE" ;;
*) exit 1 ;;
esac
`

const askpassPath = "/usr/local/bin/otpgate-test-askpass"

// user is an account of the container, enrolled, with a key pair whose
// public half is in its authorized_keys.
type user struct {
	name, password string
	secret         []byte
	last           int64 // the last step whose code was handed out
}

// addUser makes an ordinary user as the README says an admin does:
// useradd, a password, sudo rights if asked, otpgate enroll, a key.
func (c *container) addUser(t testing.TB, name string, sudo bool) *user {
	t.Helper()
	u := &user{name: name, password: "pw-" + randHex(6)}
	c.mustExec(t, "", "useradd", "-m", "-s", "/bin/bash", name)
	c.mustExec(t, name+":"+u.password+"\n", "chpasswd")
	if sudo {
		c.mustExec(t, "", "usermod", "-aG", "sudo", name)
	}
	r := c.mustExec(t, "", "otpgate", "enroll", "--user", name, "--no-confirm", "--qr", "none", "--json")
	var en struct{ Secret string }
	if err := json.Unmarshal([]byte(r.stdout), &en); err != nil {
		t.Fatalf("otpgate enroll --json: %v\n%s", err, r)
	}
	secret, err := keystore.DecodeSecret(en.Secret)
	if err != nil {
		t.Fatal(err)
	}
	u.secret = secret
	home := "/home/" + name
	if r := c.execWith(t, []string{"-u", name}, "", "sh", "-c",
		"umask 077 && mkdir -p "+home+"/.ssh && ssh-keygen -q -t ed25519 -N '' -f "+home+"/.ssh/id_ed25519 && cp "+home+"/.ssh/id_ed25519.pub "+home+"/.ssh/authorized_keys"); r.exit != 0 {
		t.Fatalf("key for %s: %s", name, r)
	}
	return u
}

// code returns the code of u for the current step plus offset, without
// marking it used (for replays and lockouts).
func (u *user) code(t testing.TB, offset int64) string {
	t.Helper()
	step := totp.Step(time.Now(), totp.Default.Period) + offset
	c, err := totp.CodeAt(u.secret, uint64(step), totp.Default)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// freshCode returns a code the helper has not seen: of the current step,
// or the next one when the current one was used (the window, 1, accepts
// it), waiting for the clock when even that was used.
func (u *user) freshCode(t testing.TB) string {
	t.Helper()
	now := totp.Step(time.Now(), totp.Default.Period)
	step := max(now, u.last+1)
	for step > totp.Step(time.Now(), totp.Default.Period)+1 {
		time.Sleep(time.Second)
	}
	u.last = step
	c, err := totp.CodeAt(u.secret, uint64(step), totp.Default)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wrongCode returns a 6-digit code no step near now has.
func (u *user) wrongCode(t testing.TB) string {
	t.Helper()
	near := map[string]bool{}
	for off := int64(-3); off <= 3; off++ {
		near[u.code(t, off)] = true
	}
	for n := 0; ; n++ {
		c := fmt.Sprintf("%06d", (int(u.secret[0])*7919+n*104729)%1000000)
		if !near[c] {
			return c
		}
	}
}

// marker is what the remote command of a successful login prints.
func marker(u *user) string { return "otpgate-docker-ok:" + u.name }

// ssh logs u in over the container's loopback with the OpenSSH client,
// run as u inside the container: methods are the client's preferred
// methods, code is what askpass answers to the code prompt. One
// keyboard-interactive try per login (NumberOfPasswordPrompts=1).
func (c *container) ssh(t testing.TB, u *user, methods, code string) result {
	t.Helper()
	opts := []string{"-u", u.name, "-e", "SSH_ASKPASS=" + askpassPath, "-e", "SSH_ASKPASS_REQUIRE=force",
		"-e", "DISPLAY=:0", "-e", "TEST_CODE=" + code}
	return c.execWith(t, opts, "", "timeout", "-k", "5", strconv.Itoa(int(loginTimeout/time.Second)),
		"ssh", "-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "BatchMode=no", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
		"-o", "NumberOfPasswordPrompts=1", "-o", "PreferredAuthentications="+methods,
		"-o", "IdentitiesOnly=yes", "-o", "IdentityFile=/home/"+u.name+"/.ssh/id_ed25519",
		"-p", "22", u.name+"@127.0.0.1", "--", `echo "otpgate-docker-ok:$(id -un)"`)
}

// sudo runs `sudo -S -k id -un` as u with stdin (the password, the code).
func (c *container) sudo(t testing.TB, u *user, stdin string) result {
	t.Helper()
	return c.execWith(t, []string{"-u", u.name}, stdin, "timeout", "-k", "5", strconv.Itoa(int(loginTimeout/time.Second)),
		"sudo", "-S", "-k", "--", "id", "-un")
}

func wantLogin(t testing.TB, what string, r result, u *user) {
	t.Helper()
	t.Logf("%s: exit %d in %v", what, r.exit, r.dur.Round(time.Millisecond))
	if r.exit != 0 || !strings.Contains(r.stdout, marker(u)) {
		t.Fatalf("%s: want a login that prints %q: %s", what, marker(u), r)
	}
	if !strings.Contains(r.stderr, "askpass: ") || !strings.Contains(r.stderr, "erification code") {
		t.Fatalf("%s: want the code asked for (keyboard-interactive): %s", what, r)
	}
}

func wantDenied(t testing.TB, what string, r result, u *user) {
	t.Helper()
	t.Logf("%s: exit %d in %v", what, r.exit, r.dur.Round(time.Millisecond))
	if r.exit != 255 || !strings.Contains(r.stderr, "Permission denied") || strings.Contains(r.stdout, marker(u)) {
		t.Fatalf("%s: want exit 255 and \"Permission denied\": %s", what, r)
	}
}

// wantLog waits up to 5 s for docker logs to hold a line with every one
// of parts, and returns that line.
func wantLog(t testing.TB, c *container, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		logs := c.logs(t)
	lines:
		for _, l := range strings.Split(logs, "\n") {
			for _, p := range parts {
				if !strings.Contains(l, p) {
					continue lines
				}
			}
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker logs %s: no line with all of %q; logs:\n%s", c.name, parts, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDockerImage builds the image and proves, inside one container with
// no network but its loopback, what contrib/docker/README.md promises.
func TestDockerImage(t *testing.T) {
	root := repoRoot(t)
	docker := requireDocker(t, root)
	buildImage(t, root)

	t.Run("image", func(t *testing.T) {
		r := run(cmdTimeout, nil, "", docker, "image", "inspect", "-f", "{{json .Config.Volumes}} {{json .Config.Entrypoint}}", image)
		if r.exit != 0 || !strings.Contains(r.stdout, `"/var/lib/otpgate"`) {
			t.Fatalf("want /var/lib/otpgate a VOLUME: %s", r)
		}
		// No host key in the image: each container makes its own.
		r = run(cmdTimeout, nil, "", docker, "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", "ls /etc/ssh/ | grep -c ssh_host_ || true")
		if r.exit != 0 || strings.TrimSpace(r.stdout) != "0" {
			t.Fatalf("want no ssh_host_* key in the image: %s", r)
		}
	})

	c := startContainer(t, docker, nil)
	c.mustExec(t, askpass, "sh", "-c", "cat >"+askpassPath+" && chmod 0755 "+askpassPath)
	for _, k := range []string{"ssh_host_ed25519_key", "ssh_host_rsa_key", "ssh_host_ecdsa_key"} {
		c.mustExec(t, "", "test", "-s", "/etc/ssh/"+k)
	}
	alice := c.addUser(t, "alice", true)
	bob := c.addUser(t, "bob", false)
	carol := c.addUser(t, "carol", false)
	wantLog(t, c, "Server listening on 0.0.0.0 port 22.")

	t.Run("ssh", func(t *testing.T) {
		// The code alone, without the key: sshd asks for the key first.
		r := c.ssh(t, alice, "keyboard-interactive", alice.code(t, 0))
		wantDenied(t, "code without the key", r, alice)
		if strings.Contains(r.stderr, "askpass:") {
			t.Fatalf("code without the key: the code was asked for before the key: %s", r)
		}

		code := alice.freshCode(t)
		wantLogin(t, "key + right code", c.ssh(t, alice, "publickey,keyboard-interactive", code), alice)
		wantLog(t, c, "user=alice service=sshd rhost=127.0.0.1 outcome=accepted method=totp")

		wantDenied(t, "key + the same code again", c.ssh(t, alice, "publickey,keyboard-interactive", code), alice)
		wantLog(t, c, "user=alice service=sshd rhost=127.0.0.1 outcome=denied reason=replayed")

		wantDenied(t, "key + wrong code", c.ssh(t, alice, "publickey,keyboard-interactive", alice.wrongCode(t)), alice)
		wantLog(t, c, "user=alice service=sshd rhost=127.0.0.1 outcome=denied reason=wrong-code")
	})

	t.Run("self-service", func(t *testing.T) {
		// A user's own otpgate status goes through the daemon: nothing of
		// otpgate's is setuid in the image.
		if r := c.exec(t, "", "find", "/usr/libexec/otpgate", "/usr/bin/otpgate", "-perm", "-4000"); r.exit != 0 || strings.TrimSpace(r.stdout) != "" {
			t.Fatalf("want no setuid file of otpgate's: %s", r)
		}
		r := c.execWith(t, []string{"-u", "alice"}, "", "otpgate", "status")
		if r.exit != 0 || !strings.Contains(r.stdout+r.stderr, "alice") {
			t.Fatalf("otpgate status as alice: %s", r)
		}
	})

	t.Run("sudo", func(t *testing.T) {
		r := c.sudo(t, alice, alice.password+"\n"+alice.freshCode(t)+"\n")
		t.Logf("sudo, password + code: exit %d in %v", r.exit, r.dur.Round(time.Millisecond))
		if r.exit != 0 || strings.TrimSpace(r.stdout) != "root" {
			t.Fatalf("sudo with password and code: want root: %s", r)
		}
		pw := strings.Index(r.stderr, "[sudo] password for alice")
		cd := strings.Index(r.stderr, "Verification code")
		if pw < 0 || cd < pw {
			t.Fatalf("sudo: want the password asked, then the code: %s", r)
		}
		if strings.Contains(r.stderr, "unable to resolve host") {
			t.Errorf("sudo: the container cannot resolve its own name: %s", r)
		}
		wantLog(t, c, "user=alice service=sudo rhost=- outcome=accepted method=totp")

		r = c.sudo(t, alice, alice.password+"\n"+alice.wrongCode(t)+"\n")
		t.Logf("sudo, password + wrong code: exit %d in %v", r.exit, r.dur.Round(time.Millisecond))
		if r.exit == 0 || strings.Contains(r.stdout, "root") {
			t.Fatalf("sudo with a wrong code: want refused: %s", r)
		}
		wantLog(t, c, "user=alice service=sudo rhost=- outcome=denied reason=wrong-code")

		// A wrong password: pam_unix refuses, and the code is never asked.
		r = c.sudo(t, alice, "not-"+alice.password+"\n")
		t.Logf("sudo, wrong password: exit %d in %v", r.exit, r.dur.Round(time.Millisecond))
		if r.exit == 0 || strings.Contains(r.stdout, "root") || strings.Contains(r.stderr, "Verification code") {
			t.Fatalf("sudo with a wrong password: want refused before the code: %s", r)
		}
	})

	t.Run("lockout", func(t *testing.T) {
		// Five wrong codes (max_failures, default 5) lock bob; then the
		// right code is refused too, and not counted.
		for i := 1; i <= 5; i++ {
			wantDenied(t, fmt.Sprintf("wrong code %d", i), c.ssh(t, bob, "publickey,keyboard-interactive", bob.wrongCode(t)), bob)
		}
		wantLog(t, c, "user=bob service=sshd rhost=127.0.0.1 outcome=denied reason=wrong-code failures=5 locked_until=")
		wantDenied(t, "right code while locked", c.ssh(t, bob, "publickey,keyboard-interactive", bob.freshCode(t)), bob)
		wantLog(t, c, "user=bob service=sshd rhost=127.0.0.1 outcome=locked reason=locked")

		if r := c.exec(t, "", "otpgate", "status", "--user", "bob"); !strings.Contains(strings.ToLower(r.stdout+r.stderr), "locked") {
			t.Fatalf("otpgate status --user bob: want it locked: %s", r)
		}
		c.mustExec(t, "", "otpgate", "unlock", "--user", "bob")
		wantLogin(t, "right code after otpgate unlock", c.ssh(t, bob, "publickey,keyboard-interactive", bob.freshCode(t)), bob)
	})

	t.Run("daemon-dies", func(t *testing.T) {
		// The helper daemon killed: logins neither hang nor fail (the
		// module finds nobody on the socket and execs the helper, or
		// reaches the restarted daemon), and the entry point restarts it.
		pid := strings.TrimSpace(c.mustExec(t, "", "pidof", "otpgate-helper").stdout)
		c.mustExec(t, "", "kill", "-KILL", pid)
		wantLogin(t, "right code just after the daemon was killed", c.ssh(t, carol, "publickey,keyboard-interactive", carol.freshCode(t)), carol)
		wantLog(t, c, "otpgate-helper stopped; restarting it")
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := c.exec(t, "", "pidof", "otpgate-helper")
			if p := strings.TrimSpace(r.stdout); r.exit == 0 && p != "" && p != pid {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the helper daemon was not restarted within 10 s: %s", r)
			}
			time.Sleep(200 * time.Millisecond)
		}
		c.mustExec(t, "", "test", "-S", "/run/otpgate/helper.sock")
		const accepted = "user=carol service=sshd rhost=127.0.0.1 outcome=accepted method=totp"
		before := strings.Count(c.logs(t), accepted)
		wantLogin(t, "right code through the restarted daemon", c.ssh(t, carol, "publickey,keyboard-interactive", carol.freshCode(t)), carol)
		if after := strings.Count(c.logs(t), accepted); after != before+1 {
			t.Fatalf("docker logs: want one more %q line from the restarted daemon, have %d then %d", accepted, before, after)
		}
	})

	t.Run("port", func(t *testing.T) {
		// SSHD_PORT, for --network host, and arguments passed on to sshd.
		p := startContainer(t, docker, []string{"-e", "SSHD_PORT=2200"}, "-o", "ListenAddress=127.0.0.1")
		wantLog(t, p, "Server listening on 127.0.0.1 port 2200.")
		if logs := p.logs(t); strings.Contains(logs, "port 22.") {
			t.Fatalf("SSHD_PORT=2200: sshd listens on 22 too:\n%s", logs)
		}
	})
}
