/* SPDX-License-Identifier: BSD-2-Clause */
/* fault.c - the fault-injection hook of test builds: _exit (or stop) at a
 * named point. */
#ifdef SHMQ_FAULT_INJECT
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault.h"

const char *const shmq_fault_points[] = {
	"attach.claimed",
	"put.claimed", "put.copied", "put.published",
	"get.claimed", "get.copied", "get.released",
	"take.staged", "take.claimed", "take.copied", "take.held",
	"take.released",
	"redo.claimed", "redo.copied",
	"ack.before", "release.before",
	"wait.registered", "wake.claimed",
	"recover.locked", "recover.voided", "recover.staged",
	"recover.released", "recover.published", "recover.done",
	NULL
};

static const char *armed;	/* the point, or NULL */
static unsigned	   countdown;
static int	   env_read;
static bool	   stop;	/* SIGSTOP instead of _exit */

void
shmq_fault_arm(const char *point, unsigned nth)
{
	env_read = 1;
	armed = point;
	countdown = nth ? nth : 1;
	stop = false;
}

void
shmq_fault_arm_stop(const char *point, unsigned nth)
{
	shmq_fault_arm(point, nth);
	stop = true;
}

/* SHMQ_FAULT=point[:n] arms a process that cannot call shmq_fault_arm. */
static void
fault_from_env(void)
{
	static char buf[64];
	const char *v = getenv("SHMQ_FAULT");
	char *colon;

	env_read = 1;
	if (v == NULL || strlen(v) >= sizeof(buf))
		return;
	strcpy(buf, v);
	colon = strchr(buf, ':');
	if (colon != NULL)
		*colon++ = '\0';
	shmq_fault_arm(buf, colon != NULL ? (unsigned)atoi(colon) : 1);
}

void
shmq__fault(const char *point)
{
	if (!env_read)
		fault_from_env();
	if (armed == NULL || strcmp(armed, point) != 0)
		return;
	if (--countdown != 0)
		return;
	if (!stop)
		_exit(SHMQ_FAULT_EXIT);
	armed = NULL;
	raise(SIGSTOP);
}
#endif /* SHMQ_FAULT_INJECT */
