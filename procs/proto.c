/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * proto.c - the shmpipe line protocol: split a request line, hand it to the
 * loaded handler object and then to the built-in verbs, and frame the
 * result as "OK ..." or "ERR ..." in the caller's buffer.
 *
 * A result is written straight after "OK " (out + 3); an ERR reason is
 * moved one byte right to make room for "ERR ".  proto_handle allocates
 * nothing and only reads the handler set, so threads may share one.
 */
#define _POSIX_C_SOURCE 200809L
#include <assert.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handlers.h"
#include "log.h"
#include "proto.h"

#define OK_LEN		3	/* "OK " */
#define ERR_LEN		4	/* "ERR " */
#define EXPECTED_MAX	128

struct proto_handlers {
	const char			*ph_path;	/* of the object */
	void				*ph_dl;		/* dlopen(3) handle */
	const struct shmpipe_handler	*ph_obj;	/* NULL: built-ins only */
	const char			*ph_name;	/* ph_obj's, for replies */
	bool				 ph_crash;	/* `crash` enabled */
	size_t				 ph_expected_len;
	char				 ph_expected[EXPECTED_MAX];
};

/* The object's code this thread runs ("its init()", "a constructor"...),
 * or NULL, and the object's path: for exit_in_object(). */
static _Thread_local const char	*in_object;
static _Thread_local const char	*in_object_path;

#define IN_OBJECT(h, fn, call) do {					\
	in_object_path = (h)->ph_path;					\
	in_object = (fn);						\
	call;								\
	in_object = NULL;						\
} while (0)

/* Built-ins only, for a NULL handler set. */
static const struct proto_handlers builtin_only = {
	.ph_expected = " (expected " HANDLERS_VERBS ")",
	.ph_expected_len = sizeof(" (expected " HANDLERS_VERBS ")") - 1,
};

/* Start res over with an ERR reason. */
static int
err_lit(struct shmpipe_result *res, const char *msg, size_t n)
{
	res->len = 0;
	handlers_put(res, msg, n);
	return SHMPIPE_ERR;
}
#define ERR_LIT(res, lit)	err_lit((res), "" lit, sizeof(lit) - 1)

/* Split line into verb and argument; SHMPIPE_PASS if it has both parts
 * right, else SHMPIPE_ERR with the reason in res. */
static int
request_parse(const char *line, size_t len, struct shmpipe_request *req,
    struct shmpipe_result *res)
{
	const char *sp;

	if (len == 0)
		return ERR_LIT(res, "empty request (expected VERB [ARG])");
	if (memchr(line, '\n', len) != NULL)
		return ERR_LIT(res, "request holds a newline "
		    "(expected one request per line)");
	sp = memchr(line, ' ', len);
	req->verb = line;
	req->verb_len = sp != NULL ? (size_t)(sp - line) : len;
	req->arg = sp != NULL ? sp + 1 : NULL;
	req->arg_len = sp != NULL ? len - req->verb_len - 1 : 0;
	if (req->verb_len == 0)
		return ERR_LIT(res, "missing verb before the first space "
		    "(expected VERB [ARG])");
	return SHMPIPE_PASS;
}

/* Replace res with "handler '<name>' <what>". */
static int
err_object(const struct proto_handlers *h, struct shmpipe_result *res,
    const char *what, size_t n)
{
	res->len = 0;
	HANDLERS_PUT_LIT(res, "handler ");
	handlers_put_quoted(res, h->ph_name, strlen(h->ph_name));
	handlers_put(res, what, n);
	return SHMPIPE_ERR;
}
#define ERR_OBJECT(h, res, lit)	err_object((h), (res), "" lit, sizeof(lit) - 1)

/* Let the handler object try; it gets a copy of res so that it can change
 * nothing but the length, and what it returns is checked. */
static int
object_handle(const struct proto_handlers *h,
    const struct shmpipe_request *req, struct shmpipe_result *res)
{
	struct shmpipe_result r = *res;
	int rc;

	IN_OBJECT(h, "its handle()", rc = h->ph_obj->handle(req, &r));
	if (rc == SHMPIPE_PASS)
		return rc;
	res->len = r.len;
	if (rc != SHMPIPE_OK && rc != SHMPIPE_ERR)
		return ERR_OBJECT(h, res, " returned an unknown status "
		    "(expected SHMPIPE_OK, SHMPIPE_ERR or SHMPIPE_PASS)");
	/* What is at res->buf is then not its result but the bytes of an
	 * earlier reply, maybe another client's: never send them. */
	if (r.buf != res->buf || r.cap != res->cap)
		return ERR_OBJECT(h, res, " changed res->buf or res->cap "
		    "(expected its result written into res->buf)");
	if (rc == SHMPIPE_ERR && r.len == 0)
		return ERR_OBJECT(h, res, " answered SHMPIPE_ERR without a "
		    "reason (expected one in res->buf)");
	if (rc == SHMPIPE_OK && r.len > r.cap)
		return rc;	/* too long: nothing of it is sent */
	if (memchr(res->buf, '\n', r.len < r.cap ? r.len : r.cap) != NULL)
		return ERR_OBJECT(h, res, " put a newline in its result "
		    "(expected one line)");
	return rc;
}

static int
err_unknown_verb(const struct proto_handlers *h,
    const struct shmpipe_request *req, struct shmpipe_result *res)
{
	res->len = 0;
	HANDLERS_PUT_LIT(res, "unknown verb ");
	handlers_put_quoted(res, req->verb, req->verb_len);
	handlers_put(res, h->ph_expected, h->ph_expected_len);
	return SHMPIPE_ERR;
}

/* The handler object first, then the built-ins. */
static int
dispatch(const struct proto_handlers *h, const struct shmpipe_request *req,
    struct shmpipe_result *res)
{
	int rc = SHMPIPE_PASS;

	if (h->ph_obj != NULL)
		rc = object_handle(h, req, res);
	if (rc == SHMPIPE_PASS)
		rc = handlers_run(req, res, h->ph_crash);
	if (rc == SHMPIPE_PASS)
		rc = err_unknown_verb(h, req, res);
	return rc;
}

/* An OK result that did not fit becomes this ERR reason. */
static int
err_result_too_long(struct shmpipe_result *res)
{
	size_t need = res->len;

	res->len = 0;
	HANDLERS_PUT_LIT(res, "result too long for the reply (");
	handlers_put_u64(res, need);
	HANDLERS_PUT_LIT(res, " bytes, at most ");
	handlers_put_u64(res, res->cap);
	HANDLERS_PUT_LIT(res, " fit)");
	return SHMPIPE_ERR;
}

/* Frame the result at out + OK_LEN as the reply; returns its length.  An
 * ERR reason that does not fit is cut. */
static size_t
reply_finish(int rc, struct shmpipe_result *res, char *out, size_t cap)
{
	size_t n;

	if (rc == SHMPIPE_OK && res->len > res->cap)
		rc = err_result_too_long(res);
	if (rc == SHMPIPE_OK) {
		memcpy(out, "OK ", OK_LEN);
		return res->len == 0 ? OK_LEN - 1 : OK_LEN + res->len;
	}
	n = res->len < cap - ERR_LEN ? res->len : cap - ERR_LEN;
	memmove(out + ERR_LEN, out + OK_LEN, n);
	memcpy(out, "ERR ", ERR_LEN);
	return n == 0 ? ERR_LEN - 1 : ERR_LEN + n;
}

size_t
proto_handle(const struct proto_handlers *h, const char *line, size_t len,
    unsigned deliveries, char *out, size_t cap)
{
	struct shmpipe_request req = { .deliveries = deliveries };
	struct shmpipe_result res = { out + OK_LEN, cap - OK_LEN, 0 };
	int rc;

	assert(cap >= PROTO_REPLY_MIN);
	if (h == NULL)
		h = &builtin_only;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	rc = request_parse(line, len, &req, &res);
	if (rc == SHMPIPE_PASS)
		rc = dispatch(h, &req, &res);
	return reply_finish(rc, &res, out, cap);
}

long long
proto_number(const char *s, long long min, long long max, const char **errstr)
{
	const char *d = min < 0 && s[0] == '-' ? s + 1 : s;

	if (*d < '0' || *d > '9') {
		*errstr = "invalid";
		return 0;
	}
	return strtonum(s, min, max, errstr);
}

size_t
proto_err_too_long(size_t max, char *out, size_t cap)
{
	struct shmpipe_result res = { out, cap, 0 };

	HANDLERS_PUT_LIT(&res, "ERR request too long (expected at most ");
	handlers_put_u64(&res, max);
	HANDLERS_PUT_LIT(&res, " bytes)");
	return res.len < cap ? res.len : cap;
}

/* The " (expected ...)" tail of unknown-verb replies for this set. */
static void
expected_build(struct proto_handlers *h)
{
	struct shmpipe_result res = { h->ph_expected, EXPECTED_MAX, 0 };

	HANDLERS_PUT_LIT(&res, " (expected " HANDLERS_VERBS);
	if (h->ph_crash)
		HANDLERS_PUT_LIT(&res, ", crash");
	if (h->ph_obj != NULL) {
		HANDLERS_PUT_LIT(&res, " or a verb of ");
		handlers_put_quoted(&res, h->ph_name, strlen(h->ph_name));
	}
	HANDLERS_PUT_LIT(&res, ")");
	h->ph_expected_len = res.len < EXPECTED_MAX ? res.len : EXPECTED_MAX;
}

/* Check the object's table: the symbol, its ABI and its handle(). */
static const struct shmpipe_handler *
object_check(void *dl, const char *path, char *err, size_t errlen)
{
	const struct shmpipe_handler *o;

	if ((o = dlsym(dl, "shmpipe_handler")) == NULL) {
		snprintf(err, errlen, "handler object '%s' has no symbol "
		    "'shmpipe_handler' (expected a const struct "
		    "shmpipe_handler by that name)", path);
		return NULL;
	}
	if (o->abi != SHMPIPE_HANDLER_ABI) {
		snprintf(err, errlen, "handler object '%s' has ABI %u, "
		    "expected %u (rebuild it against this shmpipe_handler.h)",
		    path, (unsigned)o->abi, (unsigned)SHMPIPE_HANDLER_ABI);
		return NULL;
	}
	if (o->handle == NULL) {
		snprintf(err, errlen, "handler object '%s' has no handle() "
		    "function (expected one in struct shmpipe_handler)", path);
		return NULL;
	}
	return o;
}

/* dlopen the object at path, check it and run its init(). */
static int
object_load(struct proto_handlers *h, const char *path, char *err,
    size_t errlen)
{
	const struct shmpipe_handler *o;
	int rc;

	IN_OBJECT(h, "a constructor", h->ph_dl = dlopen(path, RTLD_NOW |
	    RTLD_LOCAL));
	if (h->ph_dl == NULL) {
		snprintf(err, errlen, "cannot load handler object '%s': %s",
		    path, dlerror());
		return -1;
	}
	if ((o = object_check(h->ph_dl, path, err, errlen)) == NULL)
		goto out_close;
	rc = 0;
	if (o->init != NULL)
		IN_OBJECT(h, "its init()", rc = o->init());
	if (rc != 0) {
		snprintf(err, errlen, "handler object '%s' refused to start: "
		    "its init() returned %d", path, rc);
		goto out_close;
	}
	h->ph_obj = o;
	h->ph_name = o->name != NULL ? o->name : "unnamed";
	return 0;

out_close:
	dlclose(h->ph_dl);
	return -1;
}

struct proto_handlers *
proto_load(const char *so_path, bool enable_crash, char *err, size_t errlen)
{
	struct proto_handlers *h;

	if ((h = calloc(1, sizeof(*h))) == NULL) {
		snprintf(err, errlen, "out of memory loading the handlers");
		return NULL;
	}
	h->ph_crash = enable_crash;
	h->ph_path = so_path;
	if (so_path != NULL && object_load(h, so_path, err, errlen) != 0) {
		free(h);
		return NULL;
	}
	expected_build(h);
	return h;
}

void
proto_unload(struct proto_handlers *h)
{
	if (h == NULL)
		return;
	if (h->ph_obj != NULL && h->ph_obj->fini != NULL)
		IN_OBJECT(h, "its fini()", h->ph_obj->fini());
	if (h->ph_dl != NULL)
		dlclose(h->ph_dl);
	free(h);
}

/* An atexit(3) handler: is it the object that called exit(3)? */
static void
exit_in_object(void)
{
	if (in_object == NULL)
		return;
	log_event("handler object '%s' called exit() in %s (expected "
	    "it to return); exit %d", in_object_path, in_object,
	    PROTO_EX_OBJECT);
	_exit(PROTO_EX_OBJECT);
}

void
proto_watch_exit(void)
{
	atexit(exit_in_object);
}
