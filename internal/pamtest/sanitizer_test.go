package pamtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSanitizers runs the module built with -fsanitize=address,undefined
// under pamtester (with libasan preloaded, leak checking on) through its
// success, failure, kill, timeout, bad-argument, conversation-failure and
// set-authtok paths. Any sanitizer report fails the test.
func TestSanitizers(t *testing.T) {
	s := newStack(t, "")
	if _, err := exec.LookPath("pamtester"); err != nil {
		t.Skip("pamtester is not installed (apt-get install pamtester)")
	}
	libasan, err := exec.Command("cc", "-print-file-name=libasan.so").Output()
	asan := strings.TrimSpace(string(libasan))
	if err != nil || !filepath.IsAbs(asan) {
		t.Skip("no libasan for this compiler")
	}
	mod := filepath.Join(s.dir, "pam_otpgate_asan.so")
	if err := buildModule("cc", mod, "-O1", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"); err != nil {
		t.Fatal(err)
	}
	secret, _ := s.enroll("alice")
	line := func(args ...string) string {
		return strings.Replace(s.otpgate("required", args...), modulePath, mod, 1)
	}
	env := []string{"LD_PRELOAD=" + asan, "ASAN_OPTIONS=detect_leaks=1:exitcode=99", "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=98"}
	check := func(name, svc, user, stdin string, ok bool) {
		t.Helper()
		out, err := pamtester(svc, user, stdin, env)
		for _, bad := range []string{"Sanitizer", "runtime error"} {
			if strings.Contains(out, bad) {
				t.Fatalf("%s: sanitizer report:\n%s", name, out)
			}
		}
		if ee, isExit := err.(*exec.ExitError); isExit && ee.ExitCode() > 1 {
			t.Fatalf("%s: pamtester exit %d:\n%s", name, ee.ExitCode(), out)
		}
		if (err == nil) != ok {
			t.Fatalf("%s: %v, want success %v:\n%s", name, err, ok, out)
		}
	}
	svc := s.etcService(line())
	now := code(t, secret, 0)
	check("right code", svc, "alice", now+"\n", true)
	check("replayed code", svc, "alice", now+"\n", false)
	check("conversation failure (no input)", svc, "alice", "", false)
	check("not enrolled", svc, "bob", "", false)
	check("unknown argument", s.etcService(line("bogus")), "alice", "", false)

	check("set-authtok", s.etcService(line("forward_pass")), "alice", "pw"+code(t, secret, 1)+"\n", true)
	const readRequest = "head -c 5 >/dev/null\n"
	s.helper = s.fakeHelper("garbage", readRequest+"echo garbage\n")
	check("garbled helper", s.etcService(line()), "alice", "", false)
	s.helper = s.fakeHelper("oversize", readRequest+"printf '\\025\\000\\001\\000\\001'\n")
	check("oversize frame", s.etcService(line()), "alice", "", false)
	s.helper = s.fakeHelper("hang", "exec sleep 600\n")
	check("silent helper", s.etcService(line("timeout=1")), "alice", "", false)
	s.helper = "/nonexistent"
	check("missing helper", s.etcService(line()), "alice", "", false)
	if _, err := os.Stat(mod); err != nil {
		t.Fatal(err)
	}
}
