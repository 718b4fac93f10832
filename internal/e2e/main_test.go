package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/pgtest"
)

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		sweepStale()
	}
	code := m.Run()
	pgtest.StopShared()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// staleAge is how old a leftover must be before sweepStale removes it: far
// more than a whole run of this package, so a run never sweeps away what a
// concurrent run is using.
const staleAge = 30 * time.Minute

// sweepStale removes what a killed earlier run left behind: its pam.d
// services, sudoers drop-ins (which grant sudo to a test user) and test
// users. Only names with the test prefix, only when old.
func sweepStale() {
	old := func(path string) bool {
		st, err := os.Lstat(path)
		return err == nil && time.Since(st.ModTime()) > staleAge
	}
	for _, pattern := range []string{"/etc/pam.d/*" + prefix + "*", "/etc/pam.d/." + "*" + prefix + "*", "/etc/sudoers.d/" + prefix + "*", "/etc/sudoers.d/." + prefix + "*"} {
		matches, _ := filepath.Glob(pattern)
		for _, p := range matches {
			if old(p) {
				fmt.Fprintf(os.Stderr, "e2e: removing stale %s\n", p)
				os.Remove(p)
			}
		}
	}
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var stale []string
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 6 || !strings.HasPrefix(fields[0], prefix) {
			continue
		}
		if home := fields[5]; home == "" || old(home) || !exists(home) {
			stale = append(stale, fields[0])
		}
	}
	for _, name := range stale {
		fmt.Fprintf(os.Stderr, "e2e: removing stale user %s\n", name)
		run(setupTimeout, nil, "userdel", "--force", "--remove", name)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// repoRoot is the module root (the directory holding go.mod).
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if exists(filepath.Join(dir, "go.mod")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// otpgateBins are the module, the helper and the command, built once per
// test process into one root-owned 0755 directory under /tmp (the module
// refuses a helper that is not root-owned or that someone else could
// replace, in it or in a directory above it; /tmp's sticky bit is allowed).
type otpgateBins struct {
	dir    string
	module string // pam_otpgate.so
	helper string // otpgate-helper
	cli    string // otpgate
	skip   string // why they cannot be built yet
	err    error
}

var (
	binsOnce sync.Once
	bins     otpgateBins
)

// needOtpgate builds (once) and returns the otpgate binaries, skipping the
// test when the sources are not there yet (failing with
// OTPGATE_REQUIRE_TOOLS) and failing it when they do not build.
func needOtpgate(t testing.TB) *otpgateBins {
	t.Helper()
	requireTools(t, "cc", "go", "oathtool")
	root := repoRoot(t)
	binsOnce.Do(func() { bins = buildOtpgate(root) })
	if bins.skip != "" {
		skipOrFail(t, "%s", bins.skip)
	}
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return &bins
}

func buildOtpgate(root string) otpgateBins {
	var b otpgateBins
	if !exists(filepath.Join(root, "pam", "pam_otpgate.c")) {
		b.skip = "pam/pam_otpgate.c is not written yet"
		return b
	}
	if goFiles, _ := filepath.Glob(filepath.Join(root, "cmd", "otpgate-helper", "*.go")); len(goFiles) == 0 {
		b.skip = "cmd/otpgate-helper is not written yet"
		return b
	}
	d, err := os.MkdirTemp("/tmp", "otpgate-e2e-bin-")
	if err != nil {
		b.err = err
		return b
	}
	b.dir = d
	if b.err = os.Chmod(d, 0o755); b.err != nil {
		return b
	}
	b.module = filepath.Join(d, "pam_otpgate.so")
	b.helper = filepath.Join(d, "otpgate-helper")
	b.cli = filepath.Join(d, "otpgate")
	goTool, _ := lookTool("go")
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	builds := []struct {
		out  string
		args []string
	}{
		{b.helper, []string{goTool, "build", "-trimpath", "-o", b.helper, "./cmd/otpgate-helper"}},
		{b.cli, []string{goTool, "build", "-trimpath", "-o", b.cli, "./cmd/otpgate"}},
		// The flags of the Makefile's pam target, into our own directory
		// (make pam writes build/, which other work may be using).
		{b.module, []string{cc, "-fPIC", "-Wall", "-Wextra", "-Werror", "-std=c99", "-D_GNU_SOURCE", "-O2", "-g", "-shared",
			"-Wl,--version-script=pam/exports.map", "-o", b.module, "pam/pam_otpgate.c", "-lpam"}},
	}
	for _, bl := range builds {
		args := bl.args
		start := time.Now()
		r := runCmd(buildTimeout, nil, func(ctx context.Context) *exec.Cmd {
			cmd := command(ctx, args[0], args[1:]...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			return cmd
		})
		if r.exit != 0 || r.timedOut {
			b.err = fmt.Errorf("building: %s: %s", strings.Join(args, " "), r)
			return b
		}
		fmt.Fprintf(os.Stderr, "e2e: built %s in %v\n", filepath.Base(bl.out), time.Since(start).Round(time.Millisecond))
	}
	for _, p := range []string{b.module, b.helper, b.cli} {
		if b.err = os.Chmod(p, 0o755); b.err != nil {
			return b
		}
		if b.err = os.Chown(p, 0, 0); b.err != nil {
			return b
		}
	}
	return b
}
