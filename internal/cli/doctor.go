package cli

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/otpgate/otpgate/internal/doctor"
	"github.com/otpgate/otpgate/internal/helper"
)

const doctorHelp = `usage: otpgate doctor [--json] [--group NAME]... [--sshd-config PATH]

Audits this host's otpgate setup and prints each problem with its fix:
sshd as sshd itself resolves it (sshd -T, also per user so Match blocks
count), the PAM stacks of sshd, sudo, su and login, the module, the
helper daemon or the setuid launcher, the store, and users who must give
a code but are not enrolled. Run it as root.

  --group NAME        members of NAME must be enrolled too (repeatable)
  --sshd-config PATH  audit this sshd_config instead of sshd's default

exit status: 0 no problems, 1 problems found, 2 could not run
`

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runDoctor(e *env, args []string) error {
	fs := newFlags("doctor")
	asJSON := fs.Bool("json", false, "")
	sshdConfig := fs.String("sshd-config", "", "")
	var groups stringList
	fs.Var(&groups, "group", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return withHint(deniedErr("doctor reads root-only files (the store, sshd's host keys)"), "run it with sudo")
	}
	r := doctor.Run(doctor.Options{
		ConfigPath: e.configPath,
		SSHDConfig: *sshdConfig,
		Helper:     helper.InstalledPath,
		Socket:     helper.SocketPath,
		ModuleDirs: moduleDirs(),
		Groups:     groups,
	})
	if *asJSON {
		if err := printJSON(e.stdout, r); err != nil {
			return err
		}
	} else {
		for _, c := range r.Checked {
			fmt.Fprintf(e.stdout, "checked: %s\n", c)
		}
		for _, f := range r.Findings {
			fmt.Fprintf(e.stdout, "\nPROBLEM %s\n", f)
		}
		if len(r.Findings) == 0 {
			fmt.Fprintln(e.stdout, "\nno problems found")
		}
	}
	if len(r.Findings) > 0 {
		return deniedErr("doctor found %d problem(s)", len(r.Findings))
	}
	return nil
}

// moduleDirs are where Linux-PAM looks for a module named without a path,
// Debian's multiarch directory first.
func moduleDirs() []string {
	arch := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "386": "i386-linux-gnu", "arm": "arm-linux-gnueabihf"}[runtime.GOARCH]
	var dirs []string
	if arch != "" {
		dirs = append(dirs, "/usr/lib/"+arch+"/security", "/lib/"+arch+"/security")
	}
	return append(dirs, "/usr/lib64/security", "/usr/lib/security", "/lib/security")
}
