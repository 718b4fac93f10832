/*
 * fuzz_relay: the module's frame parser and relay loop (pam/frames.h)
 * driven with arbitrary helper output. Each input is what a helper would
 * write to the module's socket, then EOF; relay() reads it as the module
 * does, through a real libpam handle whose conversation answers every
 * prompt. Built with clang -fsanitize=fuzzer,address,undefined by make
 * fuzz, and with seeds_main.c (gcc, ASan) for the seeds in make test.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include <security/pam_appl.h>

#include "../frames.h"

/* helper_end is the socket's other end, where the answers arrive. */
static int helper_end = -1;

/* answer gives "123456" to every prompt and nothing to messages. It
 * drains the answers sent so far, as a helper would read them, so that
 * many prompts never fill the socket. */
static int answer(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
	struct pam_response *r = calloc((size_t)n, sizeof *r);
	char sink[4096];
	(void)data;
	while (recv(helper_end, sink, sizeof sink, MSG_DONTWAIT) > 0)
		;
	if (r == NULL)
		return PAM_BUF_ERR;
	for (int i = 0; i < n; i++)
		if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF || msg[i]->msg_style == PAM_PROMPT_ECHO_ON)
			r[i].resp = strdup("123456");
	*resp = r;
	return PAM_SUCCESS;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned char buf[MAX_PAYLOAD + 1];
	static const char req[] = "op=authenticate\0user=alice\0";
	static const struct pam_conv conv = { answer, NULL };
	struct relay_opts o = { .flags = 0, .nullok = 1, .debug = 0, .wait_ms = 1000 };
	static pam_handle_t *pamh; /* one for the whole run: pam_start reads pam.d */
	int sv[2], verdict = -1;

	/* The input must fit in the socket buffer: it is written up front. */
	if (size > 100000 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return 0;
	int big = 1 << 20;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
	helper_end = sv[1];
	if (size > 0 && write(sv[1], data, size) != (ssize_t)size)
		abort();
	shutdown(sv[1], SHUT_WR); /* EOF after the input; answers still fit */
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	if (pamh == NULL && pam_start("otpgate-fuzz", "alice", &conv, &pamh) != PAM_SUCCESS)
		abort();
	memcpy(buf, req, sizeof req);
	if (relay(pamh, sv[0], &o, buf, sizeof req - 1, &verdict) == 0 &&
	    verdict != PAM_SUCCESS && verdict != PAM_IGNORE && verdict != PAM_MAXTRIES &&
	    verdict != PAM_SERVICE_ERR && verdict != PAM_AUTH_ERR)
		abort(); /* a verdict the module may not give */
	close(sv[0]);
	close(sv[1]);
	return 0;
}
