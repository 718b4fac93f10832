package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/keystore"
)

// backend is where the administrator's commands (enroll, status, list,
// unlock, reset, backup-codes) act: this host's files store, or with
// --dsn the PostgreSQL database. Both answer with account's and
// keystore's errors, so the commands print the same either way.
type backend interface {
	// Labels returns the labels of user's authenticators;
	// keystore.ErrNotEnrolled when there are none.
	Labels(user string) ([]string, error)
	Status(user string) (account.Status, error)
	Users() ([]string, error)
	// Save stores a new enrollment as account.Manager.Save does.
	Save(en *account.Enrollment, opts account.SaveOptions) ([]string, error)
	RemoveAuthenticator(user, label string) (int, error)
	Reset(user string) error
	Unlock(user string) error
	NewBackupCodes(user string) ([]string, error)
}

// filesBackend is the local store, through account.Manager.
type filesBackend struct{ e *env }

func (f filesBackend) Labels(user string) ([]string, error) {
	u, err := f.e.store.ReadUser(user)
	if err != nil {
		return nil, err
	}
	return u.Labels(), nil
}

func (f filesBackend) Status(user string) (account.Status, error) { return f.e.mgr.Status(user) }
func (f filesBackend) Users() ([]string, error)                   { return f.e.store.Users() }
func (f filesBackend) Save(en *account.Enrollment, opts account.SaveOptions) ([]string, error) {
	return f.e.mgr.Save(en, opts)
}
func (f filesBackend) RemoveAuthenticator(user, label string) (int, error) {
	return f.e.mgr.RemoveAuthenticator(user, label)
}
func (f filesBackend) Reset(user string) error  { return f.e.mgr.Reset(user) }
func (f filesBackend) Unlock(user string) error { return f.e.mgr.Unlock(user) }
func (f filesBackend) NewBackupCodes(user string) ([]string, error) {
	return f.e.mgr.NewBackupCodes(user, "")
}

// dbOpTimeout bounds one operation on the database (connecting is bounded
// by the DSN's connect_timeout, else pgstore.DefaultConnectTimeout).
const dbOpTimeout = 30 * time.Second

// dbBackend is the PostgreSQL database, through an administrator's
// connection (pgstore.Admin).
type dbBackend struct {
	admin DBAdmin
	name  string // "host/dbname", for people
	dsn   string
	cfg   *config.Config
}

func (d *dbBackend) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), dbOpTimeout)
}

func (d *dbBackend) Labels(user string) ([]string, error) {
	s, err := d.Status(user)
	if err != nil {
		return nil, err
	}
	if !s.Enrolled {
		return nil, keystore.ErrNotEnrolled
	}
	labels := make([]string, len(s.Authenticators))
	for i, a := range s.Authenticators {
		labels[i] = a.Label
	}
	return labels, nil
}

func (d *dbBackend) Status(user string) (account.Status, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	return d.admin.Status(ctx, user)
}

func (d *dbBackend) Users() ([]string, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	return d.admin.Users(ctx)
}

// Save is account.Manager.Save against the database: the confirmation
// code is checked here (under the database's window), and its step is
// recorded as the new authenticator's last step.
func (d *dbBackend) Save(en *account.Enrollment, opts account.SaveOptions) ([]string, error) {
	label := en.Label
	if label == "" {
		label = keystore.DefaultLabel
	}
	au := keystore.Authenticator{Label: label, Secret: en.Secret, Params: en.Params, Created: time.Now()}
	var step int64
	if opts.Confirm != "" {
		m := account.Manager{Config: *d.cfg}
		var ok bool
		if step, ok = m.CheckCode(en, opts.Confirm); !ok {
			return nil, account.ErrCodeMismatch
		}
	}
	ctx, cancel := d.ctx()
	defer cancel()
	if opts.Add {
		err := d.admin.AddAuthenticator(ctx, en.User, au, step)
		if !errors.Is(err, keystore.ErrNotEnrolled) {
			return nil, err
		}
		// Not enrolled (any more): a first enrollment, as in the
		// files backend.
	}
	codes, hashes, err := backupcode.NewSet(d.cfg.BackupCodes)
	if err != nil {
		return nil, err
	}
	if err := d.admin.SetEnrollment(ctx, en.User, au, step, hashes, opts.Replace); err != nil {
		return nil, err
	}
	return codes, nil
}

func (d *dbBackend) RemoveAuthenticator(user, label string) (int, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	return d.admin.RemoveAuthenticator(ctx, user, label)
}

func (d *dbBackend) Reset(user string) error {
	ctx, cancel := d.ctx()
	defer cancel()
	return d.admin.Reset(ctx, user)
}

func (d *dbBackend) Unlock(user string) error {
	ctx, cancel := d.ctx()
	defer cancel()
	return d.admin.Unlock(ctx, user)
}

func (d *dbBackend) NewBackupCodes(user string) ([]string, error) {
	codes, hashes, err := backupcode.NewSet(d.cfg.BackupCodes)
	if err != nil {
		return nil, err
	}
	ctx, cancel := d.ctx()
	defer cancel()
	if err := d.admin.NewBackupHashes(ctx, user, hashes); err != nil {
		return nil, err
	}
	return codes, nil
}

// dbCommands take --dsn: with it they act on the database.
var dbCommands = map[string]bool{
	"enroll": true, "status": true, "list": true, "unlock": true, "reset": true,
	"backup-codes": true, "import-google-authenticator": true, "report": true, "db": true,
}

// takeDSN removes --dsn DSN (or --dsn=DSN) from args, up to a "--".
func takeDSN(args []string) (dsn string, given bool, rest []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "dsn" {
			rest = append(rest, a)
			continue
		}
		if given {
			return "", false, nil, usageErr("--dsn given twice")
		}
		given = true
		if !hasValue {
			if i+1 == len(args) {
				return "", false, nil, usageErr("--dsn needs a value: a libpq DSN or URL, such as \"host=db1 dbname=otpgate user=admin\" or \"service=otpgate\"")
			}
			i++
			value = args[i]
		}
		dsn = value
	}
	return dsn, given, rest, nil
}

// openDB connects with an administrator's DSN, refusing one that holds a
// password (it would show in ps and the shell's history).
func openDB(dsn string) (DBAdmin, string, error) {
	if config.DSNHasPassword(dsn) {
		return nil, "", withHint(usageErr("--dsn holds a password, which every user sees in ps and which stays in the shell's history"),
			"put it in ~/.pgpass (mode 0600) or a passfile named with passfile= in the DSN, or use service=NAME and ~/.pg_service.conf")
	}
	name := dbName(dsn)
	ctx, cancel := context.WithTimeout(context.Background(), dbOpTimeout)
	defer cancel()
	a, err := OpenDB(ctx, dsn)
	if err != nil {
		return nil, "", fmt.Errorf("%w (--dsn %s)", err, name)
	}
	return a, name, nil
}

// dbName names the database of dsn for people: "host/dbname", with
// "local" for a Unix socket or no host (PGHOST and the defaults decide
// then).
func dbName(dsn string) string {
	keys, err := config.DSNSettings(dsn)
	if err != nil {
		return "?"
	}
	host, _, _ := strings.Cut(keys["host"], ",")
	if host == "" && keys["service"] != "" && keys["dbname"] == "" {
		return "service " + keys["service"]
	}
	if host == "" || strings.HasPrefix(host, "/") {
		host = "local"
	}
	db := keys["dbname"]
	if db == "" {
		db = keys["user"]
	}
	return host + "/" + db
}

// usePolicy puts the database's policy in cfg: the window decides
// whether a confirmation code matches, and max_failures and
// lock_duration are what status and the notes report.
func (d *dbBackend) usePolicy() error {
	ctx, cancel := d.ctx()
	defer cancel()
	v, err := d.admin.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if v == 0 {
		return withHint(usageErr("the database %s has no otpgate schema", d.name), "run otpgate db init --dsn ADMIN_DSN first")
	}
	p, err := d.admin.Policy(ctx)
	if err != nil {
		return err
	}
	d.cfg.Window, d.cfg.MaxFailures, d.cfg.LockDuration = p.Window, p.MaxFailures, p.LockDuration
	return nil
}
