// Package sshcheck is otpgate's second factor after SSH key
// authentication, for hosts where PAM is not to be touched. sshd runs
// `otpgate sshcheck` as the ForceCommand of a Match block, as the user who
// logged in; sshcheck asks for a verification code and, once it is
// accepted, replaces itself with what the session asked for: the login
// shell, the original command through the shell (ssh host cmd, scp,
// rsync), or the sftp server.
//
// The code is checked by otpgate-helper, exec'd exactly as the otpgate
// command does for a normal user (at helper.InstalledPath, fixed at build
// time): its self mode serves the caller's own account from the one store,
// with the same lockout and the same record of used codes as the PAM
// module, so a code used through PAM cannot be used here, nor the reverse.
// For root, whose real uid puts the helper in trusted mode, sshcheck asks
// it as the PAM module would (op authenticate).
//
// Where the code comes from: a session with a terminal is asked on it
// (/dev/tty, echo off, bounded by a timeout); a session without one (ssh
// host cmd, scp, sftp) must send it in OTPGATE_CODE, which is removed from
// the environment before anything runs. Every other path is a denial:
// nothing is executed and otpgate exits 1. See docs/sshcheck.md.
package sshcheck

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/otpgate/otpgate/internal/authlog"
	"github.com/otpgate/otpgate/internal/helper"
	"github.com/otpgate/otpgate/internal/passwd"
	"github.com/otpgate/otpgate/internal/protocol"
)

// Prompt timeouts (otpgate sshcheck --timeout).
const (
	DefaultTimeout = 60 * time.Second
	MinTimeout     = time.Second
	// MaxTimeout stays under the helper's own wait in self mode
	// (helper.SelfTimeout), so that the helper never gives up first.
	MaxTimeout = helper.SelfTimeout - time.Minute
)

// Service names sshcheck in the helper's log lines ("self-sshcheck" for
// a normal user).
const Service = "sshcheck"

// watchdogSlack is how much longer than the prompt timeout the whole check
// may take: the helper waits up to verify.DefaultLockWait (10 s) for a
// concurrent attempt on the same account.
const watchdogSlack = 30 * time.Second

// abortWait bounds the wait for the conversation to end after a signal.
const abortWait = 2 * time.Second

// Options are sshcheck's inputs. The zero value of each field means the
// documented default.
type Options struct {
	Helper     string          // the launcher; "" means helper.InstalledPath. Never from the environment or a flag.
	Socket     string          // the daemon's socket, tried first; "" means helper.SocketPath. Never from the environment or a flag.
	Config     string          // root only: the config the helper reads (config=); "" means its default
	Timeout    time.Duration   // how long the prompt waits; 0 means DefaultTimeout
	SFTPServer string          // the sftp-server for internal-sftp; "" means the first of SFTPServers that exists
	Environ    []string        // the session's environment; nil means os.Environ()
	TTY        string          // the terminal to ask on; "" means /dev/tty
	Passwd     string          // "" means /etc/passwd
	Stderr     io.Writer       // the helper's info lines; nil means os.Stderr
	Log        *authlog.Logger // denials decided before the helper runs; nil drops them (the helper logs its own)

	// exec replaces the process; nil means syscall.Exec. Tests set it.
	exec func(path string, argv, env []string) error
}

func (o *Options) defaults() {
	if o.Socket == "" {
		o.Socket = helper.SocketPath
	}
	if o.Helper == "" {
		o.Helper = helper.InstalledPath
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Environ == nil {
		o.Environ = os.Environ()
	}
	if o.TTY == "" {
		o.TTY = "/dev/tty"
	}
	if o.Passwd == "" {
		o.Passwd = "/etc/passwd"
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.exec == nil {
		o.exec = syscall.Exec
	}
}

// deny is the error of every refused session: nothing ran.
func deny(format string, args ...any) error {
	return fmt.Errorf("denied: "+format, args...)
}

// Run checks a code and, once it is accepted, execs the session's command
// in place of this process: on success it does not return. Otherwise it
// returns why the session is refused, as one line; nothing was executed.
func Run(o Options) error {
	o.defaults()
	c := &check{o: o, user: "-"}
	err := c.run()
	if err != nil && !c.helperRan {
		// The helper logs every attempt it sees; these never reached it.
		// (sshd drops a subsystem's standard error: for sftp this line is
		// the only trace of why.)
		o.Log.Notice(authlog.Fields("user", c.user, "service", Service, "rhost", nameOr(rhost(o.Environ), "-"),
			"outcome", "denied", "reason", "not-checked", "error", strings.TrimPrefix(err.Error(), "denied: ")))
	}
	return err
}

// check is one run of sshcheck.
type check struct {
	o         Options
	user      string // for the log line
	helperRan bool
	abandoned bool // a conversation still runs in the background
}

func (c *check) run() error {
	o := c.o
	if o.Timeout < MinTimeout || o.Timeout > MaxTimeout {
		return deny("the prompt timeout %v is not %v to %v", o.Timeout, MinTimeout, MaxTimeout)
	}
	// A signal ends the check with a denial, at the prompt or anywhere
	// else before the exec. Ctrl-Z is caught and dropped: a check stopped
	// at the prompt would hold the session open forever.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	stops := make(chan os.Signal, 4)
	signal.Notify(stops, syscall.SIGTSTP)
	defer signal.Stop(stops)

	env, code, haveCode := TakeCode(o.Environ)
	uid := os.Getuid()
	acct, err := passwd.LookupUID(o.Passwd, uid)
	if err != nil {
		if uid == 0 {
			return deny("%v", err)
		}
		// The helper looks the uid up itself and refuses an account it
		// cannot find; the name here only labels the prompt.
		acct = passwd.Entry{Name: Getenv(env, "USER")}
		c.user = fmt.Sprintf("uid=%d", uid)
	} else {
		c.user = acct.Name
	}
	if uid != 0 && o.Config != "" {
		return deny("--config is for root: otpgate-helper always reads its own config for a normal user")
	}
	sftp := o.SFTPServer
	if sftp == "" {
		sftp = FindSFTPServer(SFTPServers)
	} else if !executable(sftp) {
		return deny("the sftp server %s is not an executable file", sftp)
	}
	target, err := Select(Getenv(env, "SSH_ORIGINAL_COMMAND"), ShellFor(acct, env), sftp)
	if err != nil {
		return deny("%v", err)
	}
	if !executable(target.Path) {
		return deny("%s is not an executable file", target.Path)
	}
	if !helper.DaemonSocket(o.Socket) {
		if err := checkHelper(o.Helper); err != nil {
			return deny("%v, and no otpgate-helper daemon listens at %s; an administrator must install otpgate (make install)", err, o.Socket)
		}
	}

	u := &ui{stderr: o.Stderr}
	term, terr := openTerminal(o.TTY)
	switch {
	case terr == nil:
		defer func() {
			if !c.abandoned {
				term.close()
			}
		}()
		prompt := fmt.Sprintf("Verification code for %s@%s: ", nameOr(acct.Name, "you"), hostname())
		u.answer = func() (string, error) { return term.ask(prompt, o.Timeout) }
		u.show = func(text string) (string, error) { return term.ask(text, o.Timeout) }
	case haveCode:
		u.answer = func() (string, error) { return code, nil }
	default:
		// Said only when the helper asks for a code: a user the policy
		// exempts ([policy], a service account running scp) is asked
		// nothing and needs no terminal.
		noWay := noWayToAsk{deny("no verification code: this session has no terminal to ask on; send the code in %[1]s "+
			"(%[1]s=123456 ssh -o SendEnv=%[1]s host …), or log in with a terminal (ssh -t host) to be asked", CodeEnv)}
		u.answer = func() (string, error) { return "", noWay }
	}

	req := protocol.Request{Op: protocol.OpVerify, User: acct.Name, Service: Service}
	// sshcheck runs after the key: with a terminal to show the QR code on,
	// a user with no secret may be offered one ([enroll] first_login).
	var firstLogin []string
	if term != nil {
		firstLogin = []string{helper.ArgFirstLogin}
		req.Args = firstLogin
	}
	if uid == 0 {
		// Trusted mode: the request is the PAM module's.
		secs := min(int(math.Ceil((o.Timeout + 5*time.Second).Seconds())), int(helper.MaxTimeout/time.Second))
		req = protocol.Request{Op: protocol.OpAuthenticate, User: acct.Name, Service: Service,
			RHost: rhost(env), TTY: Getenv(env, "SSH_TTY"),
			Args: append([]string{"timeout=" + strconv.Itoa(secs)}, firstLogin...)}
		if o.Config != "" {
			req.Args = append(req.Args, "config="+o.Config)
		}
	}

	type outcome struct {
		verdict string
		err     error
	}
	done := make(chan outcome, 1)
	prompted := make(chan struct{}, 1)
	u.prompted = func() {
		select {
		case prompted <- struct{}{}:
		default:
		}
	}
	c.helperRan = true
	go func() {
		v, err := helper.Reach(o.Socket, o.Helper, req, u)
		done <- outcome{v, err}
	}()
	abort := func(why error) error {
		if term != nil {
			term.cancel()
		}
		select {
		case <-done:
		case <-time.After(abortWait):
			// The conversation is stuck; leave its descriptors open
			// (the process ends right after this).
			c.abandoned = true
		}
		if term != nil {
			term.restoreMode()
		}
		return why
	}
	// The watchdog bounds each question: it starts again with every
	// prompt (first-login enrollment asks several).
	watchdog := time.NewTimer(o.Timeout + watchdogSlack)
	defer watchdog.Stop()
	var out outcome
wait:
	for {
		select {
		case out = <-done:
			break wait
		case <-prompted:
			watchdog.Reset(o.Timeout + watchdogSlack)
		case s := <-sigs:
			return abort(deny("interrupted by %s", signalName(s)))
		case <-watchdog.C:
			return abort(deny("the check took longer than %v", o.Timeout+watchdogSlack))
		}
	}
	select {
	case s := <-sigs:
		return deny("interrupted by %s", signalName(s))
	default:
	}
	if err := explain(out.verdict, out.err, u, o.Timeout); err != nil {
		return err
	}
	if term != nil {
		term.close()
	}
	err = o.exec(target.Path, target.Args, Without(env, ShellLevel))
	return deny("cannot run %s: %v", target.Path, err)
}

// explain turns the helper's verdict into nil (accepted) or a denial.
func explain(verdict string, err error, u *ui, timeout time.Duration) error {
	var noWay noWayToAsk
	switch cause := u.noAnswer(); {
	case errors.As(cause, &noWay):
		return noWay.error
	case errors.Is(cause, errTimeout):
		return deny("no code was entered within %v", timeout)
	case errors.Is(cause, errEOF):
		return deny("no code was entered (end of input)")
	case errors.Is(cause, errCanceled):
		return deny("the prompt was canceled")
	case cause != nil:
		return deny("reading the code: %v", cause)
	}
	if err != nil {
		return deny("%v", err)
	}
	msg := u.lastError()
	switch verdict {
	case protocol.ResultSuccess:
		return nil
	case protocol.ResultMaxTries:
		return deny("%s", nameOr(msg, "too many wrong codes"))
	case protocol.ResultAuthErr:
		return deny("%s", nameOr(msg, "wrong or already used code"))
	case protocol.ResultServiceErr:
		return deny("otpgate-helper refused the request: %s", nameOr(msg, "no reason given"))
	}
	return deny("otpgate-helper answered %q", verdict)
}

// noWayToAsk is the answer of a session with neither a terminal nor a
// code in CodeEnv: the denial, said if the helper asks for a code.
type noWayToAsk struct{ error }

// checkHelper requires what make install leaves of the launcher: a
// root-owned setuid regular file that nobody else can write.
func checkHelper(path string) error {
	if err := helper.CheckInstalled(path); err != nil {
		return fmt.Errorf("otpgate-launch-helper: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("otpgate-launch-helper: %s is group- or world-writable", path)
	}
	return nil
}

// rhost is the client's address, from SSH_CONNECTION.
func rhost(env []string) string {
	return strings.SplitN(Getenv(env, "SSH_CONNECTION"), " ", 2)[0]
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "this host"
	}
	return h
}

func nameOr(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

func signalName(s os.Signal) string {
	if n, ok := s.(syscall.Signal); ok {
		switch n {
		case syscall.SIGINT:
			return "SIGINT (Ctrl-C)"
		case syscall.SIGHUP:
			return "SIGHUP (the connection closed)"
		case syscall.SIGTERM:
			return "SIGTERM"
		case syscall.SIGQUIT:
			return "SIGQUIT"
		}
	}
	return s.String()
}
