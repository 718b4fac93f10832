package dockertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Timeouts: every process the test starts runs under one of these.
const (
	// buildTimeout bounds the image build; a cold one (debootstrap of the
	// base, apt-get in the image) takes about a minute here.
	buildTimeout = 12 * time.Minute
	// daemonTimeout bounds starting a Docker daemon.
	daemonTimeout = 2 * time.Minute
	// cmdTimeout bounds one docker command (run, exec, logs, rm).
	cmdTimeout = 60 * time.Second
	// loginTimeout bounds one ssh or sudo inside the container; it runs
	// under timeout(1) in there too, since killing docker exec does not
	// kill what it started.
	loginTimeout = 30 * time.Second
)

// image is the tag the test builds, apart from make docker's
// otpgate:latest so that a test run never replaces the image a person
// built.
const image = "otpgate:dockertest"

// requireEnv turns every skip into a failure, for CI that must run
// everything.
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

// lookTool finds a program in PATH or the sbin directories a PATH may
// lack.
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

// result is what one finished process left.
type result struct {
	stdout, stderr string
	exit           int // -1 when killed or not started
	timedOut       bool
	dur            time.Duration
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("exit=%d timedOut=%v dur=%v err=%v\n--- stdout:\n%s\n--- stderr:\n%s", r.exit, r.timedOut,
		r.dur.Round(time.Millisecond), r.err, r.stdout, r.stderr)
}

// run runs name args with stdin under timeout, in its own process group
// killed as a whole when the time is up, with env added to this
// process's environment.
func run(timeout time.Duration, env []string, stdin string, name string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 3 * time.Second
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, strings.NewReader(stdin)
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), dur: time.Since(start), err: err, exit: -1}
	if cmd.ProcessState != nil {
		r.exit = cmd.ProcessState.ExitCode()
	}
	r.timedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	return r
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// repoRoot is the top of the working tree (the test runs in
// internal/dockertest).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "contrib/docker/Dockerfile")); err != nil {
		t.Fatalf("not in the otpgate tree: %v", err)
	}
	return root
}

// requireDocker returns the docker command once a daemon answers. As
// root it starts one when none does (scripts/debian-base.sh --dockerd);
// otherwise, or when that fails, the test skips (fails under
// OTPGATE_REQUIRE_TOOLS).
func requireDocker(t testing.TB, root string) string {
	t.Helper()
	docker, ok := lookTool("docker")
	if !ok {
		skipOrFail(t, "docker is not installed, so the image cannot be built or run (as root, scripts/test-deps.sh installs docker.io)")
	}
	r := run(cmdTimeout, nil, "", docker, "info")
	if r.exit == 0 {
		return docker
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "no Docker daemon can be reached (docker info: %s); run as root, and this test starts one", firstLine(r.stderr))
	}
	r = run(daemonTimeout, nil, "", filepath.Join(root, "scripts/debian-base.sh"), "--dockerd")
	if r.exit != 0 {
		skipOrFail(t, "no Docker daemon can be reached, and none could be started here: scripts/debian-base.sh --dockerd: %s", r)
	}
	t.Logf("started a Docker daemon: %s", strings.TrimSpace(r.stderr))
	return docker
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// buildImage builds image with contrib/docker/build.sh, as make docker
// does.
func buildImage(t testing.TB, root string) {
	t.Helper()
	r := run(buildTimeout, []string{"IMAGE=" + image}, "", filepath.Join(root, "contrib/docker/build.sh"))
	if r.exit != 0 {
		t.Fatalf("contrib/docker/build.sh: %s", r)
	}
	t.Logf("built %s in %v", image, r.dur.Round(100*time.Millisecond))
}

// container is one running container of image.
type container struct {
	docker, name string
}

// startContainer starts image with --network none (the container has its
// loopback only) and waits until sshd listens and the helper daemon's
// socket is there. It is removed with its volume when the test ends.
func startContainer(t testing.TB, docker string, runArgs []string, sshdArgs ...string) *container {
	t.Helper()
	c := &container{docker: docker, name: "otpgate-dockertest-" + randHex(3)}
	args := append([]string{"run", "-d", "--network", "none", "--name", c.name, "--hostname", "otpgate-test"}, runArgs...)
	args = append(append(args, image), sshdArgs...)
	if r := run(cmdTimeout, nil, "", docker, args...); r.exit != 0 {
		t.Fatalf("docker %s: %s", strings.Join(args, " "), r)
	}
	t.Cleanup(func() {
		if r := run(cmdTimeout, nil, "", docker, "rm", "-f", "-v", c.name); r.exit != 0 {
			t.Errorf("docker rm -f -v %s: %s", c.name, r)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		logs := c.logs(t)
		sock := c.exec(t, "", "test", "-S", "/run/otpgate/helper.sock")
		if strings.Contains(logs, "Server listening on") && sock.exit == 0 {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: sshd and the helper daemon not up after 30 s; docker logs:\n%s", c.name, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// exec runs args in the container as root, stdin on its standard input.
func (c *container) exec(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	return c.execWith(t, nil, stdin, args...)
}

// execWith runs args in the container with docker exec options opts
// (-u USER, -e NAME=VALUE, ...).
func (c *container) execWith(t testing.TB, opts []string, stdin string, args ...string) result {
	t.Helper()
	a := append(append([]string{"exec", "-i"}, opts...), c.name)
	return run(cmdTimeout, nil, stdin, c.docker, append(a, args...)...)
}

// mustExec is exec for set-up steps that must succeed.
func (c *container) mustExec(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	r := c.exec(t, stdin, args...)
	if r.exit != 0 {
		t.Fatalf("docker exec %s %s: %s", c.name, strings.Join(args, " "), r)
	}
	return r
}

// logs is what docker logs has of the container: standard output and
// standard error.
func (c *container) logs(t testing.TB) string {
	t.Helper()
	r := run(cmdTimeout, nil, "", c.docker, "logs", c.name)
	if r.exit != 0 {
		t.Fatalf("docker logs %s: %s", c.name, r)
	}
	return r.stdout + r.stderr
}
