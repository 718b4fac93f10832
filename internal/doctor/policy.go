package doctor

import (
	"fmt"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/policy"
)

// checkPolicy shows who must use a code ([policy]) and the enrollment
// deadline, and reports a name in the policy the system does not know
// (through NSS, as the helper looks it up at each login).
func (r *Report) checkPolicy(cfg config.Config, path string, now time.Time) {
	r.note("policy: %s", DescribePolicy(cfg.Policy))
	if err := policy.Check(cfg.Policy, nil); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			r.add(Finding{Check: "policy", Context: path,
				Problem: line + "; until it is fixed, users without a code are denied (enrolled users are still asked for their code) and no one is exempt",
				Fix:     "create the user or group, or correct the name in [policy]"})
		}
	}
	d := cfg.Deadline
	if d.IsZero() {
		r.note("enroll deadline: none (a user who must use a code and has none is denied, or let through by nullok)")
		return
	}
	loc, err := policy.HostZone(policy.LocaltimePath)
	if err != nil {
		r.add(Finding{Check: "policy", Context: policy.LocaltimePath, Problem: err.Error() + "; logins of users without a code are denied", Fix: "dpkg-reconfigure tzdata"})
		return
	}
	if left := policy.DaysLeft(d, now, loc); left > 0 {
		r.note("enroll deadline: %s (from midnight, %s): %d days left; until then a user who must use a code and has none is let in with a reminder", d, zoneName(loc, d), left)
	} else {
		r.note("enroll deadline: %s (from midnight, %s) has passed: a user who must use a code and has none is denied", d, zoneName(loc, d))
	}
}

// DescribePolicy says in one line who must use a code.
func DescribePolicy(p config.Policy) string {
	who := "everyone must use a code"
	if len(p.RequireGroups) > 0 {
		who = "members of " + strings.Join(p.RequireGroups, ", ") + " must use a code (others need none)"
	}
	var ex []string
	if len(p.ExemptGroups) > 0 {
		ex = append(ex, "members of "+strings.Join(p.ExemptGroups, ", "))
	}
	if len(p.ExemptUsers) > 0 {
		ex = append(ex, strings.Join(p.ExemptUsers, ", "))
	}
	if len(ex) > 0 {
		who += "; exempt: " + strings.Join(ex, "; ")
	}
	return who
}

// zoneName names the host's zone at the deadline (CET, +0530).
func zoneName(loc *time.Location, d config.Date) string {
	name, off := d.Midnight(loc).Zone()
	if name == "" {
		return fmt.Sprintf("UTC%+d", off/3600)
	}
	return name
}

// exemptByPolicy reports whether the policy lets user through without a
// code: such a user need not be enrolled. An error means no.
func exemptByPolicy(p config.Policy, user string) bool {
	if p.Empty() {
		return false
	}
	d, err := policy.Decide(p, nil, user)
	return err == nil && !d.Required
}
