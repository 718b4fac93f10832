package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// sudoSetupTries is sudoSetup with sudo's own number of tries
// (passwd_tries): the lock must stop sudo's retries, which one try hides.
func sudoSetupTries(t testing.TB, u *testUser, service string, tries int) {
	t.Helper()
	requireTools(t, "sudo", "visudo", "setpriv")
	content := "# otpgate end-to-end test; removed when the test ends\n" +
		fmt.Sprintf("Defaults:%s pam_service=%s, passwd_tries=%d, lecture=never, timestamp_timeout=0, !mail_badpass\n", u.name, service, tries) +
		u.name + " ALL=(ALL) ALL\n"
	path := filepath.Join("/etc/sudoers.d", prefix+strings.TrimPrefix(u.name, prefix))
	writeSystemFile(t, path, content, 0o440, func(tmp string) error {
		if r := run(setupTimeout, nil, "visudo", "-c", "-q", "-f", tmp); r.exit != 0 {
			return fmt.Errorf("visudo rejects the test drop-in: %s\n%s", r, content)
		}
		return nil
	})
}

// lockLine is the lock message with its time and zone.
var lockLine = regexp.MustCompile(`too many wrong codes; (locked until|try again after) \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+`)

// TestSudoLockShown: sudo passes PAM_SILENT to pam_authenticate and asks
// again after PAM_MAXTRIES (passwd_tries). The person must still see that
// the account is locked and until when: before this, sudo showed only
// "Sorry, try again." three times and "3 incorrect password attempts".
func TestSudoLockShown(t *testing.T) {
	e := newOTPEnv(t, 2)
	u := newUser(t)
	en := e.enroll(t, u)
	svc := "sudo-" + prefix + randHex(3)
	writePAMService(t, svc, stack("required pam_unix.so", e.auth("required")))
	sudoSetupTries(t, u, svc, 3)
	w := wrongCode(t, en)

	// Two wrong codes lock; the third try is told so.
	r := runSudo(u, []step{{sudoPrompt, u.password}, {codePrompt, w}, {sudoPrompt, u.password}, {codePrompt, w},
		{sudoPrompt, u.password}, {codePrompt, w}})
	logResult(t, "sudo, two wrong codes then a third try", r)
	mustNotHang(t, "sudo", r)
	wantRefused(t, "sudo, two wrong codes", r)
	if !strings.Contains(r.stdout, "too many wrong codes; locked until") || !strings.Contains(r.stdout, "too many wrong codes; try again after") {
		t.Errorf("sudo did not show the lock (the attempt that locked, then the try while locked): %s", r)
	}
	if !lockLine.MatchString(r.stdout) {
		t.Errorf("the lock message has no time with its zone: %s", r)
	}
	wantStatus(t, e, u, 2, true)

	// A later sudo, still locked: every try says so, the right code too.
	right := codeNow(t, en, 0)
	r = runSudo(u, []step{{sudoPrompt, u.password}, {codePrompt, right}, {sudoPrompt, u.password}, {codePrompt, right},
		{sudoPrompt, u.password}, {codePrompt, right}})
	logResult(t, "sudo while locked", r)
	mustNotHang(t, "sudo", r)
	wantRefused(t, "sudo while locked", r)
	if n := strings.Count(r.stdout, "try again after"); n != 3 {
		t.Errorf("the lock was shown %d times over sudo's 3 tries, want 3: %s", n, r)
	}
	wantStatus(t, e, u, 2, true)

	// A wrong code that does not lock says nothing under PAM_SILENT, as
	// before: only the lock gets through.
	e.cli(t, "unlock", "--user", u.name)
	r = runSudo(u, []step{{sudoPrompt, u.password}, {codePrompt, w}})
	logResult(t, "sudo, one wrong code", r)
	wantRefused(t, "sudo, one wrong code", r)
	if strings.Contains(r.stdout, "too many wrong codes") {
		t.Errorf("a wrong code that did not lock showed a lock: %s", r)
	}
}

// loginDefault is sshClient.login with the client's own defaults for what
// a person meets: NumberOfPasswordPrompts 3 and every method the client
// knows, LogLevel INFO so the server's banner and disconnect show.
func (c *sshClient) loginDefault(s *sshServer, p *askpass) result {
	args := []string{
		"-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "BatchMode=no",
		"-o", "ConnectTimeout=10",
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityFile=" + c.key,
		"-o", "ControlMaster=no",
		"-o", "ControlPath=none",
		"-o", "ForwardAgent=no",
		"-p", strconv.Itoa(s.port),
		c.user.name + "@127.0.0.1",
		"--", remoteCmd,
	}
	return runCmd(loginTimeout, nil, func(ctx context.Context) *exec.Cmd {
		cmd := command(ctx, "ssh", args...)
		cmd.Env = baseEnv("HOME="+c.home, "SSH_ASKPASS="+p.script, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0")
		return cmd
	})
}

// TestSSHLockEndsExchange pins what a person meets over ssh once the
// account is locked, with AuthenticationMethods
// publickey,keyboard-interactive (docs/pam-module.md, "The lock"): the
// lock and its time are shown; sshd, given PAM_MAXTRIES, turns keyboard-interactive and password
// authentication off for the connection and offers no method any more;
// OpenSSH's client, given an empty list, falls back to its own
// PreferredAuthentications and asks for a password that sshd refuses
// unread, until MaxAuthTries ends the connection. A client that prefers
// publickey,keyboard-interactive is asked nothing after the lock.
func TestSSHLockEndsExchange(t *testing.T) {
	e := newOTPEnv(t, 2)
	u := newUser(t)
	s := startSSHD(t, sshdConfig{
		authMethods: "publickey,keyboard-interactive",
		pamStack:    keyThenCodeStack(e),
		allowUsers:  []string{u.name},
	})
	en := e.enroll(t, u)
	c := newSSHClient(t, u)
	p := newAskpass(t, answers{code: wrongCode(t, en), password: "not-" + u.password})

	// The client's defaults: two wrong codes lock, the lock is shown, and
	// the client then asks for passwords sshd never checks.
	r := c.loginDefault(s, p)
	logResult(t, "ssh, two wrong codes", r)
	mustNotHang(t, "ssh", r)
	wantDenied(t, "ssh, two wrong codes", r, u)
	prompts := p.prompts(t)
	if n := strings.Count(prompts, codePrompt); n != 2 {
		t.Errorf("asked for a code %d times, want 2:\n%s", n, prompts)
	}
	if !lockLine.MatchString(r.stderr) {
		t.Errorf("the client did not show the lock with its time: %s", r)
	}
	if !strings.Contains(r.stderr, "Too many authentication failures") {
		t.Errorf("sshd did not end the connection: %s", r)
	}
	wantStatus(t, e, u, 2, true)

	// Locked already: one code prompt, then the lock is shown and the
	// exchange ends.
	r = c.loginDefault(s, p)
	logResult(t, "ssh while locked", r)
	wantDenied(t, "ssh while locked", r, u)
	prompts = p.prompts(t)
	if n := strings.Count(prompts, codePrompt); n != 1 {
		t.Errorf("while locked, asked for a code %d times, want once (then the exchange ends):\n%s", n, prompts)
	}
	if !strings.Contains(r.stderr, "try again after") {
		t.Errorf("the lock was not shown: %s", r)
	}
	// The password prompts are the client's fallback: sshd checks none.
	if logs := s.logs.String(); strings.Contains(logs, "Failed password") || strings.Contains(logs, "Accepted password") {
		t.Errorf("sshd checked a password after the lock:\n%s", logs)
	}

	// A client that prefers what the server asks for is asked nothing
	// after the lock: sshd offers no method ("Permission denied ()").
	r = c.login(s, "publickey,keyboard-interactive", p, remoteCmd)
	logResult(t, "ssh while locked, PreferredAuthentications publickey,keyboard-interactive", r)
	wantDenied(t, "ssh while locked, preferred methods", r, u)
	if prompts := p.prompts(t); strings.Count(prompts, codePrompt) != 1 || strings.Contains(prompts, "assword") {
		t.Errorf("with PreferredAuthentications publickey,keyboard-interactive, want one code prompt and nothing after the lock:\n%s", prompts)
	}
	if !strings.Contains(r.stderr, "Permission denied ()") {
		t.Errorf("sshd still offered a method after PAM_MAXTRIES: %s", r)
	}
	wantStatus(t, e, u, 2, true)
}
