/*
 * wrap: what a hostile user does to a process before exec'ing it, for
 * internal/pamtest/hostile_test.go. Runs as the user.
 *
 *   wrap [-r RES=SOFT[:HARD]] [-u UMASK] [-c FD] [-i SIG] [-B] -- PROG ARG...
 *     -r  set a resource limit (fsize, nofile, as, cpu, nproc, core, stack,
 *         data, sigpending, memlock)
 *     -u  set the umask (octal)
 *     -c  close a descriptor
 *     -i  ignore a signal (SIG_IGN survives exec)
 *     -B  block every signal (the mask survives exec)
 *     -N  set no_new_privs: a setuid program then runs as the user
 *     -F  fork here: what follows is done in a child, which does not
 *         lead its process group; wrap waits and exits as it did
 *   wrap -S
 *     the user's kill(2): reads "SIG PID" lines (PID < 0: a process
 *     group) and answers "0" or the errno for each.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

static void die(const char *what, const char *arg)
{
	fprintf(stderr, "wrap: %s %s: %s\n", what, arg, strerror(errno));
	exit(126);
}

static int resource(const char *name)
{
	static const struct { const char *name; int res; } r[] = {
		{ "fsize", RLIMIT_FSIZE }, { "nofile", RLIMIT_NOFILE }, { "as", RLIMIT_AS },
		{ "cpu", RLIMIT_CPU }, { "nproc", RLIMIT_NPROC }, { "core", RLIMIT_CORE },
		{ "stack", RLIMIT_STACK }, { "data", RLIMIT_DATA }, { "sigpending", RLIMIT_SIGPENDING },
		{ "memlock", RLIMIT_MEMLOCK },
	};
	for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
		if (strcmp(r[i].name, name) == 0)
			return r[i].res;
	errno = EINVAL;
	die("unknown resource", name);
	return -1;
}

static rlim_t value(const char *s)
{
	return strcmp(s, "unlimited") == 0 ? RLIM_INFINITY : (rlim_t)strtoull(s, NULL, 10);
}

static int killer(void)
{
	char line[64];
	int sig, pid;
	setvbuf(stdout, NULL, _IONBF, 0);
	while (fgets(line, sizeof line, stdin))
		if (sscanf(line, "%d %d", &sig, &pid) == 2)
			printf("%d\n", kill(pid, sig) == 0 ? 0 : errno);
	return 0;
}

int main(int argc, char **argv)
{
	int i = 1;
	if (argc == 2 && strcmp(argv[1], "-S") == 0)
		return killer();
	for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
		const char *o = argv[i], *a = i + 1 < argc ? argv[i + 1] : "";
		if (strcmp(o, "-F") == 0) {
			int status;
			pid_t pid = fork();
			if (pid < 0)
				die("fork", "");
			if (pid == 0)
				continue;
			if (waitpid(pid, &status, 0) < 0)
				die("waitpid", "");
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		if (strcmp(o, "-N") == 0) {
			if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
				die("prctl", "PR_SET_NO_NEW_PRIVS");
			continue;
		}
		if (strcmp(o, "-B") == 0) {
			sigset_t all;
			sigfillset(&all);
			sigprocmask(SIG_BLOCK, &all, NULL);
			continue;
		}
		i++;
		if (strcmp(o, "-r") == 0) {
			char name[16], *eq = strchr(a, '='), *colon;
			struct rlimit rl;
			if (!eq || (size_t)(eq - a) >= sizeof name)
				die("bad limit", a);
			memcpy(name, a, (size_t)(eq - a));
			name[eq - a] = '\0';
			if (getrlimit(resource(name), &rl) != 0)
				die("getrlimit", a);
			rl.rlim_cur = value(eq + 1);
			if ((colon = strchr(eq + 1, ':')) != NULL)
				rl.rlim_max = value(colon + 1);
			if (setrlimit(resource(name), &rl) != 0)
				die("setrlimit", a);
		} else if (strcmp(o, "-u") == 0) {
			umask((mode_t)strtoul(a, NULL, 8));
		} else if (strcmp(o, "-c") == 0) {
			close(atoi(a));
		} else if (strcmp(o, "-i") == 0) {
			signal(atoi(a), SIG_IGN);
		} else {
			errno = EINVAL;
			die("unknown option", o);
		}
	}
	if (i + 1 >= argc) {
		errno = EINVAL;
		die("no program after", "--");
	}
	execv(argv[i + 1], argv + i + 1);
	die("exec", argv[i + 1]);
	return 126;
}
