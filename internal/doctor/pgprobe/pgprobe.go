// Package pgprobe is the part of otpgate doctor that connects to the
// PostgreSQL database as the host role (docs/postgres.md). It is a
// package of its own so that only otpgate-db links the PostgreSQL
// client; importing it sets doctor.PostgresProbe and
// doctor.PostgresEnrolled.
package pgprobe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/doctor"
	"github.com/otpgate/otpgate/internal/pgstore"
	"github.com/otpgate/otpgate/keystore"
)

func init() {
	doctor.PostgresProbe = Probe
	doctor.PostgresEnrolled = Enrolled
}

// secretTables are the tables a host role must not read: SELECT on each
// must fail with permission denied.
var secretTables = []string{"otpgate.users", "otpgate.authenticators", "otpgate.backup_codes", "otpgate.user_state"}

// checkTimeout bounds all of doctor's work on the database, whatever the
// configured timeouts (a database that does not answer is a finding, not
// a hang).
const checkTimeout = 15 * time.Second

// Probe connects with the host's DSN within the configured connect
// timeout, reports the schema version (the schema's comment, which Init
// writes: a host role reads the catalog, not the tables), checks that the
// role is a member of otpgate_host, not a superuser, can call
// otpgate.status, and cannot read any secret table (a SELECT must fail
// with permission denied; one that succeeds is the finding "the host
// role can read secrets"). where names the DSN in findings.
func Probe(cfg config.Config, configPath, where string) (findings []doctor.Finding, notes []string) {
	add := func(context, problem, fix string) {
		findings = append(findings, doctor.Finding{Check: "postgres", Context: context, Problem: problem, Fix: fix})
	}
	note := func(format string, args ...any) { notes = append(notes, fmt.Sprintf(format, args...)) }
	dsn := cfg.Postgres.DSN
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
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
		add(where, fmt.Sprintf("cannot connect to the database within %s: %v; every login that needs a code is denied (on_unavailable = %q)",
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
		add(where, "the database has no otpgate schema: every login that needs a code is denied", "run otpgate db init --dsn ADMIN_DSN (docs/postgres.md)")
		return findings, notes
	case err != nil:
		add(where, "the database did not answer: "+oneLine(err), "check the database and its load")
		return findings, notes
	}
	if v, ok := strings.CutPrefix(derefString(comment), pgstore.SchemaComment); ok {
		n, _ := strconv.Atoi(v)
		note("postgres: schema version %s (this otpgate knows %d)", v, pgstore.SchemaVersion)
		if n > pgstore.SchemaVersion {
			add(where, fmt.Sprintf("the database has schema version %d, newer than this otpgate knows (%d)", n, pgstore.SchemaVersion), "upgrade otpgate on this host")
		}
	} else {
		note("postgres: schema version unknown (made by an older otpgate db init; running it again records it)")
	}
	if super {
		add(where, "the host role "+pc.User+" is a superuser: a host that is broken into reads every secret of the fleet",
			"connect with a login role that is only a member of "+pgstore.HostRole+" (ALTER ROLE "+pc.User+" NOSUPERUSER)")
	}
	if !member {
		add(where, "the role "+pc.User+" is not a member of "+pgstore.HostRole+": it cannot check codes, and every login that needs one is denied",
			"GRANT "+pgstore.HostRole+" TO "+pc.User+"; (as the database's administrator)")
	}
	err = query(func(ctx context.Context) error {
		var enrolled bool
		return conn.QueryRow(ctx, `SELECT o_enrolled FROM otpgate.status($1)`, "otpgate-doctor").Scan(&enrolled)
	})
	if err != nil && member {
		add(where, "the host role cannot call otpgate.status: "+oneLine(err), "run otpgate db init --dsn ADMIN_DSN again, and GRANT "+pgstore.HostRole+" TO "+pc.User)
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
			add(where, "the host role can read secrets: SELECT on "+t+" succeeded as "+pc.User+"; a host that is broken into reads every user's secret, backup codes and state of the fleet",
				"REVOKE ALL ON "+t+" FROM "+pc.User+" (and from any role it is a member of but "+pgstore.HostRole+"); run otpgate db init --dsn ADMIN_DSN again")
		case errors.As(err, &pe) && pe.Code == "42501": // insufficient_privilege: as it must be
		default:
			add(where, "could not prove the host role cannot read "+t+": "+oneLine(err), "check the database; otpgate db init --dsn ADMIN_DSN")
		}
	}
	note("postgres: the host role reads none of %s", strings.Join(secretTables, ", "))
	return findings, notes
}

// Enrolled returns a check of whether a user is enrolled in the
// database, through the host role's otpgate.status on one connection,
// made at the first call; keystore.ErrNotEnrolled when not. When the
// database cannot be reached, every later call returns that error at
// once, so doctor waits for it once, not once per user.
func Enrolled(cfg config.Config) func(user string) error {
	var c *pgstore.Client
	var connErr error
	return func(user string) error {
		if connErr != nil {
			return connErr
		}
		if c == nil {
			bound := checkTimeout
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

func derefString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
