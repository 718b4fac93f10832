package helper

import (
	"fmt"
	"strings"

	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/policy"
	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/internal/verify"
	"github.com/otpgate/otpgate/keystore"
)

// Prompts and messages of trusted mode.
const (
	DefaultPrompt     = "Verification code: "
	ForwardPassPrompt = "Password & verification code: "
	notEnrolledMsg    = "no verification code is set up for this account; ask an administrator"
	// setupErrMsg is said for every denial that is otpgate's fault (a
	// config or store error, a failed write); the log line has the cause.
	setupErrMsg = "otpgate could not check the code on this host (the reason is in the system log); ask an administrator"
)

// LockTimeFormat is how a message says until when an account is locked:
// local time with its zone, as a person reads it on the screen.
const LockTimeFormat = "2006-01-02 15:04:05 MST"

// backupWarn is the number of backup codes left at or under which a login
// with a backup code says how many are left.
const backupWarn = 3

// trusted serves the PAM module: one prompt, one verdict.
func trusted(s *session, req protocol.Request, o Options) string {
	s.silent = req.Silent
	if req.Op != protocol.OpAuthenticate {
		o.Log.Notice(fmt.Sprintf("helper: operation %q is not one the PAM module asks for; denying", req.Op))
		return protocol.ResultServiceErr
	}
	a, err := parseArgs(req.Args)
	if err != nil {
		o.Log.Notice("helper: pam.d arguments: " + err.Error() + "; denying")
		return protocol.ResultServiceErr
	}
	s.timeout = a.timeout
	user := req.User
	if keystore.ValidUser(user) != nil {
		// Never log it: a mistyped user name is often a password.
		logLine(o.Log, "(invalid)", req.Service, req.RHost, "denied", "reason", "invalid-user")
		return protocol.ResultAuthErr
	}
	path := a.config
	if path == "" {
		path = config.DefaultPath
	}
	cfg, err := config.Load(path)
	if err != nil {
		logLine(o.Log, user, req.Service, req.RHost, "error", "reason", "config-error", "error", err.Error())
		s.fail("%s", setupErrMsg)
		return protocol.ResultAuthErr
	}
	if cfg.Backend == config.BackendPostgres && o.Postgres == nil {
		return handoff(s, req, user, req.Service, req.RHost, o)
	}
	return authenticate(s, req, a, cfg, o)
}

// authenticate asks for the code of req.User and checks it: the PAM
// module's request, in trusted mode and (for a host that runs as the
// user, such as a screen locker) in self mode.
//
// The order (docs/pam-module.md, "Who must use a code"): the policy
// first, then the code of an enrolled user, then what is done for one
// without a code.
func authenticate(s *session, req protocol.Request, a pamArgs, cfg config.Config, o Options) string {
	user := req.User
	d, exempt, perr := loginPolicy(cfg, user, req.Service, req.RHost, o)
	if exempt {
		return protocol.ResultSuccess
	}
	chk := newChecker(cfg, o)
	enrolled, err := chk.enrolled(user)
	if err != nil {
		return chk.lookupError(s, user, req.Service, req.RHost, err)
	}
	if !enrolled {
		if perr != nil {
			return policyError(s, user, req.Service, req.RHost, perr, o)
		}
		return notEnrolled(s, req, a, cfg, d.Rule, o)
	}

	prompt := a.prompt
	switch {
	case prompt != "":
	case a.forwardPass:
		prompt = ForwardPassPrompt
	default:
		prompt = DefaultPrompt
	}
	// The answer comes first and the user's lock after it (in Verify):
	// no lock is ever held while waiting for a person.
	answer, err := s.ask(prompt, false)
	defer clear(answer)
	if err != nil {
		logLine(o.Log, user, req.Service, req.RHost, "denied", "reason", "no-answer", "error", err.Error())
		return protocol.ResultAuthErr
	}
	code := string(answer)
	if a.forwardPass {
		// The first authenticator's length splits the answer: with
		// several lengths the split would be ambiguous.
		pass, c, ok := splitPass(code, chk.digits(user))
		code = c // "" when it cannot be split: a wrong code, counted as such
		if ok {
			if err := s.send(protocol.TypeSetAuthtok, pass); err != nil {
				return protocol.ResultAuthErr
			}
		}
	}
	r := chk.verify(verify.Request{User: user, Code: code, Service: req.Service, RHost: req.RHost, Policy: d.Rule}, min(a.timeout, verify.DefaultLockWait))
	return verdict(s, r, func() string {
		if perr != nil {
			return policyError(s, user, req.Service, req.RHost, perr, o)
		}
		return notEnrolled(s, req, a, cfg, d.Rule, o)
	})
}

// verdict turns a verification result into a verdict, telling the person
// what helps: a lock and until when, the backup codes running out.
func verdict(s *session, r verify.Result, notEnrolled func() string) string {
	switch r.Outcome {
	case verify.Accepted:
		if r.Method == "backup" && r.BackupLeft <= backupWarn {
			s.info("%d backup codes left; run otpgate backup-codes for a new set", r.BackupLeft)
		}
		return protocol.ResultSuccess
	case verify.Locked:
		s.fail("too many wrong codes; try again after %s", r.LockedUntil.Local().Format(LockTimeFormat))
		return protocol.ResultMaxTries
	case verify.Denied:
		if !r.LockedUntil.IsZero() {
			s.fail("too many wrong codes; locked until %s", r.LockedUntil.Local().Format(LockTimeFormat))
			return protocol.ResultMaxTries
		}
		return protocol.ResultAuthErr
	case verify.NotEnrolled:
		return notEnrolled()
	case verify.Failed:
		s.fail("%s", setupErrMsg)
	}
	return protocol.ResultAuthErr
}

// notEnrolled answers for a user without a secret whom the policy
// requires to use one (rule says why, for the log): before the
// enrollment deadline a pass with a message, from it on a denial; with no
// deadline PAM_IGNORE when the administrator asked for it with nullok,
// else a denial that says why.
func notEnrolled(s *session, req protocol.Request, a pamArgs, cfg config.Config, rule string, o Options) string {
	// First-login enrollment: completed, it decides; abandoned, the
	// rules below do. Never with forward_pass (there the code comes
	// before the password, so no first factor has been checked yet), and
	// never for a name the system does not know (a secret stored for it
	// would wait for whoever gets that name).
	// Not with the database: enrolling there is the administrator's.
	if a.firstLogin && !a.forwardPass && cfg.FirstLogin && rule != policy.RuleUnknownUser && cfg.Backend != config.BackendPostgres {
		if v, done := firstLogin(s, cfg, o, req.User, req.Service, req.RHost); done {
			return v
		}
	}
	if !cfg.Deadline.IsZero() {
		// A deadline decides; nullok matters only without one.
		return enrollDeadline(s, req.User, req.Service, req.RHost, cfg, rule, o)
	}
	if a.nullok {
		logLine(o.Log, req.User, req.Service, req.RHost, "not-enrolled", "reason", "nullok", "policy", rule)
		return protocol.ResultIgnore
	}
	logLine(o.Log, req.User, req.Service, req.RHost, "denied", "reason", "not-enrolled", "policy", rule)
	s.fail("%s", notEnrolledMsg)
	return protocol.ResultAuthErr
}

// splitPass splits forward_pass input into the password and the code: a
// TOTP code of digits digits typed right after the password, or a backup
// code in its printed form XXXXX-XXXXX after a space (the dash tells it
// apart from a password that ends in letters and digits).
func splitPass(in string, digits int) (pass, code string, ok bool) {
	if i := strings.LastIndexByte(in, ' '); i >= 0 {
		last := in[i+1:]
		if len(last) == backupcode.Length+1 && last[backupcode.Length/2] == '-' {
			if _, ok := backupcode.Normalize(last); ok {
				return in[:i], last, true
			}
		}
	}
	if len(in) < digits {
		return "", "", false
	}
	tail := in[len(in)-digits:]
	if strings.Trim(tail, "0123456789") != "" {
		return "", "", false
	}
	return in[:len(in)-digits], tail, true
}
