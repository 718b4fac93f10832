/*
 * safepath.h: is a path one that only root can change? Used by
 * pam_otpgate.c for the helper and the launcher it runs, and by
 * otpgate-launch-helper for the helper it runs (the same rules as sudo's
 * checks on its plugins).
 */
#ifndef OTPGATE_SAFEPATH_H
#define OTPGATE_SAFEPATH_H

#include <string.h>
#include <sys/stat.h>

/* safe_node: owned by root, nobody else may write it (a root-owned sticky
 * directory such as /tmp is allowed above the file's own directory). */
static int safe_node(const char *path, int want_dir, int parent, struct stat *st)
{
	if (lstat(path, st) != 0 || st->st_uid != 0)
		return 0;
	if (want_dir ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode))
		return 0;
	if (st->st_mode & (S_IWGRP | S_IWOTH))
		return parent && want_dir && (st->st_mode & S_ISVTX);
	return 1;
}

/* safe_parents: every directory above the absolute path is root-owned and
 * only root can change it (a root-owned sticky directory such as /tmp is
 * allowed above the path's own directory). */
static int safe_parents(const char *path)
{
	char dir[4096];
	struct stat d;
	size_t n = strlen(path);
	if (path[0] != '/' || n >= sizeof dir)
		return 0;
	memcpy(dir, path, n + 1);
	for (int first = 1;; first = 0) {
		char *slash = strrchr(dir, '/');
		if (slash == dir) /* the root directory itself */
			return safe_node("/", 1, !first, &d);
		*slash = '\0';
		if (!safe_node(dir, 1, !first, &d))
			return 0;
	}
}

/* safe_path: an absolute path to a root-owned regular file that only root
 * can write or replace, in directories only root can change. *st is the
 * file's own status on success. */
static int safe_path(const char *path, struct stat *st)
{
	if (path[0] != '/' || strlen(path) >= 4096 || !safe_node(path, 0, 0, st))
		return 0;
	return safe_parents(path);
}

#endif
