/* SPDX-License-Identifier: BSD-2-Clause */
/* check_proto.c - tests of the shmpipe line protocol: parsing, the built-in
 * verbs, error replies, and handler objects loaded with dlopen. */
#define _GNU_SOURCE
#define LIBBSD_NETBSD_VIS
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vis.h>

#include "check_util.h"
#include "proto.h"

Suite	*proto_suite(void);

#define CAP		256
#define SHOW_MAX	64	/* bytes of a request shown in a failure */

/* The request lines and replies of the tests are literals, NULs and all. */
#define EXPECT(h, line, want)						\
	expect_n((h), (line), sizeof(line) - 1, (want), sizeof(want) - 1)

static struct proto_handlers *ph;	/* built-ins, crash disabled */

/* s escaped for a failure message, into buf (4 * SHOW_MAX + 1 bytes). */
static const char *
show(char *buf, const char *s, size_t n)
{
	strvisx(buf, s, n < SHOW_MAX ? n : SHOW_MAX, VIS_CSTYLE | VIS_OCTAL);
	return buf;
}

/* A reply must be one line "OK[ ...]" or "ERR[ ...]" of at most cap bytes. */
static void
check_framed(const char *line, size_t len, const char *out, size_t n,
    size_t cap)
{
	char a[4 * SHOW_MAX + 1], b[4 * SHOW_MAX + 1];
	bool ok, err;

	ok = n >= 2 && memcmp(out, "OK", 2) == 0 && (n == 2 || out[2] == ' ');
	err = n >= 3 && memcmp(out, "ERR", 3) == 0 &&
	    (n == 3 || out[3] == ' ');
	/* Check notes every passing assertion: keep them out of loops. */
	if (n > cap || !(ok || err) || memchr(out, '\n', n) != NULL)
		ck_abort_msg("request '%s' (cap %zu) got a bad reply '%s' "
		    "(%zu bytes)", show(a, line, len), cap,
		    show(b, out, n < cap ? n : cap), n);
}

static void
expect_n(const struct proto_handlers *h, const char *line, size_t len,
    const char *want, size_t wantlen)
{
	char out[CAP], a[4 * SHOW_MAX + 1], b[4 * SHOW_MAX + 1];
	char c[4 * SHOW_MAX + 1];
	size_t n;

	n = proto_handle(h, line, len, 1, out, sizeof(out));
	ck_assert_msg(n == wantlen && memcmp(out, want, n) == 0,
	    "request '%s' got '%s', expected '%s'", show(a, line, len),
	    show(b, out, n), show(c, want, wantlen));
}

static struct proto_handlers *
load_ok(const char *so, bool crash)
{
	struct proto_handlers *h;
	char err[256];

	h = proto_load(so, crash, err, sizeof(err));
	ck_assert_msg(h != NULL, "proto_load(%s): %s", so ? so : "NULL", err);
	return h;
}

/* Expect proto_load(so) to fail with an error containing want. */
static void
load_fails(const char *so, const char *want)
{
	char err[512] = "";

	ck_assert_ptr_null(proto_load(so, false, err, sizeof(err)));
	ck_assert_msg(strstr(err, want) != NULL,
	    "proto_load(%s) said '%s', expected it to say '%s'", so, err,
	    want);
	ck_assert_ptr_null(strchr(err, '\n'));
}

static void
setup(void)
{
	ph = load_ok(NULL, false);
}

static void
teardown(void)
{
	proto_unload(ph);
	ph = NULL;
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- Core ---- */

START_TEST(test_proto_echo)
{
	EXPECT(ph, "echo hi", "OK hi");
	EXPECT(ph, "echo", "OK");
	EXPECT(ph, "echo ", "OK");
	EXPECT(ph, "echo  a b  c ", "OK  a b  c ");
	EXPECT(ph, "echo a\0b\x01\xff\t", "OK a\0b\x01\xff\t");
	EXPECT(ph, "echo hi\r", "OK hi");
	EXPECT(ph, "echo hi\r\r", "OK hi\r");
	EXPECT(ph, "echo \r", "OK");
	EXPECT(ph, "ECHO Hi", "OK Hi");
	EXPECT(ph, "eChO", "OK");
}
END_TEST

START_TEST(test_proto_upper)
{
	EXPECT(ph, "upper abc XyZ 1-2 @[`{", "OK ABC XYZ 1-2 @[`{");
	EXPECT(ph, "upper", "OK");
	EXPECT(ph, "upper ", "OK");
	EXPECT(ph, "upper a\0\xe9z", "OK A\0\xe9Z");
	EXPECT(ph, "UPPER q\r", "OK Q");
}
END_TEST

START_TEST(test_proto_rev)
{
	EXPECT(ph, "rev abc", "OK cba");
	EXPECT(ph, "rev", "OK");
	EXPECT(ph, "rev x", "OK x");
	EXPECT(ph, "rev a b ", "OK  b a");
	EXPECT(ph, "rev a\0\xff", "OK \xff\0a");
	EXPECT(ph, "Rev ab\r", "OK ba");
}
END_TEST

START_TEST(test_proto_sha256)
{
	EXPECT(ph, "sha256", "OK e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b"
	    "934ca495991b7852b855");
	EXPECT(ph, "sha256 ", "OK e3b0c44298fc1c149afbf4c8996fb92427ae41e464"
	    "9b934ca495991b7852b855");
	EXPECT(ph, "sha256 abc", "OK ba7816bf8f01cfea414140de5dae2223b00361a"
	    "396177a9cb410ff61f20015ad");
	EXPECT(ph, "SHA256 abc\r", "OK ba7816bf8f01cfea414140de5dae2223b0036"
	    "1a396177a9cb410ff61f20015ad");
	EXPECT(ph, "sha256 \0", "OK 6e340b9cffb37a989ca544e6bb780a2c78901d3fb"
	    "33738768511a30617afa01d");
	EXPECT(ph, "sha256 a\0b", "OK 59b271ae1bbcb1d31d41929817f4b16fb439eb4"
	    "f31520b5ad1d5ce98920a7138");
}
END_TEST

START_TEST(test_proto_fib)
{
	EXPECT(ph, "fib 0", "OK 0");
	EXPECT(ph, "fib 1", "OK 1");
	EXPECT(ph, "fib 2", "OK 1");
	EXPECT(ph, "fib 10", "OK 55");
	EXPECT(ph, "FIB 25\r", "OK 75025");
}
END_TEST

START_TEST(test_proto_sleep)
{
	uint64_t t0 = now_ns();

	EXPECT(ph, "sleep 0", "OK 0");
	EXPECT(ph, "SLEEP 30", "OK 30");
	ck_assert_uint_ge(now_ns() - t0, 30000000u);
}
END_TEST

static void
on_usr1(int sig)
{
	(void)sig;
}

/* SIGUSR1 every 5 ms interrupts nanosleep; the sleep still lasts. */
START_TEST(test_proto_sleep_resumes_after_signals)
{
	struct sigaction sa = { .sa_handler = on_usr1 };
	struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL,
		.sigev_signo = SIGUSR1 };
	struct itimerspec every5ms = { { 0, 5000000 }, { 0, 5000000 } };
	timer_t t;
	uint64_t t0;

	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	ck_assert_int_eq(timer_create(CLOCK_MONOTONIC, &sev, &t), 0);
	ck_assert_int_eq(timer_settime(t, 0, &every5ms, NULL), 0);
	t0 = now_ns();
	EXPECT(ph, "sleep 60", "OK 60");
	ck_assert_uint_ge(now_ns() - t0, 60000000u);
	timer_delete(t);
}
END_TEST

START_TEST(test_proto_err_too_long)
{
	char out[PROTO_REPLY_MIN];
	size_t n;
	const char *want = "ERR request too long (expected at most 4096 bytes)";

	n = proto_err_too_long(4096, out, sizeof(out));
	ck_assert_uint_eq(n, strlen(want));
	ck_assert_mem_eq(out, want, n);
}
END_TEST

/* A reply that fills cap exactly fits; one byte more is an ERR. */
START_TEST(test_proto_reply_fits_cap)
{
	char line[PROTO_REPLY_MIN + 8] = "echo ", out[PROTO_REPLY_MIN];
	const char *want = "ERR result too long for the reply "
	    "(126 bytes, at most 125 fit)";
	size_t n, fill = PROTO_REPLY_MIN - 3;

	memset(line + 5, 'x', sizeof(line) - 5);
	n = proto_handle(ph, line, 5 + fill, 1, out, sizeof(out));
	ck_assert_uint_eq(n, PROTO_REPLY_MIN);
	ck_assert_mem_eq(out, "OK xxx", 6);
	n = proto_handle(ph, line, 5 + fill + 1, 1, out, sizeof(out));
	ck_assert_uint_eq(n, strlen(want));
	ck_assert_mem_eq(out, want, n);
}
END_TEST

START_TEST(test_proto_reply_too_long)
{
	static char line[10000], out[PROTO_REPLY_MIN];
	const char *verbs[] = { "echo ", "upper ", "rev " };
	size_t i, n, vl;

	for (i = 0; i < 3; i++) {
		vl = strlen(verbs[i]);
		memcpy(line, verbs[i], vl);
		memset(line + vl, 'a', sizeof(line) - vl);
		n = proto_handle(ph, line, sizeof(line), 1, out, sizeof(out));
		check_framed(line, sizeof(line), out, n, sizeof(out));
		out[n] = '\0';
		ck_assert_msg(strstr(out, "ERR result too long for the reply")
		    == out && strstr(out, "at most 125 fit"), "got '%s'", out);
	}
}
END_TEST

struct thread_arg {
	const struct proto_handlers	*h;
	unsigned			 seed;
	unsigned			 bad;
};

static const char *const mt_req[] = { "echo hello", "upper abc", "rev abc",
	"sha256 abc", "fib 15", "nope", "", "fib x" };
static const char *const mt_rep[] = { "OK hello", "OK ABC", "OK cba",
	"OK ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	"OK 610", "ERR unknown verb 'nope' "
	"(expected echo, upper, rev, sha256, fib, sleep)",
	"ERR empty request (expected VERB [ARG])",
	"ERR fib needs a whole number 0..40, got 'x'" };

static void *
thread_run(void *p)
{
	struct thread_arg *ta = p;
	char out[CAP];
	size_t i, k, n;

	for (i = 0; i < 20000; i++) {
		k = (i * 7 + ta->seed) % (sizeof(mt_req) / sizeof(mt_req[0]));
		n = proto_handle(ta->h, mt_req[k], strlen(mt_req[k]), 1, out,
		    sizeof(out));
		if (n != strlen(mt_rep[k]) || memcmp(out, mt_rep[k], n) != 0)
			ta->bad++;
	}
	return NULL;
}

/* shmpipe-threaded shares one handler set between its threads. */
START_TEST(test_proto_threads_share_handlers)
{
	struct thread_arg ta[4];
	pthread_t t[4];
	int i;

	for (i = 0; i < 4; i++) {
		ta[i] = (struct thread_arg){ ph, (unsigned)i, 0 };
		ck_assert_int_eq(pthread_create(&t[i], NULL, thread_run,
		    &ta[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_msg(ta[i].bad == 0, "thread %d: %u wrong replies",
		    i, ta[i].bad);
	}
}
END_TEST

/* ---- Errors ---- */

START_TEST(test_proto_empty_request)
{
	EXPECT(ph, "", "ERR empty request (expected VERB [ARG])");
	EXPECT(ph, "\r", "ERR empty request (expected VERB [ARG])");
	EXPECT(ph, " echo", "ERR missing verb before the first space "
	    "(expected VERB [ARG])");
	EXPECT(ph, " ", "ERR missing verb before the first space "
	    "(expected VERB [ARG])");
}
END_TEST

START_TEST(test_proto_unknown_verb)
{
	EXPECT(ph, "xyz", "ERR unknown verb 'xyz' "
	    "(expected echo, upper, rev, sha256, fib, sleep)");
	EXPECT(ph, "xyz 1 2", "ERR unknown verb 'xyz' "
	    "(expected echo, upper, rev, sha256, fib, sleep)");
	EXPECT(ph, "echoo hi", "ERR unknown verb 'echoo' "
	    "(expected echo, upper, rev, sha256, fib, sleep)");
	EXPECT(ph, "\x01\xff\\\t\0001 x", "ERR unknown verb "
	    "'\\001\\377\\\\\\t\\0001' "
	    "(expected echo, upper, rev, sha256, fib, sleep)");
	EXPECT(ph, "abcdefghijklmnopqrstuvwxyz", "ERR unknown verb "
	    "'abcdefghijklmnopqrstuvwx...' "
	    "(expected echo, upper, rev, sha256, fib, sleep)");
	/* No ASCII case folding of bytes that only look alike. */
	EXPECT(ph, "ECH\x0f", "ERR unknown verb 'ECH\\017' "
	    "(expected echo, upper, rev, sha256, fib, sleep)");
}
END_TEST

START_TEST(test_proto_newline)
{
	EXPECT(ph, "echo a\nb", "ERR request holds a newline "
	    "(expected one request per line)");
	EXPECT(ph, "echo a\n", "ERR request holds a newline "
	    "(expected one request per line)");
}
END_TEST

START_TEST(test_proto_fib_bad)
{
	EXPECT(ph, "fib 41", "ERR fib needs a whole number 0..40, got '41'");
	EXPECT(ph, "fib -1", "ERR fib needs a whole number 0..40, got '-1'");
	EXPECT(ph, "fib x", "ERR fib needs a whole number 0..40, got 'x'");
	EXPECT(ph, "fib ", "ERR fib needs a whole number 0..40, got ''");
	EXPECT(ph, "fib", "ERR fib needs a whole number 0..40, got nothing");
	EXPECT(ph, "fib 1 2", "ERR fib needs a whole number 0..40, "
	    "got '1 2'");
	EXPECT(ph, "fib 5\0", "ERR fib needs a whole number 0..40, "
	    "got '5\\0'");
	EXPECT(ph, "fib 3.5", "ERR fib needs a whole number 0..40, "
	    "got '3.5'");
	EXPECT(ph, "fib +5", "ERR fib needs a whole number 0..40, "
	    "got '+5'");
	EXPECT(ph, "fib  5", "ERR fib needs a whole number 0..40, "
	    "got ' 5'");
	EXPECT(ph, "fib 99999999999999999999999999999", "ERR fib needs a "
	    "whole number 0..40, got '999999999999999999999999...'");
}
END_TEST

START_TEST(test_proto_sleep_bad)
{
	EXPECT(ph, "sleep 60001", "ERR sleep needs a whole number of "
	    "milliseconds 0..60000, got '60001'");
	EXPECT(ph, "sleep -1", "ERR sleep needs a whole number of "
	    "milliseconds 0..60000, got '-1'");
	EXPECT(ph, "sleep 1s", "ERR sleep needs a whole number of "
	    "milliseconds 0..60000, got '1s'");
	EXPECT(ph, "sleep", "ERR sleep needs a whole number of "
	    "milliseconds 0..60000, got nothing");
}
END_TEST

START_TEST(test_proto_crash_disabled)
{
	EXPECT(ph, "crash", "ERR crash is disabled "
	    "(start shmpipe with --enable-crash to allow it)");
	EXPECT(ph, "CRASH now", "ERR crash is disabled "
	    "(start shmpipe with --enable-crash to allow it)");
}
END_TEST

static void
on_segv(int sig)
{
	(void)sig;
	_exit(0);
}

/* Even with a SIGSEGV handler installed and SIGSEGV blocked. */
static void
crash_child(void)
{
	struct rlimit no_core = { 0, 0 };
	struct proto_handlers *h;
	sigset_t set;
	char out[CAP];

	setrlimit(RLIMIT_CORE, &no_core);
	signal(SIGSEGV, on_segv);
	sigemptyset(&set);
	sigaddset(&set, SIGSEGV);
	sigprocmask(SIG_BLOCK, &set, NULL);
	if ((h = proto_load(NULL, true, out, sizeof(out))) == NULL)
		_exit(2);
	proto_handle(h, "crash", 5, 1, out, sizeof(out));
	_exit(3);
}

START_TEST(test_proto_crash_enabled)
{
	struct proto_handlers *h = load_ok(NULL, true);
	pid_t pid;
	int status;

	EXPECT(h, "crash now", "ERR crash takes no argument, got 'now'");
	EXPECT(h, "nope", "ERR unknown verb 'nope' "
	    "(expected echo, upper, rev, sha256, fib, sleep, crash)");
	proto_unload(h);
	if ((pid = cu_fork()) == 0)
		crash_child();
	while (waitpid(pid, &status, 0) == -1)
		ck_assert_int_eq(errno, EINTR);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
	    "crash: child status %#x, expected death by SIGSEGV", status);
}
END_TEST

/* xorshift64: the same garbage every run. */
static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Random bytes, often after a real verb, at random caps: every reply is
 * one framed line within cap, and nothing is written past cap. */
static void
garbage(const struct proto_handlers *h)
{
	static const char *const pre[] = { "", "echo ", "UPPER ", "rev ",
		"sha256 ", "fib ", "crash", "len ", "add ", "hello " };
	char line[300], out[400 + 16];
	uint64_t s = 0x9e3779b97f4a7c15u;
	size_t i, j, k, len, cap, pl;

	for (i = 0; i < 20000; i++) {
		k = rnd(&s) % (sizeof(pre) / sizeof(pre[0]));
		pl = strlen(pre[k]);
		memcpy(line, pre[k], pl);
		len = pl + rnd(&s) % (sizeof(line) - pl);
		for (j = pl; j < len; j++)
			line[j] = (char)rnd(&s);
		cap = PROTO_REPLY_MIN + rnd(&s) % (400 - PROTO_REPLY_MIN);
		memset(out, 0xa5, sizeof(out));
		check_framed(line, len, out,
		    proto_handle(h, line, len, 1, out, cap), cap);
		for (j = cap; j < sizeof(out); j++)
			if ((unsigned char)out[j] != 0xa5)
				ck_abort_msg("wrote past cap %zu at %zu", cap,
				    j);
	}
}

START_TEST(test_proto_garbage)
{
	garbage(ph);
}
END_TEST

/* ---- Handler object ---- */

/* Where the tiny objects are built: made and removed by the runner once
 * per TCase (an unchecked fixture), so a failed test leaves nothing. */
static char so_dir[64];

static const char *
example_path(void)
{
	static char path[512];
	const char *build = getenv("SHMPIPE_BUILD");

	snprintf(path, sizeof(path), "%s/handler_example.so",
	    build != NULL ? build : "build");
	ck_assert_msg(access(path, R_OK) == 0, "%s: %s (make builds it)",
	    path, strerror(errno));
	return path;
}

static void
so_setup(void)
{
	strcpy(so_dir, "/tmp/check_proto.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(so_dir));
}

static void
so_teardown(void)
{
	char path[sizeof(so_dir) + 256];
	struct dirent *de;
	DIR *d;

	if ((d = opendir(so_dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		snprintf(path, sizeof(path), "%s/%s", so_dir, de->d_name);
		if (de->d_name[0] != '.')
			unlink(path);
	}
	closedir(d);
	rmdir(so_dir);
}

/*
 * Compile src into so_dir/name.so with the system cc (from the source
 * tree, as make test runs).  Returns the path, or NULL if there is no cc.
 */
static const char *
build_so(const char *name, const char *src)
{
	static char path[sizeof(so_dir) + 64];
	char cmd[512];
	FILE *f;

	if (system("command -v cc >/dev/null 2>&1") != 0) {
		fprintf(stderr, "check_proto: no cc in PATH, skipping the "
		    "test that needs %s.so\n", name);
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/%s.c", so_dir, name);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
	    "#include \"shmpipe_handler.h\"\n", f);
	fputs(src, f);
	ck_assert_int_eq(fclose(f), 0);
	snprintf(cmd, sizeof(cmd), "cc -std=c11 -fPIC -shared -Iinclude "
	    "-o %s/%s.so %s", so_dir, name, path);
	ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
	snprintf(path, sizeof(path), "%s/%s.so", so_dir, name);
	return path;
}

START_TEST(test_proto_example_verbs)
{
	struct proto_handlers *h = load_ok(example_path(), false);

	EXPECT(h, "len abc", "OK 3");
	EXPECT(h, "len", "OK 0");
	EXPECT(h, "LEN a\0b c\r", "OK 5");
	EXPECT(h, "add 2 3", "OK 5");
	EXPECT(h, "add -5 3", "OK -2");
	EXPECT(h, "add 9223372036854775807 1", "ERR add overflows: the sum "
	    "does not fit in 64 bits");
	EXPECT(h, "add 2", "ERR add needs two 64-bit integers, "
	    "e.g. 'add 2 3'");
	EXPECT(h, "add 2 x", "ERR add needs two 64-bit integers, "
	    "e.g. 'add 2 3'");
	EXPECT(h, "hello", "OK hello, world");
	EXPECT(h, "Hello bob", "OK hello, bob");
	/* The built-ins still answer what the object passes on. */
	EXPECT(h, "echo hi", "OK hi");
	EXPECT(h, "fib 10", "OK 55");
	EXPECT(h, "nope", "ERR unknown verb 'nope' (expected echo, upper, "
	    "rev, sha256, fib, sleep or a verb of 'example')");
	proto_unload(h);
}
END_TEST

START_TEST(test_proto_example_garbage)
{
	struct proto_handlers *h = load_ok(example_path(), false);

	garbage(h);
	proto_unload(h);
}
END_TEST

START_TEST(test_proto_object_missing)
{
	load_fails("/nonexistent/dir/x.so",
	    "cannot load handler object '/nonexistent/dir/x.so': ");
}
END_TEST

START_TEST(test_proto_object_no_symbol)
{
	const char *so = build_so("nosym", "int shmpipe_other = 1;\n");

	if (so != NULL)
		load_fails(so, "has no symbol 'shmpipe_handler' (expected a "
		    "const struct shmpipe_handler by that name)");
}
END_TEST

START_TEST(test_proto_object_wrong_abi)
{
	const char *so = build_so("badabi",
	    "static int h(const struct shmpipe_request *q,\n"
	    "    struct shmpipe_result *r) { (void)q; (void)r; return 2; }\n"
	    "const struct shmpipe_handler shmpipe_handler = "
	    "{ 999, \"badabi\", 0, 0, h };\n");

	if (so != NULL)
		load_fails(so, "has ABI 999, expected 1 (rebuild it against "
		    "this shmpipe_handler.h)");
}
END_TEST

START_TEST(test_proto_object_no_handle)
{
	const char *so = build_so("nohandle",
	    "const struct shmpipe_handler shmpipe_handler = "
	    "{ SHMPIPE_HANDLER_ABI, \"nohandle\", 0, 0, 0 };\n");

	if (so != NULL)
		load_fails(so, "has no handle() function");
}
END_TEST

START_TEST(test_proto_object_init_fails)
{
	const char *so = build_so("initfail",
	    "static int i(void) { return 7; }\n"
	    "static int h(const struct shmpipe_request *q,\n"
	    "    struct shmpipe_result *r) { (void)q; (void)r; return 2; }\n"
	    "const struct shmpipe_handler shmpipe_handler = "
	    "{ SHMPIPE_HANDLER_ABI, \"initfail\", i, 0, h };\n");
	char want[256];

	if (so == NULL)
		return;
	snprintf(want, sizeof(want), "handler object '%s' refused to start: "
	    "its init() returned 7", so);
	load_fails(so, want);
}
END_TEST

/* init() runs at load and fini() at unload: each appends to a file. */
START_TEST(test_proto_object_init_fini)
{
	const char *so = build_so("lifecycle",
	    "static void mark(const char *s) {\n"
	    "	FILE *f = fopen(getenv(\"CHECK_PROTO_MARK\"), \"a\");\n"
	    "	if (f != NULL) { fputs(s, f); fclose(f); } }\n"
	    "static int i(void) { mark(\"init \"); return 0; }\n"
	    "static void f(void) { mark(\"fini\"); }\n"
	    "static int h(const struct shmpipe_request *q,\n"
	    "    struct shmpipe_result *r) { (void)q; (void)r; return 2; }\n"
	    "const struct shmpipe_handler shmpipe_handler = "
	    "{ SHMPIPE_HANDLER_ABI, \"lifecycle\", i, f, h };\n");
	char mark[sizeof(so_dir) + 16], buf[32] = "";
	struct proto_handlers *h;
	FILE *f;

	if (so == NULL)
		return;
	snprintf(mark, sizeof(mark), "%s/mark", so_dir);
	setenv("CHECK_PROTO_MARK", mark, 1);
	h = load_ok(so, false);
	EXPECT(h, "echo x", "OK x");
	proto_unload(h);
	ck_assert_ptr_nonnull(f = fopen(mark, "r"));
	ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
	fclose(f);
	ck_assert_str_eq(buf, "init fini");
}
END_TEST

/* An object that breaks the rules gets ERR replies, never a bad line. */
static const char bad_src[] =
    "#define IS(s) (q->verb_len == sizeof(s) - 1 && \\\n"
    "    memcmp(q->verb, s, sizeof(s) - 1) == 0)\n"
    "static int h(const struct shmpipe_request *q,\n"
    "    struct shmpipe_result *r) {\n"
    "	if (IS(\"big\")) { r->len = r->cap + 1; return SHMPIPE_OK; }\n"
    "	if (IS(\"nl\")) { memcpy(r->buf, \"a\\nb\", 3); r->len = 3;\n"
    "		return SHMPIPE_OK; }\n"
    "	if (IS(\"status\")) return 42;\n"
    "	if (IS(\"errlong\")) { memset(r->buf, 'x', r->cap);\n"
    "		r->len = r->cap + 10; return SHMPIPE_ERR; }\n"
    "	if (IS(\"args\")) { r->len = (size_t)snprintf(r->buf, r->cap,\n"
    "		\"%zu:%zu:%d:%u\", q->verb_len, q->arg_len,\n"
    "		q->arg == NULL, q->deliveries); return SHMPIPE_OK; }\n"
    "	if (IS(\"move\")) { r->buf = NULL; r->cap = 0;\n"
    "		return SHMPIPE_PASS; }\n"
    "	memcpy(r->buf, \"junk\", 4); r->len = 4; return SHMPIPE_PASS; }\n"
    "const struct shmpipe_handler shmpipe_handler = "
    "{ SHMPIPE_HANDLER_ABI, \"bad\", 0, 0, h };\n";

START_TEST(test_proto_object_misbehaves)
{
	const char *so = build_so("bad", bad_src);
	struct proto_handlers *h;
	char out[PROTO_REPLY_MIN];
	size_t n;

	if (so == NULL)
		return;
	h = load_ok(so, false);
	EXPECT(h, "big", "ERR result too long for the reply "
	    "(254 bytes, at most 253 fit)");
	EXPECT(h, "nl", "ERR handler 'bad' put a newline in its result "
	    "(expected one line)");
	EXPECT(h, "status", "ERR handler 'bad' returned an unknown status "
	    "(expected SHMPIPE_OK, SHMPIPE_ERR or SHMPIPE_PASS)");
	EXPECT(h, "echo hi", "OK hi");	/* "junk", then PASS */
	EXPECT(h, "move", "ERR unknown verb 'move' (expected echo, upper, "
	    "rev, sha256, fib, sleep or a verb of 'bad')");
	EXPECT(h, "args", "OK 4:0:1:1");
	EXPECT(h, "args ", "OK 4:0:0:1");
	EXPECT(h, "args a\0c\r", "OK 4:3:0:1");
	n = proto_handle(h, "args", 4, 7, out, sizeof(out));
	ck_assert_mem_eq(out, "OK 4:0:1:7", n);
	n = proto_handle(h, "errlong", 7, 1, out, sizeof(out));
	ck_assert_uint_eq(n, sizeof(out));
	ck_assert_mem_eq(out, "ERR xxxx", 8);
	proto_unload(h);
}
END_TEST

/*
 * An object that points res->buf at a result of its own, or answers ERR
 * with no reason, gets an ERR naming it: the buffer it was given still
 * holds an earlier reply, which must not go to this client.
 */
static const char moves_src[] =
    "static char mine[] = \"mine\";\n"
    "static int h(const struct shmpipe_request *q,\n"
    "    struct shmpipe_result *r) {\n"
    "	if (q->verb_len == 3 && memcmp(q->verb, \"own\", 3) == 0) {\n"
    "		r->buf = mine; r->len = 4; return SHMPIPE_OK; }\n"
    "	if (q->verb_len == 3 && memcmp(q->verb, \"cap\", 3) == 0) {\n"
    "		r->cap = 1 << 20; r->len = 4; return SHMPIPE_OK; }\n"
    "	if (q->verb_len == 4 && memcmp(q->verb, \"mute\", 4) == 0) {\n"
    "		r->len = 0; return SHMPIPE_ERR; }\n"
    "	return SHMPIPE_PASS; }\n"
    "const struct shmpipe_handler shmpipe_handler = "
    "{ SHMPIPE_HANDLER_ABI, \"moves\", 0, 0, h };\n";

START_TEST(test_proto_object_moves_buf)
{
	const char *so = build_so("moves", moves_src);
	struct proto_handlers *h;

	if (so == NULL)
		return;
	h = load_ok(so, false);
	EXPECT(h, "echo secret of another client", "OK secret of another "
	    "client");
	EXPECT(h, "own", "ERR handler 'moves' changed res->buf or res->cap "
	    "(expected its result written into res->buf)");
	EXPECT(h, "cap", "ERR handler 'moves' changed res->buf or res->cap "
	    "(expected its result written into res->buf)");
	EXPECT(h, "mute", "ERR handler 'moves' answered SHMPIPE_ERR without "
	    "a reason (expected one in res->buf)");
	proto_unload(h);
}
END_TEST

Suite *
proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc;

	tc = tcase_create("Core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_proto_echo);
	tcase_add_test(tc, test_proto_upper);
	tcase_add_test(tc, test_proto_rev);
	tcase_add_test(tc, test_proto_sha256);
	tcase_add_test(tc, test_proto_fib);
	tcase_add_test(tc, test_proto_sleep);
	tcase_add_test(tc, test_proto_sleep_resumes_after_signals);
	tcase_add_test(tc, test_proto_err_too_long);
	tcase_add_test(tc, test_proto_reply_fits_cap);
	tcase_add_test(tc, test_proto_reply_too_long);
	tcase_add_test(tc, test_proto_threads_share_handlers);
	suite_add_tcase(s, tc);

	tc = tcase_create("Errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_proto_empty_request);
	tcase_add_test(tc, test_proto_unknown_verb);
	tcase_add_test(tc, test_proto_newline);
	tcase_add_test(tc, test_proto_fib_bad);
	tcase_add_test(tc, test_proto_sleep_bad);
	tcase_add_test(tc, test_proto_crash_disabled);
	tcase_add_test(tc, test_proto_crash_enabled);
	tcase_add_test(tc, test_proto_garbage);
	suite_add_tcase(s, tc);

	tc = tcase_create("Handler object");
	tcase_add_unchecked_fixture(tc, so_setup, so_teardown);
	tcase_add_test(tc, test_proto_example_verbs);
	tcase_add_test(tc, test_proto_example_garbage);
	tcase_add_test(tc, test_proto_object_missing);
	tcase_add_test(tc, test_proto_object_no_symbol);
	tcase_add_test(tc, test_proto_object_wrong_abi);
	tcase_add_test(tc, test_proto_object_no_handle);
	tcase_add_test(tc, test_proto_object_init_fails);
	tcase_add_test(tc, test_proto_object_init_fini);
	tcase_add_test(tc, test_proto_object_misbehaves);
	tcase_add_test(tc, test_proto_object_moves_buf);
	suite_add_tcase(s, tc);
	return s;
}
