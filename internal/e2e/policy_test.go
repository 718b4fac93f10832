package e2e

// [policy] and [enroll] deadline through a real sshd with the
// recommended publickey,keyboard-interactive setup.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// newGroup makes a group named with the test prefix, removed when the
// test ends.
func newGroup(t testing.TB) string {
	t.Helper()
	requireTools(t, "groupadd", "groupdel", "usermod")
	g := prefix + "g" + randHex(3)
	var r result
	for attempt := 0; attempt < 10; attempt++ {
		if r = run(setupTimeout, nil, "groupadd", g); r.exit != 10 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r.exit != 0 {
		t.Fatalf("groupadd %s: %s", g, r)
	}
	t.Cleanup(func() {
		for attempt := 0; attempt < 10; attempt++ {
			if run(setupTimeout, nil, "groupdel", g).exit != 10 {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	return g
}

// addToGroup makes g a supplementary group of u.
func addToGroup(t testing.TB, u *testUser, g string) {
	t.Helper()
	var r result
	for attempt := 0; attempt < 10; attempt++ {
		if r = run(setupTimeout, nil, "usermod", "--append", "--groups", g, u.name); r.exit != 10 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r.exit != 0 {
		t.Fatalf("usermod -aG %s %s: %s", g, u.name, r)
	}
}

// setConfig replaces the env's config: the usual one plus extra.
func (e *otpEnv) setConfig(t testing.TB, extra string) {
	t.Helper()
	writeFile(t, e.config, configText(e.store, 3)+extra, 0o644)
}

// loginShown is login as a person meets it: the client's default log
// level, at which it shows the text sshd sends with a keyboard-interactive
// request (a denial's message), and with tty a terminal (ssh -tt), in
// which sshd shows the messages of a successful authentication after the
// login (as it shows the motd).
func (c *sshClient) loginShown(s *sshServer, methods string, p *askpass, tty bool) result {
	var args []string
	if tty {
		args = append(args, "-tt")
	}
	args = append(args,
		"-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "BatchMode=no",
		"-o", "ConnectTimeout=10",
		"-o", "NumberOfPasswordPrompts=1",
		"-o", "PreferredAuthentications="+methods,
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityFile="+c.key,
		"-o", "ControlMaster=no",
		"-o", "ControlPath=none",
		"-p", strconv.Itoa(s.port),
		c.user.name+"@127.0.0.1",
		"--", remoteCmd,
	)
	return runCmd(loginTimeout, nil, func(ctx context.Context) *exec.Cmd {
		cmd := command(ctx, "ssh", args...)
		cmd.Env = baseEnv("HOME="+c.home, "SSH_ASKPASS="+p.script, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0")
		return cmd
	})
}

// TestSSHPolicy: an exempt user gets in with the key alone, a required
// one (by a supplementary group) is asked, and a policy naming a group
// the system does not know lets no one through without a code (and
// otpgate doctor says why).
func TestSSHPolicy(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen")
	e := newOTPEnv(t, 3)
	staff, svc := newGroup(t), newGroup(t)
	svcUser, staffUser, staffNew, outsider := newUser(t), newUser(t), newUser(t), newUser(t)
	addToGroup(t, svcUser, svc)
	addToGroup(t, staffUser, staff)
	addToGroup(t, staffNew, staff)
	e.setConfig(t, fmt.Sprintf("\n[policy]\nrequire_groups = [%q]\nexempt_groups = [%q]\n", staff, svc))
	s := startSSHD(t, sshdConfig{
		authMethods: "publickey,keyboard-interactive",
		pamStack:    keyThenCodeStack(e),
		allowUsers:  []string{svcUser.name, staffUser.name, staffNew.name, outsider.name},
	})
	const methods = "publickey,keyboard-interactive"
	en := e.enroll(t, staffUser)
	svcClient, staffClient, newClient, outClient := newSSHClient(t, svcUser), newSSHClient(t, staffUser), newSSHClient(t, staffNew), newSSHClient(t, outsider)

	t.Run("exempt group: the key alone", func(t *testing.T) {
		p := newAskpass(t, answers{code: "123456"})
		wantLogin(t, "exempt user", svcClient.login(s, methods, p, remoteCmd), svcUser)
		wantPrompts(t, p)
		if st := e.status(t, svcUser); st.Enrolled {
			t.Errorf("status: %+v", st)
		}
	})
	t.Run("not in a required group: the key alone", func(t *testing.T) {
		p := newAskpass(t, answers{code: "123456"})
		wantLogin(t, "user outside require_groups", outClient.login(s, methods, p, remoteCmd), outsider)
		wantPrompts(t, p)
	})
	t.Run("required by a supplementary group: asked", func(t *testing.T) {
		p := newAskpass(t, answers{code: wrongCode(t, en)})
		wantDenied(t, "required user, wrong code", staffClient.login(s, methods, p, remoteCmd), staffUser)
		wantPrompts(t, p, codePrompt)
		p.set(t, answers{code: codeNow(t, en, 0)})
		wantLogin(t, "required user, right code", staffClient.login(s, methods, p, remoteCmd), staffUser)
		wantPrompts(t, p, codePrompt)
	})
	t.Run("required, not enrolled: denied", func(t *testing.T) {
		p := newAskpass(t, answers{code: "123456"})
		wantDenied(t, "required user without a code", newClient.login(s, methods, p, remoteCmd), staffNew)
	})
	t.Run("unknown group: no one without a code gets in", func(t *testing.T) {
		ghost := prefix + "nosuchgroup" + randHex(2)
		e.setConfig(t, fmt.Sprintf("\n[policy]\nrequire_groups = [%q, %q]\nexempt_groups = [%q]\n", staff, ghost, svc))
		p := newAskpass(t, answers{code: "123456"})
		wantDenied(t, "exempt user under a broken policy", svcClient.login(s, methods, p, remoteCmd), svcUser)
		wantDenied(t, "outsider under a broken policy", outClient.login(s, methods, p, remoteCmd), outsider)
		// The enrolled user is still asked, and gets in with the code.
		p.set(t, answers{code: codeNow(t, en, 1)})
		wantLogin(t, "enrolled user under a broken policy", staffClient.login(s, methods, p, remoteCmd), staffUser)
		wantPrompts(t, p, codePrompt)

		r := e.cli(t, "doctor")
		if r.exit == 0 || !strings.Contains(r.stdout, "PROBLEM policy") || !strings.Contains(r.stdout, ghost) || !strings.Contains(r.stdout, "require_groups") {
			t.Errorf("otpgate doctor does not report the unknown group %s: %s", ghost, r)
		}
	})
}

// TestSSHDeadline: before [enroll] deadline a user without a code gets in
// with a message saying how many days remain, which reaches the ssh
// client; from it on the user is denied with the enrollment instructions.
func TestSSHDeadline(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen")
	e := newOTPEnv(t, 3)
	u, v := newUser(t), newUser(t)
	s := startSSHD(t, sshdConfig{
		authMethods: "publickey,keyboard-interactive",
		pamStack:    keyThenCodeStack(e),
		allowUsers:  []string{u.name, v.name},
	})
	const methods = "publickey,keyboard-interactive"
	c := newSSHClient(t, u)
	enrolled := e.enroll(t, v)
	cv := newSSHClient(t, v)

	// Ten days from now in the host's zone (otpgate reads /etc/localtime;
	// so does date here, with TZ unset).
	future := time.Now().AddDate(0, 0, 10).Format("2006-01-02")
	e.setConfig(t, "\n[enroll]\ndeadline = "+future+"\n")
	p := newAskpass(t, answers{code: "123456"})
	r := c.loginShown(s, methods, p, true)
	wantLogin(t, "before the deadline", r, u)
	wantPrompts(t, p)
	want := fmt.Sprintf("no verification code is set up for %s yet; from %s on, logins without one are denied (10 days left). Set one up now: run otpgate enroll", u.name, future)
	if !strings.Contains(strings.ReplaceAll(r.stdout+r.stderr, "\r", ""), want) {
		t.Errorf("the ssh client was not shown %q:\n%s", want, r)
	}
	// An enrolled user is still asked.
	pv := newAskpass(t, answers{code: codeNow(t, enrolled, 0)})
	wantLogin(t, "enrolled user before the deadline", cv.login(s, methods, pv, remoteCmd), v)
	wantPrompts(t, pv, codePrompt)

	past := time.Now().AddDate(0, 0, -1).Format("2006-01-02")
	e.setConfig(t, "\n[enroll]\ndeadline = "+past+"\n")
	r = c.loginShown(s, methods, p, false)
	wantDenied(t, "after the deadline", r, u)
	want = fmt.Sprintf("the enrollment deadline %s has passed; ask an administrator to enroll you (otpgate enroll --user %s)", past, u.name)
	if !strings.Contains(r.stderr, want) {
		t.Errorf("the ssh client was not shown %q:\n%s", want, r)
	}
	// nullok does not outlast the deadline: in a stack where its
	// PAM_IGNORE lets the login through (pam_permit after it), the
	// deadline still denies.
	s2 := startSSHD(t, sshdConfig{
		authMethods: "publickey,keyboard-interactive",
		pamStack:    stack(e.auth("[success=done ignore=ignore default=die]", "nullok"), "required pam_permit.so"),
		allowUsers:  []string{u.name},
	})
	e.setConfig(t, "")
	wantLogin(t, "nullok, no deadline", c.login(s2, methods, p, remoteCmd), u)
	e.setConfig(t, "\n[enroll]\ndeadline = "+past+"\n")
	wantDenied(t, "nullok, after the deadline", c.login(s2, methods, p, remoteCmd), u)
}

// TestNSSOnlyUserSelfServes: a user the system knows only through NSS
// (libnss-extrausers here, standing for LDAP or SSSD; not in /etc/passwd)
// reaches the helper and is served in self mode: status, then enroll.
// The user exists only inside a private mount namespace (unshare) in
// which a test nsswitch.conf and the extrausers files are bind-mounted:
// the host's NSS is untouched, and the helper daemon runs there too.
func TestNSSOnlyUserSelfServes(t *testing.T) {
	requireTools(t, "unshare", "mount", "setpriv", "getent")
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/libnss_extrausers.so.2"); err != nil {
		if matches, _ := filepath.Glob("/usr/lib/*/libnss_extrausers.so.2"); len(matches) == 0 {
			matches, _ = filepath.Glob("/usr/lib/libnss_extrausers.so.2")
			if len(matches) == 0 {
				skipOrFail(t, "libnss-extrausers is not installed (scripts/test-deps.sh installs it)")
			}
		}
	}
	set := needDaemonSet(t)
	e := selfEnv(t, set, 3)
	name := prefix + "nss" + randHex(2)
	uid := 1_900_000_000 + int(time.Now().UnixNano()%1_000_000)
	if r := run(setupTimeout, nil, "getent", "passwd", name); r.exit != 2 {
		t.Fatalf("getent passwd %s outside the namespace: %s; want not found", name, r)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	extra := filepath.Join(dir, "extrausers")
	if err := os.Mkdir(extra, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(extra, "passwd"), fmt.Sprintf("%s:x:%d:%d:otpgate e2e NSS-only user:/nonexistent:/bin/sh\n", name, uid, uid), 0o644)
	writeFile(t, filepath.Join(extra, "group"), fmt.Sprintf("%s:x:%d:\n", name, uid), 0o644)
	writeFile(t, filepath.Join(extra, "shadow"), "", 0o640)
	writeFile(t, filepath.Join(dir, "nsswitch.conf"), "passwd: files extrausers\ngroup: files extrausers\nshadow: files\n", 0o644)
	as := fmt.Sprintf("setpriv --reuid=%d --regid=%d --clear-groups --", uid, uid)
	script := fmt.Sprintf(`set -eu
mount --make-rprivate /
mount --bind %[1]q /etc/nsswitch.conf
mount --bind %[2]q /var/lib/extrausers
echo "in namespace: $(getent passwd %[3]s)"
if grep -q '^%[3]s:' /etc/passwd; then echo "in /etc/passwd" >&2; exit 3; fi
%[4]q --listen %[5]q & daemon=$!
trap 'kill $daemon; wait $daemon || true' EXIT
i=0; while [ ! -S %[5]q ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
sleep 0.2
echo "--- status"
%[6]s env -i HOME=/ PATH=/usr/bin:/bin %[7]q status
echo "--- enroll"
%[6]s env -i HOME=/ PATH=/usr/bin:/bin %[7]q enroll --no-confirm --json --qr none
`, filepath.Join(dir, "nsswitch.conf"), extra, name, set.helper, set.socket, as, set.cli)
	os.Remove(set.socket)
	t.Cleanup(func() { os.Remove(set.socket) }) // the daemon in the namespace leaves it
	r := run(2*loginTimeout, nil, "unshare", "--mount", "sh", "-c", script)
	logResult(t, "NSS-only user in a private mount namespace", r)
	mustNotHang(t, "namespace", r)
	if r.exit != 0 {
		t.Fatalf("the NSS-only user was not served: %s", r)
	}
	if !strings.Contains(r.stdout, "in namespace: "+name+":x:") {
		t.Errorf("the namespace did not know the user through NSS: %s", r)
	}
	if !strings.Contains(r.stdout, name+": not enrolled") {
		t.Errorf("status does not name the user: %s", r)
	}
	if !strings.Contains(r.stdout, `"user": "`+name+`"`) || !strings.Contains(r.stdout, "otpauth://totp/") {
		t.Errorf("enroll did not enroll the user: %s", r)
	}
	if st := e.status(t, &testUser{name: name}); !st.Enrolled {
		t.Errorf("after self-enrollment, status of %s: %+v", name, st)
	}
	// Outside the namespace the user is unknown again.
	if r := run(setupTimeout, nil, "getent", "passwd", name); r.exit != 2 {
		t.Errorf("getent passwd %s after the test: %s", name, r)
	}
}

// TestSSHCheckPolicy: behind ForceCommand otpgate sshcheck, a member of
// an exempt group (a service account running a command, no terminal)
// gets its command run without a code; a required user in the same
// situation is still refused with the ways to give one.
func TestSSHCheckPolicy(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen", "id")
	sc := needSSHCheck(t)
	e := sc.env
	svc, staff := newUser(t), newUser(t)
	g := newGroup(t)
	addToGroup(t, svc, g)
	orig, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { writeFile(t, e.config, string(orig), 0o644) })
	writeFile(t, e.config, string(orig)+fmt.Sprintf("\n[policy]\nexempt_groups = [%q]\n", g), 0o644)
	s := startSSHD(t, sshdConfig{
		authMethods: "publickey",
		pamStack:    unixStack,
		allowUsers:  []string{svc.name, staff.name},
		extra:       []string{forceCommandInclude(t, sc.cli, []string{primaryGroup(t, svc), primaryGroup(t, staff)})},
	})
	wantRan(t, "exempt user, command without a terminal", newSSHClient(t, svc).sshRun(s, "", "echo ran-as-$(id -un)"), 0, "ran-as-"+svc.name+"\n")
	e.enroll(t, staff)
	wantSSHCheckDenied(t, "required user, command without a terminal", newSSHClient(t, staff).sshRun(s, "", "echo ran"), "OTPGATE_CODE")
}

// TestSudoPolicy: under sudo (pam_unix, then pam_otpgate) a user in
// exempt_users gives the password only; one the policy requires is asked
// for the code after it.
func TestSudoPolicy(t *testing.T) {
	requireTools(t, "sudo", "visudo", "setpriv")
	e := newOTPEnv(t, 5)
	exempt, required := newUser(t), newUser(t)
	en := e.enroll(t, required)
	e.setConfig(t, fmt.Sprintf("\n[policy]\nexempt_users = [%q]\n", exempt.name))
	svc := "sudo-" + prefix + randHex(3)
	writePAMService(t, svc, stack("required pam_unix.so", e.auth("required")))
	sudoSetup(t, exempt, svc)
	sudoSetup(t, required, svc)

	r := runSudo(exempt, []step{{sudoPrompt, exempt.password}})
	wantOK(t, "sudo, exempt user, password only", r, rootMarker)
	if strings.Contains(r.stdout, codePrompt) {
		t.Errorf("the exempt user was asked for a code: %s", r)
	}
	r = runSudo(required, []step{{sudoPrompt, required.password}, {codePrompt, codeNow(t, en, 0)}})
	wantOK(t, "sudo, required user, password and code", r, rootMarker)
	r = runSudo(exempt, []step{{sudoPrompt, "not-" + exempt.password}})
	wantRefused(t, "sudo, exempt user, wrong password", r)
}
