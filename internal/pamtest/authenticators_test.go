package pamtest

import (
	"testing"
	"time"

	"github.com/msteinert/pam/v2"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

// TestTwoAuthenticators logs in through the real module and helper as a
// user with two authenticators, one of 6-digit and one of 8-digit codes:
// a code of either is accepted, each once, a code of one does not use up
// the other's step, and with one removed the other keeps working.
func TestTwoAuthenticators(t *testing.T) {
	s := newStack(t, "")
	first, _ := s.enroll("alice")
	m := &account.Manager{Store: s.store, Config: s.cfg}
	en, err := m.NewEnrollment("alice")
	if err != nil {
		t.Fatal(err)
	}
	en.Label = "token"
	en.Params = totp.Params{Algorithm: "SHA256", Digits: 8, Period: 30}
	if _, err := m.Save(en, account.SaveOptions{Add: true}); err != nil {
		t.Fatal(err)
	}
	second := func(steps int64) string {
		c, err := totp.CodeAt(en.Secret, uint64(totp.Step(time.Now(), 30)+steps), en.Params)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	svc := s.service(s.otpgate("required"))
	// Computed once: they stay in the window if a step ends meanwhile.
	a0, a1, b0, b1 := code(t, first, 0), code(t, first, 1), second(0), second(1)

	want(t, "first authenticator", s.auth(svc, "alice", &conv{answers: []string{a0}}, 0), nil)
	want(t, "second authenticator, same step", s.auth(svc, "alice", &conv{answers: []string{b0}}, 0), nil)
	want(t, "first replayed", s.auth(svc, "alice", &conv{answers: []string{a0}}, 0), pam.ErrAuth)
	want(t, "second replayed", s.auth(svc, "alice", &conv{answers: []string{b0}}, 0), pam.ErrAuth)
	st, _ := s.store.ReadState("alice")
	if st.LastStep(keystore.DefaultLabel) == 0 || st.LastStep("token") == 0 || st.Failures != 2 {
		t.Fatalf("state: %+v", st)
	}

	if left, err := m.RemoveAuthenticator("alice", keystore.DefaultLabel); err != nil || left != 1 {
		t.Fatalf("remove: %d left, %v", left, err)
	}
	want(t, "removed authenticator", s.auth(svc, "alice", &conv{answers: []string{a1}}, 0), pam.ErrAuth)
	want(t, "remaining authenticator", s.auth(svc, "alice", &conv{answers: []string{b1}}, 0), nil)
}
