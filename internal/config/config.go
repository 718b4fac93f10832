// Package config reads /etc/otpgate/config.toml.
//
// A missing file means the defaults. An unknown key or a bad value is an
// error naming the file, the line and the key; callers in the login path
// then deny.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"

	"github.com/otpgate/otpgate/internal/tomlshape"
	"github.com/otpgate/otpgate/internal/totp"
)

// DefaultPath is where the policy lives.
const DefaultPath = "/etc/otpgate/config.toml"

// DefaultStore is the default store directory.
const DefaultStore = "/var/lib/otpgate"

// maxSize bounds the config file, like every other otpgate file.
const maxSize = 64 << 10

// Config is the policy. Use Default for a missing file.
type Config struct {
	Issuer       string        // label shown in the authenticator app
	Params       totp.Params   // algorithm, digits and period of new enrollments
	Window       int           // steps accepted on either side of now
	Store        string        // store directory
	MaxFailures  int           // consecutive failures that lock an account
	LockDuration time.Duration // how long a lock lasts
	BackupCodes  int           // backup codes made per set
	FirstLogin   bool          // offer enrollment inside a login
	Policy       Policy        // who must use a code ([policy])
	Deadline     Date          // [enroll] deadline; zero when unset
	Backend      string        // where users and state live: BackendFiles or BackendPostgres
	Postgres     Postgres      // [postgres], used when Backend is BackendPostgres
}

// Backends.
const (
	BackendFiles    = "files"    // the store directory on this host (the default)
	BackendPostgres = "postgres" // one PostgreSQL database for a fleet ([postgres])
)

// What a host does when the PostgreSQL backend does not answer.
const (
	UnavailableDeny  = "deny"  // every login that needs a code is denied (the default)
	UnavailableLocal = "local" // users with a secret in the local files store may log in with it
)

// Postgres is the [postgres] table.
type Postgres struct {
	// DSN is a libpq keyword/value string or a postgres:// URL. It holds
	// no password: one comes from the passfile it names (passfile=), a
	// root-only file. The helper runs without HOME or PGPASSFILE, so no
	// other passfile is ever read.
	DSN string
	// OnUnavailable is UnavailableDeny or UnavailableLocal.
	OnUnavailable string
	// ConnectTimeout bounds connecting; QueryTimeout one attempt's
	// round trips.
	ConnectTimeout time.Duration
	QueryTimeout   time.Duration
}

// Policy is the [policy] table: who must use a code. The names are
// checked for form here; whether they exist is the policy package's
// question (config parsing does no lookups).
type Policy struct {
	RequireGroups []string // only members of these need a code; empty means everyone
	ExemptGroups  []string // members never need one; wins over RequireGroups
	ExemptUsers   []string // these users never need one
}

// Empty reports whether the policy names no one: everyone must use a
// code, and nothing needs to be looked up.
func (p Policy) Empty() bool {
	return len(p.RequireGroups) == 0 && len(p.ExemptGroups) == 0 && len(p.ExemptUsers) == 0
}

// Date is a calendar date without a time or zone: [enroll] deadline.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// IsZero reports whether the date is unset.
func (d Date) IsZero() bool { return d == Date{} }

// String writes the date as TOML does: 2027-01-31.
func (d Date) String() string {
	return fmt.Sprintf("%04d-%02d-%02d", d.Year, int(d.Month), d.Day)
}

// Midnight is the start of the date in loc.
func (d Date) Midnight(loc *time.Location) time.Time {
	return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, loc)
}

// tomlLocalDate is the name of the zone the TOML parser gives a local
// date (2027-01-31, no time); TestDeadline notices if it changes.
const tomlLocalDate = "date-local"

// MaxNames bounds each [policy] list, and MaxNameLen each name in it.
const (
	MaxNames   = 256
	MaxNameLen = 256
)

// checkName says what is wrong with a user or group name in [policy], or
// "" when it is fine. Besides what no account database allows (':',
// ',', blanks, control characters), it refuses what getent would read as
// something else: a leading '-' (an option) and all digits (a uid or gid).
func checkName(n string) string {
	switch {
	case n == "":
		return "an empty name"
	case len(n) > MaxNameLen:
		return fmt.Sprintf("a name over %d bytes", MaxNameLen)
	case n[0] == '-':
		return fmt.Sprintf("%q starts with '-'", n)
	case strings.Trim(n, "0123456789") == "":
		return fmt.Sprintf("%q is a number; name the group or user, not its id", n)
	}
	for _, r := range n {
		if r <= ' ' || r == 0x7f || r == ':' || r == ',' || r == '/' {
			return fmt.Sprintf("%q contains %q, which no user or group name has", n, r)
		}
	}
	return ""
}

// Limits on values, chosen so a typo cannot make otpgate useless or unsafe.
const (
	MaxWindow      = 10
	MaxMaxFailures = 100 // NIST SP 800-63B section 5.2.2
	MaxBackupCodes = 50
)

// Default returns the policy used when there is no config file.
func Default() Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "otpgate"
	}
	return Config{
		Issuer:       host,
		Params:       totp.Default,
		Window:       1,
		Store:        DefaultStore,
		MaxFailures:  5,
		LockDuration: 15 * time.Minute,
		BackupCodes:  10,
		Backend:      BackendFiles,
		Postgres: Postgres{
			OnUnavailable:  UnavailableDeny,
			ConnectTimeout: 5 * time.Second,
			QueryTimeout:   5 * time.Second,
		},
	}
}

type file struct {
	Issuer    *string `toml:"issuer"`
	Algorithm *string `toml:"algorithm"`
	Digits    *int    `toml:"digits"`
	Period    *int    `toml:"period"`
	Window    *int    `toml:"window"`
	Store     *string `toml:"store"`
	Lockout   struct {
		MaxFailures  *int    `toml:"max_failures"`
		LockDuration *string `toml:"lock_duration"`
	} `toml:"lockout"`
	BackupCodes struct {
		Count *int `toml:"count"`
	} `toml:"backup_codes"`
	Enroll struct {
		FirstLogin *bool `toml:"first_login"`
		Deadline   any   `toml:"deadline"` // a time.Time; see Parse
	} `toml:"enroll"`
	Policy struct {
		RequireGroups []string `toml:"require_groups"`
		ExemptGroups  []string `toml:"exempt_groups"`
		ExemptUsers   []string `toml:"exempt_users"`
	} `toml:"policy"`
	Backend  *string `toml:"backend"`
	Postgres struct {
		DSN            *string `toml:"dsn"`
		OnUnavailable  *string `toml:"on_unavailable"`
		ConnectTimeout *string `toml:"connect_timeout"`
		QueryTimeout   *string `toml:"query_timeout"`
	} `toml:"postgres"`
}

// Load reads the config at path. A missing file gives Default only at
// DefaultPath; a file named explicitly (--config, config=) that does not
// exist is an error, not a silent fall back to the defaults. The file
// must be a regular file owned by root (or the effective uid) and not
// writable by group or others: it decides who may log in.
func Load(path string) (Config, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		if path == DefaultPath {
			return Default(), nil
		}
		return Config{}, fmt.Errorf("config: %s does not exist; create it, or fix the path (only the default %s may be absent)", path, DefaultPath)
	}
	if errors.Is(err, unix.ELOOP) {
		return Config{}, fmt.Errorf("config: %s is a symbolic link; point --config at the real file", path)
	}
	if err != nil {
		return Config{}, fmt.Errorf("config: %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Config{}, fmt.Errorf("config: %s: %w", path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return Config{}, fmt.Errorf("config: %s is not a regular file", path)
	case st.Uid != 0 && int(st.Uid) != os.Geteuid():
		return Config{}, fmt.Errorf("config: %s is owned by uid %d; run chown root:root %s", path, st.Uid, path)
	case st.Mode&0o022 != 0:
		return Config{}, fmt.Errorf("config: %s is group- or world-writable; run chmod 644 %s", path, path)
	case st.Size > maxSize:
		return Config{}, fmt.Errorf("config: %s is over %d bytes", path, maxSize)
	}
	data := make([]byte, maxSize+1)
	n, err := f.ReadAt(data, 0)
	if n > maxSize {
		return Config{}, fmt.Errorf("config: %s is over %d bytes", path, maxSize)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		// Never the defaults for a file that is there but unreadable:
		// the policy in it may be stricter.
		return Config{}, fmt.Errorf("config: reading %s: %w", path, err)
	}
	return Parse(path, data[:n])
}

// Parse parses config data; name is used in errors.
func Parse(name string, data []byte) (Config, error) {
	if err := tomlshape.Check(data); err != nil {
		return Config{}, fmt.Errorf("config: %s: %v", name, err)
	}
	c := Default()
	var f file
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			// Name the key when the error is on its line (a value out
			// of range, a broken string); the last key read before a
			// broken line elsewhere would mislead.
			if k := perr.LastKey; k != "" && keyLine(data, k) == perr.Position.Line {
				return Config{}, fmt.Errorf("config: %s:%d: %s: %s", name, perr.Position.Line, k, perr.Message)
			}
			return Config{}, fmt.Errorf("config: %s:%d: %s", name, perr.Position.Line, perr.Message)
		}
		return Config{}, fmt.Errorf("config: %s: %v", name, err)
	}
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("config: %s:%d: %s: %s", name, keyLine(data, key), key, fmt.Sprintf(format, args...))
	}
	if extra := md.Undecoded(); len(extra) > 0 {
		k := extra[0].String()
		return Config{}, bad(k, "unknown key; see the configuration section of the otpgate docs")
	}
	if f.Issuer != nil {
		if *f.Issuer == "" || strings.ContainsAny(*f.Issuer, ":\n\r") || len(*f.Issuer) > 64 {
			return Config{}, bad("issuer", "must be 1 to 64 characters without ':' or line breaks")
		}
		c.Issuer = *f.Issuer
	}
	if f.Algorithm != nil {
		c.Params.Algorithm = *f.Algorithm
	}
	if f.Digits != nil {
		c.Params.Digits = *f.Digits
	}
	if f.Period != nil {
		c.Params.Period = *f.Period
	}
	if err := c.Params.Check(); err != nil {
		// Blame the key Check complained about: it checks the
		// algorithm, then digits, then period. The defaults are valid,
		// so that key is set in the file.
		key := "period"
		switch {
		case totp.Params{Algorithm: c.Params.Algorithm, Digits: 6, Period: 30}.Check() != nil:
			key = "algorithm"
		case c.Params.Digits != 6 && c.Params.Digits != 8:
			key = "digits"
		}
		return Config{}, bad(key, "%v", err)
	}
	if f.Window != nil {
		if *f.Window < 0 || *f.Window > MaxWindow {
			return Config{}, bad("window", "%d is out of range; use 0 to %d", *f.Window, MaxWindow)
		}
		c.Window = *f.Window
	}
	if f.Store != nil {
		if !filepath.IsAbs(*f.Store) || filepath.Clean(*f.Store) != *f.Store {
			return Config{}, bad("store", "%q must be a clean absolute path", *f.Store)
		}
		c.Store = *f.Store
	}
	if v := f.Lockout.MaxFailures; v != nil {
		if *v < 1 || *v > MaxMaxFailures {
			return Config{}, bad("lockout.max_failures", "%d is out of range; use 1 to %d", *v, MaxMaxFailures)
		}
		c.MaxFailures = *v
	}
	if v := f.Lockout.LockDuration; v != nil {
		d, err := time.ParseDuration(*v)
		if err != nil || d < time.Second || d > 7*24*time.Hour {
			return Config{}, bad("lockout.lock_duration", "%q is not a duration from 1s to 168h, such as \"15m\"", *v)
		}
		c.LockDuration = d
	}
	if v := f.BackupCodes.Count; v != nil {
		if *v < 0 || *v > MaxBackupCodes {
			return Config{}, bad("backup_codes.count", "%d is out of range; use 0 to %d", *v, MaxBackupCodes)
		}
		c.BackupCodes = *v
	}
	if v := f.Enroll.FirstLogin; v != nil {
		c.FirstLogin = *v
	}
	if f.Enroll.Deadline != nil {
		// Only a TOML local date (2027-01-31): a time of day or a zone
		// would say something the helper does not do (it starts the
		// date at local midnight of the host's zone). Decoded as any:
		// into a time.Time the parser drops the kind of value it read.
		v, ok := f.Enroll.Deadline.(time.Time)
		if !ok || v.Location().String() != tomlLocalDate {
			return Config{}, bad("enroll.deadline", "write a date without a time or zone, such as 2027-01-31 (it starts at midnight, local time of the host)")
		}
		c.Deadline = Date{Year: v.Year(), Month: v.Month(), Day: v.Day()}
	}
	for _, l := range []struct {
		key  string
		in   []string
		into *[]string
	}{
		{"policy.require_groups", f.Policy.RequireGroups, &c.Policy.RequireGroups},
		{"policy.exempt_groups", f.Policy.ExemptGroups, &c.Policy.ExemptGroups},
		{"policy.exempt_users", f.Policy.ExemptUsers, &c.Policy.ExemptUsers},
	} {
		if len(l.in) > MaxNames {
			return Config{}, bad(l.key, "%d names; at most %d", len(l.in), MaxNames)
		}
		for _, n := range l.in {
			if why := checkName(n); why != "" {
				return Config{}, bad(l.key, "%s", why)
			}
		}
		if len(l.in) > 0 {
			*l.into = append([]string(nil), l.in...)
		}
	}
	if err := parseBackend(&c, &f, bad); err != nil {
		return Config{}, err
	}
	return c, nil
}

// parseBackend reads backend and [postgres]. The DSN is checked for form
// only (no connection, and no PostgreSQL code in the config package, which
// every exec of the helper loads): present when the backend is postgres,
// and without a password, which belongs in a root-only passfile.
func parseBackend(c *Config, f *file, bad func(key, format string, args ...any) error) error {
	if f.Backend != nil {
		switch *f.Backend {
		case BackendFiles, BackendPostgres:
			c.Backend = *f.Backend
		default:
			return bad("backend", "%q is not a backend; use %q or %q", *f.Backend, BackendFiles, BackendPostgres)
		}
	}
	p := f.Postgres
	if p.DSN != nil {
		if *p.DSN == "" || len(*p.DSN) > 4096 || strings.ContainsAny(*p.DSN, "\x00\n\r") {
			return bad("postgres.dsn", "must be one line of 1 to 4096 bytes")
		}
		if dsnHasPassword(*p.DSN) {
			return bad("postgres.dsn", "holds a password; put it in a passfile (root:root 0600) and name it with passfile= in the DSN")
		}
		c.Postgres.DSN = *p.DSN
	}
	if p.OnUnavailable != nil {
		switch *p.OnUnavailable {
		case UnavailableDeny, UnavailableLocal:
			c.Postgres.OnUnavailable = *p.OnUnavailable
		default:
			return bad("postgres.on_unavailable", "%q is not one of %q, %q", *p.OnUnavailable, UnavailableDeny, UnavailableLocal)
		}
	}
	for _, t := range []struct {
		key  string
		in   *string
		into *time.Duration
	}{
		{"postgres.connect_timeout", p.ConnectTimeout, &c.Postgres.ConnectTimeout},
		{"postgres.query_timeout", p.QueryTimeout, &c.Postgres.QueryTimeout},
	} {
		if t.in == nil {
			continue
		}
		d, err := time.ParseDuration(*t.in)
		if err != nil || d < 100*time.Millisecond || d > 60*time.Second {
			return bad(t.key, "%q is not a duration from 100ms to 60s, such as \"5s\"", *t.in)
		}
		*t.into = d
	}
	if c.Backend == BackendPostgres && c.Postgres.DSN == "" {
		return bad("backend", "backend = \"postgres\" needs dsn in [postgres]")
	}
	return nil
}

// dsnHasPassword reports whether a DSN carries a password: a password
// keyword in the keyword/value form, or a password in a URL's user info.
func dsnHasPassword(dsn string) bool {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		rest := dsn[strings.Index(dsn, "://")+3:]
		if at := strings.IndexByte(rest, '@'); at >= 0 {
			if slash := strings.IndexByte(rest, '/'); slash < 0 || at < slash {
				if strings.Contains(rest[:at], ":") {
					return true
				}
			}
		}
		// The query string may name one too.
		if _, q, ok := strings.Cut(rest, "?"); ok {
			for _, kv := range strings.Split(q, "&") {
				if k, _, _ := strings.Cut(kv, "="); strings.EqualFold(k, "password") {
					return true
				}
			}
		}
		return false
	}
	for _, field := range strings.Fields(dsn) {
		if k, _, ok := strings.Cut(field, "="); ok && strings.EqualFold(strings.TrimSpace(k), "password") {
			return true
		}
	}
	// "password = x" with blanks around '='.
	fields := strings.Fields(dsn)
	for i, f := range fields {
		if strings.EqualFold(f, "password") && i+1 < len(fields) && strings.HasPrefix(fields[i+1], "=") {
			return true
		}
	}
	return false
}

// keyLine finds the line where a dotted key ("lockout.max_failures") is
// set, as a key inside its [table], as a dotted key, or as a [table]
// header of its own. A key set inside an inline table is reported at the
// line of the nearest enclosing key found. 0 when it cannot tell.
func keyLine(data []byte, dotted string) int {
	dotted = normKey(dotted)
	for k := dotted; k != ""; {
		if n := findKey(data, k); n > 0 {
			return n
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

// findKey returns the line that sets or opens the table dotted, or 0.
func findKey(data []byte, dotted string) int {
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxSize+1)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			name := strings.TrimPrefix(strings.TrimPrefix(line, "["), "[")
			if i := strings.IndexByte(name, ']'); i >= 0 {
				name = name[:i]
			}
			cur = normKey(name)
			if cur == dotted {
				return n
			}
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		full := normKey(k)
		if cur != "" {
			full = cur + "." + full
		}
		if full == dotted {
			return n
		}
	}
	return 0
}

// normKey writes a TOML key the way toml.Key.String does for plain
// names: the parts without quotes or surrounding blanks, joined by dots.
func normKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// DSNHasPassword reports whether dsn carries a password (the rule
// postgres.dsn follows), for otpgate's --dsn: a password belongs in a
// passfile, not in a file or a command line others may read.
func DSNHasPassword(dsn string) bool { return dsnHasPassword(dsn) }

// DSNSettings returns the settings a DSN names itself (not those the
// environment, a service file or the defaults would add): libpq's
// keyword/value form ("host=db1 dbname='a b'") or a postgres:// URL. It
// parses without connecting and without pgx, which the config package
// does not link.
func DSNSettings(dsn string) (map[string]string, error) {
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
			return nil, fmt.Errorf("%q is not keyword=value", firstDSNLine(s))
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

func firstDSNLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
