package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/internal/verify"
	"github.com/otpgate/otpgate/keystore"
)

// TestAdminUserOperations: the administrator's operations behind otpgate
// enroll, reset, unlock, status, list and backup-codes with --dsn, seen
// through a host's Client: a first enrollment with its confirmation step
// (that code is then a replay on a host), refused over an existing one
// without replace; an authenticator added (label taken, too many refused
// with account's errors); status shaped as account.Status; one label
// removed, the last one a reset that keeps the failures; unlock; new
// backup codes replacing the old.
func TestAdminUserOperations(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	h := d.host(t)
	a := d.admin
	step := totp.Step(time.Now(), 30)
	codes, _ := backupcode.New(3)
	hashes, _ := backupcode.HashSet(codes)
	au := Authenticator{Label: "phone", Secret: testSecret, Params: totp.Default, LastStep: step}
	if err := a.SetEnrollment(ctx, "lee", au, hashes, false); err != nil {
		t.Fatal(err)
	}
	if err := a.SetEnrollment(ctx, "lee", au, hashes, false); !errors.Is(err, account.ErrEnrolled) {
		t.Errorf("enrolling over an enrollment: %v", err)
	}
	confirmed, _ := totp.CodeAt(testSecret, uint64(step), totp.Default)
	if r := h.Verify(ctx, "lee", confirmed, "", ""); r.Reason != "replayed" {
		t.Errorf("the confirmation code on a host: %+v", r)
	}
	second := []byte("another secret, twenty-plus bytes")
	if err := a.AddAuthenticator(ctx, "lee", Authenticator{Label: "phone", Secret: second, Params: totp.Default}); !errors.Is(err, account.ErrLabelTaken) {
		t.Errorf("adding a taken label: %v", err)
	}
	if err := a.AddAuthenticator(ctx, "nobody", Authenticator{Label: "x", Secret: second, Params: totp.Default}); !errors.Is(err, keystore.ErrNotEnrolled) {
		t.Errorf("adding to a user not enrolled: %v", err)
	}
	for i := 1; i < keystore.MaxAuthenticators; i++ {
		if err := a.AddAuthenticator(ctx, "lee", Authenticator{Label: fmt.Sprintf("t%d", i), Secret: second, Params: totp.Default}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.AddAuthenticator(ctx, "lee", Authenticator{Label: "onemore", Secret: second, Params: totp.Default}); !errors.Is(err, account.ErrTooMany) {
		t.Errorf("adding past the most: %v", err)
	}
	// Two failures from a host (three with the replay), then the status.
	for range 2 {
		h.Verify(ctx, "lee", "000000x", "sshd", "192.0.2.1")
	}
	s, err := a.Status(ctx, "lee")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Enrolled || len(s.Authenticators) != keystore.MaxAuthenticators || s.Authenticators[0].Label != "phone" ||
		s.Algorithm != "SHA1" || s.Digits != 6 || s.Period != 30 || s.BackupLeft != 3 || s.Failures != 3 || s.Locked || s.LastFailure.IsZero() {
		t.Errorf("status %+v", s)
	}
	if s, err := a.Status(ctx, "nobody"); err != nil || s.Enrolled || s.User != "nobody" {
		t.Errorf("status of an unknown user: %+v %v", s, err)
	}
	if err := a.SetEnrollment(ctx, "abe", au, nil, false); err != nil {
		t.Fatal(err)
	}
	if users, err := a.Users(ctx); err != nil || !slices.Equal(users, []string{"abe", "lee"}) {
		t.Errorf("users %v %v", users, err)
	}
	if _, err := a.RemoveAuthenticator(ctx, "lee", "nope"); !errors.Is(err, account.ErrNoLabel) || !strings.Contains(err.Error(), "phone, t1") {
		t.Errorf("removing a label the user lacks: %v", err)
	}
	if left, err := a.RemoveAuthenticator(ctx, "lee", "phone"); err != nil || left != keystore.MaxAuthenticators-1 {
		t.Errorf("removing one: %d %v", left, err)
	}
	if r := h.Verify(ctx, "lee", codeNow(t, testSecret, totp.Default, 1), "", ""); r.Outcome == verify.Accepted {
		t.Errorf("a removed authenticator's code: %+v", r)
	}
	newCodes, _ := backupcode.New(2)
	newHashes, _ := backupcode.HashSet(newCodes)
	if err := a.NewBackupHashes(ctx, "lee", newHashes); err != nil {
		t.Fatal(err)
	}
	if r := h.Verify(ctx, "lee", codes[0], "", ""); r.Outcome == verify.Accepted {
		t.Errorf("an old backup code after new ones: %+v", r)
	}
	// Lock the user, then unlock: the next right code is accepted.
	pol, _ := a.Policy(ctx)
	for range pol.MaxFailures {
		h.Verify(ctx, "lee", "wrong", "", "")
	}
	if s, _ := a.Status(ctx, "lee"); !s.Locked || s.LockedUntil.Before(time.Now()) {
		t.Errorf("not locked after %d failures: %+v", pol.MaxFailures, s)
	}
	if err := a.Unlock(ctx, "lee"); err != nil {
		t.Fatal(err)
	}
	if r := h.Verify(ctx, "lee", newCodes[0], "", ""); r.Outcome != verify.Accepted {
		t.Errorf("a backup code after unlock: %+v", r)
	}
	for range 2 {
		h.Verify(ctx, "lee", "wrong", "", "")
	}
	if err := a.Reset(ctx, "lee"); err != nil {
		t.Fatal(err)
	}
	if s, _ := a.Status(ctx, "lee"); s.Enrolled || s.Failures != 2 || s.BackupLeft != 0 {
		t.Errorf("after reset: %+v (the failures stay)", s)
	}
	if err := a.Reset(ctx, "lee"); !errors.Is(err, keystore.ErrNotEnrolled) {
		t.Errorf("reset of a user not enrolled: %v", err)
	}
	if err := a.Unlock(ctx, "ghost"); !errors.Is(err, keystore.ErrNotEnrolled) {
		t.Errorf("unlock of a user not in the database: %v", err)
	}
	if left, err := a.RemoveAuthenticator(ctx, "abe", "phone"); err != nil || left != 0 {
		t.Errorf("removing the last: %d %v", left, err)
	}
	if users, _ := a.Users(ctx); len(users) != 0 {
		t.Errorf("users after resets: %v", users)
	}
	if v, err := a.SchemaVersion(ctx); err != nil || v != SchemaVersion {
		t.Errorf("schema version %d %v", v, err)
	}
}
