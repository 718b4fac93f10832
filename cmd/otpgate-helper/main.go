// Command otpgate-helper is the privileged half of otpgate. It runs in
// one of two ways:
//
//   - exec mode: pam_otpgate.so execs it (as root) with a socketpair on
//     its standard input and output for one request, and so does
//     otpgate-launch-helper, the small setuid-root C program through which
//     a normal user reaches it;
//   - serve mode, the daemon: `otpgate-helper --serve` under systemd
//     socket activation (contrib/systemd/otpgate-helper.socket), or
//     `otpgate-helper --listen PATH` where there is no systemd. The module
//     and otpgate connect to /run/otpgate/helper.sock first and exec only
//     when nothing listens there.
//
// See internal/helper for what it does for each caller.
// otpgate-helper --version prints its version and exits.
//
// It is not setuid itself and refuses to run as one: a setuid Go program
// reads its caller's environment (GODEBUG, TZ, ...) in the runtime and in
// package initialisation, before main can clear it. The launcher clears
// the environment, resets what else the caller controls, becomes wholly
// root and passes the caller's uid as --self-uid=UID.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/otpgate/otpgate/internal/authlog"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/harden"
	"github.com/otpgate/otpgate/internal/helper"
	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/internal/version"
)

// selfConfig is the config self mode reads. Only a test build changes it
// (-ldflags -X main.selfConfig=...); nothing at run time can.
var selfConfig = config.DefaultPath

// selfUIDFlag is how otpgate-launch-helper names the user it serves.
const selfUIDFlag = "--self-uid="

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Printf("otpgate-helper %s\n", version.String())
		os.Exit(0)
	}
	if len(os.Args) >= 2 && (os.Args[1] == "--serve" || os.Args[1] == "--listen") {
		os.Exit(serve(os.Args[1:]))
	}
	log := authlog.Open("otpgate", nil)
	if err := harden.Process(); err != nil {
		refuse(log, "cannot reset the process it was started with: "+err.Error())
	}
	args := os.Args
	var handed *protocol.Request
	if len(args) >= 2 && strings.HasPrefix(args[1], requestFDFlag) {
		// otpgate-helper-pg, run by otpgate-helper with its request.
		req, err := handedRequest(args[1])
		if err != nil || pg.backend == nil {
			refuse(log, fmt.Sprintf("%s: not a handed-over request (%v)", args[1], err))
		}
		handed = req
		args = append([]string{args[0]}, args[2:]...)
	}
	caller, err := callerUID(args)
	if err != nil {
		refuse(log, err.Error())
	}
	// Standard input and output are the same socket.
	c, err := helper.SocketFile(0, "standard input")
	if err != nil {
		refuse(log, "standard input is not a socket; this program is run by pam_otpgate.so and otpgate")
	}
	o := helper.Options{Caller: caller, SelfConfig: selfConfig, Passwd: "/etc/passwd", Log: log, Request: handed,
		Postgres: pg.backend, DBReason: pg.reason}
	if pg.backend == nil {
		o.Handoff = handoff(caller)
	}
	code := helper.Run(c, o)
	if pg.close != nil {
		pg.close()
	}
	log.Close()
	os.Exit(code)
}

// serve runs the daemon: --serve (the socket from systemd) or --listen
// PATH. It stops on SIGTERM or SIGINT.
func serve(args []string) int {
	// The lines also go to standard error: the journal, or docker logs
	// in a container without syslog.
	log := authlog.Open("otpgate", os.Stderr)
	defer log.Close()
	fail := func(format string, a ...any) int {
		msg := fmt.Sprintf(format, a...)
		log.Notice("helper: " + msg)
		fmt.Fprintf(os.Stderr, "otpgate-helper: %s\n", msg)
		return 2
	}
	if os.Getuid() != 0 || os.Geteuid() != 0 {
		return fail("the daemon runs as root (uid %d, euid %d)", os.Getuid(), os.Geteuid())
	}
	serveWithPostgres(func(msg string) { log.Info("helper: " + msg) })
	if err := harden.Process(); err != nil {
		return fail("cannot reset the process it was started with: %v", err)
	}
	var lfd int
	var err error
	switch {
	case len(args) == 1 && args[0] == "--serve":
		lfd, err = helper.ListenFDs()
		if err == nil && lfd < 0 {
			err = fmt.Errorf("no socket from systemd (LISTEN_FDS); use --listen %s without systemd", helper.DefaultSocket)
		}
	case len(args) == 2 && args[0] == "--listen" && args[1] != "":
		lfd, err = helper.Listen(args[1])
	default:
		return fail("usage: otpgate-helper --serve | --listen PATH")
	}
	if err != nil {
		return fail("%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv := &helper.Server{Options: helper.Options{SelfConfig: selfConfig, Passwd: "/etc/passwd", Log: log,
		Postgres: pg.backend, DBReason: pg.reason}}
	if pg.close != nil {
		defer pg.close()
	}
	log.Info("helper: serving")
	if err := srv.Serve(ctx, lfd); err != nil {
		return fail("%v", err)
	}
	log.Info("helper: stopped")
	return 0
}

// callerUID decides whom the helper serves: 0 (trusted mode) when root
// ran it with no argument, the uid after --self-uid= (self mode) when
// otpgate-launch-helper ran it for a normal user.
func callerUID(args []string) (int, error) {
	ruid, euid := syscall.Getuid(), syscall.Geteuid()
	if ruid != euid {
		return 0, fmt.Errorf("runs with real uid %d and effective uid %d: otpgate-helper must not be setuid (chmod u-s it); the setuid program is otpgate-launch-helper", ruid, euid)
	}
	if euid != 0 {
		return 0, fmt.Errorf("runs as uid %d: otpgate-helper is run as root by pam_otpgate.so, or through otpgate-launch-helper", euid)
	}
	switch {
	case len(args) == 1:
		return 0, nil
	case len(args) == 2 && strings.HasPrefix(args[1], selfUIDFlag):
		s := args[1][len(selfUIDFlag):]
		uid, err := strconv.ParseUint(s, 10, 31)
		if err != nil || uid == 0 || s[0] == '0' {
			return 0, fmt.Errorf("bad argument %q: want %sUID, a uid other than 0", args[1], selfUIDFlag)
		}
		return int(uid), nil
	}
	return 0, fmt.Errorf("unexpected arguments %q; this program is run by pam_otpgate.so and otpgate", args[1:])
}

// refuse logs why the helper will not serve, tells whoever ran it, and
// exits: the module and otpgate take a helper that exits without a
// verdict as a denial.
func refuse(log *authlog.Logger, why string) {
	log.Notice("helper: " + why + "; denying")
	fmt.Fprintf(os.Stderr, "otpgate-helper: %s\n", why)
	log.Close()
	os.Exit(2)
}
