/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * proto.h - the shmpipe line protocol: a request line in, its reply line
 * out.  Request "VERB [ARG]", reply "OK RESULT" or "ERR REASON" (lines
 * here carry no '\n').  Shared by the processor processes, the threaded
 * build and the load generator (which computes expected replies with it).
 *
 * The verb is the text before the first space, matched without regard to
 * case; the argument is everything after that space.  Replies:
 *	echo ARG	OK ARG
 *	upper ARG	OK ARG with a-z made A-Z
 *	rev ARG		OK ARG with its bytes reversed
 *	sha256 ARG	OK the SHA-256 of ARG's bytes, 64 lowercase hex digits
 *	fib N		OK fib(N), computed naively (0 <= N <= PROTO_FIB_MAX)
 *	sleep MS	OK MS, after sleeping MS milliseconds
 *	crash		the processor dies by SIGSEGV (only if enabled)
 * A reply whose result is empty is just "OK".  Anything wrong - empty
 * line, unknown verb, missing or bad argument - is "ERR " and one phrase
 * saying what was wrong and what is expected, with bytes that are not
 * printable shown escaped (vis(3)).
 */
#ifndef PROTO_H
#define PROTO_H

#include <stdbool.h>
#include <stddef.h>

#include "shmpipe_handler.h"

#define PROTO_FIB_MAX		40	/* fib N: 0 <= N <= PROTO_FIB_MAX */
#define PROTO_SLEEP_MAX		60000	/* sleep MS: 0 <= MS <= this */

struct proto_handlers;

/*
 * Load the handler set: the built-in verbs, `crash` only if enable_crash,
 * and the handler object at so_path (NULL for none), whose init() is run.
 * Returns NULL and writes one line saying what went wrong into err.
 */
struct proto_handlers *proto_load(const char *so_path, bool enable_crash,
			    char *err, size_t errlen);

/* Run the object's fini() and unload it. */
void		proto_unload(struct proto_handlers *h);

/*
 * Catch a handler object that calls exit(3) from its init(), handle() or
 * fini(): the process logs which, and exits PROTO_EX_OBJECT instead of
 * the status the object gave (exit(0) from init() would otherwise look
 * like a clean stop).  Call first in main(), before any other atexit(3),
 * so that those still run before it; forked children inherit it.
 */
#define PROTO_EX_OBJECT		78	/* EX_CONFIG, as a failed init() */
void		proto_watch_exit(void);

/*
 * The reply to one request line (a trailing '\r' is stripped here).
 * Writes "OK ..." or "ERR ..." into out, at most cap bytes, and returns
 * the length.  Never fails: every problem is an ERR reply.  cap must be at
 * least PROTO_REPLY_MIN.  `crash` does not return (SIGSEGV).
 */
#define PROTO_REPLY_MIN		128
size_t		proto_handle(const struct proto_handlers *h, const char *line,
			    size_t len, unsigned deliveries, char *out,
			    size_t cap);

/*
 * strtonum(3) for text typed by a person or a client: digits only, with a
 * '-' where min < 0.  strtonum itself would also take " 5" and "+5".
 */
long long	proto_number(const char *s, long long min, long long max,
			    const char **errstr);

/* The ERR reply for a line longer than max bytes. */
size_t		proto_err_too_long(size_t max, char *out, size_t cap);

#endif /* PROTO_H */
