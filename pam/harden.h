/*
 * harden.h: reset what the process that started us controls, before the
 * otpgate helper is exec'd: signal dispositions and mask, session, resource
 * limits, umask, file descriptors. Shared by pam_otpgate.c's child (which
 * runs between fork and exec, so everything here is async-signal-safe:
 * plain system calls, no allocation, no stdio) and otpgate-launch-helper.
 * The Go helper does the same again first thing (internal/harden); the
 * limits below are internal/harden.Limits.
 */
#ifndef OTPGATE_HARDEN_H
#define OTPGATE_HARDEN_H

#include <grp.h>
#include <signal.h>
#include <stddef.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>

/* reset_signals sets every disposition to the default and unblocks all. */
static void reset_signals(void)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigset_t none;
	for (int s = 1; s < NSIG; s++)
		sigaction(s, &dfl, NULL); /* fails harmlessly for KILL, STOP */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* new_session leaves the starter's session and process group, so that
 * nothing typed at its terminal (Ctrl-Z, Ctrl-C) reaches us. setsid fails
 * only for a process group leader: fine if we already lead a session. */
static int new_session(void)
{
	return setsid() >= 0 || getsid(0) == getpid() ? 0 : -1;
}

/* One resource limit: set want (soft and hard); if that is not allowed,
 * raise the soft limit to the hard one and accept at least least. */
struct harden_limit {
	int resource;
	rlim_t want, least;
};

static const struct harden_limit harden_limits[] = {
	{ RLIMIT_CORE, 0, 0 }, /* no secrets in core files */
	{ RLIMIT_FSIZE, RLIM_INFINITY, 1 << 20 },
	{ RLIMIT_NOFILE, 4096, 64 },
	{ RLIMIT_CPU, RLIM_INFINITY, 600 },
	{ RLIMIT_AS, RLIM_INFINITY, (rlim_t)4 << 30 },
	{ RLIMIT_DATA, RLIM_INFINITY, (rlim_t)1 << 30 },
	{ RLIMIT_STACK, 8 << 20, 1 << 20 },
};

/* reset_limits applies harden_limits: 0, or -1 if one stays too low. */
static int reset_limits(void)
{
	for (size_t i = 0; i < sizeof harden_limits / sizeof harden_limits[0]; i++) {
		const struct harden_limit *l = &harden_limits[i];
		struct rlimit cur, want = { l->want, l->want };
		if (getrlimit(l->resource, &cur) != 0)
			return -1;
		if (l->want == 0)
			want.rlim_max = cur.rlim_max; /* lowering the soft limit is enough */
		if (setrlimit(l->resource, &want) == 0)
			continue;
		cur.rlim_cur = cur.rlim_max; /* no CAP_SYS_RESOURCE: as high as allowed */
		if (setrlimit(l->resource, &cur) != 0 || cur.rlim_cur < l->least)
			return -1;
	}
	return 0;
}

/* close_from closes every descriptor from low up; maxfd bounds the loop
 * where close_range(2) is missing. */
static void close_from(int low, long maxfd)
{
#ifdef SYS_close_range
	if (syscall(SYS_close_range, (unsigned)low, ~0U, 0U) == 0)
		return;
#endif
	for (long fd = low; fd < maxfd; fd++)
		close((int)fd);
}

/* become_root makes a setuid-root process wholly root: real, effective
 * and saved ids 0 and no supplementary groups, so the caller can no longer
 * signal or trace it and the helper sees real uid 0. */
static int become_root(void)
{
	return setresgid(0, 0, 0) || setgroups(0, NULL) || setresuid(0, 0, 0) ? -1 : 0;
}

/* helper_envp is the whole environment the helper gets. GOMAXPROCS=1: it
 * does one thing at a time, and one scheduler thread starts measurably
 * faster (docs/pam-module.md). */
static char *const helper_envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GOMAXPROCS=1", NULL };

#endif
