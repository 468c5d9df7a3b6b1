/* SPDX-License-Identifier: BSD-2-Clause */
/* fuzz_shm.c - the shared memory object of a fuzz target's input, and the
 * ways it is removed when a run ends badly (see fuzz_shm.h). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_shm.h"

void	__sanitizer_report_error_summary(const char *summary);

static char	shm_path[128];		/* "/" prefix pid suffix */

/* A name of our shape whose pid is not a running process. */
static bool
stale(const char *name, const char *prefix, const char *suffix)
{
	size_t np = strlen(prefix), ns = strlen(suffix), n = strlen(name);
	char *end;
	long pid;

	if (n <= np + ns || strncmp(name, prefix, np) != 0 ||
	    strcmp(name + n - ns, suffix) != 0)
		return false;
	errno = 0;
	pid = strtol(name + np, &end, 10);
	if (errno != 0 || pid <= 0 || end != name + n - ns)
		return false;
	return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

static void
sweep(const char *prefix, const char *suffix)
{
	char path[sizeof(shm_path)];
	struct dirent *de;
	DIR *d;

	if ((d = opendir("/dev/shm")) == NULL)
		return;
	while ((de = readdir(d)) != NULL)
		if (stale(de->d_name, prefix, suffix)) {
			snprintf(path, sizeof(path), "/%s", de->d_name);
			shm_unlink(path);
		}
	closedir(d);
}

void
fuzz_shm_init(const char *prefix, const char *suffix)
{
	if ((size_t)snprintf(shm_path, sizeof(shm_path), "/%s%d%s", prefix,
	    (int)getpid(), suffix) >= sizeof(shm_path))
		fuzz_fail("name too long", 0);
	sweep(prefix, suffix);
}

const char *
fuzz_shm_path(void)
{
	return shm_path;
}

const char *
fuzz_shm_base(void)
{
	return shm_path + 1;
}

void
fuzz_shm_write(const void *data, size_t size)
{
	int fd;

	shm_unlink(shm_path);
	fd = shm_open(shm_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		fuzz_fail("shm_open", errno);
	if (size > 0 && write(fd, data, size) != (ssize_t)size)
		fuzz_fail("write", errno);
	close(fd);
}

void
fuzz_shm_unlink(void)
{
	if (shm_path[0] != '\0')
		shm_unlink(shm_path);
}

void
fuzz_fail(const char *what, long v)
{
	fprintf(stderr, "%s: %s (%ld)\n", program_invocation_short_name, what,
	    v);
	fuzz_shm_unlink();
	abort();
}

/*
 * Every sanitizer (ASan, UBSan, LSan) calls this hook with the one-line
 * summary of a report just before the process dies.  libFuzzer owns the
 * death callback (it saves the input there), so this is where the object
 * goes.  The summary is printed as the default hook would.
 */
void
__sanitizer_report_error_summary(const char *summary)
{
	fuzz_shm_unlink();
	dprintf(STDERR_FILENO, "%s\n", summary);
}
