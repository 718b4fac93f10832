package pamtest

// Regression tests for the attack review's findings 1, 2, 4 and 7(a)
// (issue 7), each through the front door an attacker would use: a
// setuid-root host started by a normal user (a copy of pamtester standing
// in for su), the otpgate command run by a normal user, and pamtester run
// by a normal user for their own account.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/keystore"
)

// setuidHost copies pamtester into a root-owned directory as a setuid-root
// program, as su and sudo are; it skips without pamtester.
func setuidHost(t *testing.T) string {
	t.Helper()
	pt, err := exec.LookPath("pamtester")
	if err != nil {
		t.Skip("pamtester is not installed (apt-get install pamtester)")
	}
	dir, err := os.MkdirTemp(buildDir, "suid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	host := filepath.Join(dir, "pamtester")
	copyFile(t, pt, host, 0o755)
	if err := os.Chmod(host, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	return host
}

// runAsNobody runs name args as nobody with stdin, bounded by 30 s.
func runAsNobody(t *testing.T, stdin string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := asNobody(name, args...)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s %q hung for 30 s:\n%s", name, args, out.String())
	}
	return "", nil
}

// TestFileSizeLimitKeepsLockout is finding 1: a user who starts a
// setuid-root host (su) under prlimit --fsize=130 used to switch the
// lockout off (the count fitted in 130 bytes, the lock did not). With the
// soft limit at 130 bytes, twelve wrong codes now lock the account after
// max_failures (5), it stays locked, and the right code is refused; for a
// password-then-code stack (pam_permit standing in for pam_unix) and a
// code-only one. With the hard limit at 130 too, the helper can raise it
// only with CAP_SYS_RESOURCE: then the same; without it (some containers)
// every attempt is denied before any code is asked for, so no guess is
// ever evaluated.
func TestFileSizeLimitKeepsLockout(t *testing.T) {
	canRaise, _ := unix.PrctlRetInt(unix.PR_CAPBSET_READ, unix.CAP_SYS_RESOURCE, 0, 0, 0)
	for _, c := range []struct{ name, first, limit string }{
		{"password then code, soft limit", "auth requisite pam_permit.so", "--fsize=130:unlimited"},
		{"code only, soft limit", "", "--fsize=130:unlimited"},
		{"code only, hard limit", "", "--fsize=130"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStack(t, "[lockout]\nmax_failures = 5\n")
			host := setuidHost(t)
			nobodyName(t)
			secret, _ := s.enroll("alice")
			lines := []string{s.otpgate("required")}
			if c.first != "" {
				lines = append([]string{c.first}, lines...)
			}
			svc := s.etcService(lines...)
			// alice has logged in before: her state file then holds
			// last_success and last_step, and the lock no longer fits
			// in 130 bytes after the count.
			if out, err := runAsNobody(t, code(t, secret, 0)+"\n", nil, host, svc, "alice", "authenticate"); err != nil {
				t.Fatalf("right code without a limit: %v\n%s", err, out)
			}
			wrong := wrongCode(t, secret)
			asked := 0
			for i := 1; i <= 12; i++ {
				out, err := runAsNobody(t, wrong+"\n", nil, "prlimit", c.limit, host, svc, "alice", "authenticate")
				if err == nil {
					t.Fatalf("wrong code %d accepted:\n%s", i, out)
				}
				if strings.Contains(out, "Verification code: ") {
					asked++
				}
			}
			st, err := s.store.ReadState("alice")
			if err != nil {
				t.Fatal(err)
			}
			if c.limit == "--fsize=130" && canRaise == 0 {
				if asked != 0 || st.Failures != 0 {
					t.Fatalf("no CAP_SYS_RESOURCE: asked for %d codes and counted %d failures under a hard RLIMIT_FSIZE of 130; want every attempt denied before the prompt", asked, st.Failures)
				}
			} else if st.Failures < 5 || !st.LockedUntil.After(time.Now()) {
				t.Fatalf("after 12 wrong codes under RLIMIT_FSIZE 130: failures %d, locked until %v; want at least 5 and locked", st.Failures, st.LockedUntil)
			}
			out, err := runAsNobody(t, code(t, secret, 1)+"\n", nil, "prlimit", c.limit, host, svc, "alice", "authenticate")
			if err == nil {
				t.Fatalf("the right code was accepted under the limit:\n%s", out)
			}
			if st2, _ := s.store.ReadState("alice"); !st2.LockedUntil.Equal(st.LockedUntil) || !st2.LastSuccess.Equal(st.LastSuccess) {
				t.Fatalf("the state changed: %+v, was %+v", st2, st)
			}
		})
	}
}

// procStat is the state, process group and session of pid, from
// /proc/pid/stat; ok is false once the process is gone.
func procStat(pid int) (state byte, pgrp, sid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 4 {
		return 0, 0, 0, false
	}
	pgrp, _ = strconv.Atoi(f[2])
	sid, _ = strconv.Atoi(f[3])
	return f[0][0], pgrp, sid, true
}

// childOf returns the first child of pid whose executable is exe, waiting
// up to 10 s for it.
func childOf(t *testing.T, pid int, exe string) int {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
		for _, f := range tasks {
			b, _ := os.ReadFile(f)
			for _, c := range strings.Fields(string(b)) {
				if link, _ := os.Readlink("/proc/" + c + "/exe"); link == exe {
					n, _ := strconv.Atoi(c)
					return n
				}
			}
		}
	}
	t.Fatalf("no child %s of pid %d", exe, pid)
	return 0
}

// openPTY returns a pseudo-terminal's master and slave.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// syncBuffer is a bytes.Buffer for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestTerminalSignalsMissHelper is finding 2: a user who runs a setuid
// host (su) on their terminal used to stop the root helper with Ctrl-Z,
// since it stayed in the terminal's foreground process group. The host
// runs in a job-control shell on a pseudo-terminal, as nobody; while the
// helper waits at the prompt, Ctrl-Z is typed. The helper leads a session
// of its own and is not stopped, another attempt for the same user, from
// another process, is not held up, and after Ctrl-C ends the host the
// helper ends too.
func TestTerminalSignalsMissHelper(t *testing.T) {
	s := newStack(t, "")
	host := setuidHost(t)
	nobodyName(t)
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("needs bash (a shell with job control)")
	}
	secret, _ := s.enroll("alice")
	svc := s.etcService(s.otpgate("required"))
	master, slave := openPTY(t)

	sh := asNobody("bash", "-c", "set -m; "+host+" "+svc+" alice authenticate; sleep 60")
	sh.Stdin, sh.Stdout, sh.Stderr = slave, slave, slave
	sh.SysProcAttr.Setsid, sh.SysProcAttr.Setctty, sh.SysProcAttr.Ctty = true, true, 0
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	shDone := make(chan struct{})
	go func() { sh.Wait(); close(shDone) }()
	var out syncBuffer
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			out.Write(b[:n])
			if err != nil {
				return
			}
		}
	}()
	var hostPid, helperPid int
	t.Cleanup(func() {
		// The host leads its own process group (job control); never
		// signal group 0, which is this test's own.
		if _, pgrp, _, ok := procStat(hostPid); ok && hostPid > 1 && pgrp == hostPid {
			syscall.Kill(-pgrp, syscall.SIGKILL)
		}
		sh.Process.Kill()
		select {
		case <-shDone:
		case <-time.After(10 * time.Second):
			t.Error("the shell did not end")
		}
	})
	hostPid = childOf(t, sh.Process.Pid, host)
	helperPid = childOf(t, hostPid, s.helper)
	for end := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "Verification code: "); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no prompt on the terminal: %q", out.String())
		}
	}

	// pamtester's conversation (pam_misc, as in su) blocks SIGTSTP while
	// it reads: Ctrl-Z stays pending for the host, and stopped only the
	// helper when it shared the host's process group.
	if _, err := master.Write([]byte{'Z' & 0x1f}); err != nil { // Ctrl-Z
		t.Fatal(err)
	}
	for end := time.Now().Add(5 * time.Second); !tstpPending(hostPid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("Ctrl-Z did not reach the host: the test proves nothing (terminal: %q)", out.String())
		}
	}
	time.Sleep(300 * time.Millisecond)
	_, hostPgrp, hostSid, _ := procStat(hostPid)
	st, pgrp, sid, ok := procStat(helperPid)
	switch {
	case !ok:
		t.Fatal("the helper ended after Ctrl-Z")
	case st == 'T' || st == 't':
		t.Fatalf("Ctrl-Z stopped the helper (state %c)", st)
	case sid != helperPid || sid == hostSid || pgrp == hostPgrp:
		// The terminal signals only its foreground process group, which
		// is never in another session.
		t.Fatalf("the helper is in session %d, process group %d; want its own session (%d), not the host's (%d)", sid, pgrp, helperPid, hostSid)
	}

	start := time.Now()
	want(t, "another attempt while the first waits at its prompt", s.auth(s.service(s.otpgate("required")), "alice", &conv{answers: []string{code(t, secret, 0)}}, 0), nil)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the other attempt took %v", d)
	}

	// Ctrl-C ends the host; its helper, in its own session, then sees
	// the socket close and ends too, holding nothing.
	if _, err := master.Write([]byte{'C' & 0x1f}); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, _, _, ok := procStat(helperPid); !ok {
			break
		}
		if st, _, _, _ := procStat(helperPid); st == 'Z' {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the helper outlived its host by 10 s")
		}
	}
}

// tstpPending reports whether SIGTSTP is pending for pid.
func tstpPending(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		if k == "ShdPnd" || k == "SigPnd" {
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && m&(1<<(syscall.SIGTSTP-1)) != 0 {
				return true
			}
		}
	}
	return false
}

// selfStack is a helper whose self mode reads a test config, its launcher,
// an otpgate that execs the launcher, and the store.
type selfStack struct {
	dir, helper, launcher, otpgate, config string
	store                                  *keystore.Store
}

func newSelfStack(t *testing.T, configExtra string) *selfStack {
	t.Helper()
	needRoot(t)
	dir, err := os.MkdirTemp(buildDir, "self-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	x := &selfStack{dir: dir, helper: filepath.Join(dir, "otpgate-helper"), launcher: filepath.Join(dir, "otpgate-launch-helper"),
		otpgate: filepath.Join(dir, "otpgate"), config: filepath.Join(dir, "config.toml")}
	if err := os.WriteFile(x.config, []byte(fmt.Sprintf("store = %q\n%s", filepath.Join(dir, "store"), configExtra)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := buildGo(x.helper, "./cmd/otpgate-helper", "-X main.selfConfig="+x.config); err != nil {
		t.Fatal(err)
	}
	if err := BuildLauncher(x.launcher, x.helper); err != nil {
		t.Fatal(err)
	}
	if err := buildGo(x.otpgate, "./cmd/otpgate", "-X github.com/otpgate/otpgate/internal/helper.InstalledPath="+x.launcher); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(x.config)
	if err != nil {
		t.Fatal(err)
	}
	x.store = keystore.New(cfg.Store)
	return x
}

// TestHostileEnvironmentSelfMode is finding 4: the setuid Go helper used
// to read TZ (a FIFO hung it: root opened the path during package
// initialisation) and GODEBUG (fips140=only panicked after the attempt was
// counted) from the user who ran it. The user now runs the launcher, as
// otpgate does, but with a hostile environment of their choosing (TZ
// naming a FIFO nobody writes, the Go runtime's variables, LD_PRELOAD):
// a wrong code is answered in normal time and counted exactly once, the
// FIFO is never opened, and the right code then works. (otpgate itself
// runs the launcher with an empty environment.)
func TestHostileEnvironmentSelfMode(t *testing.T) {
	x := newSelfStack(t, "")
	me := nobodyName(t)
	secret := (&stackAccount{store: x.store}).enroll(t, me)
	fifo := filepath.Join(x.dir, "tz-fifo")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(fifo, 0o666)
	env := []string{"TZ=" + fifo, "ZONEINFO=" + x.dir, "GODEBUG=fips140=only", "GOTRACEBACK=crash",
		"GOGC=1", "GOMAXPROCS=1000", "GOMEMLIMIT=1", "LD_PRELOAD=/nonexistent.so", "TMPDIR=/nonexistent",
		"PATH=" + x.dir, "HOME=" + x.dir, "LANG=xx_XX.UTF-8"}
	verify := protocol.Request{Op: protocol.OpVerify}
	start := time.Now()
	v, err := execAsNobodyEnv(x.launcher, env, verify, &recordUI{answer: wrongCode(t, secret)})
	if err != nil || v != protocol.ResultAuthErr {
		t.Fatalf("wrong code: %s, %v; want %s", v, err, protocol.ResultAuthErr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("a wrong code took %v", d)
	}
	if st, _ := x.store.ReadState(me); st.Failures != 1 {
		t.Fatalf("failures %d after one wrong code, want 1", st.Failures)
	}
	// Nobody opened the FIFO for reading: opening it for writing without
	// blocking fails with ENXIO.
	if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		f.Close()
		t.Fatal("the FIFO has a reader")
	} else if !errors.Is(err, syscall.ENXIO) {
		t.Fatalf("opening the FIFO: %v, want ENXIO", err)
	}
	v, err = execAsNobodyEnv(x.launcher, env, verify, &recordUI{answer: code(t, secret, 0)})
	if err != nil || v != protocol.ResultSuccess {
		t.Fatalf("right code: %s, %v; want %s", v, err, protocol.ResultSuccess)
	}
	if st, _ := x.store.ReadState(me); st.Failures != 0 || st.LastSuccess.IsZero() {
		t.Fatalf("after the right code: %+v", st)
	}
}

// TestNonRootHost is finding 7(a): a PAM program that runs as the user
// (a screen locker; here pamtester run by nobody for their own account)
// used to get "Error in service module". The module now runs the setuid
// launcher from the helper's directory: the right code is accepted, a
// wrong one counted, the lockout holds, and another user's account is
// refused without touching it.
func TestNonRootHost(t *testing.T) {
	if _, err := exec.LookPath("pamtester"); err != nil {
		t.Skip("pamtester is not installed (apt-get install pamtester)")
	}
	x := newSelfStack(t, "[lockout]\nmax_failures = 3\n")
	me := nobodyName(t)
	s := &stack{t: t, store: x.store, helper: x.helper, config: "/nonexistent/ignored-in-self-mode.toml"}
	acct := &stackAccount{store: x.store}
	secret := acct.enroll(t, me)
	aliceSecret := acct.enroll(t, "alice")
	svc := s.etcService(s.otpgate("required"))
	pamtester := func(user, stdin string) (string, error) {
		return runAsNobody(t, stdin, nil, "pamtester", svc, user, "authenticate")
	}

	if out, err := pamtester(me, code(t, secret, 0)+"\n"); err != nil {
		t.Fatalf("right code: %v\n%s", err, out)
	}
	if out, err := pamtester(me, wrongCode(t, secret)+"\n"); err == nil {
		t.Fatalf("wrong code accepted:\n%s", out)
	}
	if st, _ := x.store.ReadState(me); st.Failures != 1 || st.LastSuccess.IsZero() {
		t.Fatalf("after a right and a wrong code: %+v", st)
	}
	if out, err := pamtester("alice", code(t, aliceSecret, 0)+"\n"); err == nil {
		t.Fatalf("alice's code accepted for nobody's host:\n%s", out)
	}
	if st, _ := x.store.ReadState("alice"); st.Failures != 0 || !st.LastSuccess.IsZero() {
		t.Fatalf("alice's state was touched: %+v", st)
	}
	for i := 0; i < 2; i++ {
		pamtester(me, wrongCode(t, secret)+"\n")
	}
	if st, _ := x.store.ReadState(me); st.Failures != 3 || !st.LockedUntil.After(time.Now()) {
		t.Fatalf("after 3 wrong codes: %+v, want locked", st)
	}
	if out, err := pamtester(me, code(t, secret, 1)+"\n"); err == nil {
		t.Fatalf("right code accepted while locked:\n%s", out)
	}

	// Without the setuid bit the module denies before running anything.
	if err := os.Chmod(x.launcher, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := pamtester(me, code(t, secret, 1)+"\n"); err == nil {
		t.Fatalf("accepted with a launcher that is not setuid:\n%s", out)
	}
}
