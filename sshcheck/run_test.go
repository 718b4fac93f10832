package sshcheck

// Run with the real otpgate-helper. As root the helper is in trusted mode
// (the PAM module's request, config= pointing at a test store); the
// self mode of a normal user (through the setuid launcher) is tested end
// to end through sshd in internal/e2e. The helper is reached through a
// launcher built for it (pamtest.BuildLauncher), as otpgate reaches it.
// Only the final exec is replaced (Options.exec): the verification is
// never faked.

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/pamtest"
	"github.com/otpgate/otpgate/internal/passwd"
	"github.com/otpgate/otpgate/internal/testbin"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// fixture is a store with root enrolled, its config, and the launcher
// (otpgate-launch-helper) of the helper.
type fixture struct {
	helper string // the launcher, as helper.InstalledPath names it
	config string
	store  *keystore.Store
	secret []byte
	root   passwd.Entry
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the launcher must be root-owned and setuid, and root's code is checked in trusted mode")
	}
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("needs a C compiler (cc) for otpgate-launch-helper")
	}
	dir := t.TempDir()
	f := &fixture{helper: filepath.Join(dir, "otpgate-launch-helper")}
	if err := pamtest.BuildLauncher(f.helper, testbin.Build(t, "cmd/otpgate-helper")); err != nil {
		t.Fatal(err)
	}
	storeDir := filepath.Join(dir, "store")
	if err := os.Mkdir(storeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	f.config = filepath.Join(dir, "config.toml")
	if err := os.WriteFile(f.config, []byte(fmt.Sprintf("issuer = \"sshcheck-test\"\nstore = %q\n", storeDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(f.config)
	if err != nil {
		t.Fatal(err)
	}
	f.store = keystore.New(cfg.Store)
	m := &account.Manager{Store: f.store, Config: cfg}
	en, err := m.NewEnrollment("root")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Save(en, account.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	f.secret = en.Secret
	if f.root, err = passwd.LookupUID("/etc/passwd", 0); err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(f.root.Shell) {
		t.Skipf("root's shell in /etc/passwd is %q", f.root.Shell)
	}
	return f
}

// code returns the TOTP code steps periods from now.
func (f *fixture) code(t *testing.T, steps int) string {
	t.Helper()
	c, err := totp.CodeAt(f.secret, uint64(totp.Step(time.Now(), 30)+int64(steps)), totp.Default)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fixture) failures(t *testing.T) int {
	t.Helper()
	st, err := f.store.ReadState("root")
	if err != nil {
		t.Fatal(err)
	}
	return st.Failures
}

// execCall is what Run would have exec'd.
type execCall struct {
	path       string
	argv, envv []string
}

// run calls Run with the fixture's helper and config, and a session
// environment of env; it returns Run's error, what it would have exec'd
// (nil if nothing), and standard error.
func (f *fixture) run(t *testing.T, o Options, env ...string) (error, *execCall, string) {
	t.Helper()
	var stderr bytes.Buffer
	var call *execCall
	o.Helper, o.Config, o.Stderr = f.helper, f.config, &stderr
	if o.TTY == "" {
		o.TTY = "/nonexistent/tty" // a session without a terminal
	}
	o.Environ = append([]string{"PATH=/usr/bin:/bin", "HOME=/root", "USER=root", "SSH_CONNECTION=192.0.2.7 50000 127.0.0.1 22"}, env...)
	o.exec = func(path string, argv, envv []string) error {
		call = &execCall{path, argv, envv}
		return nil
	}
	err := Run(o)
	if call != nil && !strings.HasPrefix(fmt.Sprint(err), "denied: cannot run") {
		t.Fatalf("Run exec'd and then returned %v", err)
	}
	if call != nil {
		err = nil
	}
	return err, call, stderr.String()
}

func wantDenied(t *testing.T, what string, err error, call *execCall, want string) {
	t.Helper()
	if call != nil {
		t.Fatalf("%s: exec'd %+v", what, call)
	}
	if err == nil || !strings.HasPrefix(err.Error(), "denied: ") || !strings.Contains(err.Error(), want) {
		t.Fatalf("%s: got %v, want a denial about %q", what, err, want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("%s: the message is not one line: %q", what, err)
	}
}

func TestRunWithCodeFromEnvironment(t *testing.T) {
	f := newFixture(t)
	const cmd = `echo a; echo b | tr b c > marker; echo "$HOME"`
	err, call, _ := f.run(t, Options{}, "OTPGATE_CODE="+f.code(t, 0), "SSH_ORIGINAL_COMMAND="+cmd, "SHLVL=2")
	if err != nil || call == nil {
		t.Fatalf("right code: %v", err)
	}
	want := execCall{f.root.Shell, []string{filepath.Base(f.root.Shell), "-c", cmd},
		[]string{"PATH=/usr/bin:/bin", "HOME=/root", "USER=root", "SSH_CONNECTION=192.0.2.7 50000 127.0.0.1 22", "SSH_ORIGINAL_COMMAND=" + cmd}}
	if !reflect.DeepEqual(*call, want) {
		t.Errorf("exec'd\n%+v\nwant\n%+v", *call, want)
	}
	if n := f.failures(t); n != 0 {
		t.Errorf("failures %d after a right code", n)
	}

	err, call, _ = f.run(t, Options{}, "OTPGATE_CODE="+f.code(t, 0), "SSH_ORIGINAL_COMMAND=true")
	wantDenied(t, "the same code again", err, call, "wrong or already used code")
	if n := f.failures(t); n != 1 {
		t.Errorf("failures %d after a replayed code, want 1", n)
	}

	// No command: the login shell, as a login shell.
	err, call, _ = f.run(t, Options{}, "OTPGATE_CODE="+f.code(t, 1))
	if err != nil || call == nil || call.path != f.root.Shell || !reflect.DeepEqual(call.argv, []string{"-" + filepath.Base(f.root.Shell)}) {
		t.Fatalf("login shell: %v %+v", err, call)
	}
	for _, kv := range call.envv {
		if strings.HasPrefix(kv, "OTPGATE_CODE") {
			t.Errorf("the shell would see %s", kv)
		}
	}
}

func TestRunInternalSFTP(t *testing.T) {
	f := newFixture(t)
	server := filepath.Join(t.TempDir(), "sftp-server")
	if err := os.WriteFile(server, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	err, call, _ := f.run(t, Options{SFTPServer: server}, "SSH_ORIGINAL_COMMAND=internal-sftp -l INFO", "OTPGATE_CODE="+f.code(t, 0))
	if err != nil || call == nil || call.path != server || !reflect.DeepEqual(call.argv, []string{"sftp-server", "-l", "INFO"}) {
		t.Fatalf("internal-sftp: %v %+v", err, call)
	}

	// A missing server is found out before the code is asked for (and used).
	err, call, _ = f.run(t, Options{SFTPServer: server + "-missing"}, "SSH_ORIGINAL_COMMAND=internal-sftp", "OTPGATE_CODE="+f.code(t, 1))
	wantDenied(t, "missing sftp-server", err, call, "not an executable file")
	if st, _ := f.store.ReadState("root"); st.Failures != 0 {
		t.Errorf("a session refused for its setup counted a failure")
	}
}

func TestRunDeniedBeforeAsking(t *testing.T) {
	f := newFixture(t)
	err, call, _ := f.run(t, Options{}, "SSH_ORIGINAL_COMMAND=touch /tmp/never")
	wantDenied(t, "no terminal, no code", err, call, "OTPGATE_CODE")
	for _, w := range []string{"SendEnv=OTPGATE_CODE", "ssh -t"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the message does not name %q: %v", w, err)
		}
	}

	err, call, _ = f.run(t, Options{}, "OTPGATE_CODE=", "SSH_ORIGINAL_COMMAND=true")
	wantDenied(t, "empty OTPGATE_CODE", err, call, "no verification code")

	plain := filepath.Join(t.TempDir(), "otpgate-launch-helper")
	b, _ := os.ReadFile(f.helper)
	os.WriteFile(plain, b, 0o755)
	o := Options{}
	f2 := *f
	f2.helper = plain
	err, call, _ = f2.run(t, o, "OTPGATE_CODE="+f.code(t, 0))
	wantDenied(t, "helper without the setuid bit", err, call, "not installed setuid root")
	f2.helper = "/nonexistent/otpgate-helper"
	err, call, _ = f2.run(t, o, "OTPGATE_CODE="+f.code(t, 0))
	wantDenied(t, "no helper", err, call, "no such file")

	err, call, _ = f.run(t, Options{Timeout: 10 * time.Minute}, "OTPGATE_CODE="+f.code(t, 0))
	wantDenied(t, "timeout out of range", err, call, "timeout")

	if n := f.failures(t); n != 0 {
		t.Errorf("failures %d: a session denied before the helper ran counted", n)
	}
}

// pty is a pseudo-terminal pair; Run opens the slave as its terminal.
type pty struct {
	master *os.File
	slave  *os.File // held open, so the master never reads EIO between opens
	path   string
	out    *lockedBuffer
}

func newPTY(t *testing.T) *pty {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	var n int
	rc, _ := m.SyscallConn()
	rc.Control(func(fd uintptr) {
		if err = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); err == nil {
			n, err = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
		}
	})
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	p := &pty{master: m, path: fmt.Sprintf("/dev/pts/%d", n), out: &lockedBuffer{}}
	if p.slave, err = os.OpenFile(p.path, os.O_RDWR|syscall.O_NOCTTY, 0); err != nil {
		m.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { io.Copy(p.out, m); close(done) }()
	t.Cleanup(func() {
		p.slave.Close()
		m.Close()
		<-done
	})
	return p
}

// await waits up to 10 s for s in the terminal's output; it reports
// false when stop is closed first.
func (p *pty) await(t *testing.T, s string, stop <-chan struct{}) bool {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(p.out.String(), s) {
		select {
		case <-deadline:
			t.Fatalf("the terminal never showed %q; it showed %q", s, p.out.String())
		case <-stop:
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	return true
}

func (p *pty) echo(t *testing.T) bool {
	t.Helper()
	var tio *unix.Termios
	var err error
	rc, _ := p.slave.SyscallConn()
	rc.Control(func(fd uintptr) { tio, err = unix.IoctlGetTermios(int(fd), unix.TCGETS) })
	if err != nil {
		t.Fatal(err)
	}
	return tio.Lflag&unix.ECHO != 0
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runOnTerminal runs Run on a fresh terminal in the background; act then
// drives the terminal while the prompt waits.
func (f *fixture) runOnTerminal(t *testing.T, o Options, act func(p *pty), env ...string) (error, *execCall, *pty) {
	t.Helper()
	p := newPTY(t)
	if !p.echo(t) {
		t.Fatal("a new terminal has echo off")
	}
	o.TTY = p.path
	type res struct {
		err  error
		call *execCall
	}
	done := make(chan res, 1)
	returned := make(chan struct{})
	go func() {
		err, call, _ := f.run(t, o, env...)
		done <- res{err, call}
		close(returned)
	}()
	prompt := fmt.Sprintf("Verification code for root@%s: ", hostname())
	if !p.await(t, prompt, returned) {
		r := <-done
		t.Fatalf("Run returned before asking: %v %+v", r.err, r.call)
	}
	if p.echo(t) {
		t.Error("echo is on while the code is asked")
	}
	act(p)
	select {
	case r := <-done:
		if !p.echo(t) {
			t.Error("echo is still off after the prompt")
		}
		return r.err, r.call, p
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return within 20 s")
	}
	return nil, nil, nil
}

func TestRunOnTerminal(t *testing.T) {
	f := newFixture(t)

	t.Run("right code; OTPGATE_CODE is ignored when there is a terminal", func(t *testing.T) {
		code := f.code(t, 0)
		err, call, p := f.runOnTerminal(t, Options{}, func(p *pty) {
			p.master.WriteString(code + "\n")
		}, "OTPGATE_CODE=000000", "SSH_ORIGINAL_COMMAND=id")
		if err != nil || call == nil || !reflect.DeepEqual(call.argv, []string{filepath.Base(f.root.Shell), "-c", "id"}) {
			t.Fatalf("right code on the terminal: %v %+v", err, call)
		}
		if strings.Contains(p.out.String(), code) {
			t.Errorf("the code was echoed: %q", p.out.String())
		}
		if n := f.failures(t); n != 0 {
			t.Errorf("failures %d: OTPGATE_CODE was used although there is a terminal", n)
		}
	})

	t.Run("wrong code", func(t *testing.T) {
		err, call, _ := f.runOnTerminal(t, Options{}, func(p *pty) {
			p.master.WriteString("000000x\n")
		}, "SSH_ORIGINAL_COMMAND=id")
		wantDenied(t, "wrong code", err, call, "wrong or already used code")
		if n := f.failures(t); n != 1 {
			t.Errorf("failures %d after one wrong code, want 1", n)
		}
	})

	// Sessions that end without an answer: denied, nothing counted.
	for _, c := range []struct {
		name string
		o    Options
		act  func(p *pty)
		want string
	}{
		{"end of input (Ctrl-D)", Options{}, func(p *pty) { p.master.WriteString("\x04") }, "end of input"},
		{"timeout", Options{Timeout: time.Second}, func(*pty) {}, "no code was entered within 1s"},
		{"SIGTERM", Options{}, func(*pty) { syscall.Kill(os.Getpid(), syscall.SIGTERM) }, "interrupted by SIGTERM"},
		{"SIGHUP", Options{}, func(*pty) { syscall.Kill(os.Getpid(), syscall.SIGHUP) }, "interrupted by SIGHUP"},
		{"SIGINT", Options{}, func(*pty) { syscall.Kill(os.Getpid(), syscall.SIGINT) }, "interrupted by SIGINT"},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			err, call, _ := f.runOnTerminal(t, c.o, c.act, "SSH_ORIGINAL_COMMAND=id")
			wantDenied(t, c.name, err, call, c.want)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("denied after %v", d)
			}
			if n := f.failures(t); n != 1 {
				t.Errorf("failures %d, want still 1: a prompt without an answer must not count", n)
			}
		})
	}
}
