package doctor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otpgate/otpgate/internal/config"
)

// TestPostgresWithoutProbe: the otpgate command does not link the
// database checks (doctor.PostgresProbe is nil): CheckPostgres says so as
// a finding instead of passing the database as checked, and the DSN
// rules, which need no connection, still apply.
func TestPostgresWithoutProbe(t *testing.T) {
	if PostgresProbe != nil {
		t.Fatal("package doctor links the database checks; they belong to internal/doctor/pgprobe")
	}
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte("backend = \"postgres\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Backend = config.BackendPostgres
	cfg.Postgres.DSN = "host=db1.example.org dbname=otpgate user=web1 sslmode=require passfile=/etc/otpgate/pgpass"
	found, _ := CheckPostgres(cfg, path)
	var all []string
	for _, f := range found {
		all = append(all, f.Problem)
	}
	s := strings.Join(all, "\n")
	if !strings.Contains(s, "built without the PostgreSQL client: the database was not checked") {
		t.Errorf("no finding for the missing probe:\n%s", s)
	}
	if !strings.Contains(s, "sslmode is require for db1.example.org") {
		t.Errorf("no finding for sslmode=require:\n%s", s)
	}
}
