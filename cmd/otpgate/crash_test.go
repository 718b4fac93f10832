package main_test

import (
	"math/rand/v2"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otpgate/otpgate/keystore"
)

// TestKillDuringWrite kills otpgate with SIGKILL at random moments of
// verify (which rewrites the state file) and backup-codes (which rewrites
// the user file). Every file must afterwards parse: old or new, never
// empty or torn.
func TestKillDuringWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping 200 kill -9 rounds")
	}
	e := newEnv(t, "[lockout]\nmax_failures = 100\n")
	e.enroll("alice")
	store := keystore.New(e.store)
	const rounds = 200
	killed, changed := 0, 0
	prev, _ := store.ReadState("alice")
	for i := range rounds {
		args, budget := []string{"verify", "--user", "alice"}, 25*time.Millisecond
		if i%4 == 0 {
			// 10 argon2id hashes: a longer run, killed anywhere in it.
			args, budget = []string{"backup-codes", "--user", "alice", "--json"}, 150*time.Millisecond
		}
		cmd := exec.Command(e.bin, append([]string{"--config", e.config}, args...)...)
		cmd.Stdin = strings.NewReader("000000\n")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(rand.N(budget))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			killed++
		}
		st, err := store.ReadState("alice")
		if err != nil {
			t.Fatalf("round %d: state after kill -9: %v", i, err)
		}
		if _, err := store.ReadUser("alice"); err != nil {
			t.Fatalf("round %d: user file after kill -9: %v", i, err)
		}
		if st != prev {
			changed++
		}
		prev = st
		if st.Failures >= 90 {
			if _, stderr, code := e.run("", "unlock", "--user", "alice"); code != 0 {
				t.Fatalf("unlock: %s", stderr)
			}
			prev, _ = store.ReadState("alice")
		}
	}
	t.Logf("%d rounds: %d killed before exiting, state changed in %d", rounds, killed, changed)
	// Both kinds of moment must have happened, or the test proved nothing.
	if killed < rounds/4 || changed < rounds/10 {
		t.Errorf("kills did not spread over the run: %d killed, %d changed", killed, changed)
	}
}
