package packaging

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/totp"
)

// pkgtestDockerfile adds pamtester to the Debian base image; the test
// container itself runs with --network none.
const pkgtestDockerfile = `ARG BASE
FROM ${BASE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pamtester >/dev/null && rm -rf /var/lib/apt/lists/*
`

// testImage returns a Debian 12 image with pamtester: the base from
// scripts/debian-base.sh (which starts a Docker daemon when root and none
// answers, and makes the base with debootstrap when none can be pulled),
// plus pamtester, built once per base.
func testImage(t *testing.T) string {
	t.Helper()
	needTool(t, "docker", "docker.io")
	root := repoRoot(t)
	out, err := runErr(15*time.Minute, root, nil, "", "sh", "-c", "scripts/debian-base.sh 2>&1 >/tmp/otpgate-pkgtest-base.$$ && cat /tmp/otpgate-pkgtest-base.$$ >&2; rm -f /tmp/otpgate-pkgtest-base.$$")
	if err != nil {
		skipOrFail(t, "no Docker daemon or Debian base image (scripts/debian-base.sh): %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	base := lines[len(lines)-1]
	id := strings.TrimSpace(run(t, time.Minute, "", nil, "docker", "image", "inspect", "-f", "{{.Id}}", base))
	sum := sha256.Sum256([]byte(id + pkgtestDockerfile))
	image := fmt.Sprintf("otpgate-pkgtest:%x", sum[:6])
	if _, err := runErr(time.Minute, "", nil, "", "docker", "image", "inspect", image); err == nil {
		return image
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(pkgtestDockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, 10*time.Minute, dir, nil, "docker", "build", "-q", "--network", "host", "--build-arg", "BASE="+base, "-t", image, dir)
	return image
}

// container is a throwaway Debian container (--network none).
type container struct {
	t    *testing.T
	name string
}

// sh runs script in the container as root and returns its output; a
// non-zero exit fails the test.
func (c *container) sh(script string) string {
	c.t.Helper()
	out, err := c.try("", script)
	if err != nil {
		c.t.Fatalf("in the container: %s\n%v\n%s", script, err, out)
	}
	return out
}

// try runs script with stdin and returns its output and error.
func (c *container) try(stdin, script string) (string, error) {
	return runErr(3*time.Minute, "", nil, stdin, "docker", "exec", "-i", "-e", "DEBIAN_FRONTEND=noninteractive",
		c.name, "sh", "-ec", script)
}

// pamtester runs a login of user through the pam.d service otpgate-test
// (which includes common-auth) with the given answers, one per line.
func (c *container) pamtester(user string, answers ...string) (string, bool) {
	c.t.Helper()
	out, err := c.try(strings.Join(answers, "\n")+"\n", "pamtester -v otpgate-test "+user+" authenticate 2>&1")
	return out, err == nil
}

// TestDebInContainer installs the package in a throwaway Debian 12
// container, enables the profile, logs in through common-auth with the
// password and then the code, and removes and purges the package.
func TestDebInContainer(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "the container test needs root (the Docker daemon, debootstrap); run as root: go test -run TestDebInContainer ./internal/packaging/")
	}
	deb := buildDeb(t)
	image := testImage(t)
	name := fmt.Sprintf("otpgate-pkgtest-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	run(t, 2*time.Minute, "", nil, "docker", "run", "-d", "--rm", "--network", "none", "--name", name,
		"-v", filepath.Dir(deb)+":/pkg:ro", image, "sleep", "1200")
	t.Cleanup(func() { runErr(time.Minute, "", nil, "", "docker", "rm", "-f", name) })
	c := &container{t: t, name: name}
	pkg := "/pkg/" + filepath.Base(deb)
	launcher := "/usr/libexec/otpgate/otpgate-launch-helper"

	// Install: nothing asks for a code yet.
	out := c.sh("dpkg -i " + pkg + " 2>&1")
	if strings.Contains(out, "warning") || strings.Contains(out, "error") {
		t.Errorf("dpkg -i printed a warning or error:\n%s", out)
	}
	ma := strings.TrimSpace(c.sh("dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || dpkg --print-architecture | sed 's/amd64/x86_64-linux-gnu/;s/arm64/aarch64-linux-gnu/'"))
	modes := c.sh("stat -c '%a %U:%G %n' /usr/bin/otpgate /usr/libexec/otpgate/otpgate-helper " + launcher +
		" /usr/lib/" + ma + "/security/pam_otpgate.so /etc/otpgate/config.toml /var/lib/otpgate /var/lib/otpgate/users /var/lib/otpgate/state /var/lib/otpgate/locks")
	for _, want := range []string{
		"755 root:root /usr/bin/otpgate",
		"755 root:root /usr/libexec/otpgate/otpgate-helper",
		"4755 root:root " + launcher, // no systemd here: the launcher serves self-service
		"644 root:root /usr/lib/" + ma + "/security/pam_otpgate.so",
		"644 root:root /etc/otpgate/config.toml",
		"700 root:root /var/lib/otpgate\n",
		"700 root:root /var/lib/otpgate/users",
	} {
		if !strings.Contains(modes+"\n", want) {
			t.Errorf("after install, want %q in:\n%s", want, modes)
		}
	}
	if got := c.sh("dpkg-statoverride --list " + launcher); strings.TrimSpace(got) != "root root 4755 "+launcher {
		t.Errorf("dpkg-statoverride --list: %q", got)
	}
	if got := c.sh("grep -c pam_otpgate /etc/pam.d/common-auth || true"); strings.TrimSpace(got) != "0" {
		t.Errorf("installing changed common-auth (Default: no):\n%s", c.sh("cat /etc/pam.d/common-auth"))
	}
	c.sh("test -L /etc/systemd/system/sockets.target.wants/otpgate-helper.socket")
	c.sh("otpgate --help >/dev/null; otpgate status --user root 2>&1 | grep -q 'not enrolled'")

	// A user with a password, and a service that includes common-auth.
	c.sh(`useradd -m alice && echo 'alice:Pw-4-alice' | chpasswd
printf '@include common-auth\n@include common-account\n' > /etc/pam.d/otpgate-test`)

	// Enable the profile: the code comes after the password.
	c.sh("pam-auth-update --enable otpgate")
	auth := c.sh("grep -v '^#' /etc/pam.d/common-auth | grep .")
	iUnix, iPermit, iOTP := strings.Index(auth, "pam_unix.so"), strings.Index(auth, "pam_permit.so"), strings.Index(auth, "pam_otpgate.so nullok")
	if iUnix < 0 || iOTP < 0 || iOTP < iPermit || iOTP < iUnix {
		t.Fatalf("common-auth after --enable otpgate:\n%s", auth)
	}
	t.Logf("common-auth, enabled:\n%s", auth)

	// Not enrolled: the password alone (nullok), so enabling locks
	// nobody out.
	if out, ok := c.pamtester("alice", "Pw-4-alice"); !ok || strings.Contains(out, "Verification code") {
		t.Errorf("unenrolled alice with her password: ok=%v\n%s", ok, out)
	}

	// Enrolled: password, then code.
	var enrolled struct {
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal([]byte(c.sh("otpgate enroll --user alice --qr none --no-confirm --json 2>/dev/null")), &enrolled); err != nil || enrolled.Secret == "" {
		t.Fatalf("otpgate enroll --json: %v", err)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.TrimRight(enrolled.Secret, "="))
	if err != nil {
		t.Fatalf("secret %q: %v", enrolled.Secret, err)
	}
	step := totp.Step(time.Now(), totp.Default.Period)
	wrong, _ := totp.CodeAt(secret, uint64(step+1000), totp.Default)
	if out, ok := c.pamtester("alice", "Pw-4-alice", wrong); ok || !strings.Contains(out, "Verification code") {
		t.Errorf("alice with her password and a wrong code: ok=%v\n%s", ok, out)
	}
	if out, ok := c.pamtester("alice", "wrong password"); ok || strings.Contains(out, "Verification code") {
		t.Errorf("a wrong password must end the stack before the code is asked: ok=%v\n%s", ok, out)
	}
	code, _ := totp.CodeAt(secret, uint64(totp.Step(time.Now(), totp.Default.Period)), totp.Default)
	if out, ok := c.pamtester("alice", "Pw-4-alice", code); !ok {
		t.Errorf("alice with her password and the right code: denied\n%s", out)
	} else {
		t.Logf("alice, password and code:\n%s", out)
	}
	if out, ok := c.pamtester("alice", "Pw-4-alice", code); ok {
		t.Errorf("the same code twice: accepted\n%s", out)
	}

	// dpkg -r: the profile leaves common-auth first, the password alone
	// works again; config and store stay.
	c.sh("dpkg -r otpgate 2>&1")
	if got := c.sh("grep -c pam_otpgate /etc/pam.d/common-auth || true"); strings.TrimSpace(got) != "0" {
		t.Errorf("after dpkg -r common-auth still names pam_otpgate:\n%s", c.sh("cat /etc/pam.d/common-auth"))
	}
	if out, ok := c.pamtester("alice", "Pw-4-alice"); !ok {
		t.Errorf("after dpkg -r alice cannot log in with her password:\n%s", out)
	}
	c.sh("test -f /etc/otpgate/config.toml && test -f /var/lib/otpgate/users/alice.toml && test ! -e /usr/lib/" + ma + "/security/pam_otpgate.so && test ! -e /usr/bin/otpgate")

	// dpkg -P: the config and the statoverride go; the store stays while
	// a user is enrolled in it.
	out = c.sh("dpkg -P otpgate 2>&1")
	if !strings.Contains(out, "keeping /var/lib/otpgate") {
		t.Errorf("dpkg -P does not say it keeps the store:\n%s", out)
	}
	c.sh("test ! -e /etc/otpgate && test -f /var/lib/otpgate/users/alice.toml")
	if got := c.sh("dpkg-statoverride --list " + launcher + " || true"); strings.TrimSpace(got) != "" {
		t.Errorf("dpkg -P left the statoverride: %q", got)
	}
	c.sh("test ! -e /etc/systemd/system/sockets.target.wants/otpgate-helper.socket")

	// Reinstall: alice is still enrolled. With nobody enrolled, purge
	// removes the store.
	c.sh("dpkg -i " + pkg + " >/dev/null 2>&1")
	c.sh("! otpgate status --user alice | grep -q 'not enrolled'; otpgate reset --user alice")
	c.sh("dpkg -P otpgate >/dev/null 2>&1; test ! -e /var/lib/otpgate && test ! -e /etc/otpgate")
}
