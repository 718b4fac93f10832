package dockertest

import (
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestDemoDockerScript runs make demo's Docker route (scripts/demo-docker.sh)
// with DEMO_SELFTEST=1: the image is built as make docker does, the demo
// user logs in once through the real ssh client with its key and a code
// oathtool computes from the secret the demo prints, and the container
// is removed. It fails when the printed oathtool line has no secret.
func TestDemoDockerScript(t *testing.T) {
	root := repoRoot(t)
	docker := requireDocker(t, root)
	if _, ok := lookTool("oathtool"); !ok {
		skipOrFail(t, "oathtool is missing (scripts/test-deps.sh installs it)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := run(buildTimeout, []string{"DEMO_SELFTEST=1", "DEMO_PORT=" + strconv.Itoa(port)}, "", "sh", filepath.Join(root, "scripts/demo-docker.sh"))
	out := r.stdout + r.stderr
	if r.exit != 0 || !strings.Contains(out, "demo-login-ok") {
		t.Fatalf("demo-docker self-test: %s", r)
	}
	if !regexp.MustCompile(`oathtool --totp -b [A-Z2-7]{26,}\n`).MatchString(out) {
		t.Errorf("the demo's oathtool line has no secret:\n%s", out)
	}
	if r := run(cmdTimeout, nil, "", docker, "inspect", "otpgate-demo"); r.exit == 0 {
		t.Errorf("the demo's container is still there after the demo ended")
	}
}
