package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sshd's PAM service name is the base name of the binary: OpenSSH's
// auth-pam.c calls pam_start(SSHD_PAM_SERVICE, ...) and, unless the build
// defines it (Debian's does not), SSHD_PAM_SERVICE is __progname, the base
// name of argv[0]. sshd re-executes itself through argv[0] for every
// connection, so a copy of /usr/sbin/sshd named sshd-otpe2e-XXXXXX reads
// /etc/pam.d/sshd-otpe2e-XXXXXX and /etc/pam.d/sshd stays untouched.
// TestHarnessSSH checks this: through a copy whose service file holds
// pam_deny, a right password is refused (Debian's /etc/pam.d/sshd and
// /etc/pam.d/other would both accept it).

// sshdConfig is what a test asks of its sshd.
type sshdConfig struct {
	authMethods string   // AuthenticationMethods
	pamStack    string   // the content of its pam.d service file
	allowUsers  []string // AllowUsers
	extra       []string // more sshd_config lines
}

// sshServer is one sshd listening on 127.0.0.1.
type sshServer struct {
	port    int
	service string
	logs    *syncBuffer
}

// startSSHD starts a copy of sshd in the foreground on a free port of
// 127.0.0.1 and stops it (its whole process group) when the test ends.
func startSSHD(t testing.TB, c sshdConfig) *sshServer {
	t.Helper()
	tools := requireTools(t, "sshd", "ssh", "ssh-keygen")
	dir := t.TempDir() // root 0700: sshd wants its keys private
	s := &sshServer{service: "sshd-" + prefix + randHex(3), logs: &syncBuffer{}}
	bin := filepath.Join(dir, s.service)
	copyFile(t, tools[0], bin, 0o755)
	writePAMService(t, s.service, c.pamStack)
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // privilege separation directory
		t.Fatal(err)
	}
	hostKey := filepath.Join(dir, "host_ed25519_key")
	mustRun(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "otpgate-e2e-host", "-f", hostKey)

	for attempt := 1; ; attempt++ {
		s.port = freePort(t)
		cfg := filepath.Join(dir, "sshd_config")
		lines := []string{
			"# otpgate end-to-end test sshd",
			"ListenAddress 127.0.0.1",
			"Port " + strconv.Itoa(s.port),
			"HostKey " + hostKey,
			"PidFile none",
			"UsePAM yes",
			"KbdInteractiveAuthentication yes",
			"PasswordAuthentication no",
			"PubkeyAuthentication yes",
			"AuthenticationMethods " + c.authMethods,
			"AuthorizedKeysFile .ssh/authorized_keys",
			"PermitRootLogin no",
			"AllowUsers " + strings.Join(c.allowUsers, " "),
			"StrictModes yes",
			"UseDNS no",
			"MaxStartups 100",
			"MaxSessions 100",
			"MaxAuthTries 6",
			"LoginGraceTime 30",
			"PrintMotd no",
			"PrintLastLog no",
			"X11Forwarding no",
			"Subsystem sftp internal-sftp",
			"LogLevel VERBOSE",
		}
		lines = append(lines, c.extra...)
		writeFile(t, cfg, strings.Join(lines, "\n")+"\n", 0o600)
		if r := run(setupTimeout, nil, bin, "-t", "-f", cfg); r.exit != 0 {
			t.Fatalf("sshd -t rejects the test config: %s", r)
		}

		cmd := command(context.Background(), bin, "-D", "-e", "-f", cfg)
		cmd.Stdout, cmd.Stderr = s.logs, s.logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		stop := func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exited
			}
		}
		ready := fmt.Sprintf("Server listening on 127.0.0.1 port %d", s.port)
		deadline := time.After(10 * time.Second)
	wait:
		for {
			changed := s.logs.wait()
			if strings.Contains(s.logs.String(), ready) {
				t.Cleanup(func() {
					stop()
					if t.Failed() {
						t.Logf("sshd %s log:\n%s", s.service, s.logs.String())
					}
				})
				return s
			}
			select {
			case <-changed:
			case err := <-exited:
				if strings.Contains(s.logs.String(), "Address already in use") && attempt < 3 {
					break wait // another process took the port: try another
				}
				t.Fatalf("sshd exited before listening (%v):\n%s", err, s.logs.String())
			case <-deadline:
				stop()
				t.Fatalf("sshd did not listen within 10 s:\n%s", s.logs.String())
			}
		}
		s.logs = &syncBuffer{}
	}
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func copyFile(t testing.TB, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, mode); err != nil {
		t.Fatal(err)
	}
}

// answers are what the askpass program types, chosen by the prompt text.
type answers struct {
	password string // "Password:" (pam_unix)
	code     string // "Verification code:" (pam_otpgate)
	combined string // "Password & verification code:" (pam_otpgate forward_pass)
}

// askpass is an SSH_ASKPASS program that answers prompts from files and
// logs every prompt it was shown.
type askpass struct {
	dir    string
	script string
}

// askpassRules map a part of the prompt to the answer file, first match
// wins: the forward_pass prompt also says "Password".
var askpassRules = []struct{ match, file string }{
	{"Password & verification code", "combined"},
	{"erification code", "code"},
	{"assword", "password"},
}

func newAskpass(t testing.TB, a answers) *askpass {
	t.Helper()
	p := &askpass{dir: t.TempDir()}
	p.script = filepath.Join(p.dir, "askpass")
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# SSH_ASKPASS for the otpgate end-to-end tests: answer by prompt text.\n")
	fmt.Fprintf(&b, "printf '%%s\\n' \"$1\" >>'%s/prompts.log'\n", p.dir)
	b.WriteString("case \"$1\" in\n")
	for _, r := range askpassRules {
		fmt.Fprintf(&b, "*'%s'*) exec cat '%s/%s' ;;\n", r.match, p.dir, r.file)
	}
	b.WriteString("esac\nexit 1\n")
	writeFile(t, p.script, b.String(), 0o700)
	p.set(t, a)
	return p
}

// set replaces the answers.
func (p *askpass) set(t testing.TB, a answers) {
	t.Helper()
	writeFile(t, filepath.Join(p.dir, "password"), a.password, 0o600)
	writeFile(t, filepath.Join(p.dir, "code"), a.code, 0o600)
	writeFile(t, filepath.Join(p.dir, "combined"), a.combined, 0o600)
}

// prompts returns the prompts shown so far, one per line, and forgets them.
func (p *askpass) prompts(t testing.TB) string {
	t.Helper()
	log := filepath.Join(p.dir, "prompts.log")
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	os.Remove(log)
	return string(b)
}

// sshClient is the OpenSSH client with a key pair installed for one user.
type sshClient struct {
	home string // HOME of the client process
	key  string // private key file
	user *testUser
}

// newSSHClient makes a client key and installs its public half in u's
// ~/.ssh/authorized_keys (owned by u, 0600, in a 0700 directory).
func newSSHClient(t testing.TB, u *testUser) *sshClient {
	t.Helper()
	c := &sshClient{home: t.TempDir(), user: u}
	c.key = filepath.Join(c.home, "id_ed25519")
	mustRun(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "otpgate-e2e-client", "-f", c.key)
	pub, err := os.ReadFile(c.key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	sshDir := filepath.Join(u.home, ".ssh")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(sshDir, "authorized_keys"), string(pub), 0o600)
	chownTree(t, sshDir, u)
	return c
}

// login runs `ssh ... user@127.0.0.1 remoteCmd` with the given preferred
// methods ("publickey,keyboard-interactive", "keyboard-interactive", ...)
// and prompts answered by p. The client tries keyboard-interactive once
// (NumberOfPasswordPrompts=1): one login, one attempt on the server.
func (c *sshClient) login(s *sshServer, methods string, p *askpass, remoteCmd string) result {
	args := []string{
		"-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "BatchMode=no",
		"-o", "LogLevel=ERROR",
		"-o", "ConnectTimeout=10",
		"-o", "NumberOfPasswordPrompts=1",
		"-o", "PreferredAuthentications=" + methods,
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityFile=" + c.key,
		"-o", "ControlMaster=no",
		"-o", "ControlPath=none",
		"-o", "ForwardAgent=no",
		"-p", strconv.Itoa(s.port),
		c.user.name + "@127.0.0.1",
		"--", remoteCmd,
	}
	return runCmd(loginTimeout, nil, func(ctx context.Context) *exec.Cmd {
		cmd := command(ctx, "ssh", args...)
		cmd.Env = baseEnv("HOME="+c.home, "SSH_ASKPASS="+p.script, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0")
		return cmd
	})
}

// marker is printed by the remote command of a successful login.
func marker(u *testUser) string { return "otpgate-e2e-ok:" + u.name }

// remoteCmd prints marker(u) as u: proof the session ran as that user.
const remoteCmd = `echo "otpgate-e2e-ok:$(id -un)"`

// wantLogin checks that an ssh login succeeded and ran its command.
func wantLogin(t testing.TB, what string, r result, u *testUser) {
	t.Helper()
	logResult(t, what, r)
	mustNotHang(t, what, r)
	if r.exit != 0 || !strings.Contains(r.stdout, marker(u)) {
		t.Fatalf("%s: want a login that prints %q: %s", what, marker(u), r)
	}
}

// wantDenied checks that an ssh login was refused the way ssh says so.
func wantDenied(t testing.TB, what string, r result, u *testUser) {
	t.Helper()
	logResult(t, what, r)
	mustNotHang(t, what, r)
	if r.exit != 255 || !strings.Contains(r.stderr, "Permission denied") || strings.Contains(r.stdout, marker(u)) {
		t.Fatalf("%s: want exit 255 and \"Permission denied\": %s", what, r)
	}
}
