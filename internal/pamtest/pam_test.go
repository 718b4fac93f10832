package pamtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"
)

func TestRightWrongReplay(t *testing.T) {
	s := newStack(t, "")
	secret, _ := s.enroll("alice")
	svc := s.service(s.otpgate("required"))
	// Computed once: both stay in the window even if a step ends meanwhile.
	now, next := code(t, secret, 0), code(t, secret, 1)

	c := &conv{answers: []string{now}}
	want(t, "right code", s.auth(svc, "alice", c, 0), nil)
	if len(c.prompts) != 1 || c.prompts[0] != "Verification code: " {
		t.Fatalf("prompts %q", c.prompts)
	}
	want(t, "replayed code", s.auth(svc, "alice", &conv{answers: []string{now}}, 0), pam.ErrAuth)
	want(t, "wrong code", s.auth(svc, "alice", &conv{answers: []string{wrongCode(t, secret)}}, 0), pam.ErrAuth)
	want(t, "next code", s.auth(svc, "alice", &conv{answers: []string{next}}, 0), nil)
	want(t, "older code after a newer one", s.auth(svc, "alice", &conv{answers: []string{now}}, 0), pam.ErrAuth)
	// The accepted code reset the count: one failure since.
	if st, _ := s.store.ReadState("alice"); st.Failures != 1 {
		t.Fatalf("failures %d, want 1", st.Failures)
	}
}

func TestLockout(t *testing.T) {
	s := newStack(t, "[lockout]\nmax_failures = 3\n")
	secret, _ := s.enroll("alice")
	svc := s.service(s.otpgate("required"))
	for i := 1; i <= 2; i++ {
		want(t, "wrong code "+strconv.Itoa(i), s.auth(svc, "alice", &conv{answers: []string{"12345"}}, 0), pam.ErrAuth)
	}
	c := &conv{answers: []string{wrongCode(t, secret)}}
	want(t, "the wrong code that locks", s.auth(svc, "alice", c, 0), pam.ErrMaxtries)
	if len(c.errs) != 1 || !strings.Contains(c.errs[0], "locked until") {
		t.Fatalf("errors %q", c.errs)
	}
	c = &conv{answers: []string{code(t, secret, 0)}}
	want(t, "right code while locked", s.auth(svc, "alice", c, 0), pam.ErrMaxtries)
	if len(c.errs) != 1 || !strings.Contains(c.errs[0], "try again after") {
		t.Fatalf("errors %q", c.errs)
	}
}

func TestBackupCode(t *testing.T) {
	s := newStack(t, "[backup_codes]\ncount = 3\n")
	_, codes := s.enroll("alice")
	svc := s.service(s.otpgate("required"))
	c := &conv{answers: []string{codes[0]}}
	want(t, "backup code", s.auth(svc, "alice", c, 0), nil)
	if len(c.infos) != 1 || !strings.Contains(c.infos[0], "2 backup codes left") {
		t.Fatalf("infos %q", c.infos)
	}
	want(t, "backup code again", s.auth(svc, "alice", &conv{answers: []string{codes[0]}}, 0), pam.ErrAuth)
	// PAM_SILENT: no messages.
	c = &conv{answers: []string{codes[1]}}
	want(t, "second backup code, silent", s.auth(svc, "alice", c, pam.Silent), nil)
	if len(c.infos) != 0 {
		t.Fatalf("PAM_SILENT, yet infos %q", c.infos)
	}
}

func TestNotEnrolled(t *testing.T) {
	s := newStack(t, "")
	s.enroll("alice")

	// nullok: the module answers PAM_IGNORE, so the rest of the stack
	// decides. Here the line after it permits.
	svc := s.service(s.otpgate("[success=done ignore=ignore default=die]", "nullok"), "auth required pam_permit.so")
	c := &conv{}
	want(t, "not enrolled, nullok, then pam_permit", s.auth(svc, "bob", c, 0), nil)
	if len(c.prompts)+len(c.infos)+len(c.errs) != 0 {
		t.Fatalf("nullok talked: %q %q %q", c.prompts, c.infos, c.errs)
	}
	// ... and here it denies: PAM_IGNORE is not a success.
	svc = s.service(s.otpgate("[success=done ignore=ignore default=die]", "nullok"), "auth required pam_deny.so")
	want(t, "not enrolled, nullok, then pam_deny", s.auth(svc, "bob", &conv{}, 0), pam.ErrAuth)
	// Alone in the stack, an ignored module is no success either.
	svc = s.service(s.otpgate("required", "nullok"))
	if err := s.auth(svc, "bob", &conv{}, 0); err == nil {
		t.Fatal("not enrolled, nullok, alone: PAM_SUCCESS")
	}
	// nullok does not excuse an enrolled user.
	svc = s.service(s.otpgate("[success=done ignore=ignore default=die]", "nullok"), "auth required pam_permit.so")
	want(t, "enrolled, nullok, wrong code", s.auth(svc, "alice", &conv{answers: []string{"999999x"}}, 0), pam.ErrAuth)

	// Without nullok: denied, with a reason.
	svc = s.service(s.otpgate("required"))
	c = &conv{}
	want(t, "not enrolled", s.auth(svc, "bob", c, 0), pam.ErrAuth)
	if len(c.errs) != 1 || c.errs[0] != "no verification code is set up for this account; ask an administrator" {
		t.Fatalf("errors %q", c.errs)
	}
	if len(c.prompts) != 0 {
		t.Fatalf("prompted %q", c.prompts)
	}
}

func TestConversationError(t *testing.T) {
	s := newStack(t, "")
	secret, _ := s.enroll("alice")
	svc := s.service(s.otpgate("required"))
	want(t, "conversation error", s.auth(svc, "alice", &conv{fail: true}, 0), pam.ErrAuth)
	// The code was never shown to the helper: it still works.
	want(t, "right code after", s.auth(svc, "alice", &conv{answers: []string{code(t, secret, 0)}}, 0), nil)
}

func TestBadArguments(t *testing.T) {
	s := newStack(t, "")
	s.enroll("alice")
	for _, arg := range []string{"nulok", "timeout=0", "timeout=601", "timeout=5s", "helper=relative", "config=relative", "prompt"} {
		svc := s.service(s.otpgate("required", arg))
		want(t, "argument "+arg, s.auth(svc, "alice", &conv{answers: []string{"123456"}}, 0), pam.ErrService)
	}
}

func TestForwardPass(t *testing.T) {
	s := newStack(t, "")
	secret, _ := s.enroll("alice")
	// pam_exec hands the PAM_AUTHTOK the module set to a script that
	// checks it.
	check := filepath.Join(s.dir, "checkpw")
	script := "#!/bin/sh\npw=$(tr -d '\\000')\n[ \"$pw\" = 'hunter 2' ]\n"
	if err := os.WriteFile(check, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	svc := s.service(s.otpgate("required", "forward_pass"), "auth required pam_exec.so expose_authtok quiet "+check)
	now, next := code(t, secret, 0), code(t, secret, 1)
	c := &conv{answers: []string{"hunter 2" + now}}
	want(t, "password and code", s.auth(svc, "alice", c, 0), nil)
	if len(c.prompts) != 1 || c.prompts[0] != "Password & verification code: " {
		t.Fatalf("prompts %q", c.prompts)
	}
	// pam_exec answers PAM_SYSTEM_ERR when the script fails.
	want(t, "wrong password, right code", s.auth(svc, "alice", &conv{answers: []string{"hunter 3" + next}}, 0), pam.ErrSystem)
	want(t, "right password, used code", s.auth(svc, "alice", &conv{answers: []string{"hunter 2" + next}}, 0), pam.ErrAuth)
}

func TestPromptArgument(t *testing.T) {
	s := newStack(t, "")
	secret, _ := s.enroll("alice")
	svc := s.service(s.otpgate("required", "[prompt=One-time code: ]"))
	c := &conv{answers: []string{code(t, secret, 0)}}
	want(t, "custom prompt", s.auth(svc, "alice", c, 0), nil)
	if len(c.prompts) != 1 || c.prompts[0] != "One-time code: " {
		t.Fatalf("prompts %q", c.prompts)
	}
}

// TestUnsafeHelper: the module runs only a helper that root alone can
// change.
func TestUnsafeHelper(t *testing.T) {
	s := newStack(t, "")
	secret, _ := s.enroll("alice")
	dir := filepath.Join(s.dir, "libexec")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, helperPath, filepath.Join(dir, "otpgate-helper"), 0o755)
	s.helper = filepath.Join(dir, "otpgate-helper")
	svc := s.service(s.otpgate("required"))
	want(t, "safe copy", s.auth(svc, "alice", &conv{answers: []string{code(t, secret, 0)}}, 0), nil)

	for _, c := range []struct {
		name  string
		setup func(path string) error
	}{
		{"missing", func(p string) error { return os.Remove(p) }},
		{"owned by nobody", func(p string) error { return os.Chown(p, 65534, 0) }},
		{"group-writable", func(p string) error { return os.Chmod(p, 0o775) }},
		{"world-writable", func(p string) error { return os.Chmod(p, 0o757) }},
		{"directory group-writable", func(p string) error { return os.Chmod(filepath.Dir(p), 0o775) }},
		{"directory owned by nobody", func(p string) error { return os.Chown(filepath.Dir(p), 65534, 0) }},
		{"directory world-writable and sticky", func(p string) error { return os.Chmod(filepath.Dir(p), 0o1777) }},
		{"a symlink", func(p string) error {
			if err := os.Rename(p, p+".real"); err != nil {
				return err
			}
			return os.Symlink(p+".real", p)
		}},
		{"a directory", func(p string) error {
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Mkdir(p, 0o755)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := filepath.Join(s.dir, "unsafe-"+strings.ReplaceAll(c.name, " ", "-"))
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(d, "otpgate-helper")
			copyFile(t, helperPath, p, 0o755)
			if err := c.setup(p); err != nil {
				t.Fatal(err)
			}
			s.helper = p
			svc := s.service(s.otpgate("required"))
			cv := &conv{answers: []string{code(t, secret, 1)}}
			want(t, c.name, s.auth(svc, "alice", cv, 0), pam.ErrAuth)
			if len(cv.prompts) != 0 {
				t.Fatalf("prompted %q through an unsafe helper", cv.prompts)
			}
		})
	}
	want(t, "missing path", func() error {
		s.helper = "/nonexistent/otpgate-helper"
		return s.auth(s.service(s.otpgate("required")), "alice", &conv{answers: []string{code(t, secret, 1)}}, 0)
	}(), pam.ErrAuth)
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, mode); err != nil {
		t.Fatal(err)
	}
}

// childrenRunning returns the pids of this process's children whose
// executable is exe.
func childrenRunning(exe string) []int {
	var pids []int
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, field := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(field)
			if err != nil {
				continue
			}
			if link, err := os.Readlink("/proc/" + field + "/exe"); err == nil && link == exe {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func TestHelperKilled(t *testing.T) {
	s := newStack(t, "")
	secret, _ := s.enroll("alice")
	s.helper = filepath.Join(s.dir, "otpgate-helper")
	copyFile(t, helperPath, s.helper, 0o755)
	svc := s.service(s.otpgate("required"))
	killed := 0
	c := &conv{answers: []string{code(t, secret, 0)}, onPrompt: func() {
		for _, pid := range childrenRunning(s.helper) {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
		time.Sleep(100 * time.Millisecond)
	}}
	want(t, "helper killed during the prompt", s.auth(svc, "alice", c, 0), pam.ErrAuth)
	if killed != 1 {
		t.Fatalf("killed %d helpers, want 1", killed)
	}
	if left := childrenRunning(s.helper); len(left) != 0 {
		t.Fatalf("helpers left: %v", left)
	}
	// The code was not used up.
	want(t, "right code after", s.auth(svc, "alice", &conv{answers: []string{code(t, secret, 0)}}, 0), nil)
}

// fakeHelper writes a root-owned shell script that acts as the helper.
func (s *stack) fakeHelper(name, body string) string {
	s.t.Helper()
	p := filepath.Join(s.dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		s.t.Fatal(err)
	}
	return p
}

// frame returns a printf(1) format that writes a frame.
func frame(typ byte, payload string) string {
	n := len(payload)
	b := []byte{typ, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	var out strings.Builder
	for _, c := range append(b, payload...) {
		out.WriteString("\\" + strconv.FormatInt(int64(c), 8))
	}
	return out.String()
}

func TestHelperHangs(t *testing.T) {
	s := newStack(t, "")
	s.enroll("alice")
	s.helper = s.fakeHelper("hang", "exec sleep 600\n")
	svc := s.service(s.otpgate("required", "timeout=1"))
	start := time.Now()
	want(t, "silent helper", s.auth(svc, "alice", &conv{}, 0), pam.ErrAuth)
	// timeout=1 plus the module's 5 s margin.
	if d := time.Since(start); d < 6*time.Second || d > 10*time.Second {
		t.Fatalf("gave up after %v, want about 6 s", d)
	}
	if left := childrenRunning("/usr/bin/sleep"); len(left) != 0 {
		t.Fatalf("helper left running: %v", left)
	}
}

// TestFakeHelpers: the module takes only well-formed, allowed verdicts
// from a helper that exits cleanly.
func TestFakeHelpers(t *testing.T) {
	s := newStack(t, "")
	const readRequest = "head -c 5 >/dev/null\n"
	for _, c := range []struct {
		name, body string
		args       []string
		want       error
	}{
		{"success, exit 0", "printf '" + frame(0x15, "success") + "'\n", nil, nil},
		{"success, exit 3", "printf '" + frame(0x15, "success") + "'\nexit 3\n", nil, pam.ErrAuth},
		{"success, killed", "printf '" + frame(0x15, "success") + "'\nkill -9 $$\n", nil, pam.ErrAuth},
		{"maxtries", "printf '" + frame(0x15, "maxtries") + "'\n", nil, pam.ErrMaxtries},
		{"service_err", "printf '" + frame(0x15, "service_err") + "'\n", nil, pam.ErrService},
		{"ignore without nullok", "printf '" + frame(0x15, "ignore") + "'\n", nil, pam.ErrAuth},
		{"unknown verdict", "printf '" + frame(0x15, "yes") + "'\n", nil, pam.ErrAuth},
		{"verdict with a NUL", "printf '" + frame(0x15, "success\x00") + "'\n", nil, pam.ErrAuth},
		{"bytes after the verdict", "printf '" + frame(0x15, "success") + "x'\n", nil, pam.ErrAuth},
		{"two verdicts", "printf '" + frame(0x15, "auth_err") + frame(0x15, "success") + "'\n", nil, pam.ErrAuth},
		{"unknown frame type", "printf '" + frame(0x42, "") + frame(0x15, "success") + "'\n", nil, pam.ErrAuth},
		{"module frame type", "printf '" + frame(0x02, "") + frame(0x15, "success") + "'\n", nil, pam.ErrAuth},
		{"data frame (self mode only)", "printf '" + frame(0x16, "{}") + frame(0x15, "success") + "'\n", nil, pam.ErrAuth},
		{"oversize length", "printf '\\025\\000\\001\\000\\001'\n", nil, pam.ErrAuth},
		{"cut short", "printf '\\025\\000\\000\\000\\007succ'\n", nil, pam.ErrAuth},
		{"garbage", "echo garbage\n", nil, pam.ErrAuth},
		{"nothing", "exit 0\n", nil, pam.ErrAuth},
		{"not executable", "", nil, pam.ErrAuth},
		{"info then success", "printf '" + frame(0x12, "hello") + frame(0x15, "success") + "'\n", nil, nil},
		{"authtok then auth_err", "printf '" + frame(0x14, "pw") + frame(0x15, "auth_err") + "'\n", nil, pam.ErrAuth},
	} {
		t.Run(c.name, func(t *testing.T) {
			s.helper = s.fakeHelper(strings.ReplaceAll(c.name, " ", "-"), readRequest+c.body)
			if c.name == "not executable" {
				os.Chmod(s.helper, 0o644)
			}
			svc := s.service(s.otpgate("required", append([]string{"timeout=2"}, c.args...)...))
			want(t, c.name, s.auth(svc, "alice", &conv{}, 0), c.want)
		})
	}
	// With nullok, ignore passes through; in a stack that permits after
	// it, the login goes on.
	s.helper = s.fakeHelper("ignore", readRequest+"printf '"+frame(0x15, "ignore")+"'\n")
	svc := s.service(s.otpgate("[success=done ignore=ignore default=die]", "nullok"), "auth required pam_permit.so")
	want(t, "ignore with nullok", s.auth(svc, "alice", &conv{}, 0), nil)
	svc = s.service(s.otpgate("[success=done ignore=ignore default=die]"), "auth required pam_permit.so")
	want(t, "ignore without nullok", s.auth(svc, "alice", &conv{}, 0), pam.ErrAuth)
}

// TestOtherEntryPoints: setcred succeeds (otpgate sets no credentials, and
// sshd treats a failing pam_setcred as fatal), even with the module alone
// in the stack; the account, session and password entry points answer
// PAM_IGNORE, so a stack of the module alone has no success to give.
func TestOtherEntryPoints(t *testing.T) {
	s := newStack(t, "")
	line := strings.Replace(s.otpgate("required"), "auth", "%s", 1)
	var lines []string
	for _, kind := range []string{"auth", "account", "session", "password"} {
		lines = append(lines, strings.Replace(line, "%s", kind, 1))
	}
	svc := s.service(lines...)
	tx, err := pam.StartConfDir(svc, "alice", &conv{}, s.confDir)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.End()
	want(t, "setcred of the module alone", tx.SetCred(0), nil)
	for name, f := range map[string]func(pam.Flags) error{
		"acct_mgmt": tx.AcctMgmt, "open_session": tx.OpenSession,
		"close_session": tx.CloseSession, "chauthtok": tx.ChangeAuthTok,
	} {
		if err := f(0); err == nil {
			t.Errorf("%s of the module alone: PAM_SUCCESS, want a failure (every module ignored)", name)
		}
	}
}

// TestPamtester runs the module from a service file in /etc/pam.d under
// pamtester, a host that is not this Go process.
func TestPamtester(t *testing.T) {
	s := newStack(t, "")
	if _, err := exec.LookPath("pamtester"); err != nil {
		t.Skip("pamtester is not installed (apt-get install pamtester)")
	}
	secret, _ := s.enroll("alice")
	svc := s.etcService(s.otpgate("required"))
	now := code(t, secret, 0)
	if out, err := pamtester(svc, "alice", now+"\n", nil); err != nil {
		t.Fatalf("right code: %v\n%s", err, out)
	}
	if out, err := pamtester(svc, "alice", now+"\n", nil); err == nil || !strings.Contains(out, "Authentication failure") {
		t.Fatalf("replayed code: %v\n%s", err, out)
	}
	if out, err := pamtester(svc, "bob", "", nil); err == nil || !strings.Contains(out, "no verification code is set up") {
		t.Fatalf("not enrolled: %v\n%s", err, out)
	}
}

// etcService writes lines to /etc/pam.d/otpgate-test-<random>, removed
// after the test; pamtester reads only /etc/pam.d.
func (s *stack) etcService(lines ...string) string {
	s.t.Helper()
	f, err := os.CreateTemp("/etc/pam.d", "otpgate-test-")
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { os.Remove(f.Name()) })
	f.WriteString(strings.Join(lines, "\n") + "\n")
	if err := f.Close(); err != nil {
		s.t.Fatal(err)
	}
	os.Chmod(f.Name(), 0o644)
	return filepath.Base(f.Name())
}

func pamtester(service, user, stdin string, env []string) (string, error) {
	cmd := exec.Command("timeout", "30", "pamtester", service, user, "authenticate")
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	return string(b), err
}
