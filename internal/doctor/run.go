package doctor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/passwd"
	"github.com/otpgate/otpgate/keystore"
)

// Options say where to look. Zero values mean the system's usual places.
type Options struct {
	ConfigPath string   // /etc/otpgate/config.toml
	SSHD       string   // /usr/sbin/sshd; "none" skips the sshd checks
	SSHDConfig string   // sshd's own default when empty
	PAMDir     string   // /etc/pam.d
	Helper     string   // the installed launcher (or helper); "" skips the check
	Socket     string   // the helper daemon's socket; "" skips the daemon checks
	ModuleDirs []string // where PAM finds modules named without a path
	Passwd     string   // /etc/passwd
	Group      string   // /etc/group
	Groups     []string // groups whose members must be enrolled
	MaxUsers   int      // accounts checked with sshd -T -C; default 1000
}

// pamServices are the stacks doctor reads when they exist.
var pamServices = []string{"sshd", "sudo", "sudo-i", "su", "su-l", "login"}

// Run gathers the host's configuration and checks it.
func Run(o Options) *Report {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.ConfigPath, config.DefaultPath)
	def(&o.SSHD, "/usr/sbin/sshd")
	def(&o.PAMDir, "/etc/pam.d")
	def(&o.Passwd, "/etc/passwd")
	def(&o.Group, "/etc/group")
	if o.MaxUsers == 0 {
		o.MaxUsers = 1000
	}
	r := &Report{}

	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		r.add(Finding{Check: "config", Context: o.ConfigPath, Problem: err.Error() + "; every login through otpgate is denied until it is fixed", Fix: "correct the file (see contrib/config.toml)"})
		cfg = config.Default()
	}
	r.note("%s", configNote(o.ConfigPath))
	r.checkPolicy(cfg, o.ConfigPath, time.Now())

	// PAM stacks, and the module and helper each otpgate line names.
	withOtpgate := map[string]bool{}
	modules, helpers := map[string]bool{}, map[string]bool{}
	for _, svc := range pamServices {
		stack, err := AuthStack(o.PAMDir, svc)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			r.add(Finding{Check: "pam", Context: filepath.Join(o.PAMDir, svc), Problem: err.Error(), Fix: "fix the stack"})
			continue
		}
		withOtpgate[svc] = HasOtpgate(stack)
		r.add(CheckPAM(svc, stack)...)
		r.add(CheckFirstLogin(svc, stack)...)
		for _, l := range stack {
			if !l.IsOtpgate() {
				continue
			}
			modules[resolveModule(l.Module, o.ModuleDirs)] = true
			for _, a := range l.Args {
				if h, ok := strings.CutPrefix(a, "helper="); ok {
					helpers[h] = true
				}
			}
		}
		r.note("pam %s: pam_otpgate %s", svc, map[bool]string{true: "present", false: "absent"}[withOtpgate[svc]])
	}

	// The daemon, and how logins reach the helper.
	var d DaemonState
	if o.Socket != "" {
		var found []Finding
		d, found = CheckDaemon(o.Socket)
		r.add(found...)
		switch {
		case d.Up:
			r.note("mode: daemon (otpgate-helper serves on %s)", o.Socket)
		default:
			r.note("mode: exec (no daemon on %s: each login execs the helper)", o.Socket)
		}
	}

	// Files.
	if o.Helper != "" {
		helpers[o.Helper] = true
	}
	for _, h := range sortedKeys(helpers) {
		r.add(checkProgram(h, !d.Up)...)
		r.note("helper %s", h)
		if n := launcherNote(h, d); n != "" {
			r.note("%s", n)
		}
	}
	for _, m := range sortedKeys(modules) {
		r.add(CheckModule(m)...)
		r.note("module %s", m)
	}
	r.add(CheckStore(cfg.Store)...)
	r.note("store %s", cfg.Store)
	enrolled := func(user string) error { _, err := keystore.New(cfg.Store).ReadUser(user); return err }
	if cfg.Backend == config.BackendPostgres {
		found, notes := CheckPostgres(cfg, o.ConfigPath)
		r.add(found...)
		for _, n := range notes {
			r.note("%s", n)
		}
		if PostgresEnrolled != nil {
			enrolled = PostgresEnrolled(cfg)
		} else {
			enrolled = func(string) error {
				return fmt.Errorf("cannot tell who is enrolled: this otpgate was built without the PostgreSQL client (run otpgate-db doctor)")
			}
		}
	}

	// sshd, as sshd itself resolves it: globally, then for each account
	// that can log in (sshd evaluates its own Match blocks).
	accounts, err := passwd.ReadAll(o.Passwd)
	if err != nil {
		r.add(Finding{Check: "users", Context: o.Passwd, Problem: err.Error(), Fix: "check the file"})
	}
	protected := map[string]string{} // user -> why
	if o.SSHD != "none" {
		pam := SSHDPAM{HasOtpgate: withOtpgate["sshd"]}
		// pam_env sets the session's environment from its setcred (auth)
		// and open_session (session) calls; sshd passes it on.
		if rules, err := Stack(o.PAMDir, "sshd", "auth", "session"); err == nil {
			pam.UserEnv = UserEnvRules(rules)
		}
		if rules, err := AuthStack(o.PAMDir, "sshd"); err == nil {
			pam.FirstLogin = FirstLoginWithoutPassword(rules)
		}
		r.checkSSHD(o, accounts, pam, protected)
	}
	for _, g := range o.Groups {
		members, err := GroupMembers(o.Group, accounts, g)
		if err != nil {
			r.add(Finding{Check: "users", Context: o.Group, Problem: err.Error(), Fix: "check the file"})
			continue
		}
		for _, m := range members {
			protected[m] = "in group " + g
		}
	}

	// Protected users must be enrolled, or they cannot log in (or, with
	// nullok, log in without a code).
	names := make([]string, 0, len(protected))
	for n := range protected {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		err := enrolled(n)
		switch {
		case errors.Is(err, keystore.ErrNotEnrolled) && exemptByPolicy(cfg.Policy, n):
			// [policy] lets them through without a code.
		case errors.Is(err, keystore.ErrNotEnrolled):
			r.add(Finding{Check: "users", Context: n, Problem: fmt.Sprintf("%s (%s) is not enrolled: their logins are denied, or pass without a code under nullok", n, protected[n]), Fix: "otpgate enroll --user " + n})
		case err != nil:
			r.add(Finding{Check: "users", Context: n, Problem: err.Error(), Fix: "fix the file, or re-enroll the user"})
		}
	}
	r.note("%d protected users checked for enrollment", len(names))
	r.add(checkCoverage(withOtpgate, protected, o.SSHD != "none")...)
	r.dedupe()
	return r
}

func (r *Report) checkSSHD(o Options, accounts []passwd.Entry, pam SSHDPAM, protected map[string]string) {
	args := []string{"-T"}
	if o.SSHDConfig != "" {
		args = append(args, "-f", o.SSHDConfig)
	}
	out, err := sshdT(o.SSHD, args)
	if err != nil {
		r.add(Finding{Check: "sshd", Context: o.SSHD + " -T", Problem: err.Error(), Fix: "run doctor as root, with sshd installed and its configuration valid (sshd -t)"})
		return
	}
	global := ParseSSHDT(out)
	r.add(CheckSSHD(global, "sshd -T", pam)...)
	// Every account, those without a login shell too: under a ForceCommand
	// they lose even internal-sftp, which runs without the shell otherwise.
	noShell := shellsByForceCommand{}
	n := 0
	for _, a := range accounts {
		if n++; n > o.MaxUsers {
			r.note("sshd: stopped after %d accounts", o.MaxUsers)
			break
		}
		ctx := fmt.Sprintf("user=%s,host=localhost,addr=127.0.0.1", a.Name)
		out, err := sshdT(o.SSHD, append(args, "-C", ctx))
		if err != nil {
			r.add(Finding{Check: "sshd", Context: "-C " + ctx, Problem: err.Error(), Fix: "check sshd_config's Match blocks (sshd -t)"})
			continue
		}
		c := ParseSSHDT(out)
		if c.UsesSSHCheck() && noShell.add(a, c.Get("forcecommand")) {
			continue // it never gets as far as anything below
		}
		if !a.CanLogIn() {
			continue
		}
		r.add(CheckSSHD(c, "-C "+ctx, pam)...)
		switch {
		case c.UsesSSHCheck():
			protected[a.Name] = "sshd ForceCommand otpgate sshcheck"
		case c.Get("usepam") == "yes" && pam.HasOtpgate && c.needsKbdInteractive():
			protected[a.Name] = "sshd keyboard-interactive with pam_otpgate"
		}
	}
	r.add(noShell.findings()...)
	r.note("sshd: %s and %d accounts", o.SSHD, min(n, o.MaxUsers))
}

// configNote says which config was read: a missing file means the
// defaults, and the note says so rather than claim a file was checked.
func configNote(path string) string {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return "config " + path + " (absent: defaults)"
	}
	return "config " + path
}

// checkCoverage reports a host where otpgate protects no login: no PAM
// stack doctor reads has pam_otpgate and no account reaches otpgate
// sshcheck through sshd (sawSSHD: sshd's configuration was read). An
// install that asks no one for a code is a problem to be told about,
// not a clean bill of health.
func checkCoverage(withOtpgate map[string]bool, protected map[string]string, sawSSHD bool) []Finding {
	for _, has := range withOtpgate {
		if has {
			return nil
		}
	}
	for _, why := range protected {
		if strings.HasPrefix(why, "sshd ") {
			return nil
		}
	}
	where := "pam_otpgate is in none of the PAM stacks " + strings.Join(pamServices, ", ")
	if sawSSHD {
		where += " and no account's sshd ForceCommand runs otpgate sshcheck"
	}
	return []Finding{{Check: "coverage", Problem: "otpgate protects no login on this host: " + where + "; no one is asked for a code",
		Fix: "put pam_otpgate in a stack (docs/pam-module.md) or ForceCommand otpgate sshcheck in sshd_config (docs/sshcheck.md)"}}
}

// resolveModule returns the file PAM loads for a module named in a
// pam.d line: a path as it is, a bare name from the first module
// directory that has it (or the first directory, to report it missing).
func resolveModule(name string, dirs []string) string {
	if filepath.IsAbs(name) || len(dirs) == 0 {
		return name
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return filepath.Join(d, name)
		}
	}
	return filepath.Join(dirs[0], name)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sshdT(sshd string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sshd, args...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			return "", fmt.Errorf("%s %v: %s", sshd, args, firstLine(string(ee.Stderr)))
		}
		return "", fmt.Errorf("%s %v: %w", sshd, args, err)
	}
	return string(out), nil
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
