// Package backupcode makes single-use backup codes and checks them against
// their argon2id hashes.
//
// A code is 10 characters of Crockford base32 (50 bits from crypto/rand),
// shown as XXXXX-XXXXX. Only argon2id hashes are stored, in the PHC string
// form $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>.
//
// The codes of one set share one random 16-byte salt (HashSet), so that
// checking a typed code costs one argon2id hash however many codes are
// left: the hash of the input under that salt is compared with every
// stored hash. Older files hold one salt per code; Find reads them too, at
// one hash per distinct salt, until the user's next set of codes.
//
// A second kind of code exists for users imported from
// google-authenticator: its scratch codes, 8 decimal digits
// (KindScratch). Their hashes carry the kind in the PHC parameters
// (m=<KiB>,t=<passes>,p=<lanes>,kind=scratch), so a hash says which kind
// of input it can match, and hashes without the parameter (every file
// written before) stay what they were: codes of 10 characters.
package backupcode

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Alphabet is Crockford's base32 alphabet: no I, L, O or U.
const Alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// Length is the number of characters in a code, without the dash.
const Length = 10

// ScratchLength is the number of digits in a google-authenticator scratch
// code.
const ScratchLength = 8

// Kind is the kind of a backup code: what its input looks like.
type Kind int

// The kinds of backup code.
const (
	KindCode    Kind = iota // 10 Crockford base32 characters, made by New
	KindScratch             // 8 digits, a google-authenticator scratch code carried over by an import
)

// kindParam is the PHC parameter that marks a scratch code's hash.
const kindParam = ",kind=scratch"

// Hash parameters. One hash costs about 10 ms and 8 MiB on a 2020s server
// core (see BenchmarkCheck), once per backup-code attempt, while a stolen
// user file still costs an attacker 2^50 of them for a set of ten codes
// (2^50 / 10 per code found, as the codes share a salt).
const (
	memoryKiB = 8 * 1024
	passes    = 2
	lanes     = 1
	saltLen   = 16
	keyLen    = 32
)

// New returns n fresh codes, formatted XXXXX-XXXXX.
func New(n int) ([]string, error) {
	codes := make([]string, n)
	buf := make([]byte, Length)
	for i := range codes {
		if _, err := rand.Read(buf); err != nil {
			return nil, fmt.Errorf("backup codes: reading random bytes: %w", err)
		}
		var b strings.Builder
		for j, c := range buf {
			if j == Length/2 {
				b.WriteByte('-')
			}
			b.WriteByte(Alphabet[c&31]) // 256 is a multiple of 32: no bias
		}
		codes[i] = b.String()
	}
	return codes, nil
}

// Normalize returns the canonical form of s if it looks like a backup code:
// spaces and dashes are dropped, case is ignored, and the letters Crockford
// reads as digits (O as 0, I and L as 1) are mapped. ok is false for
// anything else.
func Normalize(s string) (code string, ok bool) {
	if len(s) > 4*Length {
		return "", false
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == ' ' || r == '-' || r == '\t':
			continue
		case r >= 'a' && r <= 'z':
			r -= 'a' - 'A'
		}
		switch r {
		case 'O':
			r = '0'
		case 'I', 'L':
			r = '1'
		}
		if r > 127 || !strings.ContainsRune(Alphabet, r) {
			return "", false
		}
		b.WriteRune(r)
	}
	if b.Len() != Length {
		return "", false
	}
	return b.String(), true
}

// NormalizeScratch returns s without spaces and dashes if it is then
// ScratchLength decimal digits: a google-authenticator scratch code.
func NormalizeScratch(s string) (code string, ok bool) {
	if len(s) > 4*ScratchLength {
		return "", false
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == ' ' || r == '-' || r == '\t':
			continue
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			return "", false
		}
	}
	if b.Len() != ScratchLength {
		return "", false
	}
	return b.String(), true
}

// KindOf says which kind of backup code a normalized code is.
func KindOf(code string) Kind {
	if len(code) == ScratchLength {
		return KindScratch
	}
	return KindCode
}

// Hash returns the argon2id hash of one code, which must already be
// normalized, under a salt of its own. HashSet is what enrollment uses.
func Hash(code string) (string, error) {
	salt, err := newSalt()
	if err != nil {
		return "", err
	}
	return hashWith(code, salt), nil
}

// HashSet returns the argon2id hashes of codes (each normalized or in its
// printed form XXXXX-XXXXX) under one fresh salt shared by the set.
func HashSet(codes []string) ([]string, error) {
	return hashSet(codes, Normalize, "a backup code")
}

// NewSet makes n new codes and their hashes under one salt (HashSet):
// the codes to show once, the hashes to store.
func NewSet(n int) (codes, hashes []string, err error) {
	codes, err = New(n)
	if err != nil {
		return nil, nil, err
	}
	hashes, err = HashSet(codes)
	if err != nil {
		return nil, nil, err
	}
	return codes, hashes, nil
}

// HashScratchSet returns the argon2id hashes of google-authenticator
// scratch codes (see NormalizeScratch) under one fresh salt, marked
// KindScratch.
func HashScratchSet(codes []string) ([]string, error) {
	return hashSet(codes, NormalizeScratch, "an 8-digit scratch code")
}

// hashSet hashes codes, each normalized by normalize (what names the
// kind in an error), under one fresh salt.
func hashSet(codes []string, normalize func(string) (string, bool), what string) ([]string, error) {
	salt, err := newSalt()
	if err != nil {
		return nil, err
	}
	hashes := make([]string, len(codes))
	for i, c := range codes {
		norm, ok := normalize(c)
		if !ok {
			return nil, fmt.Errorf("backup codes: %d is not %s", i+1, what)
		}
		hashes[i] = hashWith(norm, salt)
	}
	return hashes, nil
}

func newSalt() ([]byte, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("backup codes: reading random bytes: %w", err)
	}
	return salt, nil
}

// hashWith hashes a normalized code; its kind (KindOf) decides the mark.
func hashWith(code string, salt []byte) string {
	key := argon2.IDKey([]byte(code), salt, passes, memoryKiB, lanes, keyLen)
	enc := base64.RawStdEncoding
	mark := ""
	if KindOf(code) == KindScratch {
		mark = kindParam
	}
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d%s$%s$%s",
		argon2.Version, memoryKiB, passes, lanes, mark, enc.EncodeToString(salt), enc.EncodeToString(key))
}

// ErrBadHash means a stored hash is not in the form Hash writes.
var ErrBadHash = errors.New("not an argon2id hash written by otpgate")

type parsed struct {
	salt, key []byte
	kind      Kind
}

// parse accepts only the exact parameters Hash writes, so a tampered file
// cannot ask for a hash that costs gigabytes.
func parse(h string) (parsed, error) {
	parts := strings.Split(h, "$")
	want := fmt.Sprintf("m=%d,t=%d,p=%d", memoryKiB, passes, lanes)
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" ||
		parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return parsed{}, ErrBadHash
	}
	kind := KindCode
	switch parts[3] {
	case want:
	case want + kindParam:
		kind = KindScratch
	default:
		return parsed{}, ErrBadHash
	}
	enc := base64.RawStdEncoding
	salt, err := enc.DecodeString(parts[4])
	if err != nil || len(salt) != saltLen {
		return parsed{}, ErrBadHash
	}
	key, err := enc.DecodeString(parts[5])
	if err != nil || len(key) != keyLen {
		return parsed{}, ErrBadHash
	}
	return parsed{salt, key, kind}, nil
}

// CheckHash reports whether h is a well-formed hash.
func CheckHash(h string) error {
	_, err := parse(h)
	return err
}

// Find returns the index of the hash in hashes that code (normalized, of
// either kind) matches, or -1. Only hashes of the code's kind (KindOf) are
// candidates. The code is hashed once per distinct salt among them (once
// for a set made by HashSet) and compared with every candidate in
// constant time, so the work depends on the file and the kind of input,
// never on which code matched or whether one did.
func Find(code string, hashes []string) (int, error) {
	ps := make([]parsed, len(hashes))
	for i, h := range hashes {
		p, err := parse(h)
		if err != nil {
			return -1, fmt.Errorf("backup code hash %d: %w", i+1, err)
		}
		ps[i] = p
	}
	keys := map[string][]byte{} // salt -> the code's key under it
	found := -1
	kind := KindOf(code)
	for i, p := range ps {
		if p.kind != kind {
			continue
		}
		key, ok := keys[string(p.salt)]
		if !ok {
			key = argon2.IDKey([]byte(code), p.salt, passes, memoryKiB, lanes, keyLen)
			keys[string(p.salt)] = key
		}
		if subtle.ConstantTimeCompare(key, p.key) == 1 && found < 0 {
			found = i
		}
	}
	return found, nil
}

// Hashes returns how many argon2id hashes Find computes for hashes at
// most: the number of distinct salts (an input is hashed only under the
// salts of hashes of its own kind).
func Hashes(hashes []string) int {
	salts := map[string]bool{}
	for _, h := range hashes {
		if p, err := parse(h); err == nil {
			salts[string(p.salt)] = true
		}
	}
	return len(salts)
}
