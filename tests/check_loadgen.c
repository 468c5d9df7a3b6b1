/* SPDX-License-Identifier: BSD-2-Clause */
/* check_loadgen.c - tests of shmpipe-bench's pure parts: the latency
 * histogram, the verdict counters and the command line. */
#define _GNU_SOURCE
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_json.h"
#include "check_pipeline_util.h"
#include "check_util.h"
#include "loadgen_opts.h"
#include "loadgen_stats.h"
#include "utf8.h"

Suite	*loadgen_suite(void);

#define ARGS_MAX	32
#define ARG_LEN		256

/* argv for the parser: writable (getopt_long permutes it) and static,
 * since the options keep pointers into it. */
static char	 argbuf[ARGS_MAX][ARG_LEN];
static char	*argvec[ARGS_MAX + 1];
static char	 err[512];

/* Parse "shmpipe-bench" and the NULL-terminated args into o. */
static int
parse(struct loadgen_opts *o, const char *const *args)
{
	int argc = 0;

	strlcpy(argbuf[argc], "shmpipe-bench", ARG_LEN);
	argvec[argc] = argbuf[argc];
	for (argc = 1; args[argc - 1] != NULL; argc++) {
		ck_assert_int_lt(argc, ARGS_MAX);
		strlcpy(argbuf[argc], args[argc - 1], ARG_LEN);
		argvec[argc] = argbuf[argc];
	}
	argvec[argc] = NULL;
	err[0] = '\0';
	return loadgen_opts_parse(o, argc, argvec, err, sizeof(err));
}

#define PARSE(o, ...)	parse((o), (const char *const[]){ __VA_ARGS__, NULL })

/* The parse must fail with a message naming what; the option's name. */
static void
parse_fails(const char *const *args, const char *what)
{
	struct loadgen_opts o;

	ck_assert_int_eq(parse(&o, args), -EINVAL);
	ck_assert_msg(strstr(err, what) != NULL,
	    "message '%s' does not name '%s'", err, what);
	ck_assert_ptr_null(strchr(err, '\n'));
}

#define FAILS(what, ...) \
	parse_fails((const char *const[]){ __VA_ARGS__, NULL }, (what))

/* ---- histogram -------------------------------------------------------- */

/* p99.9 of 1000 values is the 999th: not one rank further (rounding). */
START_TEST(test_loadgen_hist_p999_rank)
{
	struct loadgen_hist h;

	loadgen_hist_init(&h);
	for (int i = 0; i < 999; i++)
		loadgen_hist_record(&h, 10);
	loadgen_hist_record(&h, 20);
	ck_assert_uint_eq(loadgen_hist_percentile(&h, 999), 10);
	ck_assert_uint_eq(loadgen_hist_percentile(&h, 1000), 20);
}
END_TEST

START_TEST(test_loadgen_hist_small_exact)
{
	struct loadgen_hist h;

	loadgen_hist_init(&h);
	for (uint64_t v = 1; v <= 100; v++)
		loadgen_hist_record(&h, v);
	ck_assert_uint_eq(loadgen_hist_percentile(&h, 500), 50);
	ck_assert_uint_eq(loadgen_hist_percentile(&h, 990), 99);
	ck_assert_uint_eq(loadgen_hist_percentile(&h, 1000), 100);
	ck_assert_uint_eq(loadgen_hist_percentile(&h, 0), 1);
	ck_assert_uint_eq(h.lh_min, 1);
	ck_assert_uint_eq(h.lh_max, 100);
	ck_assert(loadgen_hist_mean(&h) == 50.5);
}
END_TEST

/* Every value lies in its bucket, the bucket is narrow, indices fit. */
static void
check_bucket(uint64_t v)
{
	unsigned i = loadgen_hist_index(v);
	uint64_t lo = loadgen_hist_lowest(i), hi = loadgen_hist_highest(i);

	ck_assert_uint_lt(i, LOADGEN_HIST_BUCKETS);
	ck_assert_msg(lo <= v && v <= hi, "%ju not in bucket %u [%ju, %ju]",
	    (uintmax_t)v, i, (uintmax_t)lo, (uintmax_t)hi);
	ck_assert_msg((hi - lo) <= lo / LOADGEN_HIST_SUB,
	    "bucket %u [%ju, %ju] wider than 1/%u", i, (uintmax_t)lo,
	    (uintmax_t)hi, LOADGEN_HIST_SUB);
}

START_TEST(test_loadgen_hist_bucket_bounds)
{
	uint64_t x = 88172645463325252ull;

	for (uint64_t v = 0; v < 100000; v++)
		check_bucket(v);
	for (unsigned b = 0; b < 64; b++) {
		check_bucket((uint64_t)1 << b);
		check_bucket(((uint64_t)1 << b) - 1);
		check_bucket(((uint64_t)1 << b) + 1);
	}
	check_bucket(UINT64_MAX);
	for (int k = 0; k < 100000; k++) {	/* xorshift64 */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		check_bucket(x >> (k % 64));
	}
}
END_TEST

START_TEST(test_loadgen_hist_buckets_contiguous)
{
	for (unsigned i = 1; i < LOADGEN_HIST_BUCKETS; i++)
		ck_assert_uint_eq(loadgen_hist_lowest(i),
		    loadgen_hist_highest(i - 1) + 1);
	ck_assert_uint_eq(loadgen_hist_highest(LOADGEN_HIST_BUCKETS - 1),
	    UINT64_MAX);
}
END_TEST

/* got is within 1/128 above want (highest value of want's bucket). */
static void
near(uint64_t got, uint64_t want)
{
	ck_assert_msg(got >= want && got - want <= want / LOADGEN_HIST_SUB,
	    "percentile %ju, expected %ju (+0.8%%)", (uintmax_t)got,
	    (uintmax_t)want);
}

START_TEST(test_loadgen_hist_percentiles_million)
{
	static struct loadgen_hist h;

	loadgen_hist_init(&h);
	for (uint64_t v = 1; v <= 1000000; v++)
		loadgen_hist_record(&h, v * 1000);	/* 1 us .. 1 s in ns */
	near(loadgen_hist_percentile(&h, 500), 500000000);
	near(loadgen_hist_percentile(&h, 990), 990000000);
	near(loadgen_hist_percentile(&h, 999), 999000000);
	ck_assert_uint_eq(loadgen_hist_percentile(&h, 1000), 1000000000);
	ck_assert_uint_eq(h.lh_count, 1000000);
}
END_TEST

START_TEST(test_loadgen_hist_never_above_max)
{
	struct loadgen_hist h;

	loadgen_hist_init(&h);
	loadgen_hist_record(&h, 1000001);
	ck_assert_uint_eq(loadgen_hist_percentile(&h, 500), 1000001);
	ck_assert_uint_eq(loadgen_hist_percentile(&h, 999), 1000001);
}
END_TEST

START_TEST(test_loadgen_hist_empty)
{
	struct loadgen_hist h;

	loadgen_hist_init(&h);
	ck_assert_uint_eq(loadgen_hist_percentile(&h, 500), 0);
	ck_assert_uint_eq(loadgen_hist_percentile(&h, 999), 0);
	ck_assert(loadgen_hist_mean(&h) == 0.0);
	ck_assert_uint_eq(h.lh_count, 0);
}
END_TEST

/* A tail of slow values shows at p99.9 but not at p50. */
START_TEST(test_loadgen_hist_tail)
{
	struct loadgen_hist h;

	loadgen_hist_init(&h);
	for (int i = 0; i < 9980; i++)
		loadgen_hist_record(&h, 20000);
	for (int i = 0; i < 20; i++)
		loadgen_hist_record(&h, 5000000);
	near(loadgen_hist_percentile(&h, 500), 20000);
	near(loadgen_hist_percentile(&h, 990), 20000);
	near(loadgen_hist_percentile(&h, 999), 5000000);
}
END_TEST

START_TEST(test_loadgen_hist_merge)
{
	static struct loadgen_hist a, b, all;

	loadgen_hist_init(&a);
	loadgen_hist_init(&b);
	loadgen_hist_init(&all);
	for (uint64_t v = 1; v <= 20000; v++) {
		loadgen_hist_record(v % 2 ? &a : &b, v * 37);
		loadgen_hist_record(&all, v * 37);
	}
	loadgen_hist_merge(&a, &b);
	ck_assert_mem_eq(&a, &all, sizeof(all));
}
END_TEST

/* ---- verdict ---------------------------------------------------------- */

START_TEST(test_loadgen_result_passed)
{
	struct loadgen_result r = { .lr_sent = 10, .lr_replies = 10,
	    .lr_ok = 9, .lr_err = 1 };
	uint64_t *bad[] = { &r.lr_wrong, &r.lr_out_of_order, &r.lr_missing,
	    &r.lr_duplicated, &r.lr_timeouts, &r.lr_reconnect_failed };

	ck_assert(loadgen_result_passed(&r, false));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		*bad[i] = 1;
		ck_assert(!loadgen_result_passed(&r, false));
		ck_assert(!loadgen_result_passed(&r, true));
		*bad[i] = 0;
	}
	r.lr_dropped = 1;
	r.lr_abandoned = 3;
	r.lr_reconnects = 1;
	ck_assert(!loadgen_result_passed(&r, false));
	ck_assert(loadgen_result_passed(&r, true));
}
END_TEST

START_TEST(test_loadgen_result_merge)
{
	struct loadgen_result a, b;
	uint64_t *pa = (uint64_t *)&a, *pb = (uint64_t *)&b;
	size_t n = sizeof(a) / sizeof(uint64_t);

	for (size_t i = 0; i < n; i++) {
		pa[i] = i + 1;
		pb[i] = 100 * (i + 1);
	}
	loadgen_result_merge(&a, &b);
	for (size_t i = 0; i < n; i++)
		ck_assert_uint_eq(pa[i], 101 * (i + 1));
}
END_TEST

/* ---- command line ----------------------------------------------------- */

START_TEST(test_loadgen_opts_defaults)
{
	struct loadgen_opts o;

	ck_assert_int_eq(parse(&o, (const char *const[]){ NULL }), 0);
	ck_assert_str_eq(o.lo_host, "127.0.0.1");
	ck_assert_str_eq(o.lo_port, "7878");
	ck_assert_ptr_null(o.lo_unix);
	ck_assert_uint_eq(o.lo_conns, 50);
	ck_assert_uint_eq(o.lo_depth, 1);
	ck_assert_uint_eq(o.lo_threads, 1);
	ck_assert_uint_eq(o.lo_count, 100000);
	ck_assert_uint_eq(o.lo_seconds, 0);
	ck_assert_str_eq(o.lo_verb, "echo");
	ck_assert_int_eq(o.lo_kind, LOADGEN_ECHO);
	ck_assert_uint_eq(o.lo_size, 64);
	ck_assert_ptr_null(o.lo_arg);
	ck_assert_uint_eq(o.lo_crash_at, 0);
	ck_assert_uint_eq(o.lo_timeout_ms, 10000);
	ck_assert_uint_eq(o.lo_max_line, 4096);
	ck_assert(!o.lo_reconnect && !o.lo_json && !o.lo_quiet);
}
END_TEST

START_TEST(test_loadgen_opts_all)
{
	struct loadgen_opts o;

	ck_assert_int_eq(PARSE(&o, "--unix", "/tmp/s.sock", "-c", "8", "-d",
	    "16", "-t", "5", "-T", "2", "-v", "SHA256", "-s", "100",
	    "--timeout", "250", "--reconnect", "--json", "-q", "--handler",
	    "./x.so"), 0);
	ck_assert_str_eq(o.lo_unix, "/tmp/s.sock");
	ck_assert_uint_eq(o.lo_conns, 8);
	ck_assert_uint_eq(o.lo_depth, 16);
	ck_assert_uint_eq(o.lo_seconds, 5);
	ck_assert_uint_eq(o.lo_count, 0);
	ck_assert_uint_eq(o.lo_threads, 2);
	ck_assert_str_eq(o.lo_verb, "SHA256");
	ck_assert_int_eq(o.lo_kind, LOADGEN_SHA256);
	ck_assert_uint_eq(o.lo_size, 100);
	ck_assert_uint_eq(o.lo_timeout_ms, 250);
	ck_assert_str_eq(o.lo_handler, "./x.so");
	ck_assert(o.lo_reconnect && o.lo_json && o.lo_quiet);
}
END_TEST

START_TEST(test_loadgen_opts_long_names)
{
	struct loadgen_opts o;

	ck_assert_int_eq(PARSE(&o, "--connections=3", "--depth", "4",
	    "--requests", "30", "--verb", "fib", "--arg", "25", "--crash-at",
	    "2", "--size", "0"), 0);
	ck_assert_uint_eq(o.lo_conns, 3);
	ck_assert_uint_eq(o.lo_depth, 4);
	ck_assert_uint_eq(o.lo_count, 30);
	ck_assert_int_eq(o.lo_kind, LOADGEN_FIB);
	ck_assert_str_eq(o.lo_arg, "25");
	ck_assert_uint_eq(o.lo_crash_at, 2);
	ck_assert_uint_eq(o.lo_size, 0);
}
END_TEST

START_TEST(test_loadgen_opts_tcp)
{
	struct loadgen_opts o;

	ck_assert_int_eq(PARSE(&o, "--tcp", "localhost:9000"), 0);
	ck_assert_str_eq(o.lo_host, "localhost");
	ck_assert_str_eq(o.lo_port, "9000");
	ck_assert_int_eq(PARSE(&o, "--tcp", "[::1]:17"), 0);
	ck_assert_str_eq(o.lo_host, "::1");
	ck_assert_str_eq(o.lo_port, "17");
	FAILS("--tcp", "--tcp", "localhost");
	FAILS("--tcp", "--tcp", ":80");
	FAILS("port", "--tcp", "h:0");
	FAILS("port", "--tcp", "h:65536");
	FAILS("port", "--tcp", "h:8x");
	FAILS("port", "--tcp", "h:+80");
	FAILS("--tcp and --unix", "--tcp", "h:1", "--unix", "/s");
}
END_TEST

/*
 * --max-line is the server's, as shmpipe takes it; requests that would all
 * be longer are refused, not answered ERR and counted as expected.
 */
START_TEST(test_loadgen_opts_max_line)
{
	struct loadgen_opts o;

	ck_assert_int_eq(PARSE(&o, "--max-line", "16", "-v", "fib"), 0);
	ck_assert_uint_eq(o.lo_max_line, 16);
	ck_assert_int_eq(PARSE(&o, "--max-line", "1048576", "-s", "1000"),
	    0);
	ck_assert_uint_eq(o.lo_max_line, 1048576);
	ck_assert_int_eq(PARSE(&o, "-s", "4091"), 0);	/* "echo " + 4091 */
	FAILS("--max-line", "-s", "4092");
	FAILS("--max-line", "-v", "upper", "-s", "5000");
	ck_assert_int_eq(PARSE(&o, "-s", "5000", "--max-line", "5005"), 0);
	FAILS("--max-line", "-a", "0123456789ab", "--max-line", "16");
	ck_assert_int_eq(PARSE(&o, "-a", "0123456789", "--max-line", "16",
	    "-s", "1000"), 0);
	FAILS("--max-line", "--max-line", "15");
	FAILS("--max-line", "--max-line", "1048577");
	FAILS("--max-line", "--max-line", "4k");
}
END_TEST

/*
 * An IPv6 address without brackets is refused, as shmpipe --listen does:
 * '::1:1' could be port 1 of ::1 or the address ::1:1 without a port.
 */
START_TEST(test_loadgen_opts_tcp_v6_brackets)
{
	struct loadgen_opts o;

	FAILS("[V6ADDR]:PORT", "--tcp", "::1:1");
	FAILS("[V6ADDR]:PORT", "--tcp", "fe80::1:7878");
	FAILS("[V6ADDR]:PORT", "--tcp", "[::1:1");
	FAILS("[V6ADDR]:PORT", "--tcp", "[::1]x:1");
	FAILS("[V6ADDR]:PORT", "--tcp", "[]:1");
	FAILS("[V6ADDR]:PORT", "--tcp", "[[::1]]:1");
	FAILS("port", "--tcp", "[::1]:");
	ck_assert_int_eq(PARSE(&o, "--tcp", "[fe80::1%lo]:7878"), 0);
	ck_assert_str_eq(o.lo_host, "fe80::1%lo");
	ck_assert_str_eq(o.lo_port, "7878");
}
END_TEST

/*
 * Brackets are for an IPv6 literal only, as shmpipe --listen has them:
 * "[localhost]:7878" and "[127.0.0.1]:7878" were taken for localhost and
 * 127.0.0.1.
 */
START_TEST(test_loadgen_opts_tcp_brackets_v6_only)
{
	FAILS("--tcp '[localhost]:7878': brackets are for an IPv6 address "
	    "only; expected HOST:PORT or [V6ADDR]:PORT", "--tcp",
	    "[localhost]:7878");
	FAILS("brackets are for an IPv6 address only", "--tcp",
	    "[127.0.0.1]:7878");
}
END_TEST

START_TEST(test_loadgen_opts_bad_numbers)
{
	FAILS("-c", "-c", "0");
	FAILS("-c", "-c", "10001");
	FAILS("-c", "-c", "12abc");
	FAILS("-d", "-d", "0");
	FAILS("-d", "-d", "1025");
	FAILS("-n", "-n", "-5");
	FAILS("-t", "-t", "0");
	FAILS("-T", "-T", "65");
	FAILS("-s", "-s", "1048577");
	FAILS("--timeout", "--timeout", "");
	FAILS("--crash-at", "--crash-at", "0");
	FAILS("too large", "-c", "99999");
	FAILS("invalid", "-d", "x");
	FAILS("invalid", "-c", "+3");
	FAILS("invalid", "-c", " 3");
}
END_TEST

START_TEST(test_loadgen_opts_bad_combinations)
{
	FAILS("-n and -t", "-n", "10", "-t", "1");
	FAILS("-T", "-c", "2", "-T", "3");
	FAILS("--crash-at", "-c", "4", "-n", "10", "--crash-at", "4");
	FAILS("crash", "-v", "crash");
	FAILS("-v", "-v", "two words");
	FAILS("-v", "-v", "");
	FAILS("-a", "-v", "sleep", "-a", "soon");
	FAILS("-a", "-v", "sleep", "-a", "60001");
	FAILS("-a", "-a", "two\nlines");
	FAILS("unknown option", "--bogus");
	FAILS("unknown option", "-x");
	FAILS("needs a value", "-c");
	FAILS("needs a value", "--tcp");
	FAILS("unexpected argument", "stray");
}
END_TEST

/*
 * What getopt found wrong, said as shmpipe says it: a flag given a value
 * and an ambiguous abbreviation were "unknown option --json=1" and
 * "unknown option --t", and a long option without its value was named by
 * its short letter.
 */
START_TEST(test_loadgen_opts_getopt_errors)
{
	FAILS("option --json takes no value; see --help", "--json=1");
	FAILS("option --help takes no value", "--help=x");
	FAILS("option --t is ambiguous: expected one of --tcp, --threads, "
	    "--timeout; see --help", "--t");
	FAILS("option --connections needs a value", "--connections");
	FAILS("option --connections needs a value", "--conn");
	FAILS("unknown option -z;", "-qz");
	FAILS("unknown option --bogus;", "--bogus=1");
}
END_TEST

/*
 * The user's bytes in a usage error are shown as shmq shows a name: a
 * control character as '?', a byte that is not UTF-8 as U+FFFD.  They
 * went out raw, an ESC to the terminal.
 */
START_TEST(test_loadgen_opts_errors_escaped)
{
	FAILS("-v 'x?[7m': expected a verb", "-v", "x\x1b[7m");
	FAILS("unexpected argument 'st\xef\xbf\xbdray?'", "st\xffray\x1b");
	FAILS("unknown option -?;", "-\x1b");
	FAILS("'[a?]:1': brackets", "--tcp", "[a\x1b]:1");
}
END_TEST

START_TEST(test_loadgen_opts_help)
{
	struct loadgen_opts o;

	ck_assert_int_eq(PARSE(&o, "--help"), LOADGEN_OPTS_HELP);
	ck_assert_int_eq(PARSE(&o, "-c", "3", "-h"), LOADGEN_OPTS_HELP);
	ck_assert_int_eq(PARSE(&o, "--version"), LOADGEN_OPTS_VERSION);
	ck_assert_int_eq(PARSE(&o, "-V"), LOADGEN_OPTS_VERSION);
	ck_assert_ptr_nonnull(strstr(loadgen_opts_usage(), "--crash-at"));
}
END_TEST

START_TEST(test_loadgen_opts_verbs)
{
	struct loadgen_opts o;

	ck_assert_int_eq(PARSE(&o, "-v", "sleep"), 0);
	ck_assert_int_eq(o.lo_kind, LOADGEN_SLEEP);
	ck_assert_str_eq(o.lo_arg, "1");
	ck_assert_int_eq(PARSE(&o, "-v", "Upper"), 0);
	ck_assert_int_eq(o.lo_kind, LOADGEN_UPPER);
	ck_assert_int_eq(PARSE(&o, "-v", "len"), 0);
	ck_assert_int_eq(o.lo_kind, LOADGEN_OTHER);
}
END_TEST

/* fib's -a is refused as sleep's is, out of range or not a number: the
 * server's ERR would otherwise count as expected and the run pass. */
START_TEST(test_loadgen_opts_fib_arg)
{
	struct loadgen_opts o;

	ck_assert_int_eq(PARSE(&o, "-v", "fib", "-a", "0"), 0);
	ck_assert_int_eq(PARSE(&o, "-v", "FIB", "-a", "40"), 0);
	ck_assert_str_eq(o.lo_arg, "40");
	FAILS("-a '41'", "-v", "fib", "-a", "41");
	FAILS("0..40", "-v", "fib", "-a", "99");
	FAILS("-a 'abc'", "-v", "fib", "-a", "abc");
	FAILS("invalid", "-v", "fib", "-a", "+5");
	FAILS("invalid", "-v", "fib", "-a", "-1");
	FAILS("invalid", "-v", "fib", "-a", "");
	/* The order of the options does not matter. */
	FAILS("-a '41'", "-a", "41", "-v", "fib");
	/* Other verbs take any argument. */
	ck_assert_int_eq(PARSE(&o, "-v", "echo", "-a", "41x"), 0);
}
END_TEST

START_TEST(test_loadgen_opts_quota)
{
	struct loadgen_opts o;
	uint64_t sum = 0;

	ck_assert_int_eq(PARSE(&o, "-c", "3", "-n", "10"), 0);
	ck_assert_uint_eq(loadgen_opts_quota(&o, 0), 4);
	ck_assert_uint_eq(loadgen_opts_quota(&o, 1), 3);
	ck_assert_uint_eq(loadgen_opts_quota(&o, 2), 3);
	ck_assert_int_eq(PARSE(&o, "-c", "7", "-n", "1000003"), 0);
	for (unsigned i = 0; i < 7; i++)
		sum += loadgen_opts_quota(&o, i);
	ck_assert_uint_eq(sum, 1000003);
	ck_assert_int_eq(PARSE(&o, "-c", "5", "-n", "3"), 0);
	ck_assert_uint_eq(loadgen_opts_quota(&o, 4), 0);
	ck_assert_int_eq(PARSE(&o, "-t", "2"), 0);
	ck_assert_uint_eq(loadgen_opts_quota(&o, 0), UINT64_MAX);
	ck_assert_int_eq(PARSE(&o, "-c", "4", "-n", "10", "--crash-at", "3"),
	    0);
}
END_TEST

/* ---- JSON strings ----------------------------------------------------- */

/* s as utf8_json_string() writes it must be want. */
static void
json_is(const char *s, const char *want)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	utf8_json_string(f, s);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_str_eq(buf, want);
	free(buf);
}

/* Every byte that is not UTF-8 is \ufffd, never passed on raw. */
START_TEST(test_loadgen_json_string_utf8)
{
	json_is("a\"b\\c\nd", "\"a\\\"b\\\\c\\nd\"");
	json_is("\x01\x7f\xc2\x9f", "\"\\u0001\\u007f\\u009f\"");
	json_is("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
	    "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
	json_is("\xff", "\"\\ufffd\"");
	json_is("x\xc3", "\"x\\ufffd\"");			/* truncated */
	json_is("\xc3x", "\"\\ufffdx\"");
	json_is("\xc0\xaf", "\"\\ufffd\\ufffd\"");		/* overlong */
	json_is("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"");
	json_is("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");	/* surrogate */
	json_is("\xf4\x90\x80\x80",					/* > U+10FFFF */
	    "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
	json_is("\x80", "\"\\ufffd\"");			/* stray */
	json_is("", "\"\"");
}
END_TEST

/* ---- runs against a server ------------------------------------------- */

/* A verb whose result never fits the reply: one byte more than there is
 * room for, whatever the server's --max-line. */
static const char big_src[] =
    "#include \"shmpipe_handler.h\"\n"
    "static int h(const struct shmpipe_request *q,\n"
    "    struct shmpipe_result *r) {\n"
    "    if (q->verb_len != 3 || q->verb[0] != 'b') return SHMPIPE_PASS;\n"
    "    r->len = r->cap + 1; return SHMPIPE_OK; }\n"
    "const struct shmpipe_handler shmpipe_handler = {\n"
    "    SHMPIPE_HANDLER_ABI, \"big\", 0, 0, h };\n";

/* Run n requests of "big" against p; every reply must be its ERR. */
static void
run_big(const struct cp_pipe *p, const char *so, const char *max_line)
{
	struct cp_bench b;

	if (max_line == NULL)
		cp_bench_start(&b, p, CP_ARGS("-c", "2", "-d", "4", "-n", "40",
		    "-v", "big", "--handler", so));
	else
		cp_bench_start(&b, p, CP_ARGS("-c", "2", "-d", "4", "-n", "40",
		    "-v", "big", "--handler", so, "--max-line", max_line));
	cp_bench_wait(&b);
	cp_bench_assert_clean(p, &b, 40);
	ck_assert_uint_eq(cp_bench_u64(&b, "err"), 40);
}

/*
 * A result over the reply limit is the server's ERR "result too long
 * (N bytes, at most M fit)", M from its --max-line.  The bench expected
 * M = 65533 whatever the server's, and marked a right server wrong.
 */
START_TEST(test_loadgen_run_result_too_long)
{
	char so[CP_PATH_LEN + 16];
	struct cp_pipe p;

	cp_prepare(&p, 1);
	cp_handler_build(&p, "big", big_src, so, sizeof(so));
	cp_spawn(&p, CP_ARGS("--handler", so));
	cp_wait_ready(&p);
	run_big(&p, so, NULL);		/* both at their default, 4096 */
	cp_stop(&p);

	cp_prepare(&p, 1);
	cp_handler_build(&p, "big", big_src, so, sizeof(so));
	cp_spawn(&p, CP_ARGS("--handler", so, "--max-line", "1000"));
	cp_wait_ready(&p);
	run_big(&p, so, "1000");
	cp_stop(&p);
}
END_TEST

/*
 * --json is UTF-8 whatever the --unix path holds: a byte that is not
 * UTF-8 is \ufffd, as in shmq's JSON; controls (C0 and C1) are escaped;
 * a valid sequence passes.  The path's bytes used to be copied raw.
 */
START_TEST(test_loadgen_run_json_utf8)
{
	char want[CP_PATH_LEN + 64], decoded[CP_PATH_LEN + 64];
	const char *why = NULL;
	struct cp_bench b;
	struct cp_pipe p;
	struct cj *v;

	cp_prepare(&p, 1);
	/* 0xff: not UTF-8; e-acute; ESC; NEL, a C1 control. */
	snprintf(p.cp_sock, sizeof(p.cp_sock), "%s/j\xff\xc3\xa9\x1b\xc2\x85.s",
	    p.cp_dir);
	cp_spawn(&p, NULL);
	cp_wait_ready(&p);
	cp_bench_start(&b, &p, CP_ARGS("-c", "1", "-n", "3"));
	cp_bench_wait(&b);
	cp_bench_assert_clean(&p, &b, 3);
	snprintf(want, sizeof(want), "{\"target\":\"unix:%s/j\\ufffd\xc3\xa9"
	    "\\u001b\\u0085.s\",", p.cp_dir);
	ck_assert_msg(strncmp(b.b_json, want, strlen(want)) == 0,
	    "JSON '%s' does not start '%s'", b.b_json, want);
	v = cj_parse(b.b_json, &why, NULL);
	ck_assert_msg(v != NULL, "not JSON (%s): %s", why, b.b_json);
	snprintf(decoded, sizeof(decoded), "unix:%s/j\xef\xbf\xbd\xc3\xa9"
	    "\x1b\xc2\x85.s", p.cp_dir);
	ck_assert_str_eq(cj_str(cj_get(v, "target")), decoded);
	cj_free(v);
	cp_stop(&p);
}
END_TEST

/*
 * shmpipe-bench --unix sock -c 1 -n 3, without --json: its stdout into
 * out, its stderr into err (files of cap bytes); the exit code.
 */
static int
bench_human(const struct cp_pipe *p, const char *sock, char *out,
    char *errs, size_t cap)
{
	char prog[CP_PATH_LEN], path[2][CP_PATH_LEN + 16];
	int st, fd[2];
	pid_t pid;

	cp_prog(prog, sizeof(prog), "shmpipe-bench");
	for (int i = 0; i < 2; i++) {
		snprintf(path[i], sizeof(path[i]), "%s/human.%d", p->cp_dir, i);
		ck_assert_int_ge(fd[i] = open(path[i], O_RDWR | O_CREAT |
		    O_TRUNC | O_CLOEXEC, 0600), 0);
	}
	if ((pid = cu_fork()) == 0) {
		dup2(fd[0], STDOUT_FILENO);
		dup2(fd[1], STDERR_FILENO);
		execl(prog, prog, "--unix", sock, "-c", "1", "-n", "3",
		    (char *)NULL);
		_exit(127);
	}
	ck_assert_int_eq(cp_waitpid(pid, &st, 60000), 1);
	for (int i = 0; i < 2; i++) {
		char *buf = i == 0 ? out : errs;
		ssize_t n = pread(fd[i], buf, cap - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		close(fd[i]);
	}
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/*
 * Without --json, the --unix path is shown as shmq shows a name: a byte
 * that is not UTF-8 as U+FFFD, a control (ESC, NEL) as '?', in the
 * summary and in the line of a failed connection.  It went out raw, to
 * a terminal that took the ESC for the start of a sequence.
 */
START_TEST(test_loadgen_run_human_target_escaped)
{
	char out[4096], errs[4096], want[CP_PATH_LEN + 64];
	struct cp_pipe p;

	cp_prepare(&p, 1);
	/* 0xff: not UTF-8; e-acute; ESC; NEL, a C1 control. */
	snprintf(p.cp_sock, sizeof(p.cp_sock), "%s/h\xff\xc3\xa9\x1b\xc2\x85.s",
	    p.cp_dir);
	ck_assert_int_eq(bench_human(&p, p.cp_sock, out, errs, sizeof(out)),
	    2);
	snprintf(want, sizeof(want), "shmpipe-bench: cannot connect to "
	    "unix:%s/h\xef\xbf\xbd\xc3\xa9??.s (connection 1 of 1): ",
	    p.cp_dir);
	ck_assert_msg(strncmp(errs, want, strlen(want)) == 0, "stderr '%s' "
	    "does not start '%s'", errs, want);
	cp_spawn(&p, NULL);
	cp_wait_ready(&p);
	ck_assert_int_eq(bench_human(&p, p.cp_sock, out, errs, sizeof(out)),
	    0);
	snprintf(want, sizeof(want), "shmpipe-bench: echo to unix:%s/h"
	    "\xef\xbf\xbd\xc3\xa9??.s, 1 connection(s),", p.cp_dir);
	ck_assert_msg(strncmp(out, want, strlen(want)) == 0, "stdout '%s' "
	    "does not start '%s'", out, want);
	ck_assert_ptr_null(strchr(out, '\x1b'));
	ck_assert_ptr_null(strchr(out, '\xff'));
	cp_stop(&p);
}
END_TEST

Suite *
loadgen_suite(void)
{
	Suite *s = suite_create("loadgen");
	TCase *tc;

	tc = tcase_create("Histogram");
	tcase_add_test(tc, test_loadgen_hist_small_exact);
	tcase_add_test(tc, test_loadgen_hist_p999_rank);
	tcase_add_test(tc, test_loadgen_hist_bucket_bounds);
	tcase_add_test(tc, test_loadgen_hist_buckets_contiguous);
	tcase_add_test(tc, test_loadgen_hist_percentiles_million);
	tcase_add_test(tc, test_loadgen_hist_never_above_max);
	tcase_add_test(tc, test_loadgen_hist_empty);
	tcase_add_test(tc, test_loadgen_hist_tail);
	tcase_add_test(tc, test_loadgen_hist_merge);
	suite_add_tcase(s, tc);

	tc = tcase_create("Verdict");
	tcase_add_test(tc, test_loadgen_result_passed);
	tcase_add_test(tc, test_loadgen_result_merge);
	suite_add_tcase(s, tc);

	tc = tcase_create("Options");
	tcase_add_test(tc, test_loadgen_opts_defaults);
	tcase_add_test(tc, test_loadgen_opts_all);
	tcase_add_test(tc, test_loadgen_opts_long_names);
	tcase_add_test(tc, test_loadgen_opts_tcp);
	tcase_add_test(tc, test_loadgen_opts_tcp_v6_brackets);
	tcase_add_test(tc, test_loadgen_opts_tcp_brackets_v6_only);
	tcase_add_test(tc, test_loadgen_opts_max_line);
	tcase_add_test(tc, test_loadgen_opts_bad_numbers);
	tcase_add_test(tc, test_loadgen_opts_bad_combinations);
	tcase_add_test(tc, test_loadgen_opts_help);
	tcase_add_test(tc, test_loadgen_opts_getopt_errors);
	tcase_add_test(tc, test_loadgen_opts_errors_escaped);
	tcase_add_test(tc, test_loadgen_opts_verbs);
	tcase_add_test(tc, test_loadgen_opts_fib_arg);
	tcase_add_test(tc, test_loadgen_opts_quota);
	suite_add_tcase(s, tc);

	tc = tcase_create("JSON");
	tcase_add_test(tc, test_loadgen_json_string_utf8);
	suite_add_tcase(s, tc);

	cp_init();
	tc = cp_tcase("Runs", 120);
	tcase_add_test(tc, test_loadgen_run_result_too_long);
	tcase_add_test(tc, test_loadgen_run_json_utf8);
	tcase_add_test(tc, test_loadgen_run_human_target_escaped);
	suite_add_tcase(s, tc);
	return s;
}
