// Package doctor audits a host's otpgate setup: the sshd configuration as
// sshd itself resolves it (sshd -T), the PAM stacks, the store and the
// installed files. Each problem comes with the fix.
//
// The checks are pure functions of their inputs (sshd -T text, pam.d
// files, passwd and group files), so tests feed them fixtures; Run gathers
// the inputs from the host.
package doctor

import (
	"fmt"
	"sort"
	"strings"
)

// Finding is one problem, with what to do about it.
type Finding struct {
	Check   string `json:"check"`   // area: sshd, pam, files, users
	Context string `json:"context"` // where it applies: a file, or an sshd -C context
	Problem string `json:"problem"`
	Fix     string `json:"fix"`
}

func (f Finding) String() string {
	s := f.Check
	if f.Context != "" {
		s += " (" + f.Context + ")"
	}
	return fmt.Sprintf("%s: %s\n    fix: %s", s, f.Problem, f.Fix)
}

// Report is the outcome of a run: problems, and notes on what was checked.
type Report struct {
	Findings []Finding `json:"findings"`
	Checked  []string  `json:"checked"`
}

func (r *Report) add(f ...Finding) { r.Findings = append(r.Findings, f...) }

func (r *Report) note(format string, args ...any) {
	r.Checked = append(r.Checked, fmt.Sprintf(format, args...))
}

// dedupe drops repeated findings (the same sshd problem seen for several
// users) and sorts them.
func (r *Report) dedupe() {
	seen := map[string]bool{}
	out := r.Findings[:0]
	for _, f := range r.Findings {
		k := f.Check + "\x00" + f.Problem
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Check < out[j].Check })
	r.Findings = out
}

// SSHConfig is sshd -T output: lower-case keywords to their values, in
// order; keywords that repeat (acceptenv, subsystem) keep every value.
type SSHConfig map[string][]string

// ParseSSHDT reads the output of sshd -T.
func ParseSSHDT(out string) SSHConfig {
	c := SSHConfig{}
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		if k == "" {
			continue
		}
		c[strings.ToLower(k)] = append(c[strings.ToLower(k)], strings.TrimSpace(v))
	}
	return c
}

// Get returns the first value of keyword, or "".
func (c SSHConfig) Get(keyword string) string {
	if v := c[keyword]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// has reports whether keyword has value among its values (sshd -T
// prints one line per value of AcceptEnv and SetEnv).
func (c SSHConfig) has(keyword, value string) bool {
	for _, v := range c[keyword] {
		for _, f := range strings.Fields(v) {
			if f == value {
				return true
			}
		}
	}
	return false
}

// acceptsEnv reports whether an AcceptEnv pattern matches name.
func (c SSHConfig) acceptsEnv(name string) bool {
	for _, v := range c["acceptenv"] {
		for _, p := range strings.Fields(v) {
			if matchPattern(name, p) {
				return true
			}
		}
	}
	return false
}

// UsesSSHCheck reports whether ForceCommand runs otpgate sshcheck.
func (c SSHConfig) UsesSSHCheck() bool {
	fc := c.Get("forcecommand")
	return strings.Contains(fc, "otpgate") && strings.Contains(fc, "sshcheck")
}

// needsKbdInteractive reports whether every AuthenticationMethods list
// names keyboard-interactive: only then does each login pass through the
// PAM auth stack.
func (c SSHConfig) needsKbdInteractive() bool {
	am := c.Get("authenticationmethods")
	if am == "" || am == "any" {
		return false
	}
	for _, list := range strings.Fields(am) {
		if !strings.Contains(list, "keyboard-interactive") {
			return false
		}
	}
	return true
}

// CheckSSHD checks one resolved sshd configuration, given what doctor
// found in sshd's PAM service.
func CheckSSHD(c SSHConfig, context string, pam SSHDPAM) []Finding {
	var out []Finding
	add := func(problem, fix string) {
		out = append(out, Finding{Check: "sshd", Context: context, Problem: problem, Fix: fix})
	}
	pamHasOtpgate := pam.HasOtpgate
	if c.UsesSSHCheck() {
		if c.Get("disableforwarding") != "yes" {
			var open []string
			for _, k := range []struct{ key, off string }{
				{"allowtcpforwarding", "no"}, {"allowstreamlocalforwarding", "no"},
				{"permittunnel", "no"}, {"x11forwarding", "no"}, {"allowagentforwarding", "no"},
			} {
				if c.Get(k.key) != k.off {
					open = append(open, k.key+" "+c.Get(k.key))
				}
			}
			if len(open) > 0 {
				add("ForceCommand otpgate sshcheck without DisableForwarding yes: "+strings.Join(open, ", ")+"; ssh -N -L/-R/-D never runs the command, so forwarding works without a code",
					"add DisableForwarding yes to the Match block (see contrib/sshd_config.d/otpgate-forcecommand.conf)")
			}
		}
		if !c.has("setenv", "SHLVL=1") {
			add("ForceCommand otpgate sshcheck without SetEnv SHLVL=1: sshd runs the ForceCommand through the user's shell, and Debian's bash reads ~/.bashrc first, so whatever the user put there runs before the code is asked",
				"add SetEnv SHLVL=1 to the Match block (see contrib/sshd_config.d/otpgate-forcecommand.conf)")
		}
		if !c.acceptsEnv("OTPGATE_CODE") {
			add("AcceptEnv lacks OTPGATE_CODE: ssh host cmd, scp and sftp cannot send a code and are always refused",
				"add AcceptEnv OTPGATE_CODE (with LANG LC_*) to the Match block")
		}
		checkBeforeCode(c, pam, add)
	} else if c.Get("usepam") == "yes" && pamHasOtpgate && !c.needsKbdInteractive() {
		add("the sshd PAM stack runs pam_otpgate, but AuthenticationMethods is \""+c.Get("authenticationmethods")+"\": a public key (or GSSAPI) login never reaches PAM's auth stack and skips the code",
			"set AuthenticationMethods publickey,keyboard-interactive (see contrib/sshd_config.d/otpgate-pam.conf)")
	}
	checkFirstLoginSSHD(c, pam, add)
	if strings.Contains(c.Get("authenticationmethods"), "keyboard-interactive") && c.Get("kbdinteractiveauthentication") != "yes" {
		add("AuthenticationMethods needs keyboard-interactive but KbdInteractiveAuthentication is no: nobody can log in",
			"set KbdInteractiveAuthentication yes")
	}
	if c.needsKbdInteractive() && !c.UsesSSHCheck() {
		if c.Get("usepam") != "yes" {
			add("AuthenticationMethods needs keyboard-interactive but UsePAM is no: pam_otpgate is never asked",
				"set UsePAM yes")
		} else if !pamHasOtpgate {
			add("AuthenticationMethods relies on keyboard-interactive, but pam_otpgate is not in sshd's PAM auth stack: no code is asked",
				"add to /etc/pam.d/sshd: auth required pam_otpgate.so")
		}
	}
	return out
}
