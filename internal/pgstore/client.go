package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/verify"
	"github.com/otpgate/otpgate/keystore"
)

// Client is a host's connection, with a login role that is a member of
// otpgate_host. It is not safe for concurrent use: one Client per
// goroutine (the exec helper needs one per login).
type Client struct {
	conn *pgx.Conn
	// QueryTimeout bounds each call whose context has no earlier
	// deadline; 0 means DefaultQueryTimeout.
	QueryTimeout time.Duration
}

// Connect connects with dsn. The connection attempt, every address of
// the DSN included, is bounded by its connect_timeout, or
// DefaultConnectTimeout when it has none.
func Connect(ctx context.Context, dsn string) (*Client, error) {
	conn, err := connect(ctx, dsn, "otpgate")
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn}, nil
}

func connect(ctx context.Context, dsn, app string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx leaves a password out of its message.
		return nil, fmt.Errorf("pgstore: the DSN: %w", err)
	}
	return connectConfig(ctx, cfg, app)
}

func connectConfig(ctx context.Context, cfg *pgx.ConnConfig, app string) (*pgx.Conn, error) {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = app
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connecting to the database: %w", err)
	}
	return conn, nil
}

// Close closes the connection.
func (c *Client) Close(ctx context.Context) error { return c.conn.Close(ctx) }

// Result is the verdict of one attempt, shaped like verify.Result.
type Result struct {
	Outcome     verify.Outcome
	Reason      string // wrong-code, replayed, malformed-code, locked, not-enrolled, invalid-user, stale-attempt; db-unavailable, db-error when Failed
	Method      string // "totp" or "backup" when accepted
	Label       string // the authenticator whose code was accepted
	Failures    int    // consecutive failures after this attempt
	LockedUntil time.Time
	BackupLeft  int
	Err         error // the cause of Failed
}

// maxCode bounds what is sent as a code: nothing longer can be a code of
// any kind (verify.Classify), so it is sent as "", malformed all the same.
const maxCode = 256

// sendable returns code, or "" for what PostgreSQL's text cannot carry
// (a NUL byte, invalid UTF-8) or is too long to be a code: such an input
// is malformed for verify.Classify too, and still counted.
func sendable(code string) string {
	if len(code) > maxCode || !utf8.ValidString(code) || strings.ContainsRune(code, 0) {
		return ""
	}
	return code
}

func (c *Client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	d := c.QueryTimeout
	if d <= 0 {
		d = DefaultQueryTimeout
	}
	return context.WithTimeout(ctx, d)
}

// Verify runs one attempt for user in the database: CALL otpgate.verify,
// which commits the attempt's charge, checks the code and commits the
// verdict before it answers. A backup code is first hashed here under the
// salts of the user's codes (otpgate.backup_salts), one argon2id hash per
// salt; only the keys are sent. Every error is Outcome Failed, a denial:
// "db-unavailable" when the database could not be reached or did not
// answer in time, "db-error" otherwise.
func (c *Client) Verify(ctx context.Context, user, code, service, rhost string) Result {
	if err := keystore.ValidUser(user); err != nil {
		return Result{Outcome: verify.Denied, Reason: "invalid-user", Err: err}
	}
	code = sendable(code)
	ctx, cancel := c.bound(ctx)
	defer cancel()
	keys, err := c.backupKeys(ctx, user, code)
	if err != nil {
		return failed(ctx, err)
	}
	var (
		outcome, reason, method, label *string
		failures, backupLeft           *int32
		lockedUntil                    *time.Time
	)
	err = c.conn.QueryRow(ctx, `CALL otpgate.verify($1, $2, $3, $4, $5, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
		user, code, keys, service, rhost).Scan(&outcome, &reason, &method, &label, &failures, &lockedUntil, &backupLeft)
	if err != nil {
		return failed(ctx, err)
	}
	r := Result{Reason: deref(reason), Method: deref(method), Label: deref(label)}
	switch deref(outcome) {
	case "accepted":
		r.Outcome = verify.Accepted
	case "denied":
		r.Outcome = verify.Denied
	case "locked":
		r.Outcome = verify.Locked
	case "not-enrolled":
		r.Outcome = verify.NotEnrolled
	default:
		return Result{Outcome: verify.Failed, Reason: "db-error", Err: fmt.Errorf("pgstore: otpgate.verify answered %q", deref(outcome))}
	}
	if failures != nil {
		r.Failures = int(*failures)
	}
	if backupLeft != nil {
		r.BackupLeft = int(*backupLeft)
	}
	if lockedUntil != nil {
		r.LockedUntil = *lockedUntil
	}
	return r
}

// backupKeys returns the argon2id keys of code under the salts of the
// user's backup codes of its kind, or nil when code is no backup code.
func (c *Client) backupKeys(ctx context.Context, user, code string) ([][]byte, error) {
	s := strings.TrimSpace(code)
	norm, ok := backupcode.Normalize(s)
	kind := "code"
	if !ok {
		if norm, ok = backupcode.NormalizeScratch(s); !ok {
			return nil, nil
		}
		kind = "scratch"
	}
	rows, err := c.conn.Query(ctx, `SELECT o_kind, o_params, o_salt FROM otpgate.backup_salts($1)`, user)
	if err != nil {
		return nil, err
	}
	type salt struct {
		kind, params string
		salt         []byte
	}
	var salts []salt
	for rows.Next() {
		var s salt
		if err := rows.Scan(&s.kind, &s.params, &s.salt); err != nil {
			rows.Close()
			return nil, err
		}
		salts = append(salts, s)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// One entry per salt, in backup_salts' order: the database compares
	// entry i only with the codes under salt i, so each salt gets one
	// guess. A salt of the other kind, or one this otpgate cannot hash
	// for, gets an empty entry (it cannot match).
	var keys [][]byte
	for _, s := range salts {
		if len(keys) == maxKeys {
			break
		}
		k := []byte{}
		if s.kind == kind {
			if h, err := backupcode.Key(norm, s.params, s.salt); err == nil {
				k = h
			}
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// maxKeys is the most keys otpgate.begin_attempt_at keeps: one per salt,
// and a user has at most 50 backup codes (a set shares one salt; a file
// of an older format has one per code).
const maxKeys = 50

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// failed is the denial for an error, "db-unavailable" when the database
// could not be reached or did not answer in time.
func failed(ctx context.Context, err error) Result {
	reason := "db-error"
	var ne net.Error
	var ce *pgconn.ConnectError
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		pgconn.Timeout(err) || errors.As(err, &ne) || errors.As(err, &ce) {
		reason = "db-unavailable"
	}
	return Result{Outcome: verify.Failed, Reason: reason, Err: fmt.Errorf("pgstore: %w", err)}
}

// Status is what a host may know about a user: no secret, no key, no
// salt.
type Status struct {
	Enrolled       bool
	Authenticators []string // labels
	Failures       int
	LockedUntil    time.Time // zero when never locked; may be past
	LastSuccess    time.Time
	LastFailure    time.Time
	BackupLeft     int
}

// Status returns user's status.
func (c *Client) Status(ctx context.Context, user string) (Status, error) {
	if err := keystore.ValidUser(user); err != nil {
		return Status{}, fmt.Errorf("pgstore: %w", err)
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	var (
		st                         Status
		failures, backupLeft       *int32
		locked, success, lastFails *time.Time
	)
	err := c.conn.QueryRow(ctx, `SELECT o_enrolled, o_authenticators, o_failures, o_locked_until, o_last_success, o_last_failure, o_backup_left FROM otpgate.status($1)`, user).
		Scan(&st.Enrolled, &st.Authenticators, &failures, &locked, &success, &lastFails, &backupLeft)
	if err != nil {
		return Status{}, fmt.Errorf("pgstore: status of %s: %w", user, err)
	}
	st.Failures = int(deref(failures))
	st.BackupLeft = int(deref(backupLeft))
	st.LockedUntil = deref(locked)
	st.LastSuccess = deref(success)
	st.LastFailure = deref(lastFails)
	return st, nil
}
