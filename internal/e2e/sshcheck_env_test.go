package e2e

// What runs before otpgate sshcheck asks for the code, through a real sshd
// with the contrib ForceCommand block: the user's ~/.pam_environment
// (Debian's stock pam_env user_readenv=1), ~/.ssh/environment
// (PermitUserEnvironment), a BASH_ENV sent by the client (AcceptEnv) and
// ~/.ssh/rc; and login shells that refuse to run the ForceCommand
// (git-shell, nologin, rbash). Each configuration is then audited by
// internal/doctor, which must flag exactly what the sessions showed.

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/doctor"
)

// sessionStack is a PAM service for the ForceCommand route with Debian's
// pam_env session rule, with or without user_readenv=1 (Debian 12's stock
// /etc/pam.d/sshd has it).
func sessionStack(userReadenv bool) string {
	env := "session  required pam_env.so envfile=/etc/default/locale\n"
	if userReadenv {
		env = "session  required pam_env.so user_readenv=1 envfile=/etc/default/locale\n"
	}
	return unixStack + env
}

// blockFile writes the contrib ForceCommand block for groups, running
// forceCommand, with the (old, new) edits applied, and returns the
// sshd_config line that includes it.
func blockFile(t testing.TB, groups []string, forceCommand string, edits ...string) string {
	t.Helper()
	src := filepath.Join(repoRoot(t), "contrib", "sshd_config.d", "otpgate-forcecommand.conf")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	edits = append([]string{
		"\nMatch Group otpgate\n", "\nMatch Group " + strings.Join(groups, ",") + "\n",
		"ForceCommand /usr/local/bin/otpgate sshcheck\n", "ForceCommand " + forceCommand + "\n",
	}, edits...)
	for i := 0; i < len(edits); i += 2 {
		if strings.Count(text, edits[i]) != 1 {
			t.Fatalf("%s: want %q exactly once", src, edits[i])
		}
		text = strings.Replace(text, edits[i], edits[i+1], 1)
	}
	path := filepath.Join(t.TempDir(), "block.conf")
	writeFile(t, path, text, 0o644)
	return "Include " + path
}

// setShell changes u's login shell (retrying while another useradd or
// usermod holds the passwd lock).
func setShell(t testing.TB, u *testUser, shell string) {
	t.Helper()
	var r result
	for attempt := 0; attempt < 10; attempt++ {
		if r = run(setupTimeout, nil, "usermod", "--shell", shell, u.name); r.exit != 10 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r.exit != 0 {
		t.Fatalf("usermod --shell %s %s: %s", shell, u.name, r)
	}
}

// sshRunEnv runs `ssh -T host remote` sending OTPGATE_CODE (when code is
// set) and the extra variables in env (NAME=value) with SendEnv.
func (c *sshClient) sshRunEnv(s *sshServer, code, remote string, env ...string) result {
	args := append(c.sshOpts(s), "-T", "-o", "BatchMode=yes", "-o", "SendEnv=OTPGATE_CODE")
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		args = append(args, "-o", "SendEnv="+name)
	}
	args = append(args, "127.0.0.1", "--", remote)
	return runCmd(loginTimeout, nil, func(ctx context.Context) *exec.Cmd {
		cmd := command(ctx, "ssh", args...)
		cmd.Env = append(c.clientEnv(code), env...)
		return cmd
	})
}

// payloads plants, in u's home, every way to run code at login that this
// file tests; each touches ~/ran-<name> when it runs. It returns the
// variable the client sends (BASH_ENV, expanded by bash: $(...) runs).
func payloads(t testing.TB, u *testUser) string {
	t.Helper()
	for _, name := range []string{"pam_environment", "ssh_environment"} {
		writeFile(t, filepath.Join(u.home, name+".sh"), "touch \"$HOME/ran-"+name+"\"\n", 0o644)
	}
	writeFile(t, filepath.Join(u.home, ".pam_environment"), "BASH_ENV DEFAULT="+filepath.Join(u.home, "pam_environment.sh")+"\n", 0o644)
	writeFile(t, filepath.Join(u.home, ".ssh", "environment"), "BASH_ENV="+filepath.Join(u.home, "ssh_environment.sh")+"\n", 0o600)
	writeFile(t, filepath.Join(u.home, ".ssh", "rc"), "touch \"$HOME/ran-sshrc\"\n", 0o644)
	chownTree(t, u.home, u)
	return `BASH_ENV=$(touch "$HOME/ran-client")`
}

// ran lists the payloads that ran for u (the ran-* files in its home).
func ran(t testing.TB, u *testUser) []string {
	t.Helper()
	var out []string
	for _, n := range listDir(t, u.home) {
		if name, ok := strings.CutPrefix(n, "ran-"); ok {
			out = append(out, name)
		}
	}
	return out
}

// passwdOf writes a passwd file with the /etc/passwd lines of users, for
// doctor to audit only them.
func passwdOf(t testing.TB, users ...*testUser) string {
	t.Helper()
	f, err := os.Open("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]bool{}
	for _, u := range users {
		want[u.name] = true
	}
	var b strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, _, _ := strings.Cut(sc.Text(), ":"); want[name] {
			b.WriteString(sc.Text() + "\n")
			delete(want, name)
		}
	}
	if len(want) > 0 {
		t.Fatalf("not in /etc/passwd: %v", want)
	}
	path := filepath.Join(t.TempDir(), "passwd")
	writeFile(t, path, b.String(), 0o644)
	return path
}

// auditSSHD runs doctor on an sshd_config made of lines (after a host key)
// with pamStack as sshd's PAM service, for the accounts users, and
// returns its sshd findings.
func auditSSHD(t testing.TB, lines []string, pamStack string, users ...*testUser) []doctor.Finding {
	t.Helper()
	sshd, _ := lookTool("sshd")
	dir := t.TempDir()
	key := filepath.Join(dir, "hostkey")
	mustRun(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
	conf := filepath.Join(dir, "sshd_config")
	writeFile(t, conf, "HostKey "+key+"\nUsePAM yes\n"+strings.Join(lines, "\n")+"\n", 0o600)
	pamDir := filepath.Join(dir, "pam.d")
	if err := os.Mkdir(pamDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(pamDir, "sshd"), pamStack, 0o644)
	r := doctor.Run(doctor.Options{ConfigPath: "/nonexistent/otpgate.toml", SSHD: sshd, SSHDConfig: conf, PAMDir: pamDir,
		Passwd: passwdOf(t, users...), Group: "/etc/group"})
	var out []doctor.Finding
	for _, f := range r.Findings {
		if f.Check == "sshd" {
			out = append(out, f)
			t.Logf("doctor: %s", f)
		}
	}
	return out
}

// wantFindings checks that findings say each of want, one finding each,
// and nothing else.
func wantFindings(t testing.TB, what string, findings []doctor.Finding, want ...string) {
	t.Helper()
	var all []string
	for _, f := range findings {
		all = append(all, f.Problem)
	}
	if len(findings) != len(want) {
		t.Errorf("%s: doctor found %d sshd problems, want %d:\n%s", what, len(findings), len(want), strings.Join(all, "\n"))
		return
	}
	for _, w := range want {
		n := 0
		for _, p := range all {
			if strings.Contains(p, w) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: want one finding that says %q:\n%s", what, w, strings.Join(all, "\n"))
		}
	}
}

// TestSSHCheckEnvBeforeCode: with the contrib block and a PAM service
// without user_readenv, none of the payloads runs, before the code or
// after; with Debian's user_readenv=1, PermitUserEnvironment yes and
// BASH_ENV in AcceptEnv, each runs before the code, and doctor flags each.
// ~/.ssh/rc never runs under a ForceCommand, PermitUserRC yes or not.
func TestSSHCheckEnvBeforeCode(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen", "id", "usermod")
	sc := needSSHCheck(t)
	e := sc.env
	cli := sc.cli + " sshcheck"

	t.Run("recommended configuration", func(t *testing.T) {
		u := newUser(t)
		lines := []string{blockFile(t, []string{primaryGroup(t, u)}, cli)}
		s := startSSHD(t, sshdConfig{authMethods: "publickey", pamStack: sessionStack(false), allowUsers: []string{u.name}, extra: lines})
		en := e.enroll(t, u)
		c := newSSHClient(t, u)
		client := payloads(t, u)

		wantSSHCheckDenied(t, "no code", c.sshRunEnv(s, "", "true", client), "no verification code")
		if got := ran(t, u); len(got) != 0 {
			t.Fatalf("before the code, these ran: %v", got)
		}
		wantRan(t, "right code", c.sshRunEnv(s, codeNow(t, en, 0), `echo "ok:${BASH_ENV-unset}"`, client), 0, "ok:unset\n")
		if got := ran(t, u); len(got) != 0 {
			t.Fatalf("with the code, these ran: %v", got)
		}
		wantFindings(t, "doctor on the recommended configuration", auditSSHD(t, lines, sessionStack(false), u))
	})

	t.Run("user environment, client BASH_ENV, ~/.ssh/rc", func(t *testing.T) {
		names := []string{"pam_environment", "ssh_environment", "client", "sshrc"}
		users := map[string]*testUser{}
		var groups, allow []string
		var all []*testUser
		for _, n := range names {
			u := newUser(t)
			users[n] = u
			all = append(all, u)
			groups = append(groups, primaryGroup(t, u))
			allow = append(allow, u.name)
		}
		outside := newUser(t) // no ForceCommand: ~/.ssh/rc runs for it
		allow = append(allow, outside.name)
		lines := []string{
			"PermitUserEnvironment yes",
			blockFile(t, groups, cli,
				"\tPermitUserRC no\n", "\tPermitUserRC yes\n",
				"AcceptEnv LANG LC_* OTPGATE_CODE\n", "AcceptEnv LANG LC_* OTPGATE_CODE BASH_ENV\n"),
		}
		s := startSSHD(t, sshdConfig{authMethods: "publickey", pamStack: sessionStack(true), allowUsers: allow, extra: lines})

		// Each user's session shows one payload: the others are there too
		// but cannot tell themselves apart (one BASH_ENV at a time).
		for _, n := range []string{"pam_environment", "ssh_environment", "client"} {
			u := users[n]
			e.enroll(t, u)
			c := newSSHClient(t, u)
			client := payloads(t, u)
			var env []string
			switch n {
			case "pam_environment": // pam_env's wins over ~/.ssh/environment
			case "ssh_environment":
				os.Remove(filepath.Join(u.home, ".pam_environment"))
			case "client":
				os.Remove(filepath.Join(u.home, ".pam_environment"))
				os.Remove(filepath.Join(u.home, ".ssh", "environment"))
				env = []string{client}
			}
			wantSSHCheckDenied(t, n+": no code", c.sshRunEnv(s, "", "true", env...), "no verification code")
			if got := ran(t, u); len(got) != 1 || got[0] != n {
				t.Errorf("%s: the payloads that ran before the code: %v, want [%s]", n, got, n)
			}
		}

		u := users["sshrc"]
		en := e.enroll(t, u)
		c := newSSHClient(t, u)
		payloads(t, u)
		os.Remove(filepath.Join(u.home, ".pam_environment"))
		os.Remove(filepath.Join(u.home, ".ssh", "environment"))
		wantSSHCheckDenied(t, "~/.ssh/rc: no code", c.sshRunEnv(s, "", "true"), "no verification code")
		wantRan(t, "~/.ssh/rc: right code", c.sshRunEnv(s, codeNow(t, en, 0), "echo ok"), 0, "ok\n")
		if got := ran(t, u); len(got) != 0 {
			t.Errorf("under the ForceCommand with PermitUserRC yes, these ran: %v (sshd skips ~/.ssh/rc for an administrator's ForceCommand)", got)
		}
		// The control: the same sshd runs ~/.ssh/rc for a user outside
		// the block, so the test above could have seen it.
		c = newSSHClient(t, outside)
		payloads(t, outside)
		os.Remove(filepath.Join(outside.home, ".pam_environment"))
		os.Remove(filepath.Join(outside.home, ".ssh", "environment"))
		wantRan(t, "outside the block", c.sshRunEnv(s, "", "echo ok"), 0, "ok\n")
		if got := ran(t, outside); len(got) != 1 || got[0] != "sshrc" {
			t.Errorf("outside the block, the payloads that ran: %v, want [sshrc]", got)
		}

		findings := auditSSHD(t, lines, sessionStack(true), all...)
		wantFindings(t, "doctor on this configuration", findings,
			"reads the user's ~/.pam_environment", "PermitUserEnvironment yes", "AcceptEnv BASH_ENV lets the client")
	})
}

// TestSSHCheckShells: sshd runs the ForceCommand as `SHELL -c COMMAND`,
// so accounts whose shell refuses that never reach sshcheck: no code is
// asked or counted, and nothing runs, with a right code as with a wrong
// one. rbash refuses only a command name with a slash: a block of its
// own that names otpgate without its directory works, and the shell
// stays restricted after the code.
func TestSSHCheckShells(t *testing.T) {
	tools := requireTools(t, "sshd", "ssh", "ssh-keygen", "id", "usermod", "git-shell", "nologin", "rbash")
	sc := needSSHCheck(t)
	e := sc.env
	cli := sc.cli + " sshcheck"
	shells := map[string]string{"git-shell": tools[5], "nologin": tools[6], "rbash": tools[7]}
	users := map[string]*testUser{}
	var groups, allow []string
	var all []*testUser
	for _, n := range []string{"git-shell", "nologin", "rbash", "rbash-own-block"} {
		u := newUser(t)
		users[n] = u
		all = append(all, u)
		allow = append(allow, u.name)
		if n != "rbash-own-block" {
			groups = append(groups, primaryGroup(t, u))
			setShell(t, u, shells[n])
		}
	}
	own := users["rbash-own-block"]
	setShell(t, own, shells["rbash"])
	// In a real deployment otpgate is in sshd's PATH (/usr/local/bin or
	// /usr/bin); here it is in the test's directory, so the block puts
	// that first.
	lines := []string{
		blockFile(t, []string{primaryGroup(t, own)}, "otpgate sshcheck",
			"SetEnv SHLVL=1\n", "SetEnv SHLVL=1 PATH="+filepath.Dir(sc.cli)+":/usr/bin:/bin\n"),
		blockFile(t, groups, cli),
	}
	s := startSSHD(t, sshdConfig{authMethods: "publickey", pamStack: unixStack, allowUsers: allow, extra: lines})

	for _, tc := range []struct{ shell, said string }{
		{"git-shell", "fatal: unrecognized command '" + cli + "'"},
		{"nologin", "This account is currently not available."},
		{"rbash", "restricted: cannot specify `/' in command names"},
	} {
		u := users[tc.shell]
		en := e.enroll(t, u)
		c := newSSHClient(t, u)
		for _, code := range []string{wrongCode(t, en), codeNow(t, en, 0)} {
			r := c.sshRun(s, code, "touch ~/ran")
			logResult(t, tc.shell, r)
			mustNotHang(t, tc.shell, r)
			// nologin says it on standard output, the others on standard error.
			if out := r.stdout + r.stderr; r.exit == 0 || !strings.Contains(out, tc.said) || strings.Contains(out, "otpgate: error") {
				t.Errorf("%s: want a failure that says %q: %s", tc.shell, tc.said, r)
			}
		}
		wantAbsent(t, filepath.Join(u.home, "ran"))
		// sshcheck never ran: the wrong code was never counted.
		wantStatus(t, e, u, 0, false)
	}

	en := e.enroll(t, own)
	c := newSSHClient(t, own)
	wantSSHCheckDenied(t, "rbash, own block, wrong code", c.sshRun(s, wrongCode(t, en), "touch ran"), "wrong or already used code")
	wantAbsent(t, filepath.Join(own.home, "ran"))
	wantRan(t, "rbash, own block, right code", c.sshRun(s, codeNow(t, en, 0), `echo "ok:$0"`), 0, "ok:rbash\n")
	r := c.sshRun(s, codeNow(t, en, +1), "echo before; /usr/bin/touch ran")
	logResult(t, "rbash after the code", r)
	if r.stdout != "before\n" || !strings.Contains(r.stderr, "restricted") {
		t.Errorf("after the code, the command did not run in a restricted shell: %s", r)
	}
	wantAbsent(t, filepath.Join(own.home, "ran"))

	findings := auditSSHD(t, lines, unixStack, all...)
	wantFindings(t, "doctor", findings,
		"login shell is "+shells["git-shell"]+" cannot pass otpgate sshcheck",
		"login shell is "+shells["nologin"]+" cannot pass otpgate sshcheck",
		"login shell is "+shells["rbash"]+" cannot pass otpgate sshcheck")
	for _, f := range findings {
		if strings.Contains(f.Problem, own.name) {
			t.Errorf("doctor flags the rbash account whose block names otpgate without a path: %s", f)
		}
	}
}
