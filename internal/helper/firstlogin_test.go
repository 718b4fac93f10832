package helper

import (
	"encoding/base32"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/internal/qrterm"
	"github.com/otpgate/otpgate/internal/totp"
)

const firstLoginOn = "[enroll]\nfirst_login = true\n"

var uriIn = regexp.MustCompile(`otpauth://\S+`)

// secretOf reads the key URI out of a prompt the person was shown and
// returns the secret in it.
func secretOf(t *testing.T, prompt string) (string, []byte) {
	t.Helper()
	raw := uriIn.FindString(prompt)
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		t.Fatalf("no key URI in the prompt %q", prompt)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(u.Query().Get("secret"))
	if err != nil {
		t.Fatalf("secret in %s: %v", raw, err)
	}
	return raw, secret
}

// person is a UI that enrolls like a person with an app: it reads the URI
// off the enrollment prompt, answers with the app's code (or with wrong
// codes first), and presses Enter at the backup codes.
type person struct {
	f        *fixture
	t        *testing.T
	wrong    int        // wrong codes to give first
	failAt   int        // the conversation fails at this prompt (1-based); 0 never
	before   func()     // runs before the first answer
	secret   []byte     // from the URI shown
	uri      string     // the URI shown
	prompts  []string   // every prompt, in order
	echo     []bool     // echo of each prompt
	messages []string   // info and error lines
	mu       sync.Mutex // for messages
}

func (p *person) Prompt(text string, echo bool) (string, error) {
	p.prompts = append(p.prompts, text)
	p.echo = append(p.echo, echo)
	n := len(p.prompts)
	if n == p.failAt {
		return "", errors.New("conversation failed")
	}
	if n == 1 && p.before != nil {
		p.before()
	}
	switch {
	case strings.Contains(text, "otpauth://"):
		p.uri, p.secret = secretOf(p.t, text)
	case strings.Contains(text, "Press Enter"):
		return "", nil
	case strings.Contains(text, "Verification code"):
		return p.f.code(p.t, p.secret, 30*time.Second), nil
	}
	if p.wrong > 0 {
		p.wrong--
		return "000000", nil
	}
	if p.secret == nil {
		return "", errors.New("no secret seen")
	}
	return p.f.code(p.t, p.secret, 0), nil
}

func (p *person) Message(text string, isError bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if isError {
		text = "error: " + text
	}
	p.messages = append(p.messages, text)
}

func (p *person) Data(Data) error { return errors.New("data frame in a login") }

func (p *person) said(sub string) bool {
	for _, m := range p.messages {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

// TestFirstLoginPAM: a user with no secret, on a stack with first_login
// and the config key on, is shown the URI and a QR code that encodes it,
// enrolls with a code of it, gets backup codes, and is let in; the next
// login asks for a code as for anyone enrolled.
func TestFirstLoginPAM(t *testing.T) {
	f := newFixture(t, firstLoginOn)
	log, buf := logBuf(t, f)
	p := &person{f: f, t: t}
	req := protocol.Request{Op: protocol.OpAuthenticate, User: "bob", Service: "sshd", RHost: "192.0.2.1",
		Args: []string{"config=" + f.config, "first_login"}, Silent: true}
	v, _ := f.run(t, Options{Caller: 0, Log: log, NSS: fakeNSS(t, f.dir)}, req, p)
	if v != protocol.ResultSuccess {
		t.Fatalf("verdict %s; prompts %q messages %q", v, p.prompts, p.messages)
	}
	if len(p.prompts) != 2 || p.echo[0] || !p.echo[1] {
		t.Fatalf("want the code prompt (echo off) and the backup codes (echo on): %q %v", p.prompts, p.echo)
	}
	u, err := f.store.ReadUser("bob")
	if err != nil {
		t.Fatal(err)
	}
	if string(u.Authenticators[0].Secret) != string(p.secret) {
		t.Fatal("the stored secret is not the one shown")
	}
	if len(u.BackupHashes) != f.cfg.BackupCodes {
		t.Fatalf("%d backup codes stored", len(u.BackupHashes))
	}
	// The QR code drawn in the prompt is the one of the URI shown.
	m, err := qrterm.SmallMatrix(p.uri)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.prompts[0], qrterm.UTF8(m)) {
		t.Fatal("the prompt does not hold the QR code of the URI it shows")
	}
	if strings.Contains(p.uri, "algorithm=") || !strings.Contains(p.uri, "issuer=") {
		t.Fatalf("URI %s: want the compact form with the issuer", p.uri)
	}
	codes := regexp.MustCompile(`[0-9A-Z]{5}-[0-9A-Z]{5}`).FindAllString(p.prompts[1], -1)
	if len(codes) != f.cfg.BackupCodes {
		t.Fatalf("backup prompt shows %d codes: %q", len(codes), p.prompts[1])
	}
	line := buf.String()
	if !strings.Contains(line, "user=bob service=sshd rhost=192.0.2.1 outcome=accepted method=totp action=enroll by=first-login") {
		t.Fatalf("log: %s", line)
	}
	if strings.Contains(line, totp.EncodeSecret(p.secret)) || strings.Contains(line, codes[0]) {
		t.Fatalf("the log holds the secret or a backup code: %s", line)
	}

	// Next login: a code of the new secret, as for anyone enrolled.
	next := &person{f: f, t: t, secret: p.secret}
	if v := f.pam(t, "bob", next, "first_login"); v != protocol.ResultSuccess {
		t.Fatalf("next login: %s %q %q", v, next.prompts, next.messages)
	}
	if len(next.prompts) != 1 || next.prompts[0] != DefaultPrompt {
		t.Fatalf("next login prompts %q", next.prompts)
	}
	// A backup code works too.
	if v := f.pam(t, "bob", &script{answers: []string{codes[3]}}); v != protocol.ResultSuccess {
		t.Fatalf("backup code: %s", v)
	}
}

// TestFirstLoginNotOffered: without the pam.d argument, or without the
// config key, a user with no secret is never offered a secret.
func TestFirstLoginNotOffered(t *testing.T) {
	for _, c := range []struct {
		name, cfg string
		args      []string
		user      string // "" means bob
	}{
		{"no argument", firstLoginOn, nil, ""},
		{"config key off", "", []string{"first_login"}, ""},
		{"config key false", "[enroll]\nfirst_login = false\n", []string{"first_login"}, ""},
		{"with forward_pass: the password comes after", firstLoginOn, []string{"first_login", "forward_pass"}, ""},
		{"a name the system does not know", firstLoginOn, []string{"first_login"}, "ghost-bob"},
	} {
		f := newFixture(t, c.cfg)
		ui := &script{answers: []string{"123456"}}
		user := "bob"
		if c.user != "" {
			user = c.user
		}
		if v := f.pam(t, user, ui, c.args...); v != protocol.ResultAuthErr {
			t.Fatalf("%s: %s", c.name, v)
		}
		if len(ui.prompts) != 0 || !ui.said(notEnrolledMsg) {
			t.Fatalf("%s: prompts %q messages %q", c.name, ui.prompts, ui.messages)
		}
		if ok, _ := f.store.Enrolled(user); ok {
			t.Fatalf("%s: a secret was stored", c.name)
		}
	}
	// An enrolled user on a first_login stack is asked for a code, never
	// offered a new secret.
	f := newFixture(t, firstLoginOn)
	secret, _ := f.enroll(t, "carol")
	ui := &script{answers: []string{f.code(t, secret, 0)}}
	if v := f.pam(t, "carol", ui, "first_login"); v != protocol.ResultSuccess || len(ui.prompts) != 1 || ui.prompts[0] != DefaultPrompt {
		t.Fatalf("enrolled: %s %q", v, ui.prompts)
	}
}

// TestFirstLoginAbandoned: wrong codes or a failed conversation store
// nothing, and the login goes on as for a user who is not enrolled
// (denied; nullok: ignore).
func TestFirstLoginAbandoned(t *testing.T) {
	f := newFixture(t, firstLoginOn)
	log, buf := logBuf(t, f)
	cases := []struct {
		name string
		p    *person
		args []string
		want string
		said string
	}{
		{"three wrong codes", &person{wrong: 3}, nil, protocol.ResultAuthErr, "no matching code after 3 tries"},
		{"conversation fails", &person{failAt: 1}, nil, protocol.ResultAuthErr, notEnrolledMsg},
		{"wrong codes, nullok", &person{wrong: 3}, []string{"nullok"}, protocol.ResultIgnore, "no matching code"},
	}
	for _, c := range cases {
		c.p.f, c.p.t = f, t
		req := protocol.Request{Op: protocol.OpAuthenticate, User: "bob", Service: "sshd",
			Args: append([]string{"config=" + f.config, "first_login"}, c.args...)}
		v, _ := f.run(t, Options{Caller: 0, Log: log, NSS: fakeNSS(t, f.dir)}, req, c.p)
		if v != c.want || !c.p.said(c.said) {
			t.Fatalf("%s: %s, messages %q", c.name, v, c.p.messages)
		}
		if ok, _ := f.store.Enrolled("bob"); ok {
			t.Fatalf("%s: a secret was stored", c.name)
		}
	}
	// Two wrong codes and then the right one: enrolled, and the
	// retries showed the mismatch line without the QR code again.
	p := &person{f: f, t: t, wrong: 2}
	if v := f.pam(t, "bob", p, "first_login"); v != protocol.ResultSuccess {
		t.Fatalf("right on the third try: %s %q", v, p.messages)
	}
	if len(p.prompts) != 4 || !strings.HasPrefix(p.prompts[1], "That code does not match") || strings.Contains(p.prompts[1], "otpauth") {
		t.Fatalf("prompts %q", p.prompts)
	}
	for _, want := range []string{"outcome=refused reason=wrong-code action=enroll by=first-login",
		"outcome=refused reason=no-answer error=\"the conversation failed\" action=enroll by=first-login"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, buf.String())
		}
	}
}

// TestFirstLoginBackupPromptFails: saved, but the client went away at the
// backup codes: denied (the secret stays).
func TestFirstLoginBackupPromptFails(t *testing.T) {
	f := newFixture(t, firstLoginOn)
	p := &person{f: f, t: t, failAt: 2}
	if v := f.pam(t, "bob", p, "first_login"); v != protocol.ResultAuthErr {
		t.Fatalf("%s", v)
	}
	if ok, _ := f.store.Enrolled("bob"); !ok {
		t.Fatal("the confirmed secret was not kept")
	}
}

// TestFirstLoginParallel: two first logins of one user, the second
// finishing while the first waits at its code prompt: one secret (the
// one that saved first) is stored, and the other login is told and
// denied.
func TestFirstLoginParallel(t *testing.T) {
	f := newFixture(t, firstLoginOn)
	second := &person{f: f, t: t}
	first := &person{f: f, t: t}
	first.before = func() {
		if v := f.pam(t, "bob", second, "first_login"); v != protocol.ResultSuccess {
			t.Errorf("second login: %s %q", v, second.messages)
		}
	}
	v := f.pam(t, "bob", first, "first_login")
	if v != protocol.ResultAuthErr || !first.said("another login set up a verification code for bob meanwhile") {
		t.Fatalf("first login: %s %q", v, first.messages)
	}
	u, err := f.store.ReadUser("bob")
	if err != nil {
		t.Fatal(err)
	}
	if string(u.Authenticators[0].Secret) != string(second.secret) || string(first.secret) == string(second.secret) {
		t.Fatal("the stored secret is not the one of the login that finished first")
	}
}

// TestFirstLoginStoreError: a store otpgate cannot write denies with the
// setup message and stores nothing.
func TestFirstLoginStoreError(t *testing.T) {
	f := newFixture(t, firstLoginOn)
	f.enroll(t, "carol") // makes the store's directories
	// bob's lock file is a link: the store refuses it, and Save fails.
	if err := os.Symlink("/etc/passwd", filepath.Join(f.store.Dir(), "locks", "bob.lock")); err != nil {
		t.Fatal(err)
	}
	p := &person{f: f, t: t}
	if v := f.pam(t, "bob", p, "first_login"); v != protocol.ResultAuthErr || !p.said(setupErrMsg) {
		t.Fatalf("%s %q", v, p.messages)
	}
	if ok, _ := f.store.Enrolled("bob"); ok {
		t.Fatal("stored")
	}
}

// TestFirstLoginSelfVerify: sshcheck (self mode, verify) offers it with
// the argument, and only for verify.
func TestFirstLoginSelfVerify(t *testing.T) {
	f, o := selfFixture(t, firstLoginOn)
	p := &person{f: f, t: t}
	req := protocol.Request{Op: protocol.OpVerify, Service: "sshcheck", Args: []string{ArgFirstLogin}}
	if v := f.self(t, o, req, p); v != protocol.ResultSuccess {
		t.Fatalf("%s %q %q", v, p.prompts, p.messages)
	}
	if ok, _ := f.store.Enrolled("carol"); !ok {
		t.Fatal("not stored")
	}
	// Enrolled now: verify asks for a code.
	next := &person{f: f, t: t, secret: p.secret}
	if v := f.self(t, o, req, next); v != protocol.ResultSuccess || len(next.prompts) != 1 || next.prompts[0] != "Verification code: " {
		t.Fatalf("next: %s %q", v, next.prompts)
	}
	// Without the argument, or with the config key off: not offered.
	g, o2 := selfFixture(t, "")
	ui := &script{}
	// (A user without a code is not asked for one, as in a PAM login.)
	if v := g.self(t, o2, req, ui); v != protocol.ResultAuthErr || len(ui.prompts) != 0 {
		t.Fatalf("config off: %s %q", v, ui.prompts)
	}
	h, o3 := selfFixture(t, firstLoginOn)
	ui = &script{answers: []string{"123456"}}
	if v := h.self(t, o3, protocol.Request{Op: protocol.OpVerify}, ui); v != protocol.ResultAuthErr || strings.Contains(strings.Join(ui.prompts, ""), "otpauth") {
		t.Fatalf("no argument: %s %q", v, ui.prompts)
	}
	// The argument is for verify only.
	ui = &script{}
	if v := h.self(t, o3, protocol.Request{Op: protocol.OpStatus, Args: []string{ArgFirstLogin}}, ui); v != protocol.ResultServiceErr {
		t.Fatalf("status with first_login: %s", v)
	}
}

// TestEnrollScreenFits: the QR code and the prompt below it fit an 80x24
// terminal, for a host name and a user name of usual length.
func TestEnrollScreenFits(t *testing.T) {
	secret := make([]byte, 20)
	for _, c := range []struct{ issuer, user string }{
		{"web-01", "alice"},
		{"build-server-03.example.org", "otpe2e-abcdef"},
	} {
		uri := CompactKeyURI(c.issuer, c.user, secret, totp.Default)
		m, err := qrterm.SmallMatrix(uri)
		if err != nil {
			t.Fatal(err)
		}
		qr := qrterm.UTF8(m)
		rows := strings.Split(strings.TrimSuffix(qr, "\n"), "\n")
		if len(rows)+1 > 24 {
			t.Errorf("%s: the QR code takes %d lines; with the prompt that is over 24", uri, len(rows))
		}
		screen := enrollScreen(c.user, uri, totp.EncodeSecret(secret), qr) + "Enter the 6-digit code the app shows: "
		for _, l := range strings.Split(screen, "\n") {
			if n := len([]rune(l)); n > 80 && !strings.HasPrefix(l, "URI: ") {
				t.Errorf("line of %d columns: %q", n, l)
			}
		}
	}
	// Other parameters stay in the URI.
	uri := CompactKeyURI("web 01", "alice", secret, totp.Params{Algorithm: "SHA256", Digits: 8, Period: 60})
	for _, want := range []string{"algorithm=SHA256", "digits=8", "period=60", "issuer=web%2001"} {
		if !strings.Contains(uri, want) {
			t.Errorf("%s lacks %s", uri, want)
		}
	}
}

// TestFirstLoginLocked: an account still locked (its secret reset by an
// administrator after wrong codes) is not offered a new secret until the
// lock ends.
func TestFirstLoginLocked(t *testing.T) {
	f := newFixture(t, firstLoginOn+"[lockout]\nmax_failures = 2\n")
	f.enroll(t, "bob")
	for i := 0; i < 2; i++ {
		f.pam(t, "bob", &script{answers: []string{"000000"}})
	}
	if err := f.mgr().Reset("bob"); err != nil {
		t.Fatal(err)
	}
	p := &person{f: f, t: t}
	if v := f.pam(t, "bob", p, "first_login"); v != protocol.ResultMaxTries || len(p.prompts) != 0 || !p.said("too many wrong codes; try again after") {
		t.Fatalf("locked: %s %q %q", v, p.prompts, p.messages)
	}
	if ok, _ := f.store.Enrolled("bob"); ok {
		t.Fatal("a locked account was enrolled")
	}
	f.now = f.now.Add(time.Hour)
	p = &person{f: f, t: t}
	if v := f.pam(t, "bob", p, "first_login"); v != protocol.ResultSuccess {
		t.Fatalf("after the lock: %s %q", v, p.messages)
	}
}
