package doctor

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// The pam.d argument first_login offers a user with no secret a new one
// inside the login. It is the administrator's statement that a first
// factor was checked before pam_otpgate on that stack; these checks flag
// the stacks where doctor sees none.

// passwordModules are the auth modules that check a password.
var passwordModules = []string{"pam_unix", "pam_sss", "pam_ldap", "pam_krb5", "pam_winbind", "pam_userdb"}

func moduleName(l PAMLine) string {
	return strings.TrimSuffix(filepath.Base(l.Module), ".so")
}

// dies reports whether a control ends the stack at once on failure:
// requisite, or a bracket control with default=die.
func dies(control string) bool {
	return control == "requisite" || (strings.HasPrefix(control, "[") && slices.Contains(strings.Fields(strings.Trim(control, "[]")), "default=die"))
}

// passwordFirst reports whether the rules before pam_otpgate end the stack
// when the password is wrong: a password module that is requisite (or
// [... default=die]), or one with a bracket control followed by a
// requisite pam_deny (Debian's common-auth: success jumps over it). A
// required password module is not enough: the stack goes on to
// pam_otpgate after a wrong password and fails only at its end, after a
// secret would have been saved.
func passwordFirst(before []PAMLine) bool {
	jump := false
	for _, l := range before {
		name := moduleName(l)
		switch {
		case slices.Contains(passwordModules, name) && dies(l.Control):
			return true
		case slices.Contains(passwordModules, name) && strings.HasPrefix(l.Control, "["):
			jump = true
		case jump && name == "pam_deny" && dies(l.Control):
			return true
		}
	}
	return false
}

// FirstLoginWithoutPassword returns the pam_otpgate rules of an auth
// stack that carry first_login and have no password check before them
// that ends the stack (see passwordFirst).
func FirstLoginWithoutPassword(stack []PAMLine) []PAMLine {
	var out []PAMLine
	for i, l := range stack {
		if l.IsOtpgate() && slices.Contains(l.Args, "first_login") && !passwordFirst(stack[:i]) {
			out = append(out, l)
		}
	}
	return out
}

// CheckFirstLogin flags first_login on a stack other than sshd's that has
// no first factor doctor can see. sshd's stack is checked against sshd's
// configuration (CheckSSHD): there a public key before
// keyboard-interactive is the first factor.
func CheckFirstLogin(service string, stack []PAMLine) []Finding {
	if service == "sshd" {
		return nil
	}
	var out []Finding
	for _, l := range FirstLoginWithoutPassword(stack) {
		out = append(out, Finding{Check: "pam", Context: l.Where(),
			Problem: fmt.Sprintf("%s: pam_otpgate has first_login, but no password module above it ends the stack on a wrong password: whoever reaches %s is offered a new secret for an account that has none", service, service),
			Fix:     "put auth requisite pam_unix.so above pam_otpgate (a required one is not enough), or remove first_login"})
	}
	return out
}

// keyBeforeKbd reports whether every AuthenticationMethods list that
// runs keyboard-interactive has a public key (or host-based or GSSAPI)
// method before it, so that PAM's auth stack is reached only after one.
func (c SSHConfig) keyBeforeKbd() bool {
	if c.Get("kbdinteractiveauthentication") != "yes" {
		return true // keyboard-interactive never runs
	}
	am := c.Get("authenticationmethods")
	if am == "" || am == "any" {
		return false
	}
	for _, list := range strings.Fields(am) {
		keyed := false
		for _, m := range strings.Split(list, ",") {
			switch name, _, _ := strings.Cut(m, ":"); name {
			case "publickey", "hostbased", "gssapi-with-mic":
				keyed = true
			case "keyboard-interactive":
				if !keyed {
					return false
				}
			}
		}
	}
	return true
}

// checkFirstLoginSSHD flags first_login on sshd's stack when the stack
// checks no password and sshd lets keyboard-interactive run without a key.
func checkFirstLoginSSHD(c SSHConfig, pam SSHDPAM, add func(problem, fix string)) {
	if len(pam.FirstLogin) == 0 || c.UsesSSHCheck() || c.Get("usepam") != "yes" || c.keyBeforeKbd() {
		return
	}
	add(fmt.Sprintf("pam_otpgate has first_login (%s), but AuthenticationMethods is %q: keyboard-interactive runs without a public key first and the stack checks no password, so anyone who knows the name of an account without a secret can set one up",
		pam.FirstLogin[0].Where(), c.Get("authenticationmethods")),
		"set AuthenticationMethods publickey,keyboard-interactive, or put auth requisite pam_unix.so above pam_otpgate, or remove first_login")
}
