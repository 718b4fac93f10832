package e2e

// otpgate through real hosts: sshd (publickey then code; password then
// code; password+code in one answer; 20 parallel logins with one code),
// sudo and su. Each test has its own users, store, config and PAM
// service, so their codes and failure counts never meet.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// codePrompt is part of pam_otpgate's default prompt.
const codePrompt = "Verification code: "

// otpEnv is one otpgate store with its config, and the binaries.
type otpEnv struct {
	bins   *otpgateBins
	config string
	store  string
}

// configText is the config of an end-to-end store.
func configText(store string, maxFailures int) string {
	return fmt.Sprintf(`# otpgate end-to-end test config
issuer = "otpgate-e2e"
store = %q
window = 1

[lockout]
max_failures = %d
lock_duration = "15m"
`, store, maxFailures)
}

// newOTPEnv makes a store and a config (root-owned, in a 0700 directory
// under /tmp) with the given lockout threshold.
func newOTPEnv(t testing.TB, maxFailures int) *otpEnv {
	t.Helper()
	e := &otpEnv{bins: needOtpgate(t)}
	dir := t.TempDir()
	e.store = filepath.Join(dir, "store")
	if err := os.Mkdir(e.store, 0o700); err != nil {
		t.Fatal(err)
	}
	e.config = filepath.Join(dir, "config.toml")
	writeFile(t, e.config, configText(e.store, maxFailures), 0o644)
	return e
}

// cli runs `otpgate --config CFG args...`.
func (e *otpEnv) cli(t testing.TB, args ...string) result {
	t.Helper()
	return run(setupTimeout, nil, e.bins.cli, append([]string{"--config", e.config}, args...)...)
}

// enrollment is what `otpgate enroll --json` prints.
type enrollment struct {
	User        string   `json:"user"`
	URI         string   `json:"uri"`
	Secret      string   `json:"secret"`
	BackupCodes []string `json:"backup_codes"`
}

func (e *otpEnv) enroll(t testing.TB, u *testUser) enrollment {
	t.Helper()
	r := e.cli(t, "enroll", "--user", u.name, "--no-confirm", "--json", "--qr", "none")
	if r.exit != 0 {
		t.Fatalf("otpgate enroll: %s", r)
	}
	var en enrollment
	if err := json.Unmarshal([]byte(r.stdout), &en); err != nil || en.Secret == "" {
		t.Fatalf("otpgate enroll --json: %v: %s", err, r)
	}
	return en
}

// status is the part of `otpgate status --json` the tests read.
type status struct {
	Enrolled   bool `json:"enrolled"`
	Failures   int  `json:"failures"`
	Locked     bool `json:"locked"`
	BackupLeft int  `json:"backup_codes_left"`
}

func (e *otpEnv) status(t testing.TB, u *testUser) status {
	t.Helper()
	r := e.cli(t, "status", "--user", u.name, "--json")
	var s status
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("otpgate status --json: %v: %s", err, r)
	}
	return s
}

// auth returns the pam.d auth line for pam_otpgate with this env's helper
// and config, a control ("required", "requisite", ...) and more arguments.
func (e *otpEnv) auth(control string, args ...string) string {
	return strings.Join(append([]string{control, e.bins.module, "helper=" + e.bins.helper, "config=" + e.config,
		"timeout=" + strconv.Itoa(moduleTimeout)}, args...), " ")
}

// step30 is the TOTP period of the default config.
const step30 = 30 * time.Second

// totpAt computes the code for instant at with oathtool (an independent
// implementation): SHA1, 6 digits, 30 s, what otpgate enrolls by default.
func totpAt(t testing.TB, en enrollment, at time.Time) string {
	t.Helper()
	r := mustRun(t, nil, "oathtool", "--totp", "-b", "--now=@"+strconv.FormatInt(at.Unix(), 10), en.Secret)
	code := strings.TrimSpace(r.stdout)
	if len(code) != 6 {
		t.Fatalf("oathtool printed %q", r.stdout)
	}
	return code
}

// codeNow is the code of the current step; codeNow(+1) the next one,
// which the default window (1) accepts too.
func codeNow(t testing.TB, en enrollment, steps int) string {
	t.Helper()
	return totpAt(t, en, time.Now().Add(time.Duration(steps)*step30))
}

// wrongCode is six digits that are no code of any step near now.
func wrongCode(t testing.TB, en enrollment) string {
	t.Helper()
	near := map[string]bool{}
	for s := -3; s <= 3; s++ {
		near[codeNow(t, en, s)] = true
	}
	for n := 100000; ; n += 7919 {
		if c := strconv.Itoa(n % 1000000); len(c) == 6 && !near[c] {
			return c
		}
	}
}

// wantPrompts checks the prompts askpass was shown, in order.
func wantPrompts(t testing.TB, p *askpass, want ...string) {
	t.Helper()
	got := p.prompts(t)
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if got == "" {
		lines = nil
	}
	ok := len(lines) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = strings.Contains(lines[i], want[i])
	}
	if !ok {
		t.Errorf("askpass was shown %q, want prompts containing %q", lines, want)
	}
}

func wantStatus(t testing.TB, e *otpEnv, u *testUser, failures int, locked bool) {
	t.Helper()
	s := e.status(t, u)
	if s.Failures != failures || s.Locked != locked {
		t.Errorf("status of %s: failures=%d locked=%v, want failures=%d locked=%v", u.name, s.Failures, s.Locked, failures, locked)
	}
}

// keyThenCodeStack is the auth stack for publickey,keyboard-interactive:
// pam_otpgate alone, the stack docs/pam-module.md recommends. That it
// works at all shows pam_setcred succeeds with the module alone: sshd
// drops a login whose pam_setcred fails.
func keyThenCodeStack(e *otpEnv) string {
	return stack(e.auth("required"))
}

// TestSSHKeyThenCode: AuthenticationMethods publickey,keyboard-interactive
// with the code as the second factor, the recommended setup.
func TestSSHKeyThenCode(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen")
	e := newOTPEnv(t, 3)
	u, l := newUser(t), newUser(t)
	s := startSSHD(t, sshdConfig{
		authMethods: "publickey,keyboard-interactive",
		pamStack:    keyThenCodeStack(e),
		allowUsers:  []string{u.name, l.name},
	})
	const methods = "publickey,keyboard-interactive"

	t.Run("right, replayed, older, newer, wrong, backup", func(t *testing.T) {
		en := e.enroll(t, u)
		c := newSSHClient(t, u)
		p := newAskpass(t, answers{code: codeNow(t, en, 0)})
		wantLogin(t, "right code", c.login(s, methods, p, remoteCmd), u)
		wantPrompts(t, p, codePrompt)

		wantDenied(t, "replayed code", c.login(s, methods, p, remoteCmd), u)
		wantPrompts(t, p, codePrompt)
		wantStatus(t, e, u, 1, false)

		p.set(t, answers{code: codeNow(t, en, -1)})
		wantDenied(t, "code of the step before the accepted one", c.login(s, methods, p, remoteCmd), u)

		p.set(t, answers{code: codeNow(t, en, +1)})
		wantLogin(t, "code of the next step", c.login(s, methods, p, remoteCmd), u)
		wantStatus(t, e, u, 0, false)

		p.set(t, answers{code: wrongCode(t, en)})
		wantDenied(t, "wrong code", c.login(s, methods, p, remoteCmd), u)
		wantStatus(t, e, u, 1, false)

		p.set(t, answers{code: en.BackupCodes[0]})
		wantLogin(t, "backup code", c.login(s, methods, p, remoteCmd), u)
		wantDenied(t, "backup code used again", c.login(s, methods, p, remoteCmd), u)
		if st := e.status(t, u); st.BackupLeft != len(en.BackupCodes)-1 {
			t.Errorf("backup codes left: %d, want %d", st.BackupLeft, len(en.BackupCodes)-1)
		}
	})

	t.Run("no key, no prompt", func(t *testing.T) {
		// keyboard-interactive alone is not enough: sshd never runs PAM.
		home := t.TempDir()
		c := &sshClient{home: home, key: filepath.Join(home, "no-such-key"), user: l}
		p := newAskpass(t, answers{code: "123456"})
		wantDenied(t, "code without the key", c.login(s, "keyboard-interactive", p, remoteCmd), l)
		wantPrompts(t, p)
	})

	t.Run("lockout until unlock", func(t *testing.T) {
		en := e.enroll(t, l)
		c := newSSHClient(t, l)
		p := newAskpass(t, answers{code: wrongCode(t, en)})
		for i := 1; i <= 3; i++ {
			wantDenied(t, fmt.Sprintf("wrong code %d of 3", i), c.login(s, methods, p, remoteCmd), l)
		}
		wantStatus(t, e, l, 3, true)

		p.set(t, answers{code: codeNow(t, en, 0)})
		wantDenied(t, "right code while locked", c.login(s, methods, p, remoteCmd), l)
		wantStatus(t, e, l, 3, true)

		if r := e.cli(t, "unlock", "--user", l.name); r.exit != 0 {
			t.Fatalf("otpgate unlock: %s", r)
		}
		wantStatus(t, e, l, 0, false)
		p.set(t, answers{code: codeNow(t, en, 0)})
		wantLogin(t, "right code after unlock", c.login(s, methods, p, remoteCmd), l)
	})
}

// TestSSHPasswordThenCode: pam_unix then pam_otpgate, both asked in one
// keyboard-interactive exchange; and a user who is not enrolled, with and
// without nullok.
func TestSSHPasswordThenCode(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen")
	e := newOTPEnv(t, 5)
	u, n := newUser(t), newUser(t)
	en := e.enroll(t, u)
	c := newSSHClient(t, u)
	cfg := func(otpgateLine string) sshdConfig {
		return sshdConfig{
			authMethods: "keyboard-interactive",
			pamStack:    stack("required pam_unix.so", otpgateLine),
			allowUsers:  []string{u.name, n.name},
		}
	}
	s := startSSHD(t, cfg(e.auth("required")))
	const methods = "keyboard-interactive"

	p := newAskpass(t, answers{password: u.password, code: codeNow(t, en, 0)})
	wantLogin(t, "right password and code", c.login(s, methods, p, remoteCmd), u)
	wantPrompts(t, p, "Password:", codePrompt)

	p.set(t, answers{password: u.password, code: wrongCode(t, en)})
	wantDenied(t, "right password, wrong code", c.login(s, methods, p, remoteCmd), u)

	p.set(t, answers{password: "not-" + u.password, code: codeNow(t, en, +1)})
	wantDenied(t, "wrong password, right code", c.login(s, methods, p, remoteCmd), u)

	// n has no secret: denied without nullok, password alone with it.
	cn := newSSHClient(t, n)
	pn := newAskpass(t, answers{password: n.password, code: "123456"})
	wantDenied(t, "not enrolled, no nullok", cn.login(s, methods, pn, remoteCmd), n)
	wantPrompts(t, pn, "Password:")

	sn := startSSHD(t, cfg(e.auth("required", "nullok")))
	wantLogin(t, "not enrolled, nullok", cn.login(sn, methods, pn, remoteCmd), n)
	wantPrompts(t, pn, "Password:")
}

// TestSSHForwardPass: pam_otpgate forward_pass asks once for password and
// code together and hands the password to pam_unix use_first_pass.
func TestSSHForwardPass(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen")
	e := newOTPEnv(t, 5)
	u := newUser(t)
	en := e.enroll(t, u)
	c := newSSHClient(t, u)
	s := startSSHD(t, sshdConfig{
		authMethods: "keyboard-interactive",
		pamStack:    stack(e.auth("required", "forward_pass"), "required pam_unix.so use_first_pass"),
		allowUsers:  []string{u.name},
	})
	const methods = "keyboard-interactive"

	p := newAskpass(t, answers{combined: u.password + codeNow(t, en, 0)})
	wantLogin(t, "password+code in one answer", c.login(s, methods, p, remoteCmd), u)
	wantPrompts(t, p, "Password & verification code")

	p.set(t, answers{combined: u.password + wrongCode(t, en)})
	wantDenied(t, "password+wrong code", c.login(s, methods, p, remoteCmd), u)

	p.set(t, answers{combined: "not-" + u.password + codeNow(t, en, +1)})
	wantDenied(t, "wrong password+code", c.login(s, methods, p, remoteCmd), u)
	wantPrompts(t, p, "Password & verification code", "Password & verification code")
}

// TestSSHParallelOneCode: 20 logins at once with one code, exactly one
// gets in; the other 19 are counted as failures (replays), none lost.
func TestSSHParallelOneCode(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen")
	const n = 20
	e := newOTPEnv(t, 50)
	u := newUser(t)
	en := e.enroll(t, u)
	c := newSSHClient(t, u)
	s := startSSHD(t, sshdConfig{
		authMethods: "publickey,keyboard-interactive",
		pamStack:    keyThenCodeStack(e),
		allowUsers:  []string{u.name},
	})
	p := newAskpass(t, answers{code: codeNow(t, en, 0)})

	results := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = c.login(s, "publickey,keyboard-interactive", p, remoteCmd)
		}()
	}
	begin := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d parallel logins took %v", n, time.Since(begin).Round(time.Millisecond))

	ok, denied := 0, 0
	for i, r := range results {
		switch {
		case r.timedOut:
			t.Errorf("login %d hung: %s", i, r)
		case r.exit == 0 && strings.Contains(r.stdout, marker(u)):
			ok++
		case r.exit == 255 && strings.Contains(r.stderr, "Permission denied"):
			denied++
		default:
			t.Errorf("login %d: neither in nor denied: %s", i, r)
		}
	}
	if ok != 1 || denied != n-1 {
		t.Errorf("%d logins with one code: %d succeeded, %d denied; want exactly 1 and %d", n, ok, denied, n-1)
	}
	if prompts := strings.Count(p.prompts(t), "erification code"); prompts != n {
		t.Errorf("the code prompt was shown %d times, want %d (sshd dropped connections?)", prompts, n)
	}
	wantStatus(t, e, u, n-1, false)
}

// TestSudoPasswordAndCode: sudo with Defaults pam_service= pointing at a
// stack of pam_unix then pam_otpgate; sudo -S answers both prompts from
// standard input.
func TestSudoPasswordAndCode(t *testing.T) {
	requireTools(t, "sudo", "visudo", "setpriv")
	e := newOTPEnv(t, 5)
	u := newUser(t)
	en := e.enroll(t, u)
	svc := "sudo-" + prefix + randHex(3)
	writePAMService(t, svc, stack("required pam_unix.so", e.auth("required")))
	sudoSetup(t, u, svc)

	code := codeNow(t, en, 0)
	r := runSudo(u, []step{{sudoPrompt, u.password}, {codePrompt, code}})
	wantOK(t, "sudo, right password and code", r, rootMarker)

	r = runSudo(u, []step{{sudoPrompt, u.password}, {codePrompt, wrongCode(t, en)}})
	wantRefused(t, "sudo, right password, wrong code", r)
	if !strings.Contains(r.stdout, codePrompt) {
		t.Errorf("sudo never showed the code prompt: %s", r)
	}
	wantStatus(t, e, u, 1, false)

	r = runSudo(u, []step{{sudoPrompt, u.password}, {codePrompt, code}})
	wantRefused(t, "sudo, replayed code", r)
	wantStatus(t, e, u, 2, false)
}

// TestSuPasswordAndCode: a normal user runs su to another user whose
// stack (see runSu) is pam_unix then pam_otpgate.
func TestSuPasswordAndCode(t *testing.T) {
	requireTools(t, "su", "unshare", "mount", "setpriv")
	e := newOTPEnv(t, 5)
	caller, target := newUser(t), newUser(t)
	en := e.enroll(t, target)
	st := stack("required pam_unix.so", e.auth("required"))

	r := runSu(t, caller, target, st, []step{{"Password: ", target.password}, {codePrompt, codeNow(t, en, 0)}})
	wantOK(t, "su, right password and code", r, marker(target))

	r = runSu(t, caller, target, st, []step{{"Password: ", target.password}, {codePrompt, wrongCode(t, en)}})
	wantRefused(t, "su, right password, wrong code", r)
	if !strings.Contains(r.stdout, codePrompt) {
		t.Errorf("su never showed the code prompt: %s", r)
	}
	wantStatus(t, e, target, 1, false)
}
