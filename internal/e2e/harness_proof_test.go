package e2e

// The harness's own tests: real sshd, sudo and su with pam_unix alone, no
// otpgate. They show that logins through the harness work and that each
// host really reads the stack the test wrote (a pam_deny stack refuses a
// right password), so the otpgate tests fail only for otpgate's reasons.

import (
	"strings"
	"testing"
)

func TestHarnessSSH(t *testing.T) {
	u := newUser(t)
	c := newSSHClient(t, u)

	t.Run("password by keyboard-interactive", func(t *testing.T) {
		s := startSSHD(t, sshdConfig{authMethods: "keyboard-interactive", pamStack: unixStack, allowUsers: []string{u.name}})
		p := newAskpass(t, answers{password: u.password})
		r := c.login(s, "keyboard-interactive", p, remoteCmd)
		wantLogin(t, "right password", r, u)
		if got := p.prompts(t); !strings.Contains(got, "Password:") {
			t.Errorf("want a Password: prompt, askpass saw %q", got)
		}

		p.set(t, answers{password: "not-" + u.password})
		wantDenied(t, "wrong password", c.login(s, "keyboard-interactive", p, remoteCmd), u)
	})

	t.Run("publickey", func(t *testing.T) {
		s := startSSHD(t, sshdConfig{authMethods: "publickey", pamStack: unixStack, allowUsers: []string{u.name}})
		p := newAskpass(t, answers{})
		wantLogin(t, "publickey", c.login(s, "publickey", p, remoteCmd), u)
		if got := p.prompts(t); got != "" {
			t.Errorf("publickey login asked %q", got)
		}
	})

	t.Run("service name is the binary's name", func(t *testing.T) {
		s := startSSHD(t, sshdConfig{authMethods: "keyboard-interactive", pamStack: denyStack, allowUsers: []string{u.name}})
		p := newAskpass(t, answers{password: u.password})
		wantDenied(t, "right password through a pam_deny service", c.login(s, "keyboard-interactive", p, remoteCmd), u)
		if got := p.prompts(t); got != "" {
			t.Errorf("pam_deny service asked %q: sshd did not read its own service file", got)
		}
	})
}

func TestHarnessSudo(t *testing.T) {
	requireTools(t, "sudo", "visudo", "setpriv")
	u := newUser(t)
	svc := "sudo-" + prefix + randHex(3)
	writePAMService(t, svc, unixStack)
	sudoSetup(t, u, svc)

	wantOK(t, "sudo, right password", runSudo(u, []step{{sudoPrompt, u.password}}), rootMarker)
	wantRefused(t, "sudo, wrong password", runSudo(u, []step{{sudoPrompt, "not-" + u.password}}))

	// The same user through a pam_deny service: refused with the right
	// password, so sudo reads pam_service's file and nothing else.
	deny := "sudo-" + prefix + randHex(3)
	writePAMService(t, deny, denyStack)
	u2 := newUser(t)
	sudoSetup(t, u2, deny)
	r := runSudo(u2, []step{{sudoPrompt, u2.password}})
	wantRefused(t, "sudo through a pam_deny service", r)
	if strings.Contains(r.stdout, sudoPrompt) {
		t.Errorf("pam_deny service asked for a password: sudo did not read pam_service's file")
	}
}

func TestHarnessSu(t *testing.T) {
	requireTools(t, "su", "unshare", "mount", "setpriv")
	caller, target := newUser(t), newUser(t)

	wantOK(t, "su, right password", runSu(t, caller, target, unixStack, []step{{"Password: ", target.password}}), marker(target))
	wantRefused(t, "su, wrong password", runSu(t, caller, target, unixStack, []step{{"Password: ", "not-" + target.password}}))
	r := runSu(t, caller, target, denyStack, []step{{"Password: ", target.password}})
	wantRefused(t, "su through a pam_deny stack", r)
	if strings.Contains(r.stdout, "Password") {
		t.Errorf("pam_deny stack asked for a password: su did not read the bind-mounted stack")
	}
}
