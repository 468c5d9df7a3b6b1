/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * loadgen_opts.h - the command line of shmpipe-bench: parsed and checked
 * into a struct loadgen_opts, with the usage text beside it.
 *
 * Nothing here prints or exits: a bad command line comes back as one line
 * of text saying what was wrong and what is expected, for the program to
 * print.  Not thread-safe (getopt_long keeps state in globals).
 */
#ifndef LOADGEN_OPTS_H
#define LOADGEN_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOADGEN_HOST_DEFAULT	"127.0.0.1"
#define LOADGEN_PORT_DEFAULT	"7878"
#define LOADGEN_CONNS_DEFAULT	50
#define LOADGEN_CONNS_MAX	10000
#define LOADGEN_DEPTH_MAX	1024
#define LOADGEN_COUNT_DEFAULT	100000
#define LOADGEN_COUNT_MAX	1000000000000LL
#define LOADGEN_SECONDS_MAX	86400
#define LOADGEN_SIZE_DEFAULT	64
#define LOADGEN_SIZE_MAX	1048576	/* 1 MiB */
#define LOADGEN_THREADS_MAX	64
#define LOADGEN_TIMEOUT_DEFAULT	10000
#define LOADGEN_TIMEOUT_MAX	3600000
#define LOADGEN_VERB_MAX	64	/* bytes in a verb */
#define LOADGEN_SLEEP_DEFAULT	"1"

/* The verbs shmpipe-bench knows how to vary and check cheaply. */
enum loadgen_verb {
	LOADGEN_ECHO,
	LOADGEN_UPPER,
	LOADGEN_REV,
	LOADGEN_SHA256,
	LOADGEN_FIB,
	LOADGEN_SLEEP,
	LOADGEN_OTHER		/* checked with proto_handle() per request */
};

struct loadgen_opts {
	char		 lo_host[256];	/* --tcp HOST (brackets removed) */
	char		 lo_port[8];	/* --tcp PORT */
	const char	*lo_unix;	/* --unix PATH; NULL for TCP */
	unsigned	 lo_conns;	/* -c */
	unsigned	 lo_depth;	/* -d */
	unsigned	 lo_threads;	/* -T */
	uint64_t	 lo_count;	/* -n; 0 when -t is given */
	unsigned	 lo_seconds;	/* -t; 0 when -n is given */
	const char	*lo_verb;	/* -v, as given */
	enum loadgen_verb lo_kind;	/* which verb that is */
	size_t		 lo_size;	/* -s */
	const char	*lo_arg;	/* -a; NULL for payloads made per request */
	uint64_t	 lo_crash_at;	/* --crash-at; 0 for none */
	unsigned	 lo_timeout_ms;	/* --timeout */
	uint32_t	 lo_max_line;	/* --max-line, the server's */
	const char	*lo_handler;	/* --handler; NULL for none */
	bool		 lo_reconnect;	/* --reconnect */
	bool		 lo_json;	/* --json */
	bool		 lo_quiet;	/* --quiet */
};

/* loadgen_opts_parse() returns these when --help or --version was asked
 * for. */
#define LOADGEN_OPTS_HELP	1
#define LOADGEN_OPTS_VERSION	2

/*
 * Parse argv into o (defaults for what is not given) and check every value
 * and their combination.  Strings in o point into argv.
 * Returns 0, LOADGEN_OPTS_HELP, LOADGEN_OPTS_VERSION, or -EINVAL with one line (no newline) in
 * err saying what was wrong and what is expected.
 */
int		loadgen_opts_parse(struct loadgen_opts *o, int argc,
		    char **argv, char *err, size_t errlen);

/* The usage text, ending in a newline. */
const char	*loadgen_opts_usage(void);

/*
 * How many requests connection id (0..lo_conns-1) sends with -n: the count
 * shared out evenly, the first ones taking one more.  UINT64_MAX with -t.
 */
uint64_t	loadgen_opts_quota(const struct loadgen_opts *o, unsigned id);

#endif /* LOADGEN_OPTS_H */
