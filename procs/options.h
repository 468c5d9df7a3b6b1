/* SPDX-License-Identifier: BSD-2-Clause */
/* options.h - the command line shared by shmpipe and shmpipe-threaded. */
#ifndef OPTIONS_H
#define OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/un.h>

#include "shmq_layout.h"

#define OPT_MAX_LISTEN	8

/*
 * How many processors fit.  Each queue is made with room for an attachment
 * per process-table row and OPT_QUEUE_SPARE more (pipeline_open()), and
 * libshmq allows SHMQ_PROCS_LIMIT.  The supervisor's table has a row for
 * the request and one for the reply stage and two per processor, the
 * second for its replacement during a SIGHUP reload (rows_init()); the
 * threaded build's has a row per thread.
 */
#define OPT_QUEUE_SPARE		8
#define OPT_STAGE_ROWS		2	/* request, reply */
#define OPT_PROCESSORS_MAX	\
	((SHMQ_PROCS_LIMIT - OPT_QUEUE_SPARE - OPT_STAGE_ROWS) / 2)
#define OPT_PROCESSORS_MAX_THREADED \
	(SHMQ_PROCS_LIMIT - OPT_QUEUE_SPARE - OPT_STAGE_ROWS)

struct listen_spec {
	bool		 ls_unix;
	char		 ls_host[256];		/* tcp */
	char		 ls_port[8];
	char		 ls_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

struct options {
	char		 name[41];
	struct listen_spec listen[OPT_MAX_LISTEN];
	int		 nlisten;
	uint32_t	 processors;
	const char	*handler;		/* .so, or NULL */
	uint32_t	 capacity;		/* queue capacity, messages */
	uint32_t	 max_line;
	uint64_t	 max_requests;		/* per processor; 0 = no limit */
	uint32_t	 request_timeout_ms;	/* 0 = none */
	uint32_t	 start_timeout_ms;	/* processor start; 0 = none */
	bool		 request_timeout_set;	/* given, not the default */
	bool		 max_deliveries_set;	/* given, not the default */
	uint32_t	 max_deliveries;
	uint32_t	 max_conns;
	uint32_t	 idle_timeout_ms;	/* 0 = none */
	uint32_t	 window;		/* requests in flight, in all */
	uint32_t	 conn_window;		/* per connection */
	uint32_t	 spin_ns;		/* how long a stage spins */
	bool		 sched_batch;		/* stages SCHED_BATCH, not OTHER */
	const char	*input;			/* file mode, "-" = stdin */
	const char	*output;
	const char	*pidfile;
	bool		 enable_crash;
	bool		 quiet;
};

/*
 * Open /dev/null on whichever of descriptors 0, 1 and 2 is closed, so that
 * nothing opened later (a segment, a socket, a file) takes its place and
 * gets what is meant for standard input, output or error.  Remembers
 * which were closed, for options_parse().  Call it first in main, before
 * anything is opened; exits 71 if /dev/null cannot be opened.
 */
void	options_std_fds(void);

/*
 * Parse argv into o (defaults first).  Prints usage and exits 0 for --help,
 * the version for --version; for a bad flag or value prints one line saying
 * what was wrong and what is expected, and exits 64.  In file mode, also
 * refuses on one line an input that is a directory or a closed standard
 * input (exit 66), a closed standard output as output (73), and an output
 * that is the same regular file as the input (64).
 */
void	options_parse(struct options *o, int argc, char **argv,
	    bool threaded);

/* --max-line: its default and range, which shmpipe-bench mirrors. */
#define OPT_MAX_LINE_DEFAULT	4096
#define OPT_MAX_LINE_MIN	16
#define OPT_MAX_LINE_MAX	1048576

/* The forms of a TCP address, for messages. */
#define OPTIONS_HOSTPORT_FORMS	"HOST:PORT or [V6ADDR]:PORT"

/* What options_hostport() found wrong. */
#define OPTIONS_HOSTPORT_FORM	(-1)	/* neither form, or no host */
#define OPTIONS_HOSTPORT_V6	(-2)	/* a ':' in a host without brackets */
#define OPTIONS_HOSTPORT_NOT_V6	(-3)	/* brackets round a host without ':' */

/*
 * Split s, HOST:PORT or [V6ADDR]:PORT, into its host (*host, *hlen, the
 * brackets left out) and its port text (*port, not checked).  Returns 0
 * or OPTIONS_HOSTPORT_*.  Shared with shmpipe-bench's --tcp, so that the
 * two read an address the same way.
 */
int	options_hostport(const char *s, const char **host, size_t *hlen,
	    const char **port);

/* "tcp:127.0.0.1:7878" or "unix:/path" for log lines. */
void	options_listen_str(const struct listen_spec *ls, char *buf,
	    size_t len);

#endif /* OPTIONS_H */
