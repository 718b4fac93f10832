package pgstore

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/internal/verify"
	"github.com/otpgate/otpgate/keystore"
)

// TestRulesMatchFilesBackend runs one random sequence of attempts (right
// codes of steps around now, replays, wrong and malformed codes, backup
// and scratch codes in several spellings, time passing by seconds, steps
// and whole locks) against the files backend (internal/verify on a
// keystore) and against the database, with the same secret, codes,
// policy and clock, and requires the same verdict every time: outcome,
// reason, method, failures, locked_until and backup codes left.
func TestRulesMatchFilesBackend(t *testing.T) {
	for _, p := range []totp.Params{{Algorithm: "SHA1", Digits: 6, Period: 30}, {Algorithm: "SHA512", Digits: 8, Period: 60}} {
		t.Run(fmt.Sprintf("%s-%d-%d", p.Algorithm, p.Digits, p.Period), func(t *testing.T) {
			rulesMatch(t, p)
		})
	}
}

func rulesMatch(t *testing.T, p totp.Params) {
	d := newDB(t)
	ctx := context.Background()
	pol := Policy{Window: 1, MaxFailures: 3, LockDuration: 90 * time.Second}
	if err := d.admin.SetPolicy(ctx, pol); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Store = t.TempDir() + "/store"
	cfg.Window, cfg.MaxFailures, cfg.LockDuration = pol.Window, pol.MaxFailures, pol.LockDuration

	secret := make([]byte, 20)
	rand.Read(secret)
	codes, _ := backupcode.New(3)
	hashes, err := backupcode.HashSet(codes)
	if err != nil {
		t.Fatal(err)
	}
	scratch := []string{"12345678", "87654321"}
	sh, err := backupcode.HashScratchSet(scratch)
	if err != nil {
		t.Fatal(err)
	}
	hashes = append(hashes, sh...)

	now := time.Unix(1_800_000_000, 0)
	store := keystore.New(cfg.Store)
	v := &verify.Verifier{Store: store, Config: cfg, Now: func() time.Time { return now }}
	l, err := store.Lock("alice", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WriteUser(keystore.User{Authenticators: []keystore.Authenticator{{Label: "phone", Secret: secret, Params: p, Created: now}}, BackupHashes: hashes}); err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	if err := d.admin.Enroll(ctx, "alice", Authenticator{Label: "phone", Secret: secret, Params: p, Created: now}); err != nil {
		t.Fatal(err)
	}
	if err := d.admin.SetBackupHashes(ctx, "alice", hashes); err != nil {
		t.Fatal(err)
	}
	keyer := &Client{conn: d.admin.conn}

	codeAt := func(delta int64) string {
		c, err := totp.CodeAt(secret, uint64(totp.Step(now, p.Period)+delta), p)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	digits := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('0' + mrand.IntN(10))
		}
		return string(b)
	}
	var lastAccepted string
	seen := map[string]int{}
	for i := range 400 {
		switch mrand.IntN(10) {
		case 0, 1, 2:
		case 3, 4, 5:
			now = now.Add(time.Duration(1+mrand.IntN(p.Period)) * time.Second)
		case 6, 7:
			now = now.Add(time.Duration(p.Period*(1+mrand.IntN(3))) * time.Second)
		case 8:
			now = now.Add(pol.LockDuration + time.Second)
		case 9:
			now = now.Add(pol.LockDuration - time.Second)
		}
		var in string
		switch k := mrand.IntN(16); k {
		case 0, 1, 2, 3, 4:
			in = codeAt(int64(mrand.IntN(7) - 3))
		case 5:
			in = " " + codeAt(int64(mrand.IntN(3)-1)) + "\t"
		case 6, 7:
			in = lastAccepted
		case 8:
			in = digits(p.Digits)
		case 9:
			in = digits(p.Digits + []int{-1, 1, 2}[mrand.IntN(3)])
		case 10:
			in = []string{"", "hello", "ABCDE-1234U", "\u00a0"}[mrand.IntN(4)]
		case 11, 12:
			c := codes[mrand.IntN(len(codes))]
			in = []string{c, strings.ToLower(c), strings.ReplaceAll(c, "-", " "), " " + c}[mrand.IntN(4)]
		case 13:
			in = scratch[mrand.IntN(2)]
			if mrand.IntN(2) == 0 {
				in = in[:4] + "-" + in[4:]
			}
		case 14:
			fresh, _ := backupcode.New(1)
			in = fresh[0]
		case 15:
			in = digits(8)
		}
		want := v.Verify(verify.Request{User: "alice", Code: in})
		if want.Outcome == verify.Failed {
			t.Fatalf("attempt %d: the files backend failed: %v", i, want.Err)
		}
		keys, err := keyer.backupKeys(ctx, "alice", in)
		if err != nil {
			t.Fatal(err)
		}
		got := d.verifyAt(t, "alice", in, keys, now)
		wantLocked := want.LockedUntil
		if got.Outcome != want.Outcome.String() || got.Reason != want.Reason || got.Method != want.Method ||
			got.Failures != want.Failures || !got.LockedUntil.Equal(wantLocked) || got.BackupLeft != want.BackupLeft {
			t.Fatalf("attempt %d at %s, input %q:\n database %+v\n files    %+v", i, now.UTC().Format(time.RFC3339), in, got, want)
		}
		if want.Outcome == verify.Accepted && want.Method == "totp" {
			lastAccepted = strings.TrimSpace(in)
		}
		seen[want.Outcome.String()+"/"+want.Reason+want.Method]++
	}
	// The sequence must have exercised every rule, or it proves little.
	for _, k := range []string{"accepted/totp", "accepted/backup", "denied/wrong-code", "denied/replayed", "denied/malformed-code", "locked/locked"} {
		if seen[k] == 0 {
			t.Errorf("no attempt ended %s: %v", k, seen)
		}
	}
	t.Logf("verdicts: %v", seen)
}
