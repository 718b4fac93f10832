/*
 * otpgate-launch-helper: the one setuid-root program of otpgate.
 *
 * A normal user's otpgate command (status, enroll, sshcheck) and the PAM
 * module in a host that runs as the user (a screen locker) reach the
 * otpgate helper through this launcher. It trusts nothing of its caller:
 * it ignores argv and the environment, resets signals, session, resource
 * limits, umask and file descriptors, becomes wholly root, and execs the
 * helper compiled in (OTPGATE_HELPER) with a fixed environment and
 * --self-uid=<the caller's real uid>, so that the helper serves only that
 * user's own account. Run by root, it passes no argument: trusted mode.
 *
 * The helper is a Go program: run setuid itself, its runtime and package
 * initialisation would read the caller's environment (GODEBUG, TZ, ...)
 * before main could clear it. See docs/pam-module.md.
 *
 * Standard input and output must be the socket the caller talks on; the
 * helper checks that it is one. Exit status 2: refused (see stderr).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "harden.h"
#include "safepath.h"

#ifndef OTPGATE_HELPER
#define OTPGATE_HELPER "/usr/local/libexec/otpgate/otpgate-helper"
#endif

/* refuse says why on standard error (while it is still the caller's) and
 * exits 2. */
__attribute__((noreturn)) static void refuse(const char *why)
{
	const char *p = "otpgate-launch-helper: ";
	if (write(2, p, strlen(p)) < 0 || write(2, why, strlen(why)) < 0 || write(2, "\n", 1) < 0)
		_exit(2);
	_exit(2);
}

int main(int argc, char **argv)
{
	uid_t uid = getuid();
	char flag[32];
	char *args[] = { OTPGATE_HELPER, flag, NULL };
	struct stat st;
	long maxfd = sysconf(_SC_OPEN_MAX);
	int null;

	(void)argc, (void)argv; /* argc may be 0: nothing of them is used */
	if (geteuid() != 0)
		refuse("not setuid root; install it root:root with mode 4755 (make install)");
	reset_signals();
	umask(077);
	if (new_session() != 0)
		refuse("cannot start a new session (setsid)");
	if (reset_limits() != 0)
		refuse("cannot reset the resource limits (a hard limit is too low)");
	if (fcntl(0, F_GETFD) < 0 || fcntl(1, F_GETFD) < 0)
		refuse("standard input and output must be open (the socket otpgate talks on)");
	if (!safe_path(OTPGATE_HELPER, &st))
		refuse(OTPGATE_HELPER " is missing or unsafe (it and every directory above it must be "
		       "root-owned and not group- or world-writable)");
	null = open("/dev/null", O_RDWR);
	if (null < 0 || (null != 2 && dup2(null, 2) < 0))
		refuse("cannot open /dev/null");
	close_from(3, maxfd);
	if (become_root() != 0)
		_exit(2);
	if (uid == 0)
		args[1] = NULL; /* root: trusted mode */
	else if (snprintf(flag, sizeof flag, "--self-uid=%u", (unsigned)uid) >= (int)sizeof flag)
		_exit(2);
	execve(OTPGATE_HELPER, args, helper_envp);
	_exit(2);
}
