package helper

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/nss"
	"github.com/otpgate/otpgate/internal/passwd"
	"github.com/otpgate/otpgate/internal/policy"
	"github.com/otpgate/otpgate/internal/protocol"
)

// Messages of the enrollment deadline ([enroll] deadline).
const (
	// graceMsg: before the deadline, to a user without a code who is
	// let in. %s: the user, the deadline; %d: the days left.
	graceMsg = "no verification code is set up for %s yet; from %s on, logins without one are denied (%d %s left). " +
		"Set one up now: %s"
	// graceHowFiles and graceHowDB end graceMsg: how to enroll, on a host
	// with its own store and on one whose users live in the database
	// (where only an administrator enrolls).
	graceHowFiles = "run otpgate enroll"
	graceHowDB    = "ask an administrator to enroll you"
	// deadlineMsg: from the deadline on. %s: the deadline, the user.
	deadlineMsg = "no verification code is set up for this account, and the enrollment deadline %s has passed; " +
		"ask an administrator to enroll you (otpgate enroll --user %s)"
)

// loginPolicy is step 1 of a login (docs/pam-module.md, "Who must use a
// code"): it decides whether user must use a code. exempt is true when
// the policy lets the user through without one; the exempt line is then
// logged. With an error the user must use a code: the error is logged,
// and the caller denies a user without one (policyError).
func loginPolicy(cfg config.Config, user, service, rhost string, o Options) (d policy.Decision, exempt bool, err error) {
	d, err = policy.Decide(cfg.Policy, o.NSS, user)
	if err != nil {
		o.Log.Notice(fmt.Sprintf("helper: %v; %s must use a code", err, user))
		return d, false, err
	}
	if !d.Required {
		logLine(o.Log, user, service, rhost, "exempt", "reason", "policy", "policy", d.Rule)
		return d, true, nil
	}
	return d, false, nil
}

// policyError denies a user without a code when the policy could not be
// evaluated: otpgate's fault, said as such.
func policyError(s *session, user, service, rhost string, err error, o Options) string {
	logLine(o.Log, user, service, rhost, "error", "reason", "policy-error", "policy", policy.RuleError, "error", err.Error())
	s.fail("%s", setupErrMsg)
	return protocol.ResultAuthErr
}

// enrollDeadline answers for a user who must use a code and has none
// while [enroll] deadline is set: let in with a message that says how
// many days remain before it, denied with the enrollment instructions
// from it on. The date starts at midnight in the host's zone
// (/etc/localtime), never the caller's TZ.
func enrollDeadline(s *session, user, service, rhost string, cfg config.Config, rule string, o Options) string {
	loc, err := policy.HostZone(o.localtime())
	if err != nil {
		logLine(o.Log, user, service, rhost, "error", "reason", "zone-error", "policy", rule, "error", err.Error())
		s.fail("%s", setupErrMsg)
		return protocol.ResultAuthErr
	}
	d := cfg.Deadline
	if left := policy.DaysLeft(d, o.now(), loc); left > 0 {
		logLine(o.Log, user, service, rhost, "not-enrolled", "reason", "before-deadline", "deadline", d.String(),
			"days_left", strconv.Itoa(left), "policy", rule)
		days := "days"
		if left == 1 {
			days = "day"
		}
		how := graceHowFiles
		if cfg.Backend == config.BackendPostgres {
			how = graceHowDB
		}
		s.info(graceMsg, user, d, left, days, how)
		return protocol.ResultSuccess
	}
	logLine(o.Log, user, service, rhost, "denied", "reason", "deadline-passed", "deadline", d.String(), "policy", rule)
	s.fail(deadlineMsg, d, user)
	return protocol.ResultAuthErr
}

// callerName finds the account of uid: in the passwd file first (no exec
// for the accounts most hosts have), then through NSS (getent passwd UID)
// for one that is only there (LDAP, SSSD). A passwd file that cannot be
// read is an error, not a reason to ask NSS instead.
func callerName(o Options, uid int) (string, error) {
	e, err := passwd.LookupUID(o.Passwd, uid)
	if err == nil {
		return e.Name, nil
	}
	if !errors.Is(err, passwd.ErrNotFound) {
		return "", err
	}
	r := o.NSS
	if r == nil {
		r = nss.Default
	}
	u, nerr := r.LookupUID(uid)
	if nerr != nil {
		return "", fmt.Errorf("%w, and %v", err, nerr)
	}
	return u.Name, nil
}

func (o Options) localtime() string {
	if o.Localtime != "" {
		return o.Localtime
	}
	return policy.LocaltimePath
}
