// Package cli is the otpgate command line: enrollment with a QR code,
// status, backup codes, verify, and the admin commands.
package cli

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/authlog"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/nss"
	"github.com/otpgate/otpgate/internal/version"
	"github.com/otpgate/otpgate/keystore"
)

const usage = `otpgate: a TOTP second factor for Linux logins

usage: otpgate [--config PATH] COMMAND [options]

commands:
  enroll        make a secret, show it as a QR code, print backup codes
  status        show enrollment, backup codes left, failures and lock
  backup-codes  replace the backup codes with a new set
  verify        check a code read from standard input (exit 0 accepted, 1 denied)
  unlock        clear a user's failure count and lock
  reset         remove a user's enrollment (lost phone); failures are kept
  list          list enrolled users
  report        every account that must use a code, and where each stands
  import-google-authenticator
                take users over from ~/.google_authenticator files
  db            the PostgreSQL backend: init, policy, import-local, export-local
  doctor        audit sshd, PAM stacks, files and enrollment on this host
  sshcheck      sshd ForceCommand: ask for a code, then run the session
  version       print the version of otpgate

options:
  --config PATH  policy file (default /etc/otpgate/config.toml)
  --version      print the version of otpgate

enroll, status, list, unlock, reset, backup-codes, report and
import-google-authenticator take --dsn ADMIN_DSN: they then act on the
PostgreSQL database (docs/postgres.md) instead of this host's store. The
DSN holds no password: ~/.pgpass, passfile= or service= give it.

Run otpgate COMMAND --help for the options of a command.

exit status: 0 success, 1 denied or refused, 2 usage, config or store error
`

// env is what a command runs with.
type env struct {
	stdin          *bufio.Reader
	stdout, stderr io.Writer
	configPath     string
	cfg            config.Config
	store          *keystore.Store
	mgr            *account.Manager
	log            *authlog.Logger
	// be is where the administrator's commands act: the files store, or
	// db when --dsn was given.
	be backend
	db *dbBackend
}

type command struct {
	run  func(e *env, args []string) error
	help string
}

var commands = map[string]command{
	"enroll":       {runEnroll, enrollHelp},
	"status":       {runStatus, statusHelp},
	"backup-codes": {runBackupCodes, backupHelp},
	"verify":       {runVerify, verifyHelp},
	"unlock":       {runUnlock, unlockHelp},
	"reset":        {runReset, resetHelp},
	"list":         {runList, listHelp},
	"report":       {runReport, reportHelp},
	"doctor":       {runDoctor, doctorHelp},
	"sshcheck":     {runSSHCheck, sshcheckHelp},
	"db":           {runDB, dbHelp},

	"import-google-authenticator": {runImportGA, importGAHelp},
}

// Main runs otpgate with args (without the program name) and returns the
// exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("otpgate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configPath := fs.String("config", config.DefaultPath, "")
	help := fs.Bool("help", false, "")
	fs.BoolVar(help, "h", false, "")
	showVersion := fs.Bool("version", false, "")
	if err := fs.Parse(args); err != nil {
		return report(stderr, withHint(usageErr("%v", err), "run otpgate --help"))
	}
	if *showVersion {
		return printVersion(stdout)
	}
	if *help || fs.NArg() == 0 {
		if *help {
			fmt.Fprint(stdout, usage)
			return exitOK
		}
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	if name == "version" { // needs no config, store or root
		return runVersion(stdout, stderr, rest)
	}
	cmd, ok := commands[name]
	if !ok {
		return report(stderr, withHint(usageErr("unknown command %q", name), "run otpgate --help for the list"))
	}
	for _, a := range rest {
		if a == "--help" || a == "-help" || a == "-h" {
			fmt.Fprint(stdout, cmd.help)
			return exitOK
		}
	}
	e := &env{stdin: bufio.NewReader(stdin), stdout: stdout, stderr: stderr, configPath: *configPath}
	configGiven := false
	fs.Visit(func(f *flag.Flag) { configGiven = configGiven || f.Name == "config" })
	if name == "sshcheck" { // as the logged-in user, through the setuid helper, which reads the config
		return report(stderr, cmd.run(e, rest))
	}
	var dsn string
	dsnGiven := false
	if dbCommands[name] {
		var err error
		if dsn, dsnGiven, rest, err = takeDSN(rest); err != nil {
			return report(stderr, withHint(err, "run otpgate "+name+" --help"))
		}
	}
	if dsnGiven && config.DSNHasPassword(dsn) {
		return report(stderr, withHint(usageErr("--dsn holds a password, which every user sees in ps and which stays in the shell's history"),
			"put it in ~/.pgpass (mode 0600) or a passfile named with passfile= in the DSN, or use service=NAME and ~/.pg_service.conf"))
	}
	if dsnGiven && OpenDB == nil { // the otpgate command: the database is otpgate-db's
		return report(stderr, execDB(args))
	}
	// With --dsn the database's rights decide, not this host's store.
	if os.Geteuid() != 0 && !configGiven && !dsnGiven {
		if selfServiceCommands[name] {
			return report(stderr, runSelfService(e, stdin, name, rest))
		}
		return report(stderr, withHint(deniedErr("otpgate %s needs root to reach the store in %s", name, config.DefaultStore),
			"run it with sudo"))
	}
	cfg, err := config.Load(*configPath)
	if err != nil && dsnGiven && !configGiven && os.Geteuid() != 0 && errors.Is(err, os.ErrPermission) {
		// A database administrator who is not root (the postgres user on
		// the database server) on a host whose config is root's alone:
		// the database decides what matters, this host's defaults do for
		// the rest (issuer, code parameters, backup codes).
		fmt.Fprintf(stderr, "otpgate: note: %v; using the defaults for this host's settings\n", err)
		cfg, err = config.Default(), nil
	}
	if err != nil {
		return report(stderr, err)
	}
	if name == "doctor" && cfg.Backend == config.BackendPostgres && !PostgresDoctor {
		return report(stderr, execDB(args))
	}
	e.cfg = cfg
	e.store = keystore.New(cfg.Store)
	e.mgr = &account.Manager{Store: e.store, Config: cfg}
	e.be = filesBackend{e}
	if dsnGiven {
		admin, dbname, err := openDB(dsn)
		if err != nil {
			return report(stderr, err)
		}
		defer admin.Close()
		e.db = &dbBackend{admin: admin, name: dbname, dsn: dsn, cfg: &e.cfg}
		e.be = e.db
		if name != "db" { // db init makes the schema; db's commands read the policy themselves
			if err := e.db.usePolicy(); err != nil {
				return report(stderr, err)
			}
			e.mgr.Config = e.cfg
		}
	} else if name != "db" && cfg.Backend == config.BackendPostgres && name != "doctor" {
		fmt.Fprintf(stderr, "otpgate: note: backend is postgres in %s; this acts on this host's files store (the break-glass of on_unavailable = \"local\"); add --dsn ADMIN_DSN to act on the database\n", *configPath)
	}
	e.log = authlog.Open("otpgate", stderr) // no syslog (a container): the line goes to standard error
	defer e.log.Close()
	return report(stderr, cmd.run(e, rest))
}

const versionHelp = `usage: otpgate version

Prints the version of otpgate, as the build set it (the package version,
or git describe of the tree it was built from), the same as otpgate
--version.
`

func runVersion(stdout, stderr io.Writer, args []string) int {
	for _, a := range args {
		if a == "--help" || a == "-help" || a == "-h" {
			fmt.Fprint(stdout, versionHelp)
			return exitOK
		}
	}
	if len(args) > 0 {
		return report(stderr, withHint(usageErr("version: unexpected argument %q", args[0]), "run otpgate version --help"))
	}
	return printVersion(stdout)
}

func printVersion(stdout io.Writer) int {
	fmt.Fprintf(stdout, "otpgate %s\n", version.String())
	return exitOK
}

// newFlags returns a flag set for a command whose errors come back to the
// caller instead of being printed.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return withHint(usageErr("%s: %v", fs.Name(), err), "run otpgate "+fs.Name()+" --help")
	}
	if fs.NArg() > 0 {
		return withHint(usageErr("%s: unexpected argument %q", fs.Name(), fs.Arg(0)), "run otpgate "+fs.Name()+" --help")
	}
	return nil
}

// targetUser returns the --user value, or the name of the invoking user.
func targetUser(name string) (string, error) {
	if name == "" {
		u, err := user.Current()
		if err == nil {
			name = u.Username
		} else if nu, nerr := nss.Default.LookupUID(os.Getuid()); nerr == nil {
			// Not in /etc/passwd (all a static os/user reads): an
			// LDAP or SSSD account, found through NSS.
			name = nu.Name
		} else {
			return "", usageErr("cannot tell who you are (%v; %v); pass --user NAME", err, nerr)
		}
	}
	if keystore.ValidUser(name) != nil {
		return "", usageErr("invalid user name; a name is 1 to %d bytes, without '/', control characters or a leading '.'", keystore.MaxUserLen)
	}
	return name, nil
}

// requireUser is targetUser for commands where --user is mandatory.
func requireUser(fsName, name string) (string, error) {
	if name == "" {
		return "", withHint(usageErr("%s needs --user NAME", fsName), "run otpgate "+fsName+" --help")
	}
	return targetUser(name)
}

// whoami names the person running the command, for admin log lines.
func whoami() string {
	if u, err := user.LookupId(fmt.Sprint(os.Getuid())); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid=%d", os.Getuid())
}

func adminLog(e *env, action, user string, extra ...string) {
	if e.db != nil && !slices.Contains(extra, "database") {
		extra = append(extra, "database", e.db.name)
	}
	e.log.Info(authlog.Fields(append([]string{"user", user, "action", action, "by", whoami()}, extra...)...))
}
