package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/nss"
	"github.com/otpgate/otpgate/internal/policy"
	rpt "github.com/otpgate/otpgate/internal/report"
)

const reportHelp = `usage: otpgate report [--json] [--dsn ADMIN_DSN]

Lists every account the policy requires a code of and every enrolled
account: whether a code is required and why (the rule of [policy]),
enrolled or not, the authenticators, when enrolled, the last accepted
code, consecutive failures, until when locked ("-": not locked), backup
codes left, and for accounts still without a code the days left before
[enroll] deadline. Accounts come from the passwd database (getent
passwd): uid 0 and UID_MIN to UID_MAX of /etc/login.defs, with a login
shell. Exempt accounts without a code are left out. With --dsn the
enrollments and their state come from the PostgreSQL database (run
through otpgate-db), the accounts and the policy from this host.

exit status: 0, or 2 when an account's files or the policy could not be
read (its row says why; the other rows are complete)
`

// loginDefs is where useradd's uid range for people is.
const loginDefs = "/etc/login.defs"

func runReport(e *env, args []string) error {
	fs := newFlags("report")
	asJSON := fs.Bool("json", false, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	in, err := reportInputs(e)
	if err != nil {
		return err
	}
	rows, firstErr := rpt.Build(in)
	if *asJSON {
		if rows == nil {
			rows = []rpt.Row{}
		}
		if err := printJSON(e.stdout, rows); err != nil {
			return err
		}
		return firstErr
	}
	printReport(e, rows)
	return firstErr
}

// reportInputs gathers what a report is built from on this host.
func reportInputs(e *env) (rpt.Inputs, error) {
	users, err := nss.Default.AllUsers()
	if err != nil {
		return rpt.Inputs{}, fmt.Errorf("listing accounts (getent passwd): %w", err)
	}
	lo, hi, err := rpt.UIDRange(loginDefs)
	if err != nil {
		return rpt.Inputs{}, fmt.Errorf("reading %s: %w", loginDefs, err)
	}
	// The files store, or with --dsn the database.
	enrolled, err := e.be.Users()
	if err != nil {
		return rpt.Inputs{}, err
	}
	in := rpt.Inputs{
		Enrolled: enrolled,
		UIDMin:   lo,
		UIDMax:   hi,
		Status:   e.be.Status,
		Required: func(user string) (bool, string, error) {
			d, err := policy.Decide(e.cfg.Policy, nss.Default, user)
			return d.Required, d.Rule, err
		},
	}
	for _, u := range users {
		in.Accounts = append(in.Accounts, rpt.Account{Name: u.Name, UID: u.UID, Shell: u.Shell})
	}
	if !e.cfg.Deadline.IsZero() {
		loc, err := policy.HostZone(policy.LocaltimePath)
		if err != nil {
			return rpt.Inputs{}, err
		}
		in.DaysLeft = func() int { return policy.DaysLeft(e.cfg.Deadline, time.Now(), loc) }
	}
	return in, nil
}

// reportRow is one line of report; the header names every column.
const reportRow = "%-16s %-8s %-24s %-8s %-25s %-25s %-8s %-25s %-6s %-9s %s\n"

func printReport(e *env, rows []rpt.Row) {
	fmt.Fprintf(e.stdout, reportRow, "USER", "REQUIRED", "WHY", "ENROLLED", "CREATED", "LAST-CODE", "FAILURES", "LOCKED-UNTIL", "BACKUP", "DAYS-LEFT", "AUTHENTICATORS")
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(e.stdout, "%-16s error: %s\n", r.User, r.Error)
			continue
		}
		yes := func(b bool) string {
			if b {
				return "yes"
			}
			return "no"
		}
		created, last, lock, backup, labels := "-", "never", "-", "-", "-"
		if r.Enrolled {
			created = stamp(r.Created)
			backup = strconv.Itoa(r.BackupLeft)
			var ls []string
			for _, a := range r.Authenticators {
				ls = append(ls, a.Label)
			}
			labels = strings.Join(ls, ",")
		}
		if !r.LastSuccess.IsZero() {
			last = stamp(r.LastSuccess)
		}
		if r.Locked {
			lock = stamp(r.LockedUntil)
		}
		days := "-"
		if r.DaysLeft != nil {
			days = strconv.Itoa(*r.DaysLeft)
			if *r.DaysLeft <= 0 {
				days = "passed"
			}
		}
		fmt.Fprintf(e.stdout, reportRow, r.User, yes(r.Required), r.Why, yes(r.Enrolled), created, last, strconv.Itoa(r.Failures), lock, backup, days, labels)
	}
}
