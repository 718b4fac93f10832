package doctor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	passwdpkg "github.com/otpgate/otpgate/internal/passwd"
)

// sshdT holds the keywords of a default Debian sshd -T that matter here.
const debianT = `usepam yes
kbdinteractiveauthentication no
x11forwarding yes
permituserrc yes
allowtcpforwarding yes
allowagentforwarding yes
disableforwarding no
allowstreamlocalforwarding yes
forcecommand none
acceptenv LANG
acceptenv LC_*
authenticationmethods any
permittunnel no
permituserenvironment no
`

func with(base string, kv ...string) SSHConfig {
	c := ParseSSHDT(base)
	for i := 0; i < len(kv); i += 2 {
		c[kv[i]] = []string{kv[i+1]}
	}
	return c
}

func problems(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.Problem + "\n")
	}
	return b.String()
}

func TestCheckSSHD(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    SSHConfig
		pam  bool
		want []string // substrings, one per expected finding
	}{
		{"stock debian, no otpgate", with(debianT), false, nil},
		// PermitUserRC yes is not a finding: sshd never runs ~/.ssh/rc
		// under an administrator's ForceCommand.
		{"forcecommand without forwarding block", with(debianT, "forcecommand", "/usr/bin/otpgate sshcheck"), false,
			[]string{"without DisableForwarding yes: allowtcpforwarding yes", "without SetEnv SHLVL=1", "AcceptEnv lacks OTPGATE_CODE"}},
		{"forcecommand with the contrib block", with(debianT, "forcecommand", "/usr/bin/otpgate sshcheck", "disableforwarding", "yes", "permituserrc", "no", "setenv", "SHLVL=1", "acceptenv", "OTPGATE_CODE"), false, nil},
		{"forcecommand, each forwarding off by hand", with(debianT, "forcecommand", "/usr/bin/otpgate sshcheck", "allowtcpforwarding", "no",
			"allowstreamlocalforwarding", "no", "x11forwarding", "no", "allowagentforwarding", "no", "permituserrc", "no", "setenv", "SHLVL=1", "acceptenv", "OTPGATE_CODE"), false, nil},
		{"forcecommand with user environment", with(debianT, "forcecommand", "/usr/bin/otpgate sshcheck", "disableforwarding", "yes", "permituserrc", "no", "setenv", "SHLVL=1", "acceptenv", "OTPGATE_CODE", "permituserenvironment", "yes"), false,
			[]string{"PermitUserEnvironment yes: ~/.ssh/environment and environment= in authorized_keys set BASH_ENV"}},
		{"pam has otpgate but keys skip it", with(debianT, "kbdinteractiveauthentication", "yes"), true, []string{"never reaches PAM's auth stack"}},
		{"recommended pam route", with(debianT, "kbdinteractiveauthentication", "yes", "authenticationmethods", "publickey,keyboard-interactive"), true, nil},
		{"pam route, kbd-interactive off", with(debianT, "authenticationmethods", "publickey,keyboard-interactive"), true, []string{"KbdInteractiveAuthentication is no"}},
		{"pam route without the module", with(debianT, "kbdinteractiveauthentication", "yes", "authenticationmethods", "publickey,keyboard-interactive"), false, []string{"pam_otpgate is not in sshd's PAM auth stack"}},
		{"pam route, UsePAM off", with(debianT, "usepam", "no", "kbdinteractiveauthentication", "yes", "authenticationmethods", "publickey,keyboard-interactive"), true, []string{"UsePAM is no"}},
		{"one list without kbd-interactive", with(debianT, "kbdinteractiveauthentication", "yes", "authenticationmethods", "publickey,keyboard-interactive publickey"), true, []string{"never reaches PAM's auth stack"}},
	} {
		got := CheckSSHD(tc.c, "test", SSHDPAM{HasOtpgate: tc.pam})
		if len(got) != len(tc.want) {
			t.Errorf("%s: %d findings, want %d:\n%s", tc.name, len(got), len(tc.want), problems(got))
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(got[i].Problem, w) || got[i].Fix == "" {
				t.Errorf("%s: finding %d = %q (fix %q), want it to say %q", tc.name, i, got[i].Problem, got[i].Fix, w)
			}
		}
	}
}

func TestAuthStack(t *testing.T) {
	stack, err := AuthStack("testdata/pam.d", "sshd")
	if err != nil {
		t.Fatal(err)
	}
	var mods []string
	for _, l := range stack {
		mods = append(mods, l.Module+" "+l.Control)
	}
	want := "pam_unix.so [success=1 default=ignore]|pam_deny.so requisite|pam_permit.so required|pam_otpgate.so required"
	if got := strings.Join(mods, "|"); got != want {
		t.Errorf("sshd stack:\n got %s\nwant %s", got, want)
	}
	if !HasOtpgate(stack) || len(CheckPAM("sshd", stack)) != 0 {
		t.Errorf("sshd stack: HasOtpgate=%v findings:\n%s", HasOtpgate(stack), problems(CheckPAM("sshd", stack)))
	}
	stack, err = AuthStack("testdata/pam.d", "sudo")
	if err != nil {
		t.Fatal(err)
	}
	got := problems(CheckPAM("sudo", stack))
	for _, w := range []string{"pam_otpgate is optional", "pam_rootok.so (sufficient) can end the stack"} {
		if !strings.Contains(got, w) {
			t.Errorf("sudo findings lack %q:\n%s", w, got)
		}
	}
	if _, err := AuthStack("testdata/pam.d", "loop"); err == nil {
		t.Error("an include loop was followed forever")
	}
}

func TestGroupMembers(t *testing.T) {
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	group := filepath.Join(dir, "group")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\nbob:x:1001:27::/home/bob:/bin/bash\nsvc:x:999:999::/:/usr/sbin/nologin\n"), 0o644)
	os.WriteFile(group, []byte("sudo:x:27:alice\nalice:x:1000:\n"), 0o644)
	accts, err := passwdpkg.ReadAll(passwd)
	if err != nil || len(accts) != 4 || accts[3].CanLogIn() || !accts[1].CanLogIn() {
		t.Fatalf("ReadAll: %+v %v", accts, err)
	}
	m, err := GroupMembers(group, accts, "sudo")
	if err != nil || strings.Join(m, ",") != "alice,bob" {
		t.Errorf("sudo members %v %v, want alice (listed) and bob (primary group)", m, err)
	}
}

func TestFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the files checks want root-owned paths")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	helper := filepath.Join(dir, "otpgate-helper")
	os.WriteFile(helper, []byte("#!/bin/sh\n"), 0o755)
	if got := CheckHelper(helper); len(got) != 0 {
		t.Errorf("helper 0755: %s", problems(got))
	}
	os.Chmod(helper, os.ModeSetuid|0o755)
	if got := problems(CheckHelper(helper)); !strings.Contains(got, "refuses to run setuid") {
		t.Errorf("helper 4755: %s", got)
	}
	launcher := filepath.Join(dir, LauncherName)
	if got := problems(CheckHelper(launcher)); !strings.Contains(got, "the launcher is missing") {
		t.Errorf("missing launcher: %s", got)
	}
	os.WriteFile(launcher, []byte("#!/bin/sh\n"), 0o755)
	if got := problems(CheckHelper(launcher)); !strings.Contains(got, "the launcher is not setuid") {
		t.Errorf("launcher 0755: %s", got)
	}
	os.Chmod(launcher, os.ModeSetuid|0o755)
	if got := CheckHelper(launcher); len(got) != 0 {
		t.Errorf("launcher 4755: %s", problems(got))
	}
	os.Chmod(launcher, os.ModeSetuid|0o777)
	if got := problems(CheckHelper(launcher)); !strings.Contains(got, "someone other than root can replace it") {
		t.Errorf("launcher 4777: %s", got)
	}
	if got := problems(CheckHelper(filepath.Join(dir, "missing"))); !strings.Contains(got, "missing") {
		t.Errorf("missing helper: %s", got)
	}
	store := filepath.Join(dir, "store")
	os.MkdirAll(filepath.Join(store, "users"), 0o700)
	os.WriteFile(filepath.Join(store, "users", "alice.toml"), []byte("x"), 0o644)
	os.Chmod(store, 0o777)
	got := problems(CheckStore(store))
	for _, w := range []string{"others can write it", "mode 0644"} {
		if !strings.Contains(got, w) {
			t.Errorf("store findings lack %q:\n%s", w, got)
		}
	}
}

// TestRealSSHD runs the whole audit against a real sshd -T with a
// throwaway sshd_config that uses the ForceCommand route for one group.
func TestRealSSHD(t *testing.T) {
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
	}
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
	passwd := filepath.Join(dir, "passwd")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644)
	conf := filepath.Join(dir, "sshd_config")
	write := func(body string) {
		if err := os.WriteFile(conf, []byte("HostKey "+key+"\nUsePAM yes\n"+body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	opts := Options{ConfigPath: filepath.Join(dir, "none.toml"), SSHD: sshd, SSHDConfig: conf, PAMDir: filepath.Join(dir, "pam.d"), Passwd: passwd, Group: "/etc/group"}

	write("Match User root\n  ForceCommand /usr/bin/otpgate sshcheck\n")
	r := Run(opts)
	got := problems(r.Findings)
	for _, w := range []string{"without DisableForwarding yes", "root (sshd ForceCommand otpgate sshcheck) is not enrolled"} {
		if !strings.Contains(got, w) {
			t.Errorf("lacking the block: findings lack %q:\n%s", w, got)
		}
	}
	if strings.Contains(got, "PermitUserRC") {
		t.Errorf("lacking the block: PermitUserRC flagged, but sshd never runs ~/.ssh/rc under a ForceCommand:\n%s", got)
	}
	// The contrib block itself, for root instead of group otpgate.
	block, err := os.ReadFile("../../contrib/sshd_config.d/otpgate-forcecommand.conf")
	if err != nil {
		t.Fatal(err)
	}
	write(strings.Replace(string(block), "Match Group otpgate", "Match User root", 1))
	r = Run(opts)
	for _, f := range r.Findings {
		if f.Check == "sshd" {
			t.Errorf("with the contrib block: %s", f)
		}
	}
}

// TestContribPAMConf audits contrib/sshd_config.d/otpgate-pam.conf with
// a real sshd -T: with pam_otpgate in the stack it must be clean, and
// without it doctor must say that no code is asked.
func TestContribPAMConf(t *testing.T) {
	sshd := "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil || os.Geteuid() != 0 {
		if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" && os.Geteuid() == 0 {
			t.Fatal("sshd (openssh-server) is missing")
		}
		t.Skip("needs root and openssh-server")
	}
	os.MkdirAll("/run/sshd", 0o755)
	contrib, err := filepath.Abs("../../contrib/sshd_config.d/otpgate-pam.conf")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "hostkey")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	conf := filepath.Join(dir, "sshd_config")
	os.WriteFile(conf, []byte("Include "+contrib+"\nHostKey "+key+"\n"), 0o600)
	pamd := filepath.Join(dir, "pam.d")
	os.Mkdir(pamd, 0o755)
	passwd := filepath.Join(dir, "passwd")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644)
	opts := Options{ConfigPath: filepath.Join(dir, "none.toml"), SSHDConfig: conf, PAMDir: pamd, Passwd: passwd, Group: "/etc/group"}

	os.WriteFile(filepath.Join(pamd, "sshd"), []byte("auth required pam_otpgate.so\n"), 0o644)
	r := Run(opts)
	for _, f := range r.Findings {
		if f.Check == "sshd" || f.Check == "pam" {
			t.Errorf("contrib PAM route, module in the stack: %s", f)
		}
	}
	if !strings.Contains(problems(r.Findings), "root (sshd keyboard-interactive with pam_otpgate) is not enrolled") {
		t.Errorf("root is protected by the contrib block but not reported unenrolled:\n%s", problems(r.Findings))
	}

	os.WriteFile(filepath.Join(pamd, "sshd"), []byte("@include common-auth\n"), 0o644)
	os.WriteFile(filepath.Join(pamd, "common-auth"), []byte("auth required pam_unix.so\n"), 0o644)
	if got := problems(Run(opts).Findings); !strings.Contains(got, "pam_otpgate is not in sshd's PAM auth stack") {
		t.Errorf("contrib PAM route without the module: %s", got)
	}
}
