package e2e

// First-login enrollment ([enroll] first_login = true) through real
// hosts: sshd keyboard-interactive after the key (on a real terminal, and
// two parallel logins through askpass), a stack without the first_login
// argument, sudo after a requisite password (PAM_SILENT), and sshcheck on
// a terminal. Each test reads the key URI from what the person was shown,
// answers with oathtool's code for it, and checks that the next login
// asks for a code as for anyone enrolled.

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/otpgate/otpgate/internal/qrterm"
)

// Prompts of first-login enrollment.
const (
	enrollCodePrompt = "Enter the 6-digit code the app shows: "
	backupPrompt     = "Press Enter once you have written them down: "
	meanwhileMsg     = "another login set up a verification code for"
)

// firstLoginConfig turns the config key on.
const firstLoginConfig = "\n[enroll]\nfirst_login = true\n"

// newFirstLoginEnv is newOTPEnv with [enroll] first_login = true.
func newFirstLoginEnv(t testing.TB) *otpEnv {
	t.Helper()
	e := newOTPEnv(t, 5)
	writeFile(t, e.config, configText(e.store, 5)+firstLoginConfig, 0o644)
	return e
}

var shownURI = regexp.MustCompile(`otpauth://[!-~]+`)

// uriShown returns the last key URI in what the person was shown, and the
// enrollment it stands for (its secret, for oathtool).
func uriShown(t testing.TB, shown string) (string, enrollment) {
	t.Helper()
	all := shownURI.FindAllString(shown, -1)
	if len(all) == 0 {
		t.Fatalf("no otpauth:// URI was shown:\n%s", shown)
	}
	raw := all[len(all)-1]
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("the URI shown does not parse: %q: %v", raw, err)
	}
	secret := u.Query().Get("secret")
	if len(secret) != 32 {
		t.Fatalf("the URI shown has no 160-bit secret: %q", raw)
	}
	return raw, enrollment{URI: raw, Secret: secret}
}

// wantQRReadable checks the QR code on a screen: it is the code of the
// URI shown (drawn again from the URI it must match, row by row), and it
// and the line below it fit an 80x24 terminal.
func wantQRReadable(t testing.TB, shown, uri string) {
	t.Helper()
	m, err := qrterm.SmallMatrix(uri)
	if err != nil {
		t.Fatal(err)
	}
	qr := qrterm.UTF8(m)
	screen := strings.ReplaceAll(shown, "\r\n", "\n")
	if !strings.Contains(screen, qr) {
		t.Fatalf("the QR code of %s is not on the screen (mangled or missing):\n%s", uri, shown)
	}
	rows := strings.Count(qr, "\n")
	if rows+1 > 24 || len([]rune(strings.SplitN(qr, "\n", 2)[0])) > 80 {
		t.Fatalf("the QR code is %d rows: it and the prompt do not fit 24 lines", rows)
	}
}

// loginInfo is sshClient.login with LogLevel INFO, so that the messages
// sshd sends with a failure (keyboard-interactive instructions) show.
func (c *sshClient) loginInfo(s *sshServer, p *askpass) result {
	args := []string{
		"-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "BatchMode=no",
		"-o", "LogLevel=INFO",
		"-o", "ConnectTimeout=10",
		"-o", "NumberOfPasswordPrompts=1",
		"-o", "PreferredAuthentications=publickey,keyboard-interactive",
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityFile=" + c.key,
		"-o", "ControlMaster=no",
		"-o", "ControlPath=none",
		"-p", strconv.Itoa(s.port),
		c.user.name + "@127.0.0.1",
		"--", remoteCmd,
	}
	return runCmd(loginTimeout, nil, func(ctx context.Context) *exec.Cmd {
		cmd := command(ctx, "ssh", args...)
		cmd.Env = baseEnv("HOME="+c.home, "SSH_ASKPASS="+p.script, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0", "LC_ALL=C.UTF-8")
		return cmd
	})
}

// enrollAskpass is an SSH_ASKPASS that enrolls: it answers the enrollment
// prompt with oathtool's code for the secret in the URI it shows, once
// `parties` such programs (sharing barrier) have seen their enrollment
// prompt, so that parallel first logins all pass the screen before any
// saves. It answers the backup codes with Enter and a code prompt from
// the file "code". Every prompt is appended to prompts.log.
func enrollAskpass(t testing.TB, barrier string, parties int) *askpass {
	t.Helper()
	p := &askpass{dir: t.TempDir()}
	p.script = filepath.Join(p.dir, "askpass")
	script := fmt.Sprintf(`#!/bin/sh
# SSH_ASKPASS for otpgate's first-login end-to-end tests.
printf '%%s\n' "$1" >>'%[1]s/prompts.log'
case "$1" in
*otpauth://*)
	touch '%[2]s/seen.'$$
	i=0
	while [ "$(ls '%[2]s' | grep -c '^seen\.')" -lt %[3]d ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
	secret=$(printf '%%s\n' "$1" | sed -n 's/.*[?&]secret=\([A-Z2-7]*\).*/\1/p' | head -n 1)
	exec oathtool --totp -b "$secret" ;;
*'Press Enter'*) echo; exit 0 ;;
*'erification code'*) exec cat '%[1]s/code' ;;
esac
exit 1
`, p.dir, barrier, parties)
	writeFile(t, p.script, script, 0o700)
	writeFile(t, filepath.Join(p.dir, "code"), "", 0o600)
	return p
}

// firstLoginSSHD is an sshd with publickey,keyboard-interactive whose
// stack is pam_otpgate alone, with or without first_login.
func firstLoginSSHD(t testing.TB, e *otpEnv, users []*testUser, args ...string) *sshServer {
	t.Helper()
	var allow []string
	for _, u := range users {
		allow = append(allow, u.name)
	}
	return startSSHD(t, sshdConfig{
		authMethods: "publickey,keyboard-interactive",
		pamStack:    stack(e.auth("required", args...)),
		allowUsers:  allow,
	})
}

// TestFirstLoginSSH: after the key, a user with no secret is shown the
// URI and a QR code on a real terminal through OpenSSH's
// keyboard-interactive, enrolls with the app's code, sees the backup
// codes and logs in; the next login asks for a code.
func TestFirstLoginSSH(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen")
	e := newFirstLoginEnv(t)
	u, nokey := newUser(t), newUser(t)
	s := firstLoginSSHD(t, e, []*testUser{u, nokey}, "first_login")

	// Without the key sshd never reaches PAM: nothing is offered.
	home := t.TempDir()
	stranger := &sshClient{home: home, key: filepath.Join(home, "no-such-key"), user: nokey}
	sp := enrollAskpass(t, t.TempDir(), 1)
	wantDenied(t, "keyboard-interactive without the key", stranger.login(s, "keyboard-interactive", sp, remoteCmd), nokey)
	if prompts := sp.prompts(t); prompts != "" {
		t.Fatalf("a client without the key was asked:\n%s", prompts)
	}
	if st := e.status(t, nokey); st.Enrolled {
		t.Fatal("a secret was stored for a client without the key")
	}

	c := newSSHClient(t, u)
	args := []string{
		"-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-o", "NumberOfPasswordPrompts=1",
		"-o", "PreferredAuthentications=publickey,keyboard-interactive",
		"-o", "IdentitiesOnly=yes", "-o", "IdentityFile=" + c.key, "-o", "ControlMaster=no", "-o", "ControlPath=none",
		"-o", "Port=" + strconv.Itoa(s.port), "-o", "User=" + u.name,
		"-tt", "-e", "none", "127.0.0.1", "--", remoteCmd,
	}
	var uri string
	var en enrollment
	r := c.terminalWith(t, s, args, []string{"LC_ALL=C.UTF-8"}, func(p *ptySession) {
		p.await(enrollCodePrompt)
		shown := p.out.String()
		uri, en = uriShown(t, shown)
		wantQRReadable(t, shown, uri)
		p.send(codeNow(t, en, 0) + "\r")
		p.await(backupPrompt)
		p.send("\r")
	})
	logResult(t, "first login on a terminal", r)
	mustNotHang(t, "first login", r)
	if r.exit != 0 || !strings.Contains(r.stdout, marker(u)) {
		t.Fatalf("first login: want the command to run: %s", r)
	}
	if n := len(regexp.MustCompile(`[0-9A-Z]{5}-[0-9A-Z]{5}`).FindAllString(r.stdout, -1)); n != 10 {
		t.Errorf("the terminal showed %d backup codes, want 10:\n%s", n, r.stdout)
	}
	if st := e.status(t, u); !st.Enrolled || st.BackupLeft != 10 || st.Failures != 0 {
		t.Fatalf("after the first login: %+v", st)
	}

	// The next login asks for a code of the new secret, as for anyone
	// enrolled (the confirmation code's step is used: the next one).
	p := newAskpass(t, answers{code: codeNow(t, en, +1)})
	wantLogin(t, "next login", c.login(s, "publickey,keyboard-interactive", p, remoteCmd), u)
	wantPrompts(t, p, codePrompt)
}

// TestFirstLoginSSHParallel: two first logins of one user at once, both
// past the enrollment screen before either answers: one secret is
// stored, one login gets in, and the other is told and denied.
func TestFirstLoginSSHParallel(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen", "oathtool")
	e := newFirstLoginEnv(t)
	u := newUser(t)
	s := firstLoginSSHD(t, e, []*testUser{u}, "first_login")
	c := newSSHClient(t, u)
	barrier := t.TempDir()
	ps := []*askpass{enrollAskpass(t, barrier, 2), enrollAskpass(t, barrier, 2)}
	rs := make([]result, 2)
	var wg sync.WaitGroup
	for i := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs[i] = c.loginInfo(s, ps[i])
		}()
	}
	wg.Wait()
	won, lost := -1, -1
	for i, r := range rs {
		logResult(t, fmt.Sprintf("parallel first login %d", i), r)
		mustNotHang(t, "parallel first login", r)
		switch {
		case r.exit == 0 && strings.Contains(r.stdout, marker(u)):
			won = i
		case r.exit == 255:
			lost = i
		}
	}
	if won < 0 || lost < 0 {
		t.Fatalf("want one login in and one denied:\n%s\n%s", rs[0], rs[1])
	}
	if !strings.Contains(rs[lost].stderr, meanwhileMsg) {
		t.Errorf("the denied login was not told why: %s", rs[lost])
	}
	_, winner := uriShown(t, ps[won].prompts(t))
	_, loser := uriShown(t, ps[lost].prompts(t))
	if winner.Secret == loser.Secret {
		t.Fatal("both logins were shown the same secret")
	}
	// One secret, the winner's: its code logs in, the loser's does not.
	p := newAskpass(t, answers{code: codeNow(t, loser, +1)})
	wantDenied(t, "a code of the secret that was not saved", c.login(s, "publickey,keyboard-interactive", p, remoteCmd), u)
	p.set(t, answers{code: codeNow(t, winner, +1)})
	wantLogin(t, "a code of the secret saved", c.login(s, "publickey,keyboard-interactive", p, remoteCmd), u)
}

// TestFirstLoginNotOffered: the config key on, but the stack's otpgate
// line has no first_login: no enrollment is offered, nothing is stored.
func TestFirstLoginNotOffered(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen")
	e := newFirstLoginEnv(t)
	u := newUser(t)
	s := firstLoginSSHD(t, e, []*testUser{u})
	c := newSSHClient(t, u)
	p := enrollAskpass(t, t.TempDir(), 1)
	r := c.loginInfo(s, p)
	wantDenied(t, "no first_login argument", r, u)
	if prompts := p.prompts(t); strings.Contains(prompts, "otpauth") || strings.Contains(prompts, enrollCodePrompt) {
		t.Fatalf("enrollment was offered on a stack without first_login:\n%s", prompts)
	}
	if !strings.Contains(r.stderr, "no verification code is set up for this account") {
		t.Errorf("not told why: %s", r)
	}
	if st := e.status(t, u); st.Enrolled {
		t.Fatal("a secret was stored")
	}
}

// TestFirstLoginSSHAbandoned: three codes that do not match the secret
// shown store nothing; the login is denied and says why.
func TestFirstLoginSSHAbandoned(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen")
	e := newFirstLoginEnv(t)
	u := newUser(t)
	s := firstLoginSSHD(t, e, []*testUser{u}, "first_login")
	c := newSSHClient(t, u)
	p := newAskpass(t, answers{})
	// An askpass that answers every prompt with six zeros.
	writeFile(t, p.script, "#!/bin/sh\nprintf '%s\\n' \"$1\" >>'"+p.dir+"/prompts.log'\necho 000000\n", 0o700)
	r := c.loginInfo(s, p)
	wantDenied(t, "three wrong codes", r, u)
	prompts := p.prompts(t)
	if n := strings.Count(prompts, enrollCodePrompt); n != 3 || strings.Count(prompts, "otpauth://") != 1 {
		t.Errorf("want the screen once and three code prompts:\n%s", prompts)
	}
	if !strings.Contains(r.stderr, "no matching code after 3 tries") {
		t.Errorf("not told why: %s", r)
	}
	if st := e.status(t, u); st.Enrolled || st.Failures != 0 {
		t.Fatalf("after an abandoned first login: %+v", st)
	}
}

// TestFirstLoginSudoSu: sudo (which passes PAM_SILENT) and su, each with a
// requisite pam_unix above otpgate first_login: the password first, then
// the enrollment screens, which are prompts and so shown under
// PAM_SILENT too; then the next sudo asks for a code.
func TestFirstLoginSudoSu(t *testing.T) {
	requireTools(t, "sudo", "su", "oathtool")
	e := newFirstLoginEnv(t)
	u := newUser(t)
	svc := "sudo-" + prefix + randHex(3)
	writePAMService(t, svc, stack("requisite pam_unix.so", e.auth("required", "first_login")))
	sudoSetup(t, u, svc)
	pass := func(string) string { return u.password }
	var en enrollment
	enroll := func(shown string) string {
		var uri string
		uri, en = uriShown(t, shown)
		wantQRReadable(t, shown[strings.LastIndex(shown, "otpauth://"):], uri)
		return codeNow(t, en, 0)
	}
	enter := func(string) string { return "" }

	// A wrong password: requisite ends the stack before otpgate.
	r := runDynChat(loginTimeout, []dynStep{{sudoPrompt, func(string) string { return "wrong-" + u.password }}},
		func(ctx context.Context) *exec.Cmd { return sudoCmd(ctx, u) })
	wantRefused(t, "sudo, wrong password", r)
	if strings.Contains(r.stdout, "otpauth") {
		t.Fatalf("enrollment offered without the password: %s", r)
	}

	r = runDynChat(loginTimeout, []dynStep{{sudoPrompt, pass}, {enrollCodePrompt, enroll}, {backupPrompt, enter}},
		func(ctx context.Context) *exec.Cmd { return sudoCmd(ctx, u) })
	wantOK(t, "sudo first login", r, rootMarker)
	if st := e.status(t, u); !st.Enrolled {
		t.Fatal("not enrolled after sudo's first login")
	}
	r = runSudo(u, []step{{sudoPrompt, u.password}, {codePrompt, codeNow(t, en, +1)}})
	wantOK(t, "sudo after enrolling", r, rootMarker)

	// su: the target's password, then the target enrolls.
	caller, target := newUser(t), newUser(t)
	suStack := stack("requisite pam_unix.so", e.auth("required", "first_login"))
	r = runSuDyn(t, caller, target, suStack, []dynStep{{"Password: ", func(string) string { return target.password }},
		{enrollCodePrompt, enroll}, {backupPrompt, enter}})
	wantOK(t, "su first login", r, marker(target))
	if st := e.status(t, target); !st.Enrolled {
		t.Fatal("not enrolled after su's first login")
	}
}

// sudoCmd is runSudo's command.
func sudoCmd(ctx context.Context, u *testUser) *exec.Cmd {
	cmd := command(ctx, "setpriv", "--reuid="+strconv.Itoa(u.uid), "--regid="+strconv.Itoa(u.gid), "--init-groups", "--",
		"sudo", "-S", "-k", "--", "/bin/sh", "-c", remoteCmd)
	cmd.Env = baseEnv("HOME="+u.home, "USER="+u.name, "LOGNAME="+u.name, "LC_ALL=C.UTF-8")
	cmd.Dir = "/"
	return cmd
}

// runSuDyn is runSu with computed answers.
func runSuDyn(t testing.TB, caller, target *testUser, stackText string, steps []dynStep) result {
	t.Helper()
	requireTools(t, "su", "unshare", "mount", "setpriv")
	stackFile := filepath.Join(t.TempDir(), "su.pam")
	writeFile(t, stackFile, "# otpgate end-to-end test stack for su\n"+stackText, 0o644)
	before := fileSum(t, "/etc/pam.d/su")
	r := runDynChat(loginTimeout, steps, func(ctx context.Context) *exec.Cmd {
		cmd := command(ctx, "unshare", "--mount", "--propagation", "private", "--",
			"/bin/sh", "-c", `mount --bind "$1" /etc/pam.d/su && exec setpriv --reuid="$2" --regid="$3" --init-groups -- su -c "$5" "$4"`,
			"sh", stackFile, strconv.Itoa(caller.uid), strconv.Itoa(caller.gid), target.name, remoteCmd)
		cmd.Env = baseEnv("HOME="+caller.home, "USER="+caller.name, "LOGNAME="+caller.name, "LC_ALL=C.UTF-8")
		cmd.Dir = "/"
		return cmd
	})
	if fileSum(t, "/etc/pam.d/su") != before {
		t.Errorf("/etc/pam.d/su changed during the test")
	}
	return r
}

var (
	firstLoginSSHCheckOnce sync.Once
	firstLoginSSHCheckBins sshcheckSetup
)

// TestFirstLoginSSHCheck: the ForceCommand route, with a helper whose
// config has first_login on: after the key, on a terminal, a user with no
// secret enrolls inside the login and the shell runs; the next login asks
// for a code; without a terminal nothing is offered.
func TestFirstLoginSSHCheck(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen", "id")
	b := needOtpgate(t)
	root := repoRoot(t)
	firstLoginSSHCheckOnce.Do(func() {
		firstLoginSSHCheckBins = buildSSHCheck(root, b, "sshcheck-first-login", firstLoginConfig)
	})
	sc := &firstLoginSSHCheckBins
	if sc.err != nil {
		t.Fatal(sc.err)
	}
	e := sc.env
	u, n := newUser(t), newUser(t)
	s := startSSHD(t, sshdConfig{
		authMethods: "publickey",
		pamStack:    unixStack,
		allowUsers:  []string{u.name, n.name},
		extra:       []string{forceCommandInclude(t, sc.cli, []string{primaryGroup(t, u), primaryGroup(t, n)})},
	})
	c := newSSHClient(t, u)
	host, _ := os.Hostname()
	var en enrollment
	args := append(c.sshOpts(s), "-tt", "-e", "none", "-o", "BatchMode=yes", "127.0.0.1", "--", remoteCmd)
	r := c.terminalWith(t, s, args, []string{"LC_ALL=C.UTF-8"}, func(p *ptySession) {
		p.await(enrollCodePrompt)
		shown := p.out.String()
		var uri string
		uri, en = uriShown(t, shown)
		wantQRReadable(t, shown, uri)
		p.send(wrongCode(t, en) + "\r")
		p.await("That code does not match")
		p.await(enrollCodePrompt)
		p.send(codeNow(t, en, 0) + "\r")
		p.await(backupPrompt)
		p.send("\r")
	})
	logResult(t, "sshcheck first login", r)
	mustNotHang(t, "sshcheck first login", r)
	if r.exit != 0 || !strings.Contains(r.stdout, marker(u)) {
		t.Fatalf("sshcheck first login: want the command to run: %s", r)
	}
	if st := e.status(t, u); !st.Enrolled || st.Failures != 0 {
		t.Fatalf("after the first login: %+v", st)
	}
	// Next login: sshcheck's own code prompt.
	prompt := fmt.Sprintf("Verification code for %s@%s: ", u.name, host)
	r = c.terminalWith(t, s, args, nil, func(p *ptySession) {
		p.await(prompt)
		p.send(codeNow(t, en, +1) + "\r")
	})
	if r.exit != 0 || !strings.Contains(r.stdout, marker(u)) || strings.Contains(r.stdout[strings.Index(r.stdout, prompt):], "otpauth") {
		t.Fatalf("next login: want the code prompt and the command: %s", r)
	}

	// Without a terminal (ssh host cmd with OTPGATE_CODE): no enrollment,
	// denied as not enrolled.
	cn := newSSHClient(t, n)
	r = cn.sshRun(s, "123456", remoteCmd)
	wantSSHCheckDenied(t, "no terminal, not enrolled", r, "is not enrolled")
	if strings.Contains(r.stderr, "otpauth") {
		t.Fatalf("enrollment offered without a terminal: %s", r)
	}
	if st := e.status(t, n); st.Enrolled {
		t.Fatal("a secret was stored without a terminal")
	}
}
