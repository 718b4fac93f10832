package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/policy"
	rpt "github.com/otpgate/otpgate/internal/report"
)

// TestReport: real accounts (useradd) under a policy with an exempt group
// and a deadline ten days ahead. The report lists the enrolled account
// with its authenticators, the required one without a code with its days
// left (by the host's zone), leaves out the exempt one without a code,
// and lists an exempt one that is enrolled; the text form has a header and
// says when the deadline has passed.
func TestReport(t *testing.T) {
	gaRequire(t)
	enrolled, missing, exempt, exemptEnrolled := newGAUser(t), newGAUser(t), newGAUser(t), newGAUser(t)
	group := "otpgr-" + strings.TrimPrefix(exempt.name, gaPrefix)
	gaRun(t, "groupadd", group)
	t.Cleanup(func() { gaRun(t, "groupdel", group) })
	gaRun(t, "usermod", "-aG", group, exempt.name)
	gaRun(t, "usermod", "-aG", group, exemptEnrolled.name)

	loc, err := policy.HostZone(policy.LocaltimePath)
	if err != nil {
		t.Fatal(err)
	}
	f := newGAFixture(t)
	writeConfig := func(deadline time.Time) {
		body := fmt.Sprintf("issuer = \"web-01\"\nstore = %q\n[policy]\nexempt_groups = [%q]\n[enroll]\ndeadline = %s\n",
			f.dir+"/store", group, deadline.Format("2006-01-02"))
		if err := os.WriteFile(f.config, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().In(loc).AddDate(0, 0, 10)
	writeConfig(deadline)
	for _, u := range []string{enrolled.name, exemptEnrolled.name} {
		if rc, _, stderr := f.otpgate("", "enroll", "--user", u, "--no-confirm", "--json", "--qr", "none"); rc != 0 {
			t.Fatalf("enroll %s: %d %s", u, rc, stderr)
		}
	}

	rc, stdout, stderr := f.otpgate("", "report", "--json")
	if rc != 0 {
		t.Fatalf("report --json: exit %d\n%s%s", rc, stdout, stderr)
	}
	var rows []rpt.Row
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("report --json: %v\n%s", err, stdout)
	}
	got := map[string]rpt.Row{}
	for _, r := range rows {
		got[r.User] = r
	}
	if r, ok := got[enrolled.name]; !ok || !r.Required || r.Why != "everyone" || !r.Enrolled || len(r.Authenticators) != 1 || r.Authenticators[0].Label != "default" || r.BackupLeft != 10 || r.DaysLeft != nil {
		t.Errorf("enrolled account: %+v (listed %v)", r, ok)
	}
	wantDays := policy.DaysLeft(mustDate(t, deadline), time.Now(), loc)
	if r, ok := got[missing.name]; !ok || !r.Required || r.Enrolled || r.DaysLeft == nil || *r.DaysLeft != wantDays || wantDays < 9 {
		t.Errorf("required account without a code: %+v (listed %v), want %d days left", r, ok, wantDays)
	}
	if r, ok := got[exempt.name]; ok {
		t.Errorf("an exempt account without a code is listed: %+v", r)
	}
	if r, ok := got[exemptEnrolled.name]; !ok || r.Required || r.Why != "exempt-group:"+group || !r.Enrolled {
		t.Errorf("an exempt account with a code: %+v (listed %v)", r, ok)
	}

	writeConfig(time.Now().In(loc).AddDate(0, 0, -1))
	rc, stdout, stderr = f.otpgate("", "report")
	if rc != 0 {
		t.Fatalf("report: exit %d\n%s%s", rc, stdout, stderr)
	}
	lines := strings.Split(stdout, "\n")
	if !strings.HasPrefix(lines[0], "USER ") || !strings.Contains(lines[0], "DAYS-LEFT") {
		t.Errorf("no header: %q", lines[0])
	}
	var line string
	for _, l := range lines {
		if strings.HasPrefix(l, missing.name+" ") {
			line = l
		}
	}
	if !strings.Contains(line, " passed ") {
		t.Errorf("after the deadline the row of %s says %q, want \"passed\"", missing.name, line)
	}
}

func mustDate(t *testing.T, d time.Time) config.Date {
	t.Helper()
	y, m, day := d.Date()
	return config.Date{Year: y, Month: m, Day: day}
}
