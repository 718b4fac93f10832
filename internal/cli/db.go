package cli

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/authlog"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/keystore"
)

const dbHelp = `usage: otpgate db init --dsn ADMIN_DSN
       otpgate db policy --dsn ADMIN_DSN [--window N] [--max-failures N] [--lock-duration D]
       otpgate db import-local --dsn ADMIN_DSN (--user NAME | --all) [--replace]
       otpgate db export-local --dsn ADMIN_DSN (--user NAME | --all) [--replace]

The PostgreSQL backend (docs/postgres.md). ADMIN_DSN is a libpq DSN or
URL of an administrator of the database (a superuser for init, a member
of otpgate_owner for the rest), without a password: ~/.pgpass,
passfile= in the DSN, or service=NAME with ~/.pg_service.conf give it.

  init          create the roles otpgate_owner and otpgate_host, the schema
                otpgate and its functions; run again, it changes nothing
                and keeps every user and the policy. Prints the next steps
  policy        show the fleet's window and lockout, which the database
                decides for every host (a host's [lockout] and window do
                not apply to it); with options, set them
  import-local  copy users of this host's files store into the database:
                every authenticator, the backup codes, the failures, lock
                and last steps. The local files are left alone
  export-local  copy users from the database into this host's files store
                (for leaving the database, or a local break-glass secret)

  --user NAME   one user; --all: every user of the store (import) or of
                the database (export)
  --replace     import over a user enrolled in the database, or export
                over a user of the files store (default: refused)

exit status: 0 done, 1 a user refused, 2 usage or database error
`

func runDB(e *env, args []string) error {
	if len(args) == 0 {
		return withHint(usageErr("db needs a command: init, policy, import-local or export-local"), "run otpgate db --help")
	}
	if e.db == nil {
		return withHint(usageErr("db %s needs --dsn ADMIN_DSN", args[0]), "run otpgate db --help")
	}
	switch args[0] {
	case "init":
		return runDBInit(e, args[1:])
	case "policy":
		return runDBPolicy(e, args[1:])
	case "import-local":
		return runDBMove(e, "import-local", args[1:])
	case "export-local":
		return runDBMove(e, "export-local", args[1:])
	}
	return withHint(usageErr("db: unknown command %q", args[0]), "run otpgate db --help")
}

func runDBInit(e *env, args []string) error {
	fs := newFlags("db init")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := e.db.ctx()
	defer cancel()
	before, err := e.db.admin.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if err := e.db.admin.Init(ctx); err != nil {
		return err
	}
	pol, err := e.db.admin.Policy(ctx)
	if err != nil {
		return err
	}
	known := e.db.admin.KnownVersion()
	adminLog(e, "db-init", "-", "database", e.db.name, "schema_version", strconv.Itoa(known))
	w := e.stdout
	if before == known {
		fmt.Fprintf(w, "%s: otpgate schema version %d is in place; nothing changed (users and policy kept)\n", e.db.name, before)
	} else {
		fmt.Fprintf(w, "%s: otpgate schema version %d created\n", e.db.name, known)
	}
	fmt.Fprintf(w, "roles: %s (owns the schema, NOLOGIN), %s (hosts: may only call the verification and status functions, NOLOGIN)\n",
		dbOwnerRole, dbHostRole)
	fmt.Fprintf(w, "policy: window %d, max_failures %d, lock_duration %s (otpgate db policy changes it)\n", pol.Window, pol.MaxFailures, pol.LockDuration)
	host, dbname := "DBHOST", "otpgate"
	if keys, err := config.DSNSettings(e.db.dsn); err == nil {
		if h, _, _ := strings.Cut(keys["host"], ","); h != "" && h[0] != '/' {
			host = h
		}
		if keys["dbname"] != "" {
			dbname = keys["dbname"]
		}
	}
	fmt.Fprintf(w, `
next steps:
  1. a login role for each host (or one for the fleet), as a superuser in psql:
       CREATE ROLE otpgate_web1 LOGIN PASSWORD 'a long random password';
       GRANT %[1]s TO otpgate_web1;
     and let it in through pg_hba.conf (hostssl %[3]s otpgate_web1 ... scram-sha-256).
  2. on the host, /etc/otpgate/pgpass (root:root, mode 0600):
       %[2]s:5432:%[3]s:otpgate_web1:the password
     and in /etc/otpgate/config.toml:
       backend = "postgres"
       [postgres]
       dsn = "host=%[2]s dbname=%[3]s user=otpgate_web1 sslmode=verify-full passfile=/etc/otpgate/pgpass"
  3. on a host with enrolled users: otpgate db import-local --dsn ADMIN_DSN --all
  4. on every host: otpgate doctor (checks the DSN, the passfile and that the role reads no secret)
`, dbHostRole, host, dbname)
	return nil
}

const policyHelpHint = "run otpgate db --help"

func runDBPolicy(e *env, args []string) error {
	fs := newFlags("db policy")
	window := fs.Int("window", 0, "")
	maxFailures := fs.Int("max-failures", 0, "")
	lockDuration := fs.Duration("lock-duration", 0, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := e.db.ctx()
	defer cancel()
	pol, err := e.db.admin.Policy(ctx)
	if err != nil {
		return withHint(err, "run otpgate db init --dsn ADMIN_DSN first if the database has no otpgate schema")
	}
	set := false
	fs.Visit(func(f *flag.Flag) {
		set = true
		switch f.Name {
		case "window":
			pol.Window = *window
		case "max-failures":
			pol.MaxFailures = *maxFailures
		case "lock-duration":
			pol.LockDuration = *lockDuration
		}
	})
	if set {
		if err := e.db.admin.SetPolicy(ctx, pol); err != nil {
			return withHint(usageErr("db policy: %v", err), policyHelpHint)
		}
		adminLog(e, "db-policy", "-", "database", e.db.name, "window", strconv.Itoa(pol.Window),
			"max_failures", strconv.Itoa(pol.MaxFailures), "lock_duration", pol.LockDuration.String())
	}
	fmt.Fprintf(e.stdout, "database: %s\nwindow: %d\nmax_failures: %d\nlock_duration: %s\n", e.db.name, pol.Window, pol.MaxFailures, pol.LockDuration)
	if set {
		fmt.Fprintln(e.stdout, "set: every host applies it from its next attempt")
	}
	return nil
}

// runDBMove is import-local and export-local.
func runDBMove(e *env, op string, args []string) error {
	fs := newFlags("db " + op)
	name := fs.String("user", "", "")
	all := fs.Bool("all", false, "")
	replace := fs.Bool("replace", false, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	hint := "run otpgate db --help"
	switch {
	case *all && *name != "":
		return withHint(usageErr("db %s: --user and --all exclude each other", op), hint)
	case !*all && *name == "":
		return withHint(usageErr("db %s needs --user NAME or --all", op), hint)
	}
	if os.Geteuid() != 0 {
		return withHint(deniedErr("db %s needs root: it reads and writes this host's store %s", op, e.cfg.Store), "run it with sudo")
	}
	var users []string
	var err error
	switch {
	case !*all:
		var u string
		if u, err = requireUser("db "+op, *name); err != nil {
			return err
		}
		users = []string{u}
	case op == "import-local":
		users, err = e.store.Users()
	default:
		users, err = e.db.Users()
	}
	if err != nil {
		return err
	}
	refused := 0
	for _, u := range users {
		var msg string
		var err error
		if op == "import-local" {
			msg, err = importLocal(e, u, *replace)
		} else {
			msg, err = exportLocal(e, u, *replace)
		}
		if err != nil {
			refused++
			fmt.Fprintf(e.stdout, "%s: not %sed: %s\n", u, op[:6], oneLine(err.Error()))
			continue
		}
		fmt.Fprintf(e.stdout, "%s: %s\n", u, msg)
	}
	if *all && len(users) == 0 {
		from := "the store " + e.cfg.Store
		if op == "export-local" {
			from = "the database " + e.db.name
		}
		fmt.Fprintf(e.stdout, "no enrolled user in %s; nothing to do\n", from)
	}
	if op == "import-local" && len(users) > refused {
		fmt.Fprintf(e.stdout, `
The users' files in %[1]s are left in place. With backend = "postgres"
this host reads them only when the database does not answer and
on_unavailable = "local". Keep the file of an administrator who must be
able to log in then; remove the others (otpgate reset --user NAME, without
--dsn): a local copy of a secret has its own replay and lockout state,
apart from the fleet's.
`, e.cfg.Store)
	}
	switch {
	case refused == 0:
		return nil
	case len(users) == 1:
		return deniedErr("%s was not %sed", users[0], op[:6])
	}
	return deniedErr("%d of %d users were not %sed; see above", refused, len(users), op[:6])
}

// importLocal copies one user of the files store into the database,
// holding the user's lock so no local login changes it meanwhile.
func importLocal(e *env, user string, replace bool) (string, error) {
	lock, err := e.store.Lock(user, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer lock.Unlock()
	u, err := lock.ReadUser()
	if errors.Is(err, keystore.ErrNotEnrolled) {
		return "", fmt.Errorf("not enrolled in %s", e.cfg.Store)
	}
	if err != nil {
		return "", err
	}
	st, err := lock.ReadState()
	if err != nil {
		return "", err
	}
	ctx, cancel := e.db.ctx()
	defer cancel()
	old, err := e.db.admin.Status(ctx, user)
	if err != nil {
		return "", err
	}
	if old.Enrolled && !replace {
		return "", fmt.Errorf("already enrolled in the database %s; nothing was changed (add --replace to import over it)", e.db.name)
	}
	if err := e.db.admin.ImportUser(ctx, user, u, st, replace); err != nil {
		return "", err
	}
	e.log.Info(authlog.Fields("user", user, "action", "db-import-local", "by", whoami(), "database", e.db.name,
		"authenticators", strconv.Itoa(len(u.Authenticators)), "replaced", strconv.FormatBool(old.Enrolled)))
	msg := fmt.Sprintf("imported into %s (%d authenticator%s, %d backup codes, %d failures", e.db.name,
		len(u.Authenticators), plural(len(u.Authenticators)), len(u.BackupHashes), st.Failures)
	if time.Now().Before(st.LockedUntil) {
		msg += ", locked until " + stamp(st.LockedUntil)
	}
	if old.Enrolled {
		msg += "; replaced the database's enrollment"
	}
	return msg + ")", nil
}

// exportLocal copies one user of the database into the files store.
func exportLocal(e *env, user string, replace bool) (string, error) {
	if err := keystore.ValidUser(user); err != nil {
		return "", err
	}
	lock, err := e.store.Lock(user, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer lock.Unlock()
	_, err = lock.ReadUser()
	switch {
	case err == nil && !replace:
		return "", fmt.Errorf("already enrolled in %s; nothing was changed (add --replace to export over it)", e.cfg.Store)
	case err != nil && !errors.Is(err, keystore.ErrNotEnrolled) && !replace:
		return "", err
	}
	replaced := err == nil
	ctx, cancel := e.db.ctx()
	defer cancel()
	u, st, err := e.db.admin.ExportUser(ctx, user)
	if err != nil {
		return "", err
	}
	if err := lock.WriteUser(u); err != nil {
		return "", err
	}
	if err := lock.WriteState(st); err != nil {
		return "", err
	}
	e.log.Info(authlog.Fields("user", user, "action", "db-export-local", "by", whoami(), "database", e.db.name,
		"authenticators", strconv.Itoa(len(u.Authenticators)), "replaced", strconv.FormatBool(replaced)))
	msg := fmt.Sprintf("exported to %s (%d authenticator%s, %d backup codes, %d failures", e.cfg.Store,
		len(u.Authenticators), plural(len(u.Authenticators)), len(u.BackupHashes), st.Failures)
	if replaced {
		msg += "; replaced the local enrollment"
	}
	return msg + ")", nil
}
