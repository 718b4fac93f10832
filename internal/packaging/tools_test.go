package packaging

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// requireEnv makes a missing tool or privilege a failure instead of a
// skip (scripts/test.sh sets it as root, where test-deps installed them).
const requireEnv = "OTPGATE_REQUIRE_TOOLS"

// skipOrFail skips the test, or fails it when OTPGATE_REQUIRE_TOOLS is set.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(requireEnv) != "" {
		t.Fatalf("%s (%s is set, so this is a failure, not a skip)", msg, requireEnv)
	}
	t.Skip(msg)
}

// lookTool finds a program in PATH or the sbin directories a PATH may lack.
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

// needTool returns the path of name, or skips (fails) saying which
// Debian package to install.
func needTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, ok := lookTool(name)
	if !ok {
		skipOrFail(t, "%s not found; install %s (scripts/test-deps.sh does, as root)", name, pkg)
	}
	return p
}

// goTool is the go command running these tests.
func goTool(t testing.TB) string {
	t.Helper()
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	t.Fatal("no go command (GOROOT/bin/go or PATH)")
	return ""
}

// repoRoot is the repository's top directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// run runs a command with a deadline and returns its combined output;
// a failure or a timeout fails the test.
func run(t testing.TB, timeout time.Duration, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(timeout, dir, env, "", name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// runErr is run that returns the error instead of failing; stdin is the
// command's standard input.
func runErr(timeout time.Duration, dir string, env []string, stdin, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	return string(out), err
}
