/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * handlers.h - the built-in verbs of the shmpipe protocol (echo, upper, rev,
 * sha256, fib, sleep, crash) and the helpers that write a result, which
 * proto.c uses for its own replies too.
 *
 * Results follow the handler-object convention of shmpipe_handler.h: text
 * goes into res->buf, at most res->cap bytes, and res->len counts every
 * byte written or not, so res->len > res->cap means "did not fit".  All
 * functions here are thread-safe: they keep no state.
 */
#ifndef HANDLERS_H
#define HANDLERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shmpipe_handler.h"

/* The verbs that are always there, for "expected ..." messages. */
#define HANDLERS_VERBS		"echo, upper, rev, sha256, fib, sleep"

/* At most this many characters of a quoted input go into a message. */
#define HANDLERS_QUOTE_MAX	24

/*
 * Run the built-in verb req->verb (matched without regard to ASCII case)
 * on req->arg, appending its result to res.  `crash` kills the process by
 * SIGSEGV if enable_crash, and is an error reply otherwise.
 * Returns SHMPIPE_OK, SHMPIPE_ERR (res holds the reason) or SHMPIPE_PASS
 * (not a built-in verb; res untouched).  Does not return for `crash`.
 */
int	handlers_run(const struct shmpipe_request *req,
	    struct shmpipe_result *res, bool enable_crash);

/* Append the n bytes at s to res (those beyond res->cap are counted only). */
void	handlers_put(struct shmpipe_result *res, const void *s, size_t n);

/* Append a string literal. */
#define HANDLERS_PUT_LIT(res, lit)	handlers_put((res), "" lit, sizeof(lit) - 1)

/* Append v in decimal. */
void	handlers_put_u64(struct shmpipe_result *res, uint64_t v);

/* v in decimal at p (room for 20 bytes); returns the length. */
size_t	handlers_u64(char *p, uint64_t v);

/*
 * Append the n bytes at s between single quotes, bytes that are not
 * printable escaped with vis(3) (C style, else octal), and cut with "..."
 * after HANDLERS_QUOTE_MAX characters.  s may be NULL when n is 0.
 */
void	handlers_put_quoted(struct shmpipe_result *res, const char *s,
	    size_t n);

#endif /* HANDLERS_H */
