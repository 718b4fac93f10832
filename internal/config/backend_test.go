package config

import (
	"strings"
	"testing"
	"time"
)

// TestBackend: backend and [postgres] parse, default to the files store
// and deny, and refuse what would be unsafe or meaningless: a password in
// the DSN (in either form), postgres without a DSN, unknown values.
func TestBackend(t *testing.T) {
	c, err := Parse("c.toml", []byte(""))
	if err != nil {
		t.Fatal(err)
	}
	if c.Backend != BackendFiles || c.Postgres.OnUnavailable != UnavailableDeny || c.Postgres.ConnectTimeout != 5*time.Second {
		t.Errorf("defaults: %q %+v", c.Backend, c.Postgres)
	}
	c, err = Parse("c.toml", []byte(`backend = "postgres"
[postgres]
dsn = "host=/run/postgresql dbname=otpgate user=web1 passfile=/etc/otpgate/pgpass sslmode=disable"
on_unavailable = "local"
connect_timeout = "2s"
query_timeout = "1500ms"
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Backend != BackendPostgres || c.Postgres.OnUnavailable != UnavailableLocal ||
		c.Postgres.ConnectTimeout != 2*time.Second || c.Postgres.QueryTimeout != 1500*time.Millisecond ||
		!strings.Contains(c.Postgres.DSN, "passfile=/etc/otpgate/pgpass") {
		t.Errorf("parsed: %q %+v", c.Backend, c.Postgres)
	}
	for _, bad := range []struct{ name, content, key string }{
		{"unknown backend", `backend = "ldap"`, "backend"},
		{"postgres without dsn", `backend = "postgres"`, "backend"},
		{"password keyword", "[postgres]\ndsn = \"host=db1 user=web1 password=hunter2\"", "postgres.dsn"},
		{"password keyword upper case", "[postgres]\ndsn = \"host=db1 PASSWORD=hunter2\"", "postgres.dsn"},
		{"password with blanks", "[postgres]\ndsn = \"host=db1 password = hunter2\"", "postgres.dsn"},
		{"password in a URL", "[postgres]\ndsn = \"postgres://web1:hunter2@db1/otpgate\"", "postgres.dsn"},
		{"password in a URL query", "[postgres]\ndsn = \"postgresql://web1@db1/otpgate?password=hunter2\"", "postgres.dsn"},
		{"empty dsn", "[postgres]\ndsn = \"\"", "postgres.dsn"},
		{"dsn with a newline", "[postgres]\ndsn = \"host=db1\\nuser=x\"", "postgres.dsn"},
		{"on_unavailable allow", "[postgres]\non_unavailable = \"allow\"", "postgres.on_unavailable"},
		{"connect_timeout 0", "[postgres]\nconnect_timeout = \"0s\"", "postgres.connect_timeout"},
		{"query_timeout 1h", "[postgres]\nquery_timeout = \"1h\"", "postgres.query_timeout"},
		{"unknown postgres key", "[postgres]\nhost = \"db1\"", "postgres.host"},
	} {
		_, err := Parse("c.toml", []byte(bad.content+"\n"))
		if err == nil || !strings.Contains(err.Error(), bad.key) {
			t.Errorf("%s: error %v, want one naming %s", bad.name, err, bad.key)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error repeats the password: %v", bad.name, err)
		}
	}
	// A URL with a user and no password, and a host with '@' in a
	// query, are not passwords.
	for _, dsn := range []string{"postgres://web1@db1/otpgate?sslmode=verify-full", "postgresql:///otpgate?host=/run/postgresql&passfile=/etc/otpgate/pgpass"} {
		if _, err := Parse("c.toml", []byte("[postgres]\ndsn = \""+dsn+"\"\n")); err != nil {
			t.Errorf("%s: %v", dsn, err)
		}
	}
}
