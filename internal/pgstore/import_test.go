package pgstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/internal/verify"
	"github.com/otpgate/otpgate/keystore"
)

// TestImportExportRoundTrip: a files-store user imported into the
// database keeps its authenticators (labels, secrets, parameters), backup
// codes (argon2id hashes moved as they are: the old codes work), each
// authenticator's last step (a code used before the import is a replay
// after it) and state; it is not imported over an enrolled user without
// replace; exported, it is the files-store user again, less the backup
// code spent meanwhile; a user with more authenticators than a files-store
// user may hold is not exported.
func TestImportExportRoundTrip(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	p := totp.Params{Algorithm: "SHA256", Digits: 6, Period: 30}
	codes, _ := backupcode.New(2)
	hs, _ := backupcode.HashSet(codes)
	ss, _ := backupcode.HashScratchSet([]string{"11223344"})
	second := []byte("a second secret of twenty bytes!")
	u := keystore.User{Authenticators: []keystore.Authenticator{
		{Label: "phone", Secret: testSecret, Params: p, Created: now.Add(-time.Hour)},
		{Label: "laptop", Secret: second, Params: totp.Default, Created: now.Add(-time.Minute)},
	}, BackupHashes: append(hs, ss...)}
	step := totp.Step(now, p.Period)
	st := keystore.State{Failures: 2, LastSuccess: now.Add(-time.Minute), LastFailure: now.Add(-30 * time.Second)}
	st.SetLastStep("phone", step)
	if err := d.admin.ImportUser(ctx, "kim", u, st, false); err != nil {
		t.Fatal(err)
	}
	if err := d.admin.ImportUser(ctx, "kim", u, st, false); err == nil || !strings.Contains(err.Error(), "already enrolled") {
		t.Errorf("import over an enrolled user without replace: %v", err)
	}
	h := d.host(t)
	used, _ := totp.CodeAt(testSecret, uint64(step), p)
	if r := h.Verify(ctx, "kim", used, "", ""); r.Outcome != verify.Denied || r.Reason != "replayed" || r.Failures != 3 {
		t.Errorf("the code of the imported last step: %+v", r)
	}
	if r := h.Verify(ctx, "kim", "1122-3344", "", ""); r.Outcome != verify.Accepted || r.Method != "backup" || r.Label != "" || r.BackupLeft != 2 {
		t.Errorf("an imported scratch code: %+v", r)
	}
	// The second authenticator's code of the same step was not used: it
	// is accepted, and moves that authenticator's step only.
	laptop, _ := totp.CodeAt(second, uint64(totp.Step(time.Now(), totp.Default.Period)), totp.Default)
	if r := h.Verify(ctx, "kim", laptop, "", ""); r.Outcome != verify.Accepted || r.Label != "laptop" {
		t.Errorf("the second imported authenticator: %+v", r)
	}
	gotU, gotSt, err := d.admin.ExportUser(ctx, "kim")
	if err != nil {
		t.Fatal(err)
	}
	if len(gotU.Authenticators) != 2 || !slices.Equal(gotU.BackupHashes, hs) {
		t.Fatalf("exported user %+v; want %+v with the scratch code spent", gotU, u)
	}
	for i, au := range gotU.Authenticators {
		want := u.Authenticators[i]
		if au.Label != want.Label || string(au.Secret) != string(want.Secret) || au.Params != want.Params || !au.Created.Equal(want.Created) {
			t.Errorf("exported authenticator %d: %+v, want %+v", i, au, want)
		}
	}
	if gotSt.Failures != 0 || gotSt.LastStep("phone") != step || gotSt.LastStep("laptop") == 0 || !gotSt.LockedUntil.IsZero() || gotSt.LastSuccess.Before(now) || !gotSt.LastFailure.IsZero() {
		t.Errorf("exported state %+v", gotSt)
	}
	for i := len(u.Authenticators); i <= keystore.MaxAuthenticators; i++ {
		if err := d.admin.Enroll(ctx, "kim", Authenticator{Label: fmt.Sprintf("extra%d", i), Secret: testSecret, Params: totp.Default}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := d.admin.ExportUser(ctx, "kim"); err == nil {
		t.Errorf("a user with %d authenticators was exported", keystore.MaxAuthenticators+1)
	}
	if err := d.admin.ImportUser(ctx, "kim", u, keystore.State{LockedUntil: now.Add(time.Hour), Failures: 5}, true); err != nil {
		t.Fatal(err)
	}
	if r := h.Verify(ctx, "kim", codes[0], "", ""); r.Outcome != verify.Locked {
		t.Errorf("an imported lock: %+v", r)
	}
	if st, err := h.Status(ctx, "kim"); err != nil || strings.Join(st.Authenticators, ",") != "phone,laptop" || st.BackupLeft != 3 {
		t.Errorf("status after import with replace: %+v %v", st, err)
	}
}
