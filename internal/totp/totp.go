// Package totp computes and checks RFC 6238 time-based one-time codes.
//
// Codes are computed by github.com/pquerna/otp's GenerateCodeCustom. Its
// ValidateCustom is deliberately not used: it answers only true or false,
// hiding the matched time step, so a replayed code could not be refused.
// Match instead computes every candidate step in the window, compares each
// in constant time and returns the step that matched.
package totp

import (
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

// Params are the per-secret code parameters. The zero value is not valid;
// use Default or values read from a user file.
type Params struct {
	Algorithm string // "SHA1", "SHA256" or "SHA512"
	Digits    int    // 6 or 8
	Period    int    // seconds per step
}

// Default are the parameters every authenticator app supports.
var Default = Params{Algorithm: "SHA1", Digits: 6, Period: 30}

// Check reports whether p holds values otpgate supports.
func (p Params) Check() error {
	if _, err := algorithm(p.Algorithm); err != nil {
		return err
	}
	if p.Digits != 6 && p.Digits != 8 {
		return fmt.Errorf("digits %d is not supported; use 6 or 8", p.Digits)
	}
	if p.Period < MinPeriod || p.Period > MaxPeriod {
		return fmt.Errorf("period %d is out of range; use %d to %d seconds", p.Period, MinPeriod, MaxPeriod)
	}
	return nil
}

// The bounds of Params.Period, in seconds.
const (
	MinPeriod = 10
	MaxPeriod = 300
)

func algorithm(name string) (otp.Algorithm, error) {
	switch name {
	case "SHA1":
		return otp.AlgorithmSHA1, nil
	case "SHA256":
		return otp.AlgorithmSHA256, nil
	case "SHA512":
		return otp.AlgorithmSHA512, nil
	}
	return 0, fmt.Errorf("algorithm %q is not supported; use SHA1, SHA256 or SHA512", name)
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// EncodeSecret returns the unpadded base32 form of secret used in key URIs
// and in user files.
func EncodeSecret(secret []byte) string { return b32.EncodeToString(secret) }

// Step returns the RFC 6238 time step T of t for period seconds. Times
// before the Unix epoch are step 0.
func Step(t time.Time, period int) int64 {
	s := t.Unix()
	if s < 0 {
		return 0
	}
	return s / int64(period)
}

// GroupKey splits a base32 key (EncodeSecret's form) into blocks of four,
// separated by spaces, for a person to type into an app.
func GroupKey(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(key[i:min(i+4, len(key))])
	}
	return b.String()
}

// CodeAt returns the code of secret for counter (an HOTP counter, or a TOTP
// time step).
func CodeAt(secret []byte, counter uint64, p Params) (string, error) {
	alg, err := algorithm(p.Algorithm)
	if err != nil {
		return "", err
	}
	var digits otp.Digits
	switch p.Digits {
	case 6:
		digits = otp.DigitsSix
	case 8:
		digits = otp.DigitsEight
	default:
		return "", fmt.Errorf("digits %d is not supported; use 6 or 8", p.Digits)
	}
	return hotp.GenerateCodeCustom(EncodeSecret(secret), counter, hotp.ValidateOpts{
		Digits:    digits,
		Algorithm: alg,
	})
}

// Match compares code with the codes of every step from now-window to
// now+window, each in constant time, without stopping at the first match.
// It returns the smallest matching step greater than after (the last step
// already accepted), so a code is accepted once and a code older than an
// accepted one never is. replayed reports that code matched only steps at
// or before after.
func Match(secret []byte, code string, now time.Time, window int, after int64, p Params) (step int64, ok, replayed bool, err error) {
	if err := p.Check(); err != nil {
		return 0, false, false, err
	}
	center := Step(now, p.Period)
	step = -1
	for s := center - int64(window); s <= center+int64(window); s++ {
		if s < 0 {
			continue
		}
		want, err := CodeAt(secret, uint64(s), p)
		if err != nil {
			return 0, false, false, err
		}
		eq := subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1
		switch {
		case eq && s > after && step < 0:
			step = s
		case eq && s <= after:
			replayed = true
		}
	}
	if step < 0 {
		return 0, false, replayed, nil
	}
	return step, true, false, nil
}
