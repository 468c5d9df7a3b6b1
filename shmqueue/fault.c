/* SPDX-License-Identifier: BSD-2-Clause */
/* fault.c - the fault-injection hook of test builds: _exit (or stop) at a
 * named point. */
#define _POSIX_C_SOURCE 200809L	/* O_CLOEXEC */
#ifdef SHMQ_FAULT_INJECT
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault.h"

const char *const shmq_fault_points[] = {
	"attach.claimed",
	"put.claimed", "put.copied", "put.published",
	"get.copied", "get.released",
	"take.staged", "take.claimed", "take.copied", "take.held",
	"take.released",
	"redo.claimed", "redo.copied",
	"ack.before", "release.before",
	"wait.yielded", "wait.registered", "wake.claimed",
	"recover.locked", "recover.voided", "recover.staged",
	"recover.released", "recover.published", "recover.done",
	NULL
};

#define FAULT_MAX	4		/* points armed at once */

static struct {
	const char	*point;		/* NULL: disarmed */
	unsigned	 countdown;
} armed[FAULT_MAX];
static unsigned	   narmed;
static bool	   stop;	/* SIGSTOP instead of _exit (one point) */
static const char *once;	/* SHMQ_FAULT_ONCE: a directory, or NULL */
static int	   env_read;

static void
fault_add(const char *point, unsigned nth)
{
	if (narmed < FAULT_MAX) {
		armed[narmed].point = point;
		armed[narmed++].countdown = nth ? nth : 1;
	}
}

void
shmq_fault_arm(const char *point, unsigned nth)
{
	env_read = 1;
	narmed = 0;
	stop = false;
	if (point != NULL)
		fault_add(point, nth);
}

void
shmq_fault_arm_stop(const char *point, unsigned nth)
{
	shmq_fault_arm(point, nth);
	stop = true;
}

/*
 * SHMQ_FAULT=point[:n][,point[:n]...] arms a process that cannot call
 * shmq_fault_arm; every process of a pipeline inherits it, and counts its
 * own passes.  With SHMQ_FAULT_ONCE=DIR a point fires only in the first
 * process to get there (the one that creates DIR/point): so a test can
 * kill one process at one point and its successor at another.  With
 * SHMQ_FAULT_STOP set, the point stops the process (SIGSTOP) instead.
 */
static void
fault_from_env(void)
{
	static char buf[160];
	const char *v = getenv("SHMQ_FAULT");
	char *p, *next, *colon;

	env_read = 1;
	once = getenv("SHMQ_FAULT_ONCE");
	stop = getenv("SHMQ_FAULT_STOP") != NULL;
	if (v == NULL || strlen(v) >= sizeof(buf))
		return;
	strcpy(buf, v);
	for (p = buf; p != NULL; p = next) {
		if ((next = strchr(p, ',')) != NULL)
			*next++ = '\0';
		if ((colon = strchr(p, ':')) != NULL)
			*colon++ = '\0';
		fault_add(p, colon != NULL ? (unsigned)atoi(colon) : 1);
	}
}

/* Is this process the one to fire point (SHMQ_FAULT_ONCE)? */
static int
fault_first(const char *point)
{
	char path[512];
	int fd;

	if (once == NULL)
		return 1;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", once, point) >=
	    sizeof(path))
		return 0;
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0600)) < 0)
		return 0;
	close(fd);
	return 1;
}

void
shmq__fault(const char *point)
{
	if (!env_read)
		fault_from_env();
	for (unsigned i = 0; i < narmed; i++) {
		if (armed[i].point == NULL ||
		    strcmp(armed[i].point, point) != 0)
			continue;
		if (--armed[i].countdown != 0)
			return;
		if (stop) {
			armed[i].point = NULL;
			if (fault_first(point))
				raise(SIGSTOP);
			return;
		}
		if (fault_first(point))
			_exit(SHMQ_FAULT_EXIT);
		armed[i].point = NULL;	/* another process fired it */
		return;
	}
}
#endif /* SHMQ_FAULT_INJECT */
