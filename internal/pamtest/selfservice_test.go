package pamtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/helper"
	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/keystore"
)

const nobody = 65534

// selfSetup builds a helper whose self mode reads a test config, the
// setuid-root launcher that execs it, and an otpgate that execs the
// launcher, in a root-owned 0755 directory; it returns the launcher,
// otpgate and the store.
func selfSetup(t *testing.T) (launcherBin, otpgateBin string, store *keystore.Store) {
	t.Helper()
	needRoot(t)
	dir, err := os.MkdirTemp(buildDir, "self-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.toml")
	storeDir := filepath.Join(dir, "store")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("store = %q\n", storeDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	helperBin := filepath.Join(dir, "otpgate-helper")
	if err := buildGo(helperBin, "./cmd/otpgate-helper", "-X main.selfConfig="+cfgPath); err != nil {
		t.Fatal(err)
	}
	launcherBin = filepath.Join(dir, "otpgate-launch-helper")
	if err := BuildLauncher(launcherBin, helperBin); err != nil {
		t.Fatal(err)
	}
	otpgateBin = filepath.Join(dir, "otpgate")
	if err := buildGo(otpgateBin, "./cmd/otpgate", "-X github.com/otpgate/otpgate/internal/helper.InstalledPath="+launcherBin); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	return launcherBin, otpgateBin, keystore.New(cfg.Store)
}

// asNobody returns a command that runs as uid and gid 65534 ("nobody").
func asNobody(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
	cmd.Dir = "/"
	return cmd
}

func nobodyName(t *testing.T) string {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) > 2 && f[2] == fmt.Sprint(nobody) {
			return f[0]
		}
	}
	t.Skip("no uid 65534 in /etc/passwd")
	return ""
}

// TestSelfServiceCLI runs otpgate as a normal user: status, enroll and
// backup-codes go through the setuid launcher and the helper, for that
// user only.
func TestSelfServiceCLI(t *testing.T) {
	_, bin, store := selfSetup(t)
	me := nobodyName(t)

	out, err := asNobody(bin, "status", "--json").Output()
	if err != nil {
		t.Fatalf("status: %v %s", err, exitErr(err))
	}
	var st struct {
		User     string `json:"user"`
		Enrolled bool   `json:"enrolled"`
	}
	if json.Unmarshal(out, &st) != nil || st.User != me || st.Enrolled {
		t.Fatalf("status: %s", out)
	}

	out, err = asNobody(bin, "enroll", "--json", "--qr", "none", "--no-confirm").Output()
	if err != nil {
		t.Fatalf("enroll: %v %s", err, exitErr(err))
	}
	var en struct {
		User, URI, Secret string
		BackupCodes       []string `json:"backup_codes"`
	}
	if err := json.Unmarshal(out, &en); err != nil || en.User != me || len(en.BackupCodes) != 10 {
		t.Fatalf("enroll: %v %s", err, out)
	}
	secret, err := keystore.DecodeSecret(en.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := store.ReadUser(me); err != nil || string(u.Authenticators[0].Secret) != string(secret) {
		t.Fatalf("stored: %v", err)
	}

	// Another account: refused here, before the helper.
	if err := asNobody(bin, "status", "--user", "root").Run(); exitCode(err) != 1 {
		t.Fatalf("status --user root: %v", err)
	}
	if err := asNobody(bin, "enroll", "--force").Run(); exitCode(err) != 2 {
		t.Fatalf("enroll --force: %v", err)
	}

	// backup-codes needs a current code.
	cmd := asNobody(bin, "backup-codes", "--json")
	cmd.Stdin = strings.NewReader("000000x\n")
	if err := cmd.Run(); exitCode(err) != 1 {
		t.Fatalf("backup-codes with a wrong code: %v", err)
	}
	cmd = asNobody(bin, "backup-codes", "--json")
	cmd.Stdin = strings.NewReader(code(t, secret, 0) + "\n")
	out, err = cmd.Output()
	if err != nil || !strings.Contains(string(out), `"backup_codes"`) {
		t.Fatalf("backup-codes: %v %s %s", err, exitErr(err), out)
	}
	if s, _ := store.ReadState(me); s.Failures != 0 {
		t.Fatalf("failures %d after a right code", s.Failures)
	}

	// Re-enroll: a code of the current secret, then one of the new one.
	cmd = asNobody(bin, "enroll", "--qr", "none")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(stdin, code(t, secret, 1))
	var newSecret []byte
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if uri, ok := strings.CutPrefix(sc.Text(), "URI: "); ok {
			i := strings.Index(uri, "secret=")
			newSecret, _ = keystore.DecodeSecret(strings.SplitN(uri[i+len("secret="):], "&", 2)[0])
			break
		}
	}
	if newSecret == nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no URI shown; stderr: %s", stderr.String())
	}
	fmt.Fprintln(stdin, code(t, newSecret, 0))
	rest, _ := io.ReadAll(stdout)
	if err := cmd.Wait(); err != nil || !strings.Contains(string(rest), "Enrolled "+me) {
		t.Fatalf("re-enroll: %v\n%s\n%s", err, rest, stderr.String())
	}
	if u, err := store.ReadUser(me); err != nil || string(u.Authenticators[0].Secret) != string(newSecret) {
		t.Fatal("the new secret was not saved")
	}
	selfAdd(t, bin, store, me, newSecret)
}

// selfAdd adds a second authenticator as the normal user me, whose one
// authenticator has secret: a bad label is refused by otpgate, the add
// needs a code of the current one, then one of the new one.
func selfAdd(t *testing.T, bin string, store *keystore.Store, me string, secret []byte) {
	t.Helper()
	cmd := asNobody(bin, "enroll", "--add", "--label", "a b")
	if out, err := cmd.CombinedOutput(); exitCode(err) != 2 || !strings.Contains(string(out), "A-Z, a-z, 0-9") {
		t.Fatalf("enroll --add with a bad label: %v %s", err, out)
	}
	cmd = asNobody(bin, "enroll", "--add", "--label", "phone2", "--qr", "none")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(stdin, code(t, secret, 1)) // step 0 confirmed it
	var added []byte
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if uri, ok := strings.CutPrefix(sc.Text(), "URI: "); ok {
			i := strings.Index(uri, "secret=")
			added, _ = keystore.DecodeSecret(strings.SplitN(uri[i+len("secret="):], "&", 2)[0])
			break
		}
	}
	if added == nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("add: no URI shown; stderr: %s", stderr.String())
	}
	fmt.Fprintln(stdin, code(t, added, 0))
	rest, _ := io.ReadAll(stdout)
	if err := cmd.Wait(); err != nil || !strings.Contains(string(rest), "Added authenticator phone2 to "+me) {
		t.Fatalf("add: %v\n%s\n%s", err, rest, stderr.String())
	}
	u, err := store.ReadUser(me)
	if err != nil || len(u.Authenticators) != 2 || string(u.Authenticators[0].Secret) != string(secret) || string(u.Authenticators[1].Secret) != string(added) {
		t.Fatalf("after the add: %v %v", u.Labels(), err)
	}
	out, err := asNobody(bin, "status").Output()
	if err != nil || !strings.Contains(string(out), "enrolled, 2 authenticators") || !strings.Contains(string(out), "  phone2  created ") {
		t.Fatalf("status: %v\n%s", err, out)
	}
}

// TestSelfModeByRealUID runs the setuid launcher directly as nobody, as a
// hostile user could: the helper it starts runs as root, yet serves only
// the caller's own account and takes no path from the request.
func TestSelfModeByRealUID(t *testing.T) {
	launcherBin, _, store := selfSetup(t)
	me := nobodyName(t)
	secret := (&stackAccount{store: store}).enroll(t, "alice")

	for _, c := range []struct {
		name string
		req  protocol.Request
		want string
	}{
		{"authenticate for alice", protocol.Request{Op: protocol.OpAuthenticate, User: "alice"}, protocol.ResultAuthErr},
		{"authenticate for self, not enrolled", protocol.Request{Op: protocol.OpAuthenticate, User: me}, protocol.ResultAuthErr},
		{"status of alice", protocol.Request{Op: protocol.OpStatus, User: "alice"}, protocol.ResultAuthErr},
		{"verify with a config", protocol.Request{Op: protocol.OpVerify, Args: []string{"config=/tmp/evil.toml"}}, protocol.ResultServiceErr},
		{"verify, not enrolled", protocol.Request{Op: protocol.OpVerify}, protocol.ResultAuthErr},
		{"status of self", protocol.Request{Op: protocol.OpStatus, User: me}, protocol.ResultSuccess},
	} {
		t.Run(c.name, func(t *testing.T) {
			ui := &recordUI{answer: code(t, secret, 0)}
			v, err := execAsNobody(launcherBin, c.req, ui)
			if err != nil {
				t.Fatal(err)
			}
			if v != c.want {
				t.Fatalf("verdict %s, want %s (messages %q)", v, c.want, ui.msgs)
			}
			if c.want == protocol.ResultSuccess && (len(ui.data) != 1 || ui.data[0].User != me) {
				t.Fatalf("data %+v", ui.data)
			}
		})
	}
	if st, _ := store.ReadState("alice"); st.Failures != 0 || !st.LastSuccess.IsZero() {
		t.Fatalf("alice's state was touched: %+v", st)
	}
}

type stackAccount struct{ store *keystore.Store }

func (a *stackAccount) enroll(t *testing.T, user string) []byte {
	s := &stack{t: t, store: a.store, cfg: config.Default()}
	s.cfg.Store = a.store.Dir()
	secret, _ := s.enroll(user)
	return secret
}

type recordUI struct {
	answer string
	msgs   []string
	data   []helper.Data
}

func (u *recordUI) Prompt(string, bool) (string, error) { return u.answer, nil }
func (u *recordUI) Message(m string, _ bool)            { u.msgs = append(u.msgs, m) }
func (u *recordUI) Data(d helper.Data) error            { u.data = append(u.data, d); return nil }

// execAsNobody runs path (the launcher) as uid 65534 on a socketpair and converses
// with it from this process.
func execAsNobody(path string, req protocol.Request, ui helper.UI) (string, error) {
	// Ignored: the launcher gives the helper a fixed environment.
	return execAsNobodyEnv(path, []string{"OTPGATE_CONFIG=/tmp/evil.toml", "GOTRACEBACK=all"}, req, ui)
}

// execAsNobodyEnv is execAsNobody with the environment env.
func execAsNobodyEnv(path string, env []string, req protocol.Request, ui helper.UI) (string, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "m"), os.NewFile(uintptr(fds[1]), "t")
	c, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return "", err
	}
	defer c.Close()
	cmd := asNobody(path)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout = theirs, theirs
	if err := cmd.Start(); err != nil {
		return "", err
	}
	theirs.Close()
	v, err := helper.Converse(c, req, ui, 20*time.Second)
	c.Close()
	if werr := cmd.Wait(); err == nil && werr != nil {
		err = werr
	}
	return v, err
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

func exitErr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// TestSetuidHost runs pamtester setuid root as nobody, as sudo and su run
// PAM: real uid 65534, effective uid 0. The module makes the helper wholly
// root, so the helper is in trusted mode and honours config=; without
// that it would be in self mode and refuse the PAM request.
func TestSetuidHost(t *testing.T) {
	s := newStack(t, "")
	pt, err := exec.LookPath("pamtester")
	if err != nil {
		t.Skip("pamtester is not installed (apt-get install pamtester)")
	}
	nobodyName(t)
	dir, err := os.MkdirTemp(buildDir, "suid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	host := filepath.Join(dir, "pamtester")
	copyFile(t, pt, host, 0o755)
	if err := os.Chmod(host, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	secret, _ := s.enroll("alice")
	svc := s.etcService(s.otpgate("required"))
	cmd := asNobody(host, svc, "alice", "authenticate")
	cmd.Stdin = strings.NewReader(code(t, secret, 0) + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("setuid host: %v\n%s", err, out)
	}
	if st, _ := s.store.ReadState("alice"); st.LastSuccess.IsZero() {
		t.Fatal("no success recorded")
	}
}
