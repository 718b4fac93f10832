package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/keystore"
)

// The otpgate command does not link the PostgreSQL client: it would make
// every start of otpgate (sshcheck runs at each ForceCommand login)
// slower. The database commands live in otpgate-db, the same command
// line with the client registered (internal/cli/pgcli sets OpenDB);
// otpgate runs it for db, --dsn, and doctor on a postgres host.

// DBAdmin is an administrator's connection to the otpgate database, as
// the command line uses it (pgstore.Admin behind it). Its errors wrap
// account's and keystore's, as the files store's do.
type DBAdmin interface {
	Close()
	// KnownVersion is the schema version this otpgate applies.
	KnownVersion() int
	// SchemaVersion is the database's, 0 before Init.
	SchemaVersion(ctx context.Context) (int, error)
	Init(ctx context.Context) error
	Policy(ctx context.Context) (DBPolicy, error)
	// SetPolicy checks p and sets it.
	SetPolicy(ctx context.Context, p DBPolicy) error
	Users(ctx context.Context) ([]string, error)
	Status(ctx context.Context, user string) (account.Status, error)
	// SetEnrollment makes au the user's one authenticator, with lastStep
	// and backup code hashes; account.ErrEnrolled unless replace.
	SetEnrollment(ctx context.Context, user string, au keystore.Authenticator, lastStep int64, hashes []string, replace bool) error
	AddAuthenticator(ctx context.Context, user string, au keystore.Authenticator, lastStep int64) error
	RemoveAuthenticator(ctx context.Context, user, label string) (int, error)
	Reset(ctx context.Context, user string) error
	Unlock(ctx context.Context, user string) error
	NewBackupHashes(ctx context.Context, user string, hashes []string) error
	ImportUser(ctx context.Context, user string, u keystore.User, st keystore.State, replace bool) error
	ExportUser(ctx context.Context, user string) (keystore.User, keystore.State, error)
}

// DBPolicy is the fleet's policy stored in the database.
type DBPolicy struct {
	Window       int
	MaxFailures  int
	LockDuration time.Duration
}

// OpenDB connects to the database with an administrator's DSN. It is nil
// in the otpgate command, which then runs DBProgram.
var OpenDB func(ctx context.Context, dsn string) (DBAdmin, error)

// PostgresDoctor reports whether doctor's database checks are linked
// in (internal/doctor/pgprobe sets doctor.PostgresProbe); pgcli sets it.
var PostgresDoctor bool

// DBProgram is otpgate-db, which otpgate runs for the database commands;
// make install sets it (-X) to where it puts it, next to the helper.
var DBProgram = "/usr/local/libexec/otpgate/otpgate-db"

// The roles db init creates (pgstore.OwnerRole, pgstore.HostRole; pgcli's
// tests check they agree).
const (
	dbOwnerRole = "otpgate_owner"
	dbHostRole  = "otpgate_host"
)

// execDB replaces this process with DBProgram and the same arguments; it
// returns only on an error. DBProgram must be an absolute path to a
// regular file owned by root and writable by root alone: root runs it.
func execDB(args []string) error {
	if !filepath.IsAbs(DBProgram) {
		return fmt.Errorf("otpgate-db: %q is not an absolute path (set at build time)", DBProgram)
	}
	st, err := os.Lstat(DBProgram)
	if errors.Is(err, os.ErrNotExist) {
		return withHint(usageErr("the database commands are in %s, which is not installed", DBProgram),
			"install otpgate completely (make install, or the otpgate package)")
	}
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !st.Mode().IsRegular() || !ok || sys.Uid != 0 || st.Mode().Perm()&0o022 != 0 {
		return withHint(usageErr("%s is not a regular file owned by root and writable by root alone; otpgate does not run it", DBProgram),
			"chown root:root "+DBProgram+" && chmod 755 "+DBProgram)
	}
	if self, err := os.Stat("/proc/self/exe"); err == nil && os.SameFile(self, st) {
		// An otpgate installed as otpgate-db would run itself forever.
		return usageErr("%s is this otpgate, built without the database; install otpgate-db there", DBProgram)
	}
	return syscall.Exec(DBProgram, append([]string{DBProgram}, args...), os.Environ())
}
