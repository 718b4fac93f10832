package pgstore

import (
	"context"
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
// database keeps its secret, parameters, backup codes (argon2id hashes
// moved as they are: the old codes work), last step (a code used before
// the import is a replay after it) and state; it is not imported over an
// enrolled user without replace; exported, it is the files-store user
// again, less the backup code spent meanwhile; a user with two
// authenticators is not exported.
func TestImportExportRoundTrip(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	p := totp.Params{Algorithm: "SHA256", Digits: 6, Period: 30}
	codes, _ := backupcode.New(2)
	hs, _ := backupcode.HashSet(codes)
	ss, _ := backupcode.HashScratchSet([]string{"11223344"})
	u := keystore.User{Secret: testSecret, Params: p, Created: now.Add(-time.Hour), BackupHashes: append(hs, ss...)}
	step := totp.Step(now, p.Period)
	st := keystore.State{Failures: 2, LastStep: step, LastSuccess: now.Add(-time.Minute), LastFailure: now.Add(-30 * time.Second)}
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
	gotU, gotSt, err := d.admin.ExportUser(ctx, "kim")
	if err != nil {
		t.Fatal(err)
	}
	if string(gotU.Secret) != string(u.Secret) || gotU.Params != u.Params || !gotU.Created.Equal(u.Created) || !slices.Equal(gotU.BackupHashes, hs) {
		t.Errorf("exported user %+v; want %+v with the scratch code spent", gotU, u)
	}
	if gotSt.Failures != 0 || gotSt.LastStep != step || !gotSt.LockedUntil.IsZero() || gotSt.LastSuccess.Before(now) || !gotSt.LastFailure.IsZero() {
		t.Errorf("exported state %+v", gotSt)
	}
	if err := d.admin.Enroll(ctx, "kim", Authenticator{Label: "second", Secret: testSecret, Params: totp.Default}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.admin.ExportUser(ctx, "kim"); err == nil {
		t.Error("a user with two authenticators was exported")
	}
	if err := d.admin.ImportUser(ctx, "kim", u, keystore.State{LockedUntil: now.Add(time.Hour), Failures: 5}, true); err != nil {
		t.Fatal(err)
	}
	if r := h.Verify(ctx, "kim", codes[0], "", ""); r.Outcome != verify.Locked {
		t.Errorf("an imported lock: %+v", r)
	}
	if st, err := h.Status(ctx, "kim"); err != nil || strings.Join(st.Authenticators, ",") != ImportLabel || st.BackupLeft != 3 {
		t.Errorf("status after import with replace: %+v %v", st, err)
	}
}
