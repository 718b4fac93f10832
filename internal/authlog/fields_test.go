package authlog

import (
	"regexp"
	"strconv"
	"testing"
)

// field is one key=value of a line: a bare value or a quoted one.
var field = regexp.MustCompile(`^([a-z_]+)=("(?:[^"\\]|\\.)*"|[A-Za-z0-9._:@/+-]+)(?: |$)`)

// parse splits a line the way a reader of the format does.
func parse(t *testing.T, line string) [][2]string {
	t.Helper()
	var out [][2]string
	for rest := line; rest != ""; {
		m := field.FindStringSubmatch(rest)
		if m == nil {
			t.Fatalf("line %q does not parse at %q", line, rest)
		}
		v := m[2]
		if v[0] == '"' {
			u, err := strconv.Unquote(v)
			if err != nil {
				t.Fatalf("value %s: %v", v, err)
			}
			v = u
		}
		out = append(out, [2]string{m[1], v})
		rest = rest[len(m[0]):]
	}
	return out
}

// TestFieldsCannotBeForged is finding 5 of the attack review: a user name
// such as "x outcome=accepted method=totp" (sshd passes invalid names to
// PAM) or a remote host with spaces and quotes logged fields otpgate did
// not write. Every line now parses back to exactly the fields given.
func TestFieldsCannotBeForged(t *testing.T) {
	for _, user := range []string{
		"alice", "x outcome=accepted method=totp", `x" outcome="accepted`, `a\" b`,
		"", "-", "bob\nJan  1 00:00:00 host otpgate[1]: user=root outcome=accepted", "é", "a\x00b", "tab\there", `\`, "=",
	} {
		rhost := "203.0.113.9 outcome=accepted"
		line := Fields("user", user, "service", "sshd", "rhost", rhost, "outcome", "denied")
		got := parse(t, line)
		want := [][2]string{{"user", user}, {"service", "sshd"}, {"rhost", rhost}, {"outcome", "denied"}}
		if len(got) != len(want) {
			t.Fatalf("Fields(user=%q) = %s: %d fields, want %d", user, line, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("Fields(user=%q) = %s: field %d is %q, want %q", user, line, i, got[i], want[i])
			}
		}
		if clean(line) != line {
			t.Errorf("Fields(user=%q) = %q holds a control character", user, line)
		}
	}
	if got := Fields("user", "alice", "rhost", "198.51.100.7", "failures", "3"); got != "user=alice rhost=198.51.100.7 failures=3" {
		t.Errorf("plain values are quoted: %s", got)
	}
}

func FuzzFields(f *testing.F) {
	f.Add("x outcome=accepted", "1.2.3.4")
	f.Add(`"`, "\\")
	f.Fuzz(func(t *testing.T, user, rhost string) {
		line := Fields("user", user, "rhost", rhost, "outcome", "denied")
		got := parse(t, line)
		if len(got) != 3 || got[2][1] != "denied" || got[0][0] != "user" || got[1][0] != "rhost" {
			t.Fatalf("Fields(%q, %q) = %s parses as %q", user, rhost, line, got)
		}
		// Invalid UTF-8 comes back as U+FFFD, which is fine: never a
		// field more or less.
	})
}
