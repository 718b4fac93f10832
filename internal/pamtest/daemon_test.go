package pamtest

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"
)

// daemon is a real otpgate-helper --listen process serving a test stack.
type daemon struct {
	t      *testing.T
	bin    string
	socket string
	cmd    *exec.Cmd
	stderr *syncBuffer
}

// startDaemon runs bin (a helper) as a daemon on socket, and waits until
// it accepts.
func startDaemon(t *testing.T, bin, socket string) *daemon {
	t.Helper()
	d := &daemon{t: t, bin: bin, socket: socket}
	d.start()
	t.Cleanup(d.kill)
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	d.stderr = &syncBuffer{}
	d.cmd = exec.Command(d.bin, "--listen", d.socket)
	d.cmd.Env = []string{"PATH=/usr/bin:/bin"}
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	// Up when it accepts (its "serving" line goes to syslog where there
	// is one, so the connection is what tells).
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("unix", d.socket); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("the daemon did not start: %s", d.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill ends the daemon with SIGKILL (it leaves its socket file behind).
func (d *daemon) kill() {
	if d.cmd != nil && d.cmd.Process != nil {
		d.cmd.Process.Kill()
		d.cmd.Wait()
	}
}

// daemonStack is a stack plus a socket directory that only root can
// change, as the module requires.
func daemonStack(t *testing.T, configExtra string) (*stack, string) {
	s := newStack(t, configExtra)
	run := filepath.Join(s.dir, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	return s, filepath.Join(run, "helper.sock")
}

// TestDaemonRoute: with a daemon listening, the module asks it and never
// execs (the helper= path does not exist here, so exec would deny); its
// verdicts, counting and replay protection are the helper's.
func TestDaemonRoute(t *testing.T) {
	s, socket := daemonStack(t, "[lockout]\nmax_failures = 3\n")
	secret, _ := s.enroll("alice")
	startDaemon(t, helperPath, socket)
	s.helper = "/nonexistent/otpgate-helper"
	svc := s.service(s.otpgate("required", "socket="+socket))
	good := code(t, secret, 0)
	c := &conv{answers: []string{good}}
	want(t, "right code through the daemon", s.auth(svc, "alice", c, 0), nil)
	if len(c.prompts) != 1 {
		t.Fatalf("prompts %q", c.prompts)
	}
	want(t, "replay through the daemon", s.auth(svc, "alice", &conv{answers: []string{good}}, 0), pam.ErrAuth)
	want(t, "wrong code", s.auth(svc, "alice", &conv{answers: []string{wrongCode(t, secret)}}, 0), pam.ErrAuth)
	want(t, "wrong code that locks", s.auth(svc, "alice", &conv{answers: []string{wrongCode(t, secret)}}, 0), pam.ErrMaxtries)
	if st, _ := s.store.ReadState("alice"); st.Failures != 3 || st.LockedUntil.IsZero() {
		t.Fatalf("state %+v, want 3 failures and a lock", st)
	}
	// mode=exec never asks the daemon: with no helper to exec, denied.
	svc = s.service(s.otpgate("required", "socket="+socket, "mode=exec"))
	c = &conv{answers: []string{code(t, secret, 1)}}
	want(t, "mode=exec with no helper", s.auth(svc, "alice", c, 0), pam.ErrAuth)
	if len(c.prompts) != 0 {
		t.Fatalf("mode=exec reached a helper: %q", c.prompts)
	}
}

// TestDaemonFallback: only "no daemon" (no socket, or a socket nobody
// accepts on) sends the module to exec; mode=daemon then denies. A socket
// that someone other than root could have put there is a denial, never a
// fall back and never a conversation.
func TestDaemonFallback(t *testing.T) {
	s, socket := daemonStack(t, "")
	secret, _ := s.enroll("alice")
	auto := s.service(s.otpgate("required", "socket="+socket))
	want(t, "no socket: exec", s.auth(auto, "alice", &conv{answers: []string{code(t, secret, 0)}}, 0), nil)

	d := startDaemon(t, helperPath, socket)
	d.kill() // the socket file stays: connect is refused
	if _, err := os.Lstat(socket); err != nil {
		t.Fatalf("the killed daemon's socket: %v", err)
	}
	want(t, "stale socket: exec", s.auth(auto, "alice", &conv{answers: []string{code(t, secret, 1)}}, 0), nil)

	daemonOnly := s.service(s.otpgate("required", "socket="+socket, "mode=daemon"))
	c := &conv{answers: []string{code(t, secret, 2)}}
	want(t, "mode=daemon with no daemon", s.auth(daemonOnly, "alice", c, 0), pam.ErrAuth)
	if len(c.prompts) != 0 {
		t.Fatalf("mode=daemon with no daemon prompted %q", c.prompts)
	}

	d.start()
	os.Chmod(filepath.Dir(socket), 0o777)
	c = &conv{answers: []string{code(t, secret, 2)}}
	want(t, "socket in a world-writable directory", s.auth(auto, "alice", c, 0), pam.ErrAuth)
	if len(c.prompts) != 0 {
		t.Fatalf("an unsafe socket got a conversation: %q", c.prompts)
	}
	os.Chmod(filepath.Dir(socket), 0o755)
	os.Chown(socket, 65534, 65534)
	want(t, "socket not root's", s.auth(auto, "alice", &conv{answers: []string{code(t, secret, 2)}}, 0), pam.ErrAuth)
}

// TestDaemonKilledMidRequest: a daemon that dies after the request was
// sent is a denial, and the module does not then exec the helper (which
// would ask again and could count one login twice).
func TestDaemonKilledMidRequest(t *testing.T) {
	s, socket := daemonStack(t, "")
	secret, _ := s.enroll("alice")
	d := startDaemon(t, helperPath, socket)
	svc := s.service(s.otpgate("required", "socket="+socket))
	c := &conv{answers: []string{code(t, secret, 0)}, onPrompt: func() { d.kill() }}
	want(t, "daemon killed at the prompt", s.auth(svc, "alice", c, 0), pam.ErrAuth)
	if len(c.prompts) != 1 {
		t.Fatalf("prompts %q: the module asked again through exec", c.prompts)
	}
	if st, _ := s.store.ReadState("alice"); st.Failures != 0 || !st.LastSuccess.IsZero() {
		t.Fatalf("state after the daemon died: %+v", st)
	}
	// The code was never checked: it still works (through exec now).
	want(t, "the same code after", s.auth(svc, "alice", &conv{answers: []string{code(t, secret, 0)}}, 0), nil)
}

// TestDaemonRestartUnderLoad: 50 logins at once while the daemon is
// stopped (SIGTERM) and started again: none hangs, every one is denied
// (wrong codes), no more failures are counted than codes were given, and
// the new daemon counts exactly.
func TestDaemonRestartUnderLoad(t *testing.T) {
	s, socket := daemonStack(t, "[lockout]\nmax_failures = 100\n")
	secret, _ := s.enroll("alice")
	d := startDaemon(t, helperPath, socket)
	svc := s.service(s.otpgate("required", "socket="+socket, "timeout=10"))
	var wg sync.WaitGroup
	var mu sync.Mutex
	answered, results := 0, map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range 50 {
		wg.Go(func() {
			c := &conv{answers: []string{wrongCode(t, secret)}, onPrompt: func() {
				mu.Lock()
				answered++
				mu.Unlock()
			}}
			done := make(chan error, 1)
			go func() { done <- s.auth(svc, "alice", c, 0) }()
			select {
			case err := <-done:
				mu.Lock()
				results[errName(err)]++
				mu.Unlock()
			case <-ctx.Done():
				t.Errorf("login %d hung", i)
			}
		})
		if i == 25 {
			d.cmd.Process.Signal(syscall.SIGTERM)
			d.cmd.Wait()
			d.start()
		}
	}
	wg.Wait()
	if results["success"] != 0 || results[errName(pam.ErrAuth)] != 50 {
		t.Fatalf("results %v, want 50 denials", results)
	}
	st, err := s.store.ReadState("alice")
	if err != nil || st.Failures > answered {
		t.Fatalf("%d failures counted for %d codes given (%v)", st.Failures, answered, err)
	}
	before := st.Failures
	for range 5 {
		want(t, "wrong code after the restart", s.auth(svc, "alice", &conv{answers: []string{wrongCode(t, secret)}}, 0), pam.ErrAuth)
	}
	if st, _ := s.store.ReadState("alice"); st.Failures != before+5 {
		t.Fatalf("5 wrong codes after the restart counted %d", st.Failures-before)
	}
}

func errName(err error) string {
	if err == nil {
		return "success"
	}
	var e pam.Error
	if errors.As(err, &e) {
		return e.Error()
	}
	return err.Error()
}
