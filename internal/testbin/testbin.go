// Package testbin builds the project's commands once per test process, so
// tests can run them as real processes.
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	dir   string
	built = map[string]string{}
)

// Build returns the path of the command pkg (such as "cmd/otpgate"),
// built from the module root into a temporary directory that lives as long
// as the test process. Call Cleanup from TestMain to remove it.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "otpgate-bin-")
		if err != nil {
			t.Fatal(err)
		}
		// World-readable, so a test can run the binary as another user.
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dir = d
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command(Go(), "build", "-o", out, "./"+pkg)
	cmd.Dir = root()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, b)
	}
	built[pkg] = out
	return out
}

// Go returns the go command that runs the tests: go test puts its own
// GOROOT/bin first on the test's PATH, so this is the same Go even where
// PATH had none (sudo's secure_path has no /usr/local/go/bin). Outside go
// test it is go on PATH, else plain "go". (runtime.GOROOT is empty in a
// -trimpath build, and deprecated.)
func Go() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

// Cleanup removes the built binaries.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// root is the module root: this file is internal/testbin/testbin.go.
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
