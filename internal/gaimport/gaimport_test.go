package gaimport

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Files as google-authenticator 20191231 (Debian 12) writes them.
const (
	totpFile = "JOBO273W4BOJSXIY54RG6P4K5M\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n" +
		"63567295\n64420013\n80905551\n82659736\n49223484\n"
	wideFile = "H5ICRPDWS6QZKMMY6JQNRWM6DI\n\" RATE_LIMIT 3 30 1764416760\n\" WINDOW_SIZE 17\n\" STEP_SIZE 60\n\" DISALLOW_REUSE 29406946 29406947\n\" TOTP_AUTH\n"
	hotpFile = "SAMKMVAKMBCSC4STQ3E5NFBWAE\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n\" HOTP_COUNTER 1\n43818209\n63552220\n"
)

func TestParse(t *testing.T) {
	f, err := Parse([]byte(totpFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Secret) != 16 || f.StepSize != 30 || f.WindowSize != 3 || f.StepsEachSide() != 1 ||
		f.RateLimit != "3 30" || !f.DisallowReuse || len(f.UsedSteps) != 0 || len(f.Ignored) != 0 {
		t.Errorf("TOTP file: %+v", f)
	}
	if strings.Join(f.Scratch, ",") != "63567295,64420013,80905551,82659736,49223484" {
		t.Errorf("scratch codes %v", f.Scratch)
	}
	f, err = Parse([]byte(wideFile + "\" TIME_SKEW 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.StepSize != 60 || f.WindowSize != 17 || f.StepsEachSide() != 8 || len(f.Scratch) != 0 ||
		len(f.UsedSteps) != 2 || f.UsedSteps[1] != 29406947 || f.RateLimit != "3 30" || len(f.Ignored) != 1 || f.Ignored[0] != "TIME_SKEW" {
		t.Errorf("wide file: %+v", f)
	}
	// An even window: google-authenticator accepts one more step ahead.
	f, _ = Parse([]byte("JOBO273W4BOJSXIY54RG6P4K5M\n\" WINDOW_SIZE 4\n"))
	if f.StepsEachSide() != 2 || f.WindowSize != 4 {
		t.Errorf("WINDOW_SIZE 4: %d steps", f.StepsEachSide())
	}
	// Defaults of a bare file.
	f, _ = Parse([]byte("JOBO273W4BOJSXIY54RG6P4K5M\n"))
	if f.StepSize != DefaultStepSize || f.WindowSize != DefaultWindowSize || f.DisallowReuse || f.RateLimit != "" {
		t.Errorf("bare file: %+v", f)
	}
}

func TestParseRefuses(t *testing.T) {
	if _, err := Parse([]byte(hotpFile)); !errors.Is(err, ErrHOTP) {
		t.Errorf("HOTP file: %v", err)
	}
	for name, in := range map[string]string{
		"empty":          "",
		"80-bit secret":  "JBSWY3DPEHPK3PXP\n",
		"not base32":     "not a secret at all!!\n",
		"garbage line":   "JOBO273W4BOJSXIY54RG6P4K5M\nhunter2\n",
		"short scratch":  "JOBO273W4BOJSXIY54RG6P4K5M\n1234567\n",
		"bad step":       "JOBO273W4BOJSXIY54RG6P4K5M\n\" STEP_SIZE x\n",
		"zero window":    "JOBO273W4BOJSXIY54RG6P4K5M\n\" WINDOW_SIZE 0\n",
		"bad reuse step": "JOBO273W4BOJSXIY54RG6P4K5M\n\" DISALLOW_REUSE -1\n",
	} {
		_, err := Parse([]byte(in))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		// A refusal never quotes the file: a line may hold a secret.
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "JBSWY3DP") {
			t.Errorf("%s: the error quotes the file: %v", name, err)
		}
	}
}

func write(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return p
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	uid := os.Getuid()
	good := write(t, dir, "good", totpFile, 0o400)
	s, err := Open(good, uid)
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Data) != totpFile {
		t.Errorf("read %q", s.Data)
	}
	s.Close()

	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		path, want string
		uid        int
	}{
		"symlink":        {link, "is a symbolic link", uid},
		"group-writable": {write(t, dir, "gw", totpFile, 0o620), "writable by group or others", uid},
		"world-writable": {write(t, dir, "ow", totpFile, 0o602), "writable by group or others", uid},
		"other owner":    {good, "not by the user", uid + 1},
		"fifo":           {fifo, "not a regular file", uid},
		"directory":      {dir + "/", "not a regular file", uid},
		"too big":        {write(t, dir, "big", strings.Repeat("x", MaxFileSize+1), 0o600), "over the", uid},
	} {
		s, err := Open(c.path, c.uid)
		if err == nil {
			s.Close()
			t.Errorf("%s: opened", name)
		} else if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), filepath.Base(strings.TrimSuffix(c.path, "/"))) {
			t.Errorf("%s: %v; want %q and the path", name, err, c.want)
		}
	}
	if _, err := Open(filepath.Join(dir, "missing"), uid); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestRemove: Remove unlinks the file read, and not a file put in its
// place since.
func TestRemove(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, FileName, totpFile, 0o400)
	s, err := Open(p, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Errorf("still there: %v", err)
	}

	p = write(t, dir, FileName, totpFile, 0o400)
	s, err = Open(p, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	os.Remove(p)
	if err := os.Symlink("/etc/passwd", p); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(); err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("a replaced file was removed: %v", err)
	}
	if _, err := os.Lstat(p); err != nil {
		t.Errorf("the replacement is gone: %v", err)
	}
}

func TestUsers(t *testing.T) {
	dir := t.TempDir()
	pw := write(t, dir, "passwd", "root:x:0:0:root:/root:/bin/bash\n"+
		"alice:x:1000:1000::/home/alice:/bin/bash\n"+
		"alice:x:1000:1000::/home/alice:/bin/bash\n"+
		"bob:x:1001:1001::/home/bob:/bin/bash\n"+
		"nohome:x:1002:1002:::/bin/bash\n", 0o644)
	a, err := Lookup(pw, "bob")
	if err != nil || a != (Account{"bob", 1001, "/home/bob"}) || a.DefaultPath() != "/home/bob/.google_authenticator" {
		t.Errorf("Lookup(bob) = %+v, %v", a, err)
	}
	if _, err := Lookup(pw, "carol"); err == nil {
		t.Error("an unknown user was found")
	}
	if _, err := Lookup(pw, "nohome"); err == nil {
		t.Error("a user without a home was found")
	}
	all, err := All(pw, func(p string) bool { return p != "/home/bob/.google_authenticator" })
	if err != nil || len(all) != 2 || all[0].Name != "root" || all[1].Name != "alice" {
		t.Errorf("All = %+v, %v", all, err)
	}
}
