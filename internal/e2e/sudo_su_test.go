package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sudoPrompt starts the password prompt sudo shows for pam_unix's
// "Password: ". otpgate's own prompt comes through the PAM conversation,
// which sudo -S also answers from standard input. (No -p: a prompt given
// with -p sets passprompt_override and replaces every PAM prompt, the
// code's too.)
const sudoPrompt = "[sudo] password for "

// sudoSetup gives u the right to run anything through sudo, with PAM
// service service (pam_service=), through a drop-in in /etc/sudoers.d
// checked with visudo -cf and removed when the test ends. passwd_tries=1:
// one attempt per sudo run, so a wrong answer is not asked again.
func sudoSetup(t testing.TB, u *testUser, service string) {
	t.Helper()
	requireTools(t, "sudo", "visudo", "setpriv")
	content := "# otpgate end-to-end test; removed when the test ends\n" +
		"Defaults:" + u.name + " pam_service=" + service + ", passwd_tries=1, lecture=never, timestamp_timeout=0, !mail_badpass\n" +
		u.name + " ALL=(ALL) ALL\n"
	path := filepath.Join("/etc/sudoers.d", prefix+strings.TrimPrefix(u.name, prefix))
	writeSystemFile(t, path, content, 0o440, func(tmp string) error {
		if r := run(setupTimeout, nil, "visudo", "-c", "-q", "-f", tmp); r.exit != 0 {
			return fmt.Errorf("visudo rejects the test drop-in: %s\n%s", r, content)
		}
		return nil
	})
}

// runSudo runs `sudo -S -k` as u (setpriv drops root for good, no PAM of
// its own) and answers the prompts with the given steps.
func runSudo(u *testUser, steps []step) result {
	return runChat(loginTimeout, steps, func(ctx context.Context) *exec.Cmd {
		cmd := command(ctx, "setpriv", "--reuid="+strconv.Itoa(u.uid), "--regid="+strconv.Itoa(u.gid), "--init-groups", "--",
			"sudo", "-S", "-k", "--", "/bin/sh", "-c", remoteCmd)
		cmd.Env = baseEnv("HOME="+u.home, "USER="+u.name, "LOGNAME="+u.name)
		cmd.Dir = "/"
		return cmd
	})
}

// rootMarker is what remoteCmd prints when it runs as root.
const rootMarker = "otpgate-e2e-ok:root"

// su and its PAM service. util-linux su (Debian's /bin/su) calls
// pam_start with a fixed service name, "su" ("su-l" with -l), defined in
// login-utils/su-common.c as PAM_SRVNAME_SU: a renamed copy would still
// read /etc/pam.d/su. So the test does not copy su, and it never writes
// /etc/pam.d/su either: it runs su inside a private mount namespace
// (unshare --mount --propagation private) in which the test's stack is
// bind-mounted over /etc/pam.d/su. Nothing outside that namespace ever
// sees the test stack, a crash leaves nothing to restore (the namespace
// dies with its last process), and the test checks that /etc/pam.d/su is
// byte for byte what it was. TestHarnessSu proves the bind mount is what
// su reads: with a pam_deny stack a right password is refused.

// runSu runs `su -c CMD target` as the non-root caller, with the PAM stack
// stackText in place of /etc/pam.d/su for that one process tree.
func runSu(t testing.TB, caller, target *testUser, stackText string, steps []step) result {
	t.Helper()
	requireTools(t, "su", "unshare", "mount", "setpriv")
	dir := t.TempDir()
	stackFile := filepath.Join(dir, "su.pam")
	writeFile(t, stackFile, "# otpgate end-to-end test stack for su\n"+stackText, 0o644)
	before := fileSum(t, "/etc/pam.d/su")
	r := runChat(loginTimeout, steps, func(ctx context.Context) *exec.Cmd {
		cmd := command(ctx, "unshare", "--mount", "--propagation", "private", "--",
			"/bin/sh", "-c", `mount --bind "$1" /etc/pam.d/su && exec setpriv --reuid="$2" --regid="$3" --init-groups -- su -c "$5" "$4"`,
			"sh", stackFile, strconv.Itoa(caller.uid), strconv.Itoa(caller.gid), target.name, remoteCmd)
		cmd.Env = baseEnv("HOME="+caller.home, "USER="+caller.name, "LOGNAME="+caller.name)
		cmd.Dir = "/"
		return cmd
	})
	if after := fileSum(t, "/etc/pam.d/su"); after != before {
		t.Errorf("/etc/pam.d/su changed during the test")
	}
	return r
}

func fileSum(t testing.TB, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// wantOK checks that a sudo or su run succeeded and printed want.
func wantOK(t testing.TB, what string, r result, want string) {
	t.Helper()
	logResult(t, what, r)
	mustNotHang(t, what, r)
	if r.exit != 0 || !strings.Contains(r.stdout, want) {
		t.Fatalf("%s: want exit 0 and %q: %s", what, want, r)
	}
}

// wantRefused checks that a sudo or su run failed and ran nothing.
func wantRefused(t testing.TB, what string, r result) {
	t.Helper()
	logResult(t, what, r)
	mustNotHang(t, what, r)
	if r.exit == 0 || strings.Contains(r.stdout, "otpgate-e2e-ok:") {
		t.Fatalf("%s: want a refusal: %s", what, r)
	}
}
