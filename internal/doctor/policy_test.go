package doctor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
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

// TestDoctorExemptNotReported: a user who must be enrolled (--group) but
// whom [policy] exempts is not reported as unenrolled; the others are.
func TestDoctorExemptNotReported(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" {
			t.Fatal("makes users with useradd: run as root")
		}
		t.Skip("makes users with useradd: run as root")
	}
	g := "otpgdoc" + strconv.FormatInt(time.Now().UnixNano()%1_000_000, 36)
	sys := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	sys("groupadd", g)
	t.Cleanup(func() { exec.Command("groupdel", g).Run() })
	users := []string{g + "a", g + "b"}
	for _, u := range users {
		sys("useradd", "--no-create-home", "--user-group", "--groups", g, "--shell", "/usr/sbin/nologin", u)
		t.Cleanup(func() { exec.Command("userdel", "--force", u).Run(); exec.Command("groupdel", u).Run() })
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	os.WriteFile(path, []byte("store = \""+dir+"/store\"\n[policy]\nexempt_users = [\""+users[0]+"\"]\n"), 0o644)
	r := Run(Options{ConfigPath: path, SSHD: "none", PAMDir: t.TempDir(), Passwd: "/etc/passwd", Group: "/etc/group", Groups: []string{g}})
	got := problems(r.Findings)
	if strings.Contains(got, users[0]+" (") || !strings.Contains(got, users[1]+" (in group "+g+") is not enrolled") {
		t.Errorf("want %s (exempt) not reported and %s reported:\n%s", users[0], users[1], got)
	}
}
