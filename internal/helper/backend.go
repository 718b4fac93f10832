package helper

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/internal/verify"
	"github.com/otpgate/otpgate/keystore"
)

// Postgres is the PostgreSQL backend as the helper uses it
// (docs/postgres.md): *pgstore.Pool. Only otpgate-helper-pg links it; the
// files-only otpgate-helper leaves Options.Postgres nil and hands a login
// whose config says backend = "postgres" to otpgate-helper-pg
// (Options.Handoff), so that every login on a files host is spared
// PostgreSQL's code at start-up.
type Postgres interface {
	// Status says whether user is enrolled in the database.
	Status(ctx context.Context, c config.Postgres, user string) (bool, error)
	// Verify runs one attempt in the database; every error is Outcome
	// Failed with reason db-unavailable, db-error or config-error.
	Verify(ctx context.Context, c config.Postgres, user, code, service, rhost string) verify.Result
}

// DBReason is what Options.DBReason answers for an error of Postgres:
// "db-unavailable", "db-error" or "config-error".
type DBReason func(error) string

// enrollRefusedMsg is said to a user who asks for self-service enrollment
// or backup codes on a host whose users live in the database.
const enrollRefusedMsg = "on this host codes are kept in a central database: enroll through an administrator (otpgate enroll --dsn ...)"

// checker is where one login's code is checked: the files store, or the
// PostgreSQL database with the local store as its fallback.
type checker struct {
	cfg   config.Config
	o     Options
	store *keystore.Store
	// pg is set while the database decides; nil for the files backend
	// and after a fall back to the local store.
	pg Postgres
	// extra are the fields every attempt line of this login ends with:
	// backend=postgres, or backend=local fallback=db-unavailable.
	extra []string
	// dbErr is the database's error that made the login fall back.
	dbErr error
}

// newChecker returns the checker of cfg's backend.
func newChecker(cfg config.Config, o Options) *checker {
	c := &checker{cfg: cfg, o: o, store: keystore.New(cfg.Store)}
	if cfg.Backend == config.BackendPostgres {
		c.pg = o.Postgres
		c.extra = []string{"backend", "postgres"}
	}
	return c
}

// dbError is an error of the database, with its log reason.
type dbError struct {
	reason string
	err    error
}

func (e *dbError) Error() string { return e.err.Error() }
func (e *dbError) Unwrap() error { return e.err }

func (c *checker) reason(err error) string {
	if c.o.DBReason != nil {
		return c.o.DBReason(err)
	}
	return "db-error"
}

// ctx bounds one call to the database: connecting and one query.
func (c *checker) ctx() (context.Context, context.CancelFunc) {
	p := c.cfg.Postgres
	return context.WithTimeout(context.Background(), p.ConnectTimeout+p.QueryTimeout)
}

// enrolled says whether user has a code to check. An error is a denial:
// a *dbError when the database could not answer and the login may not
// fall back to the local store. With on_unavailable = "local", a user
// with a secret in the local store is checked there instead; one without
// is refused (never taken for a user without a code: nullok and the
// enrollment deadline let such users in, and the database may know the
// user well).
func (c *checker) enrolled(user string) (bool, error) {
	if c.pg == nil {
		_, err := c.store.ReadUser(user)
		if errors.Is(err, keystore.ErrNotEnrolled) {
			return false, nil
		}
		return err == nil, err
	}
	ctx, cancel := c.ctx()
	defer cancel()
	ok, err := c.pg.Status(ctx, c.cfg.Postgres, user)
	if err == nil {
		return ok, nil
	}
	reason := c.reason(err)
	if !c.fallBack(user, reason, err) {
		return false, &dbError{reason: reason, err: err}
	}
	return true, nil
}

// fallBack switches to the local store after the database failed with
// reason, when on_unavailable = "local" and user has a local secret.
func (c *checker) fallBack(user, reason string, err error) bool {
	if reason == "config-error" || c.cfg.Postgres.OnUnavailable != config.UnavailableLocal {
		return false
	}
	if ok, lerr := c.store.Enrolled(user); lerr != nil || !ok {
		return false
	}
	c.pg = nil
	c.dbErr = err
	c.extra = []string{"backend", "local", "fallback", reason}
	return true
}

// verify runs one attempt and logs its line. A database that fails
// during the attempt is a fall back too (on_unavailable = "local"); a
// verdict of the database, a wrong code included, never is.
func (c *checker) verify(req verify.Request, lockWait time.Duration) verify.Result {
	if c.pg != nil {
		ctx, cancel := c.ctx()
		r := c.pg.Verify(ctx, c.cfg.Postgres, req.User, req.Code, req.Service, req.RHost)
		cancel()
		if r.Outcome != verify.Failed || !c.fallBack(req.User, r.Reason, r.Err) {
			req.Extra = c.extra
			verify.Log(c.o.Log, req, r)
			return r
		}
	}
	req.Extra = c.extra
	v := verify.Verifier{Store: c.store, Config: c.cfg, Log: c.o.Log, Now: c.o.Now, LockWait: lockWait}
	return v.Verify(req)
}

// digits is the length of code forward_pass splits the answer at: the
// first authenticator's for the files backend (and a fall back), the
// configured length for the database (which tells a host no parameters).
func (c *checker) digits(user string) int {
	if c.pg == nil {
		if u, err := c.store.ReadUser(user); err == nil && len(u.Authenticators) > 0 {
			return u.Authenticators[0].Params.Digits
		}
	}
	return c.cfg.Params.Digits
}

// lookupError denies a login whose enrollment could not be looked up.
func (c *checker) lookupError(s *session, user, service, rhost string, err error) string {
	var de *dbError
	if errors.As(err, &de) {
		logLine(c.o.Log, user, service, rhost, "error", append([]string{"reason", de.reason}, append(c.extra, "error", err.Error())...)...)
	} else {
		logLine(c.o.Log, user, service, rhost, "error", "reason", "store-error", "error", err.Error())
	}
	s.fail("%s", setupErrMsg)
	return protocol.ResultAuthErr
}

// handoff passes a login whose config says backend = "postgres" to
// otpgate-helper-pg when this helper was built without it. It returns
// only when that failed: the login is denied.
func handoff(s *session, req protocol.Request, user, service, rhost string, o Options) string {
	err := fmt.Errorf("backend = \"postgres\" needs otpgate-helper-pg, and this otpgate-helper cannot hand over to it; " +
		"a daemon started while the config said \"files\" serves the files backend: restart it (systemctl restart otpgate-helper.service)")
	if o.Handoff != nil {
		err = o.Handoff(req)
	}
	logLine(o.Log, user, service, rhost, "error", "reason", "config-error", "backend", "postgres", "error", err.Error())
	s.fail("%s", setupErrMsg)
	return protocol.ResultAuthErr
}
