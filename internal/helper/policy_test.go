package helper

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/authlog"
	"github.com/otpgate/otpgate/internal/protocol"
)

// logBuf collects the helper's log lines (no syslog socket: the
// fallback writer gets them).
func logBuf(t *testing.T, f *fixture) (*authlog.Logger, *strings.Builder) {
	var b strings.Builder
	return authlog.Dial(filepath.Join(f.dir, "no-syslog"), "otpgate", &b), &b
}

// pamLog is f.pam with a log and options.
func (f *fixture) pamWith(t *testing.T, o Options, user string, ui UI, args ...string) string {
	t.Helper()
	req := protocol.Request{Op: protocol.OpAuthenticate, User: user, Service: "sshd", RHost: "192.0.2.1",
		Args: append([]string{"config=" + f.config}, args...)}
	v, exit := f.run(t, o, req, ui)
	if exit != 0 {
		t.Fatalf("helper exit status %d after verdict %s", exit, v)
	}
	return v
}

// zoneFile copies a zone of the system's zoneinfo for Options.Localtime.
func zoneFile(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/usr/share/zoneinfo", name))
	if err != nil {
		t.Skip("no zoneinfo (tzdata):", err)
	}
	p := filepath.Join(t.TempDir(), "localtime")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDeadline: [enroll] deadline for a user without a code. The
// fixture's clock is 2027-01-15 08:00 UTC.
func TestDeadline(t *testing.T) {
	utc := zoneFile(t, "UTC")

	// Before: in, no prompt, a message with the days left and how to
	// enroll; nullok changes nothing.
	f := newFixture(t, "[enroll]\ndeadline = 2027-02-01\n")
	for _, args := range [][]string{nil, {"nullok"}} {
		log, buf := logBuf(t, f)
		ui := &script{}
		if v := f.pamWith(t, Options{Log: log, Localtime: utc}, "bob", ui, args...); v != protocol.ResultSuccess {
			t.Fatalf("before the deadline %v: %s %q", args, v, ui.messages)
		}
		if len(ui.prompts) != 0 || !ui.said("no verification code is set up for bob yet; from 2027-02-01 on, logins without one are denied (17 days left)") || !ui.said("run otpgate enroll") {
			t.Errorf("before the deadline %v: prompts %q, messages %q", args, ui.prompts, ui.messages)
		}
		if want := "outcome=not-enrolled reason=before-deadline deadline=2027-02-01 days_left=17 policy=everyone"; !strings.Contains(buf.String(), want) {
			t.Errorf("log %q, want %q", buf.String(), want)
		}
	}
	// An enrolled user is still asked, and a wrong code still fails.
	secret, _ := f.enroll(t, "carol")
	if v := f.pamWith(t, Options{Localtime: utc}, "carol", &script{answers: []string{"000000"}}); v != protocol.ResultAuthErr {
		t.Errorf("enrolled user, wrong code, before the deadline: %s", v)
	}
	if v := f.pamWith(t, Options{Localtime: utc}, "carol", &script{answers: []string{f.code(t, secret, 0)}}); v != protocol.ResultSuccess {
		t.Errorf("enrolled user, right code: %s", v)
	}

	// From the deadline on (today, midnight passed): denied with the
	// instructions, nullok or not.
	f = newFixture(t, "[enroll]\ndeadline = 2027-01-15\n")
	for _, args := range [][]string{nil, {"nullok"}} {
		log, buf := logBuf(t, f)
		ui := &script{}
		if v := f.pamWith(t, Options{Log: log, Localtime: utc}, "bob", ui, args...); v != protocol.ResultAuthErr {
			t.Fatalf("after the deadline %v: %s", args, v)
		}
		if !ui.said("the enrollment deadline 2027-01-15 has passed; ask an administrator to enroll you (otpgate enroll --user bob)") {
			t.Errorf("after the deadline %v: messages %q", args, ui.messages)
		}
		if want := "outcome=denied reason=deadline-passed deadline=2027-01-15 policy=everyone"; !strings.Contains(buf.String(), want) {
			t.Errorf("log %q, want %q", buf.String(), want)
		}
	}
	// The host's zone, not UTC: in Honolulu (UTC-10) it is still the
	// 14th, one day left.
	ui := &script{}
	if v := f.pamWith(t, Options{Localtime: zoneFile(t, "Pacific/Honolulu")}, "bob", ui); v != protocol.ResultSuccess || !ui.said("(1 day left)") {
		t.Errorf("in Honolulu: %s %q", v, ui.messages)
	}
	// A zone file that is no zone: denied, as otpgate's fault.
	bad := filepath.Join(f.dir, "badzone")
	os.WriteFile(bad, []byte("UTC\n"), 0o644)
	ui = &script{}
	if v := f.pamWith(t, Options{Localtime: bad}, "bob", ui); v != protocol.ResultAuthErr || !ui.said(setupErrMsg) {
		t.Errorf("bad zone file: %s %q", v, ui.messages)
	}

	// sshcheck (self mode, OpVerify) and a screen locker (OpAuthenticate
	// in self mode) follow the deadline too.
	for _, c := range []struct {
		deadline string
		want     string
	}{{"2027-02-01", protocol.ResultSuccess}, {"2027-01-15", protocol.ResultAuthErr}} {
		f, o := selfFixture(t, "[enroll]\ndeadline = "+c.deadline+"\n")
		o.Localtime = utc
		for _, op := range []string{protocol.OpVerify, protocol.OpAuthenticate} {
			ui := &script{}
			if v := f.self(t, o, protocol.Request{Op: op, Service: "sshcheck"}, ui); v != c.want || len(ui.prompts) != 0 {
				t.Errorf("self %s, deadline %s: %s, prompts %q, messages %q; want %s and no prompt", op, c.deadline, v, ui.prompts, ui.messages, c.want)
			}
		}
	}
}

// requireRootTools skips (or fails under OTPGATE_REQUIRE_TOOLS) unless
// the test can make users and groups.
func requireRootTools(t *testing.T) {
	t.Helper()
	msg := ""
	if os.Geteuid() != 0 {
		msg = "makes users and groups: run as root"
	}
	for _, tool := range []string{"useradd", "userdel", "groupadd", "groupdel", "/usr/bin/getent"} {
		if _, err := exec.LookPath(tool); err != nil && msg == "" {
			msg = tool + " is missing"
		}
	}
	if msg == "" {
		return
	}
	if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" {
		t.Fatalf("%s (OTPGATE_REQUIRE_TOOLS is set)", msg)
	}
	t.Skip(msg)
}

func sysName(kind string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return "otpgh" + kind + hex.EncodeToString(b)
}

func sysRun(t *testing.T, args ...string) {
	t.Helper()
	var out []byte
	var err error
	for try := 0; try < 10; try++ {
		out, err = exec.Command(args[0], args[1:]...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 10 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func sysGroup(t *testing.T) string {
	g := sysName("g")
	sysRun(t, "groupadd", g)
	t.Cleanup(func() { exec.Command("groupdel", g).Run() })
	return g
}

// sysUser makes a user in the supplementary groups given and returns
// its name and uid.
func sysUser(t *testing.T, groups ...string) (string, int) {
	u := sysName("u")
	args := []string{"useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin"}
	if len(groups) > 0 {
		args = append(args, "--groups", strings.Join(groups, ","))
	}
	sysRun(t, append(args, u)...)
	t.Cleanup(func() { exec.Command("userdel", "--force", u).Run(); exec.Command("groupdel", u).Run() })
	pw, err := user.Lookup(u)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(pw.Uid)
	return u, uid
}

// TestPolicy: [policy] with real users and groups, through the PAM
// module's request (trusted mode) and sshcheck's (self mode).
func TestPolicy(t *testing.T) {
	requireRootTools(t)
	staff, svc := sysGroup(t), sysGroup(t)
	inStaff, _ := sysUser(t, staff)
	inSvc, svcUID := sysUser(t, svc)
	outside, _ := sysUser(t)
	ghost := sysName("g")
	f := newFixture(t, fmt.Sprintf("[policy]\nrequire_groups = [%q]\nexempt_groups = [%q]\n", staff, svc))
	secret, _ := f.enroll(t, inStaff)
	f.enroll(t, inSvc) // exempt even when enrolled: no prompt

	for _, c := range []struct {
		user, rule string
	}{{inSvc, "exempt-group:" + svc}, {outside, "not-in-require-groups"}} {
		log, buf := logBuf(t, f)
		ui := &script{}
		if v := f.pamWith(t, Options{Log: log}, c.user, ui); v != protocol.ResultSuccess || len(ui.prompts)+len(ui.messages) != 0 {
			t.Errorf("%s (%s): %s, prompts %q, messages %q; want success without a word", c.user, c.rule, v, ui.prompts, ui.messages)
		}
		if want := "outcome=exempt reason=policy policy=" + c.rule; !strings.Contains(buf.String(), want) {
			t.Errorf("log %q, want %q", buf.String(), want)
		}
	}
	log, buf := logBuf(t, f)
	ui := &script{answers: []string{f.code(t, secret, 0)}}
	if v := f.pamWith(t, Options{Log: log}, inStaff, ui); v != protocol.ResultSuccess || len(ui.prompts) != 1 {
		t.Errorf("required user: %s, prompts %q", v, ui.prompts)
	}
	if want := "outcome=accepted method=totp authenticator=default failures=0 policy=require-group:" + staff; !strings.Contains(buf.String(), want) {
		t.Errorf("log %q, want %q", buf.String(), want)
	}
	// A required user (by the primary group of no one; by membership)
	// without a code, and an unknown user: denied, never exempt.
	other, _ := sysUser(t, staff)
	for _, u := range []string{other, sysName("u")} {
		if v := f.pamWith(t, Options{}, u, &script{}, "nullok"); v == protocol.ResultSuccess {
			t.Errorf("%s: %s", u, v)
		}
	}

	// Self mode: sshcheck for the exempt user.
	o := Options{Caller: svcUID, SelfConfig: f.config, Passwd: "/etc/passwd"}
	ui = &script{}
	if v := f.self(t, o, protocol.Request{Op: protocol.OpVerify, Service: "sshcheck"}, ui); v != protocol.ResultSuccess || len(ui.prompts) != 0 {
		t.Errorf("sshcheck, exempt user: %s, prompts %q", v, ui.prompts)
	}

	// A group the system does not know: the enrolled user is still
	// asked; one without a code is denied as otpgate's fault, the user
	// an exempt group would have let through too.
	f2 := newFixture(t, fmt.Sprintf("[policy]\nrequire_groups = [%q]\nexempt_groups = [%q]\n", ghost, svc))
	secret2, _ := f2.enroll(t, inStaff)
	ui = &script{answers: []string{f2.code(t, secret2, 0)}}
	if v := f2.pamWith(t, Options{}, inStaff, ui); v != protocol.ResultSuccess || len(ui.prompts) != 1 {
		t.Errorf("unknown group, enrolled user: %s, prompts %q", v, ui.prompts)
	}
	for _, u := range []string{inSvc, outside} {
		log, buf := logBuf(t, f2)
		ui = &script{}
		if v := f2.pamWith(t, Options{Log: log}, u, ui, "nullok"); v != protocol.ResultAuthErr || !ui.said(setupErrMsg) {
			t.Errorf("unknown group, %s without a code: %s %q", u, v, ui.messages)
		}
		if !strings.Contains(buf.String(), "outcome=error reason=policy-error") || !strings.Contains(buf.String(), ghost) {
			t.Errorf("log %q, want reason=policy-error naming %s", buf.String(), ghost)
		}
	}
}
