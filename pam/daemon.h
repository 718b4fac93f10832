/*
 * daemon.h: reach the otpgate helper running as a daemon
 * (otpgate-helper --serve or --listen) on its Unix socket, before the
 * module falls back to fork and exec. The daemon learns who we are from
 * the kernel (SO_PEERCRED: our effective uid), so a root host gets trusted
 * mode and a host that runs as the user gets self mode, as with exec.
 */
#ifndef OTPGATE_DAEMON_H
#define OTPGATE_DAEMON_H

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "safepath.h"

#ifndef OTPGATE_SOCKET
#define OTPGATE_SOCKET "/run/otpgate/helper.sock"
#endif

#define CONNECT_WAIT 2 /* seconds a connect may wait for a full backlog */

/* What connect_daemon found. */
enum { DAEMON_UP, DAEMON_NONE, DAEMON_BROKEN };

/* connect_daemon connects to the socket at path. DAEMON_UP: *fd is the
 * connection (non-blocking). DAEMON_NONE: no daemon (no socket, or nobody
 * accepts on it: ENOENT, ECONNREFUSED): the caller may exec the helper.
 * DAEMON_BROKEN: anything else (a socket that is not root's or sits where
 * others can replace it, a daemon too busy to accept in time): deny. */
static int connect_daemon(const char *path, int *fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { CONNECT_WAIT, 0 };
	struct stat st;
	int s;
	if (strlen(path) >= sizeof sa.sun_path || path[0] != '/')
		return DAEMON_BROKEN;
	if (lstat(path, &st) != 0)
		return errno == ENOENT || errno == ENOTDIR ? DAEMON_NONE : DAEMON_BROKEN;
	if (!S_ISSOCK(st.st_mode) || st.st_uid != 0 || !safe_parents(path))
		return DAEMON_BROKEN;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return DAEMON_BROKEN;
	/* A blocking connect, bounded: a full backlog waits up to
	 * CONNECT_WAIT, then fails with EAGAIN (a denial, not a fall back). */
	if (setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
		goto broken;
	if (connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) {
		int none = errno == ECONNREFUSED || errno == ENOENT;
		close(s);
		return none ? DAEMON_NONE : DAEMON_BROKEN;
	}
	if (fcntl(s, F_SETFL, O_NONBLOCK) != 0)
		goto broken;
	*fd = s;
	return DAEMON_UP;
broken:
	close(s);
	return DAEMON_BROKEN;
}

#endif
