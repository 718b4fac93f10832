package pgstore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/internal/verify"
)

func poolConfig(dsn string) config.Postgres {
	return config.Postgres{DSN: dsn, ConnectTimeout: 3 * time.Second, QueryTimeout: 3 * time.Second}
}

// TestPoolReusesAndReplaces: the pool keeps one connection for a
// sequence of calls (the server sees one backend), and when the server
// ends that backend while it is idle, the next call gets a new one and
// succeeds: no login is denied for a connection that died while idle.
func TestPoolReusesAndReplaces(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	enroll(t, d, "alice", "phone", testSecret, totp.Default)
	p := &Pool{Size: 2}
	defer p.Close()
	c := poolConfig(d.hostDSN)
	backends := func() int {
		var n int
		if err := d.admin.conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND usename = $2`,
			d.name, "host_"+d.name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for range 5 {
		if ok, err := p.Status(ctx, c, "alice"); err != nil || !ok {
			t.Fatalf("status: %v %v", ok, err)
		}
	}
	if n := backends(); n != 1 {
		t.Errorf("5 calls one after another used %d connections, want 1", n)
	}
	if _, err := d.admin.conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND usename = $2`,
		d.name, "host_"+d.name); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if r := p.Verify(ctx, c, "alice", codeNow(t, testSecret, totp.Default, 0), "sshd", ""); r.Outcome != verify.Accepted {
		t.Fatalf("after the server ended the idle connection: %+v", r)
	}
	if ok, err := p.Status(ctx, c, "alice"); err != nil || !ok {
		t.Fatalf("status after: %v %v", ok, err)
	}
}

// TestPoolBounded: 40 attempts at once through a pool of 3 all get an
// answer, and the server never sees more than 3 connections of the host.
func TestPoolBounded(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	enroll(t, d, "bob", "phone", testSecret, totp.Default)
	if err := d.admin.SetPolicy(ctx, Policy{Window: 1, MaxFailures: 100, LockDuration: time.Minute}); err != nil {
		t.Fatal(err)
	}
	p := &Pool{Size: 3}
	defer p.Close()
	c := poolConfig(d.hostDSN)
	c.ConnectTimeout = 20 * time.Second // the wait for a connection
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[verify.Outcome]int{}
	stop := make(chan struct{})
	most := 0
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			var n int
			if d.admin.conn != nil {
				mu.Lock()
				d.admin.conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1`, "host_"+d.name).Scan(&n)
				most = max(most, n)
				mu.Unlock()
			}
		}
	}()
	for range 40 {
		wg.Go(func() {
			r := p.Verify(ctx, c, "bob", "000000", "sshd", "")
			mu.Lock()
			outcomes[r.Outcome]++
			mu.Unlock()
		})
	}
	wg.Wait()
	close(stop)
	mu.Lock()
	defer mu.Unlock()
	if outcomes[verify.Denied] != 40 {
		t.Errorf("40 wrong codes through a pool of 3: %v, want 40 denied", outcomes)
	}
	if most > 3 {
		t.Errorf("the server saw %d connections of the host, over the pool's 3", most)
	}
	if st := d.status(t, "bob"); st.Failures != 40 {
		t.Errorf("failures %d, want 40", st.Failures)
	}
}

func (d *testDB) status(t testing.TB, user string) Status {
	t.Helper()
	st, err := d.host(t).Status(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestPoolUnavailable: a DSN whose server is not there answers
// db-unavailable at once; a busy pool answers db-unavailable after the
// connect timeout, not later.
func TestPoolUnavailable(t *testing.T) {
	p := &Pool{Size: 1}
	defer p.Close()
	c := poolConfig("host=" + t.TempDir() + " port=5432 user=x dbname=x sslmode=disable")
	begin := time.Now()
	r := p.Verify(context.Background(), c, "alice", "123456", "sshd", "")
	if r.Outcome != verify.Failed || r.Reason != "db-unavailable" || time.Since(begin) > time.Second {
		t.Errorf("no server: %+v after %v", r, time.Since(begin))
	}
	if _, err := p.Status(context.Background(), c, "alice"); err == nil || Reason(err) != "db-unavailable" {
		t.Errorf("status, no server: %v (%s)", err, Reason(err))
	}
}

// TestCheckPassfile: the passfile named in the DSN (keyword or URL form,
// quoted or not) must be root's regular file with no access for group or
// others; a missing default one is fine, a missing named one is not.
func TestCheckPassfile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to own the files")
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good pass")
	os.WriteFile(good, []byte("*:*:*:*:x\n"), 0o600)
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte("*:*:*:*:x\n"), 0o640)
	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte("*:*:*:*:x\n"), 0o600)
	os.Chown(other, 65534, 65534)
	link := filepath.Join(dir, "link")
	os.Symlink(good, link)
	t.Setenv("PGPASSFILE", filepath.Join(dir, "absent-default"))
	for _, c := range []struct {
		dsn, want string
	}{
		{"host=db1 passfile='" + good + "'", ""},
		{"postgres://web1@db1/otpgate?passfile=" + strings.ReplaceAll(good, " ", "%20"), ""},
		{"host=db1 user=web1", ""},
		{"host=db1 passfile=" + open, "chmod 0600 " + open},
		{"postgresql://db1/x?sslmode=disable&passfile=" + open, "chmod 0600"},
		{"host=db1 passfile=" + other, "chown root:root " + other},
		{"host=db1 passfile=" + link, "not a regular file"},
		{"host=db1 passfile=" + filepath.Join(dir, "absent"), "no such file"},
		{"host=db1 passfile = " + open + " dbname=x", "chmod 0600"},
	} {
		err := CheckPassfile(c.dsn)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.dsn, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.dsn, err, c.want)
		case err != nil && Reason(err) != "config-error":
			t.Errorf("%s: reason %s", c.dsn, Reason(err))
		}
	}
	os.Chmod(filepath.Join(dir), 0o700)
	t.Setenv("PGPASSFILE", open)
	if err := CheckPassfile("host=db1"); err == nil {
		t.Error("$PGPASSFILE open to others: accepted")
	}
}
