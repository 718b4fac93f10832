package pamtest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"
)

// An unknown user (in no passwd database) and a known user who is not
// enrolled must get the same answer, byte for byte: otherwise the second
// factor would tell a remote client which accounts exist. These tests
// check it exactly, in what the person sees (the PAM conversation, and
// pamtester's output and exit status) and in the log lines (the same
// lines but for the user name). How long the two answers take is measured,
// not tested: make bench (internal/tools/pambench) reports it.

// lookAlikeUsers returns a user in /etc/passwd other than root and a name
// of the same length that no passwd database knows, both plain lower case
// (so that the user name is all that tells their log lines apart, however
// values are quoted).
func lookAlikeUsers(t *testing.T) (known, unknown string) {
	t.Helper()
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		if name, _, ok := strings.Cut(l, ":"); ok {
			names = append(names, name)
		}
	}
	plain := func(s string) bool {
		return len(s) >= 4 && len(s) <= 16 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz") == "" && s != "root"
	}
	for _, n := range append([]string{"daemon", "nobody"}, names...) {
		if slices.Contains(names, n) && plain(n) {
			known = n
			break
		}
	}
	if known == "" {
		t.Skip("/etc/passwd has no user but root with a plain lower-case name (such as daemon) to stand for a known user")
	}
	if _, err := user.Lookup(known); err != nil {
		t.Fatalf("%s is in /etc/passwd, yet user.Lookup: %v", known, err)
	}
	for tries := 0; tries < 100 && unknown == ""; tries++ {
		b := make([]byte, len(known))
		rand.Read(b)
		for i := range b {
			b[i] = 'a' + b[i]%26
		}
		var uu user.UnknownUserError
		if _, err := user.Lookup(string(b)); errors.As(err, &uu) && !slices.Contains(names, string(b)) {
			unknown = string(b)
		}
	}
	if unknown == "" {
		t.Fatal("found no user name that NSS does not know")
	}
	return known, unknown
}

// TestUnknownLikeNotEnrolledConversation: through libpam, for each stack
// and flag, an unknown and a not-enrolled user get the same result and
// the same messages, in the same order.
func TestUnknownLikeNotEnrolledConversation(t *testing.T) {
	s := newStack(t, "")
	s.enroll("alice") // a store with someone in it
	known, unknown := lookAlikeUsers(t)
	for _, c := range []struct {
		name  string
		lines []string
		flags pam.Flags
		want  error
		msgs  int // error messages the person sees
	}{
		{"required", []string{s.otpgate("required")}, 0, pam.ErrAuth, 1},
		{"required, PAM_SILENT", []string{s.otpgate("required")}, pam.Silent, pam.ErrAuth, 0},
		{"required, forward_pass", []string{s.otpgate("required", "forward_pass")}, 0, pam.ErrAuth, 1},
		{"requisite, then pam_permit", []string{s.otpgate("requisite"), "auth required pam_permit.so"}, 0, pam.ErrAuth, 1},
		{"nullok, then pam_permit", []string{s.otpgate("[success=done ignore=ignore default=die]", "nullok"), "auth required pam_permit.so"}, 0, nil, 0},
		{"nullok, then pam_deny", []string{s.otpgate("[success=done ignore=ignore default=die]", "nullok"), "auth required pam_deny.so"}, 0, pam.ErrAuth, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			svc := s.service(c.lines...)
			var seen [2]string
			for i, u := range []string{known, unknown} {
				cv := &conv{answers: []string{"123456"}}
				err := s.auth(svc, u, cv, c.flags)
				want(t, u, err, c.want)
				if len(cv.errs) != c.msgs || len(cv.prompts)+len(cv.infos) != 0 {
					t.Fatalf("%s: prompts %q, infos %q, errors %q; want %d error messages and nothing else", u, cv.prompts, cv.infos, cv.errs, c.msgs)
				}
				seen[i] = fmt.Sprintf("result %s, prompts %q, infos %q, errors %q", errText(err), cv.prompts, cv.infos, cv.errs)
			}
			if seen[0] != seen[1] {
				t.Fatalf("known, not enrolled (%s): %s\nunknown (%s): %s", known, seen[0], unknown, seen[1])
			}
		})
	}
}

// TestUnknownLikeNotEnrolledPamtester: under pamtester, from /etc/pam.d,
// an unknown and a not-enrolled user see byte-identical output and exit
// status, and every log line (the helper's and any of libpam's or the
// module's, caught on a private /dev/log) is the same but for the user
// name, with and without nullok.
func TestUnknownLikeNotEnrolledPamtester(t *testing.T) {
	s := newStack(t, "")
	for _, tool := range []string{"pamtester", "unshare", "mount", "timeout"} {
		if _, err := exec.LookPath(tool); err != nil {
			msg := fmt.Sprintf("%s is not installed (as root, scripts/test-deps.sh installs it)", tool)
			if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" {
				t.Fatalf("%s (OTPGATE_REQUIRE_TOOLS is set, so this is a failure, not a skip)", msg)
			}
			t.Skip(msg)
		}
	}
	s.enroll("alice")
	known, unknown := lookAlikeUsers(t)
	logs := newLogSink(t)
	for _, c := range []struct {
		name  string
		lines []string
		exit  int
	}{
		{"required", []string{s.otpgate("required")}, 1},
		{"nullok, then pam_permit", []string{s.otpgate("[success=done ignore=ignore default=die]", "nullok"), "auth required pam_permit.so"}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			svc := s.etcService(c.lines...)
			type seen struct {
				out  string
				exit int
				log  []string
			}
			var got [2]seen
			for i, u := range []string{known, unknown} {
				out, exit := logs.pamtester(t, svc, u, "123456\n")
				got[i] = seen{out, exit, logs.lines(t, u)}
				t.Logf("%s: exit %d, output %q, log %q", u, exit, out, got[i].log)
				if exit != c.exit {
					t.Fatalf("%s: pamtester exit %d, want %d: %q", u, exit, c.exit, out)
				}
				if !slices.ContainsFunc(got[i].log, func(l string) bool { return strings.Contains(l, "otpgate") && strings.Contains(l, "<user>") }) {
					t.Fatalf("%s: no otpgate log line names the user; caught %q", u, got[i].log)
				}
			}
			if got[0].out != got[1].out || got[0].exit != got[1].exit {
				t.Errorf("what the person sees differs:\nknown, not enrolled (%s): exit %d %q\nunknown (%s): exit %d %q",
					known, got[0].exit, got[0].out, unknown, got[1].exit, got[1].out)
			}
			if !slices.Equal(got[0].log, got[1].log) {
				t.Errorf("log lines differ beyond the user name:\nknown, not enrolled (%s):\n  %s\nunknown (%s):\n  %s",
					known, strings.Join(got[0].log, "\n  "), unknown, strings.Join(got[1].log, "\n  "))
			}
		})
	}
}

// logSink is a syslog socket that stands in for /dev/log in a private
// mount namespace around each pamtester, so the test reads every line
// the helper, the module and libpam write, and the system log gets none.
type logSink struct {
	dir  string
	conn *net.UnixConn
}

func newLogSink(t *testing.T) *logSink {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "log.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &logSink{dir: dir, conn: c}
}

// devScript gives /dev a private tmpfs inside the namespace: the few
// devices a PAM host needs, and log as a link to the test's socket
// (whether or not the host has a /dev/log).
const devScript = `set -e
d=$1; shift
mkdir -p "$d/olddev"
mount --bind /dev "$d/olddev"
mount -t tmpfs -o mode=0755,size=64k otpgate-test-dev /dev
for n in null zero full random urandom; do
	if [ -e "$d/olddev/$n" ]; then : >"/dev/$n"; mount --bind "$d/olddev/$n" "/dev/$n"; fi
done
ln -s "$d/log.sock" /dev/log
exec "$@"
`

// pamtester runs pamtester for user on service with stdin in its own
// mount namespace, and returns its output and exit status.
func (l *logSink) pamtester(t *testing.T, service, user, stdin string) (string, int) {
	t.Helper()
	cmd := exec.Command("timeout", "30", "unshare", "--mount", "--propagation", "private", "--",
		"/bin/sh", "-c", devScript, "sh", l.dir, "pamtester", service, user, "authenticate")
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("pamtester %s %s: %v", service, user, err)
	}
	exit := cmd.ProcessState.ExitCode()
	if exit == 124 || exit > 1 {
		t.Fatalf("pamtester %s %s: exit %d (124: timed out; 2 and up: the namespace set-up failed): %s", service, user, exit, out)
	}
	return string(out), exit
}

// syslogHeader is "<pri>Mmm dd hh:mm:ss tag[pid]: ": the time and the pid
// differ from run to run; the priority and the tag count.
var syslogHeader = regexp.MustCompile(`^<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ([^ \[:]*)(\[\d+\])?: `)

// lines returns the log lines written since the last call, each with the
// time and pid taken out and user replaced by <user>.
func (l *logSink) lines(t *testing.T, user string) []string {
	t.Helper()
	var out []string
	buf := make([]byte, 64<<10)
	for {
		// The writers are gone: what they sent is already queued.
		l.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := l.conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return out
			}
			t.Fatalf("reading the log socket: %v", err)
		}
		line := strings.TrimRight(string(buf[:n]), "\n")
		if m := syslogHeader.FindStringSubmatch(line); m != nil {
			line = "<" + m[1] + "> " + m[2] + ": " + line[len(m[0]):]
		} else {
			line = regexp.MustCompile(`\d\d:\d\d:\d\d|\[\d+\]`).ReplaceAllString(line, "#")
		}
		out = append(out, replaceWord(line, user, "<user>"))
	}
}

// replaceWord replaces name where it stands as a word of its own (not
// inside a longer name), quoted or not.
func replaceWord(s, name, with string) string {
	re := regexp.MustCompile(`(^|[^A-Za-z0-9_.-])` + regexp.QuoteMeta(name) + `($|[^A-Za-z0-9_.-])`)
	// Twice: matches that share a separator do not overlap.
	for range 2 {
		s = re.ReplaceAllString(s, "${1}"+with+"${2}")
	}
	return s
}
