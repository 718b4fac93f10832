package fail2bantest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/helper"
	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

// requireEnv turns the skips for a missing tool or root into failures
// (scripts/test.sh sets it for root, after test-deps.sh installed them).
const requireEnv = "OTPGATE_REQUIRE_TOOLS"

// clientEnv makes the test binary a one-request client of the daemon
// (see TestMain); the test runs it as nobody for the self-mode requests.
const clientEnv = "OTPGATE_FAIL2BAN_TEST_CLIENT"

// host is the host name the rendered lines carry.
const host = "web-01"

// selfUID is the normal user of the self-mode requests: nobody.
const selfUID = 65534

func TestMain(m *testing.M) {
	if job := os.Getenv(clientEnv); job != "" {
		os.Exit(clientMain(job))
	}
	os.Exit(m.Run())
}

func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(requireEnv) != "" {
		t.Fatalf("%s (%s is set, so this is a failure, not a skip)", msg, requireEnv)
	}
	t.Skip(msg)
}

// requireTools skips (or fails) unless the test runs as root and finds
// every tool; it returns their paths in order.
func requireTools(t testing.TB, names ...string) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "fail2ban tests run otpgate-helper as a daemon, which needs root; run as root: go test -count=1 -v ./internal/fail2bantest/")
	}
	var paths, missing []string
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
				if st, serr := os.Stat(filepath.Join(d, n)); serr == nil && st.Mode()&0o111 != 0 {
					p, err = filepath.Join(d, n), nil
					break
				}
			}
		}
		if err != nil {
			missing = append(missing, n)
		}
		paths = append(paths, p)
	}
	if len(missing) > 0 {
		skipOrFail(t, "missing tools: %s (Debian: apt-get install fail2ban; scripts/test-deps.sh installs it)", strings.Join(missing, ", "))
	}
	return paths
}

// repoRoot is the module root: this file is internal/fail2bantest/.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// run runs a command with a deadline and returns its standard output.
func run(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s%s", name, args, err, out, stderr.Bytes())
	}
	return string(out)
}

// fail2banConf is a copy of the system's /etc/fail2ban with the filter
// and the jail installed as docs/logging.md says, so that the tests use
// them as fail2ban finds them: the filter by name, common.conf beside it.
func fail2banConf(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fail2ban")
	run(t, time.Minute, "cp", "-a", "/etc/fail2ban", dir)
	for _, f := range []string{"filter.d/otpgate.conf", "jail.d/otpgate.conf"} {
		b, err := os.ReadFile(filepath.Join(repoRoot(), "contrib", "fail2ban", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestJailConfig: fail2ban accepts the jail with the filter, the jail
// reads the syslog file by default, and with backend = systemd it asks the
// journal for root's lines tagged otpgate.
func TestJailConfig(t *testing.T) {
	tools := requireTools(t, "fail2ban-client")
	conf := fail2banConf(t)
	logFile := filepath.Join(t.TempDir(), "auth.log")
	if err := os.WriteFile(logFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// This host may have no /var/log/auth.log (no rsyslog): point the jail
	// at a file of the test's, and leave the stock sshd jail out.
	local := fmt.Sprintf("[sshd]\nenabled = false\n\n[otpgate]\nlogpath = %s\n", logFile)
	if err := os.WriteFile(filepath.Join(conf, "jail.d", "zz-test.local"), []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, time.Minute, tools[0], "-c", conf, "-t")
	if !strings.Contains(out, "OK") {
		t.Errorf("fail2ban-client -t: %s", out)
	}
	dump := run(t, time.Minute, tools[0], "-c", conf, "-d")
	for _, want := range []string{
		"['add', 'otpgate', 'auto']",
		"['set', 'otpgate', 'addlogpath', '" + logFile + "', 'head']",
		"['set', 'otpgate', 'maxretry', 5]",
		"['set', 'otpgate', 'addjournalmatch', 'SYSLOG_IDENTIFIER=otpgate', '_UID=0']",
		"'port', 'ssh'",
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("fail2ban-client -d lacks %s:\n%s", want, dump)
		}
	}
}

// attempt is one request to the daemon, the log line it must write (a
// part of it) and the host fail2ban must take from that line ("" when the
// filter must not match it).
type attempt struct {
	self   bool // sent by nobody (self mode) instead of root
	req    protocol.Request
	answer string // "" gives no answer
	line   string
	ban    string
}

// TestFilterOnHelperLines drives attempts at a real daemon, once for each
// place its lines go, and checks fail2ban-regex's verdict on every line in
// each form an administrator's fail2ban reads.
func TestFilterOnHelperLines(t *testing.T) {
	tools := requireTools(t, "fail2ban-regex", "unshare", "go")
	conf := fail2banConf(t)
	helperBin := buildHelper(t)
	for _, route := range []string{"syslog", "stderr"} {
		t.Run(route, func(t *testing.T) {
			lines, atts := drive(t, helperBin, route)
			for _, form := range []struct {
				name   string
				filter string
				render func(stamp time.Time, tag, line string) string
			}{
				// Debian 12's rsyslog: RSYSLOG_TraditionalFileFormat.
				{"auth.log", "otpgate", func(s time.Time, tag, line string) string {
					return s.Format(time.Stamp) + " " + host + " " + tag + ": " + line
				}},
				// Debian 13's rsyslog: RFC 3339 with microseconds.
				{"auth.log-rfc3339", "otpgate", func(s time.Time, tag, line string) string {
					return s.Format("2006-01-02T15:04:05.000000-07:00") + " " + host + " " + tag + ": " + line
				}},
				// fail2ban's systemd backend: "HOST IDENTIFIER[PID]: MESSAGE".
				{"journal", "otpgate[logtype=journal]", func(_ time.Time, tag, line string) string {
					return host + " " + tag + ": " + line
				}},
			} {
				t.Run(form.name, func(t *testing.T) {
					var file []string
					var want []string // "HOST | LINE" for each line that must match
					for i, l := range lines {
						r := form.render(l.stamp, l.tag, l.text)
						file = append(file, r)
						if a := atts[i]; a != nil && a.ban != "" {
							want = append(want, a.ban+" | "+r)
						}
					}
					logFile := filepath.Join(t.TempDir(), "auth.log")
					if err := os.WriteFile(logFile, []byte(strings.Join(file, "\n")+"\n"), 0o644); err != nil {
						t.Fatal(err)
					}
					out := run(t, time.Minute, tools[0], "--raw", "-c", conf, "-o", "<ip> | <msg>", logFile, form.filter)
					got := strings.Split(strings.TrimRight(out, "\n"), "\n")
					if out == "" {
						got = nil
					}
					if strings.Join(got, "\n") != strings.Join(want, "\n") {
						t.Errorf("fail2ban-regex %s matched (host | line):\n%s\nwant:\n%s\nthe log:\n%s",
							form.filter, strings.Join(got, "\n"), strings.Join(want, "\n"), strings.Join(file, "\n"))
					}
					if len(want) == 0 {
						t.Fatal("no line to match: the attempts did not run")
					}
				})
			}
		})
	}
}

// buildHelper builds otpgate-helper, with self mode reading the config
// each route writes (selfConfigPath), as make does with its own path.
func buildHelper(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "otpgate-helper")
	cmd := exec.Command("go", "build", "-o", out, "-ldflags", "-X main.selfConfig="+selfConfigPath, "./cmd/otpgate-helper")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building otpgate-helper: %v\n%s", err, b)
	}
	return out
}

// selfConfigPath is the config of self-mode requests. The helper reads
// it from a fixed path, built in: each route's daemon finds a copy of its
// own config there, in the tmpfs its mount namespace has at /dev.
const selfConfigPath = "/dev/otpgate-fail2ban-test.toml"

// logLine is one line the daemon wrote: when, under which tag
// ("otpgate[PID]"), and the line itself.
type logLine struct {
	stamp time.Time
	tag   string
	text  string
}

// drive starts a daemon whose lines go to route ("syslog": a datagram
// socket of the test's at /dev/log; "stderr": no /dev/log, so standard
// error), sends the attempts, stops it and returns every line it wrote,
// with the attempt each line is for (nil for the daemon's own lines).
func drive(t *testing.T, helperBin, route string) ([]logLine, []*attempt) {
	// A directory nobody may enter, for the client binary and the socket.
	dir, err := os.MkdirTemp("", "otpgate-fail2ban-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.toml")
	body := fmt.Sprintf("store = %q\n[lockout]\nmax_failures = 3\n", filepath.Join(dir, "store"))
	if err := os.WriteFile(cfgPath, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// The same store under [policy] and [enroll] deadline: an exempt
	// user, a user let in before the deadline, one denied after it, and
	// a policy that cannot be evaluated (otpgate's fault). None of them
	// is a guess but the denial after the deadline, which counts like
	// any denial of a user without a code.
	policyCfg := func(name, extra string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body+extra), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	exemptCfg := policyCfg("exempt.toml", "[policy]\nexempt_users = [\"root\"]\n")
	graceCfg := policyCfg("grace.toml", "[enroll]\ndeadline = 2999-01-01\n")
	pastCfg := policyCfg("past.toml", "[enroll]\ndeadline = 2000-01-01\n")
	brokenCfg := policyCfg("broken.toml", "[policy]\nexempt_groups = [\"otpgate-no-such-group\"]\n")
	mgr := &account.Manager{Store: keystore.New(cfg.Store), Config: cfg}
	secrets := map[string][]byte{}
	for _, u := range []string{"alice", "bob", "erin"} {
		en, err := mgr.NewEnrollment(u)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mgr.Save(en, account.SaveOptions{}); err != nil {
			t.Fatal(err)
		}
		secrets[u] = en.Secret
	}
	right := func(user string) string {
		c, err := totp.CodeAt(secrets[user], uint64(totp.Step(time.Now(), 30)), totp.Default)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// wrong is a code of no step near now, for any of the users.
	wrong := func() string {
		near := map[string]bool{}
		for _, s := range secrets {
			for d := -3; d <= 3; d++ {
				c, _ := totp.CodeAt(s, uint64(totp.Step(time.Now(), 30)+int64(d)), totp.Default)
				near[c] = true
			}
		}
		for i := 0; ; i++ {
			if c := fmt.Sprintf("%06d", i*7919%1000000); !near[c] {
				return c
			}
		}
	}

	// Collect the daemon's lines.
	var mu sync.Mutex
	var lines []logLine
	add := func(l logLine) {
		mu.Lock()
		lines = append(lines, l)
		mu.Unlock()
	}
	logSock := ""
	var collectors sync.WaitGroup
	if route == "syslog" {
		logSock = filepath.Join(dir, "log")
		conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: logSock, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		collectors.Add(1)
		go func() {
			defer collectors.Done()
			buf := make([]byte, 64<<10)
			for {
				conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
				n, err := conn.Read(buf)
				if err != nil {
					return
				}
				l, err := parseSyslog(string(buf[:n]))
				if err != nil {
					t.Errorf("syslog message %q: %v", buf[:n], err)
					continue
				}
				add(l)
				if l.text == "helper: stopped" {
					conn.Close()
					return
				}
			}
		}()
		t.Cleanup(func() { conn.Close() })
	}

	// The daemon, in a mount namespace of its own where /dev is a tmpfs
	// holding only the syslog socket of this route (or nothing) and the
	// self-mode config. Nothing outside the namespace changes.
	runDir := filepath.Join(dir, "run")
	if err := os.Mkdir(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(runDir, "helper.sock")
	script := `set -e
mount -t tmpfs -o mode=0755,size=64k otpgate-test /dev
if [ -n "$1" ]; then : >/dev/log; mount --bind "$1" /dev/log; fi
cp "$3" "$2"
exec "$4" --listen "$5"`
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script,
		"sh", logSock, selfConfigPath, cfgPath, helperBin, socket)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// unshare and sh exec, so the daemon keeps this pid.
	tag := fmt.Sprintf("otpgate[%d]", cmd.Process.Pid)
	var errText strings.Builder
	collectors.Add(1)
	go func() {
		defer collectors.Done()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if text, ok := strings.CutPrefix(sc.Text(), "otpgate: log: "); ok {
				add(logLine{stamp: time.Now(), tag: tag, text: text})
			} else {
				mu.Lock()
				errText.WriteString(sc.Text() + "\n")
				mu.Unlock()
			}
		}
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			collectors.Wait()
		}
	}
	t.Cleanup(stop)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		up := len(lines) > 0 && lines[0].text == "helper: serving"
		mu.Unlock()
		if up {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("the daemon did not start (route %s): lines %v, stderr %s", route, lines, errText.String())
		}
	}

	client := filepath.Join(dir, "client")
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(client, bin, 0o755); err != nil {
		t.Fatal(err)
	}

	sshd := func(user, rhost string) protocol.Request {
		return protocol.Request{Op: protocol.OpAuthenticate, User: user, Service: "sshd", RHost: rhost, Args: []string{"config=" + cfgPath}}
	}
	with := func(r protocol.Request, f func(*protocol.Request)) protocol.Request { f(&r); return r }
	selfReq := func(service, rhost string) protocol.Request {
		return protocol.Request{Op: protocol.OpAuthenticate, Service: service, RHost: rhost}
	}
	erinCode := ""
	atts := []*attempt{
		{req: sshd("alice", "192.0.2.1"), answer: "right:alice",
			line: "user=alice service=sshd rhost=192.0.2.1 outcome=accepted method=totp authenticator=default failures=0"},
		{req: sshd("alice", "192.0.2.2"), answer: "wrong",
			line: "user=alice service=sshd rhost=192.0.2.2 outcome=denied reason=wrong-code failures=1", ban: "192.0.2.2"},
		// No remote host (sudo): never matched.
		{req: with(sshd("alice", ""), func(r *protocol.Request) { r.Service = "sudo" }), answer: "wrong",
			line: "user=alice service=sudo rhost=- outcome=denied reason=wrong-code failures=2"},
		// No answer: not counted by otpgate, not by the filter.
		{req: sshd("alice", "192.0.2.3"),
			line: "user=alice service=sshd rhost=192.0.2.3 outcome=denied reason=no-answer"},
		{req: sshd("alice", "192.0.2.4"), answer: "wrong",
			line: "user=alice service=sshd rhost=192.0.2.4 outcome=denied reason=wrong-code failures=3 locked_until=", ban: "192.0.2.4"},
		// A code sent to a locked account: matched (see the filter).
		{req: sshd("alice", "2001:db8::5"), answer: "right:alice",
			line: "user=alice service=sshd rhost=2001:db8::5 outcome=locked reason=locked failures=3 locked_until=", ban: "2001:db8::5"},
		{req: sshd("erin", "192.0.2.6"), answer: "right:erin",
			line: "user=erin service=sshd rhost=192.0.2.6 outcome=accepted method=totp authenticator=default failures=0"},
		{req: sshd("erin", "192.0.2.7"), answer: "again:erin",
			line: "user=erin service=sshd rhost=192.0.2.7 outcome=denied reason=replayed failures=1", ban: "192.0.2.7"},
		// Hostile user names (sshd passes any name to PAM): quoted, and
		// the host is the real one.
		{req: sshd("x outcome=accepted", "192.0.2.8"), answer: "wrong",
			line: `user="x outcome=accepted" service=sshd rhost=192.0.2.8 outcome=denied reason=not-enrolled`, ban: "192.0.2.8"},
		{req: sshd("x rhost=198.51.100.1 outcome=denied", "192.0.2.9"), answer: "wrong",
			line: `user="x rhost=198.51.100.1 outcome=denied" service=sshd rhost=192.0.2.9 outcome=denied reason=not-enrolled`, ban: "192.0.2.9"},
		{req: sshd("x service=sshd rhost=198.51.100.1 outcome=denied", ""), answer: "wrong",
			line: `user="x service=sshd rhost=198.51.100.1 outcome=denied" service=sshd rhost=- outcome=denied reason=not-enrolled`},
		{req: sshd(`x" rhost="198.51.100.2`, ""), answer: "wrong",
			line: `user="x\" rhost=\"198.51.100.2" service=sshd rhost=- outcome=denied reason=not-enrolled`},
		{req: sshd(`x" service=sshd rhost=198.51.100.2 outcome=denied x="`, ""), answer: "wrong",
			line: `user="x\" service=sshd rhost=198.51.100.2 outcome=denied x=\"" service=sshd rhost=- outcome=denied reason=not-enrolled`},
		// Hostile remote hosts and services: quoted, never matched.
		{req: sshd("bob", "198.51.100.3 outcome=denied"), answer: "right:bob",
			line: `user=bob service=sshd rhost="198.51.100.3 outcome=denied" outcome=accepted method=totp authenticator=default failures=0`},
		{req: sshd("bob", `x" rhost="198.51.100.4`), answer: "wrong",
			line: `user=bob service=sshd rhost="x\" rhost=\"198.51.100.4" outcome=denied reason=wrong-code failures=1`},
		{req: with(sshd("bob", ""), func(r *protocol.Request) { r.Service = "sshd rhost=198.51.100.5 outcome=denied" }), answer: "wrong",
			line: `user=bob service="sshd rhost=198.51.100.5 outcome=denied" rhost=- outcome=denied reason=wrong-code failures=2`},
		{req: sshd("bob", "192.0.2.10"), answer: "abc",
			line: "user=bob service=sshd rhost=192.0.2.10 outcome=denied reason=malformed-code failures=3 locked_until=", ban: "192.0.2.10"},
		{req: sshd("carol", "192.0.2.11"), answer: "wrong",
			line: "user=carol service=sshd rhost=192.0.2.11 outcome=denied reason=not-enrolled", ban: "192.0.2.11"},
		{req: with(sshd("carol", "192.0.2.12"), func(r *protocol.Request) { r.Args = append(r.Args, "nullok") }), answer: "wrong",
			line: "user=carol service=sshd rhost=192.0.2.12 outcome=not-enrolled reason=nullok"},
		{req: with(sshd("root", "192.0.2.13"), func(r *protocol.Request) { r.Args = []string{"config=" + exemptCfg} }), answer: "wrong",
			line: "user=root service=sshd rhost=192.0.2.13 outcome=exempt reason=policy policy=exempt-user:root"},
		{req: with(sshd("carol", "192.0.2.14"), func(r *protocol.Request) { r.Args = []string{"config=" + graceCfg} }), answer: "wrong",
			line: "user=carol service=sshd rhost=192.0.2.14 outcome=not-enrolled reason=before-deadline deadline=2999-01-01 days_left="},
		{req: with(sshd("carol", "192.0.2.15"), func(r *protocol.Request) { r.Args = []string{"config=" + pastCfg, "nullok"} }), answer: "wrong",
			line: "user=carol service=sshd rhost=192.0.2.15 outcome=denied reason=deadline-passed deadline=2000-01-01 policy=everyone", ban: "192.0.2.15"},
		{req: with(sshd("carol", "192.0.2.16"), func(r *protocol.Request) { r.Args = []string{"config=" + brokenCfg} }), answer: "wrong",
			line: "user=carol service=sshd rhost=192.0.2.16 outcome=error reason=policy-error policy=error error="},
		// Self mode: a normal user's own process chose the remote host.
		{self: true, req: selfReq("sshd", "198.51.100.6"), answer: "wrong",
			line: "user=nobody service=self-sshd rhost=198.51.100.6 outcome=denied reason=not-enrolled"},
		{self: true, req: selfReq("", "198.51.100.7"), answer: "wrong",
			line: "user=nobody service=self rhost=198.51.100.7 outcome=denied reason=not-enrolled"},
		{self: true, req: selfReq("x rhost=10.9.8.7 outcome=denied", "198.51.100.9"), answer: "wrong",
			line: `user=nobody service="self-x rhost=10.9.8.7 outcome=denied" rhost=198.51.100.9 outcome=denied reason=not-enrolled`},
	}
	for i, a := range atts {
		answer := a.answer
		switch {
		case answer == "wrong":
			answer = wrong()
		case strings.HasPrefix(answer, "right:"):
			answer = right(answer[len("right:"):])
			if a.req.User == "erin" {
				erinCode = answer
			}
		case answer == "again:erin":
			answer = erinCode
		}
		var err error
		if a.self {
			err = runClient(client, socket, a.req, answer)
		} else {
			err = converse(socket, a.req, answer)
		}
		if err != nil {
			t.Fatalf("attempt %d (%q): %v", i, a.line, err)
		}
	}
	stop()

	mu.Lock()
	defer mu.Unlock()
	if route == "syslog" && errText.Len() > 0 {
		t.Errorf("with a syslog socket the daemon still wrote to standard error: %s", errText.String())
	}
	// Each attempt wrote exactly its line, in order.
	var forLine []*attempt
	n := 0
	for _, l := range lines {
		if !strings.HasPrefix(l.text, "user=") {
			forLine = append(forLine, nil)
			continue
		}
		if n >= len(atts) || !strings.HasPrefix(l.text, atts[n].line) {
			want := "(nothing)"
			if n < len(atts) {
				want = atts[n].line
			}
			t.Fatalf("log line %d is %q, want %q", n, l.text, want)
		}
		if l.tag != tag {
			t.Errorf("line %q tagged %s, want %s", l.text, l.tag, tag)
		}
		forLine = append(forLine, atts[n])
		n++
	}
	if n != len(atts) {
		t.Fatalf("%d attempt lines for %d attempts", n, len(atts))
	}
	return lines, forLine
}

// syslogMsg is what internal/authlog sends: <PRI>Mmm dd hh:mm:ss TAG[PID]: LINE.
var syslogMsg = regexp.MustCompile(`^<(\d+)>([A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d) (otpgate\[\d+\]): (.*)\n?$`)

// parseSyslog reads one message as rsyslog would before writing it to
// /var/log/auth.log.
func parseSyslog(msg string) (logLine, error) {
	m := syslogMsg.FindStringSubmatch(msg)
	if m == nil {
		return logLine{}, errors.New("not a syslog message of the expected form")
	}
	if m[1] != "85" && m[1] != "86" { // authpriv.notice, authpriv.info
		return logLine{}, fmt.Errorf("priority %s, not authpriv", m[1])
	}
	stamp, err := time.ParseInLocation(time.Stamp, m[2], time.Local)
	if err != nil {
		return logLine{}, err
	}
	now := time.Now()
	stamp = stamp.AddDate(now.Year(), 0, 0)
	return logLine{stamp: stamp, tag: m[3], text: m[4]}, nil
}

// ui answers the one prompt with answer, or gives no answer.
type ui struct{ answer string }

func (u ui) Prompt(string, bool) (string, error) {
	if u.answer == "" {
		return "", errors.New("no answer")
	}
	return u.answer, nil
}
func (ui) Message(string, bool)   {}
func (ui) Data(helper.Data) error { return nil }

// converse sends one request as this process (root: trusted mode).
func converse(socket string, req protocol.Request, answer string) error {
	c, err := net.DialTimeout("unix", socket, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = helper.Converse(c, req, ui{answer}, 20*time.Second)
	return err
}

// clientJob is a request for a client run as nobody.
type clientJob struct {
	Socket  string           `json:"socket"`
	Request protocol.Request `json:"request"`
	Answer  string           `json:"answer"`
}

// runClient sends req as nobody (self mode), through a copy of the test
// binary.
func runClient(client, socket string, req protocol.Request, answer string) error {
	job, err := json.Marshal(clientJob{Socket: socket, Request: req, Answer: answer})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, client, "-test.run=^$")
	// GORACE: a race-enabled child would sleep 1 s at exit.
	cmd.Env = []string{clientEnv + "=" + string(job), "GORACE=atexit_sleep_ms=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: selfUID, Gid: selfUID}}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("client as uid %d: %v: %s", selfUID, err, out)
	}
	return nil
}

func clientMain(job string) int {
	var j clientJob
	if err := json.Unmarshal([]byte(job), &j); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := converse(j.Socket, j.Request, j.Answer); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
