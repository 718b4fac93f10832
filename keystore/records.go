package keystore

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/tomlshape"
	"github.com/otpgate/otpgate/internal/totp"
)

// FormatVersion is the version key written in every store file. Version
// 1 files (one secret per user, one last_step in the state) are still
// read; a change rewrites them as version 2.
const FormatVersion = 2

// MinSecretBytes is the shortest secret accepted: 128 bits (RFC 4226
// section 4 asks for at least that; otpgate makes 160).
const MinSecretBytes = 16

// StateFileSize is the size of every state file otpgate writes: the
// content, then a comment line that pads it. A write's size then never
// depends on the attempt's outcome, so no file-size limit or nearly full
// disk can let the write of one verdict through and fail another's. It
// holds the last step of MaxAuthenticators authenticators with the
// longest labels.
const StateFileSize = 1024

// maxBackupCodes bounds the hashes in one user file, and so the argon2id
// work one login can cause.
const maxBackupCodes = 50

// MaxAuthenticators bounds the authenticators of one user, and so the
// TOTP work of one login and the size of the state file.
const MaxAuthenticators = 8

// MaxLabelLen is the longest authenticator label, in bytes.
const MaxLabelLen = 32

// DefaultLabel names the authenticator of a version 1 user file, and a
// first enrollment made without a label.
const DefaultLabel = "default"

// Authenticator is one secret of a user (one app entry, one device), with
// its code parameters.
type Authenticator struct {
	Label   string // unique per user; see ValidLabel
	Secret  []byte
	Params  totp.Params
	Created time.Time
}

// User is a user's enrollment: one to MaxAuthenticators authenticators,
// any of which gives a valid code, and the hashes of the unused backup
// codes.
type User struct {
	Authenticators []Authenticator
	BackupHashes   []string
}

// Find returns the index of the authenticator labelled label, or -1.
func (u User) Find(label string) int {
	for i, a := range u.Authenticators {
		if a.Label == label {
			return i
		}
	}
	return -1
}

// Labels returns the labels of u's authenticators, in file order.
func (u User) Labels() []string {
	labels := make([]string, len(u.Authenticators))
	for i, a := range u.Authenticators {
		labels[i] = a.Label
	}
	return labels
}

// State is what changes with every attempt.
type State struct {
	Failures    int              // consecutive failed attempts
	LockedUntil time.Time        // zero when not locked
	LastSteps   map[string]int64 // last accepted TOTP step per authenticator label; absent is 0 (none)
	LastSuccess time.Time
	LastFailure time.Time
}

// LastStep returns the last accepted step of the authenticator labelled
// label, 0 when none.
func (st State) LastStep(label string) int64 { return st.LastSteps[label] }

// SetLastStep records step as the last accepted step of label; 0 removes
// the entry.
func (st *State) SetLastStep(label string, step int64) {
	if step == 0 {
		delete(st.LastSteps, label)
		return
	}
	if st.LastSteps == nil {
		st.LastSteps = map[string]int64{}
	}
	st.LastSteps[label] = step
}

// Keep drops the last steps of labels u no longer has, so the state holds
// at most MaxAuthenticators of them.
func (st *State) Keep(u User) {
	for label := range st.LastSteps {
		if u.Find(label) < 0 {
			delete(st.LastSteps, label)
		}
	}
}

// ValidLabel returns an error naming the rule unless label is 1 to
// MaxLabelLen characters of A-Z, a-z, 0-9, ".", "_" and "-".
func ValidLabel(label string) error {
	if label == "" || len(label) > MaxLabelLen {
		return fmt.Errorf("label %q: use 1 to %d characters of A-Z, a-z, 0-9, '.', '_' and '-'", label[:min(len(label), MaxLabelLen)], MaxLabelLen)
	}
	for _, c := range []byte(label) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			// Not quoted: the bad character may be anything.
			return fmt.Errorf("label has the character %q; use 1 to %d characters of A-Z, a-z, 0-9, '.', '_' and '-'", rune(c), MaxLabelLen)
		}
	}
	return nil
}

// Fingerprint identifies an enrollment: every authenticator's label,
// secret, parameters and creation time (not the backup codes, which a
// login may spend). A change that must not overwrite a newer enrollment
// (a user's pending re-enrollment, a new authenticator, a new set of
// backup codes) is made only if the fingerprint is still the one its code
// was checked against.
func (u User) Fingerprint() string {
	h := sha256.New()
	for _, a := range u.Authenticators {
		fmt.Fprintf(h, "%s/%s/%d/%d/%d/%d/", a.Label, a.Params.Algorithm, a.Params.Digits, a.Params.Period, a.Created.Unix(), len(a.Secret))
		h.Write(a.Secret)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// userFileV1 is a version 1 user file: one secret.
type userFileV1 struct {
	Version     int       `toml:"version"`
	Secret      string    `toml:"secret"`
	Algorithm   string    `toml:"algorithm"`
	Digits      int       `toml:"digits"`
	Period      int       `toml:"period"`
	Created     time.Time `toml:"created"`
	BackupCodes []string  `toml:"backup_codes"`
}

// userFile is a version 2 user file.
type userFile struct {
	Version        int                 `toml:"version"`
	BackupCodes    []string            `toml:"backup_codes"`
	Authenticators []authenticatorFile `toml:"authenticator"`
}

type authenticatorFile struct {
	Label     string    `toml:"label"`
	Secret    string    `toml:"secret"`
	Algorithm string    `toml:"algorithm"`
	Digits    int       `toml:"digits"`
	Period    int       `toml:"period"`
	Created   time.Time `toml:"created"`
}

// stateFileV1 is a version 1 state file: one last_step.
type stateFileV1 struct {
	Version     int        `toml:"version"`
	Failures    int        `toml:"failures"`
	LockedUntil *time.Time `toml:"locked_until,omitempty"`
	LastStep    int64      `toml:"last_step"`
	LastSuccess *time.Time `toml:"last_success,omitempty"`
	LastFailure *time.Time `toml:"last_failure,omitempty"`
}

// stateFile is a version 2 state file.
type stateFile struct {
	Version        int         `toml:"version"`
	Failures       int         `toml:"failures"`
	LockedUntil    *time.Time  `toml:"locked_until,omitempty"`
	LastSuccess    *time.Time  `toml:"last_success,omitempty"`
	LastFailure    *time.Time  `toml:"last_failure,omitempty"`
	Authenticators []stepEntry `toml:"authenticator"`
}

type stepEntry struct {
	Label    string `toml:"label"`
	LastStep int64  `toml:"last_step"`
}

// fileVersion reads the version key alone, before the strict decoding
// into that version's form.
func fileVersion(data []byte) (int, error) {
	if err := tomlshape.Check(data); err != nil {
		return 0, err
	}
	var v struct {
		Version int `toml:"version"`
	}
	md, err := toml.Decode(string(data), &v)
	if err != nil || !md.IsDefined("version") {
		// decodeStrict says what is wrong, without quoting the file.
		return 0, nil
	}
	return v.Version, nil
}

// supported returns the error for a version this otpgate does not read.
func supported(version int) error {
	return fmt.Errorf("version %d is not supported (this otpgate reads versions 1 and %d)", version, FormatVersion)
}

// decodeStrict decodes data into v, refusing unknown keys and requiring
// every key in required.
func decodeStrict(data []byte, v any, required ...string) error {
	if err := tomlshape.Check(data); err != nil {
		return err
	}
	md, err := toml.Decode(string(data), v)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			// Not perr.Message: it can quote the line, and the line can
			// hold a secret that must not reach a log.
			return fmt.Errorf("line %d: not valid TOML", perr.Position.Line)
		}
		return errors.New("not valid TOML for this file")
	}
	if extra := md.Undecoded(); len(extra) > 0 {
		// At most 32 bytes of it: a value pasted where a key goes could
		// be a secret, and the message goes to the log.
		k := extra[0].String()
		return fmt.Errorf("unknown key %q", k[:min(len(k), 32)])
	}
	for _, k := range required {
		if !md.IsDefined(k) {
			return fmt.Errorf("missing key %q", k)
		}
	}
	return nil
}

// ParseUser parses a user file of version 1 (read as one authenticator
// labelled DefaultLabel) or 2.
func ParseUser(data []byte) (User, error) {
	version, err := fileVersion(data)
	if err != nil {
		return User{}, err
	}
	if version == 1 {
		return parseUserV1(data)
	}
	if version != 0 && version != FormatVersion {
		return User{}, supported(version)
	}
	var f userFile
	if err := decodeStrict(data, &f, "version", "authenticator"); err != nil {
		return User{}, err
	}
	if f.Version != FormatVersion {
		return User{}, supported(f.Version)
	}
	if n := len(f.Authenticators); n == 0 || n > MaxAuthenticators {
		return User{}, fmt.Errorf("%d authenticators; a user has 1 to %d", n, MaxAuthenticators)
	}
	var u User
	for i, af := range f.Authenticators {
		a, err := parseAuthenticator(af)
		if err != nil {
			return User{}, fmt.Errorf("authenticator %d: %w", i+1, err)
		}
		if u.Find(a.Label) >= 0 {
			return User{}, fmt.Errorf("authenticator %d: label %q is used twice", i+1, a.Label)
		}
		u.Authenticators = append(u.Authenticators, a)
	}
	if err := checkHashes(f.BackupCodes); err != nil {
		return User{}, err
	}
	u.BackupHashes = f.BackupCodes
	return u, nil
}

func parseAuthenticator(f authenticatorFile) (Authenticator, error) {
	if err := ValidLabel(f.Label); err != nil {
		return Authenticator{}, err
	}
	secret, err := DecodeSecret(f.Secret)
	if err != nil {
		return Authenticator{}, err
	}
	created, err := fileTime("created", f.Created)
	if err != nil {
		return Authenticator{}, err
	}
	a := Authenticator{
		Label:   f.Label,
		Secret:  secret,
		Params:  totp.Params{Algorithm: f.Algorithm, Digits: f.Digits, Period: f.Period},
		Created: created,
	}
	if err := a.Params.Check(); err != nil {
		return Authenticator{}, err
	}
	return a, nil
}

func parseUserV1(data []byte) (User, error) {
	var f userFileV1
	if err := decodeStrict(data, &f, "version", "secret", "algorithm", "digits", "period"); err != nil {
		return User{}, err
	}
	a, err := parseAuthenticator(authenticatorFile{
		Label: DefaultLabel, Secret: f.Secret, Algorithm: f.Algorithm,
		Digits: f.Digits, Period: f.Period, Created: f.Created,
	})
	if err != nil {
		return User{}, err
	}
	if err := checkHashes(f.BackupCodes); err != nil {
		return User{}, err
	}
	return User{Authenticators: []Authenticator{a}, BackupHashes: f.BackupCodes}, nil
}

// checkHashes refuses backup code hashes ParseUser would not read.
func checkHashes(hashes []string) error {
	if len(hashes) > maxBackupCodes {
		return fmt.Errorf("%d backup code hashes, over the limit of %d", len(hashes), maxBackupCodes)
	}
	for i, h := range hashes {
		if err := backupcode.CheckHash(h); err != nil {
			return fmt.Errorf("backup_codes[%d]: %w", i, err)
		}
	}
	return nil
}

// fileTime returns t as the files hold it: UTC, in whole seconds. A time
// whose UTC year is outside 1 to 9999 is refused: TOML cannot write it,
// so a file holding it could be read once but not rewritten.
func fileTime(key string, t time.Time) (time.Time, error) {
	t = t.UTC().Truncate(time.Second)
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}, fmt.Errorf("%s: year %d is out of range", key, y)
	}
	return t, nil
}

// DecodeSecret decodes a base32 secret (case, spaces and padding ignored)
// and refuses one shorter than MinSecretBytes.
func DecodeSecret(s string) ([]byte, error) {
	s = strings.ToUpper(strings.ReplaceAll(s, " ", ""))
	s = strings.TrimRight(s, "=")
	// A length of 1, 3 or 6 characters past a multiple of 8 is not
	// whole bytes; the decoder would silently drop that tail.
	if n := len(s) % 8; n == 1 || n == 3 || n == 6 {
		return nil, fmt.Errorf("secret is not valid base32")
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("secret is not valid base32")
	}
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("secret is %d bits; otpgate needs at least %d", 8*len(secret), 8*MinSecretBytes)
	}
	return secret, nil
}

// MarshalUser returns the version 2 file form of u.
func MarshalUser(u User) ([]byte, error) {
	if n := len(u.Authenticators); n == 0 || n > MaxAuthenticators {
		return nil, fmt.Errorf("%d authenticators; a user has 1 to %d", n, MaxAuthenticators)
	}
	f := userFile{Version: FormatVersion, BackupCodes: u.BackupHashes}
	for i, a := range u.Authenticators {
		if err := ValidLabel(a.Label); err != nil {
			return nil, fmt.Errorf("authenticator %d: %w", i+1, err)
		}
		if u.Find(a.Label) != i {
			return nil, fmt.Errorf("authenticator %d: label %q is used twice", i+1, a.Label)
		}
		if len(a.Secret) < MinSecretBytes {
			return nil, fmt.Errorf("authenticator %s: secret is %d bits; otpgate needs at least %d", a.Label, 8*len(a.Secret), 8*MinSecretBytes)
		}
		if err := a.Params.Check(); err != nil {
			return nil, fmt.Errorf("authenticator %s: %w", a.Label, err)
		}
		created, err := fileTime("created", a.Created)
		if err != nil {
			return nil, fmt.Errorf("authenticator %s: %w", a.Label, err)
		}
		f.Authenticators = append(f.Authenticators, authenticatorFile{
			Label:     a.Label,
			Secret:    totp.EncodeSecret(a.Secret),
			Algorithm: a.Params.Algorithm,
			Digits:    a.Params.Digits,
			Period:    a.Params.Period,
			Created:   created,
		})
	}
	if err := checkHashes(u.BackupHashes); err != nil {
		return nil, err
	}
	if f.BackupCodes == nil {
		f.BackupCodes = []string{}
	}
	return encode(f)
}

// ParseState parses a state file of version 1 (its last_step is read as
// the step of the authenticator labelled DefaultLabel) or 2.
func ParseState(data []byte) (State, error) {
	version, err := fileVersion(data)
	if err != nil {
		return State{}, err
	}
	if version != 0 && version != 1 && version != FormatVersion {
		return State{}, supported(version)
	}
	var f stateFile
	if version == 1 {
		var v1 stateFileV1
		if err := decodeStrict(data, &v1, "version", "failures", "last_step"); err != nil {
			return State{}, err
		}
		f = stateFile{Version: FormatVersion, Failures: v1.Failures, LockedUntil: v1.LockedUntil,
			LastSuccess: v1.LastSuccess, LastFailure: v1.LastFailure}
		if v1.LastStep < 0 {
			return State{}, fmt.Errorf("negative last_step")
		}
		if v1.LastStep > 0 {
			f.Authenticators = []stepEntry{{Label: DefaultLabel, LastStep: v1.LastStep}}
		}
	} else if err := decodeStrict(data, &f, "version", "failures"); err != nil {
		return State{}, err
	}
	if f.Version != FormatVersion {
		return State{}, supported(f.Version)
	}
	if f.Failures < 0 {
		return State{}, fmt.Errorf("negative failures")
	}
	if len(f.Authenticators) > MaxAuthenticators {
		return State{}, fmt.Errorf("%d authenticators; a user has at most %d", len(f.Authenticators), MaxAuthenticators)
	}
	st := State{Failures: f.Failures}
	for i, e := range f.Authenticators {
		if err := ValidLabel(e.Label); err != nil {
			return State{}, fmt.Errorf("authenticator %d: %w", i+1, err)
		}
		if e.LastStep < 0 {
			return State{}, fmt.Errorf("authenticator %s: negative last_step", e.Label)
		}
		if _, dup := st.LastSteps[e.Label]; dup {
			return State{}, fmt.Errorf("authenticator %d: label %q is used twice", i+1, e.Label)
		}
		if st.LastSteps == nil {
			st.LastSteps = map[string]int64{}
		}
		st.LastSteps[e.Label] = e.LastStep
	}
	for _, t := range []struct {
		key string
		in  *time.Time
		out *time.Time
	}{
		{"locked_until", f.LockedUntil, &st.LockedUntil},
		{"last_success", f.LastSuccess, &st.LastSuccess},
		{"last_failure", f.LastFailure, &st.LastFailure},
	} {
		if t.in == nil {
			continue
		}
		v, err := fileTime(t.key, *t.in)
		if err != nil {
			return State{}, err
		}
		*t.out = v
	}
	return st, nil
}

// MarshalState returns the version 2 file form of st, StateFileSize
// bytes.
func MarshalState(st State) ([]byte, error) {
	if st.Failures < 0 {
		return nil, fmt.Errorf("negative failures")
	}
	if len(st.LastSteps) > MaxAuthenticators {
		return nil, fmt.Errorf("%d last steps; a user has at most %d authenticators", len(st.LastSteps), MaxAuthenticators)
	}
	var err error
	opt := func(key string, t time.Time) *time.Time {
		if t.IsZero() || err != nil {
			return nil
		}
		t, err = fileTime(key, t)
		return &t
	}
	f := stateFile{
		Version:     FormatVersion,
		Failures:    st.Failures,
		LockedUntil: opt("locked_until", st.LockedUntil),
		LastSuccess: opt("last_success", st.LastSuccess),
		LastFailure: opt("last_failure", st.LastFailure),
	}
	if err != nil {
		return nil, err
	}
	labels := make([]string, 0, len(st.LastSteps))
	for label := range st.LastSteps {
		labels = append(labels, label)
	}
	sort.Strings(labels)
	for _, label := range labels {
		step := st.LastSteps[label]
		if err := ValidLabel(label); err != nil {
			return nil, err
		}
		if step < 0 {
			return nil, fmt.Errorf("authenticator %s: negative last_step", label)
		}
		f.Authenticators = append(f.Authenticators, stepEntry{Label: label, LastStep: step})
	}
	data, err := encode(f)
	if err != nil {
		return nil, err
	}
	return pad(data, StateFileSize)
}

// pad appends a comment line that makes data exactly size bytes.
func pad(data []byte, size int) ([]byte, error) {
	const head = "# padding: every state file is the same size\n"
	n := size - len(data) - len(head) - 2 // "#" ... "\n"
	if n < 0 {
		return nil, fmt.Errorf("state is %d bytes, over the file size %d", len(data), size)
	}
	out := make([]byte, 0, size)
	out = append(out, data...)
	out = append(out, head...)
	out = append(out, '#')
	out = append(out, bytes.Repeat([]byte{' '}, n)...)
	return append(out, '\n'), nil
}

func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
