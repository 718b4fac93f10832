package helper

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/nss"
	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/internal/qrterm"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

// ArgFirstLogin is the pam.d argument that offers first-login enrollment
// on a stack (with [enroll] first_login = true in the config): the
// administrator's statement that a first factor (a key, a password) has
// been checked before otpgate on that stack. In self mode it is the
// argument of a verify request from a client that can show the enrollment
// screens (sshcheck with a terminal).
const ArgFirstLogin = "first_login"

// Messages of first-login enrollment.
const (
	// enrolledMeanwhileMsg: two first logins of one user raced, and the
	// other one saved its secret first.
	enrolledMeanwhileMsg = "another login set up a verification code for %s meanwhile; nothing was saved here. Log in again with a code from the app entry that login showed"
	// noMatchMsg ends a first-login enrollment without a matching code.
	noMatchMsg     = "no matching code after %d tries; no verification code was set up"
	mismatchLine   = "That code does not match. Check the app's clock and the entry you scanned.\n"
	enterCodeFmt   = "Enter the %d-digit code the app shows: "
	acknowledgeMsg = "Press Enter once you have written them down: "
)

// firstLogin offers a user who must use a code and has none a new secret
// inside the login: it shows the key URI and a QR code, asks for a code of
// the new secret (confirmTries times at most), saves it with new backup
// codes, and shows those. The caller has established that a first factor
// was checked before (the pam.d argument first_login; sshcheck, which runs
// after the key) and that [enroll] first_login is on.
//
// Every screen is the text of a prompt, not info lines: a prompt is shown
// under PAM_SILENT too (sudo passes it), and sshd puts it in one
// keyboard-interactive request. Nothing is stored unless a code of the new
// secret came back; Save without Replace keeps the first of two parallel
// first logins and refuses the second.
//
// It returns the verdict and true when the login is decided: enrolled
// (success), or denied because another login enrolled meanwhile or the
// store failed. It returns false when the person did not complete it (no
// answer, no matching code): the login then goes on as for any user who is
// not enrolled.
func firstLogin(s *session, cfg config.Config, o Options, user, service, rhost string) (string, bool) {
	log := func(outcome string, kv ...string) {
		logLine(o.Log, user, service, rhost, outcome, append(kv, "action", "enroll", "by", "first-login")...)
	}
	storeErr := func(err error) (string, bool) {
		log("error", "reason", "store-error", "error", err.Error())
		s.fail("%s", setupErrMsg)
		return protocol.ResultAuthErr, true
	}
	// Only for an account the system knows (NSS): a secret stored for a
	// name nobody has yet would wait for whoever gets that name.
	r := o.NSS
	if r == nil {
		r = nss.Default
	}
	if _, err := r.LookupUser(user); err != nil {
		log("refused", "reason", "unknown-user", "error", err.Error())
		return "", false
	}
	store := keystore.New(cfg.Store)
	// An account locked by wrong codes (of a secret an administrator has
	// since reset) stays locked: no new secret until the lock ends.
	st, err := store.ReadState(user)
	if err != nil {
		return storeErr(err)
	}
	if o.now().Before(st.LockedUntil) {
		logLine(o.Log, user, service, rhost, "locked", "reason", "locked", "failures", strconv.Itoa(st.Failures),
			"locked_until", st.LockedUntil.UTC().Format(time.RFC3339), "action", "enroll", "by", "first-login")
		s.fail("too many wrong codes; try again after %s", st.LockedUntil.Local().Format(LockTimeFormat))
		return protocol.ResultMaxTries, true
	}
	mgr := &account.Manager{Store: store, Config: cfg, Now: o.Now}
	en, err := mgr.NewEnrollment(user)
	if err != nil {
		return storeErr(err)
	}
	defer clear(en.Secret)
	uri := CompactKeyURI(cfg.Issuer, user, en.Secret, en.Params)
	m, err := qrterm.SmallMatrix(uri)
	if err != nil {
		return storeErr(err)
	}
	text := enrollScreen(user, uri, totp.EncodeSecret(en.Secret), qrterm.UTF8(m))
	var code string
	for try := 1; ; try++ {
		answer, err := s.ask(text+fmt.Sprintf(enterCodeFmt, en.Params.Digits), false)
		if err != nil {
			log("refused", "reason", "no-answer", "error", err.Error())
			return "", false
		}
		c := strings.TrimSpace(string(answer))
		clear(answer)
		if _, ok := mgr.CheckCode(en, c); ok {
			code = c
			break
		}
		if try == confirmTries {
			log("refused", "reason", "wrong-code")
			s.fail(noMatchMsg, confirmTries)
			return "", false
		}
		text = mismatchLine
	}
	codes, err := mgr.Save(en, account.SaveOptions{Confirm: code})
	switch {
	case errors.Is(err, account.ErrEnrolled):
		log("denied", "reason", "enrolled-meanwhile")
		s.fail(enrolledMeanwhileMsg, user)
		return protocol.ResultAuthErr, true
	case errors.Is(err, account.ErrCodeMismatch):
		// The code was current when checked and is not now (a step
		// boundary under the lock wait): nothing was saved.
		log("refused", "reason", "wrong-code")
		s.fail("the code expired while it was being saved; no verification code was set up")
		return "", false
	case err != nil:
		return storeErr(fmt.Errorf("%w; nothing was saved", err))
	}
	log("accepted", "method", "totp")
	// The backup codes exist in clear only here. A prompt, so that sshd
	// shows them before the session (its info lines after the last
	// prompt wait until the session starts, and only a terminal session
	// shows them) and sudo shows them under PAM_SILENT.
	answer, err := s.ask(backupScreen(user, codes), true)
	clear(answer)
	if err != nil {
		// Saved, but the client went away: the login is not let through
		// on a conversation that failed.
		logLine(o.Log, user, service, rhost, "denied", "reason", "no-answer", "error", err.Error())
		return protocol.ResultAuthErr, true
	}
	return protocol.ResultSuccess, true
}

// enrollScreen is the text above the first code prompt: what happens, the
// URI and the key, and the QR code last, right above the prompt, so that
// in an 80x24 terminal the lines that scroll away are the text ones.
func enrollScreen(user, uri, key, qr string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "otpgate: no verification code is set up for %s yet; set one up now.\n", user)
	b.WriteString("Scan the QR code below with your authenticator app, or add the key by hand.\n")
	fmt.Fprintf(&b, "URI: %s\nKey: %s\n", uri, totp.GroupKey(key))
	b.WriteString(qr)
	return b.String()
}

// backupScreen is the last prompt: the backup codes, two to a line.
func backupScreen(user string, codes []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Saved: %s logs in with a code from the app from now on.\n", user)
	b.WriteString("Backup codes (each works once in place of a code; keep them safe, they are\nnot shown again; otpgate backup-codes makes a new set):\n")
	for i, c := range codes {
		if i%2 == 0 {
			b.WriteString("    ")
		} else {
			b.WriteString("   ")
		}
		b.WriteString(c)
		if i%2 == 1 || i == len(codes)-1 {
			b.WriteString("\n")
		}
	}
	b.WriteString(acknowledgeMsg)
	return b.String()
}

// CompactKeyURI is account.KeyURI without the parameters that every app
// assumes when they are missing (algorithm SHA1, 6 digits, period 30):
// a shorter URI makes a smaller QR code, which matters inside a login
// prompt. Parameters that differ from those are kept.
func CompactKeyURI(issuer, user string, secret []byte, p totp.Params) string {
	full := account.KeyURI(issuer, user, secret, p)
	head, query, _ := strings.Cut(full, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return full
	}
	if p.Algorithm == totp.Default.Algorithm {
		q.Del("algorithm")
	}
	if p.Digits == totp.Default.Digits {
		q.Del("digits")
	}
	if p.Period == totp.Default.Period {
		q.Del("period")
	}
	// As KeyURI: spaces as %20, which apps read literally.
	return head + "?" + strings.ReplaceAll(q.Encode(), "+", "%20")
}
