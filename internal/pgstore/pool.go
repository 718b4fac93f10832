package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/verify"
)

// DefaultPoolSize bounds the connections a Pool holds to one DSN.
const DefaultPoolSize = 16

// Pool is the helper's access to the database: a bounded set of host
// connections per DSN, safe for concurrent use. A login takes a
// connection for one call (its status, then its attempt: never while a
// person types) and gives it back; a connection whose call failed is
// closed, and an idle one the server closed meanwhile is replaced before
// use. The exec helper's Pool serves one login and is closed after it;
// the daemon's lives as long as the daemon.
type Pool struct {
	// Size bounds the connections to one DSN, in use and idle; 0 means
	// DefaultPoolSize. A call waits for one within its connect timeout.
	Size int

	mu    sync.Mutex
	dsns  map[string]*dsnPool
	close bool
}

type dsnPool struct {
	slots chan struct{} // one token per open connection
	idle  chan *Client  // connections given back; as many as slots
}

// ErrPoolClosed is returned after Close.
var ErrPoolClosed = errors.New("pgstore: the pool is closed")

func (p *Pool) get(dsn string) (*dsnPool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.close {
		return nil, ErrPoolClosed
	}
	if p.dsns == nil {
		p.dsns = map[string]*dsnPool{}
	}
	d := p.dsns[dsn]
	if d == nil {
		n := p.Size
		if n <= 0 {
			n = DefaultPoolSize
		}
		d = &dsnPool{slots: make(chan struct{}, n), idle: make(chan *Client, n)}
		p.dsns[dsn] = d
	}
	return d, nil
}

// acquire returns a connection to c.DSN and whether it was reused (idle)
// rather than new: an idle one, else a new one while there are fewer
// than Size, else the first one given back. The wait is bounded by ctx
// and the connect timeout.
func (p *Pool) acquire(ctx context.Context, c config.Postgres) (*Client, bool, error) {
	d, err := p.get(c.DSN)
	if err != nil {
		return nil, false, err
	}
	wait := c.ConnectTimeout
	if wait <= 0 {
		wait = DefaultConnectTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		select {
		case cl := <-d.idle:
			if cl2, ok := p.usable(d, cl, c); ok {
				return cl2, true, nil
			}
			continue
		default:
		}
		select {
		case cl := <-d.idle:
			if cl2, ok := p.usable(d, cl, c); ok {
				return cl2, true, nil
			}
		case d.slots <- struct{}{}:
			cl, err := ConnectTimeout(ctx, c.DSN, c.ConnectTimeout)
			if err != nil {
				<-d.slots
				return nil, false, err
			}
			cl.QueryTimeout = c.QueryTimeout
			return cl, false, nil
		case <-ctx.Done():
			return nil, false, fmt.Errorf("all %d connections to the database are busy: %w", cap(d.slots), ctx.Err())
		}
	}
}

// usable returns an idle connection if the server has not closed it
// meanwhile (a restart, an idle timeout), found without a round trip by
// a non-blocking read; else it closes it and frees its slot.
func (p *Pool) usable(d *dsnPool, cl *Client, c config.Postgres) (*Client, bool) {
	if cl.conn.PgConn().CheckConn() == nil {
		cl.QueryTimeout = c.QueryTimeout
		return cl, true
	}
	cl.conn.Close(context.Background())
	<-d.slots
	return nil, false
}

// release gives cl back, or closes it when broken or after Close.
func (p *Pool) release(c config.Postgres, cl *Client, broken bool) {
	p.mu.Lock()
	d, closed := p.dsns[c.DSN], p.close
	p.mu.Unlock()
	if broken || closed || d == nil {
		cl.conn.Close(context.Background())
		if d != nil {
			<-d.slots
		}
		return
	}
	d.idle <- cl // never blocks: at most cap(slots) connections exist
}

// Close closes the idle connections; those in use are closed when they
// are given back.
func (p *Pool) Close() {
	p.mu.Lock()
	p.close = true
	dsns := p.dsns
	p.mu.Unlock()
	for _, d := range dsns {
		for {
			select {
			case cl := <-d.idle:
				cl.conn.Close(context.Background())
				<-d.slots
				continue
			default:
			}
			break
		}
	}
}

// Status says whether user is enrolled in the database of c.
func (p *Pool) Status(ctx context.Context, c config.Postgres, user string) (bool, error) {
	if err := CheckPassfile(c.DSN); err != nil {
		return false, err
	}
	for try := 0; ; try++ {
		cl, reused, err := p.acquire(ctx, c)
		if err != nil {
			return false, err
		}
		st, err := cl.Status(ctx, user)
		p.release(c, cl, err != nil)
		if err != nil && reused && try == 0 && pgconn.SafeToRetry(err) {
			continue // nothing reached the server: a fresh connection
		}
		return st.Enrolled, err
	}
}

// Verify runs one attempt in the database of c, as Client.Verify does,
// and returns its verdict as the files backend's. A call on a reused
// connection that failed before anything reached the server is made
// once more on a new connection; any other failure is not retried (the
// attempt may have been charged).
func (p *Pool) Verify(ctx context.Context, c config.Postgres, user, code, service, rhost string) verify.Result {
	if err := CheckPassfile(c.DSN); err != nil {
		return verify.Result{Outcome: verify.Failed, Reason: "config-error", Err: err}
	}
	for try := 0; ; try++ {
		cl, reused, err := p.acquire(ctx, c)
		if err != nil {
			return verify.Result{Outcome: verify.Failed, Reason: Reason(err), Err: err}
		}
		r := cl.Verify(ctx, user, code, service, rhost)
		p.release(c, cl, r.Outcome == verify.Failed)
		if r.Outcome == verify.Failed && reused && try == 0 && pgconn.SafeToRetry(r.Err) {
			continue
		}
		return verify.Result{Outcome: r.Outcome, Reason: r.Reason, Method: r.Method, Label: r.Label,
			Failures: r.Failures, LockedUntil: r.LockedUntil, BackupLeft: r.BackupLeft, Err: r.Err}
	}
}

// Reason is the log reason for an error of the database: "config-error"
// for a passfile CheckPassfile refuses, "db-unavailable" when the
// database could not be reached, refused the connection or its login, or
// did not answer in time, else "db-error".
func Reason(err error) string {
	var pe *PassfileError
	if errors.As(err, &pe) {
		return "config-error"
	}
	return failed(context.Background(), err).Reason
}

// ConnectTimeout is Connect with the connection attempt bounded by
// timeout when it is positive (config.toml's connect_timeout wins over
// the DSN's).
func ConnectTimeout(ctx context.Context, dsn string, timeout time.Duration) (*Client, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: the DSN: %w", err)
	}
	if timeout > 0 {
		cfg.ConnectTimeout = timeout
	}
	conn, err := connectConfig(ctx, cfg, "otpgate")
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn}, nil
}

// PassfileError is a password file that is not root's alone.
type PassfileError struct{ msg string }

func (e *PassfileError) Error() string { return e.msg }

// CheckPassfile refuses the password file the DSN would use when it is
// not root's alone: the one named by passfile= in the DSN (which must
// then exist), else $PGPASSFILE, else ~/.pgpass of the process (both only
// when they exist). It must be a regular file (not a symbolic link),
// owned by root, with no permission for group or others: it holds the
// host role's password, with which anyone could spend every user's
// guesses.
func CheckPassfile(dsn string) error {
	path, named := passfileOf(dsn)
	if path == "" {
		if path = os.Getenv("PGPASSFILE"); path == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return nil
			}
			path = filepath.Join(home, ".pgpass")
		}
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) && !named {
		return nil
	}
	if err != nil {
		return &PassfileError{fmt.Sprintf("the PostgreSQL password file %s: %v; create it root:root mode 0600 or remove passfile= from [postgres] dsn", path, err)}
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return &PassfileError{fmt.Sprintf("the PostgreSQL password file %s is not a regular file (a symbolic link?); make it one, root:root mode 0600", path)}
	case !ok || sys.Uid != 0:
		return &PassfileError{fmt.Sprintf("the PostgreSQL password file %s is not owned by root; chown root:root %s", path, path)}
	case fi.Mode().Perm()&0o077 != 0:
		return &PassfileError{fmt.Sprintf("the PostgreSQL password file %s is mode %04o, open to others; chmod 0600 %s", path, fi.Mode().Perm(), path)}
	}
	return nil
}

// passfileOf returns the passfile= of a keyword/value DSN or of a URL's
// query, and whether there was one.
func passfileOf(dsn string) (string, bool) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", false // pgx refuses it too
		}
		if v, ok := u.Query()["passfile"]; ok && len(v) > 0 {
			return v[len(v)-1], true
		}
		return "", false
	}
	path, named := "", false
	for _, kv := range keywordValues(dsn) {
		if kv[0] == "passfile" {
			path, named = kv[1], true // the last one wins, as in libpq
		}
	}
	return path, named
}

// keywordValues splits a libpq keyword/value string: key = value pairs
// separated by white space, a value either bare or in single quotes with
// backslash escapes.
func keywordValues(s string) [][2]string {
	var out [][2]string
	for {
		s = strings.TrimLeft(s, " \t\n\r\f\v")
		if s == "" {
			return out
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return out
		}
		key := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], " \t\n\r\f\v")
		var val strings.Builder
		if strings.HasPrefix(s, "'") {
			s = s[1:]
			for s != "" && s[0] != '\'' {
				if s[0] == '\\' && len(s) > 1 {
					s = s[1:]
				}
				val.WriteByte(s[0])
				s = s[1:]
			}
			if s != "" {
				s = s[1:]
			}
		} else {
			for s != "" && !strings.ContainsRune(" \t\n\r\f\v", rune(s[0])) {
				if s[0] == '\\' && len(s) > 1 {
					s = s[1:]
				}
				val.WriteByte(s[0])
				s = s[1:]
			}
		}
		out = append(out, [2]string{key, val.String()})
	}
}
