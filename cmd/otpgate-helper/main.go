// Command otpgate-helper is the privileged half of otpgate: pam_otpgate.so
// and the otpgate command exec it with a socketpair on its standard input
// and output. It is installed root-owned and setuid root; see
// internal/helper for what it does in each mode.
package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/otpgate/otpgate/internal/authlog"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/helper"
)

// selfConfig is the config self mode reads. Only a test build changes it
// (-ldflags -X main.selfConfig=...); nothing at run time can.
var selfConfig = config.DefaultPath

func main() {
	uid := syscall.Getuid()
	// Files and directories the helper makes are 0600 and 0700 whatever
	// the caller's umask.
	syscall.Umask(0o077)
	if uid != 0 {
		// Reached through the setuid bit: nothing the caller set counts.
		os.Clearenv()
		// The caller chose the resource limits. A file-size limit must
		// make a write fail (and the attempt be denied), not kill the
		// helper between two writes of one attempt.
		signal.Ignore(syscall.SIGXFSZ)
		syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: ^uint64(0), Max: ^uint64(0)})
	}
	// Standard input and output are the same socket.
	c, err := helper.SocketFile(0, "standard input")
	if err != nil {
		os.Stderr.WriteString("otpgate-helper: standard input is not a socket; this program is run by pam_otpgate.so and otpgate\n")
		os.Exit(2)
	}
	log := authlog.Open("otpgate", nil)
	code := helper.Run(c, helper.Options{RealUID: uid, SelfConfig: selfConfig, Passwd: "/etc/passwd", Log: log})
	log.Close()
	os.Exit(code)
}
