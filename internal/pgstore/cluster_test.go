package pgstore

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
	"time"

	"github.com/jackc/pgx/v5"
)

// The tests run against a throwaway PostgreSQL cluster of Debian's
// postgresql package: initdb in a temporary directory, listening only on
// a Unix socket there (listen_addresses = ''), started once for the
// package and stopped when the tests end. As root, the cluster runs as the
// postgres system user (postgres refuses root). Without the binaries the
// tests skip, unless OTPGATE_REQUIRE_TOOLS is set (then they fail).

type testCluster struct {
	dir   string // holds data/, the socket and the log
	bin   string
	runAs string // the system user the server runs as, "" for ourselves
	err   error
}

var (
	clusterOnce sync.Once
	theCluster  testCluster
	dbSeq       atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theCluster.dir != "" {
		theCluster.stop()
	}
	os.Exit(code)
}

// pgBin finds the newest /usr/lib/postgresql/N/bin holding initdb.
func pgBin() string {
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

func (c *testCluster) run(name string, args ...string) error {
	path := filepath.Join(c.bin, name)
	var cmd *exec.Cmd
	if c.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = c.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *testCluster) start() error {
	c.bin = pgBin()
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
	c.dir = dir
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
func (c *testCluster) watchdog() {
	stop := fmt.Sprintf("%s -D %s -m immediate stop", filepath.Join(c.bin, "pg_ctl"), filepath.Join(c.dir, "data"))
	if c.runAs != "" {
		stop = "runuser -u " + c.runAs + " -- " + stop
	}
	script := fmt.Sprintf("while kill -0 %d 2>/dev/null; do sleep 1; done; %s >/dev/null 2>&1; rm -rf %s", os.Getpid(), stop, c.dir)
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err == nil {
		go cmd.Wait()
	}
}

func (c *testCluster) stop() {
	if err := c.run("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop"); err != nil {
		fmt.Fprintln(os.Stderr, "pgstore tests: stopping the cluster:", err)
	}
	os.RemoveAll(c.dir)
}

// cluster returns the package's cluster, starting it on first use; it
// skips the test (or fails it, under OTPGATE_REQUIRE_TOOLS) when
// PostgreSQL is missing.
func cluster(t testing.TB) *testCluster {
	t.Helper()
	clusterOnce.Do(func() { theCluster.err = theCluster.start() })
	if theCluster.err != nil {
		if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" {
			t.Fatalf("%v (OTPGATE_REQUIRE_TOOLS is set, so this is a failure, not a skip)", theCluster.err)
		}
		t.Skip(theCluster.err)
	}
	return &theCluster
}

// dsn is the DSN of database db as role.
func (c *testCluster) dsn(role, db string) string {
	return fmt.Sprintf("host=%s port=5432 user=%s dbname=%s sslmode=disable connect_timeout=5", c.dir, role, db)
}

// testDB is one test's database, with the otpgate schema applied, an
// admin connection and the DSN of a host login role.
type testDB struct {
	c       *testCluster
	name    string
	admin   *Admin
	hostDSN string
}

// newDB makes a fresh database for t, runs Init in it, and makes a host
// login role that is a member of otpgate_host.
func newDB(t testing.TB) *testDB {
	t.Helper()
	c := cluster(t)
	ctx := context.Background()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	super, err := pgx.Connect(ctx, c.dsn("postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer super.Close(ctx)
	if _, err := super.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	host := "host_" + name
	if _, err := super.Exec(ctx, "CREATE ROLE "+host+" LOGIN"); err != nil {
		t.Fatal(err)
	}
	if err := Init(ctx, c.dsn("postgres", name)); err != nil {
		t.Fatal(err)
	}
	if _, err := super.Exec(ctx, "GRANT "+HostRole+" TO "+host); err != nil {
		t.Fatal(err)
	}
	a, err := OpenAdmin(ctx, c.dsn("postgres", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(context.Background()) })
	return &testDB{c: c, name: name, admin: a, hostDSN: c.dsn(host, name)}
}

// host connects as the host role.
func (d *testDB) host(t testing.TB) *Client {
	t.Helper()
	cl, err := Connect(context.Background(), d.hostDSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(context.Background()) })
	return cl
}

// hostConn is a raw connection as the host role, for attacks.
func (d *testDB) hostConn(t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), d.hostDSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// verdict is the answer of one attempt at a pinned time, read as the
// admin, for tests that need the clock in their hands: the same two
// halves otpgate.verify runs, each in its own transaction.
type verdict struct {
	Outcome, Reason, Method, Label string
	Failures, BackupLeft           int
	LockedUntil                    time.Time
}

func (d *testDB) verifyAt(t testing.TB, user, code string, keys [][]byte, at time.Time) verdict {
	t.Helper()
	ctx := context.Background()
	var token []byte
	var v verdict
	var reason *string
	var failures, left *int32
	var locked *time.Time
	err := d.admin.conn.QueryRow(ctx, `SELECT o_token, o_outcome, o_reason, o_failures, o_locked_until, o_backup_left
		FROM otpgate.begin_attempt_at($1, $2, $3, 'test', '', $4)`, user, code, keys, at).
		Scan(&token, &v.Outcome, &reason, &failures, &locked, &left)
	if err != nil {
		t.Fatal(err)
	}
	if token != nil {
		var method, label *string
		err = d.admin.conn.QueryRow(ctx, `SELECT o_outcome, o_reason, o_method, o_label, o_failures, o_locked_until, o_backup_left
			FROM otpgate.finish_attempt($1)`, token).Scan(&v.Outcome, &reason, &method, &label, &failures, &locked, &left)
		if err != nil {
			t.Fatal(err)
		}
		v.Method, v.Label = deref(method), deref(label)
	}
	v.Reason = deref(reason)
	v.Failures = int(deref(failures))
	v.BackupLeft = int(deref(left))
	v.LockedUntil = deref(locked)
	return v
}
