/* SPDX-License-Identifier: BSD-2-Clause */
/* handlers.c - the built-in verbs of the shmpipe protocol and the helpers
 * that write results, shared with proto.c. */
#define _POSIX_C_SOURCE 200809L
#define LIBBSD_NETBSD_VIS	/* vis(3) is the same in both; silence libbsd */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sha2.h>
#include <vis.h>

#include "handlers.h"
#include "proto.h"

#define STR(x)		#x
#define XSTR(x)		STR(x)

#define FIB_EXPECT	"fib needs a whole number 0.." XSTR(PROTO_FIB_MAX)
#define SLEEP_EXPECT	"sleep needs a whole number of milliseconds 0.." \
			XSTR(PROTO_SLEEP_MAX)
#define VIS_FLAGS	(VIS_CSTYLE | VIS_OCTAL | VIS_TAB | VIS_NL | VIS_NOLOCALE)

struct verb {
	const char	*vb_name;	/* lowercase */
	size_t		 vb_len;
	int		(*vb_run)(const struct shmpipe_request *,
			    struct shmpipe_result *);
};

/*
 * Claim n bytes at the end of res: where to write them, or NULL if they do
 * not fit.  They count in res->len either way.
 */
static char *
claim(struct shmpipe_result *res, size_t n)
{
	char *p = NULL;

	if (res->len <= res->cap && n <= res->cap - res->len)
		p = res->buf + res->len;
	res->len += n;
	return p;
}

void
handlers_put(struct shmpipe_result *res, const void *s, size_t n)
{
	size_t room;

	room = res->len < res->cap ? res->cap - res->len : 0;
	if (n < room)
		room = n;
	if (room > 0)
		memcpy(res->buf + res->len, s, room);
	res->len += n;
}

size_t
handlers_u64(char *p, uint64_t v)
{
	char d[20];
	size_t i = sizeof(d);

	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	memcpy(p, d + i, sizeof(d) - i);
	return sizeof(d) - i;
}

void
handlers_put_u64(struct shmpipe_result *res, uint64_t v)
{
	char d[20];

	handlers_put(res, d, handlers_u64(d, v));
}

/* Escape byte i of s into esc (8 bytes); returns the length.  Printable
 * ASCII but '\' stands for itself; vis(3) escapes the rest. */
static size_t
escape(char esc[8], const char *s, size_t n, size_t i)
{
	unsigned char c = (unsigned char)s[i];
	int next = i + 1 < n ? (unsigned char)s[i + 1] : '\0';
	char *end;

	if (c >= ' ' && c <= '~' && c != '\\') {
		esc[0] = (char)c;
		return 1;
	}
	if ((end = vis(esc, c, VIS_FLAGS, next)) == NULL) {
		esc[0] = '?';	/* vis(3) could not allocate */
		return 1;
	}
	return (size_t)(end - esc);
}

void
handlers_put_quoted(struct shmpipe_result *res, const char *s, size_t n)
{
	char esc[8];
	size_t i, m, used = 0;

	HANDLERS_PUT_LIT(res, "'");
	for (i = 0; i < n; i++) {
		m = escape(esc, s, n, i);
		if (used + m > HANDLERS_QUOTE_MAX) {
			HANDLERS_PUT_LIT(res, "...");
			break;
		}
		handlers_put(res, esc, m);
		used += m;
	}
	HANDLERS_PUT_LIT(res, "'");
}

/* ASCII only: the protocol is bytes, whatever the locale says. */
static char
ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static char
ascii_upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/* The reason "<expect>, got '<arg>'" (or "got nothing") for a bad number. */
static int
err_number(struct shmpipe_result *res, const char *expect, size_t n,
    const struct shmpipe_request *req)
{
	handlers_put(res, expect, n);
	if (req->arg == NULL) {
		HANDLERS_PUT_LIT(res, ", got nothing");
		return SHMPIPE_ERR;
	}
	HANDLERS_PUT_LIT(res, ", got ");
	handlers_put_quoted(res, req->arg, req->arg_len);
	return SHMPIPE_ERR;
}

/* The argument as a whole number 0..max, or -1 if it is not. */
static long long
arg_number(const struct shmpipe_request *req, long long max)
{
	char num[24];
	const char *errstr;
	long long v;

	if (req->arg == NULL || req->arg_len == 0 ||
	    req->arg_len >= sizeof(num) ||
	    memchr(req->arg, '\0', req->arg_len) != NULL)
		return -1;
	memcpy(num, req->arg, req->arg_len);
	num[req->arg_len] = '\0';
	v = proto_number(num, 0, max, &errstr);
	return errstr == NULL ? v : -1;
}

static int
verb_echo(const struct shmpipe_request *req, struct shmpipe_result *res)
{
	handlers_put(res, req->arg, req->arg_len);
	return SHMPIPE_OK;
}

static int
verb_upper(const struct shmpipe_request *req, struct shmpipe_result *res)
{
	char *p = claim(res, req->arg_len);
	size_t i;

	for (i = 0; p != NULL && i < req->arg_len; i++)
		p[i] = ascii_upper(req->arg[i]);
	return SHMPIPE_OK;
}

static int
verb_rev(const struct shmpipe_request *req, struct shmpipe_result *res)
{
	char *p = claim(res, req->arg_len);
	size_t i, n = req->arg_len;

	for (i = 0; p != NULL && i < n; i++)
		p[i] = req->arg[n - 1 - i];
	return SHMPIPE_OK;
}

static int
verb_sha256(const struct shmpipe_request *req, struct shmpipe_result *res)
{
	char hex[SHA256_DIGEST_STRING_LENGTH];
	const char *arg = req->arg != NULL ? req->arg : "";

	SHA256Data((const uint8_t *)arg, req->arg_len, hex);
	handlers_put(res, hex, SHA256_DIGEST_STRING_LENGTH - 1);
	return SHMPIPE_OK;
}

/* Naive on purpose: the verb exists to burn CPU. */
static uint64_t
fib(unsigned n)
{
	return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

static int
verb_fib(const struct shmpipe_request *req, struct shmpipe_result *res)
{
	long long n = arg_number(req, PROTO_FIB_MAX);

	if (n < 0)
		return err_number(res, FIB_EXPECT, sizeof(FIB_EXPECT) - 1, req);
	handlers_put_u64(res, fib((unsigned)n));
	return SHMPIPE_OK;
}

/* Sleep ms milliseconds, resuming after signals with the time left. */
static void
sleep_ms(long long ms)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static int
verb_sleep(const struct shmpipe_request *req, struct shmpipe_result *res)
{
	long long ms = arg_number(req, PROTO_SLEEP_MAX);

	if (ms < 0)
		return err_number(res, SLEEP_EXPECT, sizeof(SLEEP_EXPECT) - 1,
		    req);
	sleep_ms(ms);
	handlers_put_u64(res, (uint64_t)ms);
	return SHMPIPE_OK;
}

/* Die by SIGSEGV, whatever handler or mask the process had set up. */
static int
verb_crash(const struct shmpipe_request *req, struct shmpipe_result *res)
{
	sigset_t set;

	if (req->arg != NULL) {
		HANDLERS_PUT_LIT(res, "crash takes no argument, got ");
		handlers_put_quoted(res, req->arg, req->arg_len);
		return SHMPIPE_ERR;
	}
	signal(SIGSEGV, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, SIGSEGV);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	raise(SIGSEGV);
	abort();	/* not reached */
}

static int
verb_crash_disabled(const struct shmpipe_request *req,
    struct shmpipe_result *res)
{
	(void)req;
	HANDLERS_PUT_LIT(res, "crash is disabled "
	    "(start shmpipe with --enable-crash to allow it)");
	return SHMPIPE_ERR;
}

#define VERB(name, fn)	{ name, sizeof(name) - 1, fn }
static const struct verb verbs[] = {
	VERB("echo", verb_echo),
	VERB("upper", verb_upper),
	VERB("rev", verb_rev),
	VERB("sha256", verb_sha256),
	VERB("fib", verb_fib),
	VERB("sleep", verb_sleep),
	VERB("crash", verb_crash),
};

static bool
verb_is(const struct verb *v, const char *s, size_t n)
{
	size_t i;

	if (n != v->vb_len)
		return false;
	for (i = 0; i < n; i++)
		if (ascii_lower(s[i]) != v->vb_name[i])
			return false;
	return true;
}

int
handlers_run(const struct shmpipe_request *req, struct shmpipe_result *res,
    bool enable_crash)
{
	size_t i;

	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (!verb_is(&verbs[i], req->verb, req->verb_len))
			continue;
		if (verbs[i].vb_run == verb_crash && !enable_crash)
			return verb_crash_disabled(req, res);
		return verbs[i].vb_run(req, res);
	}
	return SHMPIPE_PASS;
}
