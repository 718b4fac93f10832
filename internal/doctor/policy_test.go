package doctor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDoctorPolicy: doctor shows the policy and the deadline in effect,
// and reports a group or user name the system does not know (getent).
func TestDoctorPolicy(t *testing.T) {
	if _, err := os.Stat("/usr/bin/getent"); err != nil {
		if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	pamDir := filepath.Join(dir, "pam.d")
	os.Mkdir(pamDir, 0o755)
	run := func(cfg string) *Report {
		path := filepath.Join(dir, "config.toml")
		if err := os.WriteFile(path, []byte("store = \""+dir+"/store\"\n"+cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return Run(Options{ConfigPath: path, SSHD: "none", PAMDir: pamDir, Passwd: "/etc/passwd", Group: "/etc/group"})
	}
	notes := func(r *Report) string { return strings.Join(r.Checked, "\n") }
	policyFindings := func(r *Report) []Finding {
		var out []Finding
		for _, f := range r.Findings {
			if f.Check == "policy" || f.Check == "config" {
				out = append(out, f)
			}
		}
		return out
	}

	r := run("")
	if !strings.Contains(notes(r), "policy: everyone must use a code") || !strings.Contains(notes(r), "enroll deadline: none") {
		t.Errorf("no policy: notes\n%s", notes(r))
	}

	r = run("[policy]\nrequire_groups = [\"root\"]\nexempt_groups = [\"daemon\"]\nexempt_users = [\"nobody\"]\n[enroll]\ndeadline = 2099-01-31\n")
	if f := policyFindings(r); len(f) != 0 {
		t.Errorf("a valid policy: findings %v", f)
	}
	for _, want := range []string{
		"policy: members of root must use a code (others need none); exempt: members of daemon; nobody",
		"enroll deadline: 2099-01-31 (from midnight, ",
		"days left",
	} {
		if !strings.Contains(notes(r), want) {
			t.Errorf("notes do not say %q:\n%s", want, notes(r))
		}
	}

	r = run("[policy]\nrequire_groups = [\"otpgate-no-such-group\"]\nexempt_users = [\"otpgate-no-such-user\"]\n[enroll]\ndeadline = 2020-01-01\n")
	f := policyFindings(r)
	got := problems(f)
	if len(f) != 2 || !strings.Contains(got, `"otpgate-no-such-group"`) || !strings.Contains(got, `"otpgate-no-such-user"`) || !strings.Contains(got, "require_groups") {
		t.Errorf("unknown names: findings\n%s", got)
	}
	if !strings.Contains(notes(r), "enroll deadline: 2020-01-01 (from midnight, ") || !strings.Contains(notes(r), "has passed") {
		t.Errorf("past deadline: notes\n%s", notes(r))
	}
}
