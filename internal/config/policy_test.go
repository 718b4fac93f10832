package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestPolicyAndDeadline: [policy] and [enroll] deadline as an
// administrator writes them.
func TestPolicyAndDeadline(t *testing.T) {
	c, err := Parse("config.toml", []byte(`
[policy]
require_groups = ["staff", "ops-team"]
exempt_groups  = ["svc"]
exempt_users   = ["backup", "deploy.bot"]

[enroll]
deadline = 2027-01-31
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Policy{RequireGroups: []string{"staff", "ops-team"}, ExemptGroups: []string{"svc"}, ExemptUsers: []string{"backup", "deploy.bot"}}
	if !reflect.DeepEqual(c.Policy, want) {
		t.Errorf("Policy = %+v, want %+v", c.Policy, want)
	}
	if c.Policy.Empty() {
		t.Error("a policy with names is Empty")
	}
	if d := (Date{2027, time.January, 31}); c.Deadline != d || c.Deadline.String() != "2027-01-31" {
		t.Errorf("Deadline = %v, want %v", c.Deadline, d)
	}
	loc := time.FixedZone("UTC+5", 5*3600)
	if m := c.Deadline.Midnight(loc); !m.Equal(time.Date(2027, 1, 30, 19, 0, 0, 0, time.UTC)) {
		t.Errorf("Midnight in UTC+5 = %v", m)
	}
}

// TestPolicyDefaults: no [policy], empty lists and no deadline mean
// everyone needs a code and nothing is looked up.
func TestPolicyDefaults(t *testing.T) {
	for _, in := range []string{"", "[policy]\n", "[policy]\nrequire_groups = []\nexempt_groups = []\nexempt_users = []\n"} {
		c, err := Parse("config.toml", []byte(in))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if !c.Policy.Empty() || !c.Deadline.IsZero() {
			t.Errorf("%q: Policy %+v, Deadline %v; want empty and unset", in, c.Policy, c.Deadline)
		}
	}
}

// TestBadPolicy: a datetime for the deadline, names getent would read as
// an option or an id, names no database has, and values of the wrong type
// are errors naming the key and line.
func TestBadPolicy(t *testing.T) {
	for _, c := range []struct {
		name, content, key, why string
	}{
		{"deadline local datetime", "[enroll]\ndeadline = 2027-01-31T08:00:00\n", "enroll.deadline", "without a time or zone"},
		{"deadline with offset", "[enroll]\ndeadline = 2027-01-31T00:00:00Z\n", "enroll.deadline", "without a time or zone"},
		{"deadline with zone offset", "[enroll]\ndeadline = 2027-01-31T00:00:00+02:00\n", "enroll.deadline", "without a time or zone"},
		{"deadline as string", "[enroll]\ndeadline = \"2027-01-31\"\n", "enroll.deadline", "without a time or zone"},
		{"deadline time only", "[enroll]\ndeadline = 08:00:00\n", "enroll.deadline", "without a time or zone"},
		{"group not a list", "[policy]\nrequire_groups = \"staff\"\n", "require_groups", "line 2"},
		{"group number", "[policy]\nrequire_groups = [1000]\n", "require_groups", "line 2"},
		{"group as gid", "[policy]\nexempt_groups = [\"1000\"]\n", "policy.exempt_groups", "is a number"},
		{"user as uid", "[policy]\nexempt_users = [\"0\"]\n", "policy.exempt_users", "is a number"},
		{"option", "[policy]\nexempt_users = [\"-s\"]\n", "policy.exempt_users", "starts with '-'"},
		{"empty", "[policy]\nrequire_groups = [\"\"]\n", "policy.require_groups", "empty"},
		{"colon", "[policy]\nexempt_groups = [\"a:b\"]\n", "policy.exempt_groups", "':'"},
		{"comma", "[policy]\nexempt_groups = [\"a,b\"]\n", "policy.exempt_groups", "','"},
		{"blank", "[policy]\nexempt_users = [\"a b\"]\n", "policy.exempt_users", "' '"},
		{"newline", "[policy]\nexempt_users = [\"a\\nb\"]\n", "policy.exempt_users", "'\\n'"},
		{"slash", "[policy]\nexempt_users = [\"../root\"]\n", "policy.exempt_users", "'/'"},
		{"too long", "[policy]\nexempt_users = [\"" + strings.Repeat("a", MaxNameLen+1) + "\"]\n", "policy.exempt_users", "over"},
		{"unknown key", "[policy]\nrequire_group = [\"staff\"]\n", "policy.require_group", "unknown key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse("config.toml", []byte(c.content))
			if err == nil {
				t.Fatalf("accepted: %+v", got)
			}
			if !strings.Contains(err.Error(), c.key) || !strings.Contains(err.Error(), c.why) || !(strings.Contains(err.Error(), "config.toml:2") || strings.Contains(err.Error(), "line 2")) {
				t.Errorf("error %q does not name %s at config.toml:2 with %q", err, c.key, c.why)
			}
		})
	}
	many := "[policy]\nexempt_users = [" + strings.Repeat("\"u\",", MaxNames+1) + "]\n"
	if _, err := Parse("config.toml", []byte(many)); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("%d names: %v, want an error", MaxNames+1, err)
	}
}
