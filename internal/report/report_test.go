package report

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/otpgate/otpgate/internal/account"
)

func TestUIDRange(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "login.defs")
	os.WriteFile(p, []byte("# UID_MIN 5\nUID_MIN\t\t 2000\nUID_MAX 3000\nGID_MIN 10\n"), 0o644)
	if lo, hi, err := UIDRange(p); err != nil || lo != 2000 || hi != 3000 {
		t.Errorf("UIDRange = %d %d %v, want 2000 3000", lo, hi, err)
	}
	if lo, hi, err := UIDRange(filepath.Join(dir, "none")); err != nil || lo != DefaultUIDMin || hi != DefaultUIDMax {
		t.Errorf("UIDRange of a missing file = %d %d %v", lo, hi, err)
	}
}

func TestCandidate(t *testing.T) {
	in := Inputs{UIDMin: 1000, UIDMax: 60000}
	for _, c := range []struct {
		a    Account
		want bool
	}{
		{Account{"root", 0, "/bin/bash"}, true},
		{Account{"alice", 1000, "/bin/bash"}, true},
		{Account{"bob", 60000, "/usr/bin/zsh"}, true},
		{Account{"nobody", 65534, "/bin/sh"}, false}, // over UID_MAX
		{Account{"daemon", 1, "/bin/sh"}, false},     // a system uid
		{Account{"svc", 1001, "/usr/sbin/nologin"}, false},
		{Account{"ftp", 1002, "/bin/false"}, false},
		{Account{"root2", 0, "/usr/sbin/nologin"}, false},
		{Account{"empty", 1003, ""}, false},
	} {
		if got := in.Candidate(c.a); got != c.want {
			t.Errorf("Candidate(%+v) = %v, want %v", c.a, got, c.want)
		}
	}
}

func TestBuild(t *testing.T) {
	status := map[string]account.Status{
		"alice": {User: "alice", Enrolled: true, BackupLeft: 7, Failures: 2},
		"bob":   {User: "bob"},
		"svc":   {User: "svc", Enrolled: true, BackupLeft: 10}, // exempt, but enrolled: listed
		"carol": {User: "carol"},
		"dave":  {User: "dave"},
	}
	exempt := map[string]bool{"svc": true, "carol": true}
	in := Inputs{
		Accounts: []Account{
			{"root", 0, "/bin/bash"}, {"daemon", 1, "/usr/sbin/nologin"},
			{"alice", 1000, "/bin/bash"}, {"bob", 1001, "/bin/bash"},
			{"carol", 1002, "/bin/bash"}, {"dave", 1003, "/bin/bash"},
			{"svc", 999, "/usr/sbin/nologin"},
		},
		Enrolled: []string{"alice", "svc"},
		UIDMin:   1000, UIDMax: 60000,
		Status: func(u string) (account.Status, error) {
			if u == "root" {
				return account.Status{}, errors.New("state file damaged")
			}
			return status[u], nil
		},
		Required: func(u string) (bool, string, error) {
			if u == "dave" {
				return false, "", errors.New("group ldap-admins: not found")
			}
			if exempt[u] {
				return false, "exempt-user:" + u, nil
			}
			return true, "everyone", nil
		},
		DaysLeft: func() int { return 11 },
	}
	rows, err := Build(in)
	if err == nil {
		t.Error("Build returned no error for a damaged state file and a policy error")
	}
	got := map[string]Row{}
	var order []string
	for _, r := range rows {
		got[r.User] = r
		order = append(order, r.User)
	}
	if want := []string{"alice", "bob", "dave", "root", "svc"}; len(order) != len(want) {
		t.Fatalf("rows %v, want %v (carol is exempt and not enrolled: not listed; daemon is no login account)", order, want)
	} else {
		for i := range want {
			if order[i] != want[i] {
				t.Fatalf("rows %v, want %v", order, want)
			}
		}
	}
	if r := got["alice"]; !r.Required || !r.Enrolled || r.BackupLeft != 7 || r.Failures != 2 || r.DaysLeft != nil {
		t.Errorf("alice: %+v", r)
	}
	if r := got["bob"]; !r.Required || r.Enrolled || r.DaysLeft == nil || *r.DaysLeft != 11 {
		t.Errorf("bob (required, not enrolled, 11 days before the deadline): %+v", r)
	}
	if r := got["svc"]; r.Required || r.Why != "exempt-user:svc" || !r.Enrolled {
		t.Errorf("svc: %+v", r)
	}
	if r := got["dave"]; !r.Required || r.Why != "policy-error" || r.Error == "" {
		t.Errorf("dave (policy error: shown as required): %+v", r)
	}
	if r := got["root"]; r.Error != "state file damaged" || r.DaysLeft != nil {
		t.Errorf("root: %+v", r)
	}
}
