/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shmpipe_handler.h - the C API of request handlers that shmpipe loads from
 * a shared object (shmpipe --handler ./x.so).
 *
 * A handler object exports one symbol, `shmpipe_handler`, a const struct
 * shmpipe_handler.  Every processor process loads the object at start,
 * calls init() once, then handle() for each request, and fini() when it
 * is recycled or shut down.  shmpipe-threaded loads it once for all its
 * processor threads: init() once before any of them starts, fini() once
 * after every one has stopped, never while a handle() runs.
 *
 * handle() gets the request split at the first space into verb and
 * argument (neither NUL-terminated; the argument may hold any byte but
 * '\n', including NUL).  It writes the result text into res->buf (at most
 * res->cap bytes; set res->len) and returns:
 *	SHMPIPE_OK	the client gets "OK <result>"
 *	SHMPIPE_ERR	the client gets "ERR <result>" (say what was wrong)
 *	SHMPIPE_PASS	not one of this handler's verbs: the built-in verbs
 *			(echo, upper, rev, sha256, fib, sleep) get a try
 * A result longer than cap is an error the processor reports for you.
 * res->buf and res->cap are the processor's: a handler that changes
 * either, or returns SHMPIPE_ERR with res->len 0, gets an ERR reply
 * naming it instead of its result.
 *
 * A handler must not call exit(): one that does is named in the log, and
 * its process exits 78 as if init() had failed or handle() had crashed.
 *
 * Requests are delivered at least once: if a processor dies while handling
 * one, the request is handled again by another, with req->deliveries
 * counting the attempts.  Handlers should be idempotent.  A handler may
 * keep state in static variables; in shmpipe-threaded several threads call
 * handle() concurrently, so such state must then be thread-safe.
 */
#ifndef SHMPIPE_HANDLER_H
#define SHMPIPE_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#define SHMPIPE_HANDLER_ABI	1

#define SHMPIPE_OK		0
#define SHMPIPE_ERR		1
#define SHMPIPE_PASS		2

struct shmpipe_request {
	const char	*verb;
	size_t		 verb_len;
	const char	*arg;		/* NULL when there is no argument */
	size_t		 arg_len;
	unsigned	 deliveries;	/* 1 the first time */
};

struct shmpipe_result {
	char		*buf;
	size_t		 cap;
	size_t		 len;
};

struct shmpipe_handler {
	uint32_t	 abi;		/* SHMPIPE_HANDLER_ABI */
	const char	*name;		/* for log lines */
	/* Once per processor (per process, in shmpipe-threaded) before the
	 * first request; non-zero refuses to start (the processor exits and
	 * the supervisor logs why; shmpipe-threaded exits 78). */
	int		(*init)(void);
	void		(*fini)(void);
	int		(*handle)(const struct shmpipe_request *req,
			    struct shmpipe_result *res);
};

#endif /* SHMPIPE_HANDLER_H */
