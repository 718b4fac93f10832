// Package pgtest runs a throwaway PostgreSQL cluster for tests: Debian's
// postgresql package, initdb in a temporary directory, listening only on
// a Unix socket there (listen_addresses empty), started once per test
// binary on first use and stopped when the binary ends. As root, the
// cluster runs as the postgres system user (postgres refuses root).
// Without the binaries the tests skip, unless OTPGATE_REQUIRE_TOOLS is set
// (then they fail).
//
// It knows nothing of otpgate's schema: the tests of pgstore, the command
// line and doctor each apply it with pgstore.Init.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Cluster is a running throwaway cluster.
type Cluster struct {
	// Dir holds data/, the socket and the log; it is the host= of every
	// DSN.
	Dir   string
	bin   string
	runAs string // the system user the server runs as, "" for ourselves
	err   error
}

var (
	once  sync.Once
	the   Cluster
	dbSeq atomic.Int64
)

// Main runs the tests and stops the cluster if one was started; call it
// from TestMain (os.Exit(pgtest.Main(m))). A test binary that does not
// call it (testscript.Main exits by itself) leaves the cluster to the
// watchdog, which stops it once the binary is gone.
func Main(m *testing.M) int {
	code := m.Run()
	Stop()
	return code
}

// Stop stops the cluster, if one was started, and removes its directory.
func Stop() {
	if the.Dir == "" || the.err != nil {
		return
	}
	if err := the.run("pg_ctl", "-D", filepath.Join(the.Dir, "data"), "-m", "immediate", "-w", "stop"); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest: stopping the cluster:", err)
	}
	os.RemoveAll(the.Dir)
}

// Bin returns the newest /usr/lib/postgresql/N/bin holding initdb, or "".
func Bin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(dirs[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(dirs[j]))))
		return vi > vj
	})
	if len(dirs) == 0 {
		return ""
	}
	return filepath.Dir(dirs[0])
}

func (c *Cluster) run(name string, args ...string) error {
	path := filepath.Join(c.bin, name)
	var cmd *exec.Cmd
	if c.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = c.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *Cluster) start() error {
	c.bin = Bin()
	if c.bin == "" {
		return fmt.Errorf("PostgreSQL's initdb is not installed (apt install postgresql; scripts/test-deps.sh installs it)")
	}
	if _, err := os.Stat("/usr/share/postgresql/" + filepath.Base(filepath.Dir(c.bin)) + "/extension/pgcrypto.control"); err != nil {
		return fmt.Errorf("pgcrypto is not installed (apt install postgresql-contrib)")
	}
	dir, err := os.MkdirTemp("", "otpgate-pg-")
	if err != nil {
		return err
	}
	c.Dir = dir
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root, and there is no postgres user to run the cluster as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return err
		}
		c.runAs = "postgres"
	}
	if err := c.run("initdb", "-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		return err
	}
	opts := fmt.Sprintf("-c listen_addresses='' -c unix_socket_directories=%s -c unix_socket_permissions=0700 -c max_connections=120 -c fsync=on", dir)
	if err := c.run("pg_ctl", "-D", filepath.Join(dir, "data"), "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "-o", opts, "start"); err != nil {
		return err
	}
	c.watchdog()
	return nil
}

// watchdog starts a process of its own that stops the cluster and removes
// its directory once this test binary is gone, however it ended (a
// timeout's panic skips TestMain's cleanup).
func (c *Cluster) watchdog() {
	stop := fmt.Sprintf("%s -D %s -m immediate stop", filepath.Join(c.bin, "pg_ctl"), filepath.Join(c.Dir, "data"))
	if c.runAs != "" {
		stop = "runuser -u " + c.runAs + " -- " + stop
	}
	script := fmt.Sprintf("while kill -0 %d 2>/dev/null; do sleep 1; done; %s >/dev/null 2>&1; rm -rf %s", os.Getpid(), stop, c.Dir)
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err == nil {
		go cmd.Wait()
	}
}

// Get returns the test binary's cluster, starting it on first use; it
// skips the test (or fails it, under OTPGATE_REQUIRE_TOOLS) when
// PostgreSQL is missing.
func Get(t testing.TB) *Cluster {
	t.Helper()
	once.Do(func() { the.err = the.start() })
	if the.err != nil {
		if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" {
			t.Fatalf("%v (OTPGATE_REQUIRE_TOOLS is set, so this is a failure, not a skip)", the.err)
		}
		t.Skip(the.err)
	}
	return &the
}

// DSN is the DSN of database db as role, through the cluster's socket;
// the cluster trusts every local connection, so no password.
func (c *Cluster) DSN(role, db string) string {
	return fmt.Sprintf("host=%s port=5432 user=%s dbname=%s sslmode=disable connect_timeout=5", c.Dir, role, db)
}

// Exec runs sql in database db as the superuser postgres.
func (c *Cluster) Exec(t testing.TB, db, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.DSN("postgres", db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// NewDatabase creates an empty database with a name no other test of any
// binary uses (the process id and a counter), and returns its name.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	c.Exec(t, "postgres", "CREATE DATABASE "+name)
	return name
}
