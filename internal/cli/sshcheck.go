package cli

import (
	"path/filepath"

	"github.com/otpgate/otpgate/internal/authlog"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/helper"
	"github.com/otpgate/otpgate/sshcheck"
)

const sshcheckHelp = `usage: otpgate sshcheck [--timeout DURATION] [--sftp-server PATH]

Run by sshd as the ForceCommand of a Match block, as the user who logged
in with a key (see docs/sshcheck.md and
contrib/sshd_config.d/otpgate-forcecommand.conf):

    ForceCommand /usr/local/bin/otpgate sshcheck

Asks for a verification code on the session's terminal, or takes it from
OTPGATE_CODE when there is none (ssh -o SendEnv=OTPGATE_CODE; sshd:
AcceptEnv OTPGATE_CODE), checks it through otpgate-helper exactly as a
PAM login does, and then runs the login shell, $SSH_ORIGINAL_COMMAND
through the shell, or sftp-server for internal-sftp. OTPGATE_CODE is
removed from the environment first.

options:
  --timeout DURATION  how long the prompt waits (default 60s; 1s to 4m)
  --sftp-server PATH  the sftp-server run for internal-sftp (default: the
                      first of /usr/lib/openssh/sftp-server,
                      /usr/libexec/openssh/sftp-server, /usr/lib/ssh/sftp-server)

exit status: that of the command it runs; 1 when the code is denied (or
anything else goes wrong: nothing is run then), 2 for a usage error
`

// runSSHCheck runs otpgate sshcheck. Main calls it before loading any
// config: the helper reads it. It returns only when the session is
// denied; on success the process is replaced by the session's command.
func runSSHCheck(e *env, args []string) error {
	fs := newFlags("sshcheck")
	timeout := fs.Duration("timeout", sshcheck.DefaultTimeout, "")
	sftp := fs.String("sftp-server", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *timeout < sshcheck.MinTimeout || *timeout > sshcheck.MaxTimeout {
		return withHint(usageErr("sshcheck: --timeout %v is out of range", *timeout),
			"use "+sshcheck.MinTimeout.String()+" to "+sshcheck.MaxTimeout.String())
	}
	if *sftp != "" && !filepath.IsAbs(*sftp) {
		return usageErr("sshcheck: --sftp-server %q is not an absolute path", *sftp)
	}
	cfg := ""
	if e.configPath != config.DefaultPath {
		cfg = e.configPath // root only; sshcheck refuses it for anyone else
	}
	log := authlog.Open("otpgate", nil)
	defer log.Close()
	err := sshcheck.Run(sshcheck.Options{
		Helper:     helper.InstalledPath,
		Config:     cfg,
		Timeout:    *timeout,
		SFTPServer: *sftp,
		Stderr:     e.stderr,
		Log:        log,
	})
	return deniedErr("%v", err)
}
