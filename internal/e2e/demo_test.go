package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoScript runs the README's first command as make demo does
// without Docker (scripts/demo.sh), with DEMO_SELFTEST=1: the demo user
// logs in once through the real ssh client with the password and a code
// oathtool computes from the secret the demo prints; then everything the
// demo made is gone (the user first of all). It fails when the printed
// oathtool line has no secret (the store's file format changed under the
// script once).
func TestDemoScript(t *testing.T) {
	requireTools(t, "sshd", "ssh", "oathtool", "useradd", "userdel", "make", "gcc")
	if _, err := exec.LookPath("getent"); err == nil {
		if exec.Command("getent", "passwd", "otpgate-demo").Run() == nil {
			t.Skip("a user otpgate-demo exists: a demo runs on this machine")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := command(ctx, "sh", filepath.Join(repoRoot(t), "scripts", "demo.sh"))
	// SIGTERM, not SIGKILL, on a timeout: the demo cleans up on it.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	cmd.Env = append(cmd.Env, "DEMO_SELFTEST=1", "DEMO_PORT="+strconv.Itoa(freePort(t)))
	// The go command's settings, as a person running sudo make demo has
	// them (HOME; GOPATH, GOMODCACHE, GOPROXY where set).
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "GO") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// And the caches the tests' own builds use, should HOME be unset.
	goTool, _ := lookTool("go")
	if b, err := exec.Command(goTool, "env", "GOMODCACHE", "GOCACHE").Output(); err == nil {
		if v := strings.Fields(string(b)); len(v) == 2 {
			cmd.Env = append(cmd.Env, "GOMODCACHE="+v[0], "GOCACHE="+v[1])
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "demo-login-ok") {
		t.Fatalf("demo self-test: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`oathtool --totp -b [A-Z2-7]{26,}\n`).Match(out) {
		t.Errorf("the demo's oathtool line has no secret:\n%s", out)
	}
	if exec.Command("getent", "passwd", "otpgate-demo").Run() == nil {
		t.Errorf("the demo user is still there after the demo ended")
	}
}
