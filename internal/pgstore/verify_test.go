package pgstore

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/internal/verify"
)

var testSecret = []byte("12345678901234567890")

func enroll(t testing.TB, d *testDB, user, label string, secret []byte, p totp.Params) {
	t.Helper()
	if err := d.admin.Enroll(context.Background(), user, Authenticator{Label: label, Secret: secret, Params: p}); err != nil {
		t.Fatal(err)
	}
}

func codeNow(t testing.TB, secret []byte, p totp.Params, delta int64) string {
	t.Helper()
	c, err := totp.CodeAt(secret, uint64(totp.Step(time.Now(), p.Period)+delta), p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReplayAcrossHosts: a code accepted through one host is refused as
// replayed through another, and so is the code of the step before.
func TestReplayAcrossHosts(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	enroll(t, d, "alice", "phone", testSecret, totp.Default)
	h1, h2 := d.host(t), d.host(t)
	code := codeNow(t, testSecret, totp.Default, 0)
	if r := h1.Verify(ctx, "alice", code, "sshd", "192.0.2.1"); r.Outcome != verify.Accepted || r.Method != "totp" || r.Label != "phone" {
		t.Fatalf("first use: %+v", r)
	}
	if r := h2.Verify(ctx, "alice", code, "sudo", ""); r.Outcome != verify.Denied || r.Reason != "replayed" || r.Failures != 1 {
		t.Fatalf("the same code on another host: %+v", r)
	}
	if r := h2.Verify(ctx, "alice", codeNow(t, testSecret, totp.Default, -1), "sudo", ""); r.Outcome != verify.Denied || r.Reason != "replayed" || r.Failures != 2 {
		t.Fatalf("an older code after a newer one: %+v", r)
	}
}

// TestPerAuthenticatorSteps: each authenticator has its own last step.
// A code of one does not use up the same step of another, and a replay is
// refused per authenticator.
func TestPerAuthenticatorSteps(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	other := []byte("abcdefghijklmnopqrstuvwxyz012345")
	p8 := totp.Params{Algorithm: "SHA256", Digits: 8, Period: 30}
	enroll(t, d, "bob", "phone", testSecret, totp.Default)
	enroll(t, d, "bob", "token", other, p8)
	enroll(t, d, "bob", "tablet", other, totp.Default)
	h := d.host(t)
	at := time.Unix(1_800_000_015, 0)
	code := func(s []byte, p totp.Params) string {
		c, _ := totp.CodeAt(s, uint64(totp.Step(at, p.Period)), p)
		return c
	}
	for _, c := range []struct {
		code, outcome, reason, label string
	}{
		{code(testSecret, totp.Default), "accepted", "", "phone"},
		{code(other, p8), "accepted", "", "token"},
		{code(other, totp.Default), "accepted", "", "tablet"},
		{code(other, p8), "denied", "replayed", ""},
		{code(testSecret, totp.Default), "denied", "replayed", ""},
	} {
		v := d.verifyAt(t, "bob", c.code, nil, at)
		if v.Outcome != c.outcome || v.Reason != c.reason || v.Label != c.label {
			t.Errorf("code %s: %+v, want %s %s %s", c.code, v, c.outcome, c.reason, c.label)
		}
	}
	st, err := h.Status(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Enrolled || strings.Join(st.Authenticators, ",") != "phone,token,tablet" || st.Failures != 2 {
		t.Errorf("status %+v", st)
	}
}

// TestLockoutCountsAndExpires: failures lock at max_failures for
// lock_duration; while locked nothing is counted and even the right code
// is refused; after the lock a fresh run starts; a success clears the
// count.
func TestLockoutCountsAndExpires(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	if err := d.admin.SetPolicy(ctx, Policy{Window: 1, MaxFailures: 3, LockDuration: time.Minute}); err != nil {
		t.Fatal(err)
	}
	enroll(t, d, "carol", "phone", testSecret, totp.Default)
	at := time.Unix(1_800_000_000, 0)
	right := func() string { c, _ := totp.CodeAt(testSecret, uint64(totp.Step(at, 30)), totp.Default); return c }
	wrong := "000000"
	if right() == wrong {
		wrong = "111111"
	}
	for i := 1; i <= 2; i++ {
		if v := d.verifyAt(t, "carol", wrong, nil, at); v.Outcome != "denied" || v.Failures != i || !v.LockedUntil.IsZero() {
			t.Fatalf("failure %d: %+v", i, v)
		}
	}
	v := d.verifyAt(t, "carol", "x", nil, at)
	if v.Outcome != "denied" || v.Reason != "malformed-code" || v.Failures != 3 || !v.LockedUntil.Equal(at.Add(time.Minute)) {
		t.Fatalf("the third failure (malformed) must lock until %s: %+v", at.Add(time.Minute), v)
	}
	at = at.Add(59 * time.Second)
	if v := d.verifyAt(t, "carol", right(), nil, at); v.Outcome != "locked" || v.Failures != 3 || !v.LockedUntil.Equal(at.Add(time.Second)) {
		t.Fatalf("the right code while locked: %+v", v)
	}
	at = at.Add(time.Second)
	if v := d.verifyAt(t, "carol", wrong, nil, at); v.Outcome != "denied" || v.Failures != 1 || !v.LockedUntil.IsZero() {
		t.Fatalf("a failure once the lock ran out starts a fresh run: %+v", v)
	}
	if v := d.verifyAt(t, "carol", right(), nil, at); v.Outcome != "accepted" || v.Failures != 0 {
		t.Fatalf("the right code after the lock: %+v", v)
	}
	st, err := d.host(t).Status(ctx, "carol")
	if err != nil {
		t.Fatal(err)
	}
	if st.Failures != 0 || !st.LastSuccess.Equal(at) || !st.LastFailure.IsZero() || !st.LockedUntil.IsZero() {
		t.Errorf("status after a success: %+v", st)
	}
}

// TestBackupCodeOnce: a backup code works once, in any spelling, through
// a host that only ever sends argon2id keys; a scratch code too; the
// count goes down.
func TestBackupCodeOnce(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	if err := d.admin.SetPolicy(ctx, Policy{Window: 1, MaxFailures: 20, LockDuration: time.Minute}); err != nil {
		t.Fatal(err)
	}
	enroll(t, d, "dave", "phone", testSecret, totp.Default)
	codes, _ := backupcode.New(3)
	hs, _ := backupcode.HashSet(codes)
	ss, _ := backupcode.HashScratchSet([]string{"24681357"})
	if err := d.admin.SetBackupHashes(ctx, "dave", append(hs, ss...)); err != nil {
		t.Fatal(err)
	}
	h := d.host(t)
	steps := []struct {
		in      string
		outcome verify.Outcome
		left    int
	}{
		{codes[0], verify.Accepted, 3},
		{codes[0], verify.Denied, 3},
		{strings.ToLower(strings.ReplaceAll(codes[1], "-", " ")), verify.Accepted, 2},
		{"2468-1357", verify.Accepted, 1},
		{"24681357", verify.Denied, 1},
		{codes[1], verify.Denied, 1},
		{codes[2], verify.Accepted, 0},
	}
	for i, s := range steps {
		r := h.Verify(ctx, "dave", s.in, "login", "")
		if r.Outcome != s.outcome || r.BackupLeft != s.left || (s.outcome == verify.Accepted && r.Method != "backup") {
			t.Errorf("step %d (%q): %+v, want %v with %d left", i, s.in, r, s.outcome, s.left)
		}
	}
}

// TestNotEnrolled: an unknown user is not-enrolled and leaves no row; an
// invalid name never reaches the database.
func TestNotEnrolled(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	h := d.host(t)
	if r := h.Verify(ctx, "nobody", "123456", "", ""); r.Outcome != verify.NotEnrolled || r.Reason != "not-enrolled" {
		t.Errorf("unknown user: %+v", r)
	}
	if r := h.Verify(ctx, "../etc", "123456", "", ""); r.Outcome != verify.Denied || r.Reason != "invalid-user" {
		t.Errorf("invalid user: %+v", r)
	}
	var n int
	if err := d.admin.conn.QueryRow(ctx, `SELECT count(*) FROM otpgate.users`).Scan(&n); err != nil || n != 0 {
		t.Errorf("users after attempts on unknown names: %d, %v", n, err)
	}
	if st, err := h.Status(ctx, "nobody"); err != nil || st.Enrolled {
		t.Errorf("status of an unknown user: %+v, %v", st, err)
	}
}

// TestParallelOneCode: 50 hosts (50 connections) send the same right code
// at once: exactly one is accepted, the other 49 are replays, and every
// one of those is counted.
func TestParallelOneCode(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	if err := d.admin.SetPolicy(ctx, Policy{Window: 1, MaxFailures: 100, LockDuration: time.Minute}); err != nil {
		t.Fatal(err)
	}
	enroll(t, d, "erin", "phone", testSecret, totp.Default)
	const n = 50
	hosts := make([]*Client, n)
	for i := range hosts {
		hosts[i] = d.host(t)
	}
	code := codeNow(t, testSecret, totp.Default, 0)
	results := make([]Result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = hosts[i].Verify(ctx, "erin", code, "sshd", "")
		}()
	}
	close(start)
	wg.Wait()
	accepted, replayed := 0, 0
	for _, r := range results {
		switch {
		case r.Outcome == verify.Accepted:
			accepted++
		case r.Outcome == verify.Denied && r.Reason == "replayed":
			replayed++
		default:
			t.Errorf("unexpected verdict %+v", r)
		}
	}
	if accepted != 1 || replayed != n-1 {
		t.Fatalf("%d accepted, %d replayed; want 1 and %d", accepted, replayed, n-1)
	}
	st, err := hosts[0].Status(ctx, "erin")
	if err != nil {
		t.Fatal(err)
	}
	// The accepted attempt reset the count; replays after it add up, and
	// those charged before it were wiped by it: at most n-1.
	if st.Failures > n-1 || !st.LockedUntil.IsZero() {
		t.Errorf("status after the race: %+v", st)
	}
}

// TestParallelWrongCodes: 200 wrong codes at once from 40 connections add
// up exactly: max_failures of them are counted, the one that reaches it
// sets the lock, every later one is refused as locked without counting.
func TestParallelWrongCodes(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	const maxFailures = 37
	if err := d.admin.SetPolicy(ctx, Policy{Window: 1, MaxFailures: maxFailures, LockDuration: time.Hour}); err != nil {
		t.Fatal(err)
	}
	enroll(t, d, "frank", "phone", testSecret, totp.Default)
	right := map[string]bool{}
	for s := int64(-2); s <= 2; s++ {
		right[codeNow(t, testSecret, totp.Default, s)] = true
	}
	const conns, per = 40, 5
	results := make(chan Result, conns*per)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range conns {
		h := d.host(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for j := range per {
				code := "000000"
				for k := i*per + j; right[code]; k++ {
					code = strings.Repeat(string(rune('0'+k%10)), 6)
				}
				results <- h.Verify(ctx, "frank", code, "sshd", "")
			}
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	denied, locked, setLock := 0, 0, 0
	for r := range results {
		switch r.Outcome {
		case verify.Denied:
			denied++
			if !r.LockedUntil.IsZero() {
				setLock++
			}
		case verify.Locked:
			locked++
		default:
			t.Errorf("unexpected verdict %+v", r)
		}
	}
	if denied != maxFailures || locked != conns*per-maxFailures || setLock != 1 {
		t.Fatalf("%d denied (%d of them set the lock), %d locked; want %d, 1, %d", denied, setLock, locked, maxFailures, conns*per-maxFailures)
	}
	st, err := d.host(t).Status(ctx, "frank")
	if err != nil {
		t.Fatal(err)
	}
	if st.Failures != maxFailures || time.Until(st.LockedUntil) < 59*time.Minute {
		t.Errorf("status: %+v", st)
	}
}

// TestUnsendableInput: an input PostgreSQL's text cannot carry (a NUL
// byte, invalid UTF-8) or too long to be any code is a malformed code,
// counted, as in the files backend, not an error that counts nothing.
func TestUnsendableInput(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	if err := d.admin.SetPolicy(ctx, Policy{Window: 1, MaxFailures: 10, LockDuration: time.Minute}); err != nil {
		t.Fatal(err)
	}
	enroll(t, d, "ivan", "phone", testSecret, totp.Default)
	h := d.host(t)
	for i, in := range []string{"123\x00456", "\xff\xfe\xfd\xfc\xfb\xfa", strings.Repeat("1", 1000), codeNow(t, testSecret, totp.Default, 0) + "\x00"} {
		r := h.Verify(ctx, "ivan", in, "", "")
		if r.Outcome != verify.Denied || r.Reason != "malformed-code" || r.Failures != i+1 {
			t.Errorf("input %d: %+v, want malformed-code with %d failures", i, r, i+1)
		}
	}
}

// TestVerdictIsDurable: with synchronous_commit turned off for the host's
// session, otpgate.verify still answers only after its commits are on
// disk: right after each answer the WAL is flushed up to where it has
// been written.
func TestVerdictIsDurable(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	if err := d.admin.SetPolicy(ctx, Policy{Window: 1, MaxFailures: 100, LockDuration: time.Minute}); err != nil {
		t.Fatal(err)
	}
	enroll(t, d, "judy", "phone", testSecret, totp.Default)
	conn := d.hostConn(t)
	if _, err := conn.Exec(ctx, `SET synchronous_commit = off`); err != nil {
		t.Fatal(err)
	}
	cl := &Client{conn: conn}
	behind := 0
	for range 20 {
		if r := cl.Verify(ctx, "judy", "abcdef", "", ""); r.Outcome != verify.Denied {
			t.Fatalf("%+v", r)
		}
		var flushedAll bool
		if err := d.admin.conn.QueryRow(ctx, `SELECT pg_current_wal_flush_lsn() >= pg_current_wal_insert_lsn()`).Scan(&flushedAll); err != nil {
			t.Fatal(err)
		}
		if !flushedAll {
			behind++
		}
	}
	// Other writers (autovacuum) may leave WAL unflushed now and then; an
	// asynchronous commit leaves it nearly every time.
	if behind > 5 {
		t.Errorf("the WAL was not flushed after %d of 20 verdicts", behind)
	}
	var setting string
	if err := conn.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&setting); err != nil || setting != "off" {
		t.Errorf("the host's own setting was changed: %q %v", setting, err)
	}
}

// TestBackupCodesOwnSalts: codes of an older format, each under a salt
// of its own (backupcode.Hash), work once each through the host, the
// last one as well as the first: the host sends a key per salt, in
// order, and the database pairs them.
func TestBackupCodesOwnSalts(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	if err := d.admin.SetPolicy(ctx, Policy{Window: 1, MaxFailures: 20, LockDuration: time.Minute}); err != nil {
		t.Fatal(err)
	}
	enroll(t, d, "olga", "phone", testSecret, totp.Default)
	codes, _ := backupcode.New(4)
	var hs []string
	for _, c := range codes {
		n, _ := backupcode.Normalize(c)
		h, err := backupcode.Hash(n)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	if err := d.admin.SetBackupHashes(ctx, "olga", hs); err != nil {
		t.Fatal(err)
	}
	h := d.host(t)
	for i := len(codes) - 1; i >= 0; i-- {
		if r := h.Verify(ctx, "olga", codes[i], "", ""); r.Outcome != verify.Accepted || r.BackupLeft != i {
			t.Errorf("code %d: %+v", i, r)
		}
		if r := h.Verify(ctx, "olga", codes[i], "", ""); r.Outcome != verify.Denied {
			t.Errorf("code %d again: %+v", i, r)
		}
	}
}
