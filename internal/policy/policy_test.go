package policy

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/nss"
)

// requireEnv turns the skips for a missing tool or root into failures.
const requireEnv = "OTPGATE_REQUIRE_TOOLS"

func requireRoot(t *testing.T) {
	t.Helper()
	msg := ""
	if os.Geteuid() != 0 {
		msg = "makes users and groups with useradd and groupadd: run as root"
	}
	for _, tool := range []string{"useradd", "userdel", "groupadd", "groupdel", nss.DefaultGetent} {
		if _, err := exec.LookPath(tool); err != nil && msg == "" {
			msg = tool + " is missing"
		}
	}
	if msg == "" {
		return
	}
	if os.Getenv(requireEnv) != "" {
		t.Fatalf("%s (%s is set, so this is a failure)", msg, requireEnv)
	}
	t.Skip(msg)
}

func name(t *testing.T, kind string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return "otpgpol" + kind + hex.EncodeToString(b)
}

func mustRun(t *testing.T, args ...string) {
	t.Helper()
	var out []byte
	var err error
	for try := 0; try < 10; try++ {
		out, err = exec.Command(args[0], args[1:]...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 10 { // 10: passwd file locked
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// group makes a group, removed when the test ends.
func group(t *testing.T) string {
	t.Helper()
	g := name(t, "g")
	mustRun(t, "groupadd", g)
	t.Cleanup(func() { exec.Command("groupdel", g).Run() })
	return g
}

// user makes a user (without a home) whose primary group is its own, in
// the supplementary groups given; removed when the test ends.
func user(t *testing.T, supplementary ...string) string {
	t.Helper()
	u := name(t, "u")
	args := []string{"useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin"}
	if len(supplementary) > 0 {
		args = append(args, "--groups", strings.Join(supplementary, ","))
	}
	mustRun(t, append(args, u)...)
	t.Cleanup(func() { exec.Command("userdel", "--force", u).Run(); exec.Command("groupdel", u).Run() })
	return u
}

// userWithPrimary makes a user whose primary group is g.
func userWithPrimary(t *testing.T, g string) string {
	t.Helper()
	u := name(t, "u")
	mustRun(t, "useradd", "--no-create-home", "--no-user-group", "--gid", g, "--shell", "/usr/sbin/nologin", u)
	t.Cleanup(func() { exec.Command("userdel", "--force", u).Run() })
	return u
}

// TestDecide runs the policy against real users and groups (useradd,
// groupadd) through the system's getent.
func TestDecide(t *testing.T) {
	requireRoot(t)
	staff, svc, other := group(t), group(t), group(t)
	inStaff := user(t, staff)                 // required by a supplementary group
	primaryStaff := userWithPrimary(t, staff) // required by the primary group alone
	inSvc := user(t, svc)
	inBoth := user(t, staff, svc) // exempt wins over required
	inOther := user(t, other)
	listed := user(t)
	unknown := name(t, "u") // never created

	p := config.Policy{RequireGroups: []string{staff}, ExemptGroups: []string{svc}, ExemptUsers: []string{listed}}
	for _, c := range []struct {
		user     string
		required bool
		rule     string
	}{
		{inStaff, true, RuleRequireGroup + staff},
		{primaryStaff, true, RuleRequireGroup + staff},
		{inSvc, false, RuleExemptGroup + svc},
		{inBoth, false, RuleExemptGroup + svc},
		{inOther, false, RuleNotRequired},
		{listed, false, RuleExemptUser + listed},
		{unknown, true, RuleUnknownUser},
		{"root", false, RuleNotRequired},
		{"-s", true, RuleUnknownUser},           // an option to getent: never passed as one
		{"0", true, RuleUnknownUser},            // a uid to getent: not looked up as one
		{"a b", true, RuleUnknownUser},          // no entry has a blank
		{inStaff + ":x", true, RuleUnknownUser}, // nor a colon
	} {
		d, err := Decide(p, nil, c.user)
		if err != nil {
			t.Errorf("Decide(%q): %v", c.user, err)
			continue
		}
		if d.Required != c.required || d.Rule != c.rule {
			t.Errorf("Decide(%q) = %+v, want required=%v rule=%s", c.user, d, c.required, c.rule)
		}
	}

	// No require_groups: everyone but the exempt.
	p2 := config.Policy{ExemptGroups: []string{svc}}
	for u, want := range map[string]Decision{inStaff: {true, RuleEveryone}, inSvc: {false, RuleExemptGroup + svc}, unknown: {true, RuleUnknownUser}} {
		if d, err := Decide(p2, nil, u); err != nil || d != want {
			t.Errorf("exempt_groups only: Decide(%q) = %+v, %v; want %+v", u, d, err, want)
		}
	}
	// exempt_users alone.
	p3 := config.Policy{ExemptUsers: []string{listed}}
	for u, want := range map[string]Decision{inStaff: {true, RuleEveryone}, listed: {false, RuleExemptUser + listed}} {
		if d, err := Decide(p3, nil, u); err != nil || d != want {
			t.Errorf("exempt_users only: Decide(%q) = %+v, %v; want %+v", u, d, err, want)
		}
	}
	// The empty policy runs nothing: a getent that does not exist is not
	// noticed.
	broken := &nss.Resolver{Getent: filepath.Join(t.TempDir(), "no-getent")}
	if d, err := Decide(config.Policy{}, broken, inSvc); err != nil || d != (Decision{true, RuleEveryone}) {
		t.Errorf("empty policy: %+v, %v", d, err)
	}
	if err := Check(p, nil); err != nil {
		t.Errorf("Check of a valid policy: %v", err)
	}
}

// TestDecideFailsClosed: a name the system does not know, or a getent
// that fails, is an error with Required set, for every user, the exempt
// ones too.
func TestDecideFailsClosed(t *testing.T) {
	requireRoot(t)
	svc := group(t)
	inSvc := user(t, svc)
	listed := user(t)
	ghost := name(t, "g")
	for _, c := range []struct {
		p   config.Policy
		key string
	}{
		{config.Policy{RequireGroups: []string{ghost}, ExemptGroups: []string{svc}}, "require_groups"},
		{config.Policy{ExemptGroups: []string{svc, ghost}}, "exempt_groups"},
		{config.Policy{ExemptUsers: []string{listed, ghost}}, "exempt_users"},
		{config.Policy{ExemptUsers: []string{listed}, ExemptGroups: []string{ghost}}, "exempt_groups"},
	} {
		for _, u := range []string{inSvc, listed, "root"} {
			d, err := Decide(c.p, nil, u)
			if err == nil || !d.Required || d.Rule != RuleError {
				t.Errorf("%+v, user %s: %+v, %v; want Required with an error", c.p, u, d, err)
				continue
			}
			if !strings.Contains(err.Error(), c.key) || !strings.Contains(err.Error(), ghost) {
				t.Errorf("error %q does not name %s and %s", err, c.key, ghost)
			}
		}
		if err := Check(c.p, nil); err == nil || !strings.Contains(err.Error(), ghost) {
			t.Errorf("Check(%+v) = %v, want an error naming %s", c.p, err, ghost)
		}
	}

	p := config.Policy{ExemptGroups: []string{svc}}
	dir := t.TempDir()
	script := func(name, body string) *nss.Resolver {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return &nss.Resolver{Getent: path, Timeout: 500 * time.Millisecond}
	}
	for what, r := range map[string]*nss.Resolver{
		"missing getent":          {Getent: filepath.Join(dir, "none")},
		"getent that hangs":       script("hang", "exec sleep 30"),
		"getent that fails":       script("fail", "echo 'no database' >&2; exit 1"),
		"getent printing garbage": script("garbage", "echo 'not an entry'"),
		"getent printing no end":  script("flood", "exec yes "+inSvc+":x:1:1::/:/bin/sh"),
		"getent that lies":        script("lies", `case "$1" in passwd) echo "`+inSvc+`:x:1000:1000::/:/bin/sh";; group) echo "`+svc+`:x:abc:";; esac`),
	} {
		start := time.Now()
		d, err := Decide(p, r, inSvc)
		if err == nil || !d.Required || d.Rule != RuleError {
			t.Errorf("%s: %+v, %v; want Required with an error", what, d, err)
		} else {
			t.Logf("%s: %v", what, err)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("%s: took %v", what, el)
		}
	}
}

// TestGetentEnvironment: getent runs with an empty environment, so a
// caller's LD_PRELOAD or LOCPATH never reaches it.
func TestGetentEnvironment(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "getent")
	out := filepath.Join(dir, "env")
	if err := os.WriteFile(path, []byte("#!/bin/sh\nenv > "+out+"\necho 'x:x:1:1::/:/bin/sh'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LD_PRELOAD", "/tmp/evil.so")
	if _, err := (&nss.Resolver{Getent: path}).LookupUser("x"); err != nil {
		t.Fatal(err)
	}
	env, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(env)), "\n") {
		// sh itself sets PWD (and some SHLVL, _).
		if l != "" && !strings.HasPrefix(l, "PWD=") && !strings.HasPrefix(l, "SHLVL=") && !strings.HasPrefix(l, "_=") {
			t.Errorf("getent saw %q", l)
		}
	}
}

// TestDaysLeft: calendar days in the host's zone, across a DST change.
func TestDaysLeft(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no zoneinfo:", err)
	}
	d := config.Date{Year: 2027, Month: time.March, Day: 29} // DST began on the 28th
	for _, c := range []struct {
		now  time.Time
		want int
	}{
		{time.Date(2027, 3, 28, 23, 59, 0, 0, berlin), 1},
		{time.Date(2027, 3, 28, 0, 30, 0, 0, berlin), 1},
		{time.Date(2027, 3, 27, 12, 0, 0, 0, berlin), 2},
		{time.Date(2027, 3, 29, 0, 0, 0, 0, berlin), 0},
		{time.Date(2027, 3, 28, 22, 30, 0, 0, time.UTC), 0}, // 00:30 on the 29th in Berlin
		{time.Date(2027, 4, 5, 0, 0, 0, 0, berlin), 0},
		{time.Date(2026, 3, 29, 12, 0, 0, 0, berlin), 365},
	} {
		if got := DaysLeft(d, c.now, berlin); got != c.want {
			t.Errorf("DaysLeft(%s, %v) = %d, want %d", d, c.now, got, c.want)
		}
	}
}

// TestHostZone: the zone of /etc/localtime (here a copy), UTC without
// one, an error for a file that is no zone.
func TestHostZone(t *testing.T) {
	dir := t.TempDir()
	if loc, err := HostZone(filepath.Join(dir, "none")); err != nil || loc != time.UTC {
		t.Errorf("missing: %v, %v", loc, err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("Europe/Berlin\n"), 0o644)
	if _, err := HostZone(bad); err == nil {
		t.Error("a file that is no zone was accepted")
	}
	src := "/usr/share/zoneinfo/Asia/Kolkata"
	data, err := os.ReadFile(src)
	if err != nil {
		t.Skip("no zoneinfo:", err)
	}
	good := filepath.Join(dir, "localtime")
	os.WriteFile(good, data, 0o644)
	t.Setenv("TZ", "America/New_York") // never consulted
	loc, err := HostZone(good)
	if err != nil {
		t.Fatal(err)
	}
	if _, off := time.Date(2027, 1, 1, 0, 0, 0, 0, loc).Zone(); off != 5*3600+1800 {
		t.Errorf("offset %d, want +05:30", off)
	}
}

// BenchmarkDecide is a whole decision: nothing for an empty policy, three
// getent runs for one that names groups.
func BenchmarkDecide(b *testing.B) {
	for _, c := range []struct {
		name string
		p    config.Policy
	}{
		{"empty", config.Policy{}},
		{"exempt_users", config.Policy{ExemptUsers: []string{"daemon"}}},
		{"groups", config.Policy{RequireGroups: []string{"root"}, ExemptGroups: []string{"daemon"}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := Decide(c.p, nil, "root"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
