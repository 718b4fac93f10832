package keystore

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

var badUsers = []string{
	"",
	"a/b",
	"/",
	"..",
	".",
	".hidden",
	"x\x00y",
	"tab\tname",
	"new\nline",
	"\x7f",
	"esc\x1b[31m",
	"c1\u0085control",
	strings.Repeat("a", MaxUserLen+1),
	"bad\xffutf8",
	"\xc3",
}

var goodUsers = []string{
	"alice",
	"bob.smith",
	"user@example.com",
	"DOMAIN\\user",
	"j\u00f6rg",
	"x",
	"a..b",
	strings.Repeat("a", MaxUserLen),
	strings.Repeat("\u00e9", MaxUserLen/2), // 64 bytes of two-byte runes
}

func TestValidUser(t *testing.T) {
	for _, name := range badUsers {
		if err := ValidUser(name); !errors.Is(err, ErrInvalidUser) {
			t.Errorf("ValidUser(%q) = %v, want ErrInvalidUser", name, err)
		}
	}
	for _, name := range goodUsers {
		if err := ValidUser(name); err != nil {
			t.Errorf("ValidUser(%q) = %v, want nil", name, err)
		}
	}
}

// Every method taking a user name refuses a bad one before it touches the
// file system, with an error that does not quote the name (a mistyped user
// name is often a password).
func TestBadUserRefused(t *testing.T) {
	s := enrolledStore(t)
	before := map[string]snapshot{}
	for _, d := range []string{s.Dir(), s.Dir() + "/users", s.Dir() + "/state", s.Dir() + "/locks"} {
		before[d] = snap(t, d)
	}
	for _, name := range badUsers {
		ops := map[string]func() error{
			"ReadUser":  func() error { _, err := s.ReadUser(name); return err },
			"ReadState": func() error { _, err := s.ReadState(name); return err },
			"Lock": func() error {
				l, err := s.Lock(name, 100*time.Millisecond)
				if err == nil {
					l.Unlock()
				}
				return err
			},
		}
		for opName, f := range ops {
			err := f()
			if !errors.Is(err, ErrInvalidUser) {
				t.Errorf("%s(%q) = %v, want ErrInvalidUser", opName, name, err)
				continue
			}
			if len(name) > 1 && strings.Contains(err.Error(), name) {
				t.Errorf("%s(%q): error %q quotes the name", opName, name, err)
			}
		}
	}
	checkUnchanged(t, before)
	if users, err := s.Users(); err != nil || !slices.Equal(users, []string{"alice"}) {
		t.Errorf("Users = %q, %v", users, err)
	}
}

// A bad name found in users/ (put there by hand) is not listed.
func TestUsersSkipsBadNames(t *testing.T) {
	s := enrolledStore(t)
	for _, name := range []string{"tab\tname.toml", strings.Repeat("a", MaxUserLen+1) + ".toml", "bad\xff.toml", ".toml"} {
		if err := os.WriteFile(s.Dir()+"/users/"+name, mustMarshalUser(t, testUser()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if users, err := s.Users(); err != nil || !slices.Equal(users, []string{"alice"}) {
		t.Errorf("Users = %q, %v; want only alice", users, err)
	}
}

func TestGoodUsersStored(t *testing.T) {
	s := newStore(t)
	for i, name := range goodUsers {
		l, err := s.Lock(name, time.Second)
		if err != nil {
			t.Errorf("Lock(%q): %v", name, err)
			continue
		}
		u := testUser()
		u.BackupHashes = nil
		st := State{Failures: i}
		if err := l.WriteUser(u); err != nil {
			t.Errorf("WriteUser(%q): %v", name, err)
		}
		if err := l.WriteState(st); err != nil {
			t.Errorf("WriteState(%q): %v", name, err)
		}
		l.Unlock()
		if got, err := s.ReadUser(name); err != nil || !equalUser(got, u) {
			t.Errorf("ReadUser(%q) = %+v, %v", name, got, err)
		}
		if got, err := s.ReadState(name); err != nil || !equalState(got, st) {
			t.Errorf("ReadState(%q) = %+v, %v", name, got, err)
		}
	}
	users, err := s.Users()
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(goodUsers)
	slices.Sort(want)
	if !slices.Equal(users, want) {
		t.Errorf("Users = %q\nwant %q", users, want)
	}
}
