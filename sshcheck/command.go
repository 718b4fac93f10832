package sshcheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/otpgate/otpgate/internal/passwd"
)

// CodeEnv is the environment variable a client without a terminal sends
// the code in (ssh -o SendEnv=OTPGATE_CODE; sshd: AcceptEnv OTPGATE_CODE).
const CodeEnv = "OTPGATE_CODE"

// InternalSFTP is the sshd Subsystem command that runs sftp inside sshd.
// Under a ForceCommand it arrives as SSH_ORIGINAL_COMMAND, and sshcheck
// runs the sftp-server program in its place.
const InternalSFTP = "internal-sftp"

// SFTPServers are where distributions install OpenSSH's sftp-server, in
// the order sshcheck looks for it when --sftp-server is not given:
// Debian and Ubuntu, Fedora and RHEL, Arch, and the BSD-style prefix.
var SFTPServers = []string{
	"/usr/lib/openssh/sftp-server",
	"/usr/libexec/openssh/sftp-server",
	"/usr/lib/ssh/sftp-server",
	"/usr/libexec/sftp-server",
}

// FallbackShell is the shell when neither the passwd entry nor $SHELL
// names one.
const FallbackShell = "/bin/sh"

// Target is what sshcheck execs once the code is accepted.
type Target struct {
	Path string   // the program
	Args []string // its argument vector, argv[0] included
}

// Select returns what to run for a session whose SSH_ORIGINAL_COMMAND is
// original, for a user whose shell is shell:
//
//   - no command (an interactive login): the shell as a login shell,
//     argv[0] "-bash" for /bin/bash, as sshd starts it;
//   - "internal-sftp" and its options (the sftp subsystem when sshd_config
//     says Subsystem sftp internal-sftp): the sftp-server program at
//     sftpServer with those options; sftpServer "" is an error;
//   - any other command: shell -c original, exactly as sshd runs a
//     command, so the user's shell parses it once and nothing else does.
func Select(original, shell, sftpServer string) (Target, error) {
	if !filepath.IsAbs(shell) {
		return Target{}, fmt.Errorf("the login shell %q is not an absolute path", shell)
	}
	base := filepath.Base(shell)
	if original == "" {
		return Target{Path: shell, Args: []string{"-" + base}}, nil
	}
	if args, ok := internalSFTP(original); ok {
		if sftpServer == "" {
			return Target{}, errors.New("the sftp subsystem is internal-sftp, and no sftp-server program was found; install it (Debian: openssh-sftp-server) or name it with otpgate sshcheck --sftp-server PATH")
		}
		for _, a := range args {
			if strings.ContainsAny(a, `'"\`) {
				return Target{}, fmt.Errorf("internal-sftp option %q holds a quote or backslash, which sshcheck does not pass on; write the option without it", a)
			}
		}
		return Target{Path: sftpServer, Args: append([]string{filepath.Base(sftpServer)}, args...)}, nil
	}
	return Target{Path: shell, Args: []string{base, "-c", original}}, nil
}

// internalSFTP reports whether cmd runs internal-sftp, and its options.
func internalSFTP(cmd string) ([]string, bool) {
	f := strings.Fields(cmd)
	if len(f) == 0 || f[0] != InternalSFTP {
		return nil, false
	}
	return f[1:], true
}

// FindSFTPServer returns the first of paths that is an executable regular
// file, or "".
func FindSFTPServer(paths []string) string {
	for _, p := range paths {
		if executable(p) {
			return p
		}
	}
	return ""
}

// executable reports whether path is a regular file with an execute bit.
func executable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// TakeCode returns env without any OTPGATE_CODE entry, and the value of
// the first one (found is false when there is none, or it is empty). The
// command sshcheck runs never sees the code.
func TakeCode(env []string) (rest []string, code string, found bool) {
	rest = make([]string, 0, len(env))
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, CodeEnv+"="); ok {
			if !found && v != "" {
				code, found = v, true
			}
			continue
		}
		rest = append(rest, kv)
	}
	return rest, code, found
}

// ShellLevel is the variable the sshd Match block sets (SetEnv SHLVL=1)
// so that bash, running the ForceCommand, does not read ~/.bashrc before
// the code is asked. Removed before the session's command runs, which
// then starts as under a plain sshd.
const ShellLevel = "SHLVL"

// Without returns env without any key= entry.
func Without(env []string, key string) []string {
	rest := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			rest = append(rest, kv)
		}
	}
	return rest
}

// Getenv returns the value of the first key= entry of env.
func Getenv(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// ShellFor returns the shell to run: the passwd entry's, else $SHELL from
// env (sshd sets it from the account, NSS included), else FallbackShell.
// Only an absolute path counts.
func ShellFor(a passwd.Entry, env []string) string {
	for _, s := range []string{a.Shell, Getenv(env, "SHELL")} {
		if filepath.IsAbs(s) {
			return s
		}
	}
	return FallbackShell
}
