package backupcode

import (
	"encoding/base64"
	"fmt"

	"golang.org/x/crypto/argon2"
)

// Parts are the pieces of a stored hash, for a store that keeps them in
// columns of its own (internal/pgstore): the kind, the argon2id
// parameters as written in the PHC string without the kind mark
// ("m=8192,t=2,p=1"), the salt and the key.
type Parts struct {
	Kind   Kind
	Params string
	Salt   []byte
	Key    []byte
}

// Params returns the argon2id parameters every hash otpgate writes has,
// in the form of Parts.Params.
func Params() string {
	return fmt.Sprintf("m=%d,t=%d,p=%d", memoryKiB, passes, lanes)
}

// SplitHash returns the parts of a hash written by Hash, HashSet or
// HashScratchSet; any other string is ErrBadHash.
func SplitHash(h string) (Parts, error) {
	p, err := parse(h)
	if err != nil {
		return Parts{}, err
	}
	return Parts{Kind: p.kind, Params: Params(), Salt: p.salt, Key: p.key}, nil
}

// JoinHash is the inverse of SplitHash: the PHC string of p, refused
// (ErrBadHash) unless it is one SplitHash could have returned.
func JoinHash(p Parts) (string, error) {
	if p.Params != Params() || len(p.Salt) != saltLen || len(p.Key) != keyLen || (p.Kind != KindCode && p.Kind != KindScratch) {
		return "", ErrBadHash
	}
	enc := base64.RawStdEncoding
	mark := ""
	if p.Kind == KindScratch {
		mark = kindParam
	}
	return fmt.Sprintf("$argon2id$v=%d$%s%s$%s$%s", argon2.Version, p.Params, mark, enc.EncodeToString(p.Salt), enc.EncodeToString(p.Key)), nil
}

// Key returns the argon2id key of a normalized code under salt, with the
// parameters params (which must be Params()): what a store that keeps the
// keys to itself compares with them.
func Key(code, params string, salt []byte) ([]byte, error) {
	if params != Params() || len(salt) != saltLen {
		return nil, ErrBadHash
	}
	return argon2.IDKey([]byte(code), salt, passes, memoryKiB, lanes, keyLen), nil
}
