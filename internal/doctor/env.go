package doctor

// What can run before otpgate sshcheck asks for the code. sshd runs the
// ForceCommand as `SHELL -c 'otpgate sshcheck'` (OpenSSH session.c,
// do_child) in an environment built by do_setup_env, in this order: the
// client's variables (AcceptEnv), then sshd's own (USER, HOME, PATH,
// SHELL, TERM, ...), then environment= from authorized_keys and
// ~/.ssh/environment (PermitUserEnvironment), then PAM's environment
// (pam_env, user_readenv), then SetEnv. Whatever a shell or the dynamic
// loader reads from there runs before the code: BASH_ENV alone is enough,
// since bash expands its value (BASH_ENV='$(cmd)' runs cmd).
//
// Not checked, on purpose: PermitUserRC. do_rc_files skips ~/.ssh/rc
// whenever an administrator's ForceCommand applies (OpenSSH 5.0, 2008, and
// every version since), so it never runs under sshcheck (the end-to-end
// test internal/e2e/sshcheck_env_test.go shows it with PermitUserRC yes).

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/otpgate/otpgate/internal/passwd"
)

// startupVars are environment variables that make the shell running the
// ForceCommand, or the dynamic loader starting it, run code or load
// files of whoever set them. Each is tested against sshd's patterns by
// name (BASH_FUNC_ by an example of the names bash exports functions in).
var startupVars = []struct{ name, why string }{
	{"BASH_ENV", "bash runs the file it names, after expanding it: BASH_ENV='$(cmd)' runs cmd"},
	{"ENV", "sh, ksh and mksh run the file it names when interactive (ksh88 for every shell)"},
	{"SHELLOPTS", "bash takes its options from it: with xtrace, PS4='$(cmd)' runs cmd"},
	{"BASHOPTS", "bash takes its shopt options from it"},
	{"PS4", "bash expands it (command substitution included) before each traced command"},
	{"BASH_FUNC_otpgate%%", "bash imports shell functions from BASH_FUNC_*: one named otpgate replaces a ForceCommand without a path"},
	{"ZDOTDIR", "zsh reads its startup files (.zshenv) from that directory"},
	{"LD_PRELOAD", "the dynamic loader loads the libraries it names into the shell"},
	{"LD_LIBRARY_PATH", "the dynamic loader looks for the shell's libraries there first"},
	{"LD_AUDIT", "the dynamic loader loads the audit libraries it names into the shell"},
	{"GCONV_PATH", "glibc loads character-set conversion modules from there"},
}

// startupVarsMatching returns the names of startupVars that allowed
// accepts, and why each matters.
func startupVarsMatching(allowed func(name string) bool) (names, whys []string) {
	for _, v := range startupVars {
		if allowed(v.name) {
			n := v.name
			if strings.HasPrefix(n, "BASH_FUNC_") {
				n = "BASH_FUNC_*"
			}
			names = append(names, n)
			whys = append(whys, n+": "+v.why)
		}
	}
	return names, whys
}

// matchPattern is OpenSSH's match_pattern: '*' matches any run of
// characters, '?' exactly one, everything else itself.
func matchPattern(s, pattern string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			for pattern != "" && pattern[0] == '*' {
				pattern = pattern[1:]
			}
			if pattern == "" {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if matchPattern(s[i:], pattern) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || s[0] != pattern[0] {
				return false
			}
		}
		s, pattern = s[1:], pattern[1:]
	}
	return s == ""
}

// matchPatternList is OpenSSH's match_pattern_list without case folding:
// 1 when a pattern of the comma-separated list matches s and no negated
// one (!pattern) does, -1 when a negated one does, 0 otherwise.
func matchPatternList(s, list string) int {
	got := 0
	for _, p := range strings.Split(list, ",") {
		if neg, ok := strings.CutPrefix(p, "!"); ok {
			if matchPattern(s, neg) {
				return -1
			}
		} else if matchPattern(s, p) {
			got = 1
		}
	}
	return got
}

// SSHDPAM is what the sshd checks need to know of sshd's PAM service.
type SSHDPAM struct {
	HasOtpgate bool      // the auth stack runs pam_otpgate
	UserEnv    []PAMLine // auth and session rules that read a file of the user's into the environment
	FirstLogin []PAMLine // pam_otpgate rules with first_login and no password check above them
}

// UserEnvRules returns the rules of stack that read a file in the user's
// home into PAM's environment, which sshd hands to the session: pam_env
// with user_readenv set to a number other than 0 (Linux-PAM reads it with
// atoi; its default is 0, Debian's /etc/pam.d/sshd sets 1).
func UserEnvRules(stack []PAMLine) []PAMLine {
	var out []PAMLine
	for _, l := range stack {
		if strings.TrimSuffix(filepath.Base(l.Module), ".so") != "pam_env" {
			continue
		}
		on := false
		for _, a := range l.Args {
			if v, ok := strings.CutPrefix(a, "user_readenv="); ok {
				on = atoi(v) != 0
			}
		}
		if on {
			out = append(out, l)
		}
	}
	return out
}

// userEnvFile is the file name (in the user's home) a pam_env rule reads.
func userEnvFile(l PAMLine) string {
	name := ".pam_environment"
	for _, a := range l.Args {
		if v, ok := strings.CutPrefix(a, "user_envfile="); ok && v != "" {
			name = v
		}
	}
	return "~/" + name
}

// atoi is C's atoi: optional sign, leading digits, 0 without any.
func atoi(s string) int {
	end := 0
	if end < len(s) && (s[end] == '-' || s[end] == '+') {
		end++
	}
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(s[:end])
	return n
}

// checkBeforeCode returns the ways a context that runs otpgate sshcheck
// lets the user or the client run code before the code is asked: the
// user's ~/.pam_environment (pam_env user_readenv), ~/.ssh/environment
// and environment= (PermitUserEnvironment), and variables the client
// sends (AcceptEnv) that the shell or the loader acts on.
func checkBeforeCode(c SSHConfig, pam SSHDPAM, add func(problem, fix string)) {
	if c.Get("usepam") == "yes" {
		for _, l := range pam.UserEnv {
			add(fmt.Sprintf("sshd's PAM stack reads the user's %s (%s: pam_env.so user_readenv) and sshd passes what it sets to the shell that runs otpgate sshcheck: BASH_ENV, LD_PRELOAD or ENV set there run the user's own code before the code is asked, so the account can switch the check off for itself",
				userEnvFile(l), l.Where()),
				fmt.Sprintf("remove user_readenv=1 from %s (Debian's stock /etc/pam.d/sshd has it), or set UsePAM no, or use the PAM route (contrib/sshd_config.d/otpgate-pam.conf)", l.Where()))
		}
	}
	switch pue := c.Get("permituserenvironment"); pue {
	case "", "no":
	case "yes":
		add("PermitUserEnvironment yes: ~/.ssh/environment and environment= in authorized_keys set BASH_ENV, LD_PRELOAD and the like in the shell that runs otpgate sshcheck, so the user's own code runs before the code is asked",
			"set PermitUserEnvironment no (a global keyword: it cannot be set in a Match block)")
	default:
		if names, whys := startupVarsMatching(func(n string) bool { return matchPatternList(n, pue) == 1 }); len(names) > 0 {
			add("PermitUserEnvironment "+pue+" lets ~/.ssh/environment and environment= in authorized_keys set "+strings.Join(names, ", ")+" in the shell that runs otpgate sshcheck ("+strings.Join(whys, "; ")+"), so the user's own code runs before the code is asked",
				"set PermitUserEnvironment no, or list only harmless names (a global keyword: it cannot be set in a Match block)")
		}
	}
	var bad []string
	var why []string
	for _, p := range c["acceptenv"] {
		for _, f := range strings.Fields(p) {
			names, whys := startupVarsMatching(func(n string) bool { return matchPattern(n, f) })
			if len(names) == 0 {
				continue
			}
			bad = append(bad, f)
			for _, w := range whys {
				if !slices.Contains(why, w) {
					why = append(why, w)
				}
			}
		}
	}
	if len(bad) > 0 {
		add("AcceptEnv "+strings.Join(bad, " ")+" lets the client set variables that the shell running otpgate sshcheck acts on ("+strings.Join(why, "; ")+"): with the key alone, a client runs commands without a code",
			"accept only LANG LC_* OTPGATE_CODE in the Match block: AcceptEnv LANG LC_* OTPGATE_CODE (a Match block's AcceptEnv replaces the global list)")
	}
}

// noCommandShells are login shells that refuse `-c 'otpgate sshcheck'`,
// with what they do instead. Restricted shells are in restrictedShells.
var noCommandShells = map[string]string{
	"git-shell": `git-shell runs only git's own commands and answers "fatal: unrecognized command"`,
	"nologin":   `nologin prints "This account is currently not available." and exits`,
	"false":     "false exits without running anything",
	"true":      "true exits without running anything",
	"rssh":      "rssh runs only scp, sftp, rsync and the like",
	"scponly":   "scponly runs only scp and sftp",
}

// restrictedShells refuse a command name with a slash (rbash:
// "restricted: cannot specify `/' in command names"), so they run the
// ForceCommand only when it names otpgate without a directory.
var restrictedShells = map[string]bool{"rbash": true, "rksh": true, "rksh93": true, "rzsh": true}

// ShellCannotRunForceCommand says why a login shell cannot run
// forceCommand as sshd runs it (`shell -c forceCommand`), or "" when it
// can, as far as doctor knows the shell. sshd always runs a ForceCommand
// through the account's shell, so such an account never reaches otpgate
// sshcheck and can never log in over SSH, not even for scp or sftp.
func ShellCannotRunForceCommand(shell, forceCommand string) string {
	base := filepath.Base(shell)
	if why, ok := noCommandShells[base]; ok {
		return why
	}
	if restrictedShells[base] {
		prog, _, _ := strings.Cut(strings.TrimSpace(forceCommand), " ")
		if strings.Contains(prog, "/") {
			return base + " refuses a command name with a slash (\"restricted: cannot specify `/' in command names\")"
		}
	}
	return ""
}

// shellFinding reports the accounts, all with shell, whose shell cannot
// run the ForceCommand fc.
func shellFinding(shell, fc string, users []string) Finding {
	why := ShellCannotRunForceCommand(shell, fc)
	list := users
	if len(list) > 10 {
		list = append(append([]string(nil), list[:10]...), fmt.Sprintf("and %d more", len(users)-10))
	}
	fix := "take these accounts out of the Match block (they cannot run anything over SSH anyway), or, for an sftp-only account, give it the PAM route (contrib/sshd_config.d/otpgate-pam.conf)"
	if base := filepath.Base(shell); base != "nologin" && base != "false" && base != "true" {
		fix = "give these accounts the PAM route instead (contrib/sshd_config.d/otpgate-pam.conf: the code is asked during authentication, before any shell), or take them out of the Match block"
		if restrictedShells[base] {
			fix += ", or give them a Match block of their own whose ForceCommand names otpgate without its directory (ForceCommand otpgate sshcheck, found in sshd's PATH)"
		}
	}
	return Finding{Check: "sshd", Context: "ForceCommand " + fc,
		Problem: fmt.Sprintf("accounts whose login shell is %s cannot pass otpgate sshcheck: sshd runs the ForceCommand as `%s -c '%s'`, and %s, so they never get to give a code and can never log in over SSH, not even for scp or sftp: %s",
			shell, filepath.Base(shell), fc, why, strings.Join(list, ", ")),
		Fix: fix}
}

// shellsByForceCommand collects, per login shell and ForceCommand, the
// accounts that cannot run it.
type shellsByForceCommand map[[2]string][]string

func (s shellsByForceCommand) add(a passwd.Entry, fc string) bool {
	if ShellCannotRunForceCommand(a.Shell, fc) == "" {
		return false
	}
	k := [2]string{a.Shell, fc}
	s[k] = append(s[k], a.Name)
	return true
}

func (s shellsByForceCommand) findings() []Finding {
	keys := make([][2]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) })
	var out []Finding
	for _, k := range keys {
		out = append(out, shellFinding(k[0], k[1], s[k]))
	}
	return out
}
