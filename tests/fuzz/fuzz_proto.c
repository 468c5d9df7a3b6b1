/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_proto.c - libFuzzer target: the request-line protocol (procs/proto.c,
 * procs/handlers.c).  The input is what a client sends: bytes split into
 * lines as the request stage splits them (stage_request.c parse(): at
 * '\n', a line longer than --max-line answered by proto_err_too_long(), a
 * last line without '\n' taken at end of input), each line answered by
 * proto_handle() as a processor answers it (stage_processor.c answer()).
 *
 * Each input is served six ways: built-in verbs only and with the example
 * handler object (handler_example.so, next to this program), under three
 * max_line/reply capacities: the smallest reply buffer proto allows
 * (PROTO_REPLY_MIN, with a 16-byte max_line), and ctl_reply_max() of 64 and
 * 4096.  Every reply must be one line "OK[ ...]" or "ERR[ ...]" within the
 * buffer, which is allocated to its exact size so that ASan sees a write
 * past it.
 *
 * Left out, for speed only: `fib N` for N > FUZZ_FIB_MAX (naive, seconds
 * each) and `sleep MS` for MS > 0 - the lines whose argument strtonum(3)
 * would accept in that range, i.e. the same code with a longer run.
 * `crash` stays disabled: it kills the process by design.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ctl.h"
#include "proto.h"

#define FUZZ_FIB_MAX	24
#define NUM_MAX		24	/* as handlers.c arg_number() */

int	LLVMFuzzerInitialize(int *argc, char ***argv);
int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct config {
	uint32_t	 c_max_line;
	size_t		 c_cap;
	char		*c_out;		/* c_cap bytes */
};

static struct config configs[] = {
	{ 16, PROTO_REPLY_MIN, NULL },
	{ 64, 0, NULL },		/* 0: ctl_reply_max(max_line) */
	{ 4096, 0, NULL },
};
#define NCONFIGS	(sizeof(configs) / sizeof(configs[0]))

static struct proto_handlers *with_object;

static void __attribute__((noreturn))
fail(const char *what, const char *line, size_t len, const char *out,
    size_t n)
{
	fprintf(stderr, "fuzz_proto: %s: request of %zu bytes '%.*s', reply "
	    "of %zu bytes '%.*s'\n", what, len, (int)(len < 200 ? len : 200),
	    line, n, (int)(n < 200 ? n : 200), out);
	abort();
}

/* handler_example.so, from the directory this program is in. */
static struct proto_handlers *
load_example(void)
{
	char path[PATH_MAX], err[256], *slash;
	struct proto_handlers *h;
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 32);

	if (n <= 0 || (slash = memrchr(path, '/', (size_t)n)) == NULL)
		fail("cannot find /proc/self/exe", "", 0, "", 0);
	strcpy(slash + 1, "handler_example.so");
	if ((h = proto_load(path, false, err, sizeof(err))) == NULL)
		fail(err, "", 0, "", 0);
	return h;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	for (size_t i = 0; i < NCONFIGS; i++) {
		struct config *c = &configs[i];
		if (c->c_cap == 0)
			c->c_cap = ctl_reply_max(c->c_max_line);
		if ((c->c_out = malloc(c->c_cap)) == NULL)
			fail("malloc", "", 0, "", 0);
	}
	with_object = load_example();
	return 0;
}

/* Would this line run fib N > FUZZ_FIB_MAX, or sleep for MS > 0? */
static bool
slow(const char *line, size_t len)
{
	const char *sp = memchr(line, ' ', len);
	char num[NUM_MAX];
	const char *errstr;
	size_t vlen, alen;
	long long v;

	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (sp == NULL)
		return false;
	vlen = (size_t)(sp - line);
	alen = len - vlen - 1;
	if (alen == 0 || alen >= sizeof(num) || memchr(sp + 1, '\0', alen))
		return false;
	memcpy(num, sp + 1, alen);
	num[alen] = '\0';
	if (vlen == 3 && strncasecmp(line, "fib", 3) == 0) {
		v = strtonum(num, 0, PROTO_FIB_MAX, &errstr);
		return errstr == NULL && v > FUZZ_FIB_MAX;
	}
	if (vlen == 5 && strncasecmp(line, "sleep", 5) == 0) {
		v = strtonum(num, 0, PROTO_SLEEP_MAX, &errstr);
		return errstr == NULL && v > 0;
	}
	return false;
}

/* A reply is one line "OK[ ...]" or "ERR[ ...]" of at most cap bytes. */
static void
check_reply(const char *line, size_t len, const char *out, size_t n,
    size_t cap)
{
	bool ok = n >= 2 && memcmp(out, "OK", 2) == 0 && (n == 2 ||
	    out[2] == ' ');
	bool err = n >= 3 && memcmp(out, "ERR", 3) == 0 && (n == 3 ||
	    out[3] == ' ');

	if (n > cap)
		fail("reply longer than its buffer", line, len, out, cap);
	if (!ok && !err)
		fail("reply neither OK nor ERR", line, len, out, n);
	if (memchr(out, '\n', n) != NULL)
		fail("reply holds a newline", line, len, out, n);
}

/* A line as the processor answers it; too_long as the request stage
 * marks it. */
static void
answer(const struct proto_handlers *h, const struct config *c,
    const char *line, size_t len, bool too_long)
{
	size_t n;

	if (too_long)
		n = proto_err_too_long(c->c_max_line, c->c_out, c->c_cap);
	else if (slow(line, len))
		return;
	else
		n = proto_handle(h, line, len, 1, c->c_out, c->c_cap);
	check_reply(line, len, c->c_out, n, c->c_cap);
}

/* The input split into lines as the request stage does. */
static void
serve(const struct proto_handlers *h, const struct config *c,
    const char *in, size_t size)
{
	size_t pos = 0;

	while (pos < size) {
		const char *nl = memchr(in + pos, '\n', size - pos);
		size_t len = nl != NULL ? (size_t)(nl - (in + pos)) :
		    size - pos;

		answer(h, c, in + pos, len, len > c->c_max_line);
		pos += len + 1;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* libFuzzer's copy of the input is exactly size bytes: ASan sees a
	 * read past it. */
	for (size_t i = 0; i < NCONFIGS; i++) {
		serve(NULL, &configs[i], (const char *)data, size);
		serve(with_object, &configs[i], (const char *)data, size);
	}
	return 0;
}
