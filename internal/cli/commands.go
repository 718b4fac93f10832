package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/verify"
	"github.com/otpgate/otpgate/keystore"
)

const statusHelp = `usage: otpgate status [--user NAME] [--json] [--dsn ADMIN_DSN]

Shows whether the account is enrolled and with which authenticators
(label, when it was added, code parameters), how many backup codes are
left, the failure count and any lock. Never shows a secret.

  --dsn ADMIN_DSN act on the PostgreSQL database instead of this host's
                  store (otpgate db --help; docs/postgres.md)
`

func runStatus(e *env, args []string) error {
	fs := newFlags("status")
	name := fs.String("user", "", "")
	asJSON := fs.Bool("json", false, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	user, err := targetUser(*name)
	if err != nil {
		return err
	}
	s, err := e.be.Status(user)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, s)
	}
	printStatus(e, s)
	return nil
}

func printStatus(e *env, s account.Status) {
	w := e.stdout
	if !s.Enrolled {
		fmt.Fprintf(w, "%s: not enrolled\n", s.User)
	} else {
		n := len(s.Authenticators)
		fmt.Fprintf(w, "%s: enrolled, %d authenticator%s\n", s.User, n, plural(n))
		width := 0
		for _, a := range s.Authenticators {
			width = max(width, len(a.Label))
		}
		for _, a := range s.Authenticators {
			fmt.Fprintf(w, "  %-*s created %s (%s, %d digits, %d s)\n", width, a.Label, stamp(a.Created), a.Algorithm, a.Digits, a.Period)
		}
		fmt.Fprintf(w, "backup codes left: %d\n", s.BackupLeft)
	}
	fmt.Fprintf(w, "failures: %d of %d\n", s.Failures, e.cfg.MaxFailures)
	if s.Locked {
		fmt.Fprintf(w, "locked until %s\n", stamp(s.LockedUntil))
	}
	if !s.LastSuccess.IsZero() {
		fmt.Fprintf(w, "last accepted code: %s\n", stamp(s.LastSuccess))
	}
	if e.db != nil {
		fmt.Fprintf(w, "backend: postgres (%s)\n", e.db.name)
	}
}

const backupHelp = `usage: otpgate backup-codes [--user NAME] [--json] [--dsn ADMIN_DSN]

Makes a new set of backup codes and prints it once. The old codes stop
working. The failure count is not reset.

  --dsn ADMIN_DSN act on the PostgreSQL database instead of this host's
                  store (otpgate db --help; docs/postgres.md)
`

func runBackupCodes(e *env, args []string) error {
	fs := newFlags("backup-codes")
	name := fs.String("user", "", "")
	asJSON := fs.Bool("json", false, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	user, err := targetUser(*name)
	if err != nil {
		return err
	}
	codes, err := e.be.NewBackupCodes(user)
	if errors.Is(err, keystore.ErrNotEnrolled) {
		return withHint(deniedErr("%s is not enrolled", user), "run otpgate enroll first")
	}
	if err != nil {
		return err
	}
	adminLog(e, "backup-codes", user)
	if *asJSON {
		return printJSON(e.stdout, struct {
			User        string   `json:"user"`
			BackupCodes []string `json:"backup_codes"`
		}{user, codes})
	}
	printCodes(e.stdout, codes)
	return nil
}

const verifyHelp = `usage: otpgate verify --user NAME

Reads one code (a TOTP code or a backup code) from standard input and
checks it exactly as a login would: it counts against the lockout and a
code works once.

exit status: 0 accepted, 1 denied (wrong, replayed, locked, not
enrolled), 2 error (the login would be denied too)
`

func runVerify(e *env, args []string) error {
	fs := newFlags("verify")
	name := fs.String("user", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	user, err := requireUser("verify", *name)
	if err != nil {
		return err
	}
	code, err := readLine(e.stdin)
	if err != nil {
		return deniedErr("no code on standard input")
	}
	v := verify.Verifier{Store: e.store, Config: e.cfg, Log: e.log}
	r := v.Verify(verify.Request{User: user, Code: code, Service: "otpgate-verify"})
	switch r.Outcome {
	case verify.Accepted:
		fmt.Fprintf(e.stderr, "otpgate: accepted (%s)\n", r.Method)
		if r.Method == "backup" {
			fmt.Fprintf(e.stderr, "otpgate: %d backup codes left\n", r.BackupLeft)
		}
		return nil
	case verify.Locked:
		return deniedErr("%s is locked until %s after %d failures", user, stamp(r.LockedUntil), r.Failures)
	case verify.NotEnrolled:
		return withHint(deniedErr("%s is not enrolled", user), "run otpgate enroll --user "+user)
	case verify.Failed:
		return fmt.Errorf("denied: %w", r.Err)
	}
	msg := fmt.Sprintf("denied: %s (%d of %d failures)", strings.ReplaceAll(r.Reason, "-", " "), r.Failures, e.cfg.MaxFailures)
	if !r.LockedUntil.IsZero() {
		msg += fmt.Sprintf("; locked until %s", stamp(r.LockedUntil))
	}
	return deniedErr("%s", msg)
}

const unlockHelp = `usage: otpgate unlock --user NAME [--dsn ADMIN_DSN]

Clears the user's failure count and lock. Codes already used stay used.

  --dsn ADMIN_DSN act on the PostgreSQL database instead of this host's
                  store (otpgate db --help; docs/postgres.md)
`

func runUnlock(e *env, args []string) error {
	fs := newFlags("unlock")
	name := fs.String("user", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	user, err := requireUser("unlock", *name)
	if err != nil {
		return err
	}
	if err := e.be.Unlock(user); err != nil {
		return err
	}
	adminLog(e, "unlock", user)
	fmt.Fprintf(e.stdout, "%s unlocked\n", user)
	return nil
}

const resetHelp = `usage: otpgate reset --user NAME [--label LABEL] [--dsn ADMIN_DSN]

Removes the user's authenticators and backup codes, for a lost phone; the
user then enrolls again. The failure count and lock are kept (see unlock).

  --label LABEL   remove only that authenticator (otpgate status lists
                  them); the others and the backup codes keep working.
                  Removing the last one is a reset
  --dsn ADMIN_DSN act on the PostgreSQL database instead of this host's
                  store (otpgate db --help; docs/postgres.md)
`

func runReset(e *env, args []string) error {
	fs := newFlags("reset")
	name := fs.String("user", "", "")
	label := fs.String("label", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	user, err := requireUser("reset", *name)
	if err != nil {
		return err
	}
	if *label != "" {
		return resetLabel(e, user, *label)
	}
	err = e.be.Reset(user)
	if errors.Is(err, keystore.ErrNotEnrolled) {
		return deniedErr("%s is not enrolled; nothing to reset", user)
	}
	if err != nil {
		return err
	}
	adminLog(e, "reset", user)
	fmt.Fprintf(e.stdout, "%s reset: the secret and backup codes are removed\n", user)
	return nil
}

// resetLabel removes one authenticator.
func resetLabel(e *env, user, label string) error {
	if err := keystore.ValidLabel(label); err != nil {
		return usageErr("reset: --label: %v", err)
	}
	left, err := e.be.RemoveAuthenticator(user, label)
	switch {
	case errors.Is(err, keystore.ErrNotEnrolled):
		return deniedErr("%s is not enrolled; nothing to reset", user)
	case errors.Is(err, account.ErrNoLabel):
		return withHint(deniedErr("%v; nothing was changed", err), "otpgate status --user "+user+" lists the labels")
	case err != nil:
		return err
	}
	adminLog(e, "remove-authenticator", user, "authenticator", label)
	if left == 0 {
		fmt.Fprintf(e.stdout, "%s reset: %s was the last authenticator; it and the backup codes are removed\n", user, label)
		return nil
	}
	fmt.Fprintf(e.stdout, "%s: authenticator %s removed; %d left, and the backup codes keep working\n", user, label, left)
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

const listHelp = `usage: otpgate list [--json] [--dsn ADMIN_DSN]

Lists enrolled users under a header: backup codes left, consecutive
failures, until when the account is locked ("-": not locked), the last
accepted code and the authenticators (LABEL@CREATED, comma-separated),
times in RFC 3339 with the local zone.

  --dsn ADMIN_DSN act on the PostgreSQL database instead of this host's
                  store (otpgate db --help; docs/postgres.md)
`

func runList(e *env, args []string) error {
	fs := newFlags("list")
	asJSON := fs.Bool("json", false, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	users, err := e.be.Users()
	if err != nil {
		return err
	}
	// One damaged file must not hide every other user: report it in its
	// row, and exit 2 at the end.
	type row struct {
		account.Status
		Error string `json:"error,omitempty"`
	}
	all := []row{}
	var firstErr error
	for _, u := range users {
		s, err := e.be.Status(u)
		r := row{Status: s}
		if err != nil {
			r = row{Status: account.Status{User: u}, Error: err.Error()}
			if firstErr == nil {
				firstErr = err
			}
		}
		all = append(all, r)
	}
	if *asJSON {
		if err := printJSON(e.stdout, all); err != nil {
			return err
		}
		return firstErr
	}
	fmt.Fprintf(e.stdout, listRow, "USER", "BACKUP", "FAILURES", "LOCKED-UNTIL", "LAST-CODE", "AUTHENTICATORS")
	for _, s := range all {
		if s.Error != "" {
			fmt.Fprintf(e.stdout, "%-20s error: %s\n", s.User, s.Error)
			continue
		}
		lock := "-"
		if s.Locked {
			lock = stamp(s.LockedUntil)
		}
		last := "never"
		if !s.LastSuccess.IsZero() {
			last = stamp(s.LastSuccess)
		}
		auths := make([]string, len(s.Authenticators))
		for i, a := range s.Authenticators {
			auths[i] = a.Label + "@" + stamp(a.Created)
		}
		fmt.Fprintf(e.stdout, listRow, s.User, strconv.Itoa(s.BackupLeft), strconv.Itoa(s.Failures), lock, last, strings.Join(auths, ","))
	}
	return firstErr
}

// listRow is one line of list: a header names every column, "-" under
// LOCKED-UNTIL means not locked.
const listRow = "%-20s %-6s %-8s %-25s %-25s %s\n"

// stamp writes a time for people and scripts alike: RFC 3339 in local
// time, so it carries its zone.
func stamp(t time.Time) string {
	return t.Local().Format(time.RFC3339)
}
