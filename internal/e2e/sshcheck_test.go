package e2e

// otpgate sshcheck as sshd's ForceCommand, through a real sshd on
// 127.0.0.1 whose sshd_config Includes contrib/sshd_config.d/
// otpgate-forcecommand.conf (only the Match criterion and the path of
// otpgate changed), with the real OpenSSH client: a login on a terminal
// (driven through a pseudo-terminal), ssh host cmd with OTPGATE_CODE,
// scp and sftp, ssh -N -L, shell metacharacters, and one code across the
// sshcheck and PAM routes.
//
// sshcheck runs as the user who logged in and reaches the store through
// the setuid launcher and the helper, whose self mode reads a config fixed
// at build time. So this file builds its own set: an otpgate-helper with
// -X main.selfConfig=<this package's sshcheck config>, a setuid-root
// otpgate-launch-helper that execs it (pamtest.BuildLauncher), and an
// otpgate with -X .../internal/helper.InstalledPath=<that launcher>. The
// PAM route's module and trusted helper read the same config (config=), so
// both routes share one store, one lockout and one record of used codes.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otpgate/otpgate/internal/pamtest"
)

// sshcheckSetup is the helper, its setuid launcher and the otpgate that
// execs the launcher, with the store and config the helper's self mode
// reads.
type sshcheckSetup struct {
	env      *otpEnv // the config and store; env.bins for the PAM route and the admin CLI
	helper   string  // self mode reads env.config
	launcher string  // setuid root, execs helper
	cli      string  // otpgate, helper.InstalledPath = launcher
	err      error
}

var (
	sshcheckOnce sync.Once
	sshcheckBins sshcheckSetup
)

// sshcheckMaxFailures is the lockout threshold of the sshcheck store:
// high enough that the denials these tests provoke never lock anyone.
const sshcheckMaxFailures = 10

// needSSHCheck builds (once) the helper, launcher and otpgate for sshcheck,
// in a 0755 directory inside the root-owned build directory, with a
// config and a store next to them.
func needSSHCheck(t testing.TB) *sshcheckSetup {
	t.Helper()
	b := needOtpgate(t)
	root := repoRoot(t)
	sshcheckOnce.Do(func() { sshcheckBins = buildSSHCheck(root, b, "sshcheck", "") })
	if sshcheckBins.err != nil {
		t.Fatal(sshcheckBins.err)
	}
	return &sshcheckBins
}

// buildSSHCheck builds one set in the directory name of the build
// directory; extraConfig is appended to its config.
func buildSSHCheck(root string, b *otpgateBins, name, extraConfig string) sshcheckSetup {
	s := sshcheckSetup{env: &otpEnv{bins: b}}
	dir := filepath.Join(b.dir, name)
	if s.err = os.Mkdir(dir, 0o755); s.err != nil {
		return s
	}
	s.env.store = filepath.Join(dir, "store")
	if s.err = os.Mkdir(s.env.store, 0o700); s.err != nil {
		return s
	}
	s.env.config = filepath.Join(dir, "config.toml")
	s.err = os.WriteFile(s.env.config, []byte(configText(s.env.store, sshcheckMaxFailures)+extraConfig), 0o644)
	if s.err != nil {
		return s
	}
	s.helper = filepath.Join(dir, "otpgate-helper")
	s.launcher = filepath.Join(dir, "otpgate-launch-helper")
	s.cli = filepath.Join(dir, "otpgate")
	goTool, _ := lookTool("go")
	for _, bl := range []struct{ out, pkg, ldflags string }{
		{s.helper, "./cmd/otpgate-helper", "-X main.selfConfig=" + s.env.config},
		{s.cli, "./cmd/otpgate", "-X github.com/otpgate/otpgate/internal/helper.InstalledPath=" + s.launcher},
	} {
		start := time.Now()
		r := runCmd(buildTimeout, nil, func(ctx context.Context) *exec.Cmd {
			cmd := command(ctx, goTool, "build", "-trimpath", "-ldflags", bl.ldflags, "-o", bl.out, bl.pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			return cmd
		})
		if r.exit != 0 || r.timedOut {
			s.err = fmt.Errorf("building %s: %s", bl.pkg, r)
			return s
		}
		fmt.Fprintf(os.Stderr, "e2e: built %s for sshcheck in %v\n", filepath.Base(bl.out), time.Since(start).Round(time.Millisecond))
		if s.err = os.Chown(bl.out, 0, 0); s.err != nil {
			return s
		}
	}
	if s.err = os.Chmod(s.cli, 0o755); s.err != nil {
		return s
	}
	if s.err = os.Chmod(s.helper, 0o755); s.err != nil {
		return s
	}
	s.err = pamtest.BuildLauncher(s.launcher, s.helper)
	return s
}

// forceCommandInclude writes the contrib ForceCommand block with its
// Match criterion replaced by groups and otpgate's path by cli, and
// returns the sshd_config line that includes it. The block is otherwise
// used as shipped.
func forceCommandInclude(t testing.TB, cli string, groups []string) string {
	t.Helper()
	src := filepath.Join(repoRoot(t), "contrib", "sshd_config.d", "otpgate-forcecommand.conf")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, r := range [][2]string{
		{"\nMatch Group otpgate\n", "\nMatch Group " + strings.Join(groups, ",") + "\n"},
		{"ForceCommand /usr/local/bin/otpgate sshcheck\n", "ForceCommand " + cli + " sshcheck\n"},
	} {
		if strings.Count(text, r[0]) != 1 {
			t.Fatalf("%s: want %q exactly once", src, strings.TrimSpace(r[0]))
		}
		text = strings.Replace(text, r[0], r[1], 1)
	}
	for _, want := range []string{"DisableForwarding yes", "PermitUserRC no", "AcceptEnv LANG LC_* OTPGATE_CODE", "PermitTTY yes", "SetEnv SHLVL=1"} {
		if !strings.Contains(text, "\n\t"+want+"\n") {
			t.Fatalf("%s: no %q line", src, want)
		}
	}
	path := filepath.Join(t.TempDir(), "otpgate-forcecommand.conf")
	writeFile(t, path, text, 0o644)
	return "Include " + path
}

// primaryGroup is the name of u's own group (useradd makes one per user).
func primaryGroup(t testing.TB, u *testUser) string {
	t.Helper()
	r := mustRun(t, nil, "id", "-gn", u.name)
	return strings.TrimSpace(r.stdout)
}

// sshOpts are the client options of every sshcheck test: publickey only,
// no prompts (BatchMode), nothing read from the client's own files.
func (c *sshClient) sshOpts(s *sshServer) []string {
	return []string{
		"-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR",
		"-o", "ConnectTimeout=10",
		"-o", "PreferredAuthentications=publickey",
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityFile=" + c.key,
		"-o", "ControlMaster=no",
		"-o", "ControlPath=none",
		"-o", "ForwardAgent=no",
		"-o", "Port=" + strconv.Itoa(s.port),
		"-o", "User=" + c.user.name,
	}
}

// clientEnv is the client's environment, with OTPGATE_CODE when code is
// not empty.
func (c *sshClient) clientEnv(code string) []string {
	env := baseEnv("HOME=" + c.home)
	if code != "" {
		env = append(env, "OTPGATE_CODE="+code)
	}
	return env
}

// sshRun runs `ssh -T host remote` without a terminal, sending
// OTPGATE_CODE when code is not empty.
func (c *sshClient) sshRun(s *sshServer, code, remote string) result {
	args := append(c.sshOpts(s), "-T", "-o", "BatchMode=yes", "-o", "SendEnv=OTPGATE_CODE", "127.0.0.1", "--", remote)
	return runCmd(loginTimeout, nil, func(ctx context.Context) *exec.Cmd {
		cmd := command(ctx, "ssh", args...)
		cmd.Env = c.clientEnv(code)
		return cmd
	})
}

// tool runs scp or sftp with the client options, sending OTPGATE_CODE.
func (c *sshClient) tool(s *sshServer, code string, stdin io.Reader, name string, args ...string) result {
	all := append(c.sshOpts(s), "-o", "BatchMode=yes", "-o", "SendEnv=OTPGATE_CODE")
	all = append(all, args...)
	return runCmd(loginTimeout, stdin, func(ctx context.Context) *exec.Cmd {
		cmd := command(ctx, name, all...)
		cmd.Env = c.clientEnv(code)
		cmd.Dir = c.home
		return cmd
	})
}

// wantRan checks a session that ran its command: exit status want, and
// stdout exactly out (when out is not "-").
func wantRan(t testing.TB, what string, r result, exit int, out string) {
	t.Helper()
	logResult(t, what, r)
	mustNotHang(t, what, r)
	if r.exit != exit || (out != "-" && r.stdout != out) {
		t.Fatalf("%s: want exit %d and stdout %q: %s", what, exit, out, r)
	}
}

// wantSSHCheckDenied checks a session sshcheck denied: exit 1, the reason on
// stderr, nothing on stdout.
func wantSSHCheckDenied(t testing.TB, what string, r result, reason string) {
	t.Helper()
	logResult(t, what, r)
	mustNotHang(t, what, r)
	if r.exit != 1 || r.stdout != "" || !strings.Contains(r.stderr, "otpgate: error: denied: ") || !strings.Contains(r.stderr, reason) {
		t.Fatalf("%s: want exit 1 and a denial about %q on stderr: %s", what, reason, r)
	}
}

// wantAbsent checks that path does not exist: the command that would have
// made it never ran.
func wantAbsent(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Lstat(path); err == nil {
		t.Fatalf("%s exists: the command ran", path)
	}
}

// TestSSHCheck: the ForceCommand route. One sshd serves every subtest;
// each has its own users, whose own groups the Match block names. Codes:
// a step's code works once, so a second success in a subtest uses the
// next step's (window 1), and no subtest needs a third.
func TestSSHCheck(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen", "scp", "sftp", "id")
	sc := needSSHCheck(t)
	e := sc.env
	names := []string{"tty", "cmd", "rc", "scp", "scpO", "sftp", "meta", "cross", "fwd"}
	users := map[string]*testUser{}
	var groups, allow []string
	for _, n := range names {
		u := newUser(t)
		users[n] = u
		groups = append(groups, primaryGroup(t, u))
		allow = append(allow, u.name)
	}
	ctl := newUser(t) // not in the Match block: forwarding works for it
	allow = append(allow, ctl.name)
	s := startSSHD(t, sshdConfig{
		authMethods: "publickey",
		pamStack:    unixStack,
		allowUsers:  allow,
		extra:       []string{forceCommandInclude(t, sc.cli, groups)},
	})
	host, _ := os.Hostname()

	t.Run("terminal", func(t *testing.T) {
		u := users["tty"]
		en := e.enroll(t, u)
		c := newSSHClient(t, u)
		prompt := fmt.Sprintf("Verification code for %s@%s: ", u.name, host)
		markerFile := filepath.Join(u.home, "tty-marker")
		typed := `echo "login:$0:$(id -un)" > ~/tty-marker; exit` + "\r"

		r := c.terminal(t, s, func(p *ptySession) {
			p.await(prompt)
			p.send(codeNow(t, en, 0) + "\r")
			p.await("$ ")
			p.send(typed)
		})
		wantRan(t, "right code on the terminal", r, 0, "-")
		if b, err := os.ReadFile(markerFile); err != nil || string(b) != "login:-bash:"+u.name+"\n" {
			t.Fatalf("the login shell did not run the typed command as a login shell: %q %v\n%s", b, err, r.stdout)
		}
		os.Remove(markerFile)

		for _, c2 := range []struct {
			name, keys, reason string
		}{
			// The typed-ahead command is in the terminal's queue: a shell
			// would read it.
			{"wrong code", wrongCode(t, en) + "\r" + typed, "wrong or already used code"},
			{"Ctrl-C", "\x03", "interrupted by SIGINT"},
			{"Ctrl-D", "\x04", "no code was entered (end of input)"},
		} {
			r := c.terminal(t, s, func(p *ptySession) {
				p.await(prompt)
				p.send(c2.keys)
			})
			logResult(t, c2.name, r)
			mustNotHang(t, c2.name, r)
			if r.exit != 1 || !strings.Contains(r.stdout, "otpgate: error: denied: "+c2.reason) {
				t.Fatalf("%s: want exit 1 and %q: %s", c2.name, c2.reason, r)
			}
			wantAbsent(t, markerFile)
		}

		// SIGTERM to sshcheck at the prompt (as an administrator's kill).
		r = c.terminal(t, s, func(p *ptySession) {
			p.await(prompt)
			pid := sshcheckPID(t, sc.cli, u)
			if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
				t.Errorf("kill %d: %v", pid, err)
			}
		})
		if r.exit != 1 || !strings.Contains(r.stdout, "interrupted by SIGTERM") {
			t.Fatalf("SIGTERM: want exit 1 and the reason: %s", r)
		}

		// The client goes away at the prompt: sshd hangs up the terminal
		// (SIGHUP), and sshcheck and its helper end.
		c.terminal(t, s, func(p *ptySession) {
			p.await(prompt)
			sshcheckPID(t, sc.cli, u)
			p.kill()
		})
		deadline := time.Now().Add(10 * time.Second)
		for userProcesses(u) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("processes of %s still run 10 s after the client went away at the prompt", u.name)
			}
			time.Sleep(50 * time.Millisecond)
		}
		wantAbsent(t, markerFile)
		// Only the wrong code counted: no answer is no attempt.
		wantStatus(t, e, u, 1, false)
	})

	t.Run("command with OTPGATE_CODE", func(t *testing.T) {
		u := users["cmd"]
		en := e.enroll(t, u)
		c := newSSHClient(t, u)
		markerFile := filepath.Join(u.home, "cmd-marker")

		r := c.sshRun(s, "", "touch ~/cmd-marker")
		wantSSHCheckDenied(t, "no terminal, no OTPGATE_CODE", r, "OTPGATE_CODE")
		if !strings.Contains(r.stderr, "SendEnv=OTPGATE_CODE") || !strings.Contains(r.stderr, "ssh -t") {
			t.Errorf("the denial does not name both ways to give the code: %s", r.stderr)
		}
		if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n != 0 {
			t.Errorf("the denial is %d lines: %q", n+1, r.stderr)
		}
		wantAbsent(t, markerFile)

		wantSSHCheckDenied(t, "wrong OTPGATE_CODE", c.sshRun(s, wrongCode(t, en), "touch ~/cmd-marker"), "wrong or already used code")
		wantAbsent(t, markerFile)

		right := codeNow(t, en, 0) // once: a step could end between two calls
		r = c.sshRun(s, right, `echo "ok:$(id -un):${OTPGATE_CODE-unset}"`)
		wantRan(t, "right OTPGATE_CODE", r, 0, "ok:"+u.name+":unset\n")

		wantSSHCheckDenied(t, "the same code again", c.sshRun(s, right, "touch ~/cmd-marker"), "wrong or already used code")
		wantAbsent(t, markerFile)

		// The exit status passes through.
		wantRan(t, "exit status", c.sshRun(s, codeNow(t, en, +1), "echo out; echo err >&2; exit 7"), 7, "out\n")
		wantStatus(t, e, u, 0, false)
	})

	t.Run("startup files before the code", func(t *testing.T) {
		u := users["rc"]
		en := e.enroll(t, u)
		c := newSSHClient(t, u)
		// Debian's bash reads ~/.bashrc for any command sshd runs, the
		// ForceCommand included, unless SHLVL is set (the block's SetEnv);
		// sshd runs ~/.ssh/rc before the command unless PermitUserRC no.
		bashrc := filepath.Join(u.home, ".bashrc")
		old, err := os.ReadFile(bashrc)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, bashrc, "touch ~/bashrc-ran\n"+string(old), 0o644)
		writeFile(t, filepath.Join(u.home, ".ssh", "rc"), "touch ~/sshrc-ran\n", 0o644)
		chownTree(t, u.home, u)

		wantSSHCheckDenied(t, "no code", c.sshRun(s, "", "true"), "no verification code")
		wantAbsent(t, filepath.Join(u.home, "bashrc-ran"))
		wantAbsent(t, filepath.Join(u.home, "sshrc-ran"))

		// After the code the command's shell starts as under a plain sshd:
		// no SHLVL from the block, and ~/.bashrc read as usual.
		wantRan(t, "right code", c.sshRun(s, codeNow(t, en, 0), `echo "shlvl=$SHLVL"`), 0, "shlvl=1\n")
		if _, err := os.Stat(filepath.Join(u.home, "bashrc-ran")); err != nil {
			t.Errorf("~/.bashrc did not run for the command after the code: %v", err)
		}
		wantAbsent(t, filepath.Join(u.home, "sshrc-ran"))
	})

	payload := make([]byte, 1<<20)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(payload)
	wantFile := func(t *testing.T, path string, owner *testUser) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(b) != sum {
			t.Fatalf("%s: %d bytes, sha256 differs from the 1 MiB sent", path, len(b))
		}
		var st syscall.Stat_t
		if owner != nil && (syscall.Stat(path, &st) != nil || int(st.Uid) != owner.uid) {
			t.Errorf("%s is not owned by %s", path, owner.name)
		}
	}

	// scp: the SFTP protocol (OpenSSH 9's default: the sftp subsystem,
	// internal-sftp here, which sshcheck runs as sftp-server) and the
	// legacy one (-O: `scp -t` through the shell).
	for _, v := range []struct{ name, user string }{{"scp", "scp"}, {"scp -O", "scpO"}} {
		t.Run(v.name, func(t *testing.T) {
			u := users[v.user]
			en := e.enroll(t, u)
			c := newSSHClient(t, u)
			local := filepath.Join(c.home, "payload.bin")
			writeFile(t, local, string(payload), 0o644)
			var flags []string
			if v.name == "scp -O" {
				flags = []string{"-O"}
			}
			remote := filepath.Join(u.home, "up.bin")

			r := c.tool(s, "", nil, "scp", append(flags, local, "127.0.0.1:up.bin")...)
			logResult(t, "upload without a code", r)
			mustNotHang(t, "upload without a code", r)
			// sshd drops a subsystem's standard error, so over SFTP the
			// client only sees the connection close; legacy scp runs a
			// command, whose standard error the client shows.
			if r.exit == 0 || (v.name == "scp -O" && !strings.Contains(r.stderr, "OTPGATE_CODE")) {
				t.Fatalf("upload without a code: want a failure (naming OTPGATE_CODE for scp -O): %s", r)
			}
			wantAbsent(t, remote)

			wantRan(t, "upload", c.tool(s, codeNow(t, en, 0), nil, "scp", append(flags, local, "127.0.0.1:up.bin")...), 0, "-")
			wantFile(t, remote, u)
			back := filepath.Join(c.home, "down.bin")
			wantRan(t, "download", c.tool(s, codeNow(t, en, +1), nil, "scp", append(flags, "127.0.0.1:up.bin", back)...), 0, "-")
			wantFile(t, back, nil)
		})
	}

	t.Run("sftp batch", func(t *testing.T) {
		u := users["sftp"]
		en := e.enroll(t, u)
		c := newSSHClient(t, u)
		local := filepath.Join(c.home, "payload.bin")
		writeFile(t, local, string(payload), 0o644)
		back := filepath.Join(c.home, "back.bin")
		batch := fmt.Sprintf("put %s sftp-up.bin\nget sftp-up.bin %s\n", local, back)
		// One code for both: computed twice, a step could end between.
		used := codeNow(t, en, 0)
		r := c.tool(s, used, strings.NewReader(batch), "sftp", "-b", "-", "127.0.0.1")
		wantRan(t, "sftp put and get", r, 0, "-")
		wantFile(t, filepath.Join(u.home, "sftp-up.bin"), u)
		wantFile(t, back, nil)

		r = c.tool(s, used, strings.NewReader("put "+local+" again.bin\n"), "sftp", "-b", "-", "127.0.0.1")
		logResult(t, "sftp with a used code", r)
		mustNotHang(t, "sftp with a used code", r)
		if r.exit == 0 {
			t.Fatalf("sftp with a used code: want a denial: %s", r)
		}
		wantAbsent(t, filepath.Join(u.home, "again.bin"))
	})

	t.Run("shell metacharacters", func(t *testing.T) {
		u := users["meta"]
		en := e.enroll(t, u)
		c := newSSHClient(t, u)
		before := listDir(t, u.home)
		cmd := `echo a; echo b | tr b c > marker; echo $HOME; echo '$HOME'; printf '%s|\n' "x  y"`
		r := c.sshRun(s, codeNow(t, en, 0), cmd)
		wantRan(t, "metacharacters", r, 0, "a\n"+u.home+"\n$HOME\nx  y|\n")
		if b, err := os.ReadFile(filepath.Join(u.home, "marker")); err != nil || string(b) != "c\n" {
			t.Fatalf("marker: %q %v", b, err)
		}
		after := listDir(t, u.home)
		if added := slices.DeleteFunc(after, func(n string) bool { return slices.Contains(before, n) }); !slices.Equal(added, []string{"marker"}) {
			t.Errorf("files the command made: %q, want only marker", added)
		}
	})

	t.Run("ssh -N -L never runs the command: forwarding is off", func(t *testing.T) {
		u := users["fwd"]
		e.enroll(t, u)
		target := newEchoServer(t, "forwarded-secret\n")
		wantForward(t, "a member of the Match group", newSSHClient(t, u), s, target, false)
		if n := target.accepted(); n != 0 {
			t.Fatalf("the forward target accepted %d connections for a member", n)
		}
		// The control: without the block, the same forward works, so the
		// test above can see one.
		wantForward(t, "a user outside the Match group", newSSHClient(t, ctl), s, target, true)
	})

	t.Run("one code, two routes", func(t *testing.T) {
		u := users["cross"]
		en := e.enroll(t, u)
		c := newSSHClient(t, u)
		ps := startSSHD(t, sshdConfig{
			authMethods: "publickey,keyboard-interactive",
			pamStack:    keyThenCodeStack(e),
			allowUsers:  []string{u.name},
		})
		const methods = "publickey,keyboard-interactive"

		code := codeNow(t, en, 0)
		wantRan(t, "code over sshcheck", c.sshRun(s, code, remoteCmd), 0, marker(u)+"\n")
		p := newAskpass(t, answers{code: code})
		wantDenied(t, "the same code over PAM", c.login(ps, methods, p, remoteCmd), u)

		code = codeNow(t, en, +1)
		p.set(t, answers{code: code})
		wantLogin(t, "next code over PAM", c.login(ps, methods, p, remoteCmd), u)
		wantSSHCheckDenied(t, "the same code over sshcheck", c.sshRun(s, code, remoteCmd), "wrong or already used code")
		// Each replay counted; the success between them reset the count.
		wantStatus(t, e, u, 1, false)
	})
}

func listDir(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// echoServer accepts TCP connections on 127.0.0.1, sends a greeting to
// each and counts them.
type echoServer struct {
	port int
	mu   sync.Mutex
	n    int
}

func newEchoServer(t testing.TB, greeting string) *echoServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{port: l.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.n++
			s.mu.Unlock()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, greeting)
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return s
}

func (s *echoServer) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// wantForward runs `ssh -N -L` to target and reads through the forward:
// it must deliver the greeting when works, and nothing otherwise.
func wantForward(t testing.TB, what string, c *sshClient, s *sshServer, target *echoServer, works bool) {
	t.Helper()
	lport := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), loginTimeout)
	defer cancel()
	args := append(c.sshOpts(s), "-N", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
		"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", lport, target.port), "127.0.0.1")
	cmd := command(ctx, "ssh", args...)
	cmd.Env = c.clientEnv("")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}()

	// The client listens once the connection is up.
	var conn net.Conn
	deadline := time.Now().Add(15 * time.Second)
	for {
		var err error
		conn, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", lport), time.Second)
		if err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("%s: ssh -N -L exited: %s", what, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: ssh -N -L never listened on %d: %s", what, lport, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	t.Logf("%s: read %q through the forward (%v); ssh said %q", what, got, err, strings.TrimSpace(stderr.String()))
	if works && string(got) != "forwarded-secret\n" {
		t.Fatalf("%s: the forward should work and did not: read %q, %v", what, got, err)
	}
	if !works && len(got) != 0 {
		t.Fatalf("%s: data came through the forward: %q", what, got)
	}
}

// ptySession is an ssh client on a pseudo-terminal.
type ptySession struct {
	t      testing.TB
	master *os.File
	out    *syncBuffer
	pos    int
	cmd    *exec.Cmd
}

// terminal runs `ssh -tt host` (no command: an interactive login) on a
// new pseudo-terminal, lets drive type into it, and returns when ssh
// exits; stdout holds everything the terminal showed.
func (c *sshClient) terminal(t testing.TB, s *sshServer, drive func(p *ptySession)) result {
	t.Helper()
	return c.terminalWith(t, s, append(c.sshOpts(s), "-tt", "-e", "none", "-o", "BatchMode=yes", "127.0.0.1"), nil, drive)
}

// terminalWith is terminal with the whole ssh command line args and more
// environment variables env for the client.
func (c *sshClient) terminalWith(t testing.TB, s *sshServer, args, env []string, drive func(p *ptySession)) result {
	t.Helper()
	master, slave := openPTY(t)
	ctx, cancel := context.WithTimeout(context.Background(), loginTimeout)
	defer cancel()
	cmd := command(ctx, "ssh", args...)
	cmd.Env = c.clientEnv("")
	cmd.Env = append(cmd.Env, "TERM=dumb")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	p := &ptySession{t: t, master: master, out: &syncBuffer{}, cmd: cmd}
	start := time.Now()
	err := cmd.Start()
	slave.Close()
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	copied := make(chan struct{})
	go func() { io.Copy(p.out, master); close(copied) }()
	exited := make(chan struct{})
	var werr error
	go func() { werr = cmd.Wait(); close(exited) }()
	drive(p)
	<-exited
	// The master reads EIO once no process holds the terminal; a
	// grandchild that kept it would be killed with the group above.
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	master.Close()
	r := result{stdout: p.out.String(), dur: time.Since(start), err: werr, exit: -1}
	if cmd.ProcessState != nil {
		r.exit = cmd.ProcessState.ExitCode()
	}
	r.timedOut = ctx.Err() == context.DeadlineExceeded
	return r
}

// await waits (bounded) for s in the terminal output after what was
// awaited last.
func (p *ptySession) await(s string) {
	p.t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		changed := p.out.wait()
		text := p.out.String()
		if i := strings.Index(text[p.pos:], s); i >= 0 {
			p.pos += i + len(s)
			return
		}
		select {
		case <-changed:
		case <-deadline:
			p.kill()
			p.t.Fatalf("the terminal never showed %q; it showed:\n%s", s, text)
		}
	}
}

func (p *ptySession) send(s string) {
	if _, err := p.master.WriteString(s); err != nil {
		p.t.Errorf("typing into the terminal: %v", err)
	}
}

// kill ends the ssh client (its whole process group).
func (p *ptySession) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// openPTY opens a new pseudo-terminal pair.
func openPTY(t testing.TB) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	rc, err := m.SyscallConn()
	if err == nil {
		rc.Control(func(fd uintptr) {
			if err = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); err == nil {
				n, err = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
			}
		})
	}
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	return m, s
}

// sshcheckPID returns the pid of the otpgate sshcheck process running as
// u (exactly one), found through /proc.
func sshcheckPID(t testing.TB, cli string, u *testUser) int {
	t.Helper()
	var pids []int
	for _, p := range processesOf(u) {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p)); err == nil && exe == cli {
			pids = append(pids, p)
		}
	}
	if len(pids) != 1 {
		t.Fatalf("want one otpgate process of %s, found %v", u.name, pids)
	}
	return pids[0]
}

func userProcesses(u *testUser) int { return len(processesOf(u)) }

// processesOf lists the processes whose real uid is u's.
func processesOf(u *testUser) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, l := range bytes.Split(b, []byte("\n")) {
			if f := strings.Fields(string(l)); len(f) >= 2 && f[0] == "Uid:" {
				if f[1] == strconv.Itoa(u.uid) {
					pids = append(pids, pid)
				}
				break
			}
		}
	}
	return pids
}
