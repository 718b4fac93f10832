package doctor

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/otpgate/otpgate/internal/config"
)

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
	keys, err := config.DSNSettings(dsn)
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
	if PostgresProbe == nil {
		add(configPath, "this otpgate was built without the PostgreSQL client: the database was not checked", "run otpgate-db doctor (otpgate doctor runs it when it is installed)")
		return findings, notes
	}
	f, n := PostgresProbe(cfg, configPath, redactDSN(keys))
	return append(findings, f...), append(notes, n...)
}

// PostgresProbe checks the database of cfg as the host role: it connects
// (bounded), reports the schema version, and proves the role reads no
// secret. where names the DSN in findings. Set by
// internal/doctor/pgprobe, which only otpgate-db links: the otpgate
// command does not carry the PostgreSQL client.
var PostgresProbe func(cfg config.Config, configPath, where string) (findings []Finding, notes []string)

// PostgresEnrolled returns a check of whether a user is enrolled in the
// database of cfg (keystore.ErrNotEnrolled when not). Set with
// PostgresProbe.
var PostgresEnrolled func(cfg config.Config) func(user string) error

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
