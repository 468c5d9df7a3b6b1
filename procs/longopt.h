/* SPDX-License-Identifier: BSD-2-Clause */
/* longopt.h - what an option error names, from a getopt_long(3) table. */
#ifndef LONGOPT_H
#define LONGOPT_H

#include <getopt.h>
#include <stddef.h>

/* The option of opts whose val is val, or NULL. */
const struct option *longopt_by_val(const struct option *opts, int val);

/*
 * How many options of opts "--arg" (up to any '=') abbreviates; their
 * names into buf ("--a<sep>--b"), unless buf is NULL.
 */
int	longopt_matches(const struct option *opts, const char *arg,
	    const char *sep, char *buf, size_t len);

#endif /* LONGOPT_H */
