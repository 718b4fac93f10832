package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/keystore"
)

// The administrator's operations on one user, the database's side of
// account.Manager: each runs in one transaction holding the user's row
// lock, the lock every attempt takes, so none interleaves with a login.
// Their errors wrap the errors account.Manager and keystore return
// (keystore.ErrNotEnrolled, account.ErrEnrolled, account.ErrLabelTaken,
// account.ErrNoLabel), so the command line answers both backends alike.

// Users returns the names of the enrolled users (one authenticator or
// more), sorted.
func (a *Admin) Users(ctx context.Context) ([]string, error) {
	rows, err := a.conn.Query(ctx, `SELECT u.name FROM otpgate.users u
		WHERE EXISTS (SELECT 1 FROM otpgate.authenticators x WHERE x.user_id = u.id) ORDER BY u.name COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: listing users: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("pgstore: listing users: %w", err)
	}
	return names, nil
}

// Status returns what otpgate status shows of user, shaped as the files
// backend's account.Status: the authenticators (no secret), backup codes
// left, failures, a lock that has not run out by the database's clock,
// and the last success and failure. A user the database does not know is
// not enrolled, with no failures.
func (a *Admin) Status(ctx context.Context, user string) (account.Status, error) {
	s := account.Status{User: user}
	if err := keystore.ValidUser(user); err != nil {
		return s, fmt.Errorf("pgstore: %w", err)
	}
	tx, err := a.conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return s, fmt.Errorf("pgstore: status of %s: %w", user, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var uid int64
	err = tx.QueryRow(ctx, `SELECT id FROM otpgate.users WHERE name = $1`, user).Scan(&uid)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("pgstore: status of %s: %w", user, err)
	}
	rows, err := tx.Query(ctx, `SELECT label, created, algorithm, digits, period FROM otpgate.authenticators WHERE user_id = $1 ORDER BY id`, uid)
	if err != nil {
		return s, fmt.Errorf("pgstore: status of %s: %w", user, err)
	}
	for rows.Next() {
		var au account.AuthenticatorStatus
		if err := rows.Scan(&au.Label, &au.Created, &au.Algorithm, &au.Digits, &au.Period); err != nil {
			rows.Close()
			return s, fmt.Errorf("pgstore: status of %s: %w", user, err)
		}
		s.Authenticators = append(s.Authenticators, au)
	}
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("pgstore: status of %s: %w", user, err)
	}
	if len(s.Authenticators) > 0 {
		s.Enrolled = true
		first := s.Authenticators[0]
		s.Created, s.Algorithm, s.Digits, s.Period = first.Created, first.Algorithm, first.Digits, first.Period
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM otpgate.backup_codes WHERE user_id = $1`, uid).Scan(&s.BackupLeft); err != nil {
			return s, fmt.Errorf("pgstore: status of %s: %w", user, err)
		}
	}
	var locked, success, failure *time.Time
	var lockedNow bool
	err = tx.QueryRow(ctx, `SELECT failures, locked_until, coalesce(locked_until > clock_timestamp(), false), last_success, last_failure
		FROM otpgate.user_state WHERE user_id = $1`, uid).Scan(&s.Failures, &locked, &lockedNow, &success, &failure)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return s, fmt.Errorf("pgstore: status of %s: %w", user, err)
	}
	if lockedNow {
		s.Locked, s.LockedUntil = true, deref(locked)
	}
	s.LastSuccess, s.LastFailure = deref(success), deref(failure)
	return s, nil
}

// SetEnrollment makes au user's first authenticator, with backup codes
// hashes (backupcode.HashSet), making the user if needed. A user who is
// enrolled already is refused with account.ErrEnrolled unless replace is
// set; then every authenticator and backup code of the user is replaced.
// The failure count and any lock are kept, as in the files backend.
// au.LastStep is the step of the code the user confirmed with, 0 for
// none.
func (a *Admin) SetEnrollment(ctx context.Context, user string, au Authenticator, hashes []string, replace bool) error {
	if err := checkAuthenticator(user, au); err != nil {
		return fmt.Errorf("pgstore: enroll: %w", err)
	}
	parts, err := splitHashes(hashes)
	if err != nil {
		return fmt.Errorf("pgstore: enroll %s: %w", user, err)
	}
	return a.inUser(ctx, user, true, func(tx pgx.Tx, uid int64) error {
		n, err := countAuthenticators(ctx, tx, uid)
		if err != nil {
			return err
		}
		if n > 0 && !replace {
			return account.ErrEnrolled
		}
		for _, q := range []string{`DELETE FROM otpgate.authenticators WHERE user_id = $1`, `DELETE FROM otpgate.pending_attempts WHERE user_id = $1`} {
			if _, err := tx.Exec(ctx, q, uid); err != nil {
				return err
			}
		}
		if err := insertAuthenticator(ctx, tx, uid, au); err != nil {
			return err
		}
		return putHashes(ctx, tx, uid, parts)
	})
}

// AddAuthenticator adds au to an enrolled user, keeping the others and
// the backup codes: keystore.ErrNotEnrolled for a user without one,
// account.ErrLabelTaken for a label the user has, account.ErrTooMany at
// keystore.MaxAuthenticators (the database could hold more, but such a
// user could not be exported to a files store).
func (a *Admin) AddAuthenticator(ctx context.Context, user string, au Authenticator) error {
	if err := checkAuthenticator(user, au); err != nil {
		return fmt.Errorf("pgstore: enroll: %w", err)
	}
	return a.inUser(ctx, user, false, func(tx pgx.Tx, uid int64) error {
		n, err := countAuthenticators(ctx, tx, uid)
		if err != nil {
			return err
		}
		var taken bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM otpgate.authenticators WHERE user_id = $1 AND label = $2)`, uid, au.Label).Scan(&taken); err != nil {
			return err
		}
		switch {
		case n == 0:
			return keystore.ErrNotEnrolled
		case taken:
			return account.ErrLabelTaken
		case n >= keystore.MaxAuthenticators:
			return account.ErrTooMany
		}
		return insertAuthenticator(ctx, tx, uid, au)
	})
}

// RemoveAuthenticator removes user's authenticator labelled label and
// returns how many are left; removing the last one is Reset (the backup
// codes go too). account.ErrNoLabel names the labels the user has.
func (a *Admin) RemoveAuthenticator(ctx context.Context, user, label string) (int, error) {
	left := 0
	err := a.inUser(ctx, user, false, func(tx pgx.Tx, uid int64) error {
		rows, err := tx.Query(ctx, `SELECT label FROM otpgate.authenticators WHERE user_id = $1 ORDER BY id`, uid)
		if err != nil {
			return err
		}
		labels, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if len(labels) == 0 {
			return keystore.ErrNotEnrolled
		}
		found := false
		for _, l := range labels {
			found = found || l == label
		}
		if !found {
			return fmt.Errorf("%w (%s has %s)", account.ErrNoLabel, user, strings.Join(labels, ", "))
		}
		if len(labels) == 1 {
			return resetUser(ctx, tx, uid)
		}
		left = len(labels) - 1
		_, err = tx.Exec(ctx, `DELETE FROM otpgate.authenticators WHERE user_id = $1 AND label = $2`, uid, label)
		return err
	})
	return left, err
}

// Reset removes user's authenticators and backup codes (a lost phone);
// the user's row and state stay, so the failure count and any lock
// survive, as in the files backend. keystore.ErrNotEnrolled when there
// is nothing to remove.
func (a *Admin) Reset(ctx context.Context, user string) error {
	return a.inUser(ctx, user, false, func(tx pgx.Tx, uid int64) error {
		n, err := countAuthenticators(ctx, tx, uid)
		if err != nil {
			return err
		}
		if n == 0 {
			return keystore.ErrNotEnrolled
		}
		return resetUser(ctx, tx, uid)
	})
}

// resetUser removes the authenticators, backup codes and pending
// attempts of the locked user uid. A pending attempt's charge stays
// counted; its second half then finds no attempt and denies.
func resetUser(ctx context.Context, tx pgx.Tx, uid int64) error {
	for _, q := range []string{
		`DELETE FROM otpgate.authenticators WHERE user_id = $1`,
		`DELETE FROM otpgate.backup_codes WHERE user_id = $1`,
		`DELETE FROM otpgate.pending_attempts WHERE user_id = $1`,
	} {
		if _, err := tx.Exec(ctx, q, uid); err != nil {
			return err
		}
	}
	return nil
}

// Unlock clears user's failure count and lock. The authenticators' last
// steps stay, so unlocking never makes a used code valid again.
func (a *Admin) Unlock(ctx context.Context, user string) error {
	return a.inUser(ctx, user, false, func(tx pgx.Tx, uid int64) error {
		_, err := tx.Exec(ctx, `UPDATE otpgate.user_state SET failures = 0, locked_until = NULL, last_failure = NULL WHERE user_id = $1`, uid)
		return err
	})
}

// NewBackupHashes replaces the backup codes of an enrolled user with
// hashes; keystore.ErrNotEnrolled for a user without an authenticator.
func (a *Admin) NewBackupHashes(ctx context.Context, user string, hashes []string) error {
	parts, err := splitHashes(hashes)
	if err != nil {
		return fmt.Errorf("pgstore: %w", err)
	}
	return a.inUser(ctx, user, false, func(tx pgx.Tx, uid int64) error {
		n, err := countAuthenticators(ctx, tx, uid)
		if err != nil {
			return err
		}
		if n == 0 {
			return keystore.ErrNotEnrolled
		}
		return putHashes(ctx, tx, uid, parts)
	})
}

// SchemaVersion returns the schema version recorded in the database, 0
// when it has none (Init was never run).
func (a *Admin) SchemaVersion(ctx context.Context) (int, error) {
	tx, err := a.conn.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("pgstore: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	return schemaVersion(ctx, tx)
}

func checkAuthenticator(user string, au Authenticator) error {
	if err := keystore.ValidUser(user); err != nil {
		return err
	}
	// The files store's rule, so that every user can be exported.
	if err := keystore.ValidLabel(au.Label); err != nil {
		return err
	}
	if err := au.Params.Check(); err != nil {
		return err
	}
	if len(au.Secret) < keystore.MinSecretBytes || len(au.Secret) > 128 {
		return fmt.Errorf("the secret is %d bytes; use %d to 128", len(au.Secret), keystore.MinSecretBytes)
	}
	if au.LastStep < 0 {
		return errors.New("a negative last step")
	}
	return nil
}

func countAuthenticators(ctx context.Context, tx pgx.Tx, uid int64) (int, error) {
	var n int
	err := tx.QueryRow(ctx, `SELECT count(*) FROM otpgate.authenticators WHERE user_id = $1`, uid).Scan(&n)
	return n, err
}

func insertAuthenticator(ctx context.Context, tx pgx.Tx, uid int64, au Authenticator) error {
	created := au.Created
	if created.IsZero() {
		created = time.Now()
	}
	_, err := tx.Exec(ctx, `INSERT INTO otpgate.authenticators (user_id, label, secret, algorithm, digits, period, created, last_step)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		uid, au.Label, au.Secret, au.Params.Algorithm, au.Params.Digits, au.Params.Period, created, au.LastStep)
	return err
}
