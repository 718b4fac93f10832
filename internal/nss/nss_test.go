package nss

import (
	"errors"
	"os"
	"testing"
)

// TestSystem looks up what every Debian system has through its getent.
func TestSystem(t *testing.T) {
	if _, err := os.Stat(DefaultGetent); err != nil {
		if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	r := &Resolver{}
	u, err := r.LookupUser("root")
	if err != nil || u.UID != 0 || u.GID != 0 || u.Home == "" {
		t.Errorf("LookupUser(root) = %+v, %v", u, err)
	}
	if u, err := r.LookupUID(0); err != nil || u.Name != "root" {
		t.Errorf("LookupUID(0) = %+v, %v", u, err)
	}
	for _, n := range []string{"otpgate-no-such-user", "0", "-s", "", "a b", "root:x", "root\n"} {
		if _, err := r.LookupUser(n); !errors.Is(err, ErrNotFound) {
			t.Errorf("LookupUser(%q) = %v, want ErrNotFound", n, err)
		}
	}
	if _, err := r.LookupUID(1<<31 - 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("LookupUID(unused) = %v, want ErrNotFound", err)
	}
	found, missing, err := r.Users("daemon", "otpgate-no-such-user", "root")
	if err != nil || len(found) != 2 || found[0].Name != "daemon" || found[1].Name != "root" || len(missing) != 1 {
		t.Errorf("Users = %+v, %q, %v", found, missing, err)
	}
	gs, missing, err := r.Groups("root", "otpgate-no-such-group")
	if err != nil || len(gs) != 1 || gs[0].GID != 0 || len(missing) != 1 {
		t.Errorf("Groups = %+v, %q, %v", gs, missing, err)
	}
	ids, err := r.GroupIDs(u)
	if err != nil || len(ids) == 0 || ids[0] != 0 {
		t.Errorf("GroupIDs(root) = %v, %v", ids, err)
	}
	all, err := r.AllUsers()
	if err != nil || len(all) < 2 {
		t.Errorf("AllUsers = %d users, %v", len(all), err)
	}
}

// TestParse: only well-formed entries with sane ids are accepted.
func TestParse(t *testing.T) {
	for _, in := range []string{
		"root:x:0:0:root:/root",           // six fields
		"root:x:0:0:root:/root:/bin/sh:x", // eight
		":x:0:0::/:/bin/sh",               // no name
		"a:x:-1:0::/:/bin/sh",             // negative uid
		"a:x:4294967295:0::/:/bin/sh",     // (uid_t)-1
		"a:x:4294967296:0::/:/bin/sh",     // over 32 bits
		"a:x:01:0::/:/bin/sh",             // a leading zero
		"a:x:1:+1::/:/bin/sh",             // a sign
		"a:x: 1:1::/:/bin/sh",             // a blank
	} {
		if us, err := parseUsers([]byte(in + "\n")); err == nil {
			t.Errorf("parseUsers(%q) = %+v", in, us)
		}
	}
	if _, err := parseGroups([]byte("g:x:1\n")); err == nil {
		t.Error("a group line of three fields was accepted")
	}
	gs, err := parseGroups([]byte("g:x:10:a,,b\n"))
	if err != nil || len(gs) != 1 || len(gs[0].Members) != 2 {
		t.Errorf("parseGroups = %+v, %v", gs, err)
	}
}

// BenchmarkLookupUser is the cost of one getent exec (docs/user-lookup.md).
func BenchmarkLookupUser(b *testing.B) {
	r := &Resolver{}
	for i := 0; i < b.N; i++ {
		if _, err := r.LookupUser("root"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGroupIDs is getent initgroups.
func BenchmarkGroupIDs(b *testing.B) {
	r := &Resolver{}
	u := User{Name: "root"}
	for i := 0; i < b.N; i++ {
		if _, err := r.GroupIDs(u); err != nil {
			b.Fatal(err)
		}
	}
}
