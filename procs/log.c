/* SPDX-License-Identifier: BSD-2-Clause */
/* log.c - event lines on stderr: "TIME shmpipe[NAME] ROLE pid N: text". */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Written by log_init and log_quiet before there are threads to read them
 * (shmpipe-threaded: in its main thread, before it starts the stages);
 * each thread names itself in log_role alone, which is its own. */
static char	log_pipeline[64] = "shmpipe";
static _Thread_local char log_role[32] = "main";	/* threaded: each stage */
static bool	log_is_quiet;

void
log_init(const char *pipeline, const char *role)
{
	strlcpy(log_pipeline, pipeline, sizeof(log_pipeline));
	log_set_role(role);
}

void
log_set_role(const char *role)
{
	strlcpy(log_role, role, sizeof(log_role));
}

void
log_quiet(bool quiet)
{
	log_is_quiet = quiet;
}

static void
log_vline(const char *fmt, va_list ap)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int k;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	k = snprintf(line + n, sizeof(line) - n, ".%03ldZ shmpipe[%s] %s "
	    "pid %d: ", ts.tv_nsec / 1000000, log_pipeline, log_role,
	    (int)getpid());
	if (k > 0)
		n += (size_t)k < sizeof(line) - n ? (size_t)k : 0;
	k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	if (k > 0)
		n += (size_t)k < sizeof(line) - n - 1 ? (size_t)k :
		    sizeof(line) - n - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);	/* one write: one line */
}

void
log_event(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vline(fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	if (log_is_quiet)
		return;
	va_start(ap, fmt);
	log_vline(fmt, ap);
	va_end(ap);
}
