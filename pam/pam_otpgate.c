/*
 * pam_otpgate: the PAM side of otpgate, a TOTP second factor.
 *
 * The module holds no policy. On pam_sm_authenticate it forks and execs
 * the otpgate helper (a Go program) with a socketpair on its stdin and
 * stdout, sends it one request frame, relays its prompts and messages
 * through the PAM conversation, and returns the verdict the helper sends,
 * if that verdict is one the helper may give. Any error, a helper that is
 * missing, unsafe, silent, garbled, killed or crashed, ends in a denial.
 * See docs/pam-module.md for the protocol and the arguments.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <security/pam_modules.h>
#include <security/pam_ext.h>

#ifndef OTPGATE_HELPER
#define OTPGATE_HELPER "/usr/local/libexec/otpgate/otpgate-helper"
#endif

#define MAX_PAYLOAD (64 * 1024)
#define DEFAULT_TIMEOUT 60 /* seconds the helper waits for an answer */
#define MARGIN 5           /* seconds more the module waits for the helper */

/* Frame types; see internal/protocol. */
enum {
	T_REQUEST = 0x01, T_ANSWER = 0x02, T_CONV_FAILED = 0x03,
	T_PROMPT_OFF = 0x10, T_PROMPT_ON = 0x11, T_INFO = 0x12,
	T_ERROR = 0x13, T_AUTHTOK = 0x14, T_RESULT = 0x15,
};

struct options {
	const char *helper;
	int timeout, nullok, debug;
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
 * (config=, prompt=, forward_pass) from the request. A typo in pam.d is a
 * broken setup, not a reason to skip a factor: PAM_SERVICE_ERR. */
static int parse_args(pam_handle_t *pamh, int argc, const char **argv, struct options *o)
{
	*o = (struct options){ .helper = OTPGATE_HELPER, .timeout = DEFAULT_TIMEOUT };
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "nullok") == 0)
			o->nullok = 1;
		else if (strcmp(a, "debug") == 0)
			o->debug = 1;
		else if (strncmp(a, "helper=/", 8) == 0)
			o->helper = a + 7;
		else if (strncmp(a, "timeout=", 8) == 0 && (o->timeout = seconds(a + 8)) > 0)
			continue;
		else if (strcmp(a, "forward_pass") && strncmp(a, "prompt=", 7) && strncmp(a, "config=/", 8)) {
			/* pam.d is written by root: the argument is safe to log. */
			pam_syslog(pamh, LOG_ERR, "bad or unknown argument \"%s\"; denying", a);
			return PAM_SERVICE_ERR;
		}
	}
	return PAM_SUCCESS;
}

/* safe_node: owned by root, nobody else may write it (a root-owned sticky
 * directory such as /tmp is allowed above the helper's own directory). */
static int safe_node(const char *path, int want_dir, int parent)
{
	struct stat st;
	if (lstat(path, &st) != 0 || st.st_uid != 0)
		return 0;
	if (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
		return 0;
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return parent && want_dir && (st.st_mode & S_ISVTX);
	return 1;
}

/* check_helper: absolute path to a root-owned regular file that only root
 * can write or replace, like sudo's checks on its plugins. */
static int check_helper(const char *path)
{
	char dir[4096];
	size_t n = strlen(path);
	if (path[0] != '/' || n >= sizeof dir || !safe_node(path, 0, 0))
		return 0;
	memcpy(dir, path, n + 1);
	for (int first = 1;; first = 0) {
		char *slash = strrchr(dir, '/');
		if (slash == dir) /* the root directory itself */
			return safe_node("/", 1, !first);
		*slash = '\0';
		if (!safe_node(dir, 1, !first))
			return 0;
	}
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* io_full reads or writes exactly n bytes on the non-blocking socket fd
 * before deadline (CLOCK_MONOTONIC ms). 0 on success, -1 on error, EOF or
 * timeout. */
static int io_full(int fd, int out, unsigned char *p, size_t n, int64_t deadline)
{
	while (n > 0) {
		struct pollfd pfd = { .fd = fd, .events = out ? POLLOUT : POLLIN };
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return -1;
		int r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno != EINTR)
			return -1;
		if (r <= 0)
			continue;
		ssize_t k = out ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
		if (k == 0 && !out)
			return -1;
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return -1;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int send_frame(int fd, int type, const void *payload, size_t len, int64_t deadline)
{
	unsigned char h[5] = { (unsigned char)type, (unsigned char)(len >> 24),
		(unsigned char)(len >> 16), (unsigned char)(len >> 8), (unsigned char)len };
	if (len > MAX_PAYLOAD || io_full(fd, 1, h, 5, deadline) != 0)
		return -1;
	return io_full(fd, 1, (unsigned char *)payload, len, deadline);
}

/* recv_frame reads one frame into buf (MAX_PAYLOAD + 1 bytes) and NUL-
 * terminates it. A type the helper may not send is a protocol error. */
static int recv_frame(int fd, int *type, unsigned char *buf, size_t *len, int64_t deadline)
{
	unsigned char h[5];
	if (io_full(fd, 0, h, 5, deadline) != 0)
		return -1;
	*type = h[0];
	*len = (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | h[4];
	if (*type < T_PROMPT_OFF || *type > T_RESULT || *len > MAX_PAYLOAD)
		return -1;
	if (io_full(fd, 0, buf, *len, deadline) != 0)
		return -1;
	buf[*len] = '\0';
	return 0;
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

/* result_code maps the helper's verdict to a PAM code, allowing only the
 * verdicts the helper may give; PAM_IGNORE only when nullok was asked for. */
static int result_code(const char *name, int nullok)
{
	if (strcmp(name, "success") == 0)
		return PAM_SUCCESS;
	if (strcmp(name, "ignore") == 0 && nullok)
		return PAM_IGNORE;
	if (strcmp(name, "maxtries") == 0)
		return PAM_MAXTRIES;
	if (strcmp(name, "service_err") == 0)
		return PAM_SERVICE_ERR;
	return PAM_AUTH_ERR; /* "auth_err", and anything else */
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

/* child runs between fork and exec: async-signal-safe calls only. */
__attribute__((noreturn)) static void child(int sock, int devnull, const char *helper, long maxfd)
{
	/* Fixed. GOMAXPROCS=1: the helper does one thing at a time, and one
	 * scheduler thread starts measurably faster (docs/pam-module.md). */
	static char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GOMAXPROCS=1", NULL };
	char *const argv[] = { (char *)helper, NULL };
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigset_t none;
	for (int s = 1; s < NSIG; s++)
		sigaction(s, &dfl, NULL); /* fails harmlessly for KILL, STOP */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Above 2 first, in case the host runs with fd 0, 1 or 2 closed. */
	sock = fcntl(sock, F_DUPFD_CLOEXEC, 3);
	devnull = fcntl(devnull, F_DUPFD_CLOEXEC, 3);
	if (sock < 0 || devnull < 0 || dup2(sock, 0) < 0 || dup2(sock, 1) < 0 || dup2(devnull, 2) < 0)
		_exit(127);
#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
#endif
		for (long fd = 3; fd < maxfd; fd++)
			close((int)fd);
	/* sudo and su run PAM with the caller's real uid: make root whole, so
	 * the helper sees real uid 0 and trusts the request. */
	if (geteuid() == 0 && (setresgid(0, 0, 0) || setgroups(0, NULL) || setresuid(0, 0, 0)))
		_exit(127);
	execve(helper, argv, envp);
	_exit(127);
}

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	struct options o;
	struct sigaction dfl = { .sa_handler = SIG_DFL }, old_chld;
	sigset_t all, old_mask;
	const char *user = NULL;
	unsigned char *buf = NULL;
	int sv[2] = { -1, -1 }, devnull = -1, type, ret;
	size_t len;
	pid_t pid;
	int64_t wait_ms;
	long maxfd = sysconf(_SC_OPEN_MAX);

	if ((ret = parse_args(pamh, argc, argv, &o)) != PAM_SUCCESS)
		return ret;
	wait_ms = (int64_t)(o.timeout + MARGIN) * 1000;
	ret = pam_get_user(pamh, &user, NULL);
	if (ret == PAM_CONV_AGAIN)
		return PAM_INCOMPLETE; /* nothing done yet: the application may call again */
	if (ret != PAM_SUCCESS || user == NULL || *user == '\0')
		return PAM_AUTH_ERR;
	if (!check_helper(o.helper)) {
		pam_syslog(pamh, LOG_ERR, "helper %s is missing or unsafe (it and every directory above "
			   "it must be root-owned and not group- or world-writable); denying", o.helper);
		return PAM_AUTH_ERR;
	}
	if ((buf = malloc(MAX_PAYLOAD + 1)) == NULL)
		return PAM_BUF_ERR;
	ret = PAM_AUTH_ERR;
	if (build_request(pamh, user, flags, argc, argv, buf, &len) != 0) {
		pam_syslog(pamh, LOG_ERR, "request over %d bytes; denying", MAX_PAYLOAD);
		goto out;
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
		child(sv[1], devnull, o.helper, maxfd);
	sigprocmask(SIG_SETMASK, &old_mask, NULL);
	close(sv[1]);
	sv[1] = -1;
	if (pid < 0) {
		pam_syslog(pamh, LOG_ERR, "fork: %m");
		ret = PAM_SYSTEM_ERR;
		goto restore;
	}
	if (o.debug)
		pam_syslog(pamh, LOG_DEBUG, "helper %s started as pid %d", o.helper, (int)pid);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);

	if (send_frame(sv[0], T_REQUEST, buf, len, now_ms() + wait_ms) != 0)
		goto kill;
	for (;;) {
		char *resp = NULL;
		int r, verdict;
		/* Silent too long, gone, or garbled (text never holds a NUL). */
		if (recv_frame(sv[0], &type, buf, &len, now_ms() + wait_ms) != 0 ||
		    strlen((char *)buf) != len)
			goto kill;
		switch (type) {
		case T_PROMPT_OFF:
		case T_PROMPT_ON:
			r = pam_prompt(pamh, type == T_PROMPT_OFF ? PAM_PROMPT_ECHO_OFF : PAM_PROMPT_ECHO_ON,
				       &resp, "%s", (char *)buf);
			if (r != PAM_SUCCESS || resp == NULL || strlen(resp) > MAX_PAYLOAD)
				r = send_frame(sv[0], T_CONV_FAILED, "", 0, now_ms() + wait_ms);
			else
				r = send_frame(sv[0], T_ANSWER, resp, strlen(resp), now_ms() + wait_ms);
			if (resp) {
				explicit_bzero(resp, strlen(resp));
				free(resp);
			}
			if (r != 0)
				goto kill;
			break;
		case T_INFO:
		case T_ERROR:
			/* A lost message is not worth failing a login over. */
			if (!(flags & PAM_SILENT))
				pam_prompt(pamh, type == T_INFO ? PAM_TEXT_INFO : PAM_ERROR_MSG, NULL, "%s", (char *)buf);
			break;
		case T_AUTHTOK:
			r = pam_set_item(pamh, PAM_AUTHTOK, buf);
			explicit_bzero(buf, len);
			if (r != PAM_SUCCESS)
				goto kill;
			break;
		case T_RESULT:
			verdict = result_code((char *)buf, o.nullok);
			if (o.debug)
				pam_syslog(pamh, LOG_DEBUG, "helper verdict \"%s\" gives %d", (char *)buf, verdict);
			/* The helper exits after its verdict: only EOF may follow, and
			 * the verdict counts only from a clean exit. */
			if (io_full(sv[0], 0, buf, 1, now_ms() + wait_ms) == 0)
				goto kill;
			ret = reap(pid, now_ms() + wait_ms) == 0 ? verdict : PAM_AUTH_ERR;
			if (ret != verdict)
				pam_syslog(pamh, LOG_ERR, "helper did not exit cleanly after its verdict; denying");
			goto restore;
		default:
			goto kill;
		}
	}
kill:
	pam_syslog(pamh, LOG_ERR, "helper failed, timed out or broke the protocol; denying");
	reap(pid, 0);
	ret = PAM_AUTH_ERR;
restore:
	sigaction(SIGCHLD, &old_chld, NULL);
out:
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	if (devnull >= 0)
		close(devnull);
	explicit_bzero(buf, MAX_PAYLOAD + 1);
	free(buf);
	return ret;
}

/* otpgate sets no credentials, so setcred has nothing that can fail:
 * PAM_SUCCESS. Answering PAM_IGNORE would fail pam_setcred in a stack where
 * otpgate is the only auth module (Linux-PAM denies a stack in which every
 * module ignored), and sshd treats that failure after a successful login
 * as fatal. docs/pam-module.md explains this departure from DESIGN.md. */
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
