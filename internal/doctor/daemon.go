package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/otpgate/otpgate/internal/helper"
)

// unitDirs are where systemd units of otpgate-helper may be installed.
var unitDirs = []string{"/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"}

// DaemonState is what doctor found of the helper daemon.
type DaemonState struct {
	Socket    string // where the module and otpgate look for it
	Up        bool   // something accepts on the socket: logins go to the daemon
	Installed string // the systemd socket unit, when one is installed
}

// CheckDaemon finds out whether the helper daemon serves at socket, and
// reports a socket the module would refuse (every login denied) and a
// daemon that is installed but not running (logins then fall back to
// exec, and users' self-service needs the setuid launcher).
func CheckDaemon(socket string) (DaemonState, []Finding) {
	d := DaemonState{Socket: socket}
	for _, dir := range unitDirs {
		if u := filepath.Join(dir, "otpgate-helper.socket"); exists(u) {
			d.Installed = u
			break
		}
	}
	var out []Finding
	c, err := helper.Dial(socket)
	switch {
	case err == nil:
		d.Up = true
		c.(interface{ Close() error }).Close()
	case errors.Is(err, helper.ErrNoDaemon):
		if d.Installed != "" {
			out = append(out, Finding{Check: "daemon", Context: socket,
				Problem: fmt.Sprintf("the otpgate-helper daemon is installed (%s) but nothing listens on %s: logins fall back to exec (slower), and users' self-service needs the setuid launcher", d.Installed, socket),
				Fix:     "systemctl enable --now otpgate-helper.socket"})
		}
	default:
		out = append(out, Finding{Check: "daemon", Context: socket,
			Problem: err.Error() + ": pam_otpgate refuses it, so every login through it is denied",
			Fix:     fmt.Sprintf("remove %s and restart the daemon (systemctl restart otpgate-helper.socket); its directory must be root's, mode 0755", socket)})
	}
	return d, out
}

// launcherNote says whether the setuid launcher is needed: not while a
// daemon serves the users. It is advice, not a problem: the launcher is
// the fall back when the daemon is stopped.
func launcherNote(launcher string, d DaemonState) string {
	st, err := os.Stat(launcher)
	if err != nil || !d.Up || st.Mode()&fs.ModeSetuid == 0 {
		return ""
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || sys.Uid != 0 {
		return ""
	}
	return fmt.Sprintf("%s is setuid root but not needed while the daemon serves; chmod u-s it to run no setuid program of otpgate's (users' self-service and PAM programs that run as the user then work only while the daemon runs)", launcher)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
