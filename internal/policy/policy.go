// Package policy decides whether a user must use a code ([policy] in
// config.toml), and when the enrollment deadline ([enroll] deadline)
// falls. The helper asks it at every login and otpgate doctor shows what
// it says; both resolve names the same way, through NSS (internal/nss).
//
// It fails closed: a name in the policy that the system does not know,
// or a lookup that fails, is an error (the helper then still asks an
// enrolled user for the code and denies anyone else), and a login user
// NSS does not know is never exempt.
package policy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/nss"
)

// Rules a Decision names (policy= in the log line).
const (
	RuleEveryone      = "everyone"              // no [policy]: everyone needs a code
	RuleRequireGroup  = "require-group:"        // + the group: a member of a required group
	RuleExemptUser    = "exempt-user:"          // + the user: in exempt_users
	RuleExemptGroup   = "exempt-group:"         // + the group: a member of an exempt group
	RuleNotRequired   = "not-in-require-groups" // require_groups set, the user in none of them
	RuleUnknownUser   = "unknown-user"          // NSS does not know the user: never exempt
	RuleError         = "error"                 // the policy could not be evaluated
	RuleNotApplicable = "-"                     // no decision was asked for
)

// Decision is whether a user must use a code, and why.
type Decision struct {
	Required bool
	Rule     string // one of the Rule constants, with a name where it takes one
}

// Decide says whether user must use a code under p. With an error, the
// Decision is Required with RuleError: the caller asks an enrolled user
// for the code and denies anyone else. An empty policy costs nothing; one
// with exempt_users only runs getent once; one that names groups three
// times (passwd, group, initgroups).
func Decide(p config.Policy, r *nss.Resolver, user string) (Decision, error) {
	if p.Empty() {
		return Decision{Required: true, Rule: RuleEveryone}, nil
	}
	if r == nil {
		r = nss.Default
	}
	fail := func(err error) (Decision, error) { return Decision{Required: true, Rule: RuleError}, err }
	users, missing, err := r.Users(append([]string{user}, p.ExemptUsers...)...)
	if err != nil {
		return fail(fmt.Errorf("policy: looking up users: %w", err))
	}
	known := !slices.Contains(missing, user)
	if bad := unknownNames(missing, p.ExemptUsers); len(bad) > 0 {
		return fail(namesError("exempt_users", "user", "getent passwd", bad))
	}
	groupNames := append(slices.Clone(p.ExemptGroups), p.RequireGroups...)
	var gidOf map[string]int
	if len(groupNames) > 0 {
		gs, missing, err := r.Groups(groupNames...)
		if err != nil {
			return fail(fmt.Errorf("policy: looking up groups: %w", err))
		}
		if bad := unknownNames(missing, p.ExemptGroups); len(bad) > 0 {
			return fail(namesError("exempt_groups", "group", "getent group", bad))
		}
		if bad := unknownNames(missing, p.RequireGroups); len(bad) > 0 {
			return fail(namesError("require_groups", "group", "getent group", bad))
		}
		gidOf = make(map[string]int, len(gs))
		for _, g := range gs {
			gidOf[g.Name] = g.GID
		}
	}
	if !known {
		// Not exempt by any rule: a name the system does not know is
		// not in a list (each was found) nor in a group.
		return Decision{Required: true, Rule: RuleUnknownUser}, nil
	}
	if slices.Contains(p.ExemptUsers, user) {
		return Decision{Required: false, Rule: RuleExemptUser + user}, nil
	}
	if len(groupNames) == 0 {
		return Decision{Required: true, Rule: RuleEveryone}, nil
	}
	var u nss.User
	for _, x := range users {
		if x.Name == user {
			u = x
			break
		}
	}
	ids, err := r.GroupIDs(u)
	if err != nil {
		return fail(fmt.Errorf("policy: the groups of %s: %w", user, err))
	}
	in := func(g string) bool { return slices.Contains(ids, gidOf[g]) }
	for _, g := range p.ExemptGroups {
		if in(g) {
			return Decision{Required: false, Rule: RuleExemptGroup + g}, nil
		}
	}
	if len(p.RequireGroups) == 0 {
		return Decision{Required: true, Rule: RuleEveryone}, nil
	}
	for _, g := range p.RequireGroups {
		if in(g) {
			return Decision{Required: true, Rule: RuleRequireGroup + g}, nil
		}
	}
	return Decision{Required: false, Rule: RuleNotRequired}, nil
}

// Check looks up every name p holds and returns an error naming those the
// system does not know (nil when there are none, or for an empty policy):
// for otpgate doctor.
func Check(p config.Policy, r *nss.Resolver) error {
	if r == nil {
		r = nss.Default
	}
	var errs []error
	if len(p.ExemptUsers) > 0 {
		_, missing, err := r.Users(p.ExemptUsers...)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("policy: looking up users: %w", err))
		case len(missing) > 0:
			errs = append(errs, namesError("exempt_users", "user", "getent passwd", missing))
		}
	}
	for _, l := range []struct {
		key   string
		names []string
	}{{"exempt_groups", p.ExemptGroups}, {"require_groups", p.RequireGroups}} {
		if len(l.names) == 0 {
			continue
		}
		_, missing, err := r.Groups(l.names...)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("policy: looking up groups: %w", err))
		case len(missing) > 0:
			errs = append(errs, namesError(l.key, "group", "getent group", missing))
		}
	}
	return errors.Join(errs...)
}

// unknownNames returns the names of list that are in missing.
func unknownNames(missing, list []string) []string {
	var out []string
	for _, n := range list {
		if slices.Contains(missing, n) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

func namesError(key, kind, tool string, names []string) error {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return fmt.Errorf("policy: [policy] %s names %s %s the system does not know (%s); fix the name or remove it from %s",
		key, kind, strings.Join(q, ", "), tool, config.DefaultPath)
}

// LocaltimePath is the host's zone: the deadline starts at midnight
// there. Never the TZ of whoever started the helper.
const LocaltimePath = "/etc/localtime"

// HostZone reads the host's zone from path (LocaltimePath). A host
// without one is on UTC, as for every other program on it.
func HostZone(path string) (*time.Location, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return time.UTC, nil
	}
	if err != nil {
		return nil, fmt.Errorf("policy: the host's time zone: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("policy: the host's time zone: reading %s: %w", path, err)
	}
	loc, err := time.LoadLocationFromTZData("Local", data)
	if err != nil {
		return nil, fmt.Errorf("policy: the host's time zone: %s: %w; run dpkg-reconfigure tzdata", path, err)
	}
	return loc, nil
}

// DaysLeft is how many calendar days (in loc) remain from now until the
// deadline d starts: 1 on its eve, 0 or less from midnight of d on.
func DaysLeft(d config.Date, now time.Time, loc *time.Location) int {
	if !now.Before(d.Midnight(loc)) {
		return 0
	}
	y, m, day := now.In(loc).Date()
	today := time.Date(y, m, day, 0, 0, 0, 0, time.UTC)
	return int(d.Midnight(time.UTC).Sub(today) / (24 * time.Hour))
}
