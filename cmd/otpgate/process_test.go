package main_test

// These tests run the real otpgate binary as separate processes racing
// each other on one store: the exactness properties of the design
// (section 3) cannot be shown with goroutines inside one process.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/testbin"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// env is one store with its config file.
type env struct {
	t      *testing.T
	bin    string
	config string
	store  string
}

func newEnv(t *testing.T, extra string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, bin: testbin.Build(t, "cmd/otpgate"), config: filepath.Join(dir, "config.toml"), store: filepath.Join(dir, "store")}
	cfg := fmt.Sprintf("issuer = \"test\"\nstore = %q\n%s", e.store, extra)
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// run runs otpgate with stdin and returns stdout, stderr and the exit code.
func (e *env) run(stdin string, args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(e.bin, append([]string{"--config", e.config}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("running otpgate %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

type enrollment struct {
	User        string   `json:"user"`
	URI         string   `json:"uri"`
	Secret      string   `json:"secret"`
	BackupCodes []string `json:"backup_codes"`
}

func (e *env) enroll(user string, args ...string) enrollment {
	e.t.Helper()
	// --force: the test names (alice, bob) are no users of this system.
	out, stderr, code := e.run("", append([]string{"enroll", "--user", user, "--force", "--no-confirm", "--json", "--qr", "none"}, args...)...)
	if code != 0 {
		e.t.Fatalf("enroll %s: exit %d: %s", user, code, stderr)
	}
	var en enrollment
	if err := json.Unmarshal([]byte(out), &en); err != nil {
		e.t.Fatalf("enroll %s: %v in %q", user, err, out)
	}
	return en
}

// code returns the code of secret for the step now+delta.
func (e *env) code(secret string, delta int64) string {
	e.t.Helper()
	return e.codeAt(secret, time.Now().Add(time.Duration(delta)*30*time.Second))
}

// codeAt returns the code of secret at time at.
func (e *env) codeAt(secret string, at time.Time) string {
	e.t.Helper()
	s, err := keystore.DecodeSecret(secret)
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := totp.CodeAt(s, uint64(totp.Step(at, 30)), totp.Default)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) state(user string) keystore.State {
	e.t.Helper()
	st, err := keystore.New(e.store).ReadState(user)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// parallel starts n `otpgate verify` processes with the same input at once
// and returns how many exited 0, and how many exited 1.
func (e *env) parallel(n int, user, input string) (accepted, denied int) {
	e.t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	start := make(chan struct{})
	cmds := make([]*exec.Cmd, n)
	for i := range cmds {
		cmds[i] = exec.Command(e.bin, "--config", e.config, "verify", "--user", user)
		cmds[i].Stdin = strings.NewReader(input + "\n")
	}
	for _, cmd := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := cmd.Run()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				accepted++
			case cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == 1:
				denied++
			default:
				e.t.Errorf("verify: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	return accepted, denied
}

func TestParallelOneValidCode(t *testing.T) {
	e := newEnv(t, "[lockout]\nmax_failures = 100\n")
	const rounds, n = 10, 20
	for round := range rounds {
		// A fresh user per round: each round needs a code never used.
		user := fmt.Sprintf("user%d", round)
		en := e.enroll(user)
		acc, den := e.parallel(n, user, e.code(en.Secret, 0))
		if acc != 1 || den != n-1 {
			t.Errorf("round %d: %d accepted, %d denied; want exactly 1 and %d", round, acc, den, n-1)
		}
		if st := e.state(user); st.Failures != n-1 {
			t.Errorf("round %d: failures = %d, want %d", round, st.Failures, n-1)
		}
	}
}

func TestParallelWrongCodesLock(t *testing.T) {
	e := newEnv(t, "[lockout]\nmax_failures = 50\nlock_duration = \"10m\"\n")
	en := e.enroll("alice")
	const n = 50
	wrong := e.code(en.Secret, 5) // a real code, but outside the window
	acc, den := e.parallel(n, "alice", wrong)
	if acc != 0 || den != n {
		t.Fatalf("%d accepted, %d denied; want 0 and %d", acc, den, n)
	}
	st := e.state("alice")
	if st.Failures != n {
		t.Errorf("failures = %d, want exactly %d", st.Failures, n)
	}
	if !st.LockedUntil.After(time.Now().Add(9 * time.Minute)) {
		t.Errorf("not locked after %d failures: locked_until %v", n, st.LockedUntil)
	}
	_, stderr, code := e.run(e.code(en.Secret, 0)+"\n", "verify", "--user", "alice")
	if code != 1 || !strings.Contains(stderr, "locked until") {
		t.Errorf("right code while locked: exit %d, %q", code, stderr)
	}
	if _, stderr, code := e.run(en.BackupCodes[0]+"\n", "verify", "--user", "alice"); code != 1 || !strings.Contains(stderr, "locked") {
		t.Errorf("backup code while locked: exit %d, %q", code, stderr)
	}
	// The admin's way out.
	if _, stderr, code := e.run("", "unlock", "--user", "alice"); code != 0 {
		t.Fatalf("unlock: %d %s", code, stderr)
	}
	if _, stderr, code := e.run(e.code(en.Secret, 0)+"\n", "verify", "--user", "alice"); code != 0 {
		t.Errorf("right code after unlock: exit %d, %q", code, stderr)
	}
}

func TestParallelBackupCode(t *testing.T) {
	e := newEnv(t, "[lockout]\nmax_failures = 100\n")
	en := e.enroll("alice")
	acc, den := e.parallel(10, "alice", en.BackupCodes[3])
	if acc != 1 || den != 9 {
		t.Errorf("same backup code 10 times in parallel: %d accepted, %d denied; want 1 and 9", acc, den)
	}
	// The others still work, once each.
	for _, c := range en.BackupCodes[:2] {
		if _, stderr, code := e.run(c+"\n", "verify", "--user", "alice"); code != 0 {
			t.Errorf("backup code %s: exit %d %s", c, code, stderr)
		}
		if _, _, code := e.run(c+"\n", "verify", "--user", "alice"); code != 1 {
			t.Errorf("backup code %s a second time: exit %d", c, code)
		}
	}
}

func TestBackupCodesRegenerate(t *testing.T) {
	e := newEnv(t, "[lockout]\nmax_failures = 10\n")
	en := e.enroll("alice")
	for range 3 {
		e.run("000000\n", "verify", "--user", "alice")
	}
	out, stderr, code := e.run("", "backup-codes", "--user", "alice", "--json")
	if code != 0 {
		t.Fatalf("backup-codes: %d %s", code, stderr)
	}
	var fresh struct {
		BackupCodes []string `json:"backup_codes"`
	}
	if err := json.Unmarshal([]byte(out), &fresh); err != nil || len(fresh.BackupCodes) != 10 {
		t.Fatalf("backup-codes output %q: %v", out, err)
	}
	if st := e.state("alice"); st.Failures != 3 {
		t.Errorf("failures after new backup codes = %d, want 3 (not reset)", st.Failures)
	}
	if _, _, code := e.run(en.BackupCodes[0]+"\n", "verify", "--user", "alice"); code != 1 {
		t.Errorf("old backup code after regeneration: exit %d, want 1", code)
	}
	if _, stderr, code := e.run(fresh.BackupCodes[0]+"\n", "verify", "--user", "alice"); code != 0 {
		t.Errorf("new backup code: exit %d %s", code, stderr)
	}
}
