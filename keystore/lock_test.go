package keystore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const shortWait = 200 * time.Millisecond

func TestLockExcludes(t *testing.T) {
	s := newStore(t)
	l1, err := s.Lock("alice", time.Second)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	lockPath := filepath.Join(s.Dir(), "locks", "alice.lock")

	// A second Lock from another goroutine waits, then gives up.
	start := time.Now()
	err = within(t, hangLimit, "second Lock", func() error {
		l2, err := s.Lock("alice", shortWait)
		if err == nil {
			l2.Unlock()
		}
		return err
	})
	waited := time.Since(start)
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("second Lock = %v, want ErrLockTimeout", err)
	}
	if !strings.Contains(err.Error(), lockPath) {
		t.Errorf("timeout error %q does not name %s", err, lockPath)
	}
	if waited < shortWait {
		t.Errorf("second Lock gave up after %v, before its %v wait", waited, shortWait)
	}

	// Another user's lock is independent.
	lb, err := s.Lock("bob", 0)
	if err != nil {
		t.Errorf("Lock(bob) while alice is locked: %v", err)
	} else {
		lb.Unlock()
	}

	// A waiter gets the lock once it is released.
	got := make(chan error, 1)
	go func() {
		l, err := s.Lock("alice", hangLimit)
		if err == nil {
			l.Unlock()
		}
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("waiter returned (%v) while the lock was held", err)
	default:
	}
	l1.Unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Errorf("waiter after Unlock: %v", err)
		}
	case <-time.After(hangLimit):
		t.Fatal("waiter did not get the lock after Unlock")
	}

	// And it can be taken again, with no wait at all.
	l3, err := s.Lock("alice", 0)
	if err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	l3.Unlock()
}

// The flock must be held across a store replaced under it: a second
// Store value for the same directory is excluded too.
func TestLockTwoStoreValues(t *testing.T) {
	s := newStore(t)
	l, err := s.Lock("alice", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if _, err := New(s.Dir()).Lock("alice", 20*time.Millisecond); !errors.Is(err, ErrLockTimeout) {
		t.Errorf("Lock through another Store = %v, want ErrLockTimeout", err)
	}
}

const (
	helperEnv     = "OTPGATE_KEYSTORE_TEST_HELPER"
	helperDirEnv  = "OTPGATE_KEYSTORE_TEST_DIR"
	helperUserEnv = "OTPGATE_KEYSTORE_TEST_USER"
)

// TestHelperProcess is not a test: the lock tests run the test binary
// again with helperEnv set and this test selected.
//
// "hold": take the lock, print "locked", hold it until stdin closes.
// "try": try the lock for 200ms, print "locked" or "timeout" or the error.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process for the cross-process lock tests")
	}
	s := New(os.Getenv(helperDirEnv))
	user := os.Getenv(helperUserEnv)
	switch mode {
	case "hold":
		l, err := s.Lock(user, hangLimit)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		io.Copy(io.Discard, os.Stdin)
		l.Unlock()
	case "try":
		l, err := s.Lock(user, shortWait)
		switch {
		case err == nil:
			fmt.Println("locked")
			l.Unlock()
		case errors.Is(err, ErrLockTimeout):
			fmt.Println("timeout")
		default:
			fmt.Println("error:", err)
		}
	}
	os.Exit(0)
}

func helper(ctx context.Context, mode, dir, user string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	// GORACE: a race-enabled child would sleep 1 s at exit.
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperDirEnv+"="+dir, helperUserEnv+"="+user, "GORACE=atexit_sleep_ms=0")
	cmd.Stderr = os.Stderr
	return cmd
}

func TestLockAcrossProcesses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := newStore(t)

	// A child holds the lock; the parent times out.
	child := helper(ctx, "hold", s.Dir(), "alice")
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("child said %q, %v; want locked", line, err)
	}
	start := time.Now()
	err = within(t, hangLimit, "Lock while a child holds it", func() error {
		l, err := s.Lock("alice", shortWait)
		if err == nil {
			l.Unlock()
		}
		return err
	})
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("Lock while a child process holds it = %v, want ErrLockTimeout", err)
	}
	if d := time.Since(start); d < shortWait {
		t.Errorf("gave up after %v, before the %v wait", d, shortWait)
	}

	// The child lets go; the parent gets it.
	stdin.Close()
	if err := child.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	l, err := s.Lock("alice", time.Second)
	if err != nil {
		t.Fatalf("Lock after the child exited: %v", err)
	}

	// The parent holds it; a child times out (the descriptor is not
	// inherited, and the child cannot take it either).
	out, err := helper(ctx, "try", s.Dir(), "alice").Output()
	if err != nil || string(out) != "timeout\n" {
		t.Errorf("child trying a held lock: %q, %v; want timeout", out, err)
	}
	l.Unlock()
	out, err = helper(ctx, "try", s.Dir(), "alice").Output()
	if err != nil || string(out) != "locked\n" {
		t.Errorf("child trying a free lock: %q, %v; want locked", out, err)
	}
}

// A holder killed with SIGKILL cannot keep the lock: the kernel drops the
// flock with the process.
func TestLockReleasedOnKill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := newStore(t)
	child := helper(ctx, "hold", s.Dir(), "alice")
	if _, err := child.StdinPipe(); err != nil { // kept open: the child holds on
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		child.Process.Kill()
		t.Fatalf("child said %q, %v; want locked", line, err)
	}
	if _, err := s.Lock("alice", 0); !errors.Is(err, ErrLockTimeout) {
		t.Errorf("Lock while the child holds it = %v, want ErrLockTimeout", err)
	}
	child.Process.Kill()
	child.Wait()
	l, err := s.Lock("alice", time.Second)
	if err != nil {
		t.Fatalf("Lock after the holder was killed: %v", err)
	}
	l.Unlock()
}

// The lock's descriptor is not inherited by a process started while it
// is held (the helper may exec a shell): after Unlock the lock is free
// even though that process still runs.
func TestLockNotInherited(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := newStore(t)
	l, err := s.Lock("alice", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	child := helper(ctx, "hold", s.Dir(), "bob")
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		child.Wait()
	}()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "locked\n" {
		child.Process.Kill()
		t.Fatalf("child said %q, %v; want locked", line, err)
	}
	l.Unlock()
	l2, err := s.Lock("alice", shortWait)
	if err != nil {
		t.Fatalf("Lock after Unlock while a child started under the lock runs: %v", err)
	}
	l2.Unlock()
}
