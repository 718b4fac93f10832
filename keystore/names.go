package keystore

import (
	"errors"
	"unicode/utf8"
)

// MaxUserLen is the longest user name accepted, in bytes.
const MaxUserLen = 64

// ErrInvalidUser is returned for a user name that cannot safely become a
// file name. Callers must not log the rejected name: a mistyped user name
// is often a password.
var ErrInvalidUser = errors.New("invalid user name")

// ValidUser returns ErrInvalidUser unless name is 1 to MaxUserLen bytes of
// valid UTF-8 with no "/", no leading ".", and no control characters.
func ValidUser(name string) error {
	if name == "" || len(name) > MaxUserLen || name[0] == '.' || !utf8.ValidString(name) {
		return ErrInvalidUser
	}
	for _, r := range name {
		if r == '/' || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ErrInvalidUser
		}
	}
	return nil
}
