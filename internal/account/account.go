// Package account holds the management operations on one user's
// enrollment: enroll, new backup codes, status, unlock and reset. The CLI
// calls them as root, and the setuid helper calls them for a user's own
// account.
package account

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

// SecretBytes is the size of a new secret: 160 bits, as RFC 4226 advises.
const SecretBytes = 20

// lockWait bounds how long a management command waits for a login attempt
// on the same user.
const lockWait = 10 * time.Second

// ErrEnrolled is returned when enrolling over an existing secret without
// permission to replace it.
var ErrEnrolled = errors.New("already enrolled")

// ErrChanged is returned when the enrollment changed (an administrator
// reset or replaced it) after the code that allowed the change was
// checked.
var ErrChanged = errors.New("the enrollment changed since the code was checked")

// ErrCodeMismatch is returned when the confirmation code does not match.
var ErrCodeMismatch = errors.New("the code does not match the new secret")

// ErrLabelTaken is returned when adding an authenticator under a label the
// user has already.
var ErrLabelTaken = errors.New("the user has an authenticator with that label already")

// ErrTooMany is returned when adding an authenticator to a user who has
// keystore.MaxAuthenticators.
var ErrTooMany = fmt.Errorf("the user has %d authenticators, the most otpgate keeps", keystore.MaxAuthenticators)

// ErrNoLabel is returned when removing an authenticator the user does not
// have.
var ErrNoLabel = errors.New("the user has no authenticator with that label")

// Manager runs management operations on a store under a policy.
type Manager struct {
	Store  *keystore.Store
	Config config.Config
	Now    func() time.Time // nil means time.Now
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Enrollment is a new secret not yet saved.
type Enrollment struct {
	User   string
	Label  string // the authenticator's label; "" means keystore.DefaultLabel
	Secret []byte
	Params totp.Params
	URI    string // otpauth:// key URI for the authenticator app
}

func (e *Enrollment) label() string {
	if e.Label == "" {
		return keystore.DefaultLabel
	}
	return e.Label
}

// NewEnrollment makes a fresh secret for user. Nothing is written.
func (m *Manager) NewEnrollment(user string) (*Enrollment, error) {
	if err := keystore.ValidUser(user); err != nil {
		return nil, err
	}
	secret := make([]byte, SecretBytes)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("reading random bytes: %w", err)
	}
	e := &Enrollment{User: user, Secret: secret, Params: m.Config.Params}
	e.URI = KeyURI(m.Config.Issuer, user, secret, e.Params)
	return e, nil
}

// KeyURI returns the otpauth:// URI authenticator apps read from the QR
// code (the Google Authenticator key URI format).
func KeyURI(issuer, user string, secret []byte, p totp.Params) string {
	q := url.Values{}
	q.Set("secret", totp.EncodeSecret(secret))
	q.Set("issuer", issuer)
	q.Set("algorithm", p.Algorithm)
	q.Set("digits", fmt.Sprint(p.Digits))
	q.Set("period", fmt.Sprint(p.Period))
	// Spaces as %20, not "+": apps read the issuer parameter literally.
	// (A literal "+" is encoded as %2B, so the replacement is exact.)
	raw := strings.ReplaceAll(q.Encode(), "+", "%20")
	u := url.URL{Scheme: "otpauth", Host: "totp", Path: "/" + issuer + ":" + user, RawQuery: raw}
	return u.String()
}

// CheckCode reports whether code is a current code of the new secret, and
// returns its step.
func (m *Manager) CheckCode(e *Enrollment, code string) (int64, bool) {
	step, ok, _, err := totp.Match(e.Secret, code, m.now(), m.Config.Window, 0, e.Params)
	return step, ok && err == nil
}

// SaveOptions say how Save may treat an existing enrollment.
type SaveOptions struct {
	Replace bool // replace every existing authenticator with this one (root's --force)
	// Add adds the enrollment as one more authenticator of an enrolled
	// user, under its label, keeping the others and the backup codes
	// (Save then returns no codes). For a user not enrolled it is a first
	// enrollment.
	Add     bool
	Confirm string // when set, a current code of the new secret, checked before saving
	// IfUnchanged, when set, is the fingerprint (keystore.User.Fingerprint)
	// of the enrollment a current code was checked against: the secret is
	// replaced only if that enrollment is still the one stored, under the
	// lock, so a user's pending re-enrollment cannot overwrite an
	// administrator's reset or new enrollment made meanwhile.
	IfUnchanged string
}

// Save writes the enrollment with a new set of backup codes and returns
// the codes in clear, the only time they exist in clear; with opts.Add to
// an enrolled user, it adds one authenticator and returns no codes. With
// opts.Confirm, the code's step is recorded as used. The failure count and
// any lock are left as they are.
func (m *Manager) Save(e *Enrollment, opts SaveOptions) ([]string, error) {
	lock, err := m.Store.Lock(e.User, lockWait)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	old, err := lock.ReadUser()
	switch {
	case opts.IfUnchanged != "" && (err != nil || old.Fingerprint() != opts.IfUnchanged):
		return nil, ErrChanged
	case err == nil && opts.Add:
		return nil, m.add(lock, old, e, opts.Confirm)
	case err == nil && !opts.Replace:
		return nil, ErrEnrolled
	case err != nil && !errors.Is(err, keystore.ErrNotEnrolled) && !opts.Replace:
		return nil, err
	}
	st, err := lock.ReadState()
	if err != nil {
		return nil, err
	}
	// The last accepted steps belonged to the old secrets (and maybe to
	// other periods); for the new one only the confirmation code is used.
	st.LastSteps = nil
	if opts.Confirm != "" {
		step, ok := m.CheckCode(e, opts.Confirm)
		if !ok {
			return nil, ErrCodeMismatch
		}
		st.SetLastStep(e.label(), step)
	}
	codes, hashes, err := m.newCodes()
	if err != nil {
		return nil, err
	}
	u := keystore.User{
		Authenticators: []keystore.Authenticator{{Label: e.label(), Secret: e.Secret, Params: e.Params, Created: m.now()}},
		BackupHashes:   hashes,
	}
	if err := lock.WriteUser(u); err != nil {
		return nil, err
	}
	if err := lock.WriteState(st); err != nil {
		return nil, err
	}
	return codes, nil
}

// add adds e to u, the locked user's enrollment, as one more
// authenticator.
func (m *Manager) add(lock *keystore.Lock, u keystore.User, e *Enrollment, confirm string) error {
	if u.Find(e.label()) >= 0 {
		return ErrLabelTaken
	}
	if len(u.Authenticators) >= keystore.MaxAuthenticators {
		return ErrTooMany
	}
	st, err := lock.ReadState()
	if err != nil {
		return err
	}
	st.Keep(u)
	// A label used before (and removed since) starts afresh.
	st.SetLastStep(e.label(), 0)
	if confirm != "" {
		step, ok := m.CheckCode(e, confirm)
		if !ok {
			return ErrCodeMismatch
		}
		st.SetLastStep(e.label(), step)
	}
	u.Authenticators = append(u.Authenticators, keystore.Authenticator{Label: e.label(), Secret: e.Secret, Params: e.Params, Created: m.now()})
	if err := lock.WriteUser(u); err != nil {
		return err
	}
	return lock.WriteState(st)
}

// RemoveAuthenticator removes user's authenticator labelled label (one
// lost phone of several) and returns how many are left; removing the last
// one is Reset. The backup codes and the state stay.
func (m *Manager) RemoveAuthenticator(user, label string) (int, error) {
	lock, err := m.Store.Lock(user, lockWait)
	if err != nil {
		return 0, err
	}
	defer lock.Unlock()
	u, err := lock.ReadUser()
	if err != nil {
		return 0, err
	}
	i := u.Find(label)
	if i < 0 {
		return 0, fmt.Errorf("%w (%s has %s)", ErrNoLabel, user, strings.Join(u.Labels(), ", "))
	}
	if len(u.Authenticators) == 1 {
		return 0, lock.RemoveUser()
	}
	u.Authenticators = append(u.Authenticators[:i:i], u.Authenticators[i+1:]...)
	return len(u.Authenticators), lock.WriteUser(u)
}

func (m *Manager) newCodes() (codes, hashes []string, err error) {
	return backupcode.NewSet(m.Config.BackupCodes)
}

// NewBackupCodes replaces user's backup codes with a new set and returns
// it in clear. The old codes stop working; the failure count stays. When
// ifUnchanged is not "", the enrollment must still have that fingerprint
// (see SaveOptions.IfUnchanged), else ErrChanged.
func (m *Manager) NewBackupCodes(user, ifUnchanged string) ([]string, error) {
	lock, err := m.Store.Lock(user, lockWait)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	u, err := lock.ReadUser()
	if ifUnchanged != "" && (err != nil || u.Fingerprint() != ifUnchanged) {
		return nil, ErrChanged
	}
	if err != nil {
		return nil, err
	}
	codes, hashes, err := m.newCodes()
	if err != nil {
		return nil, err
	}
	u.BackupHashes = hashes
	if err := lock.WriteUser(u); err != nil {
		return nil, err
	}
	return codes, nil
}

// Status is what otpgate status reports; it holds no secret. Created,
// Algorithm, Digits and Period are the first authenticator's, as before
// there were several; Authenticators lists them all.
type Status struct {
	User           string                `json:"user"`
	Enrolled       bool                  `json:"enrolled"`
	Created        time.Time             `json:"created,omitzero"`
	Algorithm      string                `json:"algorithm,omitempty"`
	Digits         int                   `json:"digits,omitempty"`
	Period         int                   `json:"period,omitempty"`
	Authenticators []AuthenticatorStatus `json:"authenticators,omitempty"`
	BackupLeft     int                   `json:"backup_codes_left"`
	Failures       int                   `json:"failures"`
	Locked         bool                  `json:"locked"`
	LockedUntil    time.Time             `json:"locked_until,omitzero"`
	LastSuccess    time.Time             `json:"last_success,omitzero"`
	LastFailure    time.Time             `json:"last_failure,omitzero"`
}

// AuthenticatorStatus describes one authenticator, without its secret.
type AuthenticatorStatus struct {
	Label     string    `json:"label"`
	Created   time.Time `json:"created,omitzero"`
	Algorithm string    `json:"algorithm"`
	Digits    int       `json:"digits"`
	Period    int       `json:"period"`
}

// Status reads user's enrollment and state.
func (m *Manager) Status(user string) (Status, error) {
	s := Status{User: user}
	u, err := m.Store.ReadUser(user)
	switch {
	case err == nil:
		s.Enrolled = true
		for _, a := range u.Authenticators {
			s.Authenticators = append(s.Authenticators, AuthenticatorStatus{Label: a.Label, Created: a.Created,
				Algorithm: a.Params.Algorithm, Digits: a.Params.Digits, Period: a.Params.Period})
		}
		first := s.Authenticators[0]
		s.Created, s.Algorithm, s.Digits, s.Period = first.Created, first.Algorithm, first.Digits, first.Period
		s.BackupLeft = len(u.BackupHashes)
	case errors.Is(err, keystore.ErrNotEnrolled):
	default:
		return Status{}, err
	}
	st, err := m.Store.ReadState(user)
	if err != nil {
		return Status{}, err
	}
	s.Failures = st.Failures
	s.LastSuccess, s.LastFailure = st.LastSuccess, st.LastFailure
	if m.now().Before(st.LockedUntil) {
		s.Locked, s.LockedUntil = true, st.LockedUntil
	}
	return s, nil
}

// Unlock clears user's failure count and lock; the last accepted step
// stays, so unlocking never makes a used code valid again.
func (m *Manager) Unlock(user string) error {
	lock, err := m.Store.Lock(user, lockWait)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	st, err := lock.ReadState()
	if err != nil {
		// A damaged state file is what unlock is for. Start afresh, but
		// count every code up to the end of the window as used: the
		// damaged file may have held a recent step.
		st = keystore.State{}
		if u, uerr := lock.ReadUser(); uerr == nil {
			for _, a := range u.Authenticators {
				st.SetLastStep(a.Label, totp.Step(m.now(), a.Params.Period)+int64(m.Config.Window))
			}
		}
	}
	st.Failures, st.LockedUntil, st.LastFailure = 0, time.Time{}, time.Time{}
	return lock.WriteState(st)
}

// Reset removes user's enrollment (secret and backup codes), for a lost
// phone. The state file stays: the failure count and the last accepted
// step survive, so a reset never reopens a replay.
func (m *Manager) Reset(user string) error {
	lock, err := m.Store.Lock(user, lockWait)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if _, err := m.Store.ReadUser(user); errors.Is(err, keystore.ErrNotEnrolled) {
		return keystore.ErrNotEnrolled
	}
	return lock.RemoveUser()
}
