package gaimport

import (
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/otpgate/otpgate/internal/nss"
	"github.com/otpgate/otpgate/internal/passwd"
)

// Account is a user to import: the name, the uid the file must belong
// to, and the home directory that holds FileName.
type Account struct {
	Name string
	UID  int
	Home string
}

// DefaultPath is the file of the account: FileName in its home.
func (a Account) DefaultPath() string { return filepath.Join(a.Home, FileName) }

func account(e passwd.Entry) (Account, bool) {
	uid, err := strconv.Atoi(e.UID)
	if err != nil || uid < 0 || e.Home == "" {
		return Account{}, false
	}
	return Account{Name: e.Name, UID: uid, Home: e.Home}, true
}

// Lookup returns the account name from the passwd file at path.
func Lookup(path, name string) (Account, error) {
	all, err := passwd.ReadAll(path)
	if err != nil {
		return Account{}, err
	}
	for _, e := range all {
		if e.Name == name {
			if a, ok := account(e); ok {
				return a, nil
			}
			return Account{}, fmt.Errorf("%s in %s has no usable uid or home directory", name, path)
		}
	}
	return Account{}, fmt.Errorf("%s is not in %s", name, path)
}

// LookupNSS returns the account name as NSS knows it (getent passwd: an
// LDAP or SSSD account too): for a name Lookup does not find in the
// passwd file.
func LookupNSS(r *nss.Resolver, name string) (Account, error) {
	u, err := r.LookupUser(name)
	if err != nil {
		return Account{}, err
	}
	if u.Home == "" {
		return Account{}, fmt.Errorf("%s (getent passwd) has no home directory", name)
	}
	return Account{Name: u.Name, UID: u.UID, Home: u.Home}, nil
}

// All returns the accounts of the passwd file at path whose home holds a
// FileName entry of any type (links and others are found, so that Open
// can refuse them out loud). An account listed twice counts once.
func All(path string, exists func(string) bool) ([]Account, error) {
	all, err := passwd.ReadAll(path)
	if err != nil {
		return nil, err
	}
	var out []Account
	seen := map[string]bool{}
	for _, e := range all {
		a, ok := account(e)
		if !ok || seen[a.Name] || !exists(a.DefaultPath()) {
			continue
		}
		seen[a.Name] = true
		out = append(out, a)
	}
	return out, nil
}
