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
	Added       string          `json:"added,omitempty"` // enroll --add: the label of the authenticator added
	Status      *account.Status `json:"status,omitempty"`
	MaxFailures int             `json:"max_failures,omitempty"`
}

// ArgNoConfirm is an argument of self mode's enroll: enroll without
// asking for a code of the new secret.
const ArgNoConfirm = "no-confirm"

// ArgAdd is an argument of self mode's enroll: add an authenticator,
// after a TOTP code of an existing one, instead of replacing them. It
// needs ArgLabel.
const ArgAdd = "add"

// ArgLabel, followed by a label (keystore.ValidLabel), is an argument of
// self mode's enroll: the new authenticator's label.
const ArgLabel = "label="

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
	ea, err := enrollArgs(req)
	if err != nil {
		s.fail("%v", err)
		return protocol.ResultServiceErr
	}
	cfg, err := config.Load(o.SelfConfig)
	if err != nil {
		s.fail("%v", err)
		logLine(o.Log, name, "self", "", "error", "reason", "config-error", "error", err.Error())
		return protocol.ResultAuthErr
	}
	if cfg.Backend == config.BackendPostgres {
		switch req.Op {
		case protocol.OpEnroll, protocol.OpBackupCodes, protocol.OpStatus:
			// Self-service against the database is not done yet
			// (docs/postgres.md); a login is.
			s.fail("%s", enrollRefusedMsg)
			logLine(o.Log, name, selfService(req.Service), "", "refused", "reason", "not-available", "action", req.Op, "backend", "postgres")
			return protocol.ResultAuthErr
		case protocol.OpVerify:
			if o.Postgres == nil {
				return handoff(s, req, name, selfService(req.Service), "", o)
			}
		}
	}
	x := &selfOp{s: s, o: o, user: name, cfg: cfg, store: keystore.New(cfg.Store),
		service: selfService(req.Service)}
	x.mgr = &account.Manager{Store: x.store, Config: cfg, Now: o.Now}
	switch req.Op {
	case protocol.OpStatus:
		return x.status()
	case protocol.OpVerify:
		return x.login(ea.firstLogin)
	case protocol.OpEnroll:
		return x.enroll(ea)
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
	if cfg.Backend == config.BackendPostgres && o.Postgres == nil {
		return handoff(s, req, name, selfService(req.Service), req.RHost, o)
	}
	// What the host says of itself is the user's to choose: the log line
	// marks it as such.
	req.User, req.Service = name, selfService(req.Service)
	return authenticate(s, req, a, cfg, o)
}

type selfOp struct {
	s        *session
	o        Options
	user     string
	cfg      config.Config
	store    *keystore.Store
	mgr      *account.Manager
	service  string   // for log lines: "self-" and what the client called itself
	totpOnly bool     // a backup code is not accepted as the current code (adding an authenticator)
	chk      *checker // where a login's code is checked (set by login)
	rule     string   // why the user must use a code (policy=), for a login only
}

// selfEnrollArgs are the arguments of a self-mode request.
type selfEnrollArgs struct {
	noConfirm  bool   // enroll
	add        bool   // enroll
	label      string // enroll; "" means keystore.DefaultLabel
	firstLogin bool   // verify: the client can show first-login enrollment
}

// enrollArgs checks the arguments of a self-mode request: enroll takes
// no-confirm, add and label=, verify takes first_login, each at most
// once. A label is the user's input, checked here like any other.
func enrollArgs(req protocol.Request) (selfEnrollArgs, error) {
	var a selfEnrollArgs
	seen := map[string]bool{}
	for _, arg := range req.Args {
		name, label, isLabel := strings.Cut(arg, "=")
		if isLabel {
			name += "="
		}
		if seen[name] || (req.Op != protocol.OpEnroll && !(req.Op == protocol.OpVerify && arg == ArgFirstLogin)) {
			return a, fmt.Errorf("argument %q is not accepted here", arg[:min(len(arg), 40)])
		}
		seen[name] = true
		switch {
		case arg == ArgFirstLogin && req.Op == protocol.OpVerify:
			a.firstLogin = true
		case arg == ArgNoConfirm:
			a.noConfirm = true
		case arg == ArgAdd:
			a.add = true
		case isLabel && name == ArgLabel:
			if err := keystore.ValidLabel(label); err != nil {
				return a, err
			}
			a.label = label
		default:
			return a, fmt.Errorf("argument %q is not accepted here", arg[:min(len(arg), 40)])
		}
	}
	if a.add && a.label == "" {
		return a, fmt.Errorf("adding an authenticator needs its label")
	}
	return a, nil
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
// for one without a code first-login enrollment (offered when the client
// sent first_login) and the enrollment deadline.
func (x *selfOp) login(offer bool) string {
	d, exempt, perr := loginPolicy(x.cfg, x.user, x.service, "", x.o)
	if exempt {
		return protocol.ResultSuccess
	}
	x.rule = d.Rule
	x.chk = newChecker(x.cfg, x.o)
	enrolled, err := x.chk.enrolled(x.user)
	var de *dbError
	if errors.As(err, &de) {
		return x.chk.lookupError(x.s, x.user, x.service, "", err)
	} else if err != nil {
		return x.storeError(err)
	}
	if !enrolled {
		if perr != nil {
			return policyError(x.s, x.user, x.service, "", perr, x.o)
		}
		// First-login enrollment (sshcheck runs after the key, and asks
		// for it when it has a terminal to show it on): completed, it
		// decides; abandoned, the deadline or the denial below does.
		if offer && x.cfg.FirstLogin && x.cfg.Backend != config.BackendPostgres {
			if v, done := firstLogin(x.s, x.cfg, x.o, x.user, x.service, ""); done {
				return v
			}
		}
		if !x.cfg.Deadline.IsZero() {
			return enrollDeadline(x.s, x.user, x.service, "", x.cfg, d.Rule, x.o)
		}
		// No prompt for a code that cannot exist, as in a PAM login.
		logLine(x.o.Log, x.user, x.service, "", "denied", "reason", "not-enrolled", "policy", d.Rule)
		return x.notEnrolled()
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
	chk := x.chk
	if chk == nil {
		chk = newChecker(x.cfg, x.o) // files: self-service changes are refused above for the database
	}
	r := chk.verify(verify.Request{User: x.user, Code: string(answer), Service: x.service, TOTPOnly: x.totpOnly, Policy: x.rule}, 0)
	if explain {
		x.why(r)
	}
	return verdict(x.s, r, x.notEnrolled), r.Fingerprint
}

// notEnrolled denies a verify request for a user without a secret.
func (x *selfOp) notEnrolled() string {
	// Said to a session that was just refused (sshcheck), too: it names
	// both ways to get a code set up.
	x.s.fail("%s is not enrolled: no verification code is set up; run otpgate enroll where no code is asked, or ask an administrator", x.user)
	return protocol.ResultAuthErr
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
	case "backup-code-refused":
		x.s.fail("a backup code does not add an authenticator: enter a code from an app you have set up already (%d more wrong codes lock the account)", left)
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
// old one comes first. With a.add, the new secret is added to the
// existing ones after a TOTP code of one of them (a backup code is not
// enough: see docs/decisions.md, "Several authenticators").
func (x *selfOp) enroll(a selfEnrollArgs) string {
	old, err := x.store.ReadUser(x.user)
	enrolled := err == nil
	if err != nil && !errors.Is(err, keystore.ErrNotEnrolled) {
		return x.storeError(err)
	}
	add := a.add && enrolled // adding to nothing is a first enrollment
	var fingerprint string
	if add {
		if msg := cannotAdd(old, a.label); msg != "" {
			x.s.fail("%s", msg)
			return protocol.ResultAuthErr
		}
		x.s.info("a code from one of your current authenticator apps (%s) is needed to add one; a backup code is not", strings.Join(old.Labels(), ", "))
		x.totpOnly = true
		v, fp := x.verifyFor("Current verification code: ", true)
		if v != protocol.ResultSuccess {
			x.s.fail("no authenticator was added")
			return v
		}
		fingerprint = fp
	} else if enrolled {
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
	en.Label = a.label
	defer clear(en.Secret)
	if x.data(Data{URI: en.URI, Secret: totp.EncodeSecret(en.Secret), Digits: en.Params.Digits}) != nil {
		return protocol.ResultAuthErr
	}
	// Replaced only if the secret the code was checked against is still
	// the stored one when the new one is saved (after the confirmation,
	// which may take minutes): an administrator's reset or enrollment
	// meanwhile wins.
	opts := account.SaveOptions{Replace: enrolled && !add, Add: add, IfUnchanged: fingerprint}
	if !a.noConfirm {
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
	if errors.Is(err, account.ErrLabelTaken) || errors.Is(err, account.ErrTooMany) {
		x.s.fail("%v; nothing was saved", err)
		return protocol.ResultAuthErr
	}
	if err != nil {
		return x.storeError(fmt.Errorf("%w; nothing was saved", err))
	}
	if add {
		x.o.Log.Info(authlog.Fields("user", x.user, "action", "add-authenticator", "by", "self", "authenticator", a.label))
		if x.data(Data{Added: a.label}) != nil {
			return protocol.ResultAuthErr
		}
		return protocol.ResultSuccess
	}
	x.o.Log.Info(authlog.Fields("user", x.user, "action", "enroll", "by", "self"))
	if x.data(Data{BackupCodes: codes}) != nil {
		return protocol.ResultAuthErr
	}
	return protocol.ResultSuccess
}

// cannotAdd says why an authenticator labelled label cannot be added to
// u, or "".
func cannotAdd(u keystore.User, label string) string {
	switch {
	case u.Find(label) >= 0:
		return fmt.Sprintf("you have an authenticator labelled %s already; choose another label (an administrator can remove it with otpgate reset --label)", label)
	case len(u.Authenticators) >= keystore.MaxAuthenticators:
		return fmt.Sprintf("you have %d authenticators, the most otpgate keeps; an administrator can remove one with otpgate reset --label", keystore.MaxAuthenticators)
	}
	return ""
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
