package doctor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/helper"
)

// TestCheckDaemon: doctor tells the mode in use, a daemon installed but
// not running, a socket the module would refuse, and a setuid launcher the
// running daemon makes unneeded.
func TestCheckDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the socket must be root's: run as root")
	}
	dir := t.TempDir()
	units := filepath.Join(dir, "units")
	os.Mkdir(units, 0o755)
	old := unitDirs
	unitDirs = []string{units}
	defer func() { unitDirs = old }()
	run := filepath.Join(dir, "run")
	os.Mkdir(run, 0o755)
	socket := filepath.Join(run, "helper.sock")

	// No daemon, none installed: exec mode, no problem.
	d, found := CheckDaemon(socket)
	if d.Up || len(found) != 0 {
		t.Fatalf("no daemon, not installed: %+v %v", d, found)
	}
	// Installed, not running.
	os.WriteFile(filepath.Join(units, "otpgate-helper.socket"), []byte("[Socket]\n"), 0o644)
	d, found = CheckDaemon(socket)
	if d.Up || len(found) != 1 || !strings.Contains(found[0].Problem, "nothing listens") || !strings.Contains(found[0].Fix, "systemctl enable --now") {
		t.Fatalf("installed, not running: %+v %v", d, found)
	}
	// Running.
	lfd, err := helper.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &helper.Server{ShutdownWait: time.Second}
	done := make(chan struct{})
	go func() { srv.Serve(ctx, lfd); close(done) }()
	defer func() { cancel(); <-done }()
	d, found = CheckDaemon(socket)
	if !d.Up || len(found) != 0 {
		t.Fatalf("running: %+v %v", d, found)
	}
	// ...so the setuid launcher is not needed (a note), and one without
	// the bit is no problem.
	launcher := filepath.Join(dir, LauncherName)
	os.WriteFile(launcher, []byte("x"), 0o755)
	os.Chmod(launcher, os.ModeSetuid|0o755)
	if n := launcherNote(launcher, d); !strings.Contains(n, "not needed") {
		t.Errorf("setuid launcher with a daemon: note %q", n)
	}
	os.Chmod(launcher, 0o755)
	if f := checkProgram(launcher, !d.Up); hasProblem(f, "not setuid") {
		t.Errorf("launcher without the bit, daemon up: %v", f)
	}
	if f := checkProgram(launcher, true); !hasProblem(f, "not setuid") {
		t.Errorf("launcher without the bit, no daemon: %v", f)
	}
	// A socket the module refuses: its directory writable by others.
	os.Chmod(run, 0o777)
	defer os.Chmod(run, 0o755)
	d, found = CheckDaemon(socket)
	if d.Up || len(found) != 1 || !strings.Contains(found[0].Problem, "denied") {
		t.Fatalf("unsafe socket: %+v %v", d, found)
	}
}

func hasProblem(f []Finding, sub string) bool {
	for _, x := range f {
		if strings.Contains(x.Problem, sub) {
			return true
		}
	}
	return false
}
