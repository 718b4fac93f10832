// Package pgtest starts throwaway PostgreSQL clusters for tests: Debian's
// initdb in a temporary directory, listening only on a Unix socket there
// (listen_addresses empty), trust authentication on that socket (mode 0700:
// root and the server's user only). As root the server runs as the
// postgres system user, which PostgreSQL requires. Without the binaries a
// test skips, unless OTPGATE_REQUIRE_TOOLS is set (then it fails).
//
// It does not import pgstore, so that pgstore's own tests can use it.
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

// Cluster is one running throwaway cluster.
type Cluster struct {
	Dir   string // holds data/, the socket and the log
	bin   string
	runAs string // the system user the server runs as, "" for ourselves
	mu    sync.Mutex
	up    bool
}

var (
	sharedOnce sync.Once
	shared     *Cluster
	sharedErr  error
	seq        atomic.Int64
)

// Shared returns the test process's shared cluster, starting it on first
// use; call StopShared from TestMain. It skips (or fails, under
// OTPGATE_REQUIRE_TOOLS) when PostgreSQL is missing.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = start() })
	if sharedErr != nil {
		missing(t, sharedErr)
	}
	return shared
}

// StopShared stops the shared cluster, if one was started.
func StopShared() {
	if shared != nil {
		shared.Remove()
	}
}

// New starts a cluster of the test's own (one it may stop and start),
// removed when the test ends.
func New(t testing.TB) *Cluster {
	t.Helper()
	c, err := start()
	if err != nil {
		if c != nil {
			c.Remove()
		}
		missing(t, err)
	}
	t.Cleanup(c.Remove)
	return c
}

func missing(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" {
		t.Fatalf("%v (OTPGATE_REQUIRE_TOOLS is set, so this is a failure, not a skip)", err)
	}
	t.Skip(err)
}

// Bin finds the newest /usr/lib/postgresql/N/bin holding initdb.
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

// Start starts a cluster for a program that is not a test (a benchmark
// tool); the caller removes it with Remove.
func Start() (*Cluster, error) { return start() }

func start() (*Cluster, error) {
	c := &Cluster{bin: Bin()}
	if c.bin == "" {
		return nil, fmt.Errorf("PostgreSQL's initdb is not installed (apt install postgresql; scripts/test-deps.sh installs it)")
	}
	if _, err := os.Stat("/usr/share/postgresql/" + filepath.Base(filepath.Dir(c.bin)) + "/extension/pgcrypto.control"); err != nil {
		return nil, fmt.Errorf("pgcrypto is not installed (apt install postgresql-contrib)")
	}
	dir, err := os.MkdirTemp("", "otpgate-pg-")
	if err != nil {
		return nil, err
	}
	c.Dir = dir
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return c, fmt.Errorf("running as root, and there is no postgres user to run the cluster as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return c, err
		}
		c.runAs = "postgres"
	}
	if err := c.run("initdb", "-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		return c, err
	}
	c.watchdog()
	return c, c.Start()
}

// Start starts the server (again) and waits until it accepts connections.
func (c *Cluster) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	opts := fmt.Sprintf("-c listen_addresses='' -c unix_socket_directories=%s -c unix_socket_permissions=0700 -c max_connections=200 -c fsync=on", c.Dir)
	if err := c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-l", filepath.Join(c.Dir, "log"), "-w", "-t", "60", "-o", opts, "start"); err != nil {
		return err
	}
	c.up = true
	return nil
}

// Stop stops the server at once (-m immediate); its socket goes with it.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.up {
		return nil
	}
	c.up = false
	return c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "immediate", "-w", "stop")
}

// Remove stops the server and removes its directory.
func (c *Cluster) Remove() {
	if err := c.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest: stopping the cluster:", err)
	}
	os.RemoveAll(c.Dir)
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

// DSN is the DSN of database db as role, through the cluster's socket.
func (c *Cluster) DSN(role, db string) string {
	return fmt.Sprintf("host=%s port=5432 user=%s dbname=%s sslmode=disable connect_timeout=5", c.Dir, role, db)
}

// NewDatabase creates an empty database and a login role (for a host) and
// returns their names; both are of this test alone.
func (c *Cluster) NewDatabase(t testing.TB) (db, role string) {
	t.Helper()
	n := seq.Add(1)
	db = fmt.Sprintf("t%d_%d", os.Getpid(), n)
	role = "host_" + db
	c.Exec(t, "CREATE DATABASE "+db)
	c.Exec(t, "CREATE ROLE "+role+" LOGIN")
	return db, role
}

// Exec runs SQL as the superuser in the database postgres.
func (c *Cluster) Exec(t testing.TB, sql string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.DSN("postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// Main runs a package's tests and stops the shared cluster after them:
// func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	StopShared()
	return code
}

// Get is Shared: the test binary's cluster, started on first use.
func Get(t testing.TB) *Cluster { return Shared(t) }

// ExecIn runs sql with args in database db as the superuser postgres.
func (c *Cluster) ExecIn(t testing.TB, db, sql string, args ...any) {
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
