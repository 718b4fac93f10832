package pgstore

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/otpgate/otpgate/internal/pgtest"
)

// The tests run against a throwaway PostgreSQL cluster (internal/pgtest):
// initdb in a temporary directory, listening only on a Unix socket there,
// started once for the package and stopped when the tests end.

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// testCluster is pgtest's cluster with the names these tests use.
type testCluster struct{ *pgtest.Cluster }

// cluster returns the package's cluster, starting it on first use; it
// skips the test (or fails it, under OTPGATE_REQUIRE_TOOLS) when
// PostgreSQL is missing.
func cluster(t testing.TB) testCluster { return testCluster{pgtest.Get(t)} }

// dsn is the DSN of database db as role.
func (c testCluster) dsn(role, db string) string { return c.DSN(role, db) }

// testDB is one test's database, with the otpgate schema applied, an
// admin connection and the DSN of a host login role.
type testDB struct {
	c       testCluster
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
	name := c.NewDatabase(t)
	host := "host_" + name
	c.Exec(t, "postgres", "CREATE ROLE "+host+" LOGIN")
	if err := Init(ctx, c.dsn("postgres", name)); err != nil {
		t.Fatal(err)
	}
	c.Exec(t, "postgres", "GRANT "+HostRole+" TO "+host)
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
