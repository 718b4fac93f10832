package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts. Every process a test starts runs under one of these: a hang is
// a failure, never a stuck test run.
const (
	// loginTimeout bounds one ssh, sudo or su invocation.
	loginTimeout = 30 * time.Second
	// setupTimeout bounds one setup command (useradd, ssh-keygen, ...).
	setupTimeout = 30 * time.Second
	// buildTimeout bounds one go build or cc run.
	buildTimeout = 3 * time.Minute
	// moduleTimeout is the pam.d timeout= given to pam_otpgate.so; the
	// module waits 5 s more, which stays under loginTimeout.
	moduleTimeout = 20
)

// prefix starts every name these tests create on the system: users,
// pam.d services, sudoers drop-ins. sweepStale removes old leftovers with
// it.
const prefix = "otpe2e-"

// requireEnv is the environment variable that turns every skip for a
// missing tool (or root) into a failure, for CI that must run everything.
const requireEnv = "OTPGATE_REQUIRE_TOOLS"

// skipOrFail skips the test, or fails it when OTPGATE_REQUIRE_TOOLS is
// set.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(requireEnv) != "" {
		t.Fatalf("%s (%s is set, so this is a failure, not a skip)", msg, requireEnv)
	}
	t.Skip(msg)
}

// requireRoot skips (or fails) unless the test runs as root.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "end-to-end tests need root (they add users, pam.d services, sudoers drop-ins and run sshd); run as root: go test -count=1 -v ./internal/e2e/")
	}
}

// lookTool finds a program in PATH or the sbin directories root's PATH
// may lack.
func lookTool(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// requireTools skips (or fails) unless root and every named tool are
// present, and returns their paths in order.
func requireTools(t testing.TB, names ...string) []string {
	t.Helper()
	requireRoot(t)
	var paths, missing []string
	for _, n := range names {
		p, ok := lookTool(n)
		if !ok {
			missing = append(missing, n)
		}
		paths = append(paths, p)
	}
	if len(missing) > 0 {
		skipOrFail(t, "missing tools: %s (Debian: scripts/test-deps.sh installs them)", strings.Join(missing, ", "))
	}
	return paths
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// baseEnv is the fixed environment for every process the tests start.
func baseEnv(extra ...string) []string {
	return append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C", "LC_ALL=C",
	}, extra...)
}

// command returns a Cmd in its own session and process group, killed as
// a whole group when ctx ends, with a fixed environment.
func command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 3 * time.Second
	cmd.Env = baseEnv()
	return cmd
}

// result is what one finished process left.
type result struct {
	stdout, stderr string
	exit           int // -1 when killed by a signal or not started
	timedOut       bool
	dur            time.Duration
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("exit=%d timedOut=%v dur=%v err=%v\n--- stdout:\n%s\n--- stderr:\n%s", r.exit, r.timedOut,
		r.dur.Round(time.Millisecond), r.err, r.stdout, r.stderr)
}

// runCmd runs a Cmd made by mk under timeout.
func runCmd(timeout time.Duration, stdin io.Reader, mk func(ctx context.Context) *exec.Cmd) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := mk(ctx)
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, stdin
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), dur: time.Since(start), err: err, exit: -1}
	if cmd.ProcessState != nil {
		r.exit = cmd.ProcessState.ExitCode()
	}
	r.timedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	return r
}

// run runs name args with the base environment under timeout.
func run(timeout time.Duration, stdin io.Reader, name string, args ...string) result {
	return runCmd(timeout, stdin, func(ctx context.Context) *exec.Cmd { return command(ctx, name, args...) })
}

// mustRun runs a setup command and fails the test unless it exits 0.
func mustRun(t testing.TB, stdin io.Reader, name string, args ...string) result {
	t.Helper()
	r := run(setupTimeout, stdin, name, args...)
	if r.timedOut || r.exit != 0 {
		t.Fatalf("%s %s: %s", name, strings.Join(args, " "), r)
	}
	return r
}

// syncBuffer is a bytes.Buffer safe for concurrent writers and readers,
// with a channel that is signalled on every write.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func (s *syncBuffer) notify() chan struct{} {
	if s.changed == nil {
		s.changed = make(chan struct{}, 1)
	}
	return s.changed
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.b.Write(p)
	select {
	case s.notify() <- struct{}{}:
	default:
	}
	return n, err
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) wait() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notify()
}

// step is one exchange of a chat: wait until expect appears in the
// output, then send the line.
type step struct {
	expect string
	send   string
}

// runChat runs the command mk makes with stdout and stderr merged, and
// answers each prompt in turn, like expect(1): it writes a line only after
// its prompt appeared, so a program that reads its standard input in big
// chunks (pam_misc's conversation reads up to 1 KiB at once) gets one
// answer per read. Standard input is closed after the last answer, so an
// unexpected further prompt reads end-of-file instead of hanging.
func runChat(timeout time.Duration, steps []step, mk func(ctx context.Context) *exec.Cmd) result {
	dyn := make([]dynStep, len(steps))
	for i, s := range steps {
		send := s.send
		dyn[i] = dynStep{expect: s.expect, answer: func(string) string { return send }}
	}
	return runDynChat(timeout, dyn, mk)
}

// dynStep is a chat step whose answer is computed from what was shown.
type dynStep struct {
	expect string
	answer func(shown string) string
}

// runDynChat is runChat with answers computed from the output so far.
func runDynChat(timeout time.Duration, steps []dynStep, mk func(ctx context.Context) *exec.Cmd) result {
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
	exited := make(chan struct{})
	chatDone := make(chan struct{})
	go func() {
		defer close(chatDone)
		defer stdin.Close()
		pos := 0
		for _, s := range steps {
			for {
				changed := out.wait()
				text := out.String()
				if i := strings.Index(text[pos:], s.expect); i >= 0 {
					pos += i + len(s.expect)
					break
				}
				select {
				case <-changed:
				case <-exited:
					return
				case <-ctx.Done():
					return
				}
			}
			if _, err := io.WriteString(stdin, s.answer(out.String()[:pos])+"\n"); err != nil {
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
	r.timedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	return r
}

// logResult logs one line about r, and everything with E2E_VERBOSE set.
func logResult(t testing.TB, what string, r result) {
	t.Helper()
	if os.Getenv("E2E_VERBOSE") != "" {
		t.Logf("%s: %s", what, r)
		return
	}
	t.Logf("%s: exit %d in %v", what, r.exit, r.dur.Round(time.Millisecond))
}

// mustNotHang fails the test now when r timed out.
func mustNotHang(t testing.TB, what string, r result) {
	t.Helper()
	if r.timedOut {
		t.Fatalf("%s hung (killed after its timeout): %s", what, r)
	}
}

// testUser is a local account made for one test.
type testUser struct {
	name, password, home string
	uid, gid             int
}

// newUser creates a user with a home directory, /bin/bash and a password,
// removed (with its home) when the test ends.
func newUser(t testing.TB) *testUser {
	t.Helper()
	requireTools(t, "useradd", "userdel", "chpasswd")
	u := &testUser{name: prefix + randHex(3), password: "Pw-" + randHex(6) + "-e2e"}
	var r result
	for attempt := 0; attempt < 10; attempt++ {
		r = run(setupTimeout, nil, "useradd", "--create-home", "--shell", "/bin/bash", "--comment", "otpgate e2e test", u.name)
		if r.exit != 10 { // 10: cannot lock the password file, another useradd runs
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r.exit != 0 || r.timedOut {
		t.Fatalf("useradd %s: %s", u.name, r)
	}
	t.Cleanup(func() { removeUser(t, u.name) })
	mustRun(t, strings.NewReader(u.name+":"+u.password+"\n"), "chpasswd")
	pw, err := user.Lookup(u.name)
	if err != nil {
		t.Fatal(err)
	}
	u.home = pw.HomeDir
	u.uid, _ = strconv.Atoi(pw.Uid)
	u.gid, _ = strconv.Atoi(pw.Gid)
	return u
}

// removeUser deletes a test user and its home. -f also removes a user who
// still has processes (a session a killed test left behind).
func removeUser(t testing.TB, name string) {
	if !strings.HasPrefix(name, prefix) {
		panic("refusing to remove a user that is not a test user: " + name)
	}
	var r result
	for attempt := 0; attempt < 10; attempt++ {
		r = run(setupTimeout, nil, "userdel", "--force", "--remove", name)
		if r.exit != 10 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// 12: the home or mail spool could not be removed (no spool: harmless).
	if r.exit != 0 && r.exit != 12 {
		t.Errorf("userdel %s: %s", name, r)
	}
}

// writeSystemFile writes path (which must not exist) with mode, removed
// when the test ends. It is written under a dotted temporary name first
// (sudo and PAM ignore those) and renamed into place.
func writeSystemFile(t testing.TB, path, content string, mode os.FileMode, check func(tmp string) error) {
	t.Helper()
	if _, err := os.Lstat(path); err == nil {
		t.Fatalf("%s exists already; not touching it", path)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, mode) // umask
	}
	if err == nil && check != nil {
		err = check(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		t.Fatalf("writing %s: %v", path, err)
	}
	t.Cleanup(func() {
		if err := os.Remove(path); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// writePAMService writes /etc/pam.d/<service> for this test.
func writePAMService(t testing.TB, service, stack string) {
	t.Helper()
	if !strings.Contains(service, prefix) || strings.Contains(service, "/") {
		t.Fatalf("PAM service %q is not a test service name", service)
	}
	writeSystemFile(t, filepath.Join("/etc/pam.d", service), "# otpgate end-to-end test service; removed when the test ends\n"+stack, 0o644, nil)
}

// unixStack is a PAM stack of pam_unix alone, for the harness's own
// tests: it works without otpgate.
const unixStack = `auth     required pam_unix.so
account  required pam_unix.so
session  required pam_unix.so
`

// denyStack refuses every authentication: a test that still logs in
// through it did not use the service file it wrote.
const denyStack = `auth     requisite pam_deny.so
account  required pam_unix.so
session  required pam_unix.so
`

// stack builds a PAM service file from its auth lines, with pam_unix for
// account and session.
func stack(authLines ...string) string {
	var b strings.Builder
	for _, l := range authLines {
		b.WriteString("auth     " + l + "\n")
	}
	b.WriteString("account  required pam_unix.so\nsession  required pam_unix.so\n")
	return b.String()
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// chownTree gives path and everything under it to u.
func chownTree(t testing.TB, path string, u *testUser) {
	t.Helper()
	err := filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, u.uid, u.gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}
