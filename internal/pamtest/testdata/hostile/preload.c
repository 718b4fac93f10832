/*
 * preload: the LD_PRELOAD library of internal/pamtest/hostile_test.go.
 * Loaded into a process, it leaves a marker file in MARK_DIR named for
 * the process's real and effective uid, so the test sees whether any
 * process running as root loaded a library the user chose.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

__attribute__((constructor)) static void mark(void)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/preload-uid%u-euid%u-pid%d", MARK_DIR,
		 (unsigned)getuid(), (unsigned)geteuid(), (int)getpid());
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
}
