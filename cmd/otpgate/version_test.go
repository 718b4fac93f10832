package main_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/testbin"
)

// versionFlag is how the Makefile links the version in; if the variable
// moved, -X would set nothing and every build would say "devel".
const versionFlag = "-X github.com/otpgate/otpgate/internal/version.Version="

// TestVersionLinkedIn builds otpgate and otpgate-helper as make does,
// with a version given by -X, and runs their --version.
func TestVersionLinkedIn(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mk), versionFlag+"$(VERSION)") {
		t.Fatalf("the Makefile's go build does not pass %s$(VERSION)", versionFlag)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, c := range []struct{ pkg, args, want string }{
		{"otpgate", "--version", "otpgate 1.2.3-4+test\n"},
		{"otpgate", "version", "otpgate 1.2.3-4+test\n"},
		{"otpgate-helper", "--version", "otpgate-helper 1.2.3-4+test\n"},
	} {
		bin := filepath.Join(dir, c.pkg)
		if _, err := os.Stat(bin); err != nil {
			b := exec.CommandContext(ctx, testbin.Go(), "build", "-trimpath", "-ldflags=-s -w "+versionFlag+"1.2.3-4+test", "-o", bin, "../"+c.pkg)
			b.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := b.CombinedOutput(); err != nil {
				t.Fatalf("building %s: %v\n%s", c.pkg, err, out)
			}
		}
		out, err := exec.CommandContext(ctx, bin, c.args).Output()
		if err != nil {
			t.Fatalf("%s %s: %v", c.pkg, c.args, err)
		}
		if string(out) != c.want {
			t.Errorf("%s %s printed %q, want %q", c.pkg, c.args, out, c.want)
		}
	}
}
