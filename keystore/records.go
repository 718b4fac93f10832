package keystore

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/tomlshape"
	"github.com/otpgate/otpgate/internal/totp"
)

// FormatVersion is the version key written in every store file.
const FormatVersion = 1

// MinSecretBytes is the shortest secret accepted: 128 bits (RFC 4226
// section 4 asks for at least that; otpgate makes 160).
const MinSecretBytes = 16

// StateFileSize is the size of every state file otpgate writes: the
// content, then a comment line that pads it. A write's size then never
// depends on the attempt's outcome, so no file-size limit or nearly full
// disk can let the write of one verdict through and fail another's.
const StateFileSize = 512

// maxBackupCodes bounds the hashes in one user file, and so the argon2id
// work one login can cause.
const maxBackupCodes = 50

// User is a user's enrollment: the secret, its code parameters and the
// hashes of the unused backup codes.
type User struct {
	Secret       []byte
	Params       totp.Params
	Created      time.Time
	BackupHashes []string
}

// State is what changes with every attempt.
type State struct {
	Failures    int       // consecutive failed attempts
	LockedUntil time.Time // zero when not locked
	LastStep    int64     // last accepted TOTP step; 0 when none
	LastSuccess time.Time
	LastFailure time.Time
}

// Fingerprint identifies an enrollment: the secret, its parameters and
// when it was made (not the backup codes, which a login may spend). A
// change that must not overwrite a newer enrollment (a user's pending
// re-enrollment, a new set of backup codes) is made only if the
// fingerprint is still the one its code was checked against.
func (u User) Fingerprint() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s/%d/%d/%d/", u.Params.Algorithm, u.Params.Digits, u.Params.Period, u.Created.Unix())
	h.Write(u.Secret)
	return hex.EncodeToString(h.Sum(nil))
}

type userFile struct {
	Version     int       `toml:"version"`
	Secret      string    `toml:"secret"`
	Algorithm   string    `toml:"algorithm"`
	Digits      int       `toml:"digits"`
	Period      int       `toml:"period"`
	Created     time.Time `toml:"created"`
	BackupCodes []string  `toml:"backup_codes"`
}

type stateFile struct {
	Version     int        `toml:"version"`
	Failures    int        `toml:"failures"`
	LockedUntil *time.Time `toml:"locked_until,omitempty"`
	LastStep    int64      `toml:"last_step"`
	LastSuccess *time.Time `toml:"last_success,omitempty"`
	LastFailure *time.Time `toml:"last_failure,omitempty"`
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

// ParseUser parses a user file.
func ParseUser(data []byte) (User, error) {
	var f userFile
	if err := decodeStrict(data, &f, "version", "secret", "algorithm", "digits", "period"); err != nil {
		return User{}, err
	}
	if f.Version != FormatVersion {
		return User{}, fmt.Errorf("version %d is not supported (this otpgate reads version %d)", f.Version, FormatVersion)
	}
	secret, err := DecodeSecret(f.Secret)
	if err != nil {
		return User{}, err
	}
	created, err := fileTime("created", f.Created)
	if err != nil {
		return User{}, err
	}
	u := User{
		Secret:  secret,
		Params:  totp.Params{Algorithm: f.Algorithm, Digits: f.Digits, Period: f.Period},
		Created: created,
	}
	if err := u.Params.Check(); err != nil {
		return User{}, err
	}
	if err := checkHashes(f.BackupCodes); err != nil {
		return User{}, err
	}
	u.BackupHashes = f.BackupCodes
	return u, nil
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

// MarshalUser returns the file form of u.
func MarshalUser(u User) ([]byte, error) {
	if len(u.Secret) < MinSecretBytes {
		return nil, fmt.Errorf("secret is %d bits; otpgate needs at least %d", 8*len(u.Secret), 8*MinSecretBytes)
	}
	if err := u.Params.Check(); err != nil {
		return nil, err
	}
	if err := checkHashes(u.BackupHashes); err != nil {
		return nil, err
	}
	created, err := fileTime("created", u.Created)
	if err != nil {
		return nil, err
	}
	hashes := u.BackupHashes
	if hashes == nil {
		hashes = []string{}
	}
	return encode(userFile{
		Version:     FormatVersion,
		Secret:      totp.EncodeSecret(u.Secret),
		Algorithm:   u.Params.Algorithm,
		Digits:      u.Params.Digits,
		Period:      u.Params.Period,
		Created:     created,
		BackupCodes: hashes,
	})
}

// ParseState parses a state file.
func ParseState(data []byte) (State, error) {
	var f stateFile
	if err := decodeStrict(data, &f, "version", "failures", "last_step"); err != nil {
		return State{}, err
	}
	if f.Version != FormatVersion {
		return State{}, fmt.Errorf("version %d is not supported (this otpgate reads version %d)", f.Version, FormatVersion)
	}
	if f.Failures < 0 || f.LastStep < 0 {
		return State{}, fmt.Errorf("negative failures or last_step")
	}
	st := State{Failures: f.Failures, LastStep: f.LastStep}
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

// MarshalState returns the file form of st.
func MarshalState(st State) ([]byte, error) {
	if st.Failures < 0 || st.LastStep < 0 {
		return nil, fmt.Errorf("negative failures or last_step")
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
		LastStep:    st.LastStep,
		LastSuccess: opt("last_success", st.LastSuccess),
		LastFailure: opt("last_failure", st.LastFailure),
	}
	if err != nil {
		return nil, err
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
