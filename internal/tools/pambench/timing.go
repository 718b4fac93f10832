package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The four answers a caller can get without the code.
const (
	kindUnknown = iota
	kindNotEnrolled
	kindLocked
	kindWrong
	kinds
)

var kindNames = [kinds]string{"unknown user", "not enrolled", "locked", "wrong code"}

// timingResult is the timing evidence.
type timingResult struct {
	n          int
	users      [kinds]string
	samples    [kinds][]sample
	shown      [kinds]attempt // the first answer of each kind
	compared   int            // unknown and not-enrolled answers compared
	mismatches int            // unknown or not-enrolled answers unlike the first of either
	mismatch   string         // the first such difference
	fsType     string
}

// timing runs n rounds through the target's service; each round asks
// once for each of the four kinds, in a new random order, and checks that
// an unknown and a not-enrolled user see exactly the same thing.
func timing(c *cleanups, t *target, n int) (*timingResult, error) {
	r := &timingResult{n: n, fsType: fsType(t.dir)}
	names, err := passwdNames()
	if err != nil {
		return nil, err
	}
	notEnrolled := pickUser(names, "", "daemon", "nobody", "bin", "sys")
	locked := pickUser(names, notEnrolled, "bin", "sys", "games", "man", "daemon", "nobody")
	if notEnrolled == "" || locked == "" {
		return nil, fmt.Errorf("/etc/passwd has no two users other than root with plain lower-case names (such as daemon and bin) to stand for a known user")
	}
	unknown, err := unknownUser(names, len(notEnrolled))
	if err != nil {
		return nil, err
	}
	r.users = [kinds]string{unknown, notEnrolled, locked, "root"}

	// Lock one user for good: a second config on the same store that locks
	// at the first wrong code for a week. The timed service's own lockout
	// is 100, so only this user is locked.
	lockSecret, err := enroll(t, locked)
	if err != nil {
		return nil, err
	}
	lockConfig := filepath.Join(t.dir, "lock.toml")
	if err := writeConfig(lockConfig, filepath.Join(t.dir, "store"), 1, "168h"); err != nil {
		return nil, err
	}
	lockSvc := t.service + "-lock"
	if err := etcService(c, lockSvc, fmt.Sprintf("auth required %s config=%s\n", t.module, lockConfig)); err != nil {
		return nil, err
	}
	secrets := [][]byte{t.secret, lockSecret}
	a, err := pamtester(lockSvc, locked, wrongCode(secrets, time.Now()))
	if err != nil {
		return nil, err
	}
	if err := denied(a, "locking "+locked); err != nil {
		return nil, err
	}
	// Locked: even the right code is refused.
	a, err = pamtester(t.service, locked, hotp(lockSecret, uint64(time.Now().Unix()/30)))
	if err != nil {
		return nil, err
	}
	if err := denied(a, "the right code of the locked user "+locked); err != nil {
		return nil, fmt.Errorf("%v: the lock did not take", err)
	}

	var ref *attempt
	for i := -5; i < n; i++ { // five rounds to warm up
		code := wrongCode(secrets, time.Now())
		for _, k := range randPerm(kinds) {
			a, err := pamtester(t.service, r.users[k], code)
			if err != nil {
				return nil, err
			}
			if err := denied(a, kindNames[k]+" "+r.users[k]); err != nil {
				return nil, err
			}
			if r.shown[k].out == "" {
				r.shown[k] = a
			}
			if k == kindUnknown || k == kindNotEnrolled {
				r.compared++
				if ref == nil {
					ref = &a
				} else if a.out != ref.out || a.exit != ref.exit {
					if r.mismatches == 0 {
						r.mismatch = fmt.Sprintf("%s %q exit %d, where the first was %q exit %d", kindNames[k], a.out, a.exit, ref.out, ref.exit)
					}
					r.mismatches++
				}
			}
			if i >= 0 {
				r.samples[k] = append(r.samples[k], a.sample)
			}
		}
		if (i+5)%90 == 89 {
			if err := unlock(t, "root"); err != nil {
				return nil, err
			}
		}
		if i > 0 && i%250 == 0 {
			fmt.Fprintf(os.Stderr, "pambench: timing, %d of %d rounds\n", i, n)
		}
	}
	return r, unlock(t, "root")
}

func passwdNames() ([]string, error) {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		if name, _, ok := strings.Cut(l, ":"); ok && name != "" {
			names = append(names, name)
		}
	}
	return names, nil
}

// pickUser is the first of prefer in names, else any plain lower-case
// name, never root or not.
func pickUser(names []string, not string, prefer ...string) string {
	plain := func(s string) bool {
		return len(s) >= 3 && len(s) <= 16 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz") == "" && s != "root" && s != not
	}
	for _, p := range prefer {
		for _, n := range names {
			if n == p && plain(n) {
				return n
			}
		}
	}
	for _, n := range names {
		if plain(n) {
			return n
		}
	}
	return ""
}

// unknownUser is a random lower-case name of length n that neither
// /etc/passwd nor NSS knows: same length as the known user, so that the
// two requests and log lines differ in nothing else.
func unknownUser(names []string, n int) (string, error) {
	for tries := 0; tries < 100; tries++ {
		b := make([]byte, n)
		rand.Read(b)
		for i := range b {
			b[i] = 'a' + b[i]%26
		}
		name := string(b)
		if slices.Contains(names, name) {
			continue
		}
		var unknown user.UnknownUserError
		if _, err := user.Lookup(name); errors.As(err, &unknown) {
			return name, nil
		}
	}
	return "", fmt.Errorf("found no user name that NSS does not know")
}
