package pamtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// LauncherCFLAGS are the Makefile's LAUNCH_CFLAGS and LAUNCH_LDFLAGS with
// its default CFLAGS, without -DOTPGATE_HELPER (TestLauncherFlagsMatchMakefile
// holds the two together).
var LauncherCFLAGS = []string{"-fPIE", "-fstack-protector-strong", "-Wall", "-Wextra", "-Werror", "-std=c99", "-D_GNU_SOURCE", "-O2", "-g", "-pie", "-Wl,-z,relro,-z,now"}

// BuildLauncher compiles otpgate-launch-helper (pam/otpgate-launch-helper.c)
// into out with helper as the program it execs, as make does, and makes
// it root-owned with mode 4755. Tests that run otpgate or sshcheck as a
// normal user use it: the Go helper is never setuid. It needs root and a
// C compiler (cc); out's directory must be one only root can change, or
// the module refuses the launcher.
func BuildLauncher(out, helper string) error {
	args := append(append([]string{}, LauncherCFLAGS...), "-DOTPGATE_HELPER=\""+helper+"\"",
		"-o", out, filepath.Join(RepoRoot(), "pam", "otpgate-launch-helper.c"))
	if b, err := exec.Command("cc", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("building otpgate-launch-helper: %v\n%s", err, b)
	}
	if err := os.Chown(out, 0, 0); err != nil {
		return err
	}
	return os.Chmod(out, 0o755|os.ModeSetuid)
}

// RepoRoot is the module root: this file is internal/pamtest/build.go.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}
