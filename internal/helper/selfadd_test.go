package helper

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/authlog"
	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/keystore"
)

func addReq(label string) protocol.Request {
	return protocol.Request{Op: protocol.OpEnroll, Args: []string{ArgAdd, ArgLabel + label}}
}

// TestSelfAddArgs: the self-mode arguments of an add are checked in the
// helper (the label is the user's input): each at most once, a label that
// keystore would refuse, add without a label, an argument on another
// operation: refused before any question, nothing counted or changed.
func TestSelfAddArgs(t *testing.T) {
	f, o := selfFixture(t, "")
	f.enroll(t, "carol")
	before, _ := f.store.ReadUser("carol")
	for name, args := range map[string][]string{
		"add without label":  {ArgAdd},
		"bad label":          {ArgAdd, ArgLabel + "my phone"},
		"empty label":        {ArgAdd, ArgLabel},
		"long label":         {ArgAdd, ArgLabel + strings.Repeat("x", keystore.MaxLabelLen+1)},
		"label twice":        {ArgAdd, ArgLabel + "a", ArgLabel + "b"},
		"add twice":          {ArgAdd, ArgAdd, ArgLabel + "a"},
		"label with newline": {ArgAdd, ArgLabel + "a\nb"},
		"unknown":            {ArgAdd, ArgLabel + "a", "force"},
	} {
		ui := &script{answers: []string{"123456"}}
		if v := f.self(t, o, protocol.Request{Op: protocol.OpEnroll, Args: args}, ui); v != protocol.ResultServiceErr || len(ui.prompts) != 0 {
			t.Errorf("%s: %s after %d prompts, want %s and none (%q)", name, v, len(ui.prompts), protocol.ResultServiceErr, ui.messages)
		}
	}
	ui := &script{}
	if v := f.self(t, o, protocol.Request{Op: protocol.OpStatus, Args: []string{ArgLabel + "a"}}, ui); v != protocol.ResultServiceErr {
		t.Errorf("status with a label: %s", v)
	}
	after, _ := f.store.ReadUser("carol")
	st, _ := f.store.ReadState("carol")
	if after.Fingerprint() != before.Fingerprint() || st.Failures != 0 {
		t.Errorf("refused requests changed the enrollment or counted (%d failures)", st.Failures)
	}
}

// TestSelfAddAuthenticator: a user adds a second authenticator with a
// code of the first; a backup code is refused for it (and not spent), a
// taken label is refused before a code is asked; then codes of both work
// through the PAM path, each once, and the backup codes are unchanged.
func TestSelfAddAuthenticator(t *testing.T) {
	f, o := selfFixture(t, "")
	var logBuf bytes.Buffer
	o.Log = authlog.Dial(filepath.Join(f.dir, "no-syslog"), "otpgate", &logBuf)
	first, backups := f.enroll(t, "carol")

	// A taken label: told so, no question asked.
	ui := &script{answers: []string{f.code(t, first, 0)}}
	if v := f.self(t, o, addReq(keystore.DefaultLabel), ui); v != protocol.ResultAuthErr || len(ui.prompts) != 0 || !ui.said("labelled default already") {
		t.Fatalf("taken label: %s, prompts %q, %q", v, ui.prompts, ui.messages)
	}

	// A backup code is no proof for an add: refused, counted, not spent.
	ui = &script{answers: []string{backups[0]}}
	if v := f.self(t, o, addReq("phone"), ui); v != protocol.ResultAuthErr || !ui.said("a backup code does not add an authenticator") || len(ui.data) != 0 {
		t.Fatalf("backup code: %s %q %+v", v, ui.messages, ui.data)
	}
	u, _ := f.store.ReadUser("carol")
	st, _ := f.store.ReadState("carol")
	if len(u.BackupHashes) != len(backups) || len(u.Authenticators) != 1 || st.Failures != 1 {
		t.Fatalf("after a backup code: %d backup codes, %d authenticators, %d failures", len(u.BackupHashes), len(u.Authenticators), st.Failures)
	}

	// The right way: a code of the first, then the new secret, then a code of it.
	var second []byte
	add := &promptFunc{script: &script{}, answer: func(p string) string {
		if second == nil {
			return f.code(t, first, 0)
		}
		return f.code(t, second, 0)
	}}
	add.onData = func(d Data) {
		if d.Secret != "" {
			second, _ = keystore.DecodeSecret(d.Secret)
		}
	}
	if v := f.self(t, o, addReq("phone"), add); v != protocol.ResultSuccess {
		t.Fatalf("add: %s %q", v, add.messages)
	}
	if d := add.data; len(d) != 2 || d[0].URI == "" || d[1].Added != "phone" || d[1].BackupCodes != nil {
		t.Fatalf("add data %+v", d)
	}
	if len(add.prompts) != 2 || add.prompts[0] != "Current verification code: " {
		t.Fatalf("add prompts %q", add.prompts)
	}
	u, _ = f.store.ReadUser("carol")
	if len(u.Authenticators) != 2 || u.Authenticators[1].Label != "phone" || string(u.Authenticators[1].Secret) != string(second) ||
		string(u.Authenticators[0].Secret) != string(first) || len(u.BackupHashes) != len(backups) {
		t.Fatalf("after add: %+v", u)
	}
	if !strings.Contains(logBuf.String(), "user=carol action=add-authenticator by=self authenticator=phone") {
		t.Errorf("log:\n%s", logBuf.String())
	}

	// Both work through the PAM path, each code once. The codes used for
	// the add (step 0 of each) are spent: the next step's are used.
	for _, s := range [][]byte{first, second} {
		c := f.code(t, s, 30*time.Second)
		if v := f.pam(t, "carol", &script{answers: []string{c}}); v != protocol.ResultSuccess {
			t.Fatalf("code of an authenticator: %s", v)
		}
		if v := f.pam(t, "carol", &script{answers: []string{c}}); v != protocol.ResultAuthErr {
			t.Fatalf("the same code again: %s", v)
		}
	}
	// The backup codes still work.
	if v := f.pam(t, "carol", &script{answers: []string{backups[1]}}); v != protocol.ResultSuccess {
		t.Fatalf("backup code after the add: %s", v)
	}
}

// TestSelfAddLosesToAdminChange: the user gives a code of an existing
// authenticator, then waits at the confirmation while root removes that
// authenticator (a lost phone) or adds another: the pending add must not
// go through on top of root's change.
func TestSelfAddLosesToAdminChange(t *testing.T) {
	for _, adminRemoves := range []bool{true, false} {
		f, o := selfFixture(t, "")
		first, _ := f.enroll(t, "carol")
		extra, _ := f.mgr().NewEnrollment("carol")
		extra.Label = "tablet"
		if _, err := f.mgr().Save(extra, account.SaveOptions{Add: true}); err != nil {
			t.Fatal(err)
		}
		var pending []byte
		ui := &promptFunc{script: &script{}, answer: func(p string) string {
			if pending == nil {
				return f.code(t, first, 0)
			}
			if adminRemoves {
				if _, err := f.mgr().RemoveAuthenticator("carol", keystore.DefaultLabel); err != nil {
					t.Fatal(err)
				}
			} else {
				e, _ := f.mgr().NewEnrollment("carol")
				e.Label = "admins"
				if _, err := f.mgr().Save(e, account.SaveOptions{Add: true}); err != nil {
					t.Fatal(err)
				}
			}
			return f.code(t, pending, 0)
		}}
		ui.onData = func(d Data) {
			if d.Secret != "" {
				pending, _ = keystore.DecodeSecret(d.Secret)
			}
		}
		if v := f.self(t, o, addReq("phone"), ui); v != protocol.ResultAuthErr || !ui.said("changed by an administrator") {
			t.Fatalf("admin removes %v: %s %q", adminRemoves, v, ui.messages)
		}
		u, err := f.store.ReadUser("carol")
		if err != nil || u.Find("phone") >= 0 {
			t.Fatalf("admin removes %v: the pending add went through: %v %v", adminRemoves, u.Labels(), err)
		}
	}
}
