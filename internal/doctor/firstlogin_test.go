package doctor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// writeStacks writes a pam.d directory with Debian 12's common-auth and
// the given files.
func writeStacks(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	common, err := os.ReadFile("testdata/debian12/common-auth")
	if err != nil {
		t.Fatal(err)
	}
	files["common-auth"] = string(common)
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestCheckFirstLogin: first_login on a stack is flagged unless a password
// check that ends the stack comes before pam_otpgate.
func TestCheckFirstLogin(t *testing.T) {
	const otp = "auth required pam_otpgate.so first_login\n"
	for _, tc := range []struct {
		name, stack string
		flagged     bool
	}{
		{"requisite pam_unix", "auth requisite pam_unix.so\n" + otp, false},
		{"Debian common-auth", "@include common-auth\n" + otp, false},
		{"default=die", "auth [success=ok default=die] pam_sss.so\n" + otp, false},
		{"required pam_unix: goes on after a wrong password", "auth required pam_unix.so\n" + otp, true},
		{"otpgate alone", otp, true},
		{"password module after otpgate", otp + "auth requisite pam_unix.so\n", true},
		{"pam_deny without a password module", "auth requisite pam_deny.so\n" + otp, true},
		{"no first_login", "auth required pam_otpgate.so\n", false},
	} {
		dir := writeStacks(t, map[string]string{"sudo": tc.stack})
		stack, err := AuthStack(dir, "sudo")
		if err != nil {
			t.Fatal(err)
		}
		got := CheckFirstLogin("sudo", stack)
		if flagged := len(got) > 0; flagged != tc.flagged {
			t.Errorf("%s: flagged=%v, want %v:\n%s", tc.name, flagged, tc.flagged, problems(got))
			continue
		}
		if tc.flagged && (!strings.Contains(got[0].Problem, "first_login") || got[0].Fix == "" || !strings.Contains(got[0].Context, "sudo:")) {
			t.Errorf("%s: finding %+v", tc.name, got[0])
		}
	}
	// sshd's stack is judged with sshd's configuration, not here.
	dir := writeStacks(t, map[string]string{"sshd": otp})
	stack, _ := AuthStack(dir, "sshd")
	if got := CheckFirstLogin("sshd", stack); len(got) != 0 {
		t.Errorf("sshd flagged by the stack check: %s", problems(got))
	}
	if len(FirstLoginWithoutPassword(stack)) != 1 {
		t.Error("sshd's first_login line without a password was not found")
	}
}

// TestFirstLoginSSHDConfig: on sshd's stack, first_login needs a public
// key before keyboard-interactive in every AuthenticationMethods list.
func TestFirstLoginSSHDConfig(t *testing.T) {
	fl := SSHDPAM{HasOtpgate: true, FirstLogin: []PAMLine{{File: "/etc/pam.d/sshd", Line: 1, Module: "pam_otpgate.so", Args: []string{"first_login"}}}}
	const flagged = "keyboard-interactive runs without a public key first"
	for _, tc := range []struct {
		name string
		am   string
		want bool
	}{
		{"key then code", "publickey,keyboard-interactive", false},
		{"key then code, with a submethod", "publickey,keyboard-interactive:pam", false},
		{"code alone", "keyboard-interactive", true},
		{"one list without the key", "publickey,keyboard-interactive keyboard-interactive", true},
		{"code before key", "keyboard-interactive,publickey", true},
		{"any", "any", true},
	} {
		c := with(debianT, "kbdinteractiveauthentication", "yes", "authenticationmethods", tc.am)
		got := problems(CheckSSHD(c, "test", fl))
		if strings.Contains(got, flagged) != tc.want {
			t.Errorf("%s: flagged=%v, want %v:\n%s", tc.name, !tc.want, tc.want, got)
		}
		// Without first_login, or with a password checked in the stack
		// (FirstLogin empty): never this finding.
		if got := problems(CheckSSHD(c, "test", SSHDPAM{HasOtpgate: true})); strings.Contains(got, flagged) {
			t.Errorf("%s: flagged without first_login:\n%s", tc.name, got)
		}
	}
	// keyboard-interactive off: PAM's conversation never runs that way.
	if got := problems(CheckSSHD(with(debianT, "authenticationmethods", "keyboard-interactive"), "test", fl)); strings.Contains(got, flagged) {
		t.Errorf("kbd-interactive off, flagged:\n%s", got)
	}
}

// TestFirstLoginRealSSHD: doctor's whole run, with a real sshd -T, on
// the contrib PAM route: first_login is clean behind the key and flagged
// when sshd asks for keyboard-interactive alone.
func TestFirstLoginRealSSHD(t *testing.T) {
	sshd := "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil || os.Geteuid() != 0 {
		if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" && os.Geteuid() == 0 {
			t.Fatal("sshd (openssh-server) is missing")
		}
		t.Skip("needs root and openssh-server")
	}
	os.MkdirAll("/run/sshd", 0o755)
	dir := t.TempDir()
	key := filepath.Join(dir, "hostkey")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	contrib, err := filepath.Abs("../../contrib/sshd_config.d/otpgate-pam.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "sshd_config")
	pamd := writeStacks(t, map[string]string{"sshd": "auth required pam_otpgate.so first_login\n"})
	passwd := filepath.Join(dir, "passwd")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644)
	opts := Options{ConfigPath: filepath.Join(dir, "none.toml"), SSHDConfig: conf, PAMDir: pamd, Passwd: passwd, Group: "/etc/group"}
	const flagged = "pam_otpgate has first_login"

	os.WriteFile(conf, []byte("Include "+contrib+"\nHostKey "+key+"\n"), 0o600)
	if got := problems(Run(opts).Findings); strings.Contains(got, flagged) {
		t.Errorf("contrib key-then-code route flagged:\n%s", got)
	}
	os.WriteFile(conf, []byte("HostKey "+key+"\nUsePAM yes\nKbdInteractiveAuthentication yes\nAuthenticationMethods keyboard-interactive\n"), 0o600)
	if got := problems(Run(opts).Findings); !strings.Contains(got, flagged) {
		t.Errorf("keyboard-interactive alone with first_login not flagged:\n%s", got)
	}
}
