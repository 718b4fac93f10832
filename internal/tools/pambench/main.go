// Command pambench measures otpgate through real libpam: pamtester drives
// pam_otpgate.so, which execs otpgate-helper or asks it running as a
// daemon, both installed by make install into a private prefix. It prints
// three things, as plain text and as markdown snippets for
// docs/SECURITY.md and docs/PERFORMANCE.md:
//
// Before and after: one authentication with a wrong code, and one with
// the right code (a new user each time: a code is accepted once), through
// otpgate (the working tree as it is now, and, with -baseline, a git
// revision built in a temporary git worktree) against the same through
// google-authenticator-libpam (Debian's libpam-google-authenticator, all
// in-process C, the anchor), interleaved in one run on one machine: the
// medians of wall and CPU time (pamtester and everything it waited for)
// and their ratio to the anchor. With a wrong code each module reads its
// files, computes the codes of its window and denies; otpgate also counts
// the attempt with an fsynced write, as its design requires, and
// google-authenticator, without RATE_LIMIT, writes nothing. With the
// right code both record the code as used. The working tree runs twice:
// in exec mode (mode=exec: the module forks and execs the helper) and in
// daemon mode (socket=... mode=daemon: the module asks an otpgate-helper
// --listen that pambench starts from the same build). In daemon mode the
// daemon's CPU time is counted too: its utime and stime from
// /proc/PID/stat, read before and after each daemon-mode pamtester run,
// summed over the runs of a kind and divided by their number, added to
// the median CPU time of pamtester.
//
// The daemon under load (see daemon.go): a fresh daemon, its RSS at rest,
// then internal/tools/daemonload speaking the protocol directly over the
// socket from -clients connections at once, on one user and on -users
// users, the authentications per second, and the RSS after 10,000 and
// 20,000 of them; then one client at a time with the store on disk and on
// a tmpfs, which shows what the fsyncs cost.
//
// Timing: the four answers a caller can get without the code (an unknown
// user, a known user who is not enrolled, a locked user, a wrong code for
// an enrolled user), -timing samples each, in a shuffled order every round
// so that drift falls on all four alike: the spread of each, a comparison
// of unknown and not enrolled (bootstrap interval of the difference of
// the medians and a Mann-Whitney U test), and a check that what pamtester
// shows for those two (its output and exit status) is byte for byte the
// same. Any difference there makes pambench exit 1.
//
// Run as root from the repository (make bench does):
//
//	go run ./internal/tools/pambench [-n 300] [-timing 1000] [-baseline cedc831] [-load 5000] [-clients 16] [-users 100]
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/otpgate/otpgate/internal/protocol"
)

const gaModule = "pam_google_authenticator.so"

func main() {
	n := flag.Int("n", 300, "authentications of each kind (wrong code, right code) per module for the comparison with google-authenticator-libpam")
	timingN := flag.Int("timing", 1000, "samples of each of the four answers for the timing evidence (0: skip it)")
	baseline := flag.String("baseline", "", "a git revision to build in a temporary worktree and compare with the working tree (empty: none)")
	var lo loadOpts
	flag.IntVar(&lo.n, "load", 5000, "authentications of each daemon load block (one user, then -users users; two rounds); 0 skips the load")
	flag.IntVar(&lo.clients, "clients", 16, "connections at once in the daemon load")
	flag.IntVar(&lo.users, "users", 100, "users of the many-users daemon load")
	flag.Parse()
	if *n < 1 || *timingN < 0 || lo.n < 0 || lo.clients < 1 || lo.users < 1 {
		fmt.Fprintln(os.Stderr, "pambench: -n, -clients and -users must be at least 1, -timing and -load at least 0")
		os.Exit(2)
	}
	var c cleanups
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "pambench: %v; removing the pam.d services, the worktree and the temporary files\n", s)
		c.run()
		os.Exit(130)
	}()
	err := run(&c, *n, *timingN, *baseline, lo)
	c.run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pambench:", err)
		os.Exit(1)
	}
}

// cleanups runs, last first and once, what undoes the benchmark's changes
// to the system, at the end or on a signal.
type cleanups struct {
	mu   sync.Mutex
	fs   []func()
	done bool
}

func (c *cleanups) add(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fs = append(c.fs, f)
}

func (c *cleanups) run() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	c.done = true
	for i := len(c.fs) - 1; i >= 0; i-- {
		c.fs[i]()
	}
}

type sample struct{ wall, cpu time.Duration }

// target is one install of otpgate with root enrolled in its own store,
// behind its own /etc/pam.d service.
type target struct {
	install
	dir     string
	config  string
	service string
	args    string  // more module arguments (" mode=exec"), "" for the baseline
	daemon  *daemon // the daemon the module asks, in daemon mode
	secret  []byte
	// The right-code runs: users enrolled once each, without backup
	// codes (a TOTP success never looks at them), behind their own service.
	okService string
	okSecrets map[string][]byte
}

func run(c *cleanups, n, timingN int, baseline string, lo loadOpts) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: the services go into /etc/pam.d and the helper must be root-owned")
	}
	for _, tool := range []string{"pamtester", "make", "cc", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is missing: as root, scripts/test-deps.sh installs what this needs (pamtester, libpam-google-authenticator, gcc, make)", tool)
		}
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	// /var/tmp: on disk where /tmp is a tmpfs, so that fsync costs what it
	// costs under /var/lib/otpgate.
	dir, err := os.MkdirTemp("/var/tmp", "otpgate-bench-")
	if err != nil {
		return err
	}
	c.add(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	suffix := randHex()
	commit := describe(root)

	fmt.Fprintf(os.Stderr, "pambench: building the working tree (%s) with make install into %s\n", commit, dir)
	nowDir := filepath.Join(dir, "now")
	if err := copyTree(root, filepath.Join(nowDir, "src")); err != nil {
		return err
	}
	nowInst, err := makeInstall("now ("+commit+")", filepath.Join(nowDir, "src"), nowDir)
	if err != nil {
		return err
	}
	// mode=exec: the module forks and execs the helper, whatever listens
	// at the compiled-in socket.
	now, err := newTarget(c, nowInst, nowDir, "otpgate-bench-now-"+suffix, " mode=exec")
	if err != nil {
		return err
	}
	now.name += ", mode=exec"
	targets := []*target{now}

	// The same build in daemon mode: its own store and users (a code is
	// accepted once per user), a daemon started from its helper.
	dmDir := filepath.Join(dir, "daemon")
	dm, err := startDaemon(c, nowInst.helper, filepath.Join(dmDir, "run"), filepath.Join(dir, "daemon.log"))
	if err != nil {
		return err
	}
	dmT, err := newTarget(c, nowInst, dmDir, "otpgate-bench-daemon-"+suffix, " socket="+dm.socket+" mode=daemon")
	if err != nil {
		return err
	}
	dmT.name += ", mode=daemon"
	dmT.daemon = dm

	var baseNote string
	if baseline != "" {
		fmt.Fprintf(os.Stderr, "pambench: building the baseline %s in a temporary git worktree\n", baseline)
		base, err := buildBaseline(c, root, baseline, filepath.Join(dir, "base"), "otpgate-bench-base-"+suffix)
		if err != nil {
			baseNote = fmt.Sprintf("baseline %s not measured: %v", baseline, err)
			fmt.Fprintf(os.Stderr, "pambench: %s; going on without it\n", baseNote)
		} else {
			targets = append(targets, base)
		}
	}

	// Right codes: a user per round (a code is accepted once), the same
	// names and, for google-authenticator, the working tree's secrets.
	var okUsers []string
	for i := 0; i < n+3; i++ {
		okUsers = append(okUsers, fmt.Sprintf("okbench%04d", i))
	}
	fmt.Fprintf(os.Stderr, "pambench: enrolling %d users in each store for the right-code runs\n", len(okUsers))
	for _, t := range append([]*target{dmT}, targets...) {
		if err := setupRight(c, t, okUsers); err != nil {
			return err
		}
	}
	gaDir := filepath.Join(dir, "ga")
	if err := os.Mkdir(gaDir, 0o755); err != nil {
		return err
	}
	for _, u := range okUsers {
		text := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(now.okSecrets[u]) + "\n\" TOTP_AUTH\n\" DISALLOW_REUSE\n\" WINDOW_SIZE 3\n"
		if err := os.WriteFile(filepath.Join(gaDir, u), []byte(text), 0o400); err != nil {
			return err
		}
	}
	gaOKSvc := "gauth-bench-ok-" + suffix
	if err := etcService(c, gaOKSvc, fmt.Sprintf("auth required %s secret=%s/${USER} user=root\n", gaModule, gaDir)); err != nil {
		return err
	}

	// google-authenticator: the working tree's secret in its file format.
	gaFile := filepath.Join(dir, "google_authenticator")
	gaText := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(now.secret) + "\n\" TOTP_AUTH\n\" DISALLOW_REUSE\n\" WINDOW_SIZE 3\n"
	if err := os.WriteFile(gaFile, []byte(gaText), 0o400); err != nil {
		return err
	}
	gaSvc := "gauth-bench-" + suffix
	if err := etcService(c, gaSvc, fmt.Sprintf("auth required %s secret=%s user=root\n", gaModule, gaFile)); err != nil {
		return err
	}

	phase0, err := dm.cpu()
	if err != nil {
		return err
	}
	floorSvc := "permit-bench-" + suffix
	if err := etcService(c, floorSvc, "auth required pam_permit.so\n"); err != nil {
		return err
	}
	cmp, err := compare(append([]*target{dmT}, targets...), gaSvc, gaOKSvc, floorSvc, okUsers, now.okSecrets, n)
	if err != nil {
		return err
	}
	// The daemon's CPU time over the whole comparison (warm-up rounds and
	// the time between its runs included), as a check on the sums.
	phase1, err := dm.cpu()
	if err != nil {
		return err
	}
	cmp.daemonWhole.add(phase0, phase1)
	cmp.daemonWhole.n = 2 * (n + 3)
	dm.stop()
	alone := helperAloneN(targets, n)

	var ld *loadResult
	if lo.n > 0 {
		fmt.Fprintf(os.Stderr, "pambench: the daemon under load: %d clients, one user and %d users, %d authentications a block\n", lo.clients, lo.users, lo.n)
		if ld, err = load(c, nowInst, filepath.Join(nowDir, "src"), dir, lo); err != nil {
			return err
		}
	}

	var tm *timingResult
	if timingN > 0 {
		fmt.Fprintf(os.Stderr, "pambench: timing, %d samples of each of four answers\n", timingN)
		if tm, err = timing(c, now, timingN); err != nil {
			return err
		}
	}

	env := environment(dir, commit)
	printComparison(cmp, targets, n, baseNote, alone)
	printModes(cmp, now, dmT, n)
	if ld != nil {
		printLoad(ld)
	}
	if tm != nil {
		printTiming(tm)
	}
	fmt.Println()
	fmt.Println("----- 8< markdown for docs/SECURITY.md -----")
	fmt.Print(markdown(env, cmp, targets, n, baseNote, alone, tm))
	fmt.Println("----- >8 -----")
	fmt.Println()
	fmt.Println("----- 8< markdown for docs/PERFORMANCE.md -----")
	fmt.Print(performanceMarkdown(env, cmp, now, dmT, n, alone[now], ld))
	fmt.Println("----- >8 -----")
	if tm != nil && tm.mismatches > 0 {
		return fmt.Errorf("an unknown and a not-enrolled user saw different things in %d of %d samples (see above)", tm.mismatches, tm.compared)
	}
	return nil
}

// buildBaseline checks rev out into a temporary git worktree, builds and
// installs it there, and removes the worktree again (the install stays
// under dir until the end).
func buildBaseline(c *cleanups, root, rev, dir, service string) (*target, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	src := filepath.Join(dir, "src")
	remove, err := baselineTree(root, rev, src)
	if err != nil {
		return nil, err
	}
	c.add(remove)
	inst, err := makeInstall("baseline "+rev, src, dir)
	remove()
	if err != nil {
		return nil, err
	}
	return newTarget(c, inst, dir, service, "")
}

// newTarget writes a config whose lockout never trips within 90 wrong
// codes (pambench unlocks every 90), enrolls root with the install's own
// otpgate and adds its pam.d service, with args after the config.
func newTarget(c *cleanups, in install, dir, service, args string) (*target, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	t := &target{install: in, dir: dir, config: filepath.Join(dir, "config.toml"), service: service, args: args}
	if err := writeConfig(t.config, filepath.Join(dir, "store"), 100, ""); err != nil {
		return nil, err
	}
	secret, err := enroll(t, "root")
	if err != nil {
		return nil, err
	}
	t.secret = secret
	return t, etcService(c, service, fmt.Sprintf("auth required %s config=%s%s\n", in.module, t.config, args))
}

// setupRight enrolls users in the target's store for the right-code
// runs, under a config without backup codes (enrolling is then quick),
// and adds its service.
func setupRight(c *cleanups, t *target, users []string) error {
	config := filepath.Join(t.dir, "ok.toml")
	body := fmt.Sprintf("store = %q\n[backup_codes]\ncount = 0\n", filepath.Join(t.dir, "store"))
	if err := os.WriteFile(config, []byte(body), 0o644); err != nil {
		return err
	}
	t.okSecrets = map[string][]byte{}
	for _, u := range users {
		out, err := exec.Command(t.otpgate, "--config", config, "enroll", "--user", u, "--force", "--no-confirm", "--json", "--qr", "none").Output()
		if err != nil {
			return fmt.Errorf("%s: otpgate enroll --user %s: %v %s", t.name, u, err, stderrOf(err))
		}
		secret, err := secretOf(t, out)
		if err != nil {
			return err
		}
		t.okSecrets[u] = secret
	}
	t.okService = t.service + "-ok"
	return etcService(c, t.okService, fmt.Sprintf("auth required %s config=%s%s\n", t.module, config, t.args))
}

func writeConfig(path, store string, maxFailures int, lockDuration string) error {
	body := fmt.Sprintf("store = %q\n[lockout]\nmax_failures = %d\n", store, maxFailures)
	if lockDuration != "" {
		body += fmt.Sprintf("lock_duration = %q\n", lockDuration)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		return err
	}
	return os.Chmod(path, 0o644)
}

// enroll enrolls user with the target's otpgate and returns the secret.
func enroll(t *target, user string) ([]byte, error) {
	out, err := exec.Command(t.otpgate, "--config", t.config, "enroll", "--user", user, "--force", "--no-confirm", "--json", "--qr", "none").Output()
	if err != nil {
		return nil, fmt.Errorf("%s: otpgate enroll --user %s: %v %s", t.name, user, err, stderrOf(err))
	}
	return secretOf(t, out)
}

// secretOf reads the secret from otpgate enroll --json.
func secretOf(t *target, out []byte) ([]byte, error) {
	var en struct{ Secret string }
	if err := json.Unmarshal(out, &en); err != nil || en.Secret == "" {
		return nil, fmt.Errorf("%s: otpgate enroll --json gave no secret: %v %q", t.name, err, out)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.TrimRight(strings.ToUpper(en.Secret), "="))
	if err != nil {
		return nil, fmt.Errorf("%s: the enrolled secret is not base32: %v", t.name, err)
	}
	return secret, nil
}

func unlock(t *target, user string) error {
	if out, err := exec.Command(t.otpgate, "--config", t.config, "unlock", "--user", user).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: otpgate unlock --user %s: %v %s", t.name, user, err, out)
	}
	return nil
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(bytes.TrimSpace(ee.Stderr))
	}
	return ""
}

// etcService writes /etc/pam.d/name (pamtester reads nothing else) and
// registers its removal.
func etcService(c *cleanups, name, body string) error {
	path := filepath.Join("/etc/pam.d", name)
	c.add(func() { os.Remove(path) })
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		return err
	}
	return os.Chmod(path, 0o644)
}

// attempt is what one pamtester run showed and how long it took.
type attempt struct {
	sample
	out  string // standard output and error, as the person sees them
	exit int
}

// pamtester authenticates user on service, answering code to any prompt.
func pamtester(service, user, code string) (attempt, error) {
	cmd := exec.Command("pamtester", service, user, "authenticate")
	cmd.Stdin = strings.NewReader(code + "\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	cmd.WaitDelay = 30 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return attempt{}, err
	}
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	wall := time.Since(start)
	timer.Stop()
	a := attempt{out: out.String(), exit: cmd.ProcessState.ExitCode()}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return a, fmt.Errorf("pamtester %s %s: %v", service, user, err)
	}
	if !cmd.ProcessState.Exited() {
		return a, fmt.Errorf("pamtester %s %s: %v (hung for 60 s?) %q", service, user, cmd.ProcessState, a.out)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	a.sample = sample{wall, time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	return a, nil
}

// denied fails unless a shows a denial.
func denied(a attempt, what string) error {
	if a.exit == 0 || strings.Contains(a.out, "successfully authenticated") {
		return fmt.Errorf("%s: pamtester accepted (exit %d): %q", what, a.exit, a.out)
	}
	if !strings.Contains(a.out, "pamtester: ") {
		return fmt.Errorf("%s: unexpected pamtester output %q", what, a.out)
	}
	return nil
}

// comparison holds the samples of each otpgate target and the anchor,
// with a wrong code and with a right one, and for a target in daemon mode
// the daemon's CPU time over the measured runs of each kind ([0] wrong
// code, [1] right code).
type comparison struct {
	otp, otpOK map[*target][]sample
	ga, gaOK   []sample
	daemonCPU  map[*target]*[2]daemonCPU
	// daemonWhole is the daemon's CPU time from before the first round to
	// after the last, over every authentication it served.
	daemonWhole daemonCPU
	// floor is pamtester through pam_permit.so alone: pamtester, libpam
	// and a stack that asks nothing.
	floor []sample
}

// compare runs n rounds. Each round authenticates root with one wrong
// code, and a new user with the right code, through every target and
// google-authenticator, all in a new random order.
func compare(targets []*target, gaSvc, gaOKSvc, floorSvc string, okUsers []string, gaSecrets map[string][]byte, n int) (*comparison, error) {
	cmp := &comparison{otp: map[*target][]sample{}, otpOK: map[*target][]sample{}, daemonCPU: map[*target]*[2]daemonCPU{}}
	var secrets [][]byte
	for _, t := range targets {
		secrets = append(secrets, t.secret)
	}
	type runner struct {
		name, svc string
		t         *target // nil: google-authenticator, or the floor
		right     bool
		floor     bool // pam_permit.so alone
	}
	var runners []runner
	for _, t := range targets {
		runners = append(runners, runner{t.name, t.service, t, false, false}, runner{t.name, t.okService, t, true, false})
	}
	runners = append(runners, runner{"google-authenticator", gaSvc, nil, false, false}, runner{"google-authenticator", gaOKSvc, nil, true, false},
		runner{"pam_permit", floorSvc, nil, false, true})
	for i := -3; i < n; i++ { // three rounds to warm up (page cache, first exec)
		wrong := wrongCode(secrets, time.Now())
		okUser := okUsers[i+3]
		for _, k := range randPerm(len(runners)) {
			r := runners[k]
			user, code := "root", wrong
			if r.right {
				sec := gaSecrets[okUser]
				if r.t != nil {
					sec = r.t.okSecrets[okUser]
				}
				user, code = okUser, hotp(sec, uint64(time.Now().Unix()/30))
			}
			var before cpuReading
			if r.t != nil && r.t.daemon != nil {
				var err error
				if before, err = r.t.daemon.cpu(); err != nil {
					return nil, err
				}
			}
			a, err := pamtester(r.svc, user, code)
			if err != nil {
				return nil, err
			}
			if r.t != nil && r.t.daemon != nil && i >= 0 {
				after, err := r.t.daemon.cpu()
				if err != nil {
					return nil, err
				}
				if cmp.daemonCPU[r.t] == nil {
					cmp.daemonCPU[r.t] = &[2]daemonCPU{}
				}
				k := 0
				if r.right {
					k = 1
				}
				cmp.daemonCPU[r.t][k].add(before, after)
			}
			if r.floor {
				if a.exit != 0 {
					return nil, fmt.Errorf("pamtester with pam_permit.so alone failed (exit %d): %q", a.exit, a.out)
				}
				if i >= 0 {
					cmp.floor = append(cmp.floor, a.sample)
				}
				continue
			}
			if r.right && (a.exit != 0 || !strings.Contains(a.out, "successfully authenticated")) {
				return nil, fmt.Errorf("%s refused the right code of %s (exit %d): %q", r.name, user, a.exit, a.out)
			}
			if !r.right {
				if err := denied(a, r.name+", wrong code"); err != nil {
					return nil, err
				}
			}
			if i < 0 {
				continue
			}
			switch {
			case r.t != nil && r.right:
				cmp.otpOK[r.t] = append(cmp.otpOK[r.t], a.sample)
			case r.t != nil:
				cmp.otp[r.t] = append(cmp.otp[r.t], a.sample)
			case r.right:
				cmp.gaOK = append(cmp.gaOK, a.sample)
			default:
				cmp.ga = append(cmp.ga, a.sample)
			}
		}
		if (i+3)%90 == 89 {
			for _, t := range targets {
				if err := unlock(t, "root"); err != nil {
					return nil, err
				}
			}
		}
	}
	return cmp, nil
}

// wrongCode is a six-digit code that is none of the codes of secrets
// within two steps of now (SHA-1, 30 s: the defaults of both modules).
func wrongCode(secrets [][]byte, now time.Time) string {
	step := uint64(now.Unix() / 30)
	var near []string
	for _, s := range secrets {
		for d := uint64(0); d <= 4; d++ {
			near = append(near, hotp(s, step+d-2))
		}
	}
	for i := 0; ; i++ {
		c := fmt.Sprintf("%06d", (i*111111+123456)%1000000)
		if !slices.Contains(near, c) {
			return c
		}
	}
}

// hotp is RFC 4226 with six digits.
func hotp(secret []byte, counter uint64) string {
	m := hmac.New(sha1.New, secret)
	binary.Write(m, binary.BigEndian, counter)
	sum := m.Sum(nil)
	o := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[o:o+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", v%1000000)
}

// helperAloneN runs each target's helper n times as the module does,
// without libpam or pamtester, interleaved like compare.
func helperAloneN(targets []*target, n int) map[*target]aloneResult {
	res := map[*target]aloneResult{}
	samples := map[*target][]sample{}
	for i := 0; i < n; i++ {
		for _, k := range randPerm(len(targets)) {
			t := targets[k]
			if res[t].err != nil {
				continue
			}
			h, err := helperAlone(t.helper, t.config)
			if err != nil {
				res[t] = aloneResult{err: err}
				continue
			}
			samples[t] = append(samples[t], sample{h.wall, h.cpu})
			res[t] = aloneResult{rss: max(res[t].rss, h.rss)}
		}
		if i%90 == 89 || i == n-1 {
			for _, t := range targets {
				if err := unlock(t, "root"); err != nil {
					res[t] = aloneResult{err: err}
				}
			}
		}
	}
	for t, r := range res {
		if r.err == nil {
			sm := summarize(samples[t])
			r.wall = time.Duration(sm.median * float64(time.Millisecond))
			r.cpu = time.Duration(sm.cpuMedian * float64(time.Millisecond))
			res[t] = r
		}
	}
	return res
}

type helperRun struct {
	wall, cpu time.Duration
	rss       int64 // KiB
}

// helperAlone runs the helper once, as the module does, answering its
// prompt with a wrong code, and measures it.
func helperAlone(helper, config string) (helperRun, error) {
	start := time.Now()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return helperRun{}, err
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "bench"), os.NewFile(uintptr(fds[1]), "helper")
	cmd := exec.Command(helper)
	cmd.Stdin, cmd.Stdout, cmd.Env = theirs, theirs, []string{}
	if err := cmd.Start(); err != nil {
		return helperRun{}, err
	}
	theirs.Close()
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return helperRun{}, err
	}
	defer conn.Close()
	req := protocol.Request{Op: protocol.OpAuthenticate, User: "root", Service: "bench", Args: []string{"config=" + config}}
	p, err := req.Encode()
	if err != nil {
		return helperRun{}, err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	err = protocol.WriteFrame(conn, protocol.Frame{Type: protocol.TypeRequest, Payload: p})
	for err == nil {
		var f protocol.Frame
		if f, err = protocol.ReadFrame(conn); err != nil {
			break
		}
		if f.Type == protocol.TypePromptEchoOff || f.Type == protocol.TypePromptEchoOn {
			protocol.WriteFrame(conn, protocol.Frame{Type: protocol.TypeAnswer, Payload: []byte("000000")})
		}
		if f.Type == protocol.TypeResult {
			break
		}
	}
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return helperRun{}, fmt.Errorf("the helper alone: %v", err)
	}
	cmd.Wait()
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return helperRun{time.Since(start), time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Maxrss}, nil
}

func randHex() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// randPerm is a random order of 0..n-1 (crypto/rand: no seed to manage).
func randPerm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		var b [8]byte
		rand.Read(b[:])
		j := int(binary.LittleEndian.Uint64(b[:]) % uint64(i+1))
		p[i], p[j] = p[j], p[i]
	}
	return p
}
