package packaging

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/config"
)

// testVersion is the version the test package is built with.
const testVersion = "0.0.0+pkgtest"

var (
	debOnce sync.Once
	debDir  string // the copy of the tree make deb ran in
	debPath string // the .deb make deb wrote
	debErr  string // why there is none
)

// TestMain removes the tree buildDeb made after every test ran.
func TestMain(m *testing.M) {
	code := m.Run()
	if debDir != "" {
		os.RemoveAll(debDir)
	}
	os.Exit(code)
}

// buildDeb runs make deb once, in a copy of the working tree (make deb
// rebuilds bin/ and build/ with the package's paths; the copy keeps the
// tree other tests and people use as it is), and returns the .deb.
func buildDeb(t *testing.T) string {
	t.Helper()
	needTool(t, "gcc", "gcc")
	needTool(t, "make", "make")
	needTool(t, "dpkg-deb", "dpkg")
	if _, err := os.Stat("/usr/include/security/pam_modules.h"); err != nil {
		skipOrFail(t, "no PAM headers; install libpam0g-dev")
	}
	debOnce.Do(func() {
		dir, err := os.MkdirTemp("", "otpgate-deb-")
		if err != nil {
			debErr = err.Error()
			return
		}
		debDir = dir // TestMain removes it: every test of the package uses it
		if err := copyTree(repoRoot(t), dir); err != nil {
			debErr = "copying the tree: " + err.Error()
			return
		}
		goCmd := goTool(t)
		out, err := runErr(8*time.Minute, dir, nil, "", "make", "deb", "GO="+goCmd,
			"VERSION="+testVersion, "DEB_MAINTAINER=otpgate tests <otpgate-tests@localhost.localdomain.invalid>")
		if err != nil {
			debErr = "make deb: " + err.Error() + "\n" + out
			return
		}
		matches, _ := filepath.Glob(filepath.Join(dir, "dist", "otpgate_"+testVersion+"_*.deb"))
		if len(matches) != 1 {
			debErr = "make deb wrote no dist/otpgate_" + testVersion + "_ARCH.deb:\n" + out
			return
		}
		debPath = matches[0]
	})
	if debPath == "" {
		t.Fatal(debErr)
	}
	return debPath
}

// copyTree copies the repository's files into dst, without .git and
// build outputs.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			switch rel {
			case ".git", "bin", "build", "dist":
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, info.Mode().Perm())
	})
}

// TestDebLintian: lintian shows no error, and no warning that is not
// overridden with a reason (contrib/debian/lintian-overrides).
func TestDebLintian(t *testing.T) {
	lintian := needTool(t, "lintian", "lintian")
	deb := buildDeb(t)
	out, err := runErr(5*time.Minute, "", nil, "", lintian, "--fail-on", "none", deb)
	if err != nil {
		t.Fatalf("lintian: %v\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
			t.Errorf("lintian: %s", line)
		}
	}
	t.Logf("lintian:\n%s", out)
}

// TestDebContents checks the files, their modes and the conffile.
func TestDebContents(t *testing.T) {
	deb := buildDeb(t)
	listing := run(t, time.Minute, "", nil, "dpkg-deb", "-c", deb)
	multiarch, _ := runErr(time.Minute, "", nil, "", "dpkg-architecture", "-qDEB_HOST_MULTIARCH")
	want := map[string]string{
		"./usr/bin/otpgate":                                                      "-rwxr-xr-x root/root",
		"./usr/libexec/otpgate/otpgate-helper":                                   "-rwxr-xr-x root/root",
		"./usr/libexec/otpgate/otpgate-helper-pg":                                "-rwxr-xr-x root/root",
		"./usr/libexec/otpgate/otpgate-db":                                       "-rwxr-xr-x root/root",
		"./usr/libexec/otpgate/otpgate-launch-helper":                            "-rwxr-xr-x root/root", // setuid only through dpkg-statoverride
		"./usr/lib/" + strings.TrimSpace(multiarch) + "/security/pam_otpgate.so": "-rw-r--r-- root/root",
		"./etc/otpgate/config.toml":                                              "-rw-r--r-- root/root",
		"./usr/share/pam-configs/otpgate":                                        "-rw-r--r-- root/root",
		"./usr/lib/tmpfiles.d/otpgate.conf":                                      "-rw-r--r-- root/root",
		"./lib/systemd/system/otpgate-helper.socket":                             "-rw-r--r-- root/root",
		"./lib/systemd/system/otpgate-helper.service":                            "-rw-r--r-- root/root",
		"./usr/share/man/man1/otpgate.1.gz":                                      "-rw-r--r-- root/root",
		"./usr/share/man/man5/otpgate.toml.5.gz":                                 "-rw-r--r-- root/root",
		"./usr/share/man/man8/pam_otpgate.8.gz":                                  "-rw-r--r-- root/root",
		"./usr/share/man/man8/otpgate-helper.8.gz":                               "-rw-r--r-- root/root",
		"./usr/share/doc/otpgate/copyright":                                      "-rw-r--r-- root/root",
		"./usr/share/doc/otpgate/changelog.gz":                                   "-rw-r--r-- root/root",
	}
	got := map[string]string{}
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 {
			got[f[len(f)-1]] = f[0] + " " + f[1]
		}
	}
	for path, mode := range want {
		if got[path] != mode {
			t.Errorf("%s: %q in the package, want %q", path, got[path], mode)
		}
	}
	if strings.Contains(listing, "/var/lib/otpgate") {
		t.Errorf("the package ships the store; postinst and tmpfiles.d make it:\n%s", listing)
	}
	if out := run(t, time.Minute, "", nil, "dpkg-deb", "-f", deb, "Version"); strings.TrimSpace(out) != testVersion {
		t.Errorf("Version %q, want %q", out, testVersion)
	}
	ctl := t.TempDir()
	run(t, time.Minute, "", nil, "dpkg-deb", "-e", deb, ctl)
	conffiles, _ := os.ReadFile(filepath.Join(ctl, "conffiles"))
	if strings.TrimSpace(string(conffiles)) != "/etc/otpgate/config.toml" {
		t.Errorf("conffiles: %q, want /etc/otpgate/config.toml", conffiles)
	}
	checkConffile(t, debFile(t, deb, "./etc/otpgate/config.toml"))
}

// checkConffile: every key of contrib/config.toml is there, commented
// out with its default; the file as shipped and with every key (but
// issuer, whose default is the host name) uncommented give the defaults.
func checkConffile(t *testing.T, data []byte) {
	t.Helper()
	example, err := os.ReadFile(filepath.Join(repoRoot(t), "contrib/config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	keyLine := regexp.MustCompile(`(?m)^#?[a-z_]+ *=.*$`)
	keys := keyLine.FindAllString(string(example), -1)
	shipped := keyLine.FindAllString(string(data), -1)
	if len(shipped) != len(keys) || len(keys) < 5 {
		t.Fatalf("the conffile has %d key lines, contrib/config.toml %d:\n%s", len(shipped), len(keys), data)
	}
	for _, l := range shipped {
		if !strings.HasPrefix(l, "#") {
			t.Errorf("conffile: %q is not commented out", l)
		}
	}
	want := config.Default()
	if got, err := config.Parse("conffile", data); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("the conffile as shipped gives %+v, %v; want the defaults %+v", got, err, want)
	}
	// issuer's default is the host name: its line shows an example.
	uncommented := regexp.MustCompile(`(?m)^#([a-hj-z_][a-z_]* *=)`).ReplaceAll(data, []byte("$1"))
	if got, err := config.Parse("conffile", uncommented); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("the conffile with every key uncommented gives %+v, %v; want the defaults %+v", got, err, want)
	}
}

// debFile returns one file of the package's data.
func debFile(t *testing.T, deb, name string) []byte {
	t.Helper()
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	var buf bytes.Buffer
	cmd.Stdout = &buf
	if err := cmd.Run(); err != nil {
		t.Fatalf("dpkg-deb --fsys-tarfile: %v", err)
	}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s is not in the package", name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return data
		}
	}
}
