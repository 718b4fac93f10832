// Package passwd reads /etc/passwd itself, without NSS or cgo: the fast
// path for the accounts most hosts have, with no process to start.
// Accounts that exist only in NSS (LDAP, SSSD) are not found here; the
// callers that must find them ask internal/nss (getent) after a miss.
package passwd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Limits on what is read: the file, and one line.
const (
	maxFile = 16 << 20
	maxLine = 64 << 10
)

// ErrNotFound is returned by LookupUID for a uid the file does not have.
var ErrNotFound = errors.New("no such uid")

// Entry is one account line.
type Entry struct {
	Name  string
	UID   string
	GID   string
	Home  string
	Shell string
}

// CanLogIn reports whether the account has a login shell.
func (e Entry) CanLogIn() bool {
	return e.Shell != "" && !strings.HasSuffix(e.Shell, "/nologin") && !strings.HasSuffix(e.Shell, "/false")
}

// each calls fn for every well-formed account line of the file at path
// (seven fields, a name, not a NIS "+" or "-" entry) until fn says stop.
func each(path string, fn func(Entry) (stop bool)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxFile))
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 7 || f[0] == "" || strings.HasPrefix(f[0], "+") || strings.HasPrefix(f[0], "-") || strings.HasPrefix(f[0], "#") {
			continue
		}
		if fn(Entry{Name: f[0], UID: f[2], GID: f[3], Home: f[5], Shell: f[6]}) {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}

// ReadAll returns every account of the file at path, in order.
func ReadAll(path string) ([]Entry, error) {
	var out []Entry
	err := each(path, func(e Entry) bool { out = append(out, e); return false })
	return out, err
}

// LookupUID returns the first account with uid in the file at path.
func LookupUID(path string, uid int) (Entry, error) {
	want := strconv.Itoa(uid)
	var found *Entry
	err := each(path, func(e Entry) bool {
		if e.UID == want {
			found = &e
		}
		return found != nil
	})
	if err != nil {
		return Entry{}, err
	}
	if found == nil {
		return Entry{}, fmt.Errorf("uid %d is not in %s: %w", uid, path, ErrNotFound)
	}
	return *found, nil
}
