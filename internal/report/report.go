// Package report builds otpgate report: one row for every account the
// policy requires a code of and every enrolled account, with what an
// administrator chases before an enrollment deadline (enrolled or not,
// authenticators, last success, failures, lock, backup codes left, days
// left).
//
// It only reads: the store through account.Manager.Status, the accounts
// and the policy through the functions the caller passes in.
package report

import (
	"bufio"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/otpgate/otpgate/internal/account"
)

// Account is a candidate from the passwd database: the accounts a policy
// could require a code of.
type Account struct {
	Name  string
	UID   int
	Shell string
}

// Inputs are what a report is built from.
type Inputs struct {
	Accounts []Account // every account of the passwd database (see Candidate)
	Enrolled []string  // every user with a file in the store
	UIDMin   int       // /etc/login.defs UID_MIN: the first uid of a person
	UIDMax   int       // /etc/login.defs UID_MAX
	// Status reads a user's enrollment and state.
	Status func(user string) (account.Status, error)
	// Required says whether the policy requires a code of user, and why
	// (the reason the log line gives, such as "everyone" or
	// "exempt-group:svc").
	Required func(user string) (bool, string, error)
	// DaysLeft returns the days left before the enrollment deadline
	// (policy.DaysLeft); nil when there is no deadline.
	DaysLeft func() int
}

// Row is one account. Error is set, and the rest may be empty, when the
// account's files or the policy could not be read: one damaged file must
// not hide the others.
type Row struct {
	account.Status
	Required bool   `json:"required"`
	Why      string `json:"why"`
	// DaysLeft is set for an account that must use a code and is not
	// enrolled, when there is a deadline: the calendar days left before
	// it; 0 means it has passed.
	DaysLeft *int   `json:"days_left,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Candidate reports whether a is an account people log in with: uid 0 or
// a uid from UID_MIN to UID_MAX, and a login shell. System accounts (a
// daemon's uid, nologin, false, sync) are left out.
func (in Inputs) Candidate(a Account) bool {
	if a.Shell == "" || !loginShell(a.Shell) {
		return false
	}
	return a.UID == 0 || (a.UID >= in.UIDMin && a.UID <= in.UIDMax)
}

func loginShell(shell string) bool {
	for _, s := range []string{"/nologin", "/false", "/sync", "/shutdown", "/halt"} {
		if len(shell) >= len(s) && shell[len(shell)-len(s):] == s {
			return false
		}
	}
	return true
}

// Build returns the rows, sorted by user name, and the first error met
// (its row carries it too).
func Build(in Inputs) ([]Row, error) {
	enrolled := map[string]bool{}
	for _, u := range in.Enrolled {
		enrolled[u] = true
	}
	names := map[string]bool{}
	for _, u := range in.Enrolled {
		names[u] = true
	}
	for _, a := range in.Accounts {
		if in.Candidate(a) {
			names[a.Name] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)

	rows := make([]Row, 0, len(sorted))
	var firstErr error
	keep := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	for _, n := range sorted {
		r := Row{Status: account.Status{User: n}}
		req, why, err := in.Required(n)
		if err != nil {
			r.Error = err.Error()
			keep(err)
			// Fail closed in the report too: an account whose policy
			// cannot be read is shown as required.
			req, why = true, "policy-error"
		}
		r.Required, r.Why = req, why
		if !req && !enrolled[n] {
			continue // exempt and nothing stored: nothing to chase
		}
		s, err := in.Status(n)
		if err != nil {
			if r.Error == "" {
				r.Error = err.Error()
			}
			keep(err)
		} else {
			r.Status = s
		}
		if req && !r.Enrolled && r.Error == "" && in.DaysLeft != nil {
			d := in.DaysLeft()
			r.DaysLeft = &d
		}
		rows = append(rows, r)
	}
	return rows, firstErr
}

// Login.defs defaults, used when /etc/login.defs does not set them.
const (
	DefaultUIDMin = 1000
	DefaultUIDMax = 60000
)

// UIDRange reads UID_MIN and UID_MAX from a login.defs file (useradd's
// range for people's accounts). A missing file or key gives the default.
func UIDRange(path string) (lo, hi int, err error) {
	lo, hi = DefaultUIDMin, DefaultUIDMax
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return lo, hi, nil
	}
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		n, err := strconv.Atoi(fields[1])
		if err != nil || n < 0 {
			continue
		}
		switch fields[0] {
		case "UID_MIN":
			lo = n
		case "UID_MAX":
			hi = n
		}
	}
	return lo, hi, sc.Err()
}
