// Package verify checks one code for one user (docs/design.md, "Verifying
// a code"): lock the user, refuse while locked, decide the verdict with
// work that does not depend on it, write the state the attempt leaves in
// one durable write (the failure and, at max_failures, the lock; or the
// success), and only then answer.
//
// It is the one path every front end uses: otpgate verify, the PAM helper
// and sshcheck. Every error ends in a denial.
package verify

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/authlog"
	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

// DefaultLockWait bounds the wait for another attempt on the same user.
const DefaultLockWait = 10 * time.Second

// Verifier checks codes against a store under a policy.
type Verifier struct {
	Store    *keystore.Store
	Config   config.Config
	Log      *authlog.Logger  // nil drops the log lines
	Now      func() time.Time // nil means time.Now; tests pin it
	LockWait time.Duration    // 0 means DefaultLockWait
}

// Request is one attempt. Service, RHost and Policy only go into the log
// line.
type Request struct {
	User    string
	Code    string
	Service string
	RHost   string
	// TOTPOnly refuses a backup code, unchecked and unspent (reason
	// backup-code-refused, counted like any wrong code): for adding an
	// authenticator, which needs a code of an existing one.
	TOTPOnly bool
	Policy   string // why the user must use a code (policy.Decision.Rule); "" writes no policy= field
	// Extra are more key, value pairs for the log line, written after
	// policy= and before error=: the helper's backend= (docs/logging.md).
	Extra []string
}

// Outcome is the verdict of an attempt.
type Outcome int

// The outcomes. Only Accepted lets a login through.
const (
	Accepted    Outcome = iota
	Denied              // wrong, replayed or malformed code
	Locked              // too many failures; LockedUntil says until when
	NotEnrolled         // the user has no secret
	Failed              // otpgate could not decide (broken file, full disk): denied
)

func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Denied:
		return "denied"
	case Locked:
		return "locked"
	case NotEnrolled:
		return "not-enrolled"
	}
	return "error"
}

// Result is what the caller may tell the person, and what was logged.
type Result struct {
	Outcome     Outcome
	Reason      string    // short, for logs: wrong-code, replayed, ...
	Fingerprint string    // of the enrollment the code was checked against (keystore.User.Fingerprint), when accepted
	Method      string    // "totp" or "backup" when accepted
	Label       string    // the authenticator whose code was accepted (Method "totp")
	Failures    int       // consecutive failures after this attempt
	LockedUntil time.Time // set when Outcome is Locked, or this attempt locked the account
	BackupLeft  int       // unused backup codes after this attempt
	Err         error     // the cause of Failed
}

// matchHook, when set (by tests), runs before each authenticator's window
// is computed.
var matchHook func()

// Code kinds after classification.
const (
	kindWrong = iota
	kindTOTP
	kindBackup
)

// Classify says what input looks like to a user whose authenticators make
// codes of the given numbers of digits: a TOTP code of one of those
// lengths, a backup code (see backupcode.Normalize), a
// google-authenticator scratch code carried over by an import (8 digits,
// see backupcode.NormalizeScratch), or neither. norm is the form to
// compare.
//
// The TOTP code wins: for a user with an authenticator of 8-digit codes,
// 8 digits are a TOTP code, never a scratch code. Imports always make
// 6-digit authenticators (google-authenticator has no other length), so
// their scratch codes cannot be taken for a code unless the user has
// added an 8-digit authenticator since; a scratch code then no longer
// works (the backup codes of otpgate backup-codes do).
func Classify(input string, digits ...int) (kind int, norm string) {
	s := strings.TrimSpace(input)
	if slices.Contains(digits, len(s)) && strings.Trim(s, "0123456789") == "" {
		return kindTOTP, s
	}
	if c, ok := backupcode.Normalize(s); ok {
		return kindBackup, c
	}
	if c, ok := backupcode.NormalizeScratch(s); ok && !slices.Contains(digits, backupcode.ScratchLength) {
		return kindBackup, c
	}
	return kindWrong, ""
}

// Verify runs one attempt and logs one line about it.
func (v *Verifier) Verify(req Request) Result {
	r := v.verify(req)
	v.log(req, r)
	return r
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func fail(reason string, err error) Result {
	return Result{Outcome: Failed, Reason: reason, Err: err}
}

func (v *Verifier) verify(req Request) Result {
	if err := keystore.ValidUser(req.User); err != nil {
		return Result{Outcome: Denied, Reason: "invalid-user", Err: err}
	}
	// Look before locking: a guessed user name must not create a lock file.
	// (The file itself is read and checked under the lock.)
	if ok, err := v.Store.Enrolled(req.User); err != nil {
		return fail("store-error", err)
	} else if !ok {
		return Result{Outcome: NotEnrolled, Reason: "not-enrolled"}
	}
	wait := v.LockWait
	if wait == 0 {
		wait = DefaultLockWait
	}
	lock, err := v.Store.Lock(req.User, wait)
	if err != nil {
		return fail("lock-error", err)
	}
	defer lock.Unlock()

	user, err := lock.ReadUser()
	if errors.Is(err, keystore.ErrNotEnrolled) {
		return Result{Outcome: NotEnrolled, Reason: "not-enrolled"}
	}
	if err != nil {
		return fail("store-error", err)
	}
	st, err := lock.ReadState()
	if err != nil {
		return fail("state-error", err)
	}
	now := v.now()
	if now.Before(st.LockedUntil) {
		return Result{Outcome: Locked, Reason: "locked", Failures: st.Failures, LockedUntil: st.LockedUntil, BackupLeft: len(user.BackupHashes)}
	}
	if !st.LockedUntil.IsZero() {
		// The lock ran out: a fresh run of max_failures attempts.
		st.LockedUntil = time.Time{}
		st.Failures = 0
	}

	// Decide. The work does not depend on the outcome: every step of
	// every authenticator's window is computed and compared, a backup
	// code costs one hash.
	r := Result{Outcome: Denied, Reason: "wrong-code", BackupLeft: len(user.BackupHashes)}
	steps := map[string]int64{} // the step each matching authenticator accepts
	spend := -1                 // the backup code to spend
	digits := make([]int, len(user.Authenticators))
	for i, a := range user.Authenticators {
		digits[i] = a.Params.Digits
	}
	kind, code := Classify(req.Code, digits...)
	switch kind {
	case kindTOTP:
		// Each authenticator's codes count once: replay is tracked per
		// authenticator, so a code of one never uses up another's step.
		// The first match in file order names the authenticator; every
		// authenticator the code matches (two secrets giving one code
		// for a step is rare, not impossible) has its step used up, so
		// the code cannot come back through the other. A code of a
		// different length simply matches none of an authenticator's
		// steps.
		replayed := false
		for _, a := range user.Authenticators {
			if matchHook != nil {
				matchHook()
			}
			s, ok, rep, err := totp.Match(a.Secret, code, now, v.Config.Window, st.LastStep(a.Label), a.Params)
			if err != nil {
				return fail("totp-error", err)
			}
			replayed = replayed || rep
			if ok {
				steps[a.Label] = s
			}
			if ok && r.Outcome != Accepted {
				r = Result{Outcome: Accepted, Method: "totp", Label: a.Label, BackupLeft: len(user.BackupHashes)}
			}
		}
		if r.Outcome != Accepted && replayed {
			r.Reason = "replayed"
		}
	case kindBackup:
		if req.TOTPOnly {
			r.Reason = "backup-code-refused"
			break
		}
		i, err := backupcode.Find(code, user.BackupHashes)
		if err != nil {
			return fail("store-error", fmt.Errorf("keystore: %s: %w", v.Store.UserPath(req.User), err))
		}
		if i >= 0 {
			spend = i
			r = Result{Outcome: Accepted, Method: "backup", BackupLeft: len(user.BackupHashes) - 1}
		}
	default:
		r.Reason = "malformed-code"
	}

	if spend >= 0 {
		// Spend the code before anything can report success. If that
		// write fails, the attempt is answered and counted like a wrong
		// code: a failure here must not look different from one.
		fp := user.Fingerprint()
		user.BackupHashes = append(user.BackupHashes[:spend:spend], user.BackupHashes[spend+1:]...)
		if err := lock.WriteUser(user); err != nil {
			r = Result{Outcome: Denied, Reason: "backup-spend-error", BackupLeft: len(user.BackupHashes) + 1, Err: err}
		} else {
			r.Fingerprint = fp
		}
	} else if r.Outcome == Accepted {
		r.Fingerprint = user.Fingerprint()
	}

	// The one write of the attempt: everything it changes. The steps of
	// authenticators the user no longer has go, so the state stays within
	// its fixed size.
	st.Keep(user)
	if r.Outcome == Accepted {
		st.Failures = 0
		st.LastFailure = time.Time{}
		st.LastSuccess = now
		for label, s := range steps {
			st.SetLastStep(label, s)
		}
	} else {
		st.Failures++
		st.LastFailure = now
		if st.Failures >= v.Config.MaxFailures {
			st.LockedUntil = now.Add(v.Config.LockDuration)
			r.LockedUntil = st.LockedUntil
		}
	}
	r.Failures = st.Failures
	if err := lock.WriteState(st); err != nil {
		// A right and a wrong code alike: nothing is answered but a
		// denial, and nothing was counted or accepted.
		return fail("state-write-error", err)
	}
	return r
}

func (v *Verifier) log(req Request, r Result) { Log(v.Log, req, r) }

// Log writes the one line of an attempt, req and its result r, in the
// format of docs/logging.md: for the backends that decide elsewhere (the
// PostgreSQL database) the same line as Verify's.
func Log(l *authlog.Logger, req Request, r Result) {
	user := req.User
	if r.Reason == "invalid-user" {
		user = "(invalid)" // never log it: it may be a password
	}
	kv := []string{"user", user, "service", orDash(req.Service), "rhost", orDash(req.RHost), "outcome", r.Outcome.String()}
	if r.Method != "" {
		kv = append(kv, "method", r.Method)
	}
	if r.Label != "" {
		kv = append(kv, "authenticator", r.Label)
	}
	if r.Reason != "" {
		kv = append(kv, "reason", r.Reason)
	}
	if r.Outcome != NotEnrolled && r.Reason != "invalid-user" && r.Outcome != Failed {
		kv = append(kv, "failures", strconv.Itoa(r.Failures))
	}
	if !r.LockedUntil.IsZero() {
		kv = append(kv, "locked_until", r.LockedUntil.UTC().Format(time.RFC3339))
	}
	if req.Policy != "" {
		kv = append(kv, "policy", req.Policy)
	}
	kv = append(kv, req.Extra...)
	if r.Err != nil {
		kv = append(kv, "error", r.Err.Error())
	}
	if r.Outcome == Accepted {
		l.Info(authlog.Fields(kv...))
	} else {
		l.Notice(authlog.Fields(kv...))
	}
}

// orDash stands for a value the client did not give.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
