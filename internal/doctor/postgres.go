package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/pgstore"
	"github.com/otpgate/otpgate/keystore"
)

// secretTables are the tables a host role must not read: SELECT on each
// must fail with permission denied.
var secretTables = []string{"otpgate.users", "otpgate.authenticators", "otpgate.backup_codes", "otpgate.user_state"}

// pgCheckTimeout bounds all of doctor's work on the database, whatever
// the configured timeouts (a database that does not answer is a finding,
// not a hang).
const pgCheckTimeout = 15 * time.Second

// CheckPostgres checks a host whose backend is postgres: that the
// configuration and the DSN's passfile are root's and readable by root
// alone, that the DSN pins what the environment could otherwise change
// (host, database, user, TLS), that the host role connects within the
// configured time, what schema version it finds, that the role can call
// otpgate's functions, and that it cannot read a secret (a SELECT on
// every secret table must be refused). The notes say what was checked
// and which of config.toml's values the database overrides.
func CheckPostgres(cfg config.Config, configPath string) (findings []Finding, notes []string) {
	add := func(context, problem, fix string) {
		findings = append(findings, Finding{Check: "postgres", Context: context, Problem: problem, Fix: fix})
	}
	note := func(format string, args ...any) { notes = append(notes, fmt.Sprintf(format, args...)) }
	dsn := cfg.Postgres.DSN

	// Files: the config names the database and the role; the passfile
	// holds the password.
	findings = append(findings, checkRootOnly(configPath, "the configuration names the database, the host role and its passfile")...)
	keys, err := dsnKeys(dsn)
	if err != nil {
		add(configPath, "postgres.dsn: "+err.Error(), "correct the DSN (docs/postgres.md)")
		return findings, notes
	}
	if pf := keys["passfile"]; pf != "" {
		if !filepath.IsAbs(pf) {
			add(configPath, "postgres.dsn: passfile="+pf+" is not an absolute path: it would depend on the working directory of the program that asks for a code", "name the passfile by its absolute path, such as /etc/otpgate/pgpass")
		} else {
			findings = append(findings, checkRootOnly(pf, "the passfile holds the host role's password")...)
		}
	}
	host := keys["host"]
	switch {
	case host == "":
		add(configPath, "postgres.dsn names no host: the helper would take it from PGHOST, or a default socket, as the environment of the program asking for a code says", "add host=... to the DSN")
	case !strings.HasPrefix(host, "/") && !isLoopback(host):
		if m := keys["sslmode"]; m != "verify-full" && m != "verify-ca" {
			if m == "" {
				m = "unset (prefer)"
			}
			add(configPath, "postgres.dsn: sslmode is "+m+" for "+host+": anyone between this host and the database can answer \"accepted\" to every code",
				"add sslmode=verify-full and sslrootcert=/etc/otpgate/db-ca.crt (the CA of the database's certificate) to the DSN")
		}
		if keys["passfile"] == "" && keys["sslcert"] == "" {
			add(configPath, "postgres.dsn has neither passfile= nor sslcert=: the password would come from ~/.pgpass of whatever HOME the program asking for a code has",
				"put the password in /etc/otpgate/pgpass (root:root 0600) and add passfile=/etc/otpgate/pgpass to the DSN")
		}
	}
	for _, k := range []string{"dbname", "user"} {
		if keys[k] == "" {
			add(configPath, "postgres.dsn names no "+k+": it would come from the environment of the program asking for a code", "add "+k+"=... to the DSN")
		}
	}
	note("postgres: dsn %s (on_unavailable = %q)", redactDSN(keys), cfg.Postgres.OnUnavailable)
	if overridden := overriddenKeys(cfg); len(overridden) > 0 {
		note("postgres: %s in %s do not apply: the database's policy decides for every host (otpgate db policy --dsn ADMIN_DSN shows it)", strings.Join(overridden, ", "), configPath)
	}

	// The database, as the host role.
	ctx, cancel := context.WithTimeout(context.Background(), pgCheckTimeout)
	defer cancel()
	pc, err := pgx.ParseConfig(dsn)
	if err != nil {
		add(configPath, "postgres.dsn: "+err.Error(), "correct the DSN (docs/postgres.md)")
		return findings, notes
	}
	if cfg.Postgres.ConnectTimeout > 0 && (pc.ConnectTimeout == 0 || pc.ConnectTimeout > cfg.Postgres.ConnectTimeout) {
		pc.ConnectTimeout = cfg.Postgres.ConnectTimeout
	}
	if pc.ConnectTimeout <= 0 {
		pc.ConnectTimeout = pgstore.DefaultConnectTimeout
	}
	pc.RuntimeParams["application_name"] = "otpgate-doctor"
	start := time.Now()
	cctx, ccancel := context.WithTimeout(ctx, pc.ConnectTimeout)
	conn, err := pgx.ConnectConfig(cctx, pc)
	ccancel()
	if err != nil {
		add(redactDSN(keys), fmt.Sprintf("cannot connect to the database within %s: %v; every login that needs a code is denied (on_unavailable = %q)",
			pc.ConnectTimeout, oneLine(err), cfg.Postgres.OnUnavailable),
			"check the database, the network, pg_hba.conf and the passfile; connect by hand with psql \""+dsn+"\"")
		return findings, notes
	}
	defer conn.Close(context.WithoutCancel(ctx))
	note("postgres: connected as %s in %s", pc.User, time.Since(start).Round(time.Millisecond))
	qt := cfg.Postgres.QueryTimeout
	if qt <= 0 {
		qt = pgstore.DefaultQueryTimeout
	}
	query := func(f func(ctx context.Context) error) error {
		qctx, qcancel := context.WithTimeout(ctx, qt)
		defer qcancel()
		return f(qctx)
	}

	var comment *string
	var super, member bool
	err = query(func(ctx context.Context) error {
		return conn.QueryRow(ctx, `SELECT obj_description(n.oid, 'pg_namespace'),
			(SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
			coalesce(pg_has_role(current_user, (SELECT oid FROM pg_roles WHERE rolname = $1), 'MEMBER'), false)
			FROM pg_namespace n WHERE n.nspname = $2`, pgstore.HostRole, pgstore.Schema).Scan(&comment, &super, &member)
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		add(redactDSN(keys), "the database has no otpgate schema: every login that needs a code is denied", "run otpgate db init --dsn ADMIN_DSN (docs/postgres.md)")
		return findings, notes
	case err != nil:
		add(redactDSN(keys), "the database did not answer: "+oneLine(err), "check the database and its load")
		return findings, notes
	}
	if v, ok := strings.CutPrefix(derefString(comment), pgstore.SchemaComment); ok {
		n, _ := strconv.Atoi(v)
		note("postgres: schema version %s (this otpgate knows %d)", v, pgstore.SchemaVersion)
		if n > pgstore.SchemaVersion {
			add(redactDSN(keys), fmt.Sprintf("the database has schema version %d, newer than this otpgate knows (%d)", n, pgstore.SchemaVersion), "upgrade otpgate on this host")
		}
	} else {
		note("postgres: schema version unknown (made by an older otpgate db init; running it again records it)")
	}
	if super {
		add(redactDSN(keys), "the host role "+pc.User+" is a superuser: a host that is broken into reads every secret of the fleet",
			"connect with a login role that is only a member of "+pgstore.HostRole+" (ALTER ROLE "+pc.User+" NOSUPERUSER)")
	}
	if !member {
		add(redactDSN(keys), "the role "+pc.User+" is not a member of "+pgstore.HostRole+": it cannot check codes, and every login that needs one is denied",
			"GRANT "+pgstore.HostRole+" TO "+pc.User+"; (as the database's administrator)")
	}
	err = query(func(ctx context.Context) error {
		var enrolled bool
		return conn.QueryRow(ctx, `SELECT o_enrolled FROM otpgate.status($1)`, "otpgate-doctor").Scan(&enrolled)
	})
	if err != nil && member {
		add(redactDSN(keys), "the host role cannot call otpgate.status: "+oneLine(err), "run otpgate db init --dsn ADMIN_DSN again, and GRANT "+pgstore.HostRole+" TO "+pc.User)
	}
	for _, t := range secretTables {
		err := query(func(ctx context.Context) error {
			rows, err := conn.Query(ctx, "SELECT 1 FROM "+t+" LIMIT 1")
			if err != nil {
				return err
			}
			rows.Close()
			return rows.Err()
		})
		var pe *pgconn.PgError
		switch {
		case err == nil:
			add(redactDSN(keys), "the host role can read secrets: SELECT on "+t+" succeeded as "+pc.User+"; a host that is broken into reads every user's secret, backup codes and state of the fleet",
				"REVOKE ALL ON "+t+" FROM "+pc.User+" (and from any role it is a member of but "+pgstore.HostRole+"); run otpgate db init --dsn ADMIN_DSN again")
		case errors.As(err, &pe) && pe.Code == "42501": // insufficient_privilege: as it must be
		default:
			add(redactDSN(keys), "could not prove the host role cannot read "+t+": "+oneLine(err), "check the database; otpgate db init --dsn ADMIN_DSN")
		}
	}
	note("postgres: the host role reads none of %s", strings.Join(secretTables, ", "))
	return findings, notes
}

// checkRootOnly checks a file that others must not read: a regular file
// (not a link), owned by root, no access for others, group access only
// for root's group, in directories only root can change.
func checkRootOnly(path, why string) []Finding {
	var out []Finding
	add := func(problem, fix string) {
		out = append(out, Finding{Check: "postgres", Context: path, Problem: problem, Fix: fix})
	}
	st, err := os.Lstat(path)
	if err != nil {
		add(err.Error(), "create it, owned by root:root with mode 0600")
		return out
	}
	sys := st.Sys().(*syscall.Stat_t)
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		add("a symbolic link: "+why+", and whoever can change the link chooses it", "replace it with the file itself")
	case !st.Mode().IsRegular():
		add("not a regular file", "replace it with a regular file owned by root, mode 0600")
	case sys.Uid != 0:
		add(fmt.Sprintf("owned by uid %d: %s", sys.Uid, why), "chown root:root "+path+" && chmod 600 "+path)
	case st.Mode().Perm()&0o007 != 0 || (st.Mode().Perm()&0o070 != 0 && sys.Gid != 0) || st.Mode().Perm()&0o020 != 0:
		add(fmt.Sprintf("mode %04o (group %d): others can read or change it, and %s", modeBits(st), sys.Gid, why), "chmod 600 "+path+" && chown root:root "+path)
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		out = append(out, checkRootDir(dir)...)
		if dir == "/" {
			break
		}
	}
	return out
}

// overriddenKeys names the lockout and window settings of cfg that
// differ from the defaults: with backend = "postgres" they do not apply.
func overriddenKeys(cfg config.Config) []string {
	d := config.Default()
	var out []string
	if cfg.Window != d.Window {
		out = append(out, fmt.Sprintf("window = %d", cfg.Window))
	}
	if cfg.MaxFailures != d.MaxFailures {
		out = append(out, fmt.Sprintf("[lockout] max_failures = %d", cfg.MaxFailures))
	}
	if cfg.LockDuration != d.LockDuration {
		out = append(out, fmt.Sprintf("[lockout] lock_duration = %s", cfg.LockDuration))
	}
	return out
}

// dsnKeys returns the settings a DSN names itself (not those the
// environment or defaults would add): libpq's keyword/value form or a
// postgres:// URL.
func dsnKeys(dsn string) (map[string]string, error) {
	keys := map[string]string{}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, errors.New("not a valid URL")
		}
		if h := u.Hostname(); h != "" {
			keys["host"] = h
		}
		if u.User != nil {
			keys["user"] = u.User.Username()
		}
		if db := strings.TrimPrefix(u.Path, "/"); db != "" {
			keys["dbname"] = db
		}
		for k, v := range u.Query() {
			if len(v) > 0 {
				keys[k] = v[0]
			}
		}
		return keys, nil
	}
	s := dsn
	for {
		s = strings.TrimLeft(s, " \t\n\r")
		if s == "" {
			return keys, nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("%q is not keyword=value", firstLine(s))
		}
		key := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val strings.Builder
		if strings.HasPrefix(s, "'") {
			s = s[1:]
			closed := false
			for len(s) > 0 {
				c := s[0]
				s = s[1:]
				if c == '\\' && len(s) > 0 {
					val.WriteByte(s[0])
					s = s[1:]
					continue
				}
				if c == '\'' {
					closed = true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return nil, fmt.Errorf("an unterminated quote after %s=", key)
			}
		} else {
			end := strings.IndexAny(s, " \t\n\r")
			if end < 0 {
				end = len(s)
			}
			val.WriteString(s[:end])
			s = s[end:]
		}
		keys[key] = val.String()
	}
}

// redactDSN writes the DSN's host, database and user for a report.
func redactDSN(keys map[string]string) string {
	return fmt.Sprintf("host=%s dbname=%s user=%s", keys["host"], keys["dbname"], keys["user"])
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func derefString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// postgresEnrolled returns a check of whether a user is enrolled in the
// database, through the host role's otpgate.status on one connection,
// made at the first call; keystore.ErrNotEnrolled when not. When the
// database cannot be reached, every later call returns that error at
// once, so doctor waits for it once, not once per user.
func postgresEnrolled(cfg config.Config) func(user string) error {
	var c *pgstore.Client
	var connErr error
	return func(user string) error {
		if connErr != nil {
			return connErr
		}
		if c == nil {
			bound := pgCheckTimeout
			if t := cfg.Postgres.ConnectTimeout; t > 0 && t < bound {
				bound = t
			}
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			c, connErr = pgstore.Connect(ctx, cfg.Postgres.DSN)
			cancel()
			if connErr != nil {
				connErr = fmt.Errorf("cannot tell who is enrolled: %w", connErr)
				return connErr
			}
			c.QueryTimeout = cfg.Postgres.QueryTimeout
		}
		st, err := c.Status(context.Background(), user)
		if err != nil {
			connErr = fmt.Errorf("cannot tell who is enrolled: %w", err) // the connection may be gone
			return connErr
		}
		if !st.Enrolled {
			return fmt.Errorf("%w in the database", keystore.ErrNotEnrolled)
		}
		return nil
	}
}
