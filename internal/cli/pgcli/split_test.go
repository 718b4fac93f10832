package pgcli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/otpgate/otpgate/internal/pgtest"
	"github.com/otpgate/otpgate/internal/testbin"
)

// moduleRoot is the module's root: this file is internal/cli/pgcli/.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// TestOtpgateLinksNoPostgres: the otpgate command (run at every
// ForceCommand login as otpgate sshcheck) and the helper do not link the
// PostgreSQL client; otpgate-db does.
func TestOtpgateLinksNoPostgres(t *testing.T) {
	for pkg, want := range map[string]bool{"./cmd/otpgate": false, "./cmd/otpgate-helper": false, "./cmd/otpgate-db": true} {
		cmd := exec.Command(testbin.Go(), "list", "-deps", pkg)
		cmd.Dir = moduleRoot()
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		if got := bytes.Contains(out, []byte("github.com/jackc/pgx")); got != want {
			t.Errorf("%s links pgx: %v, want %v", pkg, got, want)
		}
	}
}

// build builds pkg into dir with DBProgram set to dbprog.
func build(t *testing.T, dir, pkg, dbprog string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command(testbin.Go(), "build", "-o", out, "-ldflags", "-X github.com/otpgate/otpgate/internal/cli.DBProgram="+dbprog, "./"+pkg)
	cmd.Dir = moduleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, b)
	}
	return out
}

// TestOtpgateRunsOtpgateDB: the otpgate command, given --dsn or db, runs
// otpgate-db (at the path fixed at build time) with the same arguments,
// and the command works end to end; a missing otpgate-db, or one others
// can write, is refused with the fix; a DSN with a password is refused
// before anything is run.
func TestOtpgateRunsOtpgateDB(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" {
			t.Fatal("needs root (otpgate-db must be root's); OTPGATE_REQUIRE_TOOLS is set")
		}
		t.Skip("needs root (otpgate-db must be root's)")
	}
	c := pgtest.Get(t)
	db, _ := c.NewDatabase(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dbprog := build(t, dir, "cmd/otpgate-db", "/nonexistent")
	otpgate := build(t, dir, "cmd/otpgate", dbprog)
	missing := build(t, t.TempDir(), "cmd/otpgate", filepath.Join(dir, "nothing-here"))
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("store = \""+filepath.Join(dir, "store")+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(bin string, args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"--config", cfg}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	dsn := c.DSN("postgres", db)
	if out, err := run(otpgate, "db", "init", "--dsn", dsn); err != nil || !strings.Contains(out, "otpgate schema version 1 created") {
		t.Fatalf("otpgate db init through otpgate-db: %v\n%s", err, out)
	}
	if out, err := run(otpgate, "enroll", "--dsn", dsn, "--user", "root", "--no-confirm", "--qr", "none"); err != nil || !strings.Contains(out, "Enrolled root.") {
		t.Errorf("otpgate enroll --dsn through otpgate-db: %v\n%s", err, out)
	}
	if out, err := run(otpgate, "status", "--user", "root", "--dsn="+dsn); err != nil || !strings.Contains(out, "backend: postgres (local/"+db+")") {
		t.Errorf("otpgate status --dsn= through otpgate-db: %v\n%s", err, out)
	}
	// Without --dsn nothing is run: the files store answers.
	if out, err := run(otpgate, "status", "--user", "root"); err != nil || !strings.Contains(out, "root: not enrolled") || strings.Contains(out, "backend:") {
		t.Errorf("otpgate status without --dsn: %v\n%s", err, out)
	}
	if out, err := run(missing, "status", "--dsn", dsn); err == nil || !strings.Contains(out, "nothing-here, which is not installed") {
		t.Errorf("a missing otpgate-db: %v\n%s", err, out)
	}
	if out, err := run(otpgate, "status", "--dsn", "host=x password=y"); err == nil || !strings.Contains(out, "--dsn holds a password") {
		t.Errorf("a DSN with a password: %v\n%s", err, out)
	}
	// doctor on a postgres host runs otpgate-db doctor, whose database
	// checks see this DSN's role is a superuser.
	pgcfg := filepath.Join(dir, "pg.toml")
	if err := os.WriteFile(pgcfg, []byte("store = \""+filepath.Join(dir, "store")+"\"\nbackend = \"postgres\"\n[postgres]\ndsn = \""+dsn+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doctor := exec.Command(otpgate, "--config", pgcfg, "doctor", "--json")
	out, _ := doctor.CombinedOutput()
	if !strings.Contains(string(out), "is a superuser") || !strings.Contains(string(out), "schema version 1") {
		t.Errorf("otpgate doctor on a postgres host did not check the database:\n%s", out)
	}
	// otpgate installed as otpgate-db would run itself forever.
	selfDir := t.TempDir()
	if err := os.Chmod(selfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	self := build(t, selfDir, "cmd/otpgate", filepath.Join(selfDir, "otpgate"))
	if out, err := run(self, "status", "--dsn", dsn); err == nil || !strings.Contains(out, "is this otpgate, built without the database") {
		t.Errorf("otpgate as its own otpgate-db: %v\n%s", err, out)
	}
	if err := os.Chmod(dbprog, 0o777); err != nil {
		t.Fatal(err)
	}
	if out, err := run(otpgate, "status", "--dsn", dsn); err == nil || !strings.Contains(out, "writable by root alone; otpgate does not run it") {
		t.Errorf("an otpgate-db others can write: %v\n%s", err, out)
	}
}
