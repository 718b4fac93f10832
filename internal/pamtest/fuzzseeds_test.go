package pamtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFuzzSeeds runs the committed seeds of the module's frame fuzzer
// (pam/fuzz/corpus) through the same harness make fuzz uses
// (pam/fuzz/fuzz_relay.c), built with gcc and -fsanitize=address,undefined
// and a plain driver instead of libFuzzer: every seed must run without a
// sanitizer report or an abort (a verdict the module may not give).
func TestFuzzSeeds(t *testing.T) {
	if _, err := os.Stat("/usr/include/security/pam_appl.h"); err != nil {
		t.Skip("needs libpam0g-dev (no /usr/include/security/pam_appl.h)")
	}
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("needs a C compiler (cc)")
	}
	if out, err := exec.Command("cc", "-print-file-name=libasan.so").Output(); err != nil || !filepath.IsAbs(strings.TrimSpace(string(out))) {
		t.Skip("no libasan for this compiler")
	}
	root := RepoRoot()
	seeds, err := filepath.Glob(filepath.Join(root, "pam", "fuzz", "corpus", "*"))
	if err != nil || len(seeds) < 10 {
		t.Fatalf("pam/fuzz/corpus has %d seeds, want at least 10 (%v)", len(seeds), err)
	}
	bin := filepath.Join(t.TempDir(), "fuzz_seeds")
	build := exec.Command("cc", "-g", "-O1", "-std=c99", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
		"-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-o", bin,
		filepath.Join(root, "pam", "fuzz", "fuzz_relay.c"), filepath.Join(root, "pam", "fuzz", "seeds_main.c"), "-lpam")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the seed driver: %v\n%s", err, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, seeds...)
	cmd.Env = append(os.Environ(), "ASAN_OPTIONS=detect_leaks=1:exitcode=99", "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=98")
	out, err := cmd.CombinedOutput()
	if err != nil || ctx.Err() != nil {
		t.Fatalf("seeds: %v (timed out: %v)\n%s", err, ctx.Err() != nil, out)
	}
	if got, want := strings.TrimSpace(string(out)), fmt.Sprintf("%d inputs", len(seeds)); got != want {
		t.Fatalf("the driver said %q, want %q", got, want)
	}
}
