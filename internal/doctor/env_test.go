package doctor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sshcheckBlock is a resolved configuration with the contrib block's
// settings, to which each case below adds one way around it.
var sshcheckBlock = []string{"forcecommand", "/usr/bin/otpgate sshcheck", "disableforwarding", "yes", "permituserrc", "no", "setenv", "SHLVL=1", "acceptenv", "LANG LC_* OTPGATE_CODE"}

func block(kv ...string) SSHConfig {
	return with(debianT, append(append([]string(nil), sshcheckBlock...), kv...)...)
}

// debianReadenv is the session rule of Debian 12's stock /etc/pam.d/sshd.
var debianReadenv = PAMLine{File: "/etc/pam.d/sshd", Line: 47, Type: "session", Control: "required", Module: "pam_env.so", Args: []string{"user_readenv=1", "envfile=/etc/default/locale"}}

func TestCheckBeforeCode(t *testing.T) {
	readenv := SSHDPAM{UserEnv: []PAMLine{debianReadenv}}
	for _, tc := range []struct {
		name string
		c    SSHConfig
		pam  SSHDPAM
		want []string // substrings, one per expected finding
	}{
		{"the contrib block", block(), SSHDPAM{}, nil},
		{"the contrib block, PermitUserRC yes", block("permituserrc", "yes"), SSHDPAM{}, nil},
		{"pam_env user_readenv", block(), readenv, []string{"reads the user's ~/.pam_environment (/etc/pam.d/sshd:47: pam_env.so user_readenv)"}},
		{"pam_env user_readenv, UsePAM no", block("usepam", "no"), readenv, nil},
		{"pam_env user_readenv, PAM route", with(debianT, "kbdinteractiveauthentication", "yes", "authenticationmethods", "publickey,keyboard-interactive"), SSHDPAM{HasOtpgate: true, UserEnv: readenv.UserEnv}, nil},
		{"pam_env user_envfile", block(), SSHDPAM{UserEnv: []PAMLine{{File: "x", Line: 1, Module: "pam_env.so", Args: []string{"user_readenv=1", "user_envfile=.env"}}}}, []string{"reads the user's ~/.env (x:1"}},
		{"PermitUserEnvironment yes", block("permituserenvironment", "yes"), SSHDPAM{}, []string{"PermitUserEnvironment yes: ~/.ssh/environment and environment= in authorized_keys"}},
		{"PermitUserEnvironment harmless list", block("permituserenvironment", "TZ,LANG"), SSHDPAM{}, nil},
		{"PermitUserEnvironment LD_*", block("permituserenvironment", "TZ,LD_*"), SSHDPAM{}, []string{"PermitUserEnvironment TZ,LD_* lets ~/.ssh/environment and environment= in authorized_keys set LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT in"}},
		{"PermitUserEnvironment all but the dangerous", block("permituserenvironment", "*,!BASH_ENV,!ENV,!SHELLOPTS,!BASHOPTS,!PS4,!BASH_FUNC_*,!ZDOTDIR,!LD_*,!GCONV_PATH"), SSHDPAM{}, nil},
		{"PermitUserEnvironment all but BASH_ENV", block("permituserenvironment", "*,!BASH_ENV"), SSHDPAM{}, []string{"set ENV, SHELLOPTS, BASHOPTS, PS4, BASH_FUNC_*, ZDOTDIR, LD_PRELOAD"}},
		{"AcceptEnv BASH_ENV", block("acceptenv", "LANG LC_* OTPGATE_CODE BASH_ENV"), SSHDPAM{}, []string{"AcceptEnv BASH_ENV lets the client set variables that the shell running otpgate sshcheck acts on (BASH_ENV: bash runs the file it names, after expanding it: BASH_ENV='$(cmd)' runs cmd): with the key alone"}},
		{"AcceptEnv *", block("acceptenv", "*"), SSHDPAM{}, []string{"AcceptEnv * lets the client set"}},
		{"AcceptEnv LD_* and ENV", block("acceptenv", "LANG LD_* ENV OTPGATE_CODE"), SSHDPAM{}, []string{"AcceptEnv LD_* ENV lets"}},
		{"AcceptEnv harmless", block("acceptenv", "LANG LC_* OTPGATE_CODE TZ GIT_PROTOCOL COLORTERM"), SSHDPAM{}, nil},
		{"everything at once", block("acceptenv", "B* OTPGATE_CODE", "permituserenvironment", "yes"), readenv, []string{"~/.pam_environment", "PermitUserEnvironment yes", "AcceptEnv B* lets"}},
	} {
		got := CheckSSHD(tc.c, "test", tc.pam)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %d findings, want %d:\n%s", tc.name, len(got), len(tc.want), problems(got))
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(got[i].Problem, w) || got[i].Fix == "" || got[i].Context != "test" {
				t.Errorf("%s: finding %d = %q (fix %q, context %q), want it to say %q", tc.name, i, got[i].Problem, got[i].Fix, got[i].Context, w)
			}
		}
	}
}

func TestMatchPattern(t *testing.T) {
	for _, tc := range []struct {
		s, pattern string
		want       bool
	}{
		{"BASH_ENV", "BASH_ENV", true},
		{"BASH_ENV", "BASH_EN", false},
		{"BASH_ENV", "*", true},
		{"", "*", true},
		{"", "?", false},
		{"LD_PRELOAD", "LD_*", true},
		{"LD_PRELOAD", "LD_P?ELOAD", true},
		{"LD_PRELOAD", "*LOAD", true},
		{"LD_PRELOAD", "*LOA", false},
		{"LC_ALL", "LC_*", true},
		{"BASH_FUNC_otpgate%%", "BASH_FUNC_*", true},
		{"BASH_FUNC_otpgate%%", "B*_*%%", true},
		{"ENV", "BASH_ENV", false},
		{"BASH_ENV", "bash_env", false}, // environment names are case-sensitive
	} {
		if got := matchPattern(tc.s, tc.pattern); got != tc.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", tc.s, tc.pattern, got, tc.want)
		}
	}
	for _, tc := range []struct {
		s, list string
		want    int
	}{
		{"LD_PRELOAD", "TZ,LD_*", 1},
		{"LD_PRELOAD", "*,!LD_*", -1},
		{"LD_PRELOAD", "!LD_*,*", -1},
		{"TZ", "*,!LD_*", 1},
		{"TZ", "LANG", 0},
	} {
		if got := matchPatternList(tc.s, tc.list); got != tc.want {
			t.Errorf("matchPatternList(%q, %q) = %d, want %d", tc.s, tc.list, got, tc.want)
		}
	}
}

// TestUserEnvRules reads Debian 12's stock /etc/pam.d/sshd (and the
// common-* files it includes, copied from openssh-server 1:9.2p1-2 and
// libpam-runtime 1.5.2-6) and variations of it.
func TestUserEnvRules(t *testing.T) {
	st, err := Stack("testdata/debian12", "sshd", "auth", "session")
	if err != nil {
		t.Fatal(err)
	}
	got := UserEnvRules(st)
	if len(got) != 1 || got[0].Where() != "testdata/debian12/sshd:47" || got[0].Type != "session" || userEnvFile(got[0]) != "~/.pam_environment" {
		t.Fatalf("Debian's sshd stack: user_readenv rules %+v, want the one at sshd:47", got)
	}
	// The same file must not show up in the auth stack alone, and the
	// auth stack is still what AuthStack returns.
	auth, err := AuthStack("testdata/debian12", "sshd")
	if err != nil || len(UserEnvRules(auth)) != 0 || len(auth) != 4 || auth[0].Module != "pam_unix.so" {
		t.Fatalf("Debian's sshd auth stack: %+v %v", auth, err)
	}

	dir := t.TempDir()
	files := map[string]string{
		"sshd":           "@include common-session\nsession include sess2\n-session optional pam_env.so user_readenv=0\nauth substack auth2\naccount include acct\n",
		"common-session": "session optional pam_env.so user_readenv=1\n",
		"sess2":          "session required pam_env.so user_readenv=2x\nauth required pam_env.so user_readenv=1\n",
		"auth2":          "auth [success=ok default=bad] /lib/security/pam_env.so readenv=1 user_readenv=1\n",
		"acct":           "account required pam_env.so user_readenv=1\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st, err = Stack(dir, "sshd", "auth", "session")
	if err != nil {
		t.Fatal(err)
	}
	var where []string
	for _, l := range UserEnvRules(st) {
		where = append(where, filepath.Base(l.File)+":"+l.Type)
	}
	// common-session through @include; sess2's session rule through
	// session include (not its auth rule); auth2 through auth substack;
	// not user_readenv=0, not the account stack.
	if got, want := strings.Join(where, " "), "common-session:session sess2:session auth2:auth"; got != want {
		t.Errorf("user_readenv rules: %s, want %s", got, want)
	}
}

func TestShellCannotRunForceCommand(t *testing.T) {
	const fc = "/usr/local/bin/otpgate sshcheck"
	for _, tc := range []struct {
		shell, fc, want string // want: a substring of the reason, "" for none
	}{
		{"/bin/bash", fc, ""},
		{"/usr/bin/zsh", fc, ""},
		{"", fc, ""},
		{"/usr/bin/git-shell", fc, "fatal: unrecognized command"},
		{"/usr/bin/git-shell", "otpgate sshcheck", "fatal: unrecognized command"},
		{"/usr/sbin/nologin", fc, "This account is currently not available."},
		{"/sbin/nologin", fc, "This account is currently not available."},
		{"/bin/false", fc, "exits without running anything"},
		{"/bin/rbash", fc, "cannot specify `/' in command names"},
		{"/bin/rbash", "otpgate sshcheck --timeout 30s", ""},
		{"/usr/bin/rssh", fc, "only scp"},
	} {
		got := ShellCannotRunForceCommand(tc.shell, tc.fc)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("ShellCannotRunForceCommand(%q, %q) = %q, want %q", tc.shell, tc.fc, got, tc.want)
		}
	}
}

// realSSHD returns sshd and a new host key, or skips the test (failing
// it under OTPGATE_REQUIRE_TOOLS as root).
func realSSHD(t *testing.T) (sshd, hostKey string) {
	t.Helper()
	sshd = "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil || os.Geteuid() != 0 {
		if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" && os.Geteuid() == 0 {
			t.Fatal("sshd (openssh-server) is missing")
		}
		t.Skip("needs root and openssh-server")
	}
	os.MkdirAll("/run/sshd", 0o755)
	hostKey = filepath.Join(t.TempDir(), "hostkey")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	return sshd, hostKey
}

// contribBlock is the contrib ForceCommand block with its Match line
// replaced by match, after edit (old, new pairs) is applied.
func contribBlock(t *testing.T, match string, edit ...string) string {
	t.Helper()
	b, err := os.ReadFile("../../contrib/sshd_config.d/otpgate-forcecommand.conf")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(b), "Match Group otpgate", match, 1)
	for i := 0; i < len(edit); i += 2 {
		if !strings.Contains(text, edit[i]) {
			t.Fatalf("the contrib block has no %q", edit[i])
		}
		text = strings.Replace(text, edit[i], edit[i+1], 1)
	}
	return text
}

// TestRealSSHDBeforeCode audits, through a real sshd -T, the contrib block
// with each way around it that doctor knows, and Debian 12's stock PAM
// service (testdata/debian12, user_readenv=1).
func TestRealSSHDBeforeCode(t *testing.T) {
	sshd, key := realSSHD(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sshd_config")
	passwd := filepath.Join(dir, "passwd")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644)
	noReadenv := filepath.Join(dir, "pam.d")
	os.Mkdir(noReadenv, 0o755)
	for _, f := range []string{"sshd", "common-auth", "common-account", "common-session", "common-password"} {
		b, err := os.ReadFile(filepath.Join("testdata/debian12", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(noReadenv, f), []byte(strings.Replace(string(b), " user_readenv=1", "", 1)), 0o644)
	}
	debian, _ := filepath.Abs("testdata/debian12")
	audit := func(name, global, pamDir string, want ...string) {
		t.Helper()
		cfg := "HostKey " + key + "\n" + global + contribBlock(t, "Match User root")
		if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(sshd, "-t", "-f", conf).CombinedOutput(); err != nil {
			t.Fatalf("%s: sshd -t: %v %s", name, err, out)
		}
		r := Run(Options{ConfigPath: filepath.Join(dir, "none.toml"), SSHD: sshd, SSHDConfig: conf, PAMDir: pamDir, Passwd: passwd, Group: "/etc/group"})
		var got []Finding
		for _, f := range r.Findings {
			if f.Check == "sshd" {
				got = append(got, f)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d sshd findings, want %d:\n%s", name, len(got), len(want), problems(got))
			return
		}
		for i, w := range want {
			if !strings.Contains(got[i].Problem, w) || !strings.Contains(got[i].Context, "user=root") {
				t.Errorf("%s: finding %d = %s, want it to say %q for user=root", name, i, got[i], w)
			}
		}
	}
	audit("the block, PAM without user_readenv", "UsePAM yes\n", noReadenv)
	audit("the block, Debian's stock PAM", "UsePAM yes\n", debian, "reads the user's ~/.pam_environment ("+debian+"/sshd:47: pam_env.so user_readenv)")
	audit("the block, Debian's stock PAM, UsePAM no", "UsePAM no\n", debian)
	// Global: sshd -T without -C sees no ForceCommand, so only the
	// user=root context reports it.
	audit("the block, PermitUserEnvironment yes", "UsePAM yes\nPermitUserEnvironment yes\n", noReadenv, "PermitUserEnvironment yes")
	// The block's AcceptEnv replaces a global one.
	audit("the block, global AcceptEnv *", "UsePAM yes\nAcceptEnv *\n", noReadenv)
	audit("the block, PermitUserRC yes", "UsePAM yes\nPermitUserRC yes\n", noReadenv)

	// Edited blocks.
	for _, tc := range []struct {
		name string
		edit []string
		want []string
	}{
		{"AcceptEnv BASH_ENV in the block", []string{"AcceptEnv LANG LC_* OTPGATE_CODE", "AcceptEnv LANG LC_* OTPGATE_CODE BASH_ENV"}, []string{"AcceptEnv BASH_ENV lets the client"}},
		{"PermitUserRC yes in the block", []string{"PermitUserRC no", "PermitUserRC yes"}, nil},
	} {
		cfg := "HostKey " + key + "\nUsePAM yes\n" + contribBlock(t, "Match User root", tc.edit...)
		os.WriteFile(conf, []byte(cfg), 0o600)
		if out, err := exec.Command(sshd, "-t", "-f", conf).CombinedOutput(); err != nil {
			t.Fatalf("%s: sshd -t: %v %s", tc.name, err, out)
		}
		var sshdFindings []Finding
		for _, f := range Run(Options{ConfigPath: filepath.Join(dir, "none.toml"), SSHD: sshd, SSHDConfig: conf, PAMDir: noReadenv, Passwd: passwd, Group: "/etc/group"}).Findings {
			if f.Check == "sshd" {
				sshdFindings = append(sshdFindings, f)
			}
		}
		got := problems(sshdFindings)
		if len(sshdFindings) != len(tc.want) {
			t.Errorf("%s: want %d sshd findings:\n%s", tc.name, len(tc.want), got)
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: findings lack %q:\n%s", tc.name, w, got)
			}
		}
	}
}

// TestRealSSHDShells: accounts in the Match block whose shell cannot run
// the ForceCommand are reported, once per shell; so are accounts without
// a login shell; an rbash account is not when its own block names
// otpgate without a directory; accounts outside the block are not.
func TestRealSSHDShells(t *testing.T) {
	sshd, key := realSSHD(t)
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	os.WriteFile(passwd, []byte(`root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
gitty:x:2001:2001::/srv/git:/usr/bin/git-shell
gitty2:x:2002:2002::/srv/git2:/usr/bin/git-shell
sftponly:x:2003:2003::/srv/sftp:/usr/sbin/nologin
rb:x:2004:2004::/home/rb:/bin/rbash
rb2:x:2005:2005::/home/rb2:/bin/rbash
gitout:x:2006:2006::/srv/gitout:/usr/bin/git-shell
`), 0o644)
	conf := filepath.Join(dir, "sshd_config")
	cfg := "HostKey " + key + "\nUsePAM no\n" +
		"Match User rb2\n\tForceCommand otpgate sshcheck\n\tDisableForwarding yes\n\tSetEnv SHLVL=1\n\tAcceptEnv LANG LC_* OTPGATE_CODE\n" +
		contribBlock(t, "Match User root,gitty,gitty2,sftponly,rb")
	os.WriteFile(conf, []byte(cfg), 0o600)
	if out, err := exec.Command(sshd, "-t", "-f", conf).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t: %v %s", err, out)
	}
	r := Run(Options{ConfigPath: filepath.Join(dir, "none.toml"), SSHD: sshd, SSHDConfig: conf, PAMDir: filepath.Join(dir, "pam.d"), Passwd: passwd, Group: "/etc/group"})
	var shells []string
	for _, f := range r.Findings {
		if strings.Contains(f.Problem, "cannot pass otpgate sshcheck") {
			shells = append(shells, f.Problem)
			if !strings.Contains(f.Fix, "PAM route") {
				t.Errorf("the fix does not name the PAM route: %s", f)
			}
		}
	}
	want := []string{
		"login shell is /bin/rbash cannot pass otpgate sshcheck: sshd runs the ForceCommand as `rbash -c '/usr/local/bin/otpgate sshcheck'`, and rbash refuses a command name with a slash",
		"login shell is /usr/bin/git-shell cannot pass otpgate sshcheck: sshd runs the ForceCommand as `git-shell -c '/usr/local/bin/otpgate sshcheck'`, and git-shell runs only git's own commands",
		"login shell is /usr/sbin/nologin cannot pass otpgate sshcheck",
	}
	wantUsers := []string{": rb", ": gitty, gitty2", ": sftponly"}
	if len(shells) != len(want) {
		t.Fatalf("%d shell findings, want %d:\n%s", len(shells), len(want), problems(r.Findings))
	}
	for i := range want {
		if !strings.Contains(shells[i], want[i]) || !strings.HasSuffix(shells[i], wantUsers[i]) {
			t.Errorf("shell finding %d:\n got %s\nwant %q ending in %q", i, shells[i], want[i], wantUsers[i])
		}
	}
	got := problems(r.Findings)
	for _, u := range []string{"gitty", "sftponly", "rb "} {
		if strings.Contains(got, u+" (sshd ForceCommand") {
			t.Errorf("%s cannot run the ForceCommand, yet is listed as protected (to enroll):\n%s", u, got)
		}
	}
	if !strings.Contains(got, "rb2 (sshd ForceCommand otpgate sshcheck) is not enrolled") {
		t.Errorf("rb2's own block runs otpgate without a path, so rbash runs it and rb2 must be enrolled:\n%s", got)
	}
}
