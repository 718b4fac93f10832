package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests import files written by the real google-authenticator tool
// (Debian's libpam-google-authenticator), as the real users they belong
// to, and check the codes through otpgate verify. They need root.

// gaPrefix starts the name of every user these tests create.
const gaPrefix = "otpga-"

const gaTimeout = 30 * time.Second

// gaSkipOrFail skips, or fails when OTPGATE_REQUIRE_TOOLS is set (as
// internal/e2e does).
func gaSkipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" {
		t.Fatalf("%s (OTPGATE_REQUIRE_TOOLS is set, so this is a failure, not a skip)", msg)
	}
	t.Skip(msg)
}

func gaRequire(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		gaSkipOrFail(t, "import tests need root (they add users and read their homes); run as root: go test ./internal/cli/")
	}
	var missing []string
	for _, tool := range []string{"google-authenticator", "oathtool", "useradd", "userdel", "runuser"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
				missing = append(missing, tool)
			}
		}
	}
	if len(missing) > 0 {
		gaSkipOrFail(t, "missing tools: %s (Debian: scripts/test-deps.sh installs them)", strings.Join(missing, ", "))
	}
}

func gaRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), gaTimeout)
	defer cancel()
	if _, err := exec.LookPath(name); err != nil {
		name = "/usr/sbin/" + name
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// gaUser is a real account made for one test.
type gaUser struct {
	name, home string
	uid        int
}

func newGAUser(t *testing.T) gaUser {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	name := gaPrefix + hex.EncodeToString(b)
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), gaTimeout)
		out, err := exec.CommandContext(ctx, "/usr/sbin/useradd", "--create-home", "--shell", "/bin/bash", "--comment", "otpgate import test", name).CombinedOutput()
		cancel()
		if err == nil {
			break
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 10 || try > 50 { // 10: the passwd file is locked
			t.Fatalf("useradd %s: %v\n%s", name, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), gaTimeout)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "/usr/sbin/userdel", "--force", "--remove", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	return gaUser{name: name, home: u.HomeDir, uid: uid}
}

func (u gaUser) file() string { return filepath.Join(u.home, ".google_authenticator") }

// writeGA runs google-authenticator as the user, non-interactively,
// writing path; extra are its options (-t or -c, -e N, -w N, -S N).
func (u gaUser) writeGA(t *testing.T, path string, extra ...string) {
	t.Helper()
	args := append([]string{"-u", u.name, "--", "google-authenticator", "-f", "-q", "-r", "3", "-R", "30", "-s", path}, extra...)
	gaRun(t, "runuser", args...)
}

// gaFixture is a store and config for otpgate run in this process.
type gaFixture struct {
	dir, config string
}

func newGAFixture(t *testing.T) gaFixture {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("issuer = \"web-01\"\nstore = %q\n", filepath.Join(dir, "store"))), 0o644); err != nil {
		t.Fatal(err)
	}
	return gaFixture{dir: dir, config: cfg}
}

// otpgate runs otpgate with the fixture's config and stdin.
func (f gaFixture) otpgate(stdin string, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Main(append([]string{"--config", f.config}, args...), strings.NewReader(stdin), &o, &e)
	return code, o.String(), e.String()
}

func (f gaFixture) verify(t *testing.T, user, code string, want bool) {
	t.Helper()
	rc, _, stderr := f.otpgate(code+"\n", "verify", "--user", user)
	if (rc == 0) != want {
		t.Errorf("verify %s (want accepted=%v): exit %d: %s", code, want, rc, stderr)
	}
}

// importJSON runs the import with --json and decodes the reports.
func (f gaFixture) importJSON(t *testing.T, wantRC int, args ...string) []importReport {
	t.Helper()
	rc, stdout, stderr := f.otpgate("", append([]string{"import-google-authenticator", "--json"}, args...)...)
	if rc != wantRC {
		t.Fatalf("import %v: exit %d, want %d\n%s%s", args, rc, wantRC, stdout, stderr)
	}
	var rs []importReport
	if err := json.Unmarshal([]byte(stdout), &rs); err != nil {
		t.Fatalf("import --json: %v\n%s", err, stdout)
	}
	return rs
}

func secretOf(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitN(string(b), "\n", 2)[0]
}

func scratchOf(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n")[1:] {
		if len(l) == 8 && strings.Trim(l, "0123456789") == "" {
			out = append(out, l)
		}
	}
	return out
}

// TestImportGATOTP: a TOTP file with scratch codes; after the import the
// app's codes (oathtool) and the scratch codes work, each once; the
// original is left alone; a second import needs --force; --remove-original
// removes the file.
func TestImportGATOTP(t *testing.T) {
	gaRequire(t)
	u := newGAUser(t)
	u.writeGA(t, u.file(), "-t", "-d", "-w", "3", "-e", "5")
	secret, scratch := secretOf(t, u.file()), scratchOf(t, u.file())
	if len(scratch) != 5 {
		t.Fatalf("google-authenticator wrote %d scratch codes, want 5", len(scratch))
	}
	f := newGAFixture(t)
	rs := f.importJSON(t, 0, "--user", u.name)
	if len(rs) != 1 {
		t.Fatalf("%d reports", len(rs))
	}
	r := rs[0]
	if !r.Imported || r.User != u.name || r.File != u.file() || r.Algorithm != "SHA1" || r.Digits != 6 || r.Period != 30 ||
		r.BackupCodes != 5 || r.WindowSize != 3 || r.WindowNeeded != 1 || r.WindowOtpgate != 1 || r.OriginalRemoved || r.Replaced {
		t.Errorf("report %+v", r)
	}
	if len(r.Superseded) != 2 || !strings.HasPrefix(r.Superseded[0], "RATE_LIMIT 3 30") || !strings.HasPrefix(r.Superseded[1], "DISALLOW_REUSE") {
		t.Errorf("superseded %q", r.Superseded)
	}
	if _, err := os.Stat(u.file()); err != nil {
		t.Errorf("the original is gone: %v", err)
	}
	// The store holds hashes, never the scratch codes.
	stored, err := os.ReadFile(filepath.Join(f.dir, "store", "users", u.name+".toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range scratch {
		if strings.Contains(string(stored), c) {
			t.Errorf("scratch code %s stored in clear", c)
		}
	}
	if n := strings.Count(string(stored), ",kind=scratch$"); n != 5 {
		t.Errorf("%d hashes marked as scratch codes, want 5", n)
	}

	code := strings.TrimSpace(gaRun(t, "oathtool", "--totp", "-b", secret))
	f.verify(t, u.name, code, true)
	f.verify(t, u.name, code, false) // replayed
	for _, c := range scratch {
		f.verify(t, u.name, c, true)
	}
	f.verify(t, u.name, scratch[0], false) // spent

	// Again: refused without --force, nothing changed.
	rc, _, stderr := f.otpgate("", "import-google-authenticator", "--user", u.name)
	if rc != 1 || !strings.Contains(stderr, "already enrolled") || !strings.Contains(stderr, "--force") {
		t.Errorf("second import: exit %d: %s", rc, stderr)
	}
	rs = f.importJSON(t, 0, "--user", u.name, "--force", "--remove-original")
	if !rs[0].Imported || !rs[0].Replaced || !rs[0].OriginalRemoved || rs[0].BackupCodes != 5 {
		t.Errorf("forced import: %+v", rs[0])
	}
	if _, err := os.Lstat(u.file()); !os.IsNotExist(err) {
		t.Errorf("--remove-original left the file: %v", err)
	}
	// The scratch codes are back, as the file still had them.
	f.verify(t, u.name, scratch[1], true)
}

// TestImportGAWideNoScratch: a 60 s step and WINDOW_SIZE 17, no scratch
// codes: the period is carried over, the wider window is reported and not
// applied; the human output says so.
func TestImportGAWideNoScratch(t *testing.T) {
	gaRequire(t)
	u := newGAUser(t)
	u.writeGA(t, u.file(), "-t", "-d", "-w", "17", "-S", "60", "-e", "0")
	f := newGAFixture(t)
	rc, stdout, stderr := f.otpgate("", "import-google-authenticator", "--user", u.name)
	if rc != 0 {
		t.Fatalf("exit %d: %s%s", rc, stdout, stderr)
	}
	for _, want := range []string{"imported from " + u.file(), "60 s", "0 backup codes", "WINDOW_SIZE 17 accepted 8 steps", "was not widened", "run otpgate backup-codes", "left in place"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	code := strings.TrimSpace(gaRun(t, "oathtool", "--totp", "-s", "60", "-b", secretOf(t, u.file())))
	f.verify(t, u.name, code, true)
	f.verify(t, u.name, code, false)
}

// TestImportGARefused: HOTP, a symlink, a group-writable file and one
// owned by another user are refused, and nothing is stored.
func TestImportGARefused(t *testing.T) {
	gaRequire(t)
	u := newGAUser(t)
	other := newGAUser(t)
	f := newGAFixture(t)
	try := func(name, want string, args ...string) {
		t.Helper()
		rc, _, stderr := f.otpgate("", append([]string{"import-google-authenticator", "--user", u.name}, args...)...)
		if rc != 1 || !strings.Contains(stderr, want) {
			t.Errorf("%s: exit %d, want 1 and %q: %s", name, rc, want, stderr)
		}
		if _, err := os.Stat(filepath.Join(f.dir, "store", "users", u.name+".toml")); err == nil {
			t.Errorf("%s: an enrollment was stored", name)
		}
	}
	try("no file", "does not exist")

	u.writeGA(t, u.file(), "-c", "-w", "3", "-e", "2")
	try("HOTP", "counter-based (HOTP)")
	os.Remove(u.file())

	// A link in the user's home to a file the user owns, and to another
	// user's file.
	real := filepath.Join(u.home, "ga-real")
	u.writeGA(t, real, "-t", "-d", "-w", "3")
	if err := os.Symlink(real, u.file()); err != nil {
		t.Fatal(err)
	}
	try("symlink", "is a symbolic link")
	other.writeGA(t, other.file(), "-t", "-d", "-w", "3")
	os.Remove(u.file())
	if err := os.Symlink(other.file(), u.file()); err != nil {
		t.Fatal(err)
	}
	try("symlink to another user's file", "is a symbolic link")
	try("--file of another user", "not by the user", "--file", other.file())
	os.Remove(u.file())

	u.writeGA(t, u.file(), "-t", "-d", "-w", "3")
	if err := os.Chmod(u.file(), 0o460); err != nil {
		t.Fatal(err)
	}
	try("group-writable", "writable by group or others")
	if err := os.Chmod(u.file(), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(u.file(), 0, 0); err != nil {
		t.Fatal(err)
	}
	try("owned by root", "not by the user")
	if err := os.Chown(u.file(), u.uid, -1); err != nil {
		t.Fatal(err)
	}
	if rc, _, stderr := f.otpgate("", "import-google-authenticator", "--user", u.name); rc != 0 {
		t.Errorf("the file put right: exit %d: %s", rc, stderr)
	}

	// Usage mistakes.
	for _, args := range [][]string{{}, {"--user", u.name, "--all"}, {"--all", "--file", "/x"}} {
		if rc, _, _ := f.otpgate("", append([]string{"import-google-authenticator"}, args...)...); rc != 2 {
			t.Errorf("import %v: exit %d, want 2", args, rc)
		}
	}
	if rc, _, _ := f.otpgate("", "import-google-authenticator", "--user", gaPrefix+"nosuchuser"); rc != 1 {
		t.Errorf("an unknown user: exit %d, want 1", rc)
	}
}

// TestImportGAAll: --all finds every user of the passwd database whose
// home holds a file, and imports each.
func TestImportGAAll(t *testing.T) {
	gaRequire(t)
	a, b := newGAUser(t), newGAUser(t)
	a.writeGA(t, a.file(), "-t", "-d", "-w", "3", "-e", "1")
	b.writeGA(t, b.file(), "-t", "-d", "-w", "3", "-e", "2")
	f := newGAFixture(t)
	rc, stdout, stderr := f.otpgate("", "import-google-authenticator", "--all", "--json")
	var rs []importReport
	if err := json.Unmarshal([]byte(stdout), &rs); err != nil {
		t.Fatalf("exit %d: %v\n%s%s", rc, err, stdout, stderr)
	}
	got := map[string]importReport{}
	for _, r := range rs {
		got[r.User] = r
		if r.User != a.name && r.User != b.name {
			t.Logf("another file on this host: %+v", r) // a host's own users; the exit status then reflects them
		}
	}
	if !got[a.name].Imported || got[a.name].BackupCodes != 1 || !got[b.name].Imported || got[b.name].BackupCodes != 2 {
		t.Errorf("--all: %+v", rs)
	}
	if len(rs) == 2 && rc != 0 {
		t.Errorf("--all: exit %d: %s", rc, stderr)
	}
	for _, u := range []gaUser{a, b} {
		f.verify(t, u.name, strings.TrimSpace(gaRun(t, "oathtool", "--totp", "-b", secretOf(t, u.file()))), true)
	}
}

// TestImportGAUsedSteps: a step the file's DISALLOW_REUSE lists as used
// stays used after the import: its code is a replay.
func TestImportGAUsedSteps(t *testing.T) {
	gaRequire(t)
	u := newGAUser(t)
	u.writeGA(t, u.file(), "-t", "-d", "-w", "3")
	step := time.Now().Unix() / 30
	b, err := os.ReadFile(u.file())
	if err != nil {
		t.Fatal(err)
	}
	content := strings.Replace(string(b), "\" DISALLOW_REUSE\n", fmt.Sprintf("\" DISALLOW_REUSE %d\n", step), 1)
	if content == string(b) {
		t.Fatalf("no DISALLOW_REUSE line in:\n%s", b)
	}
	if err := os.WriteFile(u.file(), []byte(content), 0o400); err != nil {
		t.Fatal(err)
	}
	f := newGAFixture(t)
	if rc, _, stderr := f.otpgate("", "import-google-authenticator", "--user", u.name); rc != 0 {
		t.Fatalf("exit %d: %s", rc, stderr)
	}
	used := strings.TrimSpace(gaRun(t, "oathtool", "--totp", "-b", secretOf(t, u.file()), "-N", fmt.Sprintf("@%d", step*30)))
	rc, _, stderr := f.otpgate(used+"\n", "verify", "--user", u.name)
	if rc != 1 || !strings.Contains(stderr, "replayed") {
		t.Errorf("the code of a used step: exit %d: %s", rc, stderr)
	}
}
