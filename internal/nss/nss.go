// Package nss looks users and groups up the way the rest of the system
// does, through NSS (/etc/nsswitch.conf: files, LDAP, SSSD, systemd ...),
// without cgo: it runs getent(1) and parses what it prints.
//
// otpgate's binaries are static (CGO_ENABLED=0), so Go's os/user reads
// /etc/passwd and /etc/group only. Linking glibc's NSS into them instead
// would load the modules nsswitch.conf names into the root helper, and
// cost every exec of it. A getent child keeps those modules in a process
// of their own, with an empty environment, no input, a time limit and a
// bound on what it may print; only the parsed answer comes back.
//
// Every error is an error: a lookup that fails, times out or prints
// something that does not parse is never taken for "not found", and "not
// found" (ErrNotFound) is never taken for "found".
package nss

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// DefaultGetent is where Debian and Ubuntu (libc-bin) install getent.
const DefaultGetent = "/usr/bin/getent"

// DefaultTimeout bounds one getent run: an LDAP server that does not
// answer must not hold a login longer than this.
const DefaultTimeout = 5 * time.Second

// maxOutput bounds what one getent run may print: a group with a few
// thousand members fits; more is refused, not read without end.
const maxOutput = 4 << 20

// ErrNotFound is returned when NSS does not know a name or id.
var ErrNotFound = errors.New("not known to the system (getent)")

// User is a passwd entry.
type User struct {
	Name  string
	UID   int
	GID   int // the primary group
	Home  string
	Shell string
}

// Group is a group entry.
type Group struct {
	Name    string
	GID     int
	Members []string // the member list only: not the users whose primary group it is
}

// Resolver runs getent. The zero value uses DefaultGetent and
// DefaultTimeout.
type Resolver struct {
	Getent  string
	Timeout time.Duration
}

// Default is the resolver of the system's getent.
var Default = &Resolver{}

// exit codes of getent(1)
const (
	exitNotFound = 2 // one or more keys not found
)

// run runs getent with args and returns what it printed. notFound is true
// when getent exited 2 (a key it did not find); the output then holds the
// keys it did find.
func (r *Resolver) run(args ...string) (out []byte, notFound bool, err error) {
	path, timeout := r.Getent, r.Timeout
	if path == "" {
		path = DefaultGetent
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = []string{} // nothing of the caller's: no LD_*, LOCALE, NSS_* ...
	cmd.Dir = "/"
	stdout := &limitBuffer{max: maxOutput}
	stderr := &limitBuffer{max: 4 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Stdin: an empty pipe, not /dev/null, which a helper in a
	// container or a namespace may not have.
	cmd.Stdin = bytes.NewReader(nil)
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	what := "getent " + strings.Join(args, " ")
	switch {
	case ctx.Err() != nil:
		return nil, false, fmt.Errorf("%s: no answer within %v (is an LDAP or SSSD server down?)", what, timeout)
	case stdout.over:
		return nil, false, fmt.Errorf("%s: printed more than %d bytes", what, maxOutput)
	case err == nil:
		return stdout.Bytes(), false, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == exitNotFound {
		return stdout.Bytes(), true, nil
	}
	if msg := strings.TrimSpace(stderr.String()); msg != "" {
		return nil, false, fmt.Errorf("%s: %v: %s", what, err, firstLine(msg))
	}
	return nil, false, fmt.Errorf("%s: %w", what, err)
}

// validKey refuses a key getent would read as something else or that no
// entry can have: empty, a leading '-' (after "--" too: some getent
// versions disagree), ':', ',' or any blank or control character.
func validKey(k string) bool {
	if k == "" || k[0] == '-' || len(k) > 1024 {
		return false
	}
	for _, r := range k {
		if r <= ' ' || r == 0x7f || r == ':' || r == ',' {
			return false
		}
	}
	return true
}

// isID reports whether k is all digits: getent looks it up as an id.
func isID(k string) bool { return strings.Trim(k, "0123456789") == "" }

// LookupUser returns the user called name. A name of digits only is
// ErrNotFound: getent would look it up as a uid.
func (r *Resolver) LookupUser(name string) (User, error) {
	if !validKey(name) || isID(name) {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	us, missing, err := r.Users(name)
	if err != nil {
		return User{}, err
	}
	if len(missing) > 0 {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	return us[0], nil
}

// LookupUID returns the first user NSS lists with uid.
func (r *Resolver) LookupUID(uid int) (User, error) {
	if uid < 0 {
		return User{}, fmt.Errorf("uid %d: %w", uid, ErrNotFound)
	}
	key := strconv.Itoa(uid)
	out, notFound, err := r.run("passwd", "--", key)
	if err != nil {
		return User{}, err
	}
	us, err := parseUsers(out)
	if err != nil {
		return User{}, err
	}
	if notFound || len(us) != 1 || us[0].UID != uid {
		if !notFound && len(us) != 1 {
			return User{}, fmt.Errorf("getent passwd %s: %d entries, want 1", key, len(us))
		}
		return User{}, fmt.Errorf("uid %d: %w", uid, ErrNotFound)
	}
	return us[0], nil
}

// Users looks names up in one getent run. It returns the users found, in
// the order of names, and the names NSS does not know. Every name is
// looked up as a name (one of digits only is reported missing).
func (r *Resolver) Users(names ...string) (found []User, missing []string, err error) {
	keys := make([]string, 0, len(names))
	for _, n := range names {
		if validKey(n) && !isID(n) {
			keys = append(keys, n)
		}
	}
	var byName map[string]User
	if len(keys) > 0 {
		out, _, err := r.run(append([]string{"passwd", "--"}, keys...)...)
		if err != nil {
			return nil, nil, err
		}
		us, err := parseUsers(out)
		if err != nil {
			return nil, nil, err
		}
		byName = make(map[string]User, len(us))
		for _, u := range us {
			if _, dup := byName[u.Name]; !dup {
				byName[u.Name] = u
			}
		}
	}
	// By the name each entry carries, not by its position: getent prints
	// nothing for a key it does not find.
	for _, n := range names {
		if u, ok := byName[n]; ok {
			found = append(found, u)
		} else {
			missing = append(missing, n)
		}
	}
	return found, missing, nil
}

// Groups looks group names up in one getent run, like Users.
func (r *Resolver) Groups(names ...string) (found []Group, missing []string, err error) {
	keys := make([]string, 0, len(names))
	for _, n := range names {
		if validKey(n) && !isID(n) {
			keys = append(keys, n)
		}
	}
	var byName map[string]Group
	if len(keys) > 0 {
		out, _, err := r.run(append([]string{"group", "--"}, keys...)...)
		if err != nil {
			return nil, nil, err
		}
		gs, err := parseGroups(out)
		if err != nil {
			return nil, nil, err
		}
		byName = make(map[string]Group, len(gs))
		for _, g := range gs {
			if _, dup := byName[g.Name]; !dup {
				byName[g.Name] = g
			}
		}
	}
	for _, n := range names {
		if g, ok := byName[n]; ok {
			found = append(found, g)
		} else {
			missing = append(missing, n)
		}
	}
	return found, missing, nil
}

// GroupIDs returns the ids of every group u is in: its primary group
// (from the passwd entry) and the supplementary groups NSS lists for it
// (getent initgroups, the list a login gets, LDAP and SSSD groups
// included). u must come from a lookup: initgroups says nothing of
// whether a user exists.
func (r *Resolver) GroupIDs(u User) ([]int, error) {
	if !validKey(u.Name) {
		return nil, fmt.Errorf("user %q: %w", u.Name, ErrNotFound)
	}
	out, notFound, err := r.run("initgroups", "--", u.Name)
	if err != nil {
		return nil, err
	}
	if notFound {
		return nil, fmt.Errorf("getent initgroups %s: user %w", u.Name, ErrNotFound)
	}
	ids := []int{u.GID}
	lines := splitLines(out)
	if len(lines) != 1 {
		return nil, fmt.Errorf("getent initgroups %s: %d lines, want 1", u.Name, len(lines))
	}
	f := strings.Fields(lines[0])
	if len(f) == 0 || f[0] != u.Name {
		return nil, fmt.Errorf("getent initgroups %s: answered for another name", u.Name)
	}
	for _, s := range f[1:] {
		id, err := parseID(s)
		if err != nil {
			return nil, fmt.Errorf("getent initgroups %s: %v", u.Name, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// AllUsers lists every user NSS enumerates (getent passwd). LDAP and SSSD
// often do not enumerate (SSSD's default): their users are then missing
// from the list, but each is still found by LookupUser.
func (r *Resolver) AllUsers() ([]User, error) {
	out, notFound, err := r.run("passwd")
	if err != nil {
		return nil, err
	}
	if notFound {
		return nil, nil
	}
	return parseUsers(out)
}

// parseUsers parses passwd lines: name:password:uid:gid:gecos:home:shell.
func parseUsers(out []byte) ([]User, error) {
	var us []User
	for _, l := range splitLines(out) {
		f := strings.Split(l, ":")
		if len(f) != 7 || f[0] == "" {
			return nil, fmt.Errorf("getent passwd printed a line that is no passwd entry: %q", clip(l))
		}
		uid, err := parseID(f[2])
		if err != nil {
			return nil, fmt.Errorf("getent passwd: %s: uid: %v", f[0], err)
		}
		gid, err := parseID(f[3])
		if err != nil {
			return nil, fmt.Errorf("getent passwd: %s: gid: %v", f[0], err)
		}
		us = append(us, User{Name: f[0], UID: uid, GID: gid, Home: f[5], Shell: f[6]})
	}
	return us, nil
}

// parseGroups parses group lines: name:password:gid:member,member.
func parseGroups(out []byte) ([]Group, error) {
	var gs []Group
	for _, l := range splitLines(out) {
		f := strings.Split(l, ":")
		if len(f) != 4 || f[0] == "" {
			return nil, fmt.Errorf("getent group printed a line that is no group entry: %q", clip(l))
		}
		gid, err := parseID(f[2])
		if err != nil {
			return nil, fmt.Errorf("getent group: %s: gid: %v", f[0], err)
		}
		g := Group{Name: f[0], GID: gid}
		for _, m := range strings.Split(f[3], ",") {
			if m != "" {
				g.Members = append(g.Members, m)
			}
		}
		gs = append(gs, g)
	}
	return gs, nil
}

// parseID parses a uid or gid: decimal, 0 to 2^32-2 (2^32-1 is -1, "no
// id", to the kernel).
func parseID(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 1<<32-1 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%q is not an id", clip(s))
	}
	return int(n), nil
}

// splitLines splits output into its non-empty lines.
func splitLines(out []byte) []string {
	var ls []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" {
			ls = append(ls, l)
		}
	}
	return ls
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// limitBuffer keeps at most max bytes and notes that more came; the rest
// is dropped (and getent is not stopped by a failed write).
type limitBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *limitBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.over = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}
