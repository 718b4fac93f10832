package e2e

// otpgate through the daemon (issue 8): a real `otpgate-helper --listen
// SOCKET` process answers sshd (publickey then code; password then code),
// sudo, su, pamtester run by a user for their own account (a screen
// locker), and otpgate status, enroll and backup-codes run by a normal
// user; and the exactness of the core (20 logins with one code, 50 wrong
// codes at once) holds through it.
//
// Every pam.d line here says mode=daemon and names a helper= that does not
// exist, so exec could not have answered: a login that gets in was
// answered by the daemon. The otpgate built here has the test's socket
// compiled in and a launcher path that does not exist, and the helper is
// not setuid: self-service can only go through the daemon. Where the
// daemon's log lines reach its standard error (no /dev/log, as in most
// containers), the tests also count them: one line per attempt, with the
// service a root host named, or self-NAME for a user's own process.
// Each front-door test also stops the daemon and shows that the same
// login or command then fails; the two concurrency tests need every login
// to reach the code prompt, which only the daemon can show.
//
// The daemon's helper is built with -X main.selfConfig=<dir>/self.toml;
// the tests that use self mode write that file (the daemon reads its
// config on each request) to point at their own store. One socket and one
// self.toml serve every test, each test with its own daemon process: the
// tests of this file must not run in parallel (none calls t.Parallel).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// daemonSet is the helper the daemon runs, the otpgate that reaches it,
// and the paths compiled into them.
type daemonSet struct {
	module     string // pam_otpgate.so of the harness
	helper     string // otpgate-helper, -X main.selfConfig=selfConfig; not setuid
	cli        string // otpgate, -X helper.SocketPath=socket, -X helper.InstalledPath=noLauncher
	socket     string // where the daemon listens: run/helper.sock in a root-owned 0755 directory
	selfConfig string // the config self mode reads; each self-mode test writes it
	noLauncher string // the launcher otpgate would exec: does not exist
	noHelper   string // the helper= of every pam.d line: does not exist
	err        error
}

var (
	daemonOnce sync.Once
	daemonBins daemonSet
)

// needDaemonSet builds (once) the helper and otpgate for the daemon tests,
// in a root-owned 0755 directory inside the harness's build directory.
func needDaemonSet(t testing.TB) *daemonSet {
	t.Helper()
	b := needOtpgate(t)
	requireTools(t, "setpriv")
	root := repoRoot(t)
	daemonOnce.Do(func() { daemonBins = buildDaemonSet(root, b) })
	if daemonBins.err != nil {
		t.Fatal(daemonBins.err)
	}
	return &daemonBins
}

func buildDaemonSet(root string, b *otpgateBins) daemonSet {
	dir := filepath.Join(b.dir, "daemon")
	s := daemonSet{
		module:     b.module,
		helper:     filepath.Join(dir, "otpgate-helper"),
		cli:        filepath.Join(dir, "otpgate"),
		socket:     filepath.Join(dir, "run", "helper.sock"),
		selfConfig: filepath.Join(dir, "self.toml"),
		noLauncher: filepath.Join(dir, "no-launcher", "otpgate-launch-helper"),
		noHelper:   filepath.Join(dir, "no-helper", "otpgate-helper"),
	}
	for _, d := range []string{dir, filepath.Dir(s.socket)} {
		if s.err = os.Mkdir(d, 0o755); s.err == nil {
			s.err = os.Chmod(d, 0o755)
		}
		if s.err != nil {
			return s
		}
	}
	const pkg = "github.com/otpgate/otpgate/internal/helper."
	goTool, _ := lookTool("go")
	for _, bl := range []struct{ out, pkg, ldflags string }{
		{s.helper, "./cmd/otpgate-helper", "-X main.selfConfig=" + s.selfConfig},
		{s.cli, "./cmd/otpgate", "-X " + pkg + "SocketPath=" + s.socket + " -X " + pkg + "InstalledPath=" + s.noLauncher},
	} {
		start := time.Now()
		r := runCmd(buildTimeout, nil, func(ctx context.Context) *exec.Cmd {
			cmd := command(ctx, goTool, "build", "-trimpath", "-ldflags", bl.ldflags, "-o", bl.out, bl.pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			return cmd
		})
		if r.exit != 0 || r.timedOut {
			s.err = fmt.Errorf("building %s: %s", bl.pkg, r)
			return s
		}
		fmt.Fprintf(os.Stderr, "e2e: built %s for the daemon tests in %v\n", filepath.Base(bl.out), time.Since(start).Round(time.Millisecond))
		if s.err = os.Chown(bl.out, 0, 0); s.err != nil {
			return s
		}
		// 0755, no setuid bit: nothing here is setuid.
		if s.err = os.Chmod(bl.out, 0o755); s.err != nil {
			return s
		}
	}
	return s
}

// daemonLifetime bounds one daemon process: it is killed with its process
// group when the time is up even if a test forgot it.
const daemonLifetime = 3 * time.Minute

// helperDaemon is one `otpgate-helper --listen` process on the set's
// socket.
type helperDaemon struct {
	set    *daemonSet
	cmd    *exec.Cmd
	cancel context.CancelFunc
	exited chan struct{}
	logs   *syncBuffer // its standard output and error, over every start
}

// startHelperDaemon starts the daemon and waits until it listens. It is
// stopped when the test ends (its log is shown when the test failed).
func startHelperDaemon(t testing.TB, set *daemonSet) *helperDaemon {
	t.Helper()
	d := &helperDaemon{set: set, logs: &syncBuffer{}}
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("otpgate-helper daemon log:\n%s", d.logs.String())
		}
	})
	d.start(t)
	return d
}

// start runs the daemon (again) and waits until its socket listens.
func (d *helperDaemon) start(t testing.TB) {
	t.Helper()
	if d.cmd != nil {
		t.Fatal("the daemon runs already")
	}
	ctx, cancel := context.WithTimeout(context.Background(), daemonLifetime)
	cmd := command(ctx, d.set.helper, "--listen", d.set.socket)
	cmd.Stdout, cmd.Stderr = d.logs, d.logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	d.cmd, d.cancel, d.exited = cmd, cancel, make(chan struct{})
	exited := d.exited
	go func() { cmd.Wait(); close(exited) }()
	for deadline := time.Now().Add(10 * time.Second); !unixListening(d.set.socket); {
		select {
		case <-exited:
			d.cmd = nil
			cancel()
			t.Fatalf("otpgate-helper --listen %s exited before listening:\n%s", d.set.socket, d.logs.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.stop(t)
			t.Fatalf("otpgate-helper --listen %s did not listen within 10 s:\n%s", d.set.socket, d.logs.String())
		}
	}
}

// stop ends the daemon with SIGTERM, as systemctl stop does, and wants it
// to exit 0 within 10 s (it lets sessions in progress finish for 5 s at
// most). The socket file stays: a client's connect is then refused.
func (d *helperDaemon) stop(t testing.TB) {
	t.Helper()
	if d.cmd == nil {
		return
	}
	cmd := d.cmd
	d.cmd = nil
	defer d.cancel()
	syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-d.exited
		t.Errorf("the daemon did not stop within 10 s of SIGTERM")
		return
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("the daemon exited %d after SIGTERM, want 0:\n%s", code, d.logs.String())
	}
	if unixListening(d.set.socket) {
		t.Errorf("something still listens on %s after the daemon stopped", d.set.socket)
	}
}

// unixListening reports whether a listening Unix socket is bound to path
// (/proc/net/unix: flags 00010000 is __SO_ACCEPTCON, a socket after
// listen()).
func unixListening(path string) bool {
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 8 && f[7] == path && f[3] == "00010000" {
			return true
		}
	}
	return false
}

// auth is the pam.d auth line for pam_otpgate that reaches this daemon
// only: mode=daemon, and a helper= that does not exist. config= is what
// the daemon's trusted mode reads ("" for none: self mode reads the set's
// selfConfig whatever the line says).
func (d *helperDaemon) auth(control, config string, args ...string) string {
	line := []string{control, d.set.module, "socket=" + d.set.socket, "mode=daemon", "helper=" + d.set.noHelper,
		"timeout=" + strconv.Itoa(moduleTimeout)}
	if config != "" {
		line = append(line, "config="+config)
	}
	return strings.Join(append(line, args...), " ")
}

// logPrefix starts each log line the daemon writes to its standard error
// when it has no syslog.
const logPrefix = "otpgate: log: "

// logsLocally reports whether the daemon writes its log lines to its
// standard error (it found no syslog socket): then the tests count them.
func (d *helperDaemon) logsLocally() bool {
	return strings.Contains(d.logs.String(), logPrefix+"helper: serving")
}

// attempts counts the daemon's attempt lines for user u with every one of
// the given fields ("outcome=denied", "service=self-x", ...).
func (d *helperDaemon) attempts(u *testUser, fields ...string) int {
	n := 0
	for _, line := range strings.Split(d.logs.String(), "\n") {
		rest, ok := strings.CutPrefix(line, logPrefix)
		if !ok {
			continue
		}
		have := map[string]bool{}
		for _, f := range strings.Fields(rest) {
			have[f] = true
		}
		if !have["user="+u.name] || !strings.Contains(rest, " outcome=") {
			continue
		}
		all := true
		for _, f := range fields {
			all = all && have[f]
		}
		if all {
			n++
		}
	}
	return n
}

// wantAttempts checks the count of attempt lines for u with the fields,
// when the daemon logs to its standard error.
func (d *helperDaemon) wantAttempts(t testing.TB, u *testUser, want int, fields ...string) {
	t.Helper()
	if !d.logsLocally() {
		t.Logf("the daemon logs to syslog: its attempt lines are not counted here")
		return
	}
	// The lines reach the test through a pipe and a copying goroutine,
	// which may lag behind the verdict the client already has: wait a
	// little for the last ones.
	got := d.attempts(u, fields...)
	for end := time.Now().Add(3 * time.Second); got < want && time.Now().Before(end); got = d.attempts(u, fields...) {
		time.Sleep(20 * time.Millisecond)
	}
	if got != want {
		t.Errorf("the daemon logged %d attempts of %s with %q, want %d", got, u.name, fields, want)
	}
}

// fullStatus is `otpgate status --json`, with what status leaves out.
type fullStatus struct {
	status
	LastSuccess time.Time `json:"last_success"`
}

func (e *otpEnv) fullStatus(t testing.TB, u *testUser) fullStatus {
	t.Helper()
	r := e.cli(t, "status", "--user", u.name, "--json")
	var s fullStatus
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("otpgate status --json: %v: %s", err, r)
	}
	return s
}

// selfEnv points the set's self-mode config at a new store (lockout after
// maxFailures) and returns it as an otpEnv, whose cli (root, with
// --config) reads and changes that store directly, not through the
// daemon.
func selfEnv(t testing.TB, set *daemonSet, maxFailures int) *otpEnv {
	t.Helper()
	e := &otpEnv{bins: needOtpgate(t), config: set.selfConfig, store: filepath.Join(t.TempDir(), "store")}
	if err := os.Mkdir(e.store, 0o700); err != nil {
		t.Fatal(err)
	}
	tmp := set.selfConfig + ".tmp"
	writeFile(t, tmp, configText(e.store, maxFailures), 0o644)
	if err := os.Rename(tmp, set.selfConfig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(set.selfConfig) })
	return e
}

// asUser makes a Cmd that runs name args as u (setpriv: real and
// effective uid and gid, u's groups, no PAM of its own), with u's HOME.
func asUser(ctx context.Context, u *testUser, name string, args ...string) *exec.Cmd {
	cmd := command(ctx, "setpriv", append([]string{"--reuid=" + strconv.Itoa(u.uid), "--regid=" + strconv.Itoa(u.gid),
		"--init-groups", "--", name}, args...)...)
	cmd.Env = baseEnv("HOME="+u.home, "USER="+u.name, "LOGNAME="+u.name)
	cmd.Dir = "/"
	return cmd
}

// runDialog runs the command mk makes with stdout and stderr merged and
// answers once: reply sees everything printed so far, each time more
// comes, and returns the line to send, or false to wait. Standard input is
// closed after the answer (or when reply never answers), so a further
// prompt reads end-of-file.
func runDialog(timeout time.Duration, reply func(out string) (string, bool), mk func(ctx context.Context) *exec.Cmd) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := mk(ctx)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return result{exit: -1, err: err}
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return result{exit: -1, err: err}
	}
	exited, chatDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(chatDone)
		defer stdin.Close()
		for {
			changed := out.wait()
			if line, ok := reply(out.String()); ok {
				stdin.Write([]byte(line + "\n"))
				return
			}
			select {
			case <-changed:
			case <-exited:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	err = cmd.Wait()
	close(exited)
	<-chatDone
	r := result{stdout: out.String(), dur: time.Since(start), err: err, exit: -1}
	if cmd.ProcessState != nil {
		r.exit = cmd.ProcessState.ExitCode()
	}
	r.timedOut = ctx.Err() == context.DeadlineExceeded
	return r
}

// oathCode is totpAt for a goroutine other than the test's: it returns
// an error where totpAt would stop the test.
func oathCode(secret string, at time.Time) (string, error) {
	if secret == "" {
		return "", fmt.Errorf("no secret")
	}
	r := run(setupTimeout, nil, "oathtool", "--totp", "-b", "--now=@"+strconv.FormatInt(at.Unix(), 10), secret)
	code := strings.TrimSpace(r.stdout)
	if r.exit != 0 || len(code) != 6 {
		return "", fmt.Errorf("oathtool: %s", r)
	}
	return code, nil
}

// pamtesterOK is what pamtester prints when the stack succeeded.
const pamtesterOK = "pamtester: successfully authenticated"

// wantPamtester checks a pamtester run: ok, or refused.
func wantPamtester(t testing.TB, what string, r result, ok bool) {
	t.Helper()
	logResult(t, what, r)
	mustNotHang(t, what, r)
	if got := r.exit == 0 && strings.Contains(r.stdout, pamtesterOK); got != ok || (!ok && r.exit != 1) {
		t.Fatalf("%s: want authenticated=%v (exit 0, else 1): %s", what, ok, r)
	}
}

// TestDaemonSSH: sshd, publickey then code and password then code, both
// answered by the daemon; with the daemon stopped the same login is
// denied without a prompt and nothing is counted; started again, it
// works.
func TestDaemonSSH(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen")
	set := needDaemonSet(t)
	e := newOTPEnv(t, 5)
	d := startHelperDaemon(t, set)
	k, p := newUser(t), newUser(t)
	ken, pen := e.enroll(t, k), e.enroll(t, p)
	keySSHD := startSSHD(t, sshdConfig{
		authMethods: "publickey,keyboard-interactive",
		pamStack:    stack(d.auth("required", e.config)),
		allowUsers:  []string{k.name},
	})
	pwSSHD := startSSHD(t, sshdConfig{
		authMethods: "keyboard-interactive",
		pamStack:    stack("required pam_unix.so", d.auth("required", e.config)),
		allowUsers:  []string{p.name},
	})
	kc, pc := newSSHClient(t, k), newSSHClient(t, p)
	const keyMethods, pwMethods = "publickey,keyboard-interactive", "keyboard-interactive"

	t.Run("publickey then code", func(t *testing.T) {
		a := newAskpass(t, answers{code: codeNow(t, ken, 0)})
		wantLogin(t, "right code", kc.login(keySSHD, keyMethods, a, remoteCmd), k)
		wantPrompts(t, a, codePrompt)
		wantDenied(t, "replayed code", kc.login(keySSHD, keyMethods, a, remoteCmd), k)
		a.set(t, answers{code: wrongCode(t, ken)})
		wantDenied(t, "wrong code", kc.login(keySSHD, keyMethods, a, remoteCmd), k)
		wantPrompts(t, a, codePrompt, codePrompt)
		wantStatus(t, e, k, 2, false)
		d.wantAttempts(t, k, 1, "service="+keySSHD.service, "outcome=accepted", "rhost=127.0.0.1")
		d.wantAttempts(t, k, 1, "outcome=denied", "reason=replayed")
		d.wantAttempts(t, k, 1, "outcome=denied", "reason=wrong-code")
	})

	t.Run("password then code", func(t *testing.T) {
		a := newAskpass(t, answers{password: p.password, code: codeNow(t, pen, 0)})
		wantLogin(t, "right password and code", pc.login(pwSSHD, pwMethods, a, remoteCmd), p)
		wantPrompts(t, a, "Password:", codePrompt)
		a.set(t, answers{password: p.password, code: wrongCode(t, pen)})
		wantDenied(t, "right password, wrong code", pc.login(pwSSHD, pwMethods, a, remoteCmd), p)
		wantPrompts(t, a, "Password:", codePrompt)
		wantStatus(t, e, p, 1, false)
		d.wantAttempts(t, p, 1, "service="+pwSSHD.service, "outcome=accepted")
		d.wantAttempts(t, p, 1, "service="+pwSSHD.service, "outcome=denied", "reason=wrong-code")
	})

	t.Run("daemon stopped, then started", func(t *testing.T) {
		d.stop(t)
		a := newAskpass(t, answers{code: codeNow(t, ken, +1)})
		wantDenied(t, "publickey then code, no daemon", kc.login(keySSHD, keyMethods, a, remoteCmd), k)
		wantPrompts(t, a) // mode=daemon: denied before any prompt
		wantStatus(t, e, k, 2, false)
		ap := newAskpass(t, answers{password: p.password, code: codeNow(t, pen, +1)})
		wantDenied(t, "password then code, no daemon", pc.login(pwSSHD, pwMethods, ap, remoteCmd), p)
		wantPrompts(t, ap, "Password:")
		wantStatus(t, e, p, 1, false)

		d.start(t)
		wantLogin(t, "publickey then code, daemon started again", kc.login(keySSHD, keyMethods, a, remoteCmd), k)
		wantStatus(t, e, k, 0, false)
		wantLogin(t, "password then code, daemon started again", pc.login(pwSSHD, pwMethods, ap, remoteCmd), p)
		wantStatus(t, e, p, 0, false)
	})
}

// TestDaemonSudo: sudo (pam_unix then pam_otpgate) answered by the daemon
// in trusted mode (sudo is setuid root); with the daemon stopped the right
// password and code are refused.
func TestDaemonSudo(t *testing.T) {
	requireTools(t, "sudo", "visudo", "setpriv")
	set := needDaemonSet(t)
	e := newOTPEnv(t, 5)
	d := startHelperDaemon(t, set)
	u := newUser(t)
	en := e.enroll(t, u)
	svc := "sudo-" + prefix + randHex(3)
	writePAMService(t, svc, stack("required pam_unix.so", d.auth("required", e.config)))
	sudoSetup(t, u, svc)

	r := runSudo(u, []step{{sudoPrompt, u.password}, {codePrompt, codeNow(t, en, 0)}})
	wantOK(t, "sudo, right password and code", r, rootMarker)

	r = runSudo(u, []step{{sudoPrompt, u.password}, {codePrompt, wrongCode(t, en)}})
	wantRefused(t, "sudo, right password, wrong code", r)
	if !strings.Contains(r.stdout, codePrompt) {
		t.Errorf("sudo never showed the code prompt: %s", r)
	}
	wantStatus(t, e, u, 1, false)
	d.wantAttempts(t, u, 1, "service="+svc, "outcome=accepted")
	d.wantAttempts(t, u, 1, "service="+svc, "outcome=denied", "reason=wrong-code")

	d.stop(t)
	r = runSudo(u, []step{{sudoPrompt, u.password}, {codePrompt, codeNow(t, en, +1)}})
	wantRefused(t, "sudo with the daemon stopped", r)
	if strings.Contains(r.stdout, codePrompt) {
		t.Errorf("the code was asked for with no daemon and mode=daemon: %s", r)
	}
	wantStatus(t, e, u, 1, false)
}

// TestDaemonSu: a normal user runs su to another user (pam_unix then
// pam_otpgate; see runSu), answered by the daemon in trusted mode (su is
// setuid root); with the daemon stopped the right answers are refused.
func TestDaemonSu(t *testing.T) {
	requireTools(t, "su", "unshare", "mount", "setpriv")
	set := needDaemonSet(t)
	e := newOTPEnv(t, 5)
	d := startHelperDaemon(t, set)
	caller, target := newUser(t), newUser(t)
	en := e.enroll(t, target)
	st := stack("required pam_unix.so", d.auth("required", e.config))

	r := runSu(t, caller, target, st, []step{{"Password: ", target.password}, {codePrompt, codeNow(t, en, 0)}})
	wantOK(t, "su, right password and code", r, marker(target))

	r = runSu(t, caller, target, st, []step{{"Password: ", target.password}, {codePrompt, wrongCode(t, en)}})
	wantRefused(t, "su, right password, wrong code", r)
	if !strings.Contains(r.stdout, codePrompt) {
		t.Errorf("su never showed the code prompt: %s", r)
	}
	wantStatus(t, e, target, 1, false)
	d.wantAttempts(t, target, 1, "service=su", "outcome=accepted")
	d.wantAttempts(t, target, 1, "service=su", "outcome=denied", "reason=wrong-code")

	d.stop(t)
	r = runSu(t, caller, target, st, []step{{"Password: ", target.password}, {codePrompt, codeNow(t, en, +1)}})
	wantRefused(t, "su with the daemon stopped", r)
	if strings.Contains(r.stdout, codePrompt) {
		t.Errorf("the code was asked for with no daemon and mode=daemon: %s", r)
	}
	wantStatus(t, e, target, 1, false)
}

// TestDaemonScreenLocker: a PAM client that runs as the user (a screen
// locker; here pamtester run by the user for their own account, service
// in /etc/pam.d). The module connects as that uid, so the daemon serves it
// in self mode (its compiled-in config): the right code gets in, a wrong
// one is counted, the lockout holds, and another user's account is
// refused without a prompt and without touching it. With the daemon
// stopped the right code is refused.
func TestDaemonScreenLocker(t *testing.T) {
	requireTools(t, "pamtester", "setpriv")
	set := needDaemonSet(t)
	d := startHelperDaemon(t, set)
	e := selfEnv(t, set, 3)
	u, o := newUser(t), newUser(t)
	en, oen := e.enroll(t, u), e.enroll(t, o)
	svc := "locker-" + prefix + randHex(3)
	writePAMService(t, svc, stack(d.auth("required", "")))
	locker := func(account, code string) result {
		return runChat(loginTimeout, []step{{codePrompt, code}}, func(ctx context.Context) *exec.Cmd {
			return asUser(ctx, u, "pamtester", svc, account, "authenticate")
		})
	}
	selfSvc := "service=self-" + svc

	wantPamtester(t, "right code", locker(u.name, codeNow(t, en, 0)), true)
	if st := e.fullStatus(t, u); st.Failures != 0 || st.LastSuccess.IsZero() {
		t.Fatalf("after the right code: %+v", st)
	}
	wantPamtester(t, "wrong code", locker(u.name, wrongCode(t, en)), false)
	wantStatus(t, e, u, 1, false)
	d.wantAttempts(t, u, 1, selfSvc, "outcome=accepted")
	d.wantAttempts(t, u, 1, selfSvc, "outcome=denied", "reason=wrong-code")

	r := locker(o.name, codeNow(t, oen, 0))
	wantPamtester(t, "another user's account with their right code", r, false)
	if strings.Contains(r.stdout, codePrompt) {
		t.Errorf("the code for another user's account was asked for: %s", r)
	}
	if st := e.fullStatus(t, o); st.Failures != 0 || !st.LastSuccess.IsZero() || st.Locked {
		t.Errorf("the other user's state was touched: %+v", st)
	}
	d.wantAttempts(t, o, 0)
	d.wantAttempts(t, u, 1, "outcome=refused", "reason=other-user")

	for i := 2; i <= 3; i++ {
		wantPamtester(t, fmt.Sprintf("wrong code %d of 3", i), locker(u.name, wrongCode(t, en)), false)
	}
	wantStatus(t, e, u, 3, true)
	wantPamtester(t, "right code while locked", locker(u.name, codeNow(t, en, +1)), false)
	wantStatus(t, e, u, 3, true)
	d.wantAttempts(t, u, 1, selfSvc, "outcome=locked")

	if r := e.cli(t, "unlock", "--user", u.name); r.exit != 0 {
		t.Fatalf("otpgate unlock: %s", r)
	}
	d.stop(t)
	r = locker(u.name, codeNow(t, en, +1))
	wantPamtester(t, "right code with the daemon stopped", r, false)
	if strings.Contains(r.stdout, codePrompt) {
		t.Errorf("the code was asked for with no daemon and mode=daemon: %s", r)
	}
	wantStatus(t, e, u, 0, false)
}

// uriLine finds the otpauth:// URI otpgate enroll prints.
var uriLine = regexp.MustCompile(`URI: (otpauth://\S+)`)

// TestDaemonSelfService: a normal user's otpgate status, enroll and
// backup-codes go through the daemon, with the helper not setuid and no
// launcher installed at all. enroll is confirmed with a code of the new
// secret read from the URI it printed; backup-codes after a wrong code
// (counted) and a right one; the new backup codes are what the store
// holds. With the daemon stopped, otpgate says it needs the daemon or the
// launcher.
func TestDaemonSelfService(t *testing.T) {
	requireTools(t, "setpriv")
	set := needDaemonSet(t)
	for _, p := range []string{set.helper, set.cli} {
		if st, err := os.Stat(p); err != nil || st.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
			t.Fatalf("%s: %v, mode %v; want it there and not setuid", p, err, st.Mode())
		}
	}
	if _, err := os.Lstat(set.noLauncher); !os.IsNotExist(err) {
		t.Fatalf("%s: %v; want no launcher there", set.noLauncher, err)
	}
	d := startHelperDaemon(t, set)
	e := selfEnv(t, set, 5)
	u := newUser(t)
	cli := func(stdin string, args ...string) result {
		steps := []step{}
		if stdin != "" {
			steps = append(steps, step{codePrompt, stdin})
		}
		return runChat(loginTimeout, steps, func(ctx context.Context) *exec.Cmd { return asUser(ctx, u, set.cli, args...) })
	}
	// runChat merges stderr into stdout: the JSON follows the prompt
	// (which ends without a newline), if there was one.
	lastJSON := func(what string, r result, v any) {
		t.Helper()
		logResult(t, what, r)
		mustNotHang(t, what, r)
		text := r.stdout
		if i := strings.LastIndex(text, codePrompt); i >= 0 {
			text = text[i+len(codePrompt):]
		}
		if r.exit != 0 || json.Unmarshal([]byte(text), v) != nil {
			t.Fatalf("%s: want exit 0 and only JSON after any prompt: %s", what, r)
		}
	}
	userStatus := func(what string) fullStatus {
		t.Helper()
		var st fullStatus
		lastJSON(what, cli("", "status", "--json"), &st)
		return st
	}

	if st := userStatus("status before enrolling"); st.Enrolled {
		t.Fatalf("enrolled before enroll: %+v", st)
	}
	d.wantAttempts(t, u, 0)

	var secret string
	var codeErr error
	r := runDialog(loginTimeout, func(out string) (string, bool) {
		m := uriLine.FindStringSubmatch(out)
		if m == nil || !strings.Contains(out, "Enter the 6-digit code the app shows: ") {
			return "", false
		}
		if uri, err := url.Parse(m[1]); err == nil {
			secret = uri.Query().Get("secret")
		}
		var code string
		code, codeErr = oathCode(secret, time.Now())
		return code, true // no code: an empty answer, and enroll fails
	}, func(ctx context.Context) *exec.Cmd { return asUser(ctx, u, set.cli, "enroll", "--qr", "none") })
	logResult(t, "enroll", r)
	mustNotHang(t, "enroll", r)
	if r.exit != 0 || codeErr != nil || !strings.Contains(r.stdout, "Enrolled "+u.name+".") {
		t.Fatalf("enroll with a code of the new secret (%v): want exit 0 and \"Enrolled %s.\": %s", codeErr, u.name, r)
	}
	en := enrollment{Secret: secret}
	st := e.fullStatus(t, u) // read by root from the store itself
	if !st.Enrolled || st.BackupLeft == 0 || st.Failures != 0 {
		t.Fatalf("the store after a self enroll: %+v", st)
	}
	if us := userStatus("status after enrolling"); !us.Enrolled || us.BackupLeft != st.BackupLeft {
		t.Fatalf("status through the daemon: %+v, the store: %+v", us, st)
	}

	r = cli(wrongCode(t, en), "backup-codes", "--json")
	logResult(t, "backup-codes, wrong code", r)
	mustNotHang(t, "backup-codes, wrong code", r)
	if r.exit == 0 || !strings.Contains(r.stdout, codePrompt) {
		t.Fatalf("backup-codes with a wrong code: want a denial after the prompt: %s", r)
	}
	if us := userStatus("status after a wrong code"); us.Failures != 1 {
		t.Fatalf("after a wrong code to backup-codes: %+v, want 1 failure", us)
	}
	var codes struct {
		User        string   `json:"user"`
		BackupCodes []string `json:"backup_codes"`
	}
	lastJSON("backup-codes, right code", cli(codeNow(t, en, +1), "backup-codes", "--json"), &codes)
	if codes.User != u.name || len(codes.BackupCodes) != st.BackupLeft {
		t.Fatalf("backup-codes --json: %+v, want %d codes for %s", codes, st.BackupLeft, u.name)
	}
	wantStatus(t, e, u, 0, false)
	verifyCLI(t, e, u, codes.BackupCodes[0], 0) // the new codes are the stored ones
	d.wantAttempts(t, u, 1, "service=self-otpgate", "outcome=denied", "reason=wrong-code")
	d.wantAttempts(t, u, 1, "service=self-otpgate", "outcome=accepted")

	d.stop(t)
	r = cli("", "status", "--json")
	logResult(t, "status with the daemon stopped", r)
	mustNotHang(t, "status with the daemon stopped", r)
	if r.exit == 0 || !strings.Contains(r.stdout, set.socket) {
		t.Fatalf("status with no daemon and no launcher: want a failure naming the socket: %s", r)
	}
}

// TestDaemonParallelOneCode: 20 ssh logins with one code, all held at the
// code prompt (20 connections to the daemon at once) and released
// together: exactly one gets in, the other 19 are counted as replays.
func TestDaemonParallelOneCode(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen")
	const n = 20
	set := needDaemonSet(t)
	e := newOTPEnv(t, 50)
	d := startHelperDaemon(t, set)
	u := newUser(t)
	en := e.enroll(t, u)
	c := newSSHClient(t, u)
	s := startSSHD(t, sshdConfig{
		authMethods: "publickey,keyboard-interactive",
		pamStack:    stack(d.auth("required", e.config)),
		allowUsers:  []string{u.name},
	})
	gate := filepath.Join(t.TempDir(), "gate")
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	gateW, err := os.OpenFile(gate, os.O_RDWR, 0) // the only writer: readers wait until it closes
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { gateW.Close() }) }
	var wg sync.WaitGroup
	defer wg.Wait()
	defer release()

	ps := make([]*askpass, n)
	results := make([]result, n)
	done := make(chan struct{}, n)
	begin := time.Now()
	for i := range ps {
		ps[i] = gatedAskpass(t, gate)
		wg.Go(func() {
			defer func() { done <- struct{}{} }()
			results[i] = c.login(s, "publickey,keyboard-interactive", ps[i], remoteCmd)
		})
	}
	prompted := func() int {
		k := 0
		for _, p := range ps {
			if b, _ := os.ReadFile(filepath.Join(p.dir, "prompts.log")); strings.Contains(string(b), "erification code") {
				k++
			}
		}
		return k
	}
	for deadline := time.Now().Add(20 * time.Second); prompted() < n; time.Sleep(20 * time.Millisecond) {
		if len(done) > 0 || time.Now().After(deadline) {
			t.Fatalf("%d of %d logins reached the code prompt (one ended early, or 20 s passed)", prompted(), n)
		}
	}
	atPrompt := time.Since(begin)
	code := codeNow(t, en, 0)
	for _, p := range ps {
		writeFile(t, filepath.Join(p.dir, "code"), code, 0o600)
	}
	released := time.Now()
	release()
	wg.Wait()
	t.Logf("%d logins at the code prompt after %v; all done %v after the release", n,
		atPrompt.Round(time.Millisecond), time.Since(released).Round(time.Millisecond))

	in, denied := 0, 0
	for i, r := range results {
		switch {
		case r.timedOut:
			t.Errorf("login %d hung: %s", i, r)
		case r.exit == 0 && strings.Contains(r.stdout, marker(u)):
			in++
		case r.exit == 255 && strings.Contains(r.stderr, "Permission denied"):
			denied++
		default:
			t.Errorf("login %d: neither in nor denied: %s", i, r)
		}
	}
	if in != 1 || denied != n-1 {
		t.Errorf("%d logins with one code: %d got in, %d denied; want 1 and %d", n, in, denied, n-1)
	}
	wantStatus(t, e, u, n-1, false)
	d.wantAttempts(t, u, 1, "outcome=accepted")
	d.wantAttempts(t, u, n-1, "outcome=denied", "reason=replayed")
}

// TestDaemonParallelWrongCodes: 50 pamtester runs (as root: trusted mode)
// with wrong codes, all held at the code prompt (50 connections to the
// daemon at once) and released together. max_failures is 50: all 50 are
// counted and the 50th locks; the right code is then refused and not
// counted.
func TestDaemonParallelWrongCodes(t *testing.T) {
	requireTools(t, "pamtester")
	const n = 50
	set := needDaemonSet(t)
	e := newOTPEnv(t, n)
	d := startHelperDaemon(t, set)
	u := newUser(t)
	en := e.enroll(t, u)
	svc := "pamtester-" + prefix + randHex(3)
	writePAMService(t, svc, stack(d.auth("required", e.config)))
	pamtester := func(reply func(string) (string, bool)) result {
		return runDialog(loginTimeout, reply, func(ctx context.Context) *exec.Cmd {
			return command(ctx, "pamtester", svc, u.name, "authenticate")
		})
	}

	wrong := wrongCode(t, en)
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	defer open()
	atPrompt, ended := make(chan struct{}, n), make(chan int, n)
	results := make([]result, n)
	var wg sync.WaitGroup
	begin := time.Now()
	for i := range results {
		wg.Go(func() {
			defer func() { ended <- i }()
			results[i] = pamtester(func(out string) (string, bool) {
				if !strings.Contains(out, codePrompt) {
					return "", false
				}
				atPrompt <- struct{}{}
				select {
				case <-release:
				case <-time.After(loginTimeout):
				}
				return wrong, true
			})
		})
	}
	deadline := time.After(20 * time.Second)
	for k := 0; k < n; k++ {
		select {
		case <-atPrompt:
		case i := <-ended:
			open()
			wg.Wait()
			t.Fatalf("pamtester %d ended before the release (%d of %d at the code prompt): %s", i, k, n, results[i])
		case <-deadline:
			open()
			wg.Wait()
			t.Fatalf("%d of %d pamtester runs reached the code prompt within 20 s", k, n)
		}
	}
	held := time.Since(begin)
	released := time.Now()
	open()
	wg.Wait()
	t.Logf("%d pamtester runs at the code prompt after %v; all done %v after the release", n,
		held.Round(time.Millisecond), time.Since(released).Round(time.Millisecond))
	for i, r := range results {
		mustNotHang(t, fmt.Sprintf("pamtester %d", i), r)
		if r.exit != 1 || strings.Contains(r.stdout, pamtesterOK) {
			t.Errorf("pamtester %d with a wrong code: want exit 1: %s", i, r)
		}
	}
	wantStatus(t, e, u, n, true)
	d.wantAttempts(t, u, n, "outcome=denied", "reason=wrong-code")

	right := codeNow(t, en, 0)
	r := pamtester(func(out string) (string, bool) { return right, strings.Contains(out, codePrompt) })
	wantPamtester(t, "right code once locked", r, false)
	wantStatus(t, e, u, n, true)
	d.wantAttempts(t, u, 1, "outcome=locked")
}
