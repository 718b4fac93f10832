package pgprobe

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/doctor"
	"github.com/otpgate/otpgate/internal/pgstore"
	"github.com/otpgate/otpgate/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// pgHost is a database with the otpgate schema and a host login role
// that is a member of otpgate_host, and a root-only config and passfile
// naming it.
type pgHost struct {
	c          *pgtest.Cluster
	db, role   string
	cfg        config.Config
	configPath string
	passfile   string
}

func newPGHost(t *testing.T) *pgHost {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" {
			t.Fatal("the postgres checks need root (they check root-owned files); OTPGATE_REQUIRE_TOOLS is set")
		}
		t.Skip("the postgres checks need root (they check root-owned files)")
	}
	c := pgtest.Get(t)
	db, _ := c.NewDatabase(t)
	if err := pgstore.Init(context.Background(), c.DSN("postgres", db)); err != nil {
		t.Fatal(err)
	}
	role := "web_" + db
	c.ExecIn(t, db, "CREATE ROLE "+role+" LOGIN")
	c.ExecIn(t, db, "GRANT "+pgstore.HostRole+" TO "+role)
	dir := t.TempDir()
	h := &pgHost{c: c, db: db, role: role, configPath: filepath.Join(dir, "config.toml"), passfile: filepath.Join(dir, "pgpass")}
	// The cluster trusts local connections; the passfile is there to be
	// checked.
	if err := os.WriteFile(h.passfile, []byte("*:*:*:"+role+":unused\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.cfg = config.Default()
	h.cfg.Backend = config.BackendPostgres
	h.cfg.Postgres.DSN = fmt.Sprintf("host=%s port=5432 dbname=%s user=%s passfile=%s connect_timeout=5", c.Dir, db, role, h.passfile)
	if err := os.WriteFile(h.configPath, []byte("backend = \"postgres\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *pgHost) check(t *testing.T) ([]doctor.Finding, []string) {
	t.Helper()
	return doctor.CheckPostgres(h.cfg, h.configPath)
}

func findingWith(fs []doctor.Finding, s string) bool {
	for _, f := range fs {
		if strings.Contains(f.Problem, s) {
			return true
		}
	}
	return false
}

// TestPostgresClean: a host set up as docs/postgres.md says has no
// finding; doctor connected, saw schema version 1, and proved the role
// reads no secret table.
func TestPostgresClean(t *testing.T) {
	h := newPGHost(t)
	found, notes := h.check(t)
	if len(found) != 0 {
		t.Errorf("findings on a clean host: %v", found)
	}
	all := strings.Join(notes, "\n")
	for _, want := range []string{"schema version 1 (this otpgate knows 1)", "connected as " + h.role, "the host role reads none of otpgate.users"} {
		if !strings.Contains(all, want) {
			t.Errorf("notes lack %q:\n%s", want, all)
		}
	}
}

// TestPostgresFiles: a world-readable passfile, a passfile through a
// symbolic link, and a config others can read are findings.
func TestPostgresFiles(t *testing.T) {
	h := newPGHost(t)
	if err := os.Chmod(h.passfile, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(h.configPath, 0o644); err != nil {
		t.Fatal(err)
	}
	found, _ := h.check(t)
	if !findingWith(found, "mode 0644 (group 0): others can read or change it, and the passfile holds the host role's password") {
		t.Errorf("a world-readable passfile: %v", found)
	}
	if !findingWith(found, "and the configuration names the database") {
		t.Errorf("a world-readable config: %v", found)
	}
	if err := os.Chmod(h.passfile, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(filepath.Dir(h.passfile), "link")
	if err := os.Symlink(h.passfile, link); err != nil {
		t.Fatal(err)
	}
	h.cfg.Postgres.DSN = strings.Replace(h.cfg.Postgres.DSN, "passfile="+h.passfile, "passfile="+link, 1)
	found, _ = h.check(t)
	if !findingWith(found, "a symbolic link: the passfile holds") {
		t.Errorf("a passfile through a link: %v", found)
	}
	h.cfg.Postgres.DSN = strings.Replace(h.cfg.Postgres.DSN, "passfile="+link, "passfile=pgpass", 1)
	found, _ = h.check(t)
	if !findingWith(found, "passfile=pgpass is not an absolute path") {
		t.Errorf("a relative passfile: %v", found)
	}
}

// TestPostgresHostRoleReadsSecrets: a host role that was granted SELECT
// on the secrets (directly, or through another role) is the finding "the
// host role can read secrets"; a superuser host role is one too.
func TestPostgresHostRoleReadsSecrets(t *testing.T) {
	h := newPGHost(t)
	h.c.ExecIn(t, h.db, "GRANT SELECT ON otpgate.authenticators TO "+h.role)
	found, _ := h.check(t)
	if !findingWith(found, "the host role can read secrets: SELECT on otpgate.authenticators succeeded") {
		t.Errorf("SELECT granted on authenticators: %v", found)
	}
	if findingWith(found, "SELECT on otpgate.users succeeded") {
		t.Errorf("a finding for a table the role cannot read: %v", found)
	}
	h.c.ExecIn(t, h.db, "REVOKE SELECT ON otpgate.authenticators FROM "+h.role)
	h.c.ExecIn(t, h.db, "CREATE ROLE readers_"+h.db)
	h.c.ExecIn(t, h.db, "GRANT SELECT ON otpgate.backup_codes TO readers_"+h.db)
	h.c.ExecIn(t, h.db, "GRANT readers_"+h.db+" TO "+h.role)
	found, _ = h.check(t)
	if !findingWith(found, "SELECT on otpgate.backup_codes succeeded") {
		t.Errorf("SELECT through another role: %v", found)
	}
	h.c.ExecIn(t, h.db, "ALTER ROLE "+h.role+" SUPERUSER")
	defer h.c.ExecIn(t, h.db, "ALTER ROLE "+h.role+" NOSUPERUSER")
	found, _ = h.check(t)
	if !findingWith(found, "is a superuser") || !findingWith(found, "SELECT on otpgate.users succeeded") {
		t.Errorf("a superuser host role: %v", found)
	}
}

// TestPostgresRoleNotMember: a role that is not a member of otpgate_host
// cannot check codes: a finding with the GRANT to run.
func TestPostgresRoleNotMember(t *testing.T) {
	h := newPGHost(t)
	h.c.ExecIn(t, h.db, "REVOKE "+pgstore.HostRole+" FROM "+h.role)
	found, _ := h.check(t)
	if !findingWith(found, "is not a member of otpgate_host") {
		t.Errorf("a role without otpgate_host: %v", found)
	}
}

// TestPostgresNoAnswer: a server that accepts the connection and never
// answers is a finding within the configured connect timeout, not a
// hang; so is a database without the schema.
func TestPostgresNoAnswer(t *testing.T) {
	h := newPGHost(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	h.cfg.Postgres.DSN = fmt.Sprintf("host=127.0.0.1 port=%d dbname=%s user=%s passfile=%s sslmode=disable", port, h.db, h.role, h.passfile)
	h.cfg.Postgres.ConnectTimeout = 2 * time.Second
	start := time.Now()
	found, _ := h.check(t)
	took := time.Since(start)
	if !findingWith(found, "cannot connect to the database within 2s") {
		t.Errorf("a silent server: %v", found)
	}
	if took > 4*time.Second {
		t.Errorf("a silent server took %s; the bound is 2s", took)
	}

	// Enrolled waits once, not once per user.
	enrolled := Enrolled(h.cfg)
	start = time.Now()
	for _, u := range []string{"a", "b", "c"} {
		if err := enrolled(u); err == nil || !strings.Contains(err.Error(), "cannot tell who is enrolled") {
			t.Errorf("enrolled(%s) with a silent server: %v", u, err)
		}
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("three users with a silent server took %s", took)
	}

	empty, _ := h.c.NewDatabase(t)
	h.cfg.Postgres.DSN = h.c.DSN(h.role, empty)
	found, _ = h.check(t)
	if !findingWith(found, "the database has no otpgate schema") {
		t.Errorf("a database without the schema: %v", found)
	}
}

// TestPostgresDSNRules: a DSN that leaves the host, database, user or
// TLS to the environment, or the password to a HOME, is a finding;
// config.toml's lockout and window are noted as overridden.
func TestPostgresDSNRules(t *testing.T) {
	h := newPGHost(t)
	h.cfg.Postgres.DSN = "host=db1.example.org dbname=otpgate connect_timeout=1"
	h.cfg.MaxFailures = 9
	h.cfg.Window = 2
	found, notes := h.check(t)
	for _, want := range []string{
		"sslmode is unset (prefer) for db1.example.org: anyone between this host and the database can answer \"accepted\"",
		"has neither passfile= nor sslcert=",
		"names no user",
	} {
		if !findingWith(found, want) {
			t.Errorf("no finding %q in %v", want, found)
		}
	}
	if !strings.Contains(strings.Join(notes, "\n"), "window = 2, [lockout] max_failures = 9 in "+h.configPath+" do not apply") {
		t.Errorf("notes: %v", notes)
	}
	h.cfg.Postgres.DSN = "postgres://web1@db1.example.org/otpgate?sslmode=verify-full&passfile=/etc/otpgate/pgpass&connect_timeout=1"
	found, _ = h.check(t)
	if findingWith(found, "sslmode") || findingWith(found, "names no") {
		t.Errorf("a complete URL DSN: %v", found)
	}
}
