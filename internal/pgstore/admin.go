package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

// Admin is a connection with an administrator's DSN: a superuser (or a
// role that may create roles, extensions and schemas) for Init, a member
// of otpgate_owner for the rest.
type Admin struct {
	conn *pgx.Conn
}

// OpenAdmin connects with dsn, bounded by its connect_timeout (or
// DefaultConnectTimeout).
func OpenAdmin(ctx context.Context, dsn string) (*Admin, error) {
	conn, err := connect(ctx, dsn, "otpgate-admin")
	if err != nil {
		return nil, err
	}
	return &Admin{conn: conn}, nil
}

// Close closes the connection.
func (a *Admin) Close(ctx context.Context) error { return a.conn.Close(ctx) }

// Init connects with adminDSN and applies the schema (see Admin.Init).
func Init(ctx context.Context, adminDSN string) error {
	a, err := OpenAdmin(ctx, adminDSN)
	if err != nil {
		return err
	}
	defer a.Close(context.WithoutCancel(ctx))
	return a.Init(ctx)
}

// Init creates, in one transaction: the roles otpgate_owner and
// otpgate_host (NOLOGIN group roles), the schema otpgate owned by
// otpgate_owner, pgcrypto in it, the tables and functions of
// schema/v1.sql, and the privileges: nothing for PUBLIC, EXECUTE on
// HostRoutines for otpgate_host. It may run again on a database it made
// (the policy and every user are kept); it refuses a database whose
// schema is newer than SchemaVersion, an otpgate schema or pgcrypto it
// did not make, and a database not in UTF8.
func (a *Admin) Init(ctx context.Context) error {
	tx, err := a.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: init: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	q := func(sql string, args ...any) error {
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			return fmt.Errorf("pgstore: init: %s: %w", firstLine(sql), err)
		}
		return nil
	}
	// One Init at a time on a database: 0x6f747067 is "otpg".
	if err := q(`SELECT pg_advisory_xact_lock(1869901927)`); err != nil {
		return err
	}
	var enc string
	if err := tx.QueryRow(ctx, `SHOW server_encoding`).Scan(&enc); err != nil {
		return fmt.Errorf("pgstore: init: %w", err)
	}
	if enc != "UTF8" {
		return fmt.Errorf("pgstore: init: the database's encoding is %s; otpgate needs UTF8 (create its database with ENCODING 'UTF8')", enc)
	}
	have, err := schemaVersion(ctx, tx)
	if err != nil {
		return err
	}
	if have > SchemaVersion {
		return fmt.Errorf("pgstore: init: the database has otpgate schema version %d, newer than this otpgate knows (%d): upgrade otpgate on this host", have, SchemaVersion)
	}
	for _, role := range []string{OwnerRole, HostRole} {
		var super, login bool
		err := tx.QueryRow(ctx, `SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = $1`, role).Scan(&super, &login)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// Roles are global to the cluster, and the advisory lock
			// above is per database: an Init of another database may
			// create the role meanwhile, which is as good.
			if err := q(`SAVEPOINT create_role`); err != nil {
				return err
			}
			if err := q(`CREATE ROLE ` + role + ` NOLOGIN`); err != nil {
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || (pe.Code != "23505" && pe.Code != "42710") {
					return err
				}
				if err := q(`ROLLBACK TO SAVEPOINT create_role`); err != nil {
					return err
				}
			}
		case err != nil:
			return fmt.Errorf("pgstore: init: %w", err)
		case super || login:
			return fmt.Errorf("pgstore: init: role %s exists and is a superuser or can log in; it must be a NOLOGIN group role: ALTER ROLE %s NOSUPERUSER NOLOGIN", role, role)
		}
	}
	// SET ROLE below needs the membership unless the admin is a superuser.
	if err := q(`GRANT ` + OwnerRole + ` TO CURRENT_USER`); err != nil {
		return err
	}
	var owner string
	err = tx.QueryRow(ctx, `SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1`, Schema).Scan(&owner)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if err := q(`CREATE SCHEMA ` + Schema + ` AUTHORIZATION ` + OwnerRole); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("pgstore: init: %w", err)
	case owner != OwnerRole:
		return fmt.Errorf("pgstore: init: schema %s exists and belongs to %s, not %s: it was not made by otpgate; use a database of its own for otpgate", Schema, owner, OwnerRole)
	}
	var extSchema string
	err = tx.QueryRow(ctx, `SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto'`).Scan(&extSchema)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if err := q(`CREATE EXTENSION pgcrypto SCHEMA ` + Schema); err != nil {
			return fmt.Errorf("%w (Debian: apt install postgresql-contrib, part of postgresql-15)", err)
		}
	case err != nil:
		return fmt.Errorf("pgstore: init: %w", err)
	case extSchema != Schema:
		return fmt.Errorf("pgstore: init: pgcrypto is installed in schema %s; otpgate needs it in its own schema, which only %s may write: use a database of its own for otpgate", extSchema, OwnerRole)
	}
	if err := q(`SET LOCAL ROLE ` + OwnerRole); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, schemaV1); err != nil {
		return fmt.Errorf("pgstore: init: applying schema version %d: %w", SchemaVersion, err)
	}
	if err := q(`RESET ROLE`); err != nil {
		return err
	}
	grants := []string{
		`REVOKE ALL ON SCHEMA ` + Schema + ` FROM PUBLIC`,
		`GRANT USAGE ON SCHEMA ` + Schema + ` TO ` + HostRole,
		`REVOKE ALL ON ALL TABLES IN SCHEMA ` + Schema + ` FROM PUBLIC, ` + HostRole,
		`REVOKE ALL ON ALL SEQUENCES IN SCHEMA ` + Schema + ` FROM PUBLIC, ` + HostRole,
		`REVOKE ALL ON ALL ROUTINES IN SCHEMA ` + Schema + ` FROM PUBLIC, ` + HostRole,
		`ALTER DEFAULT PRIVILEGES FOR ROLE ` + OwnerRole + ` REVOKE EXECUTE ON ROUTINES FROM PUBLIC`,
	}
	// The version, where a host role (which reads no table) can see it:
	// the catalog. otpgate doctor reports it.
	grants = append(grants, fmt.Sprintf(`COMMENT ON SCHEMA %s IS '%s%d'`, Schema, SchemaComment, SchemaVersion))
	for _, r := range ownerRoutines {
		grants = append(grants, `GRANT EXECUTE ON ROUTINE `+r+` TO `+OwnerRole)
	}
	for _, r := range HostRoutines {
		grants = append(grants, `GRANT EXECUTE ON ROUTINE `+r+` TO `+HostRole)
	}
	for _, g := range grants {
		if err := q(g); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: init: %w", err)
	}
	return nil
}

// SchemaComment starts the comment Init puts on the schema, followed by
// the version: a host role reads no table, but it reads the catalog.
const SchemaComment = "otpgate schema version "

// schemaVersion returns the newest version recorded, 0 for none.
func schemaVersion(ctx context.Context, tx pgx.Tx) (int, error) {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('otpgate.schema_version') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, fmt.Errorf("pgstore: init: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM otpgate.schema_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("pgstore: init: reading the schema version: %w", err)
	}
	return v, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// Check reports whether p holds values otpgate accepts, with the bounds
// of config.toml.
func (p Policy) Check() error {
	if p.Window < 0 || p.Window > config.MaxWindow {
		return fmt.Errorf("pgstore: window %d is out of range; use 0 to %d", p.Window, config.MaxWindow)
	}
	if p.MaxFailures < 1 || p.MaxFailures > config.MaxMaxFailures {
		return fmt.Errorf("pgstore: max_failures %d is out of range; use 1 to %d", p.MaxFailures, config.MaxMaxFailures)
	}
	if p.LockDuration < time.Second || p.LockDuration > 168*time.Hour || p.LockDuration%time.Second != 0 {
		return fmt.Errorf("pgstore: lock_duration %s is out of range; use whole seconds from 1s to 168h", p.LockDuration)
	}
	return nil
}

// Policy returns the fleet's policy.
func (a *Admin) Policy(ctx context.Context) (Policy, error) {
	var p Policy
	var secs int64
	err := a.conn.QueryRow(ctx, `SELECT time_window, max_failures, extract(epoch FROM lock_duration)::bigint FROM otpgate.policy`).Scan(&p.Window, &p.MaxFailures, &secs)
	if err != nil {
		return Policy{}, fmt.Errorf("pgstore: reading the policy: %w", err)
	}
	p.LockDuration = time.Duration(secs) * time.Second
	return p, nil
}

// SetPolicy sets the fleet's policy; it applies to the next attempt on
// every host.
func (a *Admin) SetPolicy(ctx context.Context, p Policy) error {
	if err := p.Check(); err != nil {
		return err
	}
	_, err := a.conn.Exec(ctx, `UPDATE otpgate.policy SET time_window = $1, max_failures = $2, lock_duration = make_interval(secs => $3)`,
		p.Window, p.MaxFailures, p.LockDuration.Seconds())
	if err != nil {
		return fmt.Errorf("pgstore: setting the policy: %w", err)
	}
	return nil
}

// Authenticator is one TOTP secret of a user, named by a label unique
// for that user ("phone", "yubikey").
type Authenticator struct {
	Label   string
	Secret  []byte
	Params  totp.Params
	Created time.Time // zero means now
	// LastStep is the last accepted step, 0 for none: SetEnrollment
	// records the step of the code the user confirmed with, so that
	// code is not accepted again.
	LastStep int64
}

// Enroll adds an authenticator to user, making the user if needed. A
// label the user already has is refused: DeleteUser first to start over.
func (a *Admin) Enroll(ctx context.Context, user string, au Authenticator) error {
	if err := keystore.ValidUser(user); err != nil {
		return fmt.Errorf("pgstore: enroll: %w", err)
	}
	// The files store's rule, so that every user can be exported.
	if err := keystore.ValidLabel(au.Label); err != nil {
		return fmt.Errorf("pgstore: enroll: %w", err)
	}
	if err := au.Params.Check(); err != nil {
		return fmt.Errorf("pgstore: enroll: %w", err)
	}
	if len(au.Secret) < keystore.MinSecretBytes || len(au.Secret) > 128 {
		return fmt.Errorf("pgstore: enroll: the secret is %d bytes; use %d to 128", len(au.Secret), keystore.MinSecretBytes)
	}
	created := au.Created
	if created.IsZero() {
		created = time.Now()
	}
	return a.inUser(ctx, user, true, func(tx pgx.Tx, uid int64) error {
		tag, err := tx.Exec(ctx, `INSERT INTO otpgate.authenticators (user_id, label, secret, algorithm, digits, period, created)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, label) DO NOTHING`,
			uid, au.Label, au.Secret, au.Params.Algorithm, au.Params.Digits, au.Params.Period, created)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("user %s already has an authenticator labelled %q", user, au.Label)
		}
		return nil
	})
}

// SetBackupHashes replaces the backup codes of user with hashes (as
// backupcode.HashSet or HashScratchSet make them); the user must exist.
func (a *Admin) SetBackupHashes(ctx context.Context, user string, hashes []string) error {
	parts, err := splitHashes(hashes)
	if err != nil {
		return fmt.Errorf("pgstore: %w", err)
	}
	return a.inUser(ctx, user, false, func(tx pgx.Tx, uid int64) error {
		return putHashes(ctx, tx, uid, parts)
	})
}

// DeleteUser removes user, every authenticator, backup code and bit of
// state; a user that does not exist is no error.
func (a *Admin) DeleteUser(ctx context.Context, user string) error {
	if _, err := a.conn.Exec(ctx, `DELETE FROM otpgate.users WHERE name = $1`, user); err != nil {
		return fmt.Errorf("pgstore: deleting %s: %w", user, err)
	}
	return nil
}

// inUser runs f in a transaction holding user's row lock, the lock every
// attempt takes; create makes the user (and its state) if missing.
func (a *Admin) inUser(ctx context.Context, user string, create bool, f func(tx pgx.Tx, uid int64) error) error {
	tx, err := a.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if create {
		if _, err := tx.Exec(ctx, `INSERT INTO otpgate.users (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`, user); err != nil {
			return fmt.Errorf("pgstore: %s: %w", user, err)
		}
	}
	var uid int64
	err = tx.QueryRow(ctx, `SELECT id FROM otpgate.users WHERE name = $1 FOR UPDATE`, user).Scan(&uid)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("pgstore: user %s is not in the database: %w", user, keystore.ErrNotEnrolled)
	}
	if err != nil {
		return fmt.Errorf("pgstore: %s: %w", user, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO otpgate.user_state (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING`, uid); err != nil {
		return fmt.Errorf("pgstore: %s: %w", user, err)
	}
	if err := f(tx, uid); err != nil {
		if errors.Is(err, keystore.ErrNotEnrolled) || errors.Is(err, account.ErrEnrolled) || errors.Is(err, account.ErrLabelTaken) ||
			errors.Is(err, account.ErrTooMany) || errors.Is(err, account.ErrNoLabel) {
			return err // the files backend's answer, as it words it
		}
		return fmt.Errorf("pgstore: %s: %w", user, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: %s: %w", user, err)
	}
	return nil
}

// ImportUser puts a user of the files store (keystore) into the
// database: every authenticator with its label, parameters, creation
// time and the state's last step for it (so a code used before the
// import is a replay after it), the backup code hashes as they are, and
// the failures, lock and last success and failure. A user already in the
// database is replaced only if replace is set.
func (a *Admin) ImportUser(ctx context.Context, user string, u keystore.User, st keystore.State, replace bool) error {
	if err := keystore.ValidUser(user); err != nil {
		return fmt.Errorf("pgstore: import: %w", err)
	}
	// MarshalUser checks what a files-store user may hold: 1 to
	// MaxAuthenticators authenticators, valid and distinct labels,
	// parameters and secrets, backup code hashes.
	if _, err := keystore.MarshalUser(u); err != nil {
		return fmt.Errorf("pgstore: import %s: %w", user, err)
	}
	if st.Failures < 0 {
		return fmt.Errorf("pgstore: import %s: a negative failure count", user)
	}
	for _, au := range u.Authenticators {
		if st.LastStep(au.Label) < 0 {
			return fmt.Errorf("pgstore: import %s: a negative last step for %s", user, au.Label)
		}
	}
	parts, err := splitHashes(u.BackupHashes)
	if err != nil {
		return fmt.Errorf("pgstore: import %s: %w", user, err)
	}
	return a.inUser(ctx, user, true, func(tx pgx.Tx, uid int64) error {
		n, err := countAuthenticators(ctx, tx, uid)
		if err != nil {
			return err
		}
		if n > 0 && !replace {
			return errors.New("already enrolled in the database (replace it to import over it)")
		}
		if err := resetUser(ctx, tx, uid); err != nil {
			return err
		}
		for _, au := range u.Authenticators {
			if err := insertAuthenticator(ctx, tx, uid, Authenticator{Label: au.Label, Secret: au.Secret, Params: au.Params,
				Created: au.Created, LastStep: st.LastStep(au.Label)}); err != nil {
				return err
			}
		}
		if err := putHashes(ctx, tx, uid, parts); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE otpgate.user_state SET failures = $2, locked_until = $3, last_success = $4, last_failure = $5 WHERE user_id = $1`,
			uid, st.Failures, nullTime(st.LockedUntil), nullTime(st.LastSuccess), nullTime(st.LastFailure))
		return err
	})
}

// ExportUser returns user as the files store holds one: every
// authenticator (label, secret, parameters, creation time), the backup
// code hashes, and the state with each authenticator's last step. A user
// with more authenticators than a files-store user may hold
// (keystore.MaxAuthenticators) is refused.
func (a *Admin) ExportUser(ctx context.Context, user string) (keystore.User, keystore.State, error) {
	var u keystore.User
	var st keystore.State
	err := a.inUser(ctx, user, false, func(tx pgx.Tx, uid int64) error {
		rows, err := tx.Query(ctx, `SELECT label, secret, algorithm, digits, period, created, last_step FROM otpgate.authenticators WHERE user_id = $1 ORDER BY id`, uid)
		if err != nil {
			return err
		}
		for rows.Next() {
			var au keystore.Authenticator
			var step int64
			if err := rows.Scan(&au.Label, &au.Secret, &au.Params.Algorithm, &au.Params.Digits, &au.Params.Period, &au.Created, &step); err != nil {
				rows.Close()
				return err
			}
			u.Authenticators = append(u.Authenticators, au)
			st.SetLastStep(au.Label, step)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		switch n := len(u.Authenticators); {
		case n == 0:
			return errors.New("not enrolled")
		case n > keystore.MaxAuthenticators:
			return fmt.Errorf("%d authenticators; the files store holds at most %d per user", n, keystore.MaxAuthenticators)
		}
		rows, err = tx.Query(ctx, `SELECT kind, params, salt, key FROM otpgate.backup_codes WHERE user_id = $1 ORDER BY id`, uid)
		if err != nil {
			return err
		}
		for rows.Next() {
			var p backupcode.Parts
			var kind string
			if err := rows.Scan(&kind, &p.Params, &p.Salt, &p.Key); err != nil {
				rows.Close()
				return err
			}
			if kind == "scratch" {
				p.Kind = backupcode.KindScratch
			}
			h, err := backupcode.JoinHash(p)
			if err != nil {
				rows.Close()
				return fmt.Errorf("backup code %d: %w", len(u.BackupHashes)+1, err)
			}
			u.BackupHashes = append(u.BackupHashes, h)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		var locked, success, failure *time.Time
		if err := tx.QueryRow(ctx, `SELECT failures, locked_until, last_success, last_failure FROM otpgate.user_state WHERE user_id = $1`, uid).
			Scan(&st.Failures, &locked, &success, &failure); err != nil {
			return err
		}
		st.LockedUntil, st.LastSuccess, st.LastFailure = deref(locked), deref(success), deref(failure)
		return nil
	})
	if err != nil {
		return keystore.User{}, keystore.State{}, err
	}
	return u, st, nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// splitHashes checks and splits backup code hashes.
func splitHashes(hashes []string) ([]backupcode.Parts, error) {
	if len(hashes) > config.MaxBackupCodes {
		return nil, fmt.Errorf("%d backup codes; at most %d", len(hashes), config.MaxBackupCodes)
	}
	parts := make([]backupcode.Parts, len(hashes))
	for i, h := range hashes {
		p, err := backupcode.SplitHash(h)
		if err != nil {
			return nil, fmt.Errorf("backup code hash %d: %w", i+1, err)
		}
		parts[i] = p
	}
	return parts, nil
}

// putHashes replaces the user's backup codes with parts.
func putHashes(ctx context.Context, tx pgx.Tx, uid int64, parts []backupcode.Parts) error {
	if _, err := tx.Exec(ctx, `DELETE FROM otpgate.backup_codes WHERE user_id = $1`, uid); err != nil {
		return err
	}
	for _, p := range parts {
		kind := "code"
		if p.Kind == backupcode.KindScratch {
			kind = "scratch"
		}
		if _, err := tx.Exec(ctx, `INSERT INTO otpgate.backup_codes (user_id, kind, params, salt, key) VALUES ($1, $2, $3, $4, $5)`,
			uid, kind, p.Params, p.Salt, p.Key); err != nil {
			return err
		}
	}
	return nil
}
