package pamtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

// stack is one test's config, store and PAM service directory.
type stack struct {
	t       *testing.T
	dir     string // root-owned, 0700
	confDir string // the PAM service files
	config  string
	cfg     config.Config
	store   *keystore.Store
	helper  string // the helper the service lines name
}

func newStack(t *testing.T, configExtra string) *stack {
	t.Helper()
	needRoot(t)
	dir := t.TempDir()
	s := &stack{t: t, dir: dir, confDir: filepath.Join(dir, "pam.d"), config: filepath.Join(dir, "config.toml"), helper: helperPath}
	if err := os.Mkdir(s.confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("store = %q\n%s", filepath.Join(dir, "store"), configExtra)
	if err := os.WriteFile(s.config, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(s.config)
	if err != nil {
		t.Fatal(err)
	}
	s.cfg, s.store = cfg, keystore.New(cfg.Store)
	return s
}

// enroll enrolls user through internal/account and returns the secret and
// the backup codes.
func (s *stack) enroll(user string) ([]byte, []string) {
	s.t.Helper()
	m := &account.Manager{Store: s.store, Config: s.cfg}
	en, err := m.NewEnrollment(user)
	if err != nil {
		s.t.Fatal(err)
	}
	codes, err := m.Save(en, account.SaveOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	return en.Secret, codes
}

// code is the current TOTP code of secret, offset by steps.
func code(t *testing.T, secret []byte, steps int64) string {
	t.Helper()
	c, err := totp.CodeAt(secret, uint64(totp.Step(time.Now(), 30)+steps), totp.Default)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wrongCode is a code that is none of the codes in the window.
func wrongCode(t *testing.T, secret []byte) string {
	for _, c := range []string{"000000", "111111", "222222", "333333"} {
		if c != code(t, secret, -1) && c != code(t, secret, 0) && c != code(t, secret, 1) {
			return c
		}
	}
	t.Fatal("no wrong code")
	return ""
}

// otpgate is a service line for the module with the stack's helper and
// config, and args.
func (s *stack) otpgate(control string, args ...string) string {
	return fmt.Sprintf("auth %s %s helper=%s config=%s %s", control, modulePath, s.helper, s.config, strings.Join(args, " "))
}

// service writes a PAM service file of lines and returns its name.
func (s *stack) service(lines ...string) string {
	s.t.Helper()
	name := "otpgate-test"
	if err := os.WriteFile(filepath.Join(s.confDir, name), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		s.t.Fatal(err)
	}
	return name
}

// conv is a conversation that answers prompts from a list and records
// everything.
type conv struct {
	mu       sync.Mutex
	answers  []string
	prompts  []string
	infos    []string
	errs     []string
	onPrompt func() // runs before each answer
	fail     bool   // the conversation fails on prompts
}

func (c *conv) RespondPAM(style pam.Style, msg string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch style {
	case pam.TextInfo:
		c.infos = append(c.infos, msg)
		return "", nil
	case pam.ErrorMsg:
		c.errs = append(c.errs, msg)
		return "", nil
	}
	c.prompts = append(c.prompts, msg)
	if c.onPrompt != nil {
		c.onPrompt()
	}
	if c.fail || len(c.answers) == 0 {
		return "", errors.New("the test conversation fails")
	}
	a := c.answers[0]
	c.answers = c.answers[1:]
	return a, nil
}

// auth runs pam_authenticate for user on service with flags; nil is
// PAM_SUCCESS.
func (s *stack) auth(service, user string, c *conv, flags pam.Flags) error {
	s.t.Helper()
	tx, err := pam.StartConfDir(service, user, c, s.confDir)
	if err != nil {
		s.t.Fatalf("pam_start: %v", err)
	}
	defer tx.End()
	return tx.Authenticate(flags)
}

// want fails the test unless err is the PAM result want (nil: success).
func want(t *testing.T, what string, err error, want error) {
	t.Helper()
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", what, errText(err), errText(want))
	}
}

func errText(err error) string {
	if err == nil {
		return "PAM_SUCCESS"
	}
	var e pam.Error
	if errors.As(err, &e) {
		return fmt.Sprintf("%v (%d)", err, int(e))
	}
	return err.Error()
}
