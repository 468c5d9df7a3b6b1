/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * handler_example.c - an example handler object (see shmpipe_handler.h):
 *	len [ARG]	OK the length of ARG in bytes
 *	add A B		OK A + B, 64-bit integers, overflow is an ERR
 *	hello [NAME]	OK hello, NAME (or world)
 * Every other verb is passed on to the built-ins.  Build and use it with
 *	cc -std=c11 -fPIC -shared -Iinclude -o example.so handler_example.c
 *	shmpipe --handler ./example.so
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shmpipe_handler.h"

/* Append n bytes to the result.  res->len counts them even when they do
 * not fit, so that shmpipe can reply that the result was too long. */
static void
put(struct shmpipe_result *res, const char *s, size_t n)
{
	size_t room = res->len < res->cap ? res->cap - res->len : 0;

	if (room > 0)
		memcpy(res->buf + res->len, s, n < room ? n : room);
	res->len += n;
}

static int
put_err(struct shmpipe_result *res, const char *reason)
{
	put(res, reason, strlen(reason));
	return SHMPIPE_ERR;
}

static int
do_len(const struct shmpipe_request *req, struct shmpipe_result *res)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%zu", req->arg_len);

	put(res, num, (size_t)n);
	return SHMPIPE_OK;
}

/* "A B" as two long longs; the argument may hold NUL, so copy it first. */
static bool
parse_two(const struct shmpipe_request *req, long long *a, long long *b)
{
	char buf[64], *end, *second;

	if (req->arg == NULL || req->arg_len >= sizeof(buf) ||
	    memchr(req->arg, '\0', req->arg_len) != NULL)
		return false;
	memcpy(buf, req->arg, req->arg_len);
	buf[req->arg_len] = '\0';
	errno = 0;
	*a = strtoll(buf, &end, 10);
	if (end == buf || *end != ' ')
		return false;
	second = end + 1;
	*b = strtoll(second, &end, 10);
	return end != second && *end == '\0' && errno == 0;
}

static int
do_add(const struct shmpipe_request *req, struct shmpipe_result *res)
{
	char num[24];
	long long a, b;
	int n;

	if (!parse_two(req, &a, &b))
		return put_err(res, "add needs two 64-bit integers, "
		    "e.g. 'add 2 3'");
	if ((b > 0 && a > LLONG_MAX - b) || (b < 0 && a < LLONG_MIN - b))
		return put_err(res, "add overflows: the sum does not fit "
		    "in 64 bits");
	n = snprintf(num, sizeof(num), "%lld", a + b);
	put(res, num, (size_t)n);
	return SHMPIPE_OK;
}

static int
do_hello(const struct shmpipe_request *req, struct shmpipe_result *res)
{
	put(res, "hello, ", 7);
	if (req->arg_len == 0)
		put(res, "world", 5);
	else
		put(res, req->arg, req->arg_len);
	return SHMPIPE_OK;
}

/* Verbs match without regard to case, like the built-ins. */
static bool
verb_is(const struct shmpipe_request *req, const char *name)
{
	return req->verb_len == strlen(name) &&
	    strncasecmp(req->verb, name, req->verb_len) == 0;
}

static int
example_handle(const struct shmpipe_request *req, struct shmpipe_result *res)
{
	if (verb_is(req, "len"))
		return do_len(req, res);
	if (verb_is(req, "add"))
		return do_add(req, res);
	if (verb_is(req, "hello"))
		return do_hello(req, res);
	return SHMPIPE_PASS;
}

/* Once per processor, before its first request: open what handle() needs.
 * Returning non-zero stops the processor from starting. */
static int
example_init(void)
{
	return 0;
}

/* When the processor is recycled or shut down: release what init() got. */
static void
example_fini(void)
{
}

const struct shmpipe_handler shmpipe_handler = {
	.abi = SHMPIPE_HANDLER_ABI,
	.name = "example",
	.init = example_init,
	.fini = example_fini,
	.handle = example_handle,
};
