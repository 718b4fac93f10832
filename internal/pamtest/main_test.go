package pamtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otpgate/otpgate/internal/testbin"
)

// Built once for all tests, in a root-owned 0755 directory.
var (
	skipReason string // why every test skips, or ""
	buildDir   string // root of the built files
	repoRoot   string
	modulePath string // pam_otpgate.so, -Wall -Wextra -Werror
	helperPath string // otpgate-helper
	// otpgate-launch-helper for helperPath, setuid root; the module runs
	// it from helperPath's directory in a host that is not root.
	launcherPath string
)

// moduleCFLAGS are the Makefile's flags for the module.
var moduleCFLAGS = []string{"-fPIC", "-Wall", "-Wextra", "-Werror", "-std=c99", "-D_GNU_SOURCE", "-O2", "-g", "-shared"}

func TestMain(m *testing.M) {
	code := func() int {
		if err := setup(); err != nil {
			skipReason = err.Error()
			fmt.Fprintf(os.Stderr, "pamtest: every test skips: %s\n", skipReason)
		}
		if buildDir != "" {
			defer os.RemoveAll(buildDir)
		}
		return m.Run()
	}()
	os.Exit(code)
}

func setup() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: the module accepts only a root-owned helper (run as root, or make test as root)")
	}
	if _, err := os.Stat("/usr/include/security/pam_modules.h"); err != nil {
		return fmt.Errorf("needs libpam0g-dev (no /usr/include/security/pam_modules.h)")
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		return fmt.Errorf("needs a C compiler (cc)")
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	repoRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
	dir, err := os.MkdirTemp("", "otpgate-pamtest-")
	if err != nil {
		return err
	}
	buildDir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	modulePath = filepath.Join(dir, "pam_otpgate.so")
	if err := buildModule(cc, modulePath); err != nil {
		return err
	}
	helperPath = filepath.Join(dir, "otpgate-helper")
	if err := buildGo(helperPath, "./cmd/otpgate-helper"); err != nil {
		return err
	}
	launcherPath = filepath.Join(dir, "otpgate-launch-helper")
	return BuildLauncher(launcherPath, helperPath)
}

func buildModule(cc, out string, extra ...string) error {
	args := append(append([]string{}, moduleCFLAGS...), extra...)
	args = append(args, "-Wl,--version-script="+filepath.Join(repoRoot, "pam", "exports.map"),
		"-o", out, filepath.Join(repoRoot, "pam", "pam_otpgate.c"), "-lpam")
	cmd := exec.Command(cc, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the module: %v\n%s", err, b)
	}
	return nil
}

// buildGo builds a static binary of pkg (CGO_ENABLED=0, as make does)
// with the go command that runs the tests.
func buildGo(out, pkg string, ldflags ...string) error {
	gobin := testbin.Go()
	args := []string{"build", "-trimpath", "-ldflags=-s -w " + strings.Join(ldflags, " "), "-o", out, pkg}
	cmd := exec.Command(gobin, args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %v\n%s", pkg, err, b)
	}
	return os.Chmod(out, 0o755)
}

func needRoot(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}
