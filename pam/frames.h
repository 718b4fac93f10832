/*
 * frames.h: the module's side of the helper protocol (internal/protocol):
 * frames of a type byte, a 4-byte big-endian length and a payload, on a
 * non-blocking socket, every wait bounded by a deadline. relay() is the
 * whole conversation after the request; pam/fuzz drives it with arbitrary
 * helper output.
 */
#ifndef OTPGATE_FRAMES_H
#define OTPGATE_FRAMES_H

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <sys/socket.h>

#include <security/pam_modules.h>
#include <security/pam_ext.h>

#define MAX_PAYLOAD (64 * 1024)

/* Frame types; see internal/protocol. */
enum {
	T_REQUEST = 0x01, T_ANSWER = 0x02, T_CONV_FAILED = 0x03,
	T_PROMPT_OFF = 0x10, T_PROMPT_ON = 0x11, T_INFO = 0x12,
	T_ERROR = 0x13, T_AUTHTOK = 0x14, T_RESULT = 0x15,
};

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

/* How relay talks: PAM flags (PAM_SILENT), nullok and debug from pam.d,
 * and how long one wait for the helper may last. */
struct relay_opts {
	int flags, nullok, debug;
	int64_t wait_ms;
};

/* relay_frames is relay; under PAM_SILENT it keeps the last error line in
 * *held (malloc'd; the caller frees it) instead of showing it. */
static int relay_frames(pam_handle_t *pamh, int fd, const struct relay_opts *o, unsigned char *buf,
			size_t len, int *verdict, char **held)
{
	int type;
	if (send_frame(fd, T_REQUEST, buf, len, now_ms() + o->wait_ms) != 0)
		return -1;
	for (;;) {
		char *resp = NULL;
		int r;
		/* Silent too long, gone, or garbled (text never holds a NUL). */
		if (recv_frame(fd, &type, buf, &len, now_ms() + o->wait_ms) != 0 ||
		    strlen((char *)buf) != len)
			return -1;
		switch (type) {
		case T_PROMPT_OFF:
		case T_PROMPT_ON:
			r = pam_prompt(pamh, type == T_PROMPT_OFF ? PAM_PROMPT_ECHO_OFF : PAM_PROMPT_ECHO_ON,
				       &resp, "%s", (char *)buf);
			if (r != PAM_SUCCESS || resp == NULL || strlen(resp) > MAX_PAYLOAD)
				r = send_frame(fd, T_CONV_FAILED, "", 0, now_ms() + o->wait_ms);
			else
				r = send_frame(fd, T_ANSWER, resp, strlen(resp), now_ms() + o->wait_ms);
			if (resp) {
				explicit_bzero(resp, strlen(resp));
				free(resp);
			}
			if (r != 0)
				return -1;
			break;
		case T_INFO:
		case T_ERROR:
			/* A lost message is not worth failing a login over. */
			if (!(o->flags & PAM_SILENT)) {
				pam_prompt(pamh, type == T_INFO ? PAM_TEXT_INFO : PAM_ERROR_MSG, NULL, "%s", (char *)buf);
			} else if (type == T_ERROR) {
				free(*held);
				*held = strdup((char *)buf);
			}
			break;
		case T_AUTHTOK:
			r = pam_set_item(pamh, PAM_AUTHTOK, buf);
			explicit_bzero(buf, len);
			if (r != PAM_SUCCESS)
				return -1;
			break;
		case T_RESULT:
			*verdict = result_code((char *)buf, o->nullok);
			if (o->debug)
				pam_syslog(pamh, LOG_DEBUG, "helper verdict \"%s\" gives %d", (char *)buf, *verdict);
			/* The helper exits after its verdict: only EOF may follow. */
			return io_full(fd, 0, buf, 1, now_ms() + o->wait_ms) == 0 ? -1 : 0;
		default:
			return -1;
		}
	}
}

/* relay sends the request (len bytes in buf, which holds MAX_PAYLOAD + 1)
 * and relays the helper's prompts and messages through the conversation
 * until its verdict. 0 with *verdict set when a verdict came and the
 * helper then closed the socket; -1 when the helper was silent too long,
 * hung up, or broke the protocol (the caller denies).
 *
 * PAM_SILENT keeps info and error lines back, with one exception: the
 * error line that comes with PAM_MAXTRIES (the account is locked, and
 * until when) is shown anyway. It is the one line without which the
 * person cannot know that retrying is useless; sudo passes PAM_SILENT on
 * every pam_authenticate and asks again after PAM_MAXTRIES. */
static int relay(pam_handle_t *pamh, int fd, const struct relay_opts *o, unsigned char *buf,
		 size_t len, int *verdict)
{
	char *held = NULL;
	int r = relay_frames(pamh, fd, o, buf, len, verdict, &held);
	if (r == 0 && *verdict == PAM_MAXTRIES && held != NULL)
		pam_prompt(pamh, PAM_ERROR_MSG, NULL, "%s", held);
	free(held);
	return r;
}

#endif
