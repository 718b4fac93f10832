package main_test

// kill -9 of `otpgate verify` at random moments of 1,000 mixed
// verifications (right, replayed, wrong and malformed TOTP codes; unused,
// spent and never-issued backup codes), and of `otpgate backup-codes`.
// After every process the files are read back, so a violation is caught at
// the attempt that caused it.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

// runWithin is run bounded by d: otpgate still running after d is killed
// and the test fails.
func (e *env) runWithin(d time.Duration, stdin string, args ...string) (string, string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, append([]string{"--config", e.config}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		e.t.Fatalf("otpgate %v did not finish within %v", args, d)
	}
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			e.t.Fatalf("running otpgate %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), withoutLogLines(errb.String()), code
}

// withoutLogLines drops the attempt lines otpgate writes to standard error
// where there is no syslog: the answer is the rest.
func withoutLogLines(s string) string {
	var keep []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(l, "otpgate: log: ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "")
}

// What an attempt sends.
type attemptKind int

const (
	kRight     attemptKind = iota // the code of the next unused step in the window
	kReplay                       // the code of a step already accepted, still in the window
	kWrong                        // six digits that are no step's code near now
	kMalformed                    // neither a TOTP nor a backup code
	kBackup                       // an unused backup code of the current set
	kSpent                        // a backup code of the current set already accepted
	kBadBackup                    // a well-formed backup code never issued
	nKinds
)

var kindNames = [nKinds]string{"right", "replayed", "wrong", "malformed", "backup", "spent-backup", "bad-backup"}

// kindWeights is the mix, in parts of 100.
var kindWeights = [nKinds]int{30, 8, 26, 4, 20, 6, 6}

// wantReason is the reason a denial of each kind must give; "" for the
// kinds that must be accepted.
var wantReason = [nKinds]string{"", "replayed", "wrong code", "malformed code", "", "wrong code", "wrong code"}

var deniedRE = regexp.MustCompile(`otpgate: error: denied: ([a-z ]+) \((\d+) of (\d+) failures\)`)

// The policy of the run: a window of 10 steps on either side gives each
// secret about 20 right codes before the run must re-enroll (the command
// has no clock to pin); few failures to a lock, so that locks happen
// often; few backup codes, as each costs an argon2id hash per attempt.
const (
	killWindow   = 10
	killMaxFail  = 4
	killBackups  = 5
	killTotal    = 1000
	killProcWait = 20 * time.Second // one process may not take longer
)

type killStats struct {
	killed        int // died of the kill before saying anything
	killedChanged int // of those, with a file changed: killed between the write and the answer
	answeredDying int // answered, then killed before exiting
	acceptedTOTP  int // reported
	silentTOTP    int // accepted by a killed process, found on disk
	acceptedBack  int
	silentBack    int
	denied        int
	lockedAnswers int
	locks         int // attempts that locked the account
	unlocks       int
	regens        int
	regensKilled  int
	reenrolls     int
	probes        int
}

type killRun struct {
	t      *testing.T
	e      *env
	probe  *env // a copy of the store, to ask whether a code is still usable
	store  *keystore.Store
	rng    *rand.Rand
	seed   uint64
	secret []byte
	codes  map[int64]string // the current secret's codes by step
	steps  map[int64]bool   // steps of the current secret accepted so far
	unused []string         // backup codes of the current set not accepted yet
	spent  []string         // backup codes of the current set accepted
	// floor is the number of wrong attempts whose denial was reported
	// since the failure count could last have been reset (a success, or a
	// killed attempt with a right code, or an unlock): the count on disk
	// may never be lower.
	floor   int
	est     [3]time.Duration // run time of a fast, a backup-code and a backup-codes run
	cur     keystore.State   // the state file as last read
	n       int              // verifications so far
	st      killStats
	history []string
}

// TestKillDuringVerify kills otpgate with SIGKILL at random moments during
// 1,000 mixed verifications of one user, and during the first of the two
// runs of every regeneration of its backup codes. After every process: both files
// parse; a reported acceptance is on disk (the step is recorded, the backup
// code no longer works) and no step or backup code is ever accepted twice,
// reported or not; a reported denial's failure count is the one on disk;
// the count never drops below the denials reported since the last possible
// reset; a count at max_failures always comes with the lock. It supersedes
// the 200-round TestKillDuringWrite.
func TestKillDuringVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping 1,000 verifications under kill -9")
	}
	start := time.Now()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("OTPGATE_KILL_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("OTPGATE_KILL_SEED=%q: %v", s, err)
		}
		seed = v
	}
	policy := fmt.Sprintf("window = %d\n[lockout]\nmax_failures = %d\nlock_duration = \"1h\"\n[backup_codes]\ncount = %d\n", killWindow, killMaxFail, killBackups)
	k := &killRun{t: t, e: newEnv(t, policy), probe: newEnv(t, policy), rng: rand.New(rand.NewPCG(seed, 0)), seed: seed,
		est: [3]time.Duration{10 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}}
	k.store = keystore.New(k.e.store)
	k.enroll(false)
	for k.n < killTotal {
		if time.Now().Before(k.cur.LockedUntil) && k.rng.IntN(2) == 0 {
			k.unlock()
			continue
		}
		kind := k.pick()
		input, ok := k.input(kind)
		if !ok {
			continue // the input needed a new secret or new backup codes first
		}
		k.attempt(kind, input, k.rng.Float64() < 0.6)
	}
	k.sweep()
	k.checkStore()

	s := k.st
	t.Logf("seed %d: %d verifications in %v: %d killed before answering (%d of them after changing a file), %d killed after answering; "+
		"TOTP accepted %d reported + %d found on disk, backup accepted %d + %d; %d denied, %d answered locked, %d locks, %d unlocks; "+
		"%d backup-code sets (%d runs killed), %d re-enrollments, %d probes",
		k.seed, k.n, time.Since(start).Round(time.Millisecond), s.killed, s.killedChanged, s.answeredDying,
		s.acceptedTOTP, s.silentTOTP, s.acceptedBack, s.silentBack, s.denied, s.lockedAnswers, s.locks, s.unlocks,
		s.regens, s.regensKilled, s.reenrolls, s.probes)
	// The kills must have hit every phase, or the run proved little.
	if s.killed < killTotal/5 || s.killedChanged < 5 || s.acceptedTOTP < 100 || s.acceptedBack < 20 || s.locks < 5 || s.regensKilled < 3 {
		t.Errorf("the run did not cover enough: %+v", s)
	}
}

// pick draws an attempt kind from the mix.
func (k *killRun) pick() attemptKind {
	r := k.rng.IntN(100)
	for kind, w := range kindWeights {
		if r < w {
			return attemptKind(kind)
		}
		r -= w
	}
	return kWrong
}

// window returns the steps a code sent now is sure to be judged in, with
// one step to spare for the clock moving on during the run.
func window() (lo, hi int64) {
	now := totp.Step(time.Now(), 30)
	return now - killWindow + 1, now + killWindow
}

func (k *killRun) code(step int64) string {
	if c, ok := k.codes[step]; ok {
		return c
	}
	c, err := totp.CodeAt(k.secret, uint64(step), totp.Default)
	if err != nil {
		k.t.Fatal(err)
	}
	k.codes[step] = c
	return c
}

// collides reports whether c is the code of a step in [lo, hi].
func (k *killRun) collides(c string, lo, hi int64) bool {
	for s := lo; s <= hi; s++ {
		if k.code(s) == c {
			return true
		}
	}
	return false
}

// input returns what an attempt of kind sends. When the secret has no
// right code left in the window, or the set no unused backup code, it
// renews them instead and returns false.
func (k *killRun) input(kind attemptKind) (string, bool) {
	lo, hi := window()
	last := k.cur.LastStep(keystore.DefaultLabel)
	switch kind {
	case kRight:
		s := max(last+1, lo)
		if s > hi {
			k.enroll(true)
			return "", false
		}
		return k.code(s), true
	case kReplay:
		var cands []int64
		for s := range k.steps {
			if s >= lo && s <= last {
				cands = append(cands, s)
			}
		}
		if len(cands) > 0 {
			slices.Sort(cands)
			c := k.code(cands[k.rng.IntN(len(cands))])
			if !k.collides(c, last+1, hi+2) {
				return c, true
			}
		}
		return "", false
	case kWrong:
		for {
			c := fmt.Sprintf("%06d", k.rng.IntN(1000000))
			if !k.collides(c, lo-2, hi+2) {
				return c, true
			}
		}
	case kMalformed:
		return []string{"12345", "1234567", "1234-567", "code?", "12 34 56"}[k.rng.IntN(5)], true
	case kBackup:
		if len(k.unused) == 0 {
			k.newBackupCodes()
			return "", false
		}
		return k.unused[k.rng.IntN(len(k.unused))], true
	case kSpent:
		if len(k.spent) == 0 {
			return "", false
		}
		return k.spent[k.rng.IntN(len(k.spent))], true
	case kBadBackup:
		c, err := backupcode.New(1)
		if err != nil {
			k.t.Fatal(err)
		}
		return c[0], true
	}
	panic("unreachable")
}

// state reads the state file, after checking that both files parse.
func (k *killRun) state() keystore.State {
	k.t.Helper()
	_, _, st := k.files()
	return st
}

// files reads the user and state files, checks that both parse, and
// returns their bytes and the state.
func (k *killRun) files() (user, state []byte, st keystore.State) {
	k.t.Helper()
	user, err := os.ReadFile(k.store.UserPath("alice"))
	if err != nil {
		k.fatalf("user file: %v", err)
	}
	if _, err := keystore.ParseUser(user); err != nil {
		k.fatalf("user file %s: %v\n%s", k.store.UserPath("alice"), err, user)
	}
	state, err = os.ReadFile(k.store.StatePath("alice"))
	if err != nil {
		k.fatalf("state file: %v", err)
	}
	if st, err = keystore.ParseState(state); err != nil {
		k.fatalf("state file %s: %v\n%s", k.store.StatePath("alice"), err, state)
	}
	k.cur = st
	return user, state, st
}

func (k *killRun) fatalf(format string, args ...any) {
	k.t.Helper()
	k.t.Fatalf("after %d verifications (seed %d): %s\nlast attempts:\n%s", k.n, k.seed, fmt.Sprintf(format, args...), strings.Join(k.history, "\n"))
}

func (k *killRun) note(format string, args ...any) {
	k.history = append(k.history, fmt.Sprintf(format, args...))
	if len(k.history) > 8 {
		k.history = k.history[1:]
	}
}

// start runs otpgate with input, killing it after a random part of the
// estimated run time est[class] when kill is set. It returns stdout,
// stderr, whether the kill ended it, and updates the estimate from runs
// that ended on their own.
func (k *killRun) start(class int, kill bool, input string, args ...string) (stdout, stderr string, exit int, killed bool, after time.Duration) {
	k.t.Helper()
	cmd := exec.Command(k.e.bin, append([]string{"--config", k.e.config}, args...)...)
	cmd.Stdin = strings.NewReader(input)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	began := time.Now()
	if kill {
		after = time.Duration(k.rng.Int64N(int64(k.est[class]) * 6 / 5))
		killer := time.AfterFunc(after, func() { cmd.Process.Kill() })
		defer killer.Stop()
	}
	var hung atomic.Bool
	watchdog := time.AfterFunc(killProcWait, func() { hung.Store(true); cmd.Process.Kill() })
	cmd.Wait()
	watchdog.Stop()
	took := time.Since(began)
	if hung.Load() {
		k.fatalf("otpgate %v did not finish within %v", args, killProcWait)
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return out.String(), withoutLogLines(errb.String()), -1, true, after
	}
	k.est[class] = (k.est[class]*3 + took) / 4
	return out.String(), withoutLogLines(errb.String()), ws.ExitStatus(), false, after
}

// attempt runs one verification and checks everything it may have done.
func (k *killRun) attempt(kind attemptKind, input string, kill bool) {
	k.t.Helper()
	k.n++
	u0b, s0b, s0 := k.files()
	locked0 := time.Now().Before(s0.LockedUntil)
	class := 0
	if kind >= kBackup {
		class = 1
	}
	_, stderr, exit, killed, after := k.start(class, kill, input+"\n", "verify", "--user", "alice")
	u1b, s1b, s1 := k.files()
	how := "ran to the end"
	if kill {
		how = fmt.Sprintf("kill after %v", after)
		if killed {
			how += ", killed"
		}
	}
	k.note("#%d %s %q (%s): %q; state %+v -> %+v", k.n, kindNames[kind], input, how, strings.TrimSpace(stderr), s0, s1)

	m := deniedRE.FindStringSubmatch(stderr)
	switch {
	case strings.Contains(stderr, "otpgate: accepted (totp)"):
		if locked0 || kind != kRight {
			k.fatalf("accepted a %s code while locked=%v", kindNames[kind], locked0)
		}
		if s1.Failures != 0 || s1.LastStep(keystore.DefaultLabel) <= s0.LastStep(keystore.DefaultLabel) || k.code(s1.LastStep(keystore.DefaultLabel)) != input {
			k.fatalf("reported an accepted code that is not on disk: state %+v -> %+v", s0, s1)
		}
		k.acceptStep(s1.LastStep(keystore.DefaultLabel))
		k.st.acceptedTOTP++
	case strings.Contains(stderr, "otpgate: accepted (backup)"):
		i := slices.Index(k.unused, input)
		if locked0 || kind != kBackup || i < 0 {
			k.fatalf("accepted a %s backup code while locked=%v", kindNames[kind], locked0)
		}
		if s1.Failures != 0 || s1.LastStep(keystore.DefaultLabel) != s0.LastStep(keystore.DefaultLabel) {
			k.fatalf("reported an accepted backup code, but the state is %+v -> %+v", s0, s1)
		}
		// That the code is spent on disk is shown when it is sent again
		// (kSpent, and the sweep before the set is replaced).
		k.spend(i)
		k.st.acceptedBack++
	case m != nil:
		n, _ := strconv.Atoi(m[2])
		if locked0 {
			k.fatalf("a locked account answered %q", stderr)
		}
		if m[1] != wantReason[kind] {
			k.fatalf("a %s code was denied as %q", kindNames[kind], m[1])
		}
		if n != s1.Failures || s1.Failures != s0.Failures+1 || s1.LastStep(keystore.DefaultLabel) != s0.LastStep(keystore.DefaultLabel) {
			k.fatalf("reported %d failures; the state went %+v -> %+v: the denial must be counted once, on disk, before it is reported", n, s0, s1)
		}
		k.floor++
		k.st.denied++
	case strings.Contains(stderr, " is locked until "):
		if !locked0 {
			k.fatalf("answered locked, but the state was %+v", s0)
		}
		if s1.LastStep(keystore.DefaultLabel) != s0.LastStep(keystore.DefaultLabel) || s1.Failures < s0.Failures || !time.Now().Before(s1.LockedUntil) {
			k.fatalf("a locked attempt changed the state %+v -> %+v", s0, s1)
		}
		k.st.lockedAnswers++
	case stderr == "" && killed:
		k.st.killed++
		if !bytes.Equal(u0b, u1b) || !bytes.Equal(s0b, s1b) {
			k.st.killedChanged++
		}
		k.silent(kind, input, locked0, s0, s1, !bytes.Equal(u0b, u1b) || !bytes.Equal(s0b, s1b))
	default:
		k.fatalf("unexpected answer (exit %d, killed %v): %q", exit, killed, stderr)
	}
	if killed && stderr != "" {
		k.st.answeredDying++
	}
	if !killed {
		want := 1
		if strings.Contains(stderr, "otpgate: accepted") {
			want = 0
		}
		if exit != want {
			k.fatalf("exit %d for %q, want %d", exit, stderr, want)
		}
	}

	// What holds after every attempt, answered or not.
	if s1.LastStep(keystore.DefaultLabel) < s0.LastStep(keystore.DefaultLabel) {
		k.fatalf("last_step went back: %+v -> %+v", s0, s1)
	}
	if s1.Failures < k.floor {
		k.fatalf("%d failures on disk, but %d denials were reported since the count could last have been reset: a counted failure was lost", s1.Failures, k.floor)
	}
	if s1.Failures >= killMaxFail && !time.Now().Before(s1.LockedUntil) {
		k.fatalf("%d failures of %d on disk without the lock: the next attempt gets a free guess", s1.Failures, killMaxFail)
	}
	if !locked0 && time.Now().Before(s1.LockedUntil) {
		k.st.locks++
	}
}

// silent checks what a process killed before it answered did, and records
// a success it had.
func (k *killRun) silent(kind attemptKind, input string, locked0 bool, s0, s1 keystore.State, changed bool) {
	k.t.Helper()
	if s1.LastStep(keystore.DefaultLabel) != s0.LastStep(keystore.DefaultLabel) {
		if locked0 || kind != kRight || k.code(s1.LastStep(keystore.DefaultLabel)) != input || s1.Failures != 0 {
			k.fatalf("a killed %s attempt (locked=%v) left last_step %d -> %d, failures %d", kindNames[kind], locked0, s0.LastStep(keystore.DefaultLabel), s1.LastStep(keystore.DefaultLabel), s1.Failures)
		}
		k.acceptStep(s1.LastStep(keystore.DefaultLabel))
		k.st.silentTOTP++
		return
	}
	spent := false
	if kind == kBackup && changed { // spending a code changes a file, whatever the format
		spent = !k.usable(input)
		if spent {
			if locked0 {
				k.fatalf("a killed attempt spent backup code %s while the account was locked", input)
			}
			k.spend(slices.Index(k.unused, input))
			k.st.silentBack++
		}
	}
	switch {
	case s1.Failures < s0.Failures && !(spent && s1.Failures == 0):
		k.fatalf("a killed %s attempt lowered the failure count %d -> %d without a success", kindNames[kind], s0.Failures, s1.Failures)
	case s1.Failures > s0.Failures+1:
		k.fatalf("a killed attempt counted %d failures", s1.Failures-s0.Failures)
	}
	if kind == kRight || spent {
		k.floor = 0 // a right code may have reset the count before the kill
	}
}

func (k *killRun) acceptStep(step int64) {
	k.t.Helper()
	if k.steps[step] {
		k.fatalf("step %d accepted twice", step)
	}
	k.steps[step] = true
	k.floor = 0
}

func (k *killRun) spend(i int) {
	k.spent = append(k.spent, k.unused[i])
	k.unused = slices.Delete(k.unused, i, i+1)
	k.floor = 0
}

// usable reports whether backup code c would still be accepted: it is
// tried on a copy of the user's files, unlocked ("codes already used stay
// used").
func (k *killRun) usable(c string) bool {
	k.t.Helper()
	k.st.probes++
	os.RemoveAll(k.probe.store)
	for _, sub := range []string{"users", "state"} {
		if err := os.MkdirAll(filepath.Join(k.probe.store, sub), 0o700); err != nil {
			k.t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(k.e.store, sub, "alice.toml"))
		if err != nil {
			k.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(k.probe.store, sub, "alice.toml"), data, 0o600); err != nil {
			k.t.Fatal(err)
		}
	}
	if _, stderr, exit := k.probe.runWithin(killProcWait, "", "unlock", "--user", "alice"); exit != 0 {
		k.fatalf("unlock on the copy: exit %d: %s", exit, stderr)
	}
	_, stderr, exit := k.probe.runWithin(killProcWait, c+"\n", "verify", "--user", "alice")
	switch exit {
	case 0:
		return true
	case 1:
		return false
	}
	k.fatalf("backup code on the copy: exit %d: %s", exit, stderr)
	return false
}

func (k *killRun) unlock() {
	k.t.Helper()
	if _, stderr, exit := k.e.runWithin(killProcWait, "", "unlock", "--user", "alice"); exit != 0 {
		k.fatalf("unlock: exit %d: %s", exit, stderr)
	}
	if s := k.state(); s.Failures != 0 || !s.LockedUntil.IsZero() {
		k.fatalf("state after unlock: %+v", s)
	}
	k.floor = 0
	k.st.unlocks++
	k.note("unlock")
}

// sweep sends every spent backup code of the current set again, to the
// end: each must be denied, which shows its acceptance reached the disk.
func (k *killRun) sweep() {
	k.t.Helper()
	for _, c := range slices.Clone(k.spent) {
		if time.Now().Before(k.cur.LockedUntil) {
			k.unlock()
		}
		k.attempt(kSpent, c, false)
	}
}

// enroll enrolls alice, or replaces her secret and backup codes.
func (k *killRun) enroll(force bool) {
	k.t.Helper()
	args := []string{"enroll", "--user", "alice", "--no-confirm", "--json", "--qr", "none"}
	if !force {
		args = append(args, "--force") // alice is no system user; not enrolled yet
	}
	var before keystore.State
	if force {
		k.sweep()
		before = k.state()
		args = append(args, "--force")
		k.st.reenrolls++
	}
	out, stderr, exit := k.e.runWithin(killProcWait, "", args...)
	if exit != 0 {
		k.fatalf("enroll: exit %d: %s", exit, stderr)
	}
	var en enrollment
	if err := json.Unmarshal([]byte(out), &en); err != nil {
		k.fatalf("enroll output %q: %v", out, err)
	}
	s, err := keystore.DecodeSecret(en.Secret)
	if err != nil {
		k.t.Fatal(err)
	}
	k.secret, k.codes, k.steps, k.unused, k.spent = s, map[int64]string{}, map[int64]bool{}, en.BackupCodes, nil
	if after := k.state(); after.Failures != before.Failures || after.LastStep(keystore.DefaultLabel) != 0 {
		k.fatalf("enroll --force changed the state %+v -> %+v", before, after)
	}
	k.note("enroll (force %v)", force)
}

// newBackupCodes replaces the set, after one regeneration killed at a
// random moment (both files must then still parse, old or new).
func (k *killRun) newBackupCodes() {
	k.t.Helper()
	k.sweep()
	before := k.state()
	_, _, _, killed, after := k.start(2, true, "", "backup-codes", "--user", "alice", "--json")
	k.files()
	if killed {
		k.st.regensKilled++
	}
	k.note("backup-codes, kill after %v (killed %v)", after, killed)
	out, stderr, exit, _, _ := k.start(2, false, "", "backup-codes", "--user", "alice", "--json")
	if exit != 0 {
		k.fatalf("backup-codes: exit %d: %s", exit, stderr)
	}
	var fresh struct {
		BackupCodes []string `json:"backup_codes"`
	}
	if err := json.Unmarshal([]byte(out), &fresh); err != nil || len(fresh.BackupCodes) != killBackups {
		k.fatalf("backup-codes output %q: %v", out, err)
	}
	k.unused, k.spent = fresh.BackupCodes, nil
	if after := k.state(); !reflect.DeepEqual(after, before) {
		k.fatalf("new backup codes changed the state %+v -> %+v", before, after)
	}
	k.st.regens++
	k.note("backup-codes")
}

// checkStore reads every file in the store: the user's two files parse,
// and the only other entries are the lock and killed writers' temporary
// files (which the next writer removes).
func (k *killRun) checkStore() {
	k.t.Helper()
	k.files()
	want := map[string]bool{"users/alice.toml": true, "state/alice.toml": true, "locks/alice.lock": true,
		"users/.alice.toml.tmp": true, "state/.alice.toml.tmp": true}
	err := filepath.WalkDir(k.e.store, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(k.e.store, path)
		if !want[rel] {
			k.t.Errorf("unexpected file in the store: %s", rel)
		}
		return nil
	})
	if err != nil {
		k.t.Fatal(err)
	}
}
