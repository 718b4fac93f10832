package account

import (
	"errors"
	"os"
	"path/filepath"
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
	if st.LastStep != totp.Step(m.now(), 30) {
		t.Errorf("confirmation step not recorded: %d", st.LastStep)
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
	if st.Failures != 2 || st.LastStep != 0 {
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
	if want := totp.Step(m.now(), 30) + 1; st.LastStep != want || st.Failures != 0 {
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
	if st, _ := m.Store.ReadState("alice"); st.LastStep == 0 {
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
