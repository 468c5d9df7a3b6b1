/* SPDX-License-Identifier: BSD-2-Clause */
/* longopt.c - looking up getopt_long(3) tables, for the error lines of
 * shmpipe, shmpipe-bench and shmq. */
#include <stdio.h>
#include <string.h>

#include "longopt.h"

const struct option *
longopt_by_val(const struct option *opts, int val)
{
	for (const struct option *lo = opts; lo->name != NULL; lo++)
		if (lo->val == val)
			return lo;
	return NULL;
}

int
longopt_matches(const struct option *opts, const char *arg, const char *sep,
    char *buf, size_t len)
{
	size_t n = strcspn(arg + 2, "=");
	int k = 0;

	if (buf != NULL && len > 0)
		buf[0] = '\0';
	for (const struct option *lo = opts; lo->name != NULL; lo++) {
		if (strncmp(lo->name, arg + 2, n) != 0)
			continue;
		if (buf != NULL && len > 0)
			snprintf(buf + strlen(buf), len - strlen(buf), "%s--%s",
			    k == 0 ? "" : sep, lo->name);
		k++;
	}
	return k;
}
