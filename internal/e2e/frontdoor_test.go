package e2e

// 100 ssh logins at once through a real sshd on 127.0.0.1: 25 users, four
// logins each, with fresh codes, wrong codes, replays of a used code, and
// users locked before or during the burst. Every login is held at the
// code prompt until all 100 are there, then all are answered at once.
// Every outcome and every user's failure count afterwards follow from the
// rules: a wrong or replayed code is counted, max_failures counted
// failures lock, an attempt while locked is refused and not counted, a
// code is accepted once, and an accepted code resets the count.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// doorUsers times doorLogins is the number of logins at once.
	doorUsers  = 25
	doorLogins = 4
	// doorMaxFailures is lockout.max_failures of the store.
	doorMaxFailures = 5
	// doorBarrier bounds the wait for every login to reach the code
	// prompt. The harness's sshd has LoginGraceTime 30 and ssh runs under
	// loginTimeout (30 s): the answers, about a second after the release,
	// must still come within them. It takes about 8 s on 2 idle cores.
	doorBarrier = 25 * time.Second
)

// answerKind is what one login types at the code prompt.
type answerKind int

const (
	answerFresh  answerKind = iota // the user's code of the release instant, never used before
	answerWrong                    // a code of no step near now
	answerReplay                   // the code accepted by otpgate verify before the burst
)

// doorClass is one kind of user in the burst: what happened before it,
// what its four logins type, and what must follow.
type doorClass struct {
	name      string
	preWrong  int  // wrong codes given to otpgate verify before the burst
	preAccept bool // the current code accepted by otpgate verify before the burst
	answers   [doorLogins]answerKind
	// The logins that get in: -1 none, -2 exactly one of any, else the
	// index of the only one.
	in               int
	failMin, failMax int // the failure count afterwards
	locked           bool
}

var doorClasses = []doorClass{
	// The first to take the user's lock is accepted; the other three are
	// then replays, counted after the reset: 3 whatever the order.
	{name: "one fresh code four times", answers: [doorLogins]answerKind{answerFresh, answerFresh, answerFresh, answerFresh}, in: -2, failMin: 3, failMax: 3},
	{name: "four wrong codes", answers: [doorLogins]answerKind{answerWrong, answerWrong, answerWrong, answerWrong}, in: -1, failMin: 4, failMax: 4},
	// 2 + 4 attempts: the third in the burst locks at 5, the fourth is
	// refused and not counted.
	{name: "two earlier failures, four wrong codes", preWrong: 2, answers: [doorLogins]answerKind{answerWrong, answerWrong, answerWrong, answerWrong},
		in: -1, failMin: doorMaxFailures, failMax: doorMaxFailures, locked: true},
	{name: "four replays of a used code", preAccept: true, answers: [doorLogins]answerKind{answerReplay, answerReplay, answerReplay, answerReplay},
		in: -1, failMin: 4, failMax: 4},
	// The success resets the count, and the scheduler decides how many of
	// the wrong codes come after it: 0 to 3, never locked.
	{name: "one fresh code, three wrong", answers: [doorLogins]answerKind{answerFresh, answerWrong, answerWrong, answerWrong}, in: 0, failMin: 0, failMax: 3},
	// Locked before the burst: the right code is refused four times and
	// nothing is counted.
	{name: "locked before, fresh code four times", preWrong: doorMaxFailures, answers: [doorLogins]answerKind{answerFresh, answerFresh, answerFresh, answerFresh},
		in: -1, failMin: doorMaxFailures, failMax: doorMaxFailures, locked: true},
}

// doorUser is one user of the burst.
type doorUser struct {
	u      *testUser
	en     enrollment
	client *sshClient
	class  doorClass
	wrong  string // a wrong code
	used   string // the code accepted before the burst (preAccept)
	logins [doorLogins]*doorLogin
}

// doorLogin is one ssh login of the burst with its gated askpass.
type doorLogin struct {
	p    *askpass
	kind answerKind
	r    result
	done chan struct{}
}

// gatedAskpass writes an SSH_ASKPASS program that logs the prompt, then,
// for the code prompt, blocks until the test closes the gate (a FIFO
// whose only writer the test holds) and answers the code file. It opens
// the gate before it logs the prompt, so a logged prompt means the
// program is already waiting.
func gatedAskpass(t *testing.T, gate string) *askpass {
	t.Helper()
	p := &askpass{dir: t.TempDir()}
	p.script = filepath.Join(p.dir, "askpass")
	script := fmt.Sprintf(`#!/bin/sh
# SSH_ASKPASS of TestSSHHundredParallelLogins: wait at the gate, then answer.
exec 3<'%[1]s' || exit 1
printf '%%s\n' "$1" >>'%[2]s/prompts.log'
case "$1" in
*'erification code'*) cat <&3 >/dev/null; exec cat '%[2]s/code' ;;
esac
exit 1
`, gate, p.dir)
	writeFile(t, p.script, script, 0o700)
	return p
}

// helperProcesses lists the pids of running processes whose executable is
// path.
func helperProcesses(path string) []string {
	var pids []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if exe, err := os.Readlink(d + "/exe"); err == nil && exe == path {
			pids = append(pids, filepath.Base(d))
		}
	}
	return pids
}

// TestSSHHundredParallelLogins: 100 publickey,keyboard-interactive logins
// at once, 25 users of the classes above, all held at the code prompt and
// released together. None hangs, sshd drops none (its MaxStartups is 100
// in the harness), every login gets what its answer must get, and every
// user's count afterwards is exact.
func TestSSHHundredParallelLogins(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen")
	begin := time.Now()
	e := newOTPEnv(t, doorMaxFailures)

	users := make([]*doorUser, doorUsers)
	var names []string
	for i := range users {
		u := newUser(t)
		d := &doorUser{u: u, class: doorClasses[i%len(doorClasses)]}
		d.en = e.enroll(t, u)
		d.client = newSSHClient(t, u)
		users[i] = d
		names = append(names, u.name)
	}
	made := time.Since(begin)

	// What happened before the burst, through otpgate verify.
	for _, d := range users {
		d.wrong = wrongCode(t, d.en)
		for k := 0; k < d.class.preWrong; k++ {
			verifyCLI(t, e, d.u, d.wrong, 1)
		}
		if d.class.preAccept {
			d.used = codeNow(t, d.en, 0)
			verifyCLI(t, e, d.u, d.used, 0)
		}
	}
	for _, d := range users { // the starting point each class assumes
		wantStatus(t, e, d.u, d.class.preWrong, d.class.preWrong >= doorMaxFailures)
	}
	if t.Failed() {
		t.FailNow()
	}

	s := startSSHD(t, sshdConfig{
		authMethods: "publickey,keyboard-interactive",
		pamStack:    keyThenCodeStack(e),
		allowUsers:  names,
	})

	gate := filepath.Join(t.TempDir(), "gate")
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	// The test holds the gate's only writer: readers block until it is
	// closed. O_RDWR opens a FIFO without waiting for a reader.
	gateW, err := os.OpenFile(gate, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			gateW.Close()
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer release() // first: a failure before the release must not leave askpass programs waiting
	all := 0
	burstStart := time.Now()
	for _, d := range users {
		for k := range d.logins {
			l := &doorLogin{p: gatedAskpass(t, gate), kind: d.class.answers[k], done: make(chan struct{})}
			d.logins[k] = l
			all++
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(l.done)
				l.r = d.client.login(s, "publickey,keyboard-interactive", l.p, remoteCmd)
			}()
		}
	}

	// The barrier: every login shows the code prompt (its helper runs
	// and waits for the answer), or one ends early, or time runs out.
	prompted := func(l *doorLogin) bool {
		b, _ := os.ReadFile(filepath.Join(l.p.dir, "prompts.log"))
		return strings.Contains(string(b), "erification code")
	}
	deadline := time.Now().Add(doorBarrier)
	waiting := all
	for waiting > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		waiting = 0
		for _, d := range users {
			for _, l := range d.logins {
				select {
				case <-l.done:
					t.Errorf("%s: a login ended before the release: %s", d.u.name, l.r)
				default:
					if !prompted(l) {
						waiting++
					}
				}
			}
		}
		if t.Failed() {
			break
		}
	}
	atPrompt := time.Since(burstStart)
	if waiting > 0 {
		t.Errorf("%d of %d logins did not reach the code prompt within %v (sshd dropped them, or too slow):\n%s",
			waiting, all, doorBarrier, s.logs.String())
	}

	// The answers, computed now so that fresh codes are of this step.
	now := time.Now()
	for _, d := range users {
		var freshCode string
		for _, l := range d.logins {
			var c string
			switch l.kind {
			case answerFresh:
				if freshCode == "" {
					freshCode = totpAt(t, d.en, now)
				}
				c = freshCode
			case answerWrong:
				c = d.wrong
			case answerReplay:
				c = d.used
			}
			writeFile(t, filepath.Join(l.p.dir, "code"), c, 0o600)
		}
	}
	releasedAt := time.Now()
	release()
	wg.Wait()
	t.Logf("%d users made (user, key, enrollment) in %v; %d logins at the prompt %v after their start; all done %v after the release",
		doorUsers, made.Round(time.Millisecond), all, atPrompt.Round(time.Millisecond), time.Since(releasedAt).Round(time.Millisecond))

	if strings.Contains(s.logs.String(), "MaxStartups") {
		t.Errorf("sshd dropped connections past MaxStartups:\n%s", s.logs.String())
	}
	totalIn := 0
	for _, d := range users {
		c := d.class
		var in []int
		for k, l := range d.logins {
			r := l.r
			what := fmt.Sprintf("%s (%s), login %d", d.u.name, c.name, k)
			switch {
			case r.timedOut:
				t.Errorf("%s hung (killed after its timeout): %s", what, r)
			case r.exit == 0 && strings.Contains(r.stdout, marker(d.u)):
				in = append(in, k)
			case r.exit == 255 && strings.Contains(r.stderr, "Permission denied") && !strings.Contains(r.stdout, marker(d.u)):
			default:
				t.Errorf("%s: neither in nor denied: %s", what, r)
			}
			if n := strings.Count(l.p.prompts(t), "erification code"); n != 1 {
				t.Errorf("%s: the code prompt was shown %d times, want once", what, n)
			}
		}
		totalIn += len(in)
		switch {
		case c.in == -1 && len(in) != 0:
			t.Errorf("%s (%s): logins %v got in, want none", d.u.name, c.name, in)
		case c.in == -2 && len(in) != 1:
			t.Errorf("%s (%s): logins %v got in, want exactly one", d.u.name, c.name, in)
		case c.in >= 0 && (len(in) != 1 || in[0] != c.in):
			t.Errorf("%s (%s): logins %v got in, want only login %d (the fresh code)", d.u.name, c.name, in, c.in)
		}
		st := e.status(t, d.u)
		if st.Failures < c.failMin || st.Failures > c.failMax || st.Locked != c.locked {
			t.Errorf("%s (%s): failures=%d locked=%v afterwards, want failures %d..%d locked=%v",
				d.u.name, c.name, st.Failures, st.Locked, c.failMin, c.failMax, c.locked)
		}
	}
	t.Logf("%d of %d logins got in", totalIn, all)
	if left := helperProcesses(e.bins.helper); len(left) != 0 {
		t.Errorf("helpers still running after every login ended: pids %v", left)
	}
}

// verifyCLI runs otpgate verify for u with code and wants the exit status
// want (0 accepted, 1 denied).
func verifyCLI(t *testing.T, e *otpEnv, u *testUser, code string, want int) {
	t.Helper()
	r := run(setupTimeout, strings.NewReader(code+"\n"), e.bins.cli, "--config", e.config, "verify", "--user", u.name)
	if r.timedOut || r.exit != want {
		t.Fatalf("otpgate verify --user %s: want exit %d: %s", u.name, want, r)
	}
}
