package doctor

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCoverage: a host where otpgate is in no PAM stack (and sshd is not
// read) is a finding, not "no problems found"; with pam_otpgate in one
// stack it is not. The note names the config and says when it is absent.
func TestCoverage(t *testing.T) {
	dir := t.TempDir()
	pamd := filepath.Join(dir, "pam.d")
	os.Mkdir(pamd, 0o755)
	os.WriteFile(filepath.Join(pamd, "sudo"), []byte("auth required pam_unix.so\n"), 0o644)
	passwd := filepath.Join(dir, "passwd")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644)
	cfg := filepath.Join(dir, "config.toml")
	opts := Options{ConfigPath: cfg, SSHD: "none", PAMDir: pamd, Passwd: passwd, Group: "/etc/group"}

	r := Run(opts)
	var cov []Finding
	for _, f := range r.Findings {
		if f.Check == "coverage" {
			cov = append(cov, f)
		}
	}
	if len(cov) != 1 || !strings.Contains(cov[0].Problem, "protects no login") || !strings.Contains(cov[0].Fix, "pam_otpgate") {
		t.Errorf("no stack with otpgate: coverage findings %v, want one that says no login is protected", cov)
	}
	if want := "config " + cfg + " (absent: defaults)"; !slices.Contains(r.Checked, want) {
		t.Errorf("notes %q lack %q", r.Checked, want)
	}

	os.WriteFile(filepath.Join(pamd, "sudo"), []byte("auth required pam_otpgate.so\nauth required pam_unix.so\n"), 0o644)
	os.WriteFile(cfg, []byte("store = \""+filepath.Join(dir, "store")+"\"\n"), 0o644)
	r = Run(opts)
	for _, f := range r.Findings {
		if f.Check == "coverage" {
			t.Errorf("otpgate in the sudo stack: %s", f)
		}
	}
	if want := "config " + cfg; !slices.Contains(r.Checked, want) {
		t.Errorf("notes %q lack %q", r.Checked, want)
	}
}
