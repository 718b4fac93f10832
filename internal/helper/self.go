package helper

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/authlog"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/internal/verify"
	"github.com/otpgate/otpgate/keystore"
)

// Data is the payload of a Data frame in self mode, a JSON object; each
// operation fills the fields it has.
type Data struct {
	User        string          `json:"user,omitempty"`
	URI         string          `json:"uri,omitempty"`    // enroll: the new secret's otpauth:// URI
	Secret      string          `json:"secret,omitempty"` // enroll: the new secret, base32; never a stored one
	Digits      int             `json:"digits,omitempty"`
	BackupCodes []string        `json:"backup_codes,omitempty"`
	Status      *account.Status `json:"status,omitempty"`
	MaxFailures int             `json:"max_failures,omitempty"`
}

// ArgNoConfirm is the one argument self mode takes: enroll without asking
// for a code of the new secret.
const ArgNoConfirm = "no-confirm"

// confirmTries is how many codes of a new secret enroll asks for.
const confirmTries = 3

// self serves a normal user, for their own account only.
func self(s *session, req protocol.Request, o Options) string {
	s.timeout = SelfTimeout
	name, err := callerName(o, o.Caller)
	if err != nil {
		s.fail("cannot find your account (uid %d): %v", o.Caller, err)
		return protocol.ResultAuthErr
	}
	if keystore.ValidUser(name) != nil || (req.User != "" && req.User != name) {
		s.fail("otpgate-helper acts only for your own account, %s; ask an administrator for another", name)
		logLine(o.Log, name, "self", "", "refused", "reason", "other-user")
		return protocol.ResultAuthErr
	}
	if req.Op == protocol.OpAuthenticate {
		return selfAuthenticate(s, req, name, o)
	}
	noConfirm := false
	for _, a := range req.Args {
		if a != ArgNoConfirm || req.Op != protocol.OpEnroll {
			s.fail("argument %q is not accepted here", a)
			return protocol.ResultServiceErr
		}
		noConfirm = true
	}
	cfg, err := config.Load(o.SelfConfig)
	if err != nil {
		s.fail("%v", err)
		logLine(o.Log, name, "self", "", "error", "reason", "config-error", "error", err.Error())
		return protocol.ResultAuthErr
	}
	x := &selfOp{s: s, o: o, user: name, cfg: cfg, store: keystore.New(cfg.Store),
		service: selfService(req.Service)}
	x.mgr = &account.Manager{Store: x.store, Config: cfg, Now: o.Now}
	switch req.Op {
	case protocol.OpStatus:
		return x.status()
	case protocol.OpVerify:
		return x.login()
	case protocol.OpEnroll:
		return x.enroll(noConfirm)
	case protocol.OpBackupCodes:
		return x.backupCodes()
	}
	s.fail("operation %q is for the PAM module only", req.Op)
	return protocol.ResultServiceErr
}

// selfAuthenticate serves the PAM module in a host that runs as the user
// (a screen locker, pamtester run for one's own account): the same prompt,
// counting and lockout as a login through a root host. The pam.d
// arguments count except config=, which self mode never honours: it reads
// the default config like every other self-mode operation.
func selfAuthenticate(s *session, req protocol.Request, name string, o Options) string {
	s.silent = req.Silent
	a, err := parseArgs(req.Args)
	if err != nil {
		o.Log.Notice("helper: pam.d arguments: " + err.Error() + "; denying")
		return protocol.ResultServiceErr
	}
	s.timeout = a.timeout
	cfg, err := config.Load(o.SelfConfig)
	if err != nil {
		logLine(o.Log, name, selfService(req.Service), req.RHost, "error", "reason", "config-error", "error", err.Error())
		s.fail("%s", setupErrMsg)
		return protocol.ResultAuthErr
	}
	// What the host says of itself is the user's to choose: the log line
	// marks it as such.
	req.User, req.Service = name, selfService(req.Service)
	return authenticate(s, req, a, cfg, o)
}

type selfOp struct {
	s       *session
	o       Options
	user    string
	cfg     config.Config
	store   *keystore.Store
	mgr     *account.Manager
	service string // for log lines: "self-" and what the client called itself
	rule    string // why the user must use a code (policy=), for a login only
}

func (x *selfOp) data(d Data) error {
	d.User = x.user
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return x.s.send(protocol.TypeData, string(b))
}

func (x *selfOp) storeError(err error) string {
	x.s.fail("%v", err)
	logLine(x.o.Log, x.user, x.service, "", "error", "reason", "store-error", "error", err.Error())
	return protocol.ResultAuthErr
}

func (x *selfOp) status() string {
	st, err := x.mgr.Status(x.user)
	if err != nil {
		return x.storeError(err)
	}
	if x.data(Data{Status: &st, MaxFailures: x.cfg.MaxFailures}) != nil {
		return protocol.ResultAuthErr
	}
	return protocol.ResultSuccess
}

// login is sshcheck's check after the key, in the order of a PAM login
// (see authenticate): the policy, then the code of an enrolled user, then
// the enrollment deadline for one without a code.
func (x *selfOp) login() string {
	d, exempt, perr := loginPolicy(x.cfg, x.user, x.service, "", x.o)
	if exempt {
		return protocol.ResultSuccess
	}
	x.rule = d.Rule
	_, err := x.store.ReadUser(x.user)
	if errors.Is(err, keystore.ErrNotEnrolled) {
		if perr != nil {
			return policyError(x.s, x.user, x.service, "", perr, x.o)
		}
		// Step 3a, first-login enrollment, goes here (sshcheck runs
		// after the key): completed, success; otherwise on to the
		// deadline.
		if !x.cfg.Deadline.IsZero() {
			return enrollDeadline(x.s, x.user, x.service, "", x.cfg, d.Rule, x.o)
		}
	} else if err != nil {
		return x.storeError(err)
	}
	// A login: told no more than a PAM login is.
	v, _ := x.verifyFor("Verification code: ", false)
	return v
}

// verifyFor is verify that also returns the fingerprint of the enrollment
// the code was accepted for ("" when it was not), so that a change made
// after more questions is made only to that enrollment.
// With explain, a refused code is also told why (see why): for a change
// to the enrollment, asked by a user who is logged in already.
func (x *selfOp) verifyFor(prompt string, explain bool) (string, string) {
	answer, err := x.s.ask(prompt, false)
	defer clear(answer)
	if err != nil {
		logLine(x.o.Log, x.user, x.service, "", "denied", "reason", "no-answer", "error", err.Error())
		return protocol.ResultAuthErr, ""
	}
	v := verify.Verifier{Store: x.store, Config: x.cfg, Log: x.o.Log, Now: x.o.Now}
	r := v.Verify(verify.Request{User: x.user, Code: string(answer), Service: x.service, Policy: x.rule})
	if explain {
		x.why(r)
	}
	return verdict(x.s, r, func() string {
		// Said to a session that was just refused (sshcheck), too: it
		// names both ways to get a code set up.
		x.s.fail("%s is not enrolled: no verification code is set up; run otpgate enroll where no code is asked, or ask an administrator", x.user)
		return protocol.ResultAuthErr
	}), r.Fingerprint
}

// why tells a user who is already logged in why a code of theirs was
// refused (a lock is said by verdict). A login is told less: there the
// person may not be the user.
func (x *selfOp) why(r verify.Result) {
	if r.Outcome != verify.Denied || !r.LockedUntil.IsZero() {
		return
	}
	left := x.cfg.MaxFailures - r.Failures
	switch r.Reason {
	case "replayed":
		x.s.fail("that code was used already (each code works once); wait for the app's next code (%d more wrong codes lock the account)", left)
	case "malformed-code":
		x.s.fail("that is neither a code from the app nor a backup code (%d more wrong codes lock the account)", left)
	default:
		x.s.fail("wrong code; check the app's clock and the entry (%d more wrong codes lock the account)", left)
	}
}

// changedMsg is said when an administrator changed the enrollment while
// the user was answering questions.
const changedMsg = "the enrollment of %s was changed by an administrator meanwhile; nothing was changed"

// enroll makes a new secret, shows it, asks for a code of it and saves it
// with new backup codes. Over an existing secret, a current code of the
// old one comes first.
func (x *selfOp) enroll(noConfirm bool) string {
	_, err := x.store.ReadUser(x.user)
	enrolled := err == nil
	if err != nil && !errors.Is(err, keystore.ErrNotEnrolled) {
		return x.storeError(err)
	}
	var fingerprint string
	if enrolled {
		x.s.info("%s is enrolled already: a code of the current secret is needed to replace it", x.user)
		v, fp := x.verifyFor("Current verification code: ", true)
		if v != protocol.ResultSuccess {
			// The reason came first (why, verdict); this is the outcome.
			x.s.fail("the secret was not replaced")
			return v
		}
		fingerprint = fp
	}
	en, err := x.mgr.NewEnrollment(x.user)
	if err != nil {
		return x.storeError(err)
	}
	defer clear(en.Secret)
	if x.data(Data{URI: en.URI, Secret: totp.EncodeSecret(en.Secret), Digits: en.Params.Digits}) != nil {
		return protocol.ResultAuthErr
	}
	// Replaced only if the secret the code was checked against is still
	// the stored one when the new one is saved (after the confirmation,
	// which may take minutes): an administrator's reset or enrollment
	// meanwhile wins.
	opts := account.SaveOptions{Replace: enrolled, IfUnchanged: fingerprint}
	if !noConfirm {
		code, ok := x.confirm(en)
		if !ok {
			return protocol.ResultAuthErr
		}
		opts.Confirm = code
	}
	codes, err := x.mgr.Save(en, opts)
	if errors.Is(err, account.ErrEnrolled) || errors.Is(err, account.ErrChanged) {
		x.s.fail(changedMsg, x.user)
		logLine(x.o.Log, x.user, x.service, "", "refused", "reason", "enrollment-changed", "action", "enroll")
		return protocol.ResultAuthErr
	}
	if err != nil {
		return x.storeError(fmt.Errorf("%w; nothing was saved", err))
	}
	x.o.Log.Info(authlog.Fields("user", x.user, "action", "enroll", "by", "self"))
	if x.data(Data{BackupCodes: codes}) != nil {
		return protocol.ResultAuthErr
	}
	return protocol.ResultSuccess
}

// confirm asks for a code of the new secret until one matches.
func (x *selfOp) confirm(en *account.Enrollment) (string, bool) {
	for try := 1; try <= confirmTries; try++ {
		answer, err := x.s.ask(fmt.Sprintf("Enter the %d-digit code the app shows: ", en.Params.Digits), true)
		if err != nil {
			x.s.fail("no code was entered; nothing was saved")
			return "", false
		}
		code := strings.TrimSpace(string(answer))
		clear(answer)
		if _, ok := x.mgr.CheckCode(en, code); ok {
			return code, true
		}
		x.s.info("That code does not match. Check the app's clock and the entry you scanned.")
	}
	x.s.fail("no matching code after %d tries; nothing was saved", confirmTries)
	return "", false
}

// backupCodes replaces the backup codes after a current code.
func (x *selfOp) backupCodes() string {
	if _, err := x.store.ReadUser(x.user); errors.Is(err, keystore.ErrNotEnrolled) {
		x.s.fail("%s is not enrolled; run otpgate enroll first", x.user)
		return protocol.ResultAuthErr
	} else if err != nil {
		return x.storeError(err)
	}
	v, fp := x.verifyFor("Verification code: ", true)
	if v != protocol.ResultSuccess {
		return v
	}
	codes, err := x.mgr.NewBackupCodes(x.user, fp)
	if errors.Is(err, account.ErrChanged) {
		x.s.fail(changedMsg, x.user)
		logLine(x.o.Log, x.user, x.service, "", "refused", "reason", "enrollment-changed", "action", "backup-codes")
		return protocol.ResultAuthErr
	}
	if err != nil {
		return x.storeError(err)
	}
	x.o.Log.Info(authlog.Fields("user", x.user, "action", "backup-codes", "by", "self"))
	if x.data(Data{BackupCodes: codes}) != nil {
		return protocol.ResultAuthErr
	}
	return protocol.ResultSuccess
}

// selfService names a self-mode request in log lines: "self", or "self-"
// and what the client called itself (at most 32 bytes of it).
func selfService(s string) string {
	if s == "" {
		return "self"
	}
	return "self-" + s[:min(len(s), 32)]
}
