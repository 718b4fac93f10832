package helper

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/authlog"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/nss"
	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

// fixture is a store and a config in a temp dir.
type fixture struct {
	dir    string
	config string
	store  *keystore.Store
	cfg    config.Config
	now    time.Time
}

func newFixture(t *testing.T, extra string) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, config: filepath.Join(dir, "config.toml"), now: time.Unix(1_800_000_000, 0)}
	body := fmt.Sprintf("store = %q\n%s", filepath.Join(dir, "store"), extra)
	if err := os.WriteFile(f.config, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(f.config)
	if err != nil {
		t.Fatal(err)
	}
	f.cfg = cfg
	f.store = keystore.New(cfg.Store)
	return f
}

func (f *fixture) mgr() *account.Manager {
	return &account.Manager{Store: f.store, Config: f.cfg, Now: func() time.Time { return f.now }}
}

// enroll enrolls user and returns the secret and the backup codes.
func (f *fixture) enroll(t *testing.T, user string) ([]byte, []string) {
	t.Helper()
	en, err := f.mgr().NewEnrollment(user)
	if err != nil {
		t.Fatal(err)
	}
	codes, err := f.mgr().Save(en, account.SaveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return en.Secret, codes
}

// code returns the TOTP code of secret at the fixture's time plus d.
func (f *fixture) code(t *testing.T, secret []byte, d time.Duration) string {
	t.Helper()
	c, err := totp.CodeAt(secret, uint64(totp.Step(f.now.Add(d), 30)), totp.Default)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// script is a UI that answers prompts from a list and records the rest.
type script struct {
	answers  []string
	prompts  []string
	messages []string
	data     []Data
	authtok  *string
	fail     bool          // the conversation fails
	delay    time.Duration // before each answer
}

func (s *script) Prompt(text string, echo bool) (string, error) {
	s.prompts = append(s.prompts, text)
	time.Sleep(s.delay)
	if s.fail || len(s.answers) == 0 {
		return "", errors.New("no answer")
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	return a, nil
}

func (s *script) Message(text string, isError bool) {
	if isError {
		text = "error: " + text
	}
	s.messages = append(s.messages, text)
}

func (s *script) Data(d Data) error {
	s.data = append(s.data, d)
	return nil
}

func (s *script) SetAuthtok(p string) error {
	s.authtok = &p
	return nil
}

func (s *script) said(sub string) bool {
	for _, m := range s.messages {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

// run runs the helper in this process on one end of a socketpair and
// converses with it on the other.
func (f *fixture) run(t *testing.T, o Options, req protocol.Request, ui UI) (string, int) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		file := os.NewFile(uintptr(fd), "sock")
		defer file.Close()
		c, err := net.FileConn(file)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	hc, cc := conn(fds[0]), conn(fds[1])
	defer cc.Close()
	if o.Now == nil {
		o.Now = func() time.Time { return f.now }
	}
	exit := make(chan int, 1)
	go func() {
		defer hc.Close()
		exit <- Run(hc, o)
	}()
	v, err := Converse(cc, req, ui, 20*time.Second)
	if err != nil {
		t.Fatalf("Converse: %v", err)
	}
	return v, <-exit
}

// fakeNSS is a getent that knows every name except those starting with
// "ghost": the accounts the fixtures make up (alice, bob, carol) exist
// for otpgate without being on the machine.
func fakeNSS(t *testing.T, dir string) *nss.Resolver {
	t.Helper()
	path := filepath.Join(dir, "getent")
	script := `#!/bin/sh
db=$1; shift
[ "$1" = "--" ] && shift
rc=0
for k in "$@"; do
	case "$k" in ghost*) rc=2; continue ;; esac
	case "$db" in
	passwd) echo "$k:x:5000:5000::/home/$k:/bin/sh" ;;
	group) echo "$k:x:6000:" ;;
	initgroups) echo "$k 5000" ;;
	esac
done
exit $rc
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return &nss.Resolver{Getent: path}
}

func (f *fixture) pam(t *testing.T, user string, ui UI, args ...string) string {
	t.Helper()
	req := protocol.Request{Op: protocol.OpAuthenticate, User: user, Service: "test",
		Args: append([]string{"config=" + f.config}, args...)}
	v, exit := f.run(t, Options{Caller: 0, NSS: fakeNSS(t, f.dir)}, req, ui)
	if exit != 0 {
		t.Fatalf("helper exit status %d after verdict %s", exit, v)
	}
	return v
}

func TestTrustedRightWrongReplay(t *testing.T) {
	f := newFixture(t, "")
	secret, _ := f.enroll(t, "alice")
	good := f.code(t, secret, 0)
	ui := &script{answers: []string{good}}
	if v := f.pam(t, "alice", ui); v != protocol.ResultSuccess {
		t.Fatalf("right code: %s", v)
	}
	if len(ui.prompts) != 1 || ui.prompts[0] != DefaultPrompt {
		t.Fatalf("prompts %q", ui.prompts)
	}
	if v := f.pam(t, "alice", &script{answers: []string{good}}); v != protocol.ResultAuthErr {
		t.Fatalf("replayed code: %s", v)
	}
	wrong := "000000"
	if wrong == f.code(t, secret, 30*time.Second) {
		wrong = "111111"
	}
	if v := f.pam(t, "alice", &script{answers: []string{wrong}}); v != protocol.ResultAuthErr {
		t.Fatalf("wrong code: %s", v)
	}
	st, _ := f.store.ReadState("alice")
	if st.Failures != 2 {
		t.Fatalf("failures %d, want 2", st.Failures)
	}
}

func TestTrustedLockout(t *testing.T) {
	f := newFixture(t, "[lockout]\nmax_failures = 2\n")
	secret, _ := f.enroll(t, "alice")
	if v := f.pam(t, "alice", &script{answers: []string{"x"}}); v != protocol.ResultAuthErr {
		t.Fatalf("first wrong: %s", v)
	}
	ui := &script{answers: []string{"y"}}
	if v := f.pam(t, "alice", ui); v != protocol.ResultMaxTries {
		t.Fatalf("second wrong: %s", v)
	}
	if !ui.said("locked until") {
		t.Fatalf("no lock message: %q", ui.messages)
	}
	ui = &script{answers: []string{f.code(t, secret, 0)}}
	if v := f.pam(t, "alice", ui); v != protocol.ResultMaxTries {
		t.Fatalf("right code while locked: %s", v)
	}
	if !ui.said("try again after") {
		t.Fatalf("no lock message: %q", ui.messages)
	}
	// Once the lock runs out the code is asked for again.
	f.now = f.now.Add(time.Hour)
	ui = &script{answers: []string{f.code(t, secret, 0)}}
	if v := f.pam(t, "alice", ui); v != protocol.ResultSuccess || len(ui.prompts) != 1 {
		t.Fatalf("after the lock ran out: %s, prompts %q", v, ui.prompts)
	}
}

func TestTrustedBackupCode(t *testing.T) {
	f := newFixture(t, "[backup_codes]\ncount = 3\n")
	_, codes := f.enroll(t, "alice")
	ui := &script{answers: []string{strings.ToLower(codes[1])}}
	if v := f.pam(t, "alice", ui); v != protocol.ResultSuccess {
		t.Fatalf("backup code: %s", v)
	}
	if !ui.said("2 backup codes left") {
		t.Fatalf("messages %q", ui.messages)
	}
	if v := f.pam(t, "alice", &script{answers: []string{codes[1]}}); v != protocol.ResultAuthErr {
		t.Fatalf("used backup code again: %s", v)
	}
}

func TestTrustedNotEnrolled(t *testing.T) {
	f := newFixture(t, "")
	ui := &script{}
	if v := f.pam(t, "bob", ui, "nullok"); v != protocol.ResultIgnore {
		t.Fatalf("nullok: %s", v)
	}
	if len(ui.prompts)+len(ui.messages) != 0 {
		t.Fatalf("nullok talked: %q %q", ui.prompts, ui.messages)
	}
	ui = &script{}
	if v := f.pam(t, "bob", ui); v != protocol.ResultAuthErr {
		t.Fatalf("no nullok: %s", v)
	}
	if !ui.said("no verification code is set up for this account; ask an administrator") {
		t.Fatalf("messages %q", ui.messages)
	}
	for _, bad := range []string{"", ".hidden", "a/b", "x\ny", strings.Repeat("a", 65)} {
		if v := f.pam(t, bad, &script{}, "nullok"); v != protocol.ResultAuthErr {
			t.Fatalf("invalid user %q with nullok: %s", bad, v)
		}
	}
}

func TestTrustedConversationFailure(t *testing.T) {
	f := newFixture(t, "")
	f.enroll(t, "alice")
	if v := f.pam(t, "alice", &script{fail: true}); v != protocol.ResultAuthErr {
		t.Fatalf("conversation failure: %s", v)
	}
}

func TestTrustedPromptTimeout(t *testing.T) {
	f := newFixture(t, "")
	secret, _ := f.enroll(t, "alice")
	start := time.Now()
	ui := &script{answers: []string{f.code(t, secret, 0)}, delay: 1500 * time.Millisecond}
	if v := f.pam(t, "alice", ui, "timeout=1"); v != protocol.ResultAuthErr {
		t.Fatalf("late answer: %s", v)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestTrustedBadSetup(t *testing.T) {
	f := newFixture(t, "")
	f.enroll(t, "alice")
	for _, args := range [][]string{{"nulok"}, {"timeout=0"}, {"timeout=601"}, {"config=relative.toml"}, {"prompt"}} {
		if v := f.pam(t, "alice", &script{}, args...); v != protocol.ResultServiceErr {
			t.Errorf("args %q: %s", args, v)
		}
	}
	// A broken config denies.
	if err := os.WriteFile(f.config, []byte("digits = 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v := f.pam(t, "alice", &script{answers: []string{"123456"}}, "nullok"); v != protocol.ResultAuthErr {
		t.Errorf("bad config: %s", v)
	}
	// Only the PAM module's operation in trusted mode.
	v, _ := f.run(t, Options{Caller: 0}, protocol.Request{Op: protocol.OpStatus, User: "alice"}, &script{})
	if v != protocol.ResultServiceErr {
		t.Errorf("status in trusted mode: %s", v)
	}
}

func TestTrustedPromptArg(t *testing.T) {
	f := newFixture(t, "")
	secret, _ := f.enroll(t, "alice")
	ui := &script{answers: []string{f.code(t, secret, 0)}}
	if v := f.pam(t, "alice", ui, "prompt=OTP: "); v != protocol.ResultSuccess || ui.prompts[0] != "OTP: " {
		t.Fatalf("verdict %s, prompts %q", v, ui.prompts)
	}
}

func TestForwardPass(t *testing.T) {
	f := newFixture(t, "")
	secret, codes := f.enroll(t, "alice")
	ui := &script{answers: []string{"hunter 2" + f.code(t, secret, 0)}}
	if v := f.pam(t, "alice", ui, "forward_pass"); v != protocol.ResultSuccess {
		t.Fatalf("password+code: %s", v)
	}
	if ui.prompts[0] != ForwardPassPrompt || ui.authtok == nil || *ui.authtok != "hunter 2" {
		t.Fatalf("prompts %q, authtok %v", ui.prompts, ui.authtok)
	}
	ui = &script{answers: []string{"pw " + codes[0]}}
	if v := f.pam(t, "alice", ui, "forward_pass"); v != protocol.ResultSuccess || *ui.authtok != "pw" {
		t.Fatalf("password+backup code: %s", v)
	}
	ui = &script{answers: []string{"nocode"}}
	if v := f.pam(t, "alice", ui, "forward_pass"); v != protocol.ResultAuthErr || ui.authtok != nil {
		t.Fatalf("no code: %s, authtok %v", v, ui.authtok)
	}
}

func TestSplitPass(t *testing.T) {
	for _, c := range []struct {
		in, pass, code string
		digits         int
		ok             bool
	}{
		{"secret123456", "secret", "123456", 6, true},
		{"123456", "", "123456", 6, true},
		{"pw12345678", "pw", "12345678", 8, true},
		{"my pass123456", "my pass", "123456", 6, true}, // not a backup code: no dash
		{"my pass ABCDE-FGHJK", "my pass", "ABCDE-FGHJK", 6, true},
		{"pw 01234-56789", "pw", "01234-56789", 6, true},
		{"pw12345", "", "", 6, false},
		{"pw", "", "", 6, false},
		{"pw 1234a", "", "", 6, false},
	} {
		pass, code, ok := splitPass(c.in, c.digits)
		if pass != c.pass || code != c.code || ok != c.ok {
			t.Errorf("splitPass(%q, %d) = %q, %q, %v", c.in, c.digits, pass, code, ok)
		}
	}
}

// selfFixture is a fixture plus a passwd file naming uid 4242 "carol".
func selfFixture(t *testing.T, extra string) (*fixture, Options) {
	f := newFixture(t, extra)
	passwd := filepath.Join(f.dir, "passwd")
	os.WriteFile(passwd, []byte("root:x:0:0::/root:/bin/sh\n+nis:x:4242:1::/:\ncarol:x:4242:4242::/home/carol:/bin/sh\n"), 0o644)
	return f, Options{Caller: 4242, SelfConfig: f.config, Passwd: passwd, NSS: fakeNSS(t, f.dir)}
}

func (f *fixture) self(t *testing.T, o Options, req protocol.Request, ui UI) string {
	t.Helper()
	v, exit := f.run(t, o, req, ui)
	if exit != 0 {
		t.Fatalf("helper exit status %d after verdict %s", exit, v)
	}
	return v
}

func TestSelfEnrollAndStatus(t *testing.T) {
	f, o := selfFixture(t, "")
	ui := &script{}
	if v := f.self(t, o, protocol.Request{Op: protocol.OpStatus}, ui); v != protocol.ResultSuccess {
		t.Fatalf("status: %s %q", v, ui.messages)
	}
	if len(ui.data) != 1 || ui.data[0].Status == nil || ui.data[0].Status.Enrolled || ui.data[0].User != "carol" {
		t.Fatalf("status data %+v", ui.data)
	}

	// Enroll: the secret comes first, then a code of it is asked for.
	var secret []byte
	var confirmed string
	en := &promptFunc{script: &script{}, answer: func(p string) string {
		if secret == nil {
			t.Fatalf("prompt %q before the secret", p)
		}
		confirmed = f.code(t, secret, 0)
		return confirmed
	}}
	en.onData = func(d Data) {
		if d.Secret != "" {
			secret, _ = keystore.DecodeSecret(d.Secret)
		}
	}
	if v := f.self(t, o, protocol.Request{Op: protocol.OpEnroll}, en); v != protocol.ResultSuccess {
		t.Fatalf("enroll: %s %q", v, en.messages)
	}
	if d := en.data; len(d) != 2 || !strings.HasPrefix(d[0].URI, "otpauth://totp/") || len(d[1].BackupCodes) != 10 {
		t.Fatalf("enroll data %+v", d)
	}
	u, err := f.store.ReadUser("carol")
	if err != nil || string(u.Authenticators[0].Secret) != string(secret) {
		t.Fatalf("stored secret differs from the one shown: %v", err)
	}

	// Re-enrolling needs a code of the current secret; a wrong one counts.
	ui2 := &script{answers: []string{"000000"}}
	if f.code(t, secret, 30*time.Second) == "000000" {
		ui2.answers[0] = "111111"
	}
	if v := f.self(t, o, protocol.Request{Op: protocol.OpEnroll}, ui2); v != protocol.ResultAuthErr {
		t.Fatalf("re-enroll with a wrong code: %s", v)
	}
	if len(ui2.data) != 0 {
		t.Fatalf("re-enroll without the code showed data %+v", ui2.data)
	}
	st, _ := f.store.ReadState("carol")
	if st.Failures != 1 {
		t.Fatalf("failures %d after a wrong code, want 1", st.Failures)
	}
	// The person is told why, and what it meant, in that order.
	if len(ui2.messages) < 2 || !strings.Contains(ui2.messages[len(ui2.messages)-2], "wrong code") ||
		!strings.Contains(ui2.messages[len(ui2.messages)-2], "4 more wrong codes lock") ||
		!strings.Contains(ui2.messages[len(ui2.messages)-1], "not replaced") {
		t.Fatalf("re-enroll with a wrong code said %q; want why, then that the secret was not replaced", ui2.messages)
	}
	// A code used already is told apart from a wrong one.
	ui2r := &script{answers: []string{confirmed}}
	if v := f.self(t, o, protocol.Request{Op: protocol.OpEnroll}, ui2r); v != protocol.ResultAuthErr || !ui2r.said("used already") {
		t.Fatalf("re-enroll with the used code: %s %q; want a denial that says the code was used already", v, ui2r.messages)
	}
	// The code that confirmed the enrollment is used: the next one works.
	old := secret
	secret = nil
	next := f.code(t, old, 30*time.Second)
	ui3 := &promptFunc{script: &script{}, answer: func(p string) string {
		if secret == nil {
			return next
		}
		return f.code(t, secret, 0)
	}}
	ui3.onData = func(d Data) {
		if d.Secret != "" {
			secret, _ = keystore.DecodeSecret(d.Secret)
		}
	}
	if v := f.self(t, o, protocol.Request{Op: protocol.OpEnroll}, ui3); v != protocol.ResultSuccess {
		t.Fatalf("re-enroll: %s %q", v, ui3.messages)
	}
	if string(secret) == string(old) {
		t.Fatal("re-enroll kept the old secret")
	}
	st, _ = f.store.ReadState("carol")
	if st.Failures != 0 {
		t.Fatalf("failures %d after a right code, want 0", st.Failures)
	}
}

// promptFunc is a script whose answers are computed.
type promptFunc struct {
	*script
	answer func(prompt string) string
	onData func(Data)
}

func (p *promptFunc) Prompt(text string, echo bool) (string, error) {
	p.prompts = append(p.prompts, text)
	return p.answer(text), nil
}

func (p *promptFunc) Data(d Data) error {
	if p.onData != nil {
		p.onData(d)
	}
	return p.script.Data(d)
}

func TestSelfBackupCodesAndVerify(t *testing.T) {
	f, o := selfFixture(t, "")
	secret, old := f.enroll(t, "carol")
	if v := f.self(t, o, protocol.Request{Op: protocol.OpBackupCodes}, &script{answers: []string{"nope"}}); v != protocol.ResultAuthErr {
		t.Fatalf("backup-codes with a wrong code: %s", v)
	}
	ui := &script{answers: []string{f.code(t, secret, 0)}}
	if v := f.self(t, o, protocol.Request{Op: protocol.OpBackupCodes}, ui); v != protocol.ResultSuccess {
		t.Fatalf("backup-codes: %s %q", v, ui.messages)
	}
	if len(ui.data) != 1 || len(ui.data[0].BackupCodes) != 10 || ui.data[0].BackupCodes[0] == old[0] {
		t.Fatalf("data %+v", ui.data)
	}
	if v := f.self(t, o, protocol.Request{Op: protocol.OpVerify}, &script{answers: []string{old[0]}}); v != protocol.ResultAuthErr {
		t.Fatalf("old backup code after a new set: %s", v)
	}
	if v := f.self(t, o, protocol.Request{Op: protocol.OpVerify}, &script{answers: []string{ui.data[0].BackupCodes[0]}}); v != protocol.ResultSuccess {
		t.Fatalf("new backup code: %s", v)
	}
}

func TestSelfRefuses(t *testing.T) {
	f, o := selfFixture(t, "")
	f.enroll(t, "alice")
	for name, c := range map[string]struct {
		req  protocol.Request
		want string
	}{
		"another user":              {protocol.Request{Op: protocol.OpStatus, User: "alice"}, protocol.ResultAuthErr},
		"config arg":                {protocol.Request{Op: protocol.OpStatus, Args: []string{"config=/tmp/x.toml"}}, protocol.ResultServiceErr},
		"nullok arg":                {protocol.Request{Op: protocol.OpVerify, Args: []string{"nullok"}}, protocol.ResultServiceErr},
		"authenticate another user": {protocol.Request{Op: protocol.OpAuthenticate, User: "alice"}, protocol.ResultAuthErr},
		"not enrolled":              {protocol.Request{Op: protocol.OpVerify}, protocol.ResultAuthErr},
		"no backup left":            {protocol.Request{Op: protocol.OpBackupCodes}, protocol.ResultAuthErr},
	} {
		ui := &script{answers: []string{"123456"}}
		if v := f.self(t, o, c.req, ui); v != c.want {
			t.Errorf("%s: %s, want %s (%q)", name, v, c.want, ui.messages)
		}
	}
	// A uid that is not in the passwd file gets nothing.
	o.Caller = 4343
	if v := f.self(t, o, protocol.Request{Op: protocol.OpStatus}, &script{}); v != protocol.ResultAuthErr {
		t.Errorf("unknown uid: %s", v)
	}
}

// TestSelfEnrollLosesToAdminChange is finding 3 of the attack review: a
// user gives a current code, then waits at the confirmation prompt while
// root resets the account and enrolls it again; the user's confirmation
// must not store the pending secret over root's. The same holds for a
// reset alone.
func TestSelfEnrollLosesToAdminChange(t *testing.T) {
	for _, adminEnrolls := range []bool{true, false} {
		f, o := selfFixture(t, "")
		o.Now = func() time.Time { return f.now }
		old, _ := f.enroll(t, "carol")
		var pending, admins []byte
		ui := &promptFunc{script: &script{}, answer: func(p string) string {
			if pending == nil {
				return f.code(t, old, 0) // the current code
			}
			// At the confirmation: root resets, maybe enrolls anew.
			if err := f.mgr().Reset("carol"); err != nil {
				t.Fatal(err)
			}
			if adminEnrolls {
				admins, _ = f.enroll(t, "carol")
			}
			return f.code(t, pending, 0)
		}}
		ui.onData = func(d Data) {
			if d.Secret != "" {
				pending, _ = keystore.DecodeSecret(d.Secret)
			}
		}
		v := f.self(t, o, protocol.Request{Op: protocol.OpEnroll}, ui)
		if v != protocol.ResultAuthErr || !ui.said("changed by an administrator") {
			t.Fatalf("admin enrolls %v: self enroll after the admin's change: %s %q", adminEnrolls, v, ui.messages)
		}
		u, err := f.store.ReadUser("carol")
		switch {
		case adminEnrolls && (err != nil || string(u.Authenticators[0].Secret) != string(admins)):
			t.Fatalf("the administrator's enrollment was overwritten (%v)", err)
		case !adminEnrolls && !errors.Is(err, keystore.ErrNotEnrolled):
			t.Fatalf("the administrator's reset was undone: %v", err)
		}
	}

	// backup-codes checks the same fingerprint (there is no prompt between
	// its code and its write: internal/account's TestIfUnchanged shows it).
}

// TestSelfAuthenticate is finding 7(a) of the attack review: a PAM host
// that runs as the user (a screen locker) gets the user's own account
// checked, with the same counting and lockout as a login through a root
// host, and a config= argument it passes is not honoured.
func TestSelfAuthenticate(t *testing.T) {
	f, o := selfFixture(t, "[lockout]\nmax_failures = 2\n")
	secret, _ := f.enroll(t, "carol")
	o.Now = func() time.Time { return f.now }
	auth := func(answer string, args ...string) (string, *script) {
		ui := &script{answers: []string{answer}}
		req := protocol.Request{Op: protocol.OpAuthenticate, User: "carol", Service: "xscreensaver", Args: args}
		return f.self(t, o, req, ui), ui
	}
	good := f.code(t, secret, 0)
	if v, ui := auth(good, "config=/nonexistent/config.toml"); v != protocol.ResultSuccess {
		t.Fatalf("right code: %s %q", v, ui.messages)
	}
	if v, _ := auth(good); v != protocol.ResultAuthErr {
		t.Fatalf("replayed code: %s", v)
	}
	if v, ui := auth("000000"); v != protocol.ResultMaxTries || !ui.said("locked until") {
		t.Fatalf("second wrong code: %s %q", v, ui.messages)
	}
	if v, _ := auth(f.code(t, secret, 30*time.Second)); v != protocol.ResultMaxTries {
		t.Fatalf("right code while locked: %s", v)
	}
	st, err := f.store.ReadState("carol")
	if err != nil || st.Failures != 2 || st.LockedUntil.IsZero() {
		t.Fatalf("state %+v %v, want 2 failures and a lock", st, err)
	}
}

// TestExplicitConfigMissing is finding 7(b): a config= path that does not
// exist is a setup error that denies, not a fall back to the defaults.
func TestExplicitConfigMissing(t *testing.T) {
	f := newFixture(t, "")
	secret, _ := f.enroll(t, "alice")
	req := protocol.Request{Op: protocol.OpAuthenticate, User: "alice", Service: "test",
		Args: []string{"config=" + filepath.Join(f.dir, "missing.toml")}}
	ui := &script{answers: []string{f.code(t, secret, 0)}}
	v, _ := f.run(t, Options{Caller: 0, Now: func() time.Time { return f.now }}, req, ui)
	if v != protocol.ResultAuthErr || len(ui.prompts) != 0 || !ui.said(setupErrMsg) || ui.said(notEnrolledMsg) {
		t.Fatalf("missing config=: %s, prompts %q, messages %q; want auth_err and the setup error before any prompt", v, ui.prompts, ui.messages)
	}
}

func TestBadRequest(t *testing.T) {
	f := newFixture(t, "")
	fds, _ := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	hf, cf := os.NewFile(uintptr(fds[0]), "h"), os.NewFile(uintptr(fds[1]), "c")
	hc, _ := net.FileConn(hf)
	cc, _ := net.FileConn(cf)
	hf.Close()
	cf.Close()
	defer cc.Close()
	exit := make(chan int, 1)
	go func() { exit <- Run(hc, Options{Now: func() time.Time { return f.now }}); hc.Close() }()
	protocol.WriteFrame(cc, protocol.Frame{Type: protocol.TypeAnswer, Payload: []byte("123456")})
	fr, err := protocol.ReadFrame(cc)
	if err != nil || fr.Type != protocol.TypeResult || string(fr.Payload) != protocol.ResultAuthErr {
		t.Fatalf("answer before request: %v %v %q", err, fr.Type, fr.Payload)
	}
	if e := <-exit; e != 1 {
		t.Fatalf("exit %d", e)
	}
}

// TestLogLineNotForged is finding 5 of the attack review through the
// helper: `pamtester -I rhost=... svc "x outcome=accepted method=totp"`
// logged fields otpgate never wrote. The user name (sshd passes invalid
// ones to PAM) and the remote host are now quoted: the line has exactly
// one outcome, and it is the real one.
var anchored = regexp.MustCompile(`^user=(?:"(?:[^"\\]|\\.)*"|[^" ]+) service=sshd rhost=(?:"(?:[^"\\]|\\.)*"|[^" ]+) outcome=denied reason=not-enrolled policy=everyone$`)

func TestLogLineNotForged(t *testing.T) {
	f := newFixture(t, "")
	for _, user := range []string{"x outcome=accepted method=totp", `y" outcome="accepted`} {
		var buf strings.Builder
		log := authlog.Dial(filepath.Join(f.dir, "no-syslog"), "otpgate", &buf)
		req := protocol.Request{Op: protocol.OpAuthenticate, User: user, Service: "sshd",
			RHost: "203.0.113.9 outcome=accepted", Args: []string{"config=" + f.config}}
		v, _ := f.run(t, Options{Caller: 0, Log: log}, req, &script{answers: []string{"123456"}})
		if v != protocol.ResultAuthErr {
			t.Fatalf("user %q: %s", user, v)
		}
		line := strings.TrimPrefix(strings.TrimSpace(buf.String()), "otpgate: log: ")
		want := authlog.Fields("user", user, "service", "sshd", "rhost", "203.0.113.9 outcome=accepted", "outcome", "denied", "reason", "not-enrolled", "policy", "everyone")
		if line != want {
			t.Errorf("user %q: logged\n  %s\nwant\n  %s", user, line, want)
		}
		// What a log reader (fail2ban) anchors on.
		if !anchored.MatchString(line) {
			t.Errorf("user %q: %s does not parse as user, service, rhost, outcome=denied", user, line)
		}
	}
}
