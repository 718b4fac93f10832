// Package harden resets, inside the helper, what the process that started
// it controls: resource limits, signal dispositions, the session and
// process group, and the umask.
//
// The PAM module's child and the setuid launcher reset the same things in
// C before the helper is exec'd (pam/harden.h); this is the second layer,
// for a helper started some other way (by root from a shell, by a test, by
// a future service manager). It runs first thing in main, before the store
// is touched, and a limit that cannot be made sane is an error: the helper
// then denies instead of working under a limit a caller chose.
package harden

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// Limit is one resource limit the helper needs: it sets Want (soft and
// hard), and if it cannot raise the limit that far, it accepts a soft
// limit of at least Least (raised to the hard limit first).
type Limit struct {
	Name     string
	Resource int
	Want     uint64
	Least    uint64
}

// Infinity is RLIM_INFINITY.
const Infinity = ^uint64(0)

// Limits are the resource limits of the helper. A file-size limit would
// fail state writes (each a denial, but a caller's limit must not decide
// what is written); few open files or little memory would fail the store
// or the argon2id hash of a backup code (8 MiB); a CPU limit would kill it
// mid-attempt; core size 0 keeps secrets out of core files.
var Limits = []Limit{
	{"RLIMIT_CORE", syscall.RLIMIT_CORE, 0, 0},
	{"RLIMIT_FSIZE", syscall.RLIMIT_FSIZE, Infinity, 1 << 20},
	{"RLIMIT_NOFILE", syscall.RLIMIT_NOFILE, 4096, 64}, // the daemon: 512 connections, a few files each
	{"RLIMIT_CPU", syscall.RLIMIT_CPU, Infinity, 600},
	{"RLIMIT_AS", syscall.RLIMIT_AS, Infinity, 4 << 30},
	{"RLIMIT_DATA", syscall.RLIMIT_DATA, Infinity, 1 << 30},
	{"RLIMIT_STACK", syscall.RLIMIT_STACK, 8 << 20, 1 << 20},
}

// SetLimits applies Limits, and reports the first that stays below its
// Least.
func SetLimits() error {
	for _, l := range Limits {
		want := syscall.Rlimit{Cur: l.Want, Max: l.Want}
		if l.Want == 0 {
			// Lowering is always allowed; keep the hard limit, a
			// lowered hard limit would be inherited by nothing anyway.
			var cur syscall.Rlimit
			if err := syscall.Getrlimit(l.Resource, &cur); err != nil {
				return fmt.Errorf("reading %s: %w", l.Name, err)
			}
			want.Max = cur.Max
		}
		if syscall.Setrlimit(l.Resource, &want) == nil {
			continue
		}
		// Not allowed to raise the hard limit (no CAP_SYS_RESOURCE, as
		// in some containers): raise the soft limit to it and see.
		var cur syscall.Rlimit
		if err := syscall.Getrlimit(l.Resource, &cur); err != nil {
			return fmt.Errorf("reading %s: %w", l.Name, err)
		}
		cur.Cur = cur.Max
		if err := syscall.Setrlimit(l.Resource, &cur); err != nil {
			return fmt.Errorf("setting %s: %w", l.Name, err)
		}
		if cur.Cur < l.Least {
			return fmt.Errorf("%s is %d and cannot be raised to %d", l.Name, cur.Cur, l.Least)
		}
	}
	return nil
}

// ignored are the signals that a terminal or a job-control shell sends
// (Ctrl-C, Ctrl-\, Ctrl-Z, background reads and writes, hang-up), a file
// size limit raises, and a closed socket raises: none of them may stop or
// kill the helper between reading an answer and writing its state.
var ignored = []os.Signal{
	syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTSTP,
	syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGPIPE, syscall.SIGXFSZ,
}

// Signals ignores the terminal, job-control and I/O signals. SIGSTOP and
// SIGKILL cannot be ignored: only root can send them to the helper, and the
// new session (Session) keeps the terminal's Ctrl-Z away.
func Signals() {
	signal.Ignore(ignored...)
}

// Session makes the helper the leader of a new session with no
// controlling terminal, out of its starter's process group, so that
// nothing typed at the starter's terminal reaches it. A helper that leads
// its session already (the PAM module's child called setsid) is fine.
func Session() error {
	if _, err := syscall.Setsid(); err != nil {
		if sid, gerr := unix.Getsid(0); gerr == nil && sid == syscall.Getpid() {
			return nil
		}
		return fmt.Errorf("setsid: %w", err)
	}
	return nil
}

// Process does all of the above and sets the umask to 077, so that the
// files the helper makes are 0600 and its directories 0700.
func Process() error {
	syscall.Umask(0o077)
	Signals()
	if err := Session(); err != nil {
		return err
	}
	return SetLimits()
}
