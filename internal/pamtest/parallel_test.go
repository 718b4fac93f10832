package pamtest

// Parallel guesses through the real front door: hundreds of pamtester
// processes on one user, each with its own pam_otpgate.so and helper, all
// started, held at the code prompt, then answered at once. The lockout
// must hold exactly: max_failures wrong codes are counted, the one that
// reaches the threshold locks, every later attempt is answered "locked"
// without being counted, and a right code counts only if it came before
// the lock.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// burstSize is how many pamtester processes run at once.
	burstSize = 500
	// burstMaxFailures is lockout.max_failures of the burst tests.
	burstMaxFailures = 5
	// burstTimeout bounds one whole burst: starting every process,
	// waiting for every prompt, answering, and every exit. A process
	// still running then is killed with its process group (its helper).
	burstTimeout = 90 * time.Second
	// burstModuleTimeout is the pam.d timeout= of the burst service: the
	// helper's wait for the answer. The processes wait at the prompt for
	// all the others to start, seconds on 2 cores.
	burstModuleTimeout = "timeout=60"
)

// What pamtester and the module print (pam_strerror texts, pamtester's
// success line, the helper's messages on a lock).
const (
	ptPrompt    = "Verification code: "
	ptSuccess   = "successfully authenticated"
	ptAuthErr   = "Authentication failure"
	ptMaxTries  = "Have exhausted maximum number of retries"
	msgLocking  = "too many wrong codes; locked until"    // the attempt that locked
	msgLockedOn = "too many wrong codes; try again after" // an attempt while locked
)

// lockWaitHint ends a count mismatch: the one other plain denial is a
// helper that waited longer than verify.DefaultLockWait for the user's
// lock (not counted, as designed), which the logged release-to-done time
// shows.
const lockWaitHint = "; more wrong than counted failures can also be helpers that gave up waiting for the user's lock " +
	"(verify.DefaultLockWait, 10 s): compare the time from release to done logged above"

// verdict is what one pamtester process ended with.
type verdict int

const (
	vUnknown  verdict = iota
	vAccepted         // PAM_SUCCESS
	vWrong            // PAM_AUTH_ERR without a message: a counted failure
	vLocking          // PAM_MAXTRIES, "locked until": the failure that locked
	vLocked           // PAM_MAXTRIES, "try again after": refused, not counted
)

func (v verdict) String() string {
	return [...]string{"unknown", "accepted", "wrong", "locking", "locked"}[v]
}

// promptBuffer collects a process's output (stdout and stderr) and closes
// seen when the code prompt first appears.
type promptBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	seen   chan struct{}
	closed bool
}

func (p *promptBuffer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, err := p.b.Write(b)
	if !p.closed && bytes.Contains(p.b.Bytes(), []byte(ptPrompt)) {
		close(p.seen)
		p.closed = true
	}
	return n, err
}

func (p *promptBuffer) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.b.String()
}

// attempt is one pamtester process of a burst.
type attempt struct {
	answer  string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	out     *promptBuffer
	done    chan struct{} // closed when the process was reaped
	err     error         // from Wait
	verdict verdict
}

// classify reads the verdict from what pamtester printed.
func (a *attempt) classify() verdict {
	out := a.out.String()
	exit := -1
	if a.cmd.ProcessState != nil {
		exit = a.cmd.ProcessState.ExitCode()
	}
	if strings.Count(out, ptPrompt) != 1 {
		return vUnknown // prompted never or twice
	}
	switch {
	case exit == 0 && strings.Contains(out, ptSuccess) && !strings.Contains(out, "too many"):
		return vAccepted
	case exit == 1 && strings.Contains(out, ptAuthErr) && !strings.Contains(out, "too many"):
		return vWrong
	case exit == 1 && strings.Contains(out, ptMaxTries) && strings.Contains(out, msgLocking) && !strings.Contains(out, msgLockedOn):
		return vLocking
	case exit == 1 && strings.Contains(out, ptMaxTries) && strings.Contains(out, msgLockedOn) && !strings.Contains(out, msgLocking):
		return vLocked
	}
	return vUnknown
}

// burst starts one pamtester per answer on service for user, waits until
// every one shows the code prompt (its helper started and is waiting for
// the answer), then answers them all, in the order given by order (a
// permutation of the indexes; nil is 0, 1, ...), and waits for every
// exit; the first in order gets headStart before the others are
// answered. Answers are computed by answer(i) only at release time, so a
// TOTP code is fresh. It fails the test on a process that hangs or ends
// before its prompt.
func burst(t *testing.T, service, user string, n int, answer func(i int) string, order []int, headStart time.Duration) []*attempt {
	t.Helper()
	pt, err := exec.LookPath("pamtester")
	if err != nil {
		t.Fatal("pamtester is not installed (scripts/test-deps.sh installs it)") // burstStack skips first
	}
	if order == nil {
		order = make([]int, n)
		for i := range order {
			order[i] = i
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), burstTimeout)
	as := make([]*attempt, n)
	var wg sync.WaitGroup
	defer wg.Wait() // on a failure: cancel (deferred after) kills, then reap
	defer cancel()
	start := time.Now()
	for i := range as {
		a := &attempt{out: &promptBuffer{seen: make(chan struct{})}, done: make(chan struct{})}
		as[i] = a
		cmd := exec.CommandContext(ctx, pt, service, user, "authenticate")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "LC_ALL=C"}
		cmd.Stdout, cmd.Stderr = a.out, a.out
		if a.stdin, err = cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		a.cmd = cmd
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting pamtester %d of %d: %v", i+1, n, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.err = cmd.Wait()
			close(a.done)
		}()
	}
	started := time.Since(start)

	// Barrier: every process is at the prompt, its helper waiting.
	for i, a := range as {
		select {
		case <-a.out.seen:
		case <-a.done:
			t.Fatalf("pamtester %d ended before it prompted for the code (%v):\n%s", i, a.err, a.out)
		case <-ctx.Done():
			t.Fatalf("pamtester %d did not prompt within %v of the burst's start (%d processes):\n%s", i, burstTimeout, n, a.out)
		}
	}
	atPrompt := time.Since(start)

	release := time.Now()
	for k, i := range order {
		as[i].answer = answer(i)
		if _, err := io.WriteString(as[i].stdin, as[i].answer+"\n"); err != nil {
			t.Errorf("answering pamtester %d: %v", i, err)
		}
		as[i].stdin.Close()
		if k == 0 {
			time.Sleep(headStart)
		}
	}
	for i, a := range as {
		select {
		case <-a.done:
		case <-ctx.Done():
			t.Fatalf("pamtester %d hung after its answer (killed after %v):\n%s", i, burstTimeout, a.out)
		}
	}
	t.Logf("%d pamtester processes: started in %v, all at the prompt after %v, all answered %v after the release",
		n, started.Round(time.Millisecond), atPrompt.Round(time.Millisecond), time.Since(release).Round(time.Millisecond))
	for _, a := range as {
		a.verdict = a.classify()
	}
	return as
}

// tally counts the verdicts and fails the test on any it cannot read.
func tally(t *testing.T, as []*attempt) map[verdict]int {
	t.Helper()
	n := map[verdict]int{}
	for i, a := range as {
		n[a.verdict]++
		if a.verdict == vUnknown {
			t.Errorf("pamtester %d (answer %q): an outcome that is none of accepted, wrong, locking, locked (%v):\n%s", i, a.answer, a.err, a.out)
		}
	}
	return n
}

// helpersRunning lists the processes that run helperPath: after a burst
// there must be none.
func helpersRunning() []string {
	var pids []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if exe, err := os.Readlink(d + "/exe"); err == nil && exe == helperPath {
			pids = append(pids, filepath.Base(d))
		}
	}
	return pids
}

// wantLockedState checks the stored state after a burst: exactly
// max_failures counted and the lock set.
func wantLockedState(t *testing.T, s *stack, user string) {
	t.Helper()
	st, err := s.store.ReadState(user)
	if err != nil {
		t.Fatal(err)
	}
	if st.Failures != burstMaxFailures || !st.LockedUntil.After(time.Now()) {
		t.Errorf("state of %s after the burst: failures=%d locked_until=%v, want failures=%d and a lock in the future",
			user, st.Failures, st.LockedUntil, burstMaxFailures)
	}
	if left := helpersRunning(); len(left) != 0 {
		t.Errorf("helpers still running after the burst: pids %v", left)
	}
}

// burstStack is a stack with max_failures = burstMaxFailures and a
// service in /etc/pam.d (pamtester reads only there).
func burstStack(t *testing.T) (*stack, string) {
	t.Helper()
	s := newStack(t, fmt.Sprintf("[lockout]\nmax_failures = %d\nlock_duration = \"15m\"\n", burstMaxFailures))
	if _, err := exec.LookPath("pamtester"); err != nil {
		if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" {
			t.Fatal("pamtester is not installed (scripts/test-deps.sh installs it); OTPGATE_REQUIRE_TOOLS is set, so this is a failure")
		}
		t.Skip("pamtester is not installed (scripts/test-deps.sh installs it)")
	}
	return s, s.etcService(s.otpgate("required", burstModuleTimeout))
}

// TestPamtesterBurstWrong: 500 wrong codes at once on one user. Exactly
// max_failures are counted (max_failures-1 plain denials, then the one
// that locks), the other 495 are answered "locked" and not counted.
func TestPamtesterBurstWrong(t *testing.T) {
	s, svc := burstStack(t)
	secret, _ := s.enroll("alice")
	wrong := wrongCode(t, secret)
	as := burst(t, svc, "alice", burstSize, func(int) string { return wrong }, nil, 0)
	n := tally(t, as)
	want := map[verdict]int{vWrong: burstMaxFailures - 1, vLocking: 1, vLocked: burstSize - burstMaxFailures}
	for _, v := range []verdict{vAccepted, vWrong, vLocking, vLocked} {
		if n[v] != want[v] {
			t.Errorf("%d wrong codes at once: %d %s, want %d (all: %v)%s", burstSize, n[v], v, want[v], n, lockWaitHint)
		}
	}
	wantLockedState(t, s, "alice")
}

// TestPamtesterBurstOneRight: 500 at once on one user, one of them with
// the right code. Either it came before the lock: it is accepted, the k
// wrong codes before it (0 <= k < max_failures) were counted and reset,
// and max_failures more after it lock the account; or it came after the
// lock: it is answered "locked" like the rest. Run three times, the
// right answer released ahead of the others, first among them, and last,
// to reach both branches; each run checks whichever happened.
func TestPamtesterBurstOneRight(t *testing.T) {
	for _, c := range []struct {
		name      string
		first     bool
		headStart time.Duration
	}{
		// A head start, or the 499 others answered a few milliseconds
		// later usually reach the lock first (2 cores, 500 processes).
		{"right code released first, 50 ms ahead", true, 50 * time.Millisecond},
		{"right code released with the others", true, 0},
		{"right code released last", false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, svc := burstStack(t)
			secret, _ := s.enroll("alice")
			wrong := wrongCode(t, secret)
			right := burstSize / 2
			order := []int{right}
			for i := 0; i < burstSize; i++ {
				if i != right {
					order = append(order, i)
				}
			}
			if !c.first {
				order = append(order[1:], right)
			}
			as := burst(t, svc, "alice", burstSize, func(i int) string {
				if i == right {
					return code(t, secret, 0)
				}
				return wrong
			}, order, c.headStart)
			n := tally(t, as)
			switch as[right].verdict {
			case vAccepted:
				k := n[vWrong] - (burstMaxFailures - 1) // counted before the success
				t.Logf("the right code was accepted after %d counted wrong codes", k)
				if n[vAccepted] != 1 || k < 0 || k >= burstMaxFailures || n[vLocking] != 1 ||
					n[vLocked] != burstSize-1-n[vWrong]-1 {
					t.Errorf("right code accepted, yet the others are inconsistent: %v; want 1 accepted, "+
						"%d to %d wrong (k before it, %d after), 1 locking, the rest locked%s",
						n, burstMaxFailures-1, 2*burstMaxFailures-2, burstMaxFailures-1, lockWaitHint)
				}
			case vLocked:
				t.Logf("the right code came after the lock")
				want := map[verdict]int{vWrong: burstMaxFailures - 1, vLocking: 1, vLocked: burstSize - burstMaxFailures}
				for _, v := range []verdict{vAccepted, vWrong, vLocking, vLocked} {
					if n[v] != want[v] {
						t.Errorf("right code refused as locked: %d %s, want %d (all: %v)%s", n[v], v, want[v], n, lockWaitHint)
					}
				}
			default:
				t.Errorf("the right code got %s, want accepted (before the lock) or locked (after it):\n%s", as[right].verdict, as[right].out)
			}
			wantLockedState(t, s, "alice")
		})
	}
}
