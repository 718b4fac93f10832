/*
 * pam_otpgate: the PAM side of otpgate, a TOTP second factor.
 *
 * The module holds no policy. On pam_sm_authenticate it forks and execs
 * the otpgate helper (a Go program) with a socketpair on its stdin and
 * stdout, sends it one request frame, relays its prompts and messages
 * through the PAM conversation, and returns the verdict the helper sends,
 * if that verdict is one the helper may give. Any error, a helper that is
 * missing, unsafe, silent, garbled, killed or crashed, ends in a denial.
 *
 * A host that runs as root, or setuid root (sudo, su), runs the helper
 * itself, made wholly root. A host that runs as the user (a screen locker)
 * runs otpgate-launch-helper from the helper's directory instead, the
 * setuid-root launcher, which serves the user's own account only.
 * See docs/pam-module.md for the protocol and the arguments.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <security/pam_modules.h>
#include <security/pam_ext.h>

#include "daemon.h"
#include "frames.h"
#include "harden.h"
#include "safepath.h"

#ifndef OTPGATE_HELPER
#define OTPGATE_HELPER "/usr/local/libexec/otpgate/otpgate-helper"
#endif
/* The launcher's file name, in the helper's directory. */
#define LAUNCHER_NAME "otpgate-launch-helper"

#define DEFAULT_TIMEOUT 60 /* seconds the helper waits for an answer */
#define MARGIN 5           /* seconds more the module waits for the helper */

/* How to reach the helper (mode=): the daemon's socket, else exec (auto);
 * the daemon only; exec only. */
enum { MODE_AUTO, MODE_DAEMON, MODE_EXEC };

struct options {
	const char *helper, *socket;
	int timeout, nullok, debug, mode;
};

/* seconds parses a timeout: 1 to 600 decimal seconds, else -1. */
static int seconds(const char *s)
{
	int t = 0;
	do {
		if (*s < '0' || *s > '9' || t > 600)
			return -1;
		t = t * 10 + (*s - '0');
	} while (*++s);
	return t >= 1 && t <= 600 ? t : -1;
}

/* parse_args checks every argument; the helper reads its own ones again
 * (config=, prompt=, forward_pass, first_login) from the request. A typo
 * in pam.d is a broken setup, not a reason to skip a factor:
 * PAM_SERVICE_ERR. */
static int parse_args(pam_handle_t *pamh, int argc, const char **argv, struct options *o)
{
	*o = (struct options){ .helper = OTPGATE_HELPER, .socket = OTPGATE_SOCKET, .timeout = DEFAULT_TIMEOUT };
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "nullok") == 0)
			o->nullok = 1;
		else if (strcmp(a, "debug") == 0)
			o->debug = 1;
		else if (strncmp(a, "helper=/", 8) == 0)
			o->helper = a + 7;
		else if (strncmp(a, "socket=/", 8) == 0)
			o->socket = a + 7;
		else if (strcmp(a, "mode=auto") == 0)
			o->mode = MODE_AUTO;
		else if (strcmp(a, "mode=daemon") == 0)
			o->mode = MODE_DAEMON;
		else if (strcmp(a, "mode=exec") == 0)
			o->mode = MODE_EXEC;
		else if (strncmp(a, "timeout=", 8) == 0 && (o->timeout = seconds(a + 8)) > 0)
			continue;
		else if (strcmp(a, "forward_pass") && strcmp(a, "first_login") && strncmp(a, "prompt=", 7) &&
			 strncmp(a, "config=/", 8)) {
			/* pam.d is written by root: the argument is safe to log. */
			pam_syslog(pamh, LOG_ERR, "bad or unknown argument \"%s\"; denying", a);
			return PAM_SERVICE_ERR;
		}
	}
	return PAM_SUCCESS;
}

/* put appends "key=value\0" to the request being built in buf. */
static int put(unsigned char *buf, size_t *len, const char *key, const char *value)
{
	size_t k = strlen(key), v = value ? strlen(value) : 0;
	if (*len + k + v + 2 > MAX_PAYLOAD)
		return -1;
	memcpy(buf + *len, key, k);
	buf[*len + k] = '=';
	if (v)
		memcpy(buf + *len + k + 1, value, v);
	buf[*len + k + v + 1] = '\0';
	*len += k + v + 2;
	return 0;
}

static int build_request(pam_handle_t *pamh, const char *user, int flags, int argc,
			 const char **argv, unsigned char *buf, size_t *len)
{
	static const struct { int item; const char *key; } items[] = {
		{ PAM_SERVICE, "service" }, { PAM_RHOST, "rhost" },
		{ PAM_RUSER, "ruser" }, { PAM_TTY, "tty" },
	};
	*len = 0;
	if (put(buf, len, "op", "authenticate") || put(buf, len, "user", user) ||
	    put(buf, len, "flags", (flags & PAM_SILENT) ? "silent" : ""))
		return -1;
	for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
		const void *v = NULL;
		if (pam_get_item(pamh, items[i].item, &v) != PAM_SUCCESS)
			v = NULL;
		if (put(buf, len, items[i].key, v))
			return -1;
	}
	for (int i = 0; i < argc; i++)
		if (put(buf, len, "arg", argv[i]))
			return -1;
	return 0;
}

/* reap waits for the helper until deadline, then kills it. 0 only for a
 * clean exit (status 0). The helper exits right after its verdict, so the
 * wait starts at 50 us and doubles to at most 10 ms: a fixed 10 ms sleep
 * would be most of an authentication's time. */
static int reap(pid_t pid, int64_t deadline)
{
	struct timespec pause = { 0, 50 * 1000 };
	int status;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
		if (r < 0 && errno != EINTR)
			return -1;
		if (now_ms() >= deadline) {
			kill(pid, SIGKILL);
			deadline = INT64_MAX;
		}
		nanosleep(&pause, NULL);
		if (pause.tv_nsec < 10 * 1000 * 1000)
			pause.tv_nsec *= 2;
	}
}

/* launcher_path writes the launcher's path, the helper's directory and
 * LAUNCHER_NAME, into out (size n). 0, or -1 if it does not fit. */
static int launcher_path(const char *helper, char *out, size_t n)
{
	const char *slash = strrchr(helper, '/');
	size_t dir = (size_t)(slash - helper) + 1;
	if (dir + sizeof LAUNCHER_NAME > n)
		return -1;
	memcpy(out, helper, dir);
	memcpy(out + dir, LAUNCHER_NAME, sizeof LAUNCHER_NAME);
	return 0;
}

/* check_program: the helper, or in a host that is not root the launcher,
 * must be something only root can change; the launcher must be setuid
 * too. 1 if it may run. */
static int check_program(pam_handle_t *pamh, const char *path, int launcher)
{
	struct stat st;
	if (!safe_path(path, &st)) {
		pam_syslog(pamh, LOG_ERR, "%s is missing or unsafe (it and every directory above it must be "
			   "root-owned and not group- or world-writable); denying", path);
		return 0;
	}
	if (launcher && !(st.st_mode & S_ISUID)) {
		pam_syslog(pamh, LOG_ERR, "%s is not setuid root (chmod 4755 it), and this program does not run "
			   "as root; denying", path);
		return 0;
	}
	return 1;
}

/* child runs between fork and exec: async-signal-safe calls only. Exit
 * 127 (a denial) when it cannot reset what the host left it. */
__attribute__((noreturn)) static void child(int sock, int devnull, const char *prog, long maxfd)
{
	char *const argv[] = { (char *)prog, NULL };
	int root = geteuid() == 0;
	reset_signals();
	umask(077);
	/* Its own session: Ctrl-Z or Ctrl-C at the user's terminal must not
	 * stop or kill a root helper. */
	if (new_session() != 0)
		_exit(127);
	/* The host's limits are the user's (su sets none before its prompt).
	 * A host that is not root may not raise them: the launcher does. */
	if (reset_limits() != 0 && root)
		_exit(127);
	/* Above 2 first, in case the host runs with fd 0, 1 or 2 closed. */
	sock = fcntl(sock, F_DUPFD_CLOEXEC, 3);
	devnull = fcntl(devnull, F_DUPFD_CLOEXEC, 3);
	if (sock < 0 || devnull < 0 || dup2(sock, 0) < 0 || dup2(sock, 1) < 0 || dup2(devnull, 2) < 0)
		_exit(127);
	close_from(3, maxfd);
	/* sudo and su run PAM with the caller's real uid: make root whole, so
	 * the helper sees real uid 0 and trusts the request. */
	if (root && become_root() != 0)
		_exit(127);
	execve(prog, argv, helper_envp);
	_exit(127);
}

/* exec_helper forks and execs the helper (or, in a host that is not root,
 * the launcher) with a socketpair, relays the request in buf and returns
 * the PAM code. */
static int exec_helper(pam_handle_t *pamh, const struct options *o, const struct relay_opts *ro,
		       unsigned char *buf, size_t len)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL }, old_chld;
	sigset_t all, old_mask;
	const char *prog = o->helper;
	char launcher[4096];
	int sv[2] = { -1, -1 }, devnull = -1, verdict, ret = PAM_AUTH_ERR;
	pid_t pid;
	long maxfd = sysconf(_SC_OPEN_MAX);

	/* A broken install denies (PAM_AUTH_ERR, as for a wrong code): a
	 * missing second factor must never let a login through. */
	if (!check_program(pamh, o->helper, 0))
		return PAM_AUTH_ERR;
	if (geteuid() != 0) {
		if (launcher_path(o->helper, launcher, sizeof launcher) != 0 ||
		    !check_program(pamh, launcher, 1))
			return PAM_AUTH_ERR;
		prog = launcher;
	}
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		pam_syslog(pamh, LOG_ERR, "cannot set up the helper: %m");
		ret = PAM_SYSTEM_ERR;
		goto out;
	}
	/* The host may ignore SIGCHLD (the kernel would reap the helper behind
	 * our back) or reap in a handler: keep the default until the helper is
	 * reaped. Every signal is blocked across fork so that no host handler
	 * runs in the child before it resets them. */
	sigaction(SIGCHLD, &dfl, &old_chld);
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old_mask);
	pid = fork();
	if (pid == 0)
		child(sv[1], devnull, prog, maxfd);
	sigprocmask(SIG_SETMASK, &old_mask, NULL);
	close(sv[1]);
	sv[1] = -1;
	if (pid < 0) {
		pam_syslog(pamh, LOG_ERR, "fork: %m");
		ret = PAM_SYSTEM_ERR;
		goto restore;
	}
	if (o->debug)
		pam_syslog(pamh, LOG_DEBUG, "%s started as pid %d", prog, (int)pid);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);

	if (relay(pamh, sv[0], ro, buf, len, &verdict) != 0) {
		pam_syslog(pamh, LOG_ERR, "helper failed, timed out or broke the protocol; denying");
		reap(pid, 0);
		ret = PAM_AUTH_ERR;
		goto restore;
	}
	/* The verdict counts only from a clean exit. */
	ret = reap(pid, now_ms() + ro->wait_ms) == 0 ? verdict : PAM_AUTH_ERR;
	if (ret != verdict)
		pam_syslog(pamh, LOG_ERR, "helper did not exit cleanly after its verdict; denying");
restore:
	sigaction(SIGCHLD, &old_chld, NULL);
out:
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	if (devnull >= 0)
		close(devnull);
	return ret;
}

/* ask_daemon relays the request in buf to the daemon on fd and returns the
 * PAM code. Once the request is sent, every failure is a denial: never a
 * second attempt through exec, which could count one login twice. */
static int ask_daemon(pam_handle_t *pamh, int fd, const struct options *o, const struct relay_opts *ro,
		      unsigned char *buf, size_t len)
{
	int verdict, ret;
	if (o->debug)
		pam_syslog(pamh, LOG_DEBUG, "asking the otpgate-helper daemon at %s", o->socket);
	ret = relay(pamh, fd, ro, buf, len, &verdict) == 0 ? verdict : PAM_AUTH_ERR;
	if (ret != verdict)
		pam_syslog(pamh, LOG_ERR, "the otpgate-helper daemon at %s failed, timed out or broke the protocol; denying",
			   o->socket);
	close(fd);
	return ret;
}

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	struct options o;
	struct relay_opts ro;
	const char *user = NULL;
	unsigned char *buf = NULL;
	size_t len;
	int ret, fd = -1;

	if ((ret = parse_args(pamh, argc, argv, &o)) != PAM_SUCCESS)
		return ret;
	ro = (struct relay_opts){ .flags = flags, .nullok = o.nullok, .debug = o.debug,
				  .wait_ms = (int64_t)(o.timeout + MARGIN) * 1000 };
	ret = pam_get_user(pamh, &user, NULL);
	if (ret == PAM_CONV_AGAIN)
		return PAM_INCOMPLETE; /* nothing done yet: the application may call again */
	if (ret != PAM_SUCCESS || user == NULL || *user == '\0')
		return PAM_AUTH_ERR;
	if ((buf = malloc(MAX_PAYLOAD + 1)) == NULL)
		return PAM_BUF_ERR;
	ret = PAM_AUTH_ERR;
	if (build_request(pamh, user, flags, argc, argv, buf, &len) != 0) {
		pam_syslog(pamh, LOG_ERR, "request over %d bytes; denying", MAX_PAYLOAD);
		goto out;
	}
	switch (o.mode == MODE_EXEC ? DAEMON_NONE : connect_daemon(o.socket, &fd)) {
	case DAEMON_UP:
		ret = ask_daemon(pamh, fd, &o, &ro, buf, len);
		break;
	case DAEMON_NONE:
		if (o.mode == MODE_DAEMON) {
			pam_syslog(pamh, LOG_ERR, "no otpgate-helper daemon at %s, and mode=daemon; denying", o.socket);
			break;
		}
		ret = exec_helper(pamh, &o, &ro, buf, len);
		break;
	default:
		pam_syslog(pamh, LOG_ERR, "cannot use the otpgate-helper socket %s (it must be a root-owned "
			   "socket in directories only root can change, and the daemon must accept within %d s); denying",
			   o.socket, CONNECT_WAIT);
	}
out:
	explicit_bzero(buf, MAX_PAYLOAD + 1);
	free(buf);
	return ret;
}

/* otpgate sets no credentials, so setcred has nothing that can fail:
 * PAM_SUCCESS. Answering PAM_IGNORE would fail pam_setcred in a stack where
 * otpgate is the only auth module (Linux-PAM denies a stack in which every
 * module ignored), and sshd treats that failure after a successful login
 * as fatal. docs/pam-module.md explains why. */
PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)pamh, (void)flags, (void)argc, (void)argv;
	return PAM_SUCCESS;
}

/* otpgate manages no accounts, sessions or passwords: these do not apply. */
#define NOT_APPLICABLE(name) \
	PAM_EXTERN int name(pam_handle_t *pamh, int flags, int argc, const char **argv) \
	{ (void)pamh, (void)flags, (void)argc, (void)argv; return PAM_IGNORE; }
NOT_APPLICABLE(pam_sm_acct_mgmt)
NOT_APPLICABLE(pam_sm_open_session)
NOT_APPLICABLE(pam_sm_close_session)
NOT_APPLICABLE(pam_sm_chauthtok)
