package account

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

func newManager(t *testing.T) *Manager {
	cfg := config.Default()
	cfg.Store = filepath.Join(t.TempDir(), "store")
	now := time.Unix(59000000*30, 0)
	return &Manager{Store: keystore.New(cfg.Store), Config: cfg, Now: func() time.Time { return now }}
}

func codeFor(t *testing.T, m *Manager, secret []byte, delta int64) string {
	c, err := totp.CodeAt(secret, uint64(totp.Step(m.now(), 30)+delta), totp.Default)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSaveConfirmAndReplace(t *testing.T) {
	m := newManager(t)
	en, err := m.NewEnrollment("alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(en.Secret) != SecretBytes {
		t.Fatalf("secret of %d bytes", len(en.Secret))
	}
	if _, err := m.Save(en, SaveOptions{Confirm: "000000"}); !errors.Is(err, ErrCodeMismatch) {
		t.Fatalf("wrong confirmation: %v", err)
	}
	if _, err := m.Store.ReadUser("alice"); !errors.Is(err, keystore.ErrNotEnrolled) {
		t.Fatalf("saved despite a wrong code: %v", err)
	}
	codes, err := m.Save(en, SaveOptions{Confirm: codeFor(t, m, en.Secret, 0)})
	if err != nil || len(codes) != 10 {
		t.Fatalf("Save: %d codes, %v", len(codes), err)
	}
	st, _ := m.Store.ReadState("alice")
	if st.LastStep(keystore.DefaultLabel) != totp.Step(m.now(), 30) {
		t.Errorf("confirmation step not recorded: %d", st.LastStep(keystore.DefaultLabel))
	}
	// Over an existing secret: only with Replace; failures survive.
	l, _ := m.Store.Lock("alice", time.Second)
	st.Failures = 2
	l.WriteState(st)
	l.Unlock()
	en2, _ := m.NewEnrollment("alice")
	if _, err := m.Save(en2, SaveOptions{}); !errors.Is(err, ErrEnrolled) {
		t.Fatalf("replace without permission: %v", err)
	}
	if _, err := m.Save(en2, SaveOptions{Replace: true}); err != nil {
		t.Fatal(err)
	}
	st, _ = m.Store.ReadState("alice")
	if st.Failures != 2 || st.LastStep(keystore.DefaultLabel) != 0 {
		t.Errorf("after re-enrollment: %+v; want failures kept, last step reset", st)
	}
}

func TestUnlockDamagedState(t *testing.T) {
	m := newManager(t)
	en, _ := m.NewEnrollment("alice")
	if _, err := m.Save(en, SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	path := m.Store.StatePath("alice")
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Status("alice"); err == nil {
		t.Fatal("status of a damaged state file succeeded")
	}
	if err := m.Unlock("alice"); err != nil {
		t.Fatal(err)
	}
	st, err := m.Store.ReadState("alice")
	if err != nil {
		t.Fatal(err)
	}
	// Every code up to the end of the window counts as used.
	if want := totp.Step(m.now(), 30) + 1; st.LastStep(keystore.DefaultLabel) != want || st.Failures != 0 {
		t.Errorf("state after unlock: %+v, want last step %d", st, want)
	}
}

func TestResetKeepsState(t *testing.T) {
	m := newManager(t)
	en, _ := m.NewEnrollment("alice")
	m.Save(en, SaveOptions{Confirm: codeFor(t, m, en.Secret, 0)})
	if err := m.Reset("alice"); err != nil {
		t.Fatal(err)
	}
	if err := m.Reset("alice"); !errors.Is(err, keystore.ErrNotEnrolled) {
		t.Errorf("second reset: %v", err)
	}
	s, err := m.Status("alice")
	if err != nil || s.Enrolled {
		t.Fatalf("status after reset: %+v %v", s, err)
	}
	if st, _ := m.Store.ReadState("alice"); st.LastStep(keystore.DefaultLabel) == 0 {
		t.Error("reset dropped the last accepted step")
	}
}

func TestKeyURI(t *testing.T) {
	got := KeyURI("web 01", "alice", []byte("12345678901234567890"), totp.Params{Algorithm: "SHA256", Digits: 8, Period: 60})
	want := "otpauth://totp/web%2001:alice?algorithm=SHA256&digits=8&issuer=web%2001&period=60&secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	if got != want {
		t.Errorf("KeyURI:\n got %s\nwant %s", got, want)
	}
}

// TestIfUnchanged: a change conditioned on the fingerprint of the
// enrollment a code was checked against is refused once an administrator
// replaced or removed that enrollment.
func TestIfUnchanged(t *testing.T) {
	m := newManager(t)
	en, _ := m.NewEnrollment("alice")
	if _, err := m.Save(en, SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	u, _ := m.Store.ReadUser("alice")
	fp := u.Fingerprint()
	if _, err := m.NewBackupCodes("alice", fp); err != nil {
		t.Fatalf("unchanged enrollment: %v", err)
	}
	en2, _ := m.NewEnrollment("alice")
	if _, err := m.Save(en2, SaveOptions{Replace: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.NewBackupCodes("alice", fp); !errors.Is(err, ErrChanged) {
		t.Fatalf("backup codes after a re-enrollment: %v, want ErrChanged", err)
	}
	en3, _ := m.NewEnrollment("alice")
	if _, err := m.Save(en3, SaveOptions{Replace: true, IfUnchanged: fp}); !errors.Is(err, ErrChanged) {
		t.Fatalf("replace after a re-enrollment: %v, want ErrChanged", err)
	}
	if err := m.Reset("alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Save(en3, SaveOptions{Replace: true, IfUnchanged: fp}); !errors.Is(err, ErrChanged) {
		t.Fatalf("replace after a reset: %v, want ErrChanged", err)
	}
	if _, err := m.Store.ReadUser("alice"); err == nil {
		t.Fatal("the reset was undone")
	}
}

// TestAddAndRemoveAuthenticator: Add keeps the first authenticator, its
// step and the backup codes; a taken label, a wrong confirmation and a
// ninth authenticator are refused; removing one keeps the others, removing
// the last is a reset; an added authenticator's confirmation step counts
// as used for it alone.
func TestAddAndRemoveAuthenticator(t *testing.T) {
	m := newManager(t)
	en, _ := m.NewEnrollment("alice")
	codes, err := m.Save(en, SaveOptions{Confirm: codeFor(t, m, en.Secret, 0)})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := m.Store.ReadUser("alice")

	phone, _ := m.NewEnrollment("alice")
	phone.Label = "phone"
	if _, err := m.Save(phone, SaveOptions{Add: true, Confirm: "000000"}); !errors.Is(err, ErrCodeMismatch) {
		t.Fatalf("add with a wrong code: %v", err)
	}
	got, err := m.Save(phone, SaveOptions{Add: true, Confirm: codeFor(t, m, phone.Secret, 1)})
	if err != nil || got != nil {
		t.Fatalf("add: %v codes, %v; want none, nil", got, err)
	}
	u, err := m.Store.ReadUser("alice")
	if err != nil || len(u.Authenticators) != 2 || u.Authenticators[0].Label != keystore.DefaultLabel || u.Authenticators[1].Label != "phone" ||
		string(u.Authenticators[0].Secret) != string(en.Secret) || string(u.Authenticators[1].Secret) != string(phone.Secret) {
		t.Fatalf("after add: %+v, %v", u, err)
	}
	if len(u.BackupHashes) != len(codes) || u.Fingerprint() == before.Fingerprint() {
		t.Errorf("add changed the backup codes (%d left) or not the fingerprint", len(u.BackupHashes))
	}
	st, _ := m.Store.ReadState("alice")
	if st.LastStep(keystore.DefaultLabel) != totp.Step(m.now(), 30) || st.LastStep("phone") != totp.Step(m.now(), 30)+1 {
		t.Errorf("steps after add: %v", st.LastSteps)
	}

	again, _ := m.NewEnrollment("alice")
	again.Label = "phone"
	if _, err := m.Save(again, SaveOptions{Add: true}); !errors.Is(err, ErrLabelTaken) {
		t.Errorf("a taken label: %v", err)
	}
	for i := 3; i <= keystore.MaxAuthenticators; i++ {
		e, _ := m.NewEnrollment("alice")
		e.Label = "t" + string(rune('0'+i))
		if _, err := m.Save(e, SaveOptions{Add: true}); err != nil {
			t.Fatalf("authenticator %d: %v", i, err)
		}
	}
	ninth, _ := m.NewEnrollment("alice")
	ninth.Label = "ninth"
	if _, err := m.Save(ninth, SaveOptions{Add: true}); !errors.Is(err, ErrTooMany) {
		t.Errorf("a ninth authenticator: %v", err)
	}

	s, err := m.Status("alice")
	if err != nil || len(s.Authenticators) != keystore.MaxAuthenticators || s.Authenticators[1].Label != "phone" || s.Created.IsZero() {
		t.Errorf("Status: %+v, %v", s, err)
	}

	if _, err := m.RemoveAuthenticator("alice", "nope"); !errors.Is(err, ErrNoLabel) || !strings.Contains(err.Error(), "default, phone, t3") {
		t.Errorf("removing a missing label: %v", err)
	}
	for i := 3; i <= keystore.MaxAuthenticators; i++ {
		if _, err := m.RemoveAuthenticator("alice", "t"+string(rune('0'+i))); err != nil {
			t.Fatal(err)
		}
	}
	if left, err := m.RemoveAuthenticator("alice", keystore.DefaultLabel); err != nil || left != 1 {
		t.Fatalf("removing default: %d left, %v", left, err)
	}
	u, err = m.Store.ReadUser("alice")
	if err != nil || len(u.Authenticators) != 1 || u.Authenticators[0].Label != "phone" || len(u.BackupHashes) != len(codes) {
		t.Fatalf("after removing default: %+v, %v", u, err)
	}
	if left, err := m.RemoveAuthenticator("alice", "phone"); err != nil || left != 0 {
		t.Fatalf("removing the last: %d left, %v", left, err)
	}
	if _, err := m.Store.ReadUser("alice"); !errors.Is(err, keystore.ErrNotEnrolled) {
		t.Errorf("removing the last authenticator left the user enrolled: %v", err)
	}
	if _, err := m.RemoveAuthenticator("alice", "phone"); !errors.Is(err, keystore.ErrNotEnrolled) {
		t.Errorf("removing from a user not enrolled: %v", err)
	}
}

// TestAddIfUnchanged: a self-service add, conditioned on the enrollment
// its code was checked against, loses to an administrator's change made
// meanwhile; Add to a user not enrolled is a first enrollment.
func TestAddIfUnchanged(t *testing.T) {
	m := newManager(t)
	first, _ := m.NewEnrollment("alice")
	first.Label = "laptop"
	codes, err := m.Save(first, SaveOptions{Add: true})
	if err != nil || len(codes) != 10 {
		t.Fatalf("add as a first enrollment: %d codes, %v", len(codes), err)
	}
	u, _ := m.Store.ReadUser("alice")
	fp := u.Fingerprint()
	admins, _ := m.NewEnrollment("alice")
	admins.Label = "admins"
	if _, err := m.Save(admins, SaveOptions{Add: true}); err != nil {
		t.Fatal(err)
	}
	mine, _ := m.NewEnrollment("alice")
	mine.Label = "mine"
	if _, err := m.Save(mine, SaveOptions{Add: true, IfUnchanged: fp}); !errors.Is(err, ErrChanged) {
		t.Fatalf("add after an administrator's change: %v, want ErrChanged", err)
	}
	if u, _ := m.Store.ReadUser("alice"); u.Find("mine") >= 0 {
		t.Error("the add went through")
	}
}

// TestUnlockDamagedStateCoversEveryAuthenticator: unlock over a damaged
// state counts every authenticator's codes up to the end of the window as
// used.
func TestUnlockDamagedStateCoversEveryAuthenticator(t *testing.T) {
	m := newManager(t)
	en, _ := m.NewEnrollment("alice")
	m.Save(en, SaveOptions{})
	e2, _ := m.NewEnrollment("alice")
	e2.Label = "b"
	e2.Params = totp.Params{Algorithm: "SHA1", Digits: 8, Period: 60}
	if _, err := m.Save(e2, SaveOptions{Add: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.Store.StatePath("alice"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock("alice"); err != nil {
		t.Fatal(err)
	}
	st, err := m.Store.ReadState("alice")
	if err != nil || st.LastStep(keystore.DefaultLabel) != totp.Step(m.now(), 30)+1 || st.LastStep("b") != totp.Step(m.now(), 60)+1 {
		t.Errorf("after unlock: %+v, %v", st, err)
	}
}
