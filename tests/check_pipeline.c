/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_pipeline.c - integration tests of shmpipe: each test starts a
 * pipeline of its own (build/shmpipe, or $SHMPIPE_BUILD/shmpipe) on a Unix
 * socket in a temporary directory, talks to it with plain sockets and
 * shmpipe-bench, kills and signals its processes, and stops it leaving
 * nothing behind.
 *
 * The suite pipeline_threaded runs the same tests against
 * shmpipe-threaded, but for those that kill, restart, recycle or time out
 * one stage, which threads cannot do; tests of its own show what a crash
 * and those requests do to it instead.
 */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_pipeline_util.h"
#include "fault.h"
#include "proto.h"
#include "supervisor.h"

Suite	*pipeline_suite(void);
Suite	*pipeline_threaded_suite(void);

#define LINE_MAX_TEST	8192
/* FIPS 180-2 test vectors. */
#define SHA_EMPTY	"e3b0c44298fc1c149afbf4c8996fb924" \
			"27ae41e4649b934ca495991b7852b855"
#define SHA_ABC		"ba7816bf8f01cfea414140de5dae2223" \
			"b00361a396177a9cb410ff61f20015ad"
#define SHA_448		"248d6a61d20638b8e5c026930c3e6039" \
			"a33ce45964ff2167f6ecedd419db06c1"
#define MSG_448		"abcdbcdecdefdefgefghfghighijhijk" \
			"ijkljklmklmnlmnomnopnopq"

/* ---- helpers ----------------------------------------------------------- */

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Wait until a counter of the control segment reaches at least n. */
static void
wait_counter(struct cp_pipe *p, _Atomic uint64_t *what, uint64_t n,
    const char *name)
{
	uint64_t end = now_ms() + CP_WAIT_S * 1000u;

	while (atomic_load(what) < n) {
		CP_ASSERT(p, now_ms() < end, "%s stayed at %" PRIu64 ", below "
		    "%" PRIu64, name, (uint64_t)atomic_load(what), n);
		nap_ms(1);
	}
}

/* Wait until row runs a process other than old, and it is READY. */
static pid_t
wait_row_replaced(struct cp_pipe *p, const struct ctl *c, uint32_t row,
    pid_t old)
{
	uint64_t end = now_ms() + CP_WAIT_S * 1000u;
	pid_t pid;

	for (;;) {
		pid = cp_row_pid(c, row);
		if (pid != 0 && pid != old && atomic_load(&ctl_proc(c,
		    row)->state) == SHMPIPE_PROC_READY)
			return pid;
		CP_ASSERT(p, now_ms() < end, "row %u not running a new process "
		    "after %d s", row, CP_WAIT_S);
		nap_ms(1);
	}
}

/*
 * SIGKILL the process in `row` once the pipeline has answered `at`
 * requests, check that the load b was still under way then, and wait for
 * its successor to be ready.  Returns the pid killed.
 */
static pid_t
kill_under_load(struct cp_pipe *p, struct cp_bench *b, uint32_t row,
    uint64_t at)
{
	uint64_t end = now_ms() + CP_WAIT_S * 1000u;
	struct ctl c;
	pid_t pid;

	cp_ctl(p, &c);
	while (atomic_load(&c.c_hdr->answered) < at) {
		CP_ASSERT(p, !cp_bench_done(b), "the load ended before %"
		    PRIu64 " requests were answered: %s", at, b->b_json);
		CP_ASSERT(p, now_ms() < end, "fewer than %" PRIu64 " requests "
		    "answered in %d s", at, CP_WAIT_S);
		nap_ms(1);
	}
	pid = cp_row_pid(&c, row);
	CP_ASSERT(p, pid > 0 && kill(pid, SIGKILL) == 0, "cannot kill row %u "
	    "(pid %d)", row, (int)pid);
	CP_ASSERT(p, !cp_bench_done(b), "the load ended before the kill "
	    "landed; the test proved nothing: %s", b->b_json);
	wait_row_replaced(p, &c, row, pid);
	ctl_close(&c);
	return pid;
}

/* "who (pid N) killed by signal 9 (SIGKILL)" is in the log. */
static void
assert_logged_kill(struct cp_pipe *p, const char *who, pid_t pid)
{
	char want[128];

	snprintf(want, sizeof(want), "%s (pid %d) killed by signal 9 "
	    "(SIGKILL)", who, (int)pid);
	CP_ASSERT(p, cp_log_has(p, want), "'%s' not logged", want);
}

static void
wait_writer(pid_t pid)
{
	int st;

	ck_assert_int_eq(cp_waitpid(pid, &st, CP_WAIT_S * 1000), 1);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the writer "
	    "could not send everything (status %#x)", st);
}

/* Wait until needle is in the log at least n times. */
static void
wait_log_count(struct cp_pipe *p, const char *needle, size_t n)
{
	uint64_t end = now_ms() + CP_WAIT_S * 1000u;

	while (cp_log_count(p, needle) < n) {
		CP_ASSERT(p, now_ms() < end, "'%s' logged %zu times, not %zu",
		    needle, cp_log_count(p, needle), n);
		nap_ms(1);
	}
}

/* Read n replies on fd; each must be want. */
static void
expect_n(int fd, unsigned n, const char *want)
{
	char got[LINE_MAX_TEST];

	for (unsigned i = 0; i < n; i++) {
		ck_assert_msg(cp_line(fd, got, sizeof(got)) >= 0, "reply %u of "
		    "%u: the connection closed", i + 1, n);
		ck_assert_msg(strcmp(got, want) == 0, "reply %u: got '%s', "
		    "expected '%s'", i + 1, got, want);
	}
}

/* Reply i (of n) on fd must be want. */
static void
expect_reply(struct cp_pipe *p, int fd, unsigned i, unsigned n,
    const char *want)
{
	char got[LINE_MAX_TEST];

	CP_ASSERT(p, cp_line(fd, got, sizeof(got)) >= 0, "reply %u of %u: "
	    "the connection closed", i + 1, n);
	CP_ASSERT(p, strcmp(got, want) == 0, "reply %u: got '%s', expected "
	    "'%s'", i + 1, got, want);
}

/* The pipeline must exit 0, drained. */
static void
expect_drained(struct cp_pipe *p)
{
	int st = cp_wait_exit(p, CP_WAIT_S);

	CP_ASSERT(p, WIFEXITED(st) && WEXITSTATUS(st) == 0, "drained: "
	    "status %#x, expected exit 0", st);
}

/* Assert that argv exits with code and one line on stderr naming what. */
static void
expect_refusal(struct cp_pipe *p, const char *const *argv, int code,
    const char *what)
{
	char *log;
	size_t before = 0, len;
	FILE *f;
	int st;

	if ((f = fopen(p->cp_log, "re")) != NULL) {
		fseek(f, 0, SEEK_END);
		before = (size_t)ftell(f);
		fclose(f);
	}
	p->cp_pid = cp_spawnv(p, argv, -1);
	st = cp_wait_exit(p, CP_WAIT_S);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == code, "%s %s: %s "
	    "%d, expected exit %d", argv[1], argv[2] ? argv[2] : "",
	    WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ?
	    WEXITSTATUS(st) : WTERMSIG(st), code);
	f = fopen(p->cp_log, "re");
	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	len = (size_t)ftell(f) - before;
	ck_assert_ptr_nonnull(log = calloc(1, len + 1));
	fseek(f, (long)before, SEEK_SET);
	ck_assert_uint_eq(fread(log, 1, len, f), len);
	fclose(f);
	ck_assert_msg(len > 0 && strchr(log, '\n') == log + len - 1, "%s: "
	    "expected one line on stderr, got '%s'", argv[1], log);
	ck_assert_msg(strstr(log, what) != NULL, "%s: '%s' does not name "
	    "'%s'", argv[1], log, what);
	free(log);
}

/* ---- Core: the verbs and the protocol ---------------------------------- */

START_TEST(test_pipeline_verbs)
{
	struct cp_pipe p;
	int fd;

	cp_start(&p, 2, NULL);
	fd = cp_connect(&p);
	cp_expect(fd, "echo hello world", "OK hello world");
	cp_expect(fd, "echo", "OK");
	cp_expect(fd, "echo  two  spaces ", "OK  two  spaces ");
	cp_expect(fd, "ECHO Case", "OK Case");
	cp_expect(fd, "upper MiXeD 123 äb", "OK MIXED 123 äB");
	cp_expect(fd, "rev abc def", "OK fed cba");
	cp_expect(fd, "rev", "OK");
	cp_expect(fd, "sha256 abc", "OK " SHA_ABC);
	cp_expect(fd, "sha256 ", "OK " SHA_EMPTY);
	cp_expect(fd, "sha256", "OK " SHA_EMPTY);
	cp_expect(fd, "sha256 " MSG_448, "OK " SHA_448);
	cp_expect(fd, "fib 0", "OK 0");
	cp_expect(fd, "fib 1", "OK 1");
	cp_expect(fd, "fib 10", "OK 55");
	cp_expect(fd, "fib 25", "OK 75025");
	cp_expect(fd, "fib 41", "ERR fib needs a whole number 0..40, got "
	    "'41'");
	cp_expect(fd, "fib", "ERR fib needs a whole number 0..40, got "
	    "nothing");
	cp_expect(fd, "sleep 20", "OK 20");
	cp_expect(fd, "sleep 0", "OK 0");
	cp_expect(fd, "sleep -1", "ERR sleep needs a whole number of "
	    "milliseconds 0..60000, got '-1'");
	cp_expect(fd, "crash", "ERR crash is disabled (start shmpipe with "
	    "--enable-crash to allow it)");
	cp_expect(fd, "frobnicate x", "ERR unknown verb 'frobnicate' "
	    "(expected echo, upper, rev, sha256, fib, sleep)");
	cp_expect(fd, "", "ERR empty request (expected VERB [ARG])");
	cp_expect(fd, " echo", "ERR missing verb before the first space "
	    "(expected VERB [ARG])");
	/* '\r' before the '\n' is stripped, once. */
	cp_expect(fd, "echo crlf\r", "OK crlf");
	cp_expect(fd, "upper x\r\r", "OK X\r");
	cp_expect(fd, "\r", "ERR empty request (expected VERB [ARG])");
	cp_close(fd);
	cp_stop(&p);
}
END_TEST

START_TEST(test_pipeline_crash_verb)
{
	struct cp_pipe p;
	int fd, other;

	cp_start(&p, 2, CP_ARGS("--enable-crash"));
	fd = cp_connect(&p);
	other = cp_connect(&p);
	cp_expect(fd, "echo before", "OK before");
	cp_expect(fd, "crash now", "ERR crash takes no argument, got 'now'");
	cp_expect(fd, "crash", "ERR request crashed the processor 2 times");
	cp_expect(fd, "echo after", "OK after");
	cp_expect(other, "upper still here", "OK STILL HERE");
	cp_expect(fd, "frob", "ERR unknown verb 'frob' (expected echo, upper, "
	    "rev, sha256, fib, sleep, crash)");
	CP_ASSERT(&p, cp_log_count(&p, "killed by signal 11 (SIGSEGV)") == 2,
	    "expected two processors killed by SIGSEGV");
	CP_ASSERT(&p, cp_log_has(&p, "quarantined request"), "no quarantine "
	    "logged");
	cp_close(fd);
	cp_close(other);
	cp_stop(&p);
}
END_TEST

/* A client connected the moment the socket accepts (bound is not yet
 * listening: refused, so try again). */
static int
connect_early(struct cp_pipe *p)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	uint64_t end = now_ms() + CP_WAIT_S * 1000u;
	int fd;

	strlcpy(sun.sun_path, p->cp_sock, sizeof(sun.sun_path));
	for (;;) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ck_assert_int_ge(fd, 0);
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			return fd;
		CP_ASSERT(p, (errno == ENOENT || errno == ECONNREFUSED) &&
		    now_ms() < end, "connect %s: %s", p->cp_sock,
		    strerror(errno));
		close(fd);
		nap_ms(1);
	}
}

/*
 * Clients there from the first instant wait for the stages to be ready,
 * and kill none of them: the supervisor rings a stage's doorbell (SIGUSR1)
 * for each connection, and a stage still setting up once died of it.  A
 * race, so several starts.
 */
START_TEST(test_pipeline_early_clients)
{
	int fd[4];

	for (int k = 0; k < 6; k++) {
		struct cp_pipe p;

		cp_prepare(&p, 2);
		cp_spawn(&p, NULL);
		for (int i = 0; i < 4; i++) {
			fd[i] = connect_early(&p);
			cp_sends(fd[i], "echo early\n");
		}
		for (int i = 0; i < 4; i++) {
			expect_n(fd[i], 1, "OK early");
			cp_close(fd[i]);
		}
		CP_ASSERT(&p, !cp_log_has(&p, "killed by"), "a stage died");
		cp_stop(&p);
	}
}
END_TEST

/* Mixed work pipelined on one connection comes back in request order. */
START_TEST(test_pipeline_in_order)
{
	static const char *const want[] = { "OK 30", "OK 75025", "OK A",
	    "OK 5", "OK cba", "OK " SHA_ABC };
	char buf[LINE_MAX_TEST], got[LINE_MAX_TEST];
	struct cp_bench sl, fb;
	struct cp_pipe p;
	size_t len = 0;
	int fd;

	cp_start(&p, 4, NULL);
	cp_bench_start(&sl, &p, CP_ARGS("-c", "4", "-d", "16", "-v", "sleep",
	    "-a", "1", "-n", "3000"));
	cp_bench_start(&fb, &p, CP_ARGS("-c", "8", "-d", "16", "-v", "fib",
	    "-n", "20000"));
	fd = cp_connect(&p);
	for (int round = 0; round < 20; round++) {
		len = (size_t)snprintf(buf, sizeof(buf), "sleep 30\nfib 25\n"
		    "upper a\nsleep 5\nrev abc\nsha256 abc\n");
		for (int i = 0; i < 40; i++)
			len += (size_t)snprintf(buf + len, sizeof(buf) - len,
			    "echo %d.%d\n", round, i);
		cp_send(fd, buf, len);
		for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
			ck_assert_int_ge(cp_line(fd, got, sizeof(got)), 0);
			ck_assert_str_eq(got, want[i]);
		}
		for (int i = 0; i < 40; i++) {
			snprintf(buf, sizeof(buf), "OK %d.%d", round, i);
			ck_assert_int_ge(cp_line(fd, got, sizeof(got)), 0);
			ck_assert_str_eq(got, buf);
		}
	}
	cp_close(fd);
	cp_bench_wait(&sl);
	cp_bench_assert_clean(&p, &sl, 3000);
	cp_bench_wait(&fb);
	cp_bench_assert_clean(&p, &fb, 20000);
	cp_stop(&p);
}
END_TEST

START_TEST(test_pipeline_long_lines)
{
	char line[LINE_MAX_TEST], big[100000];
	struct cp_pipe p;
	int fd;

	cp_start(&p, 2, CP_ARGS("--max-line", "64"));
	fd = cp_connect(&p);
	/* Exactly 64 bytes is fine; 65 is one too many. */
	memset(line, 'x', sizeof(line));
	memcpy(line, "echo ", 5);
	line[64] = '\0';
	memcpy(big, "OK ", 3);
	memcpy(big + 3, line + 5, 60);
	cp_expect(fd, line, big);
	line[64] = 'x';
	line[65] = '\0';
	cp_expect(fd, line, "ERR request too long (expected at most 64 "
	    "bytes)");
	cp_expect(fd, "echo next", "OK next");
	/* A '\r' before the '\n' is not part of the request, nor of its
	 * length: 64 bytes and a '\r' are fine, 65 and a '\r' are not. */
	line[64] = '\r';
	line[65] = '\0';
	cp_expect(fd, line, big);
	line[64] = 'x';
	line[65] = '\r';
	line[66] = '\0';
	cp_expect(fd, line, "ERR request too long (expected at most 64 "
	    "bytes)");
	line[64] = '\r';
	line[65] = '\0';
	cp_send(fd, line, 65);		/* the '\n' in a later read, maybe */
	cp_expect(fd, "", big);
	/* Far longer than the input ring, in pieces, then more lines. */
	memset(big, 'y', sizeof(big));
	for (int i = 0; i < 10; i++)
		cp_send(fd, big, sizeof(big));
	cp_sends(fd, "\necho after\n\n");
	expect_n(fd, 1, "ERR request too long (expected at most 64 bytes)");
	expect_n(fd, 1, "OK after");
	expect_n(fd, 1, "ERR empty request (expected VERB [ARG])");
	/* A long line whose '\n' ends a later read. */
	cp_send(fd, big, 70);
	cp_expect(fd, "", "ERR request too long (expected at most 64 bytes)");
	cp_expect(fd, "echo last", "OK last");
	cp_close(fd);
	cp_stop(&p);
}
END_TEST

START_TEST(test_pipeline_garbage)
{
	static unsigned char junk[1 << 18];
	char got[LINE_MAX_TEST], want[LINE_MAX_TEST], err[256];
	struct proto_handlers *h = proto_load(NULL, false, err, sizeof(err));
	unsigned char *line = junk, *nl;
	unsigned lines = 0, seed = 12345;
	struct cp_pipe p;
	pid_t writer;
	ssize_t len;
	size_t n;
	int fd;

	/* Random bytes, a newline now and then; the last byte ends a line. */
	for (size_t i = 0; i < sizeof(junk); i++) {
		seed = seed * 1103515245u + 12345u;
		junk[i] = (seed >> 8) % 40 == 0 ? '\n' :
		    (unsigned char)(seed >> 16);
	}
	junk[sizeof(junk) - 1] = '\n';
	ck_assert_ptr_nonnull(h);
	cp_start(&p, 2, CP_ARGS("--max-line", "256"));
	fd = cp_connect(&p);
	writer = cp_send_async(fd, junk, sizeof(junk));
	/* Each line gets the reply the protocol gives it, in order. */
	for (; line < junk + sizeof(junk); line = nl + 1, lines++) {
		nl = memchr(line, '\n', (size_t)(junk + sizeof(junk) - line));
		n = (size_t)(nl - line) > 256 ? proto_err_too_long(256, want,
		    sizeof(want)) : proto_handle(h, (const char *)line,
		    (size_t)(nl - line), 1, want, sizeof(want));
		want[n] = '\0';
		len = cp_line(fd, got, sizeof(got));
		ck_assert_msg(len >= 0, "reply %u: the connection closed",
		    lines + 1);
		ck_assert_msg((size_t)len == n && memcmp(got, want, n) == 0,
		    "reply %u: got '%s', expected '%s'", lines + 1, got, want);
	}
	proto_unload(h);
	wait_writer(writer);
	cp_sends(fd, "\n\n\necho done\n");
	expect_n(fd, 3, "ERR empty request (expected VERB [ARG])");
	expect_n(fd, 1, "OK done");
	CP_ASSERT(&p, !cp_log_has(&p, "killed by"), "a stage died");
	cp_close(fd);
	cp_stop(&p);
}
END_TEST

/*
 * Messages too short for a header, put on the pipeline's queues by
 * something else (`shmq put`): a processor read a request header past the
 * end of one, and its length as (size_t)(len - header): it died on it,
 * twice, and so did its successor.  They are dropped, with a line, and
 * the pipeline serves on with no processor lost.
 */
START_TEST(test_pipeline_foreign_messages)
{
	struct cp_pipe p;
	char qname[64];
	struct shmq *q;

	cp_start(&p, 1, NULL);
	for (int i = 0; i < 2; i++) {
		snprintf(qname, sizeof(qname), "shmpipe.%s.%s", p.cp_name,
		    i == 0 ? "req" : "rep");
		CP_ASSERT(&p, (q = shmq_open(qname)) != NULL, "cannot open %s: "
		    "%s", qname, strerror(errno));
		ck_assert_int_eq(shmq_put(q, "hello", 5, 1000), 0);
		ck_assert_int_eq(shmq_put(q, "", 0, 1000), 0);
		shmq_close(q);
	}
	cp_wait_log(&p, "dropped 1 message(s) from the request queue: too "
	    "short");
	cp_wait_log(&p, "dropped 1 message(s) from the reply queue: too short");
	cp_serves(&p, "after");
	CP_ASSERT(&p, !cp_log_has(&p, "killed by signal"), "a stage died on "
	    "a foreign message");
	cp_stop(&p);
}
END_TEST

/*
 * A processor that has spent more than 1 ms on a batch hands the requests
 * it has not started back to the queue, for another processor (or itself,
 * here: there is one) to take: they count as redelivered, and each is
 * still answered once, in order.  Sent in one write, the two requests go
 * on the queue together and the processor, asleep, takes both; if it
 * took the first alone, try again.
 */
START_TEST(test_pipeline_slow_batch_handed_back)
{
	struct shmq_stats st = { 0 };
	struct cp_pipe p;
	char qname[64], line[64];
	struct shmq *q;
	int fd;

	cp_start(&p, 1, NULL);
	snprintf(qname, sizeof(qname), "shmpipe.%s.req", p.cp_name);
	CP_ASSERT(&p, (q = shmq_open(qname)) != NULL, "cannot open %s: %s",
	    qname, strerror(errno));
	fd = cp_connect(&p);
	for (int i = 0; i < 5 && st.redelivered == 0; i++) {
		cp_sends(fd, "sleep 30\necho after\n");
		cp_line(fd, line, sizeof(line));
		ck_assert_str_eq(line, "OK 30");
		cp_line(fd, line, sizeof(line));
		ck_assert_str_eq(line, "OK after");
		ck_assert_int_eq(shmq_stats(q, &st), 0);
	}
	CP_ASSERT(&p, st.redelivered > 0, "the request behind a 30 ms one "
	    "was never handed back");
	shmq_close(q);
	cp_close(fd);
	cp_stop(&p);
}
END_TEST

/* Wait until all connection slots but `busy` are free again. */
static void
wait_conns_free(struct cp_pipe *p, const struct ctl *c, uint32_t busy)
{
	uint64_t end = now_ms() + CP_WAIT_S * 1000u;
	uint32_t used;

	for (;;) {
		used = 0;
		for (uint32_t i = 0; i < c->c_g.max_conns; i++)
			used += SHMPIPE_CONN_FLAGS(atomic_load(&ctl_conn(c,
			    i)->state)) != 0;
		if (used == busy)
			return;
		CP_ASSERT(p, now_ms() < end, "%u connection slots in use after "
		    "%d s, expected %u", used, CP_WAIT_S, busy);
		nap_ms(1);
	}
}

START_TEST(test_pipeline_disconnect_mid_line)
{
	static const char *const partial[] = { "echo never ended",
	    "sleep 50\necho half", "sleep 20\n", "ech" };
	struct pollfd pf = { .events = POLLIN };
	struct cp_pipe p;
	struct ctl c;
	int fd, keep, more[3];

	cp_start(&p, 2, CP_ARGS("--max-connections", "4"));
	cp_ctl(&p, &c);
	keep = cp_connect(&p);
	cp_expect(keep, "echo kept", "OK kept");
	for (int i = 0; i < 24; i++) {
		fd = cp_connect(&p);
		if (i % 3 == 0) {
			/* A reply left unread: the server sees a reset. */
			cp_sends(fd, "echo unread\n");
			pf.fd = fd;
			ck_assert_int_eq(poll(&pf, 1, CP_WAIT_S * 1000), 1);
		}
		cp_sends(fd, partial[i % 4]);
		cp_close(fd);
		cp_expect(keep, "upper k", "OK K");
		/* Every slot a dropped client held comes free. */
		wait_conns_free(&p, &c, 1);
	}
	for (int i = 0; i < 3; i++)
		more[i] = cp_connect(&p);
	for (int i = 0; i < 3; i++)
		cp_expect(more[i], "rev 123", "OK 321");
	cp_expect(keep, "echo still", "OK still");
	for (int i = 0; i < 3; i++)
		cp_close(more[i]);
	cp_close(keep);
	ctl_close(&c);
	cp_stop(&p);
}
END_TEST

START_TEST(test_pipeline_many_connections)
{
	struct cp_pipe p;

	cp_start(&p, 2, NULL);
	cp_bench_run(&p, 10000, CP_ARGS("-c", "500", "-d", "4", "-n",
	    "10000"));
	cp_stop(&p);
}
END_TEST

START_TEST(test_pipeline_max_connections)
{
	char got[LINE_MAX_TEST];
	struct cp_pipe p;
	struct ctl c;
	int fd[16], extra;

	cp_start(&p, 2, CP_ARGS("--max-connections", "16"));
	cp_ctl(&p, &c);
	for (int i = 0; i < 16; i++) {
		fd[i] = cp_connect(&p);
		cp_expect(fd[i], "echo in", "OK in");
	}
	for (int k = 0; k < 3; k++) {
		extra = cp_connect(&p);
		ck_assert_int_ge(cp_line(extra, got, sizeof(got)), 0);
		ck_assert_str_eq(got, "ERR too many connections (max 16); try "
		    "again later");
		cp_expect_eof(extra);
		cp_close(extra);
	}
	for (int i = 0; i < 16; i++)
		cp_expect(fd[i], "upper fine", "OK FINE");
	/* A slot given back is taken by the next client. */
	cp_close(fd[0]);
	wait_conns_free(&p, &c, 15);
	fd[0] = cp_connect(&p);
	cp_expect(fd[0], "echo again", "OK again");
	for (int i = 0; i < 16; i++)
		cp_close(fd[i]);
	ctl_close(&c);
	cp_stop(&p);
}
END_TEST

/* A TCP connection to p's --listen tcp: (cp_use_tcp). */
static int
tcp_connect(const struct cp_pipe *p)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	const char *colon = strrchr(p->cp_tcp, ':');
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_ptr_nonnull(colon);
	sin.sin_port = htons((uint16_t)atoi(colon + 1));
	CP_ASSERT(p, fd >= 0 && connect(fd, (struct sockaddr *)&sin,
	    sizeof(sin)) == 0, "connect %s: %s", p->cp_tcp, strerror(errno));
	return fd;
}

#define REFUSED_TCP	20

/*
 * Over TCP, clients refused for want of a slot send their request at once,
 * as any client does, and must read why they are refused, then the end of
 * the stream.  Before, the request process closed the socket with that
 * request unread: the kernel reset the connection, and a client reading
 * to the end (Python's read(), say) lost the line with the error.
 */
START_TEST(test_pipeline_refused_tcp)
{
	char got[LINE_MAX_TEST];
	struct cp_pipe p;
	int hold;

	cp_prepare(&p, 1);
	cp_use_tcp(&p);
	cp_spawn(&p, CP_ARGS("--max-connections", "1"));
	cp_wait_ready(&p);
	hold = cp_connect(&p);
	cp_expect(hold, "echo mine", "OK mine");
	for (int i = 0; i < REFUSED_TCP; i++) {
		int fd = tcp_connect(&p);

		cp_sends(fd, "echo x\n");
		got[0] = '\0';
		CP_ASSERT(&p, cp_line(fd, got, sizeof(got)) > 0 && strcmp(got,
		    "ERR too many connections (max 1); try again later") == 0,
		    "refused client %d: '%s'", i + 1, got);
		CP_ASSERT(&p, read(fd, got, sizeof(got)) == 0, "refused client "
		    "%d: %s, expected the end of the stream", i + 1, errno ==
		    ECONNRESET ? "reset" : "more");
		cp_close(fd);
	}
	cp_close(hold);
	cp_stop(&p);
}
END_TEST

START_TEST(test_pipeline_idle_timeout)
{
	struct cp_pipe p;
	int quiet, busy;

	cp_start(&p, 2, CP_ARGS("--idle-timeout", "300"));
	quiet = cp_connect(&p);
	busy = cp_connect(&p);
	cp_expect(quiet, "echo then nothing", "OK then nothing");
	/* A request in flight longer than the timeout is not cut off. */
	cp_expect(busy, "sleep 1000", "OK 1000");
	cp_expect_eof(quiet);
	cp_expect_eof(busy);
	CP_ASSERT(&p, cp_log_count(&p, "idle for 300 ms; closing it") == 2,
	    "expected two idle connections closed");
	cp_close(quiet);
	cp_close(busy);
	cp_stop(&p);
}
END_TEST

/* ---- Files ------------------------------------------------------------- */

#define FILE_LINES	3000

/* A line of mixed work for request i. */
static size_t
file_line(unsigned i, char *buf, size_t size)
{
	switch (i % 9) {
	case 0: return (size_t)snprintf(buf, size, "echo line %u", i);
	case 1: return (size_t)snprintf(buf, size, "upper up%u", i);
	case 2: return (size_t)snprintf(buf, size, "rev %u-abc", i);
	case 3: return (size_t)snprintf(buf, size, "sha256 %u", i);
	case 4: return (size_t)snprintf(buf, size, "fib %u", i % 23);
	case 5: return (size_t)snprintf(buf, size, "%s", "");
	case 6: return (size_t)snprintf(buf, size, "nope %u", i);
	case 7: return (size_t)snprintf(buf, size, "sleep %u", i % 2);
	default: return (size_t)snprintf(buf, size, "echo crlf %u\r", i);
	}
}

/*
 * Write the requests to fd, the last without its '\n' (the end of the
 * input ends it); the expected replies to want.
 */
static void
file_requests(int fd, FILE *want)
{
	char err[256], line[256], reply[LINE_MAX_TEST];
	struct proto_handlers *h = proto_load(NULL, false, err, sizeof(err));

	ck_assert_ptr_nonnull(h);
	for (unsigned i = 0; i < FILE_LINES; i++) {
		size_t n = file_line(i, line, sizeof(line));
		size_t r = proto_handle(h, line, n, 1, reply, sizeof(reply));

		line[n++] = '\n';
		cp_send(fd, line, n);
		fprintf(want, "%.*s\n", (int)r, reply);
	}
	cp_sends(fd, "echo no newline");
	fprintf(want, "OK no newline\n");
	proto_unload(h);
}

/* The output file must be exactly the expected replies. */
static void
file_compare(struct cp_pipe *p, const char *out, FILE *want)
{
	char a[LINE_MAX_TEST], b[LINE_MAX_TEST];
	FILE *got = fopen(out, "re");
	unsigned n = 0;

	CP_ASSERT(p, got != NULL, "no output file %s", out);
	rewind(want);
	while (fgets(a, sizeof(a), want) != NULL) {
		n++;
		CP_ASSERT(p, fgets(b, sizeof(b), got) != NULL, "output ends "
		    "after %u of %u lines", n - 1, FILE_LINES + 1);
		CP_ASSERT(p, strcmp(a, b) == 0, "line %u: got '%s', expected "
		    "'%s'", n, b, a);
	}
	CP_ASSERT(p, fgets(b, sizeof(b), got) == NULL, "extra output line "
	    "'%s'", b);
	ck_assert_uint_eq(n, FILE_LINES + 1);
	fclose(got);
}

/* Run shmpipe in file mode: --input in (or - with in_fd). */
static pid_t
file_spawn(struct cp_pipe *p, const char *in, const char *out, int in_fd)
{
	char prog[CP_PATH_LEN];

	cp_server(prog, sizeof(prog));
	p->cp_pid = cp_spawnv(p, CP_ARGS(prog, "--name", p->cp_name,
	    "--pidfile", p->cp_pidfile, "--processors", "3", "--input", in,
	    "--output", out), in_fd);
	return p->cp_pid;
}

START_TEST(test_pipeline_file_mode)
{
	char in[CP_PATH_LEN + 8], out[CP_PATH_LEN + 8];
	struct cp_pipe p;
	FILE *want = tmpfile();
	int fd, st;

	cp_prepare(&p, 3);
	snprintf(in, sizeof(in), "%s/in", p.cp_dir);
	snprintf(out, sizeof(out), "%s/out.txt", p.cp_dir);
	ck_assert_ptr_nonnull(want);
	fd = open(in, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	file_requests(fd, want);
	close(fd);
	file_spawn(&p, in, out, -1);
	st = cp_wait_exit(&p, CP_WAIT_S);
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 0, "file mode: "
	    "status %#x, expected exit 0", st);
	file_compare(&p, out, want);
	cp_assert_gone(&p);
	fclose(want);
}
END_TEST

/*
 * Every reply of file mode is written, however many wait at the end: the
 * reply process is held stopped until all PILE_LINES are answered and the
 * input has ended, then writes them at once.  A write takes at most 512
 * replies, and the reply process used to write once a connection was
 * marked, and stop when the queue was empty, losing the rest while the
 * run ended 0.
 */
#define PILE_LINES	4000
#define PILE_ARG	3000

START_TEST(test_pipeline_file_pile_up)
{
	char out[CP_PATH_LEN + 8], *line, *got;
	uint64_t end, served;
	struct cp_pipe p;
	struct ctl c;
	pid_t reply;
	FILE *f;
	int pfd[2], st;

	cp_prepare(&p, 3);
	snprintf(out, sizeof(out), "%s/out.txt", p.cp_dir);
	ck_assert_ptr_nonnull(line = malloc(PILE_ARG + 32));
	ck_assert_ptr_nonnull(got = malloc(PILE_ARG + 32));
	ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
	file_spawn(&p, "-", out, pfd[0]);
	close(pfd[0]);
	cp_ctl(&p, &c);
	end = now_ms() + CP_WAIT_S * 1000u;
	while ((reply = cp_row_pid(&c, SV_ROW_REPLY)) == 0) {
		CP_ASSERT(&p, now_ms() < end, "no reply process");
		nap_ms(1);
	}
	ck_assert_int_eq(kill(reply, SIGSTOP), 0);
	memset(line, 'q', PILE_ARG + 32);
	for (unsigned i = 0; i < PILE_LINES; i++) {
		int n = snprintf(line, 32, "echo %04u:", i);
		line[n] = 'q';
		line[PILE_ARG] = '\n';
		cp_send(pfd[1], line, PILE_ARG + 1);
	}
	close(pfd[1]);
	do {			/* all answered, waiting for the reply stage */
		served = 0;
		for (uint32_t r = SV_ROW_PROC0; r < c.c_g.nprocs; r++)
			served += atomic_load(&ctl_proc(&c, r)->served);
		CP_ASSERT(&p, now_ms() < end, "%" PRIu64 " of %u answered",
		    served, PILE_LINES);
		nap_ms(1);
	} while (served < PILE_LINES);
	ctl_close(&c);
	ck_assert_int_eq(kill(reply, SIGCONT), 0);
	st = cp_wait_exit(&p, CP_WAIT_S);
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 0, "file mode: "
	    "status %#x, expected exit 0", st);
	ck_assert_ptr_nonnull(f = fopen(out, "re"));
	for (unsigned i = 0; i < PILE_LINES; i++) {
		int n = snprintf(line, 32, "OK %04u:", i);
		memset(line + n, 'q', PILE_ARG - 2 - (size_t)n);
		line[PILE_ARG - 2] = '\0';
		CP_ASSERT(&p, fgets(got, PILE_ARG + 32, f) != NULL, "output ends "
		    "after %u of %u lines", i, PILE_LINES);
		got[strcspn(got, "\n")] = '\0';
		CP_ASSERT(&p, strcmp(got, line) == 0, "line %u wrong", i + 1);
	}
	CP_ASSERT(&p, fgets(got, PILE_ARG + 32, f) == NULL, "extra output");
	fclose(f);
	free(line);
	free(got);
	cp_assert_gone(&p);
}
END_TEST

/*
 * An output that fails (here a full device) ends file mode with exit 74
 * and a line saying so: the replies have nowhere to go, and a restarted
 * reply stage would fail alike.  Before, the run "succeeded" with nothing
 * written.
 */
START_TEST(test_pipeline_file_output_fails)
{
	char in[CP_PATH_LEN + 8];
	struct cp_pipe p;
	FILE *want = tmpfile();
	int fd, st;

	cp_prepare(&p, 3);
	snprintf(in, sizeof(in), "%s/in", p.cp_dir);
	ck_assert_ptr_nonnull(want);
	fd = open(in, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	file_requests(fd, want);
	close(fd);
	file_spawn(&p, in, "/dev/full", -1);
	st = cp_wait_exit(&p, CP_WAIT_S);
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 74, "output to "
	    "/dev/full: status %#x, expected exit 74", st);
	CP_ASSERT(&p, cp_log_has(&p, "cannot write the output: No space "
	    "left on device"), "no line says the output failed");
	cp_assert_gone(&p);
	fclose(want);
}
END_TEST

/*
 * The output file fills up (RLIMIT_FSIZE, SIGXFSZ ignored: a write past it
 * is cut short, then fails with EFBIG, as on a full disk) with a reply
 * part written.  The run fails, and the file ends with the last whole
 * reply: before, it ended in the middle of one.
 */
#define CUT_LIMIT	(1024 * 1024)
#define CUT_LINES	80000u		/* about 1.7 MB of replies */

START_TEST(test_pipeline_file_output_cut)
{
	char in[CP_PATH_LEN + 8], out[CP_PATH_LEN + 8], prog[CP_PATH_LEN];
	char line[64], want[64];
	struct rlimit old, lim;
	struct cp_pipe p;
	struct stat sb;
	unsigned n = 0;
	FILE *f;
	int st;

	cp_prepare(&p, 2);
	snprintf(in, sizeof(in), "%s/in", p.cp_dir);
	snprintf(out, sizeof(out), "%s/out.txt", p.cp_dir);
	ck_assert_ptr_nonnull(f = fopen(in, "we"));
	for (unsigned i = 0; i < CUT_LINES; i++)
		fprintf(f, "echo line number %u\n", i);
	ck_assert_int_eq(fclose(f), 0);
	/* Small queues: the segments in /dev/shm count against the limit. */
	cp_server(prog, sizeof(prog));
	ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = (struct rlimit){ CUT_LIMIT, old.rlim_max };  /* soft: undone */
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	signal(SIGXFSZ, SIG_IGN);
	p.cp_pid = cp_spawnv(&p, CP_ARGS(prog, "--name", p.cp_name,
	    "--pidfile", p.cp_pidfile, "--processors", "2", "--capacity", "64",
	    "--max-line", "256", "--window", "64", "--max-connections", "1",
	    "--input", in, "--output", out), -1);
	signal(SIGXFSZ, SIG_DFL);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	st = cp_wait_exit(&p, CP_WAIT_S);
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 74, "output past "
	    "RLIMIT_FSIZE: status %#x, expected exit 74", st);
	CP_ASSERT(&p, cp_log_has(&p, "cannot write the output: File too "
	    "large"), "no line says the output failed");
	ck_assert_int_eq(stat(out, &sb), 0);
	ck_assert_int_le(sb.st_size, CUT_LIMIT);
	ck_assert_int_gt(sb.st_size, CUT_LIMIT - 64);
	ck_assert_ptr_nonnull(f = fopen(out, "re"));
	while (fgets(line, sizeof(line), f) != NULL) {
		snprintf(want, sizeof(want), "OK line number %u\n", n++);
		CP_ASSERT(&p, strcmp(line, want) == 0, "output line %u: '%s', "
		    "expected '%s'", n, line, want);
	}
	fclose(f);
	CP_ASSERT(&p, n > 0, "no reply in the output");
	cp_assert_gone(&p);
}
END_TEST

/* Is pid in an open(2) that waits, as for the other end of a FIFO? */
static bool
in_open(pid_t pid)
{
	char path[64], buf[64];
	long nr = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return false;
	if (fgets(buf, sizeof(buf), f) != NULL)
		nr = strtol(buf, NULL, 10);
	fclose(f);
	return nr == SYS_openat || nr == SYS_open;
}

/*
 * File mode waiting to open an output FIFO nobody reads yet: SIGTERM (or
 * SIGINT) ends it with the signal's usual status, a line saying so, and
 * no pidfile left.  Before, the signal's default action killed it there
 * and the pidfile stayed, for the next start to find.
 */
START_TEST(test_pipeline_file_fifo_signal)
{
	static const int sigs[] = { SIGTERM, SIGINT };
	char in[CP_PATH_LEN + 8], fifo[CP_PATH_LEN + 8];
	int sig = sigs[_i], st;
	struct cp_pipe p;

	cp_prepare(&p, 3);
	snprintf(in, sizeof(in), "%s/in", p.cp_dir);
	snprintf(fifo, sizeof(fifo), "%s/fifo", p.cp_dir);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	st = open(in, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(st, 0);
	cp_sends(st, "echo 1\n");
	close(st);
	file_spawn(&p, in, fifo, -1);
	for (int i = 0; !in_open(p.cp_pid); i++) {
		CP_ASSERT(&p, i < CP_WAIT_S * 100, "shmpipe never waited to "
		    "open the FIFO");
		usleep(10000);
	}
	kill(p.cp_pid, sig);
	st = cp_wait_exit(&p, CP_WAIT_S);
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 128 + sig,
	    "status %#x, expected exit %d", st, 128 + sig);
	CP_ASSERT(&p, cp_log_has(&p, "while waiting to open"), "no line says "
	    "why it stopped");
	cp_assert_gone(&p);
	unlink(fifo);
}
END_TEST

START_TEST(test_pipeline_file_mode_pipe)
{
	char out[CP_PATH_LEN + 8];
	struct cp_pipe p;
	FILE *want = tmpfile();
	int pfd[2], st;

	cp_prepare(&p, 3);
	snprintf(out, sizeof(out), "%s/out.txt", p.cp_dir);
	ck_assert_ptr_nonnull(want);
	ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
	file_spawn(&p, "-", out, pfd[0]);
	close(pfd[0]);
	file_requests(pfd[1], want);
	close(pfd[1]);
	st = cp_wait_exit(&p, CP_WAIT_S);
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 0, "file mode from "
	    "a pipe: status %#x, expected exit 0", st);
	file_compare(&p, out, want);
	cp_assert_gone(&p);
	fclose(want);
}
END_TEST

/* ---- Crash: processes killed under load -------------------------------- */

#define KILL_LOAD	100000		/* requests of a load killed into */
#define KILL_TIMES	5		/* SIGKILLs of a stage during it */
#define KILL_PROC	3		/* of a processor (the others go on
					 * meanwhile: fewer fit in the load) */
#define KILL_EVERY	15000		/* answered requests between them */

/*
 * Under a load of KILL_LOAD requests (16 connections, 16 deep), SIGKILL
 * the process in `row` `times` times, each once the pipeline has answered
 * another KILL_EVERY and its last successor is ready.  Leaves the bench's
 * run for the caller to judge; the deaths and restarts must be logged.
 */
static void
kill_stage(struct cp_pipe *p, struct cp_bench *b, uint32_t row,
    const char *who, bool tcp, int times)
{
	char started[64];
	pid_t pid;

	cp_prepare(p, 4);
	if (tcp)
		cp_use_tcp(p);
	cp_spawn(p, NULL);
	cp_wait_ready(p);
	cp_bench_start(b, p, CP_ARGS("-c", "16", "-d", "16", "-n", "100000"));
	for (int k = 0; k < times; k++) {
		pid = kill_under_load(p, b, row, 10000 + KILL_EVERY *
		    (uint64_t)k);
		assert_logged_kill(p, who, pid);
	}
	cp_bench_wait(b);
	snprintf(started, sizeof(started), "started %s (pid", who);
	CP_ASSERT(p, cp_log_count(p, started) == 1 + (size_t)times, "%s was "
	    "not restarted %d times", who, times);
}

START_TEST(test_pipeline_kill_processor)
{
	struct cp_pipe p;
	struct cp_bench b;

	kill_stage(&p, &b, SV_ROW_PROC0 + 1, "processor 1", false, KILL_PROC);
	cp_bench_assert_clean(&p, &b, KILL_LOAD);
	cp_stop(&p);
}
END_TEST

START_TEST(test_pipeline_kill_request)
{
	struct cp_pipe p;
	struct cp_bench b;

	kill_stage(&p, &b, SV_ROW_REQUEST, "request", false, KILL_TIMES);
	cp_bench_assert_clean(&p, &b, KILL_LOAD);
	cp_stop(&p);
}
END_TEST

START_TEST(test_pipeline_kill_request_tcp)
{
	struct cp_pipe p;
	struct cp_bench b;

	kill_stage(&p, &b, SV_ROW_REQUEST, "request", true, KILL_TIMES);
	cp_bench_assert_clean(&p, &b, KILL_LOAD);
	cp_stop(&p);
}
END_TEST

START_TEST(test_pipeline_kill_reply)
{
	struct cp_pipe p;
	struct cp_bench b;

	kill_stage(&p, &b, SV_ROW_REPLY, "reply", true, KILL_TIMES);
	cp_bench_assert_clean(&p, &b, KILL_LOAD);
	cp_stop(&p);
}
END_TEST

/*
 * The same over a Unix socket, which cannot tell a new reply process how
 * much of the writev(2) the dead one was killed in went out: rather than
 * send replies twice, or half of one, it closes that connection (see
 * stage_reply.c).  So nothing wrong, repeated or out of order, ever; at
 * most one connection closed per kill, with only its own requests in
 * flight unanswered.
 */
START_TEST(test_pipeline_kill_reply_unix)
{
	static const char *const none[] = { "wrong", "out_of_order",
	    "duplicated", "timeouts" };
	struct cp_pipe p;
	struct cp_bench b;
	uint64_t dropped, missing;

	kill_stage(&p, &b, SV_ROW_REPLY, "reply", false, KILL_TIMES);
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
		CP_ASSERT(&p, cp_bench_u64(&b, none[i]) == 0, "%s: %s",
		    none[i], b.b_json);
	dropped = cp_bench_u64(&b, "connections_dropped");
	missing = cp_bench_u64(&b, "missing");
	CP_ASSERT(&p, dropped <= KILL_TIMES && missing <= 16 * dropped &&
	    cp_bench_u64(&b, "ok") + missing == cp_bench_u64(&b, "sent"),
	    "%s", b.b_json);
	CP_ASSERT(&p, cp_log_count(&p, "cannot say how much went out; "
	    "closing it") == dropped, "%" PRIu64 " connections dropped, not "
	    "as logged", dropped);
	if (dropped > 0)
		fprintf(stderr, "kill_reply_unix: %" PRIu64 " connection(s) "
		    "closed (a kill inside writev)\n", dropped);
	cp_stop(&p);
}
END_TEST

/*
 * The reply process killed at each step of accounting for a write
 * (build/shmpipe-fi, SHMQ_FAULT=POINT:N: each reply process dies the Nth
 * time it passes POINT), over TCP: whatever the dead one had stored, its
 * successor must neither write a reply again nor lose one.  Before
 * out_total became the one commit, dying between its store and the rest
 * wedged connections (replies freed, not counted as written).
 */
START_TEST(test_pipeline_reply_dies_advancing)
{
	static const char *const points[] = { "reply.total:200",
	    "reply.marked:200", "reply.freed:1000" };
	struct cp_pipe p;

	for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
		cp_prepare(&p, 2);
		cp_use_tcp(&p);
		p.cp_binary = "shmpipe-fi";
		ck_assert_int_eq(setenv("SHMQ_FAULT", points[i], 1), 0);
		cp_spawn(&p, NULL);
		unsetenv("SHMQ_FAULT");
		cp_wait_ready(&p);
		/* Load until the reply process has died there (a slower
		 * build writes more replies at a time: fewer passes). */
		for (int run = 0; !cp_log_has(&p, "exited 86"); run++) {
			CP_ASSERT(&p, run < 40, "the reply process did not "
			    "die at %s", points[i]);
			cp_bench_run(&p, 5000, CP_ARGS("-c", "8", "-d", "16",
			    "-n", "5000"));
		}
		cp_bench_run(&p, 5000, CP_ARGS("-c", "8", "-d", "16", "-n",
		    "5000"));
		cp_stop(&p);
	}
}
END_TEST

/*
 * A reply process killed inside a write to a Unix socket (reply.wrote:
 * "OK a" went out, out_total does not count it), then its successor
 * killed adopting that connection, its mark caught up and nothing decided
 * yet (reply.adopting; SHMQ_FAULT_ONCE: each point fires in one process
 * only).  The third must still see that a write was in flight and close
 * the connection, not write "OK a" again from the short count: while
 * adopt() cleared the busy bit before acting on it, it did.
 */
START_TEST(test_pipeline_reply_dies_deciding)
{
	struct cp_pipe p;
	char got[LINE_MAX_TEST];
	int fd;

	cp_prepare(&p, 1);
	p.cp_binary = "shmpipe-fi";
	ck_assert_int_eq(setenv("SHMQ_FAULT", "reply.wrote,reply.adopting",
	    1), 0);
	ck_assert_int_eq(setenv("SHMQ_FAULT_ONCE", p.cp_dir, 1), 0);
	cp_spawn(&p, NULL);
	unsetenv("SHMQ_FAULT");
	unsetenv("SHMQ_FAULT_ONCE");
	cp_wait_ready(&p);
	fd = cp_connect(&p);
	cp_expect(fd, "echo a", "OK a");
	CP_ASSERT(&p, cp_line(fd, got, sizeof(got)) < 0, "'%s' after 'OK a': "
	    "a reply process wrote again what a dead one had sent", got);
	cp_close(fd);
	CP_ASSERT(&p, cp_log_count(&p, "exited 86") == 2, "%zu reply "
	    "processes died at a crash point, not 2",
	    cp_log_count(&p, "exited 86"));
	CP_ASSERT(&p, cp_log_count(&p, "cannot say how much went out; "
	    "closing it") == 1, "the connection was not closed as unsure");
	/* The third serves on. */
	cp_serves(&p, "b");
	cp_stop(&p);
}
END_TEST

/* Wait until a processor is busy with a request. */
static void
wait_busy(struct cp_pipe *p, const struct ctl *c)
{
	uint64_t end = now_ms() + CP_WAIT_S * 1000u;

	for (;;) {
		for (uint32_t r = SV_ROW_PROC0; r < SV_ROW_PROC0 + p->cp_procs;
		    r++)
			if (atomic_load(&ctl_proc(c, r)->busy_since_ns) != 0)
				return;
		CP_ASSERT(p, now_ms() < end, "no processor busy after %d s",
		    CP_WAIT_S);
		nap_ms(1);
	}
}

/*
 * A reply parked in the slab (reply 1, waiting for reply 0, a sleep) whose
 * length something scribbled past reply_max, then the reply process
 * killed: its successor must not index that slot, or it writes the bytes
 * beyond the reply (other clients' replies, or past the mapping) once
 * reply 0 comes.  It frees it, counts it, and closes the connection whose
 * reply it was: the client sees the end of its stream, nothing else, and
 * the pipeline serves on.
 */
START_TEST(test_pipeline_reply_len_corrupt)
{
	uint64_t end = now_ms() + CP_WAIT_S * 1000u;
	struct shmpipe_slab *s = NULL;
	struct cp_pipe p;
	struct ctl c;
	char got[LINE_MAX_TEST];
	pid_t old;
	int fd;

	cp_start(&p, 2, NULL);
	CP_ASSERT(&p, ctl_open(&c, p.cp_name, 0) == 0, "cannot map the "
	    "control segment read-write");
	fd = cp_connect(&p);
	/* Reply 1 after reply 0 is taken: by the other processor. */
	cp_sends(fd, "sleep 4000\n");
	wait_busy(&p, &c);
	cp_sends(fd, "echo x\n");
	while (s == NULL) {
		for (uint32_t i = 0; s == NULL && i < c.c_g.slab_slots; i++)
			if (SHMPIPE_SLAB_STAGE(atomic_load(&ctl_slab(&c,
			    i)->stage)) == SHMPIPE_SLAB_FILLED)
				s = ctl_slab(&c, i);
		CP_ASSERT(&p, s != NULL || now_ms() < end, "reply 1 never "
		    "parked in the slab");
		nap_ms(1);
	}
	CP_ASSERT(&p, atomic_load(&s->seq) == 1 && atomic_load(&s->len) ==
	    4 && memcmp(ctl_slab_data(s), "OK x", 4) == 0, "the slot filled "
	    "is not reply 1's");
	atomic_store(&s->len, c.c_g.reply_max + 1);
	old = cp_row_pid(&c, SV_ROW_REPLY);
	kill(old, SIGKILL);
	wait_row_replaced(&p, &c, SV_ROW_REPLY, old);
	CP_ASSERT(&p, cp_line(fd, got, sizeof(got)) < 0, "got '%s', expected "
	    "the connection closed", got);
	cp_close(fd);
	CP_ASSERT(&p, atomic_load(&c.c_hdr->corrupt) == 1, "%" PRIu64 " "
	    "corrupt slots counted, not 1", atomic_load(&c.c_hdr->corrupt));
	CP_ASSERT(&p, cp_log_count(&p, "started reply") == 2, "the reply "
	    "process died again");
	cp_serves(&p, "b");
	ctl_close(&c);
	cp_stop(&p);
}
END_TEST

/*
 * Stages never yield before they sleep (stage_policy()): a yield would
 * hand the CPU to a stage that feeds them a few messages at a time.  In
 * shmpipe-fi, SHMQ_FAULT=wait.yielded kills any process that yields; one
 * request at a time leaves each processor and the reply process waiting
 * between requests, and none may die.
 */
START_TEST(test_pipeline_stages_never_yield)
{
	char word[16];
	struct cp_pipe p;

	cp_prepare(&p, 2);
	p.cp_binary = "shmpipe-fi";
	ck_assert_int_eq(setenv("SHMQ_FAULT", "wait.yielded", 1), 0);
	cp_spawn(&p, NULL);
	unsetenv("SHMQ_FAULT");
	cp_wait_ready(&p);
	for (int i = 0; i < 20; i++) {
		snprintf(word, sizeof(word), "w%d", i);
		cp_serves(&p, word);
	}
	CP_ASSERT(&p, cp_log_count(&p, "exited 86") == 0, "%zu stage(s) "
	    "yielded before sleeping", cp_log_count(&p, "exited 86"));
	cp_stop(&p);
}
END_TEST

/*
 * The stage threads of a shmpipe-threaded (named request, reply and
 * processor N; the sanitizers run threads of their own) and how many of
 * them run SCHED_BATCH; *main_batch: whether its main thread does.
 */
static unsigned
stage_threads(struct cp_pipe *p, pid_t pid, unsigned *batch,
    bool *main_batch)
{
	char path[96], comm[32];
	struct dirent *de;
	unsigned n = 0;
	DIR *d;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	CP_ASSERT(p, (d = opendir(path)) != NULL, "%s: %s", path,
	    strerror(errno));
	*batch = 0;
	*main_batch = false;
	while ((de = readdir(d)) != NULL) {
		pid_t tid = (pid_t)strtol(de->d_name, NULL, 10);
		bool is_batch;

		if (tid <= 0)
			continue;
		is_batch = sched_getscheduler(tid) == SCHED_BATCH;
		if (tid == pid)
			*main_batch = is_batch;
		snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", (int)pid,
		    (int)tid);
		if ((f = fopen(path, "r")) == NULL)
			continue;		/* ended meanwhile */
		if (fgets(comm, sizeof(comm), f) != NULL &&
		    (strcmp(comm, "request\n") == 0 || strcmp(comm,
		    "reply\n") == 0 || strncmp(comm, "processor ", 10) == 0)) {
			n++;
			*batch += is_batch;
		}
		fclose(f);
	}
	closedir(d);
	return n;
}

/*
 * Every stage runs SCHED_BATCH (stage_policy()), a restarted one too, and
 * the supervisor, or shmpipe-threaded's main thread, stays SCHED_OTHER.
 * With --sched other the stages run SCHED_OTHER, though the server was
 * started SCHED_BATCH (as under chrt -b) and would have handed it down.
 */
START_TEST(test_pipeline_stages_sched)
{
	bool batch = _i == 0, main_batch;
	struct sched_param sp = { .sched_priority = 0 };
	uint32_t rows = SV_ROW_PROC0 + 2;
	struct cp_pipe p;
	struct ctl c;
	pid_t pid;

	cp_prepare(&p, 2);
	if (!batch)
		ck_assert_int_eq(sched_setscheduler(0, SCHED_BATCH, &sp), 0);
	cp_spawn(&p, batch ? NULL : CP_ARGS("--sched", "other"));
	if (!batch)
		ck_assert_int_eq(sched_setscheduler(0, SCHED_OTHER, &sp), 0);
	cp_wait_ready(&p);
	cp_serves(&p, "sched");
	cp_ctl(&p, &c);
	if (cp_threads()) {
		unsigned nb, n = stage_threads(&p, p.cp_pid, &nb, &main_batch);

		CP_ASSERT(&p, n == rows, "%u stage threads; expected %u", n,
		    rows);
		CP_ASSERT(&p, nb == (batch ? rows : 0), "%u stage threads run "
		    "batch; expected %u", nb, batch ? rows : 0);
		/* The main thread keeps what it was started with. */
		CP_ASSERT(&p, main_batch == !batch, "the main thread runs %s",
		    main_batch ? "batch" : "other");
		cp_stop(&p);
		return;
	}
	for (uint32_t r = 0; r < rows; r++) {
		int pol = sched_getscheduler(cp_row_pid(&c, r));

		CP_ASSERT(&p, pol == (batch ? SCHED_BATCH : SCHED_OTHER),
		    "row %u runs policy %d; expected %s", r, pol, batch ?
		    "SCHED_BATCH" : "SCHED_OTHER");
	}
	if (batch)
		CP_ASSERT(&p, sched_getscheduler(p.cp_pid) == SCHED_OTHER,
		    "the supervisor runs policy %d; expected SCHED_OTHER",
		    sched_getscheduler(p.cp_pid));
	pid = cp_row_pid(&c, SV_ROW_PROC0);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	pid = wait_row_replaced(&p, &c, SV_ROW_PROC0, pid);
	CP_ASSERT(&p, sched_getscheduler(pid) == (batch ? SCHED_BATCH :
	    SCHED_OTHER), "the restarted processor runs policy %d",
	    sched_getscheduler(pid));
	cp_serves(&p, "after");
	cp_stop(&p);
}
END_TEST

/*
 * The request process dies between claiming a connection slot and handing
 * the client's descriptor to the supervisor (shmpipe-fi,
 * SHMQ_FAULT=request.claimed:2: each request process dies at its second
 * claim).  No process holds that connection any more; the supervisor must
 * give its slot up, or with --max-connections 1 every later client is
 * refused for good.  Twice, so that a successor's death counts as well.
 */
START_TEST(test_pipeline_request_dies_claiming)
{
	char dead[64];
	struct cp_pipe p;
	struct ctl c;
	pid_t pid;
	int fd;

	cp_prepare(&p, 2);
	p.cp_binary = "shmpipe-fi";
	ck_assert_int_eq(setenv("SHMQ_FAULT", "request.claimed:2", 1), 0);
	cp_spawn(&p, CP_ARGS("--max-connections", "1"));
	unsetenv("SHMQ_FAULT");
	cp_wait_ready(&p);
	cp_ctl(&p, &c);
	for (int k = 0; k < 2; k++) {
		/* This request process's first claim: served. */
		fd = cp_connect(&p);
		cp_expect(fd, "echo first", "OK first");
		cp_close(fd);
		wait_conns_free(&p, &c, 0);
		/* Its second: it dies there, and the client's stream ends. */
		pid = cp_row_pid(&c, SV_ROW_REQUEST);
		fd = cp_connect(&p);
		snprintf(dead, sizeof(dead), "request (pid %d) exited %d",
		    (int)pid, SHMQ_FAULT_EXIT);
		cp_wait_log(&p, dead);
		cp_expect_eof(fd);
		cp_close(fd);
		wait_row_replaced(&p, &c, SV_ROW_REQUEST, pid);
		/* Its slot is given back. */
		wait_conns_free(&p, &c, 0);
	}
	cp_serves(&p, "after");
	CP_ASSERT(&p, cp_log_count(&p, "the request process died before its "
	    "descriptor reached us") == 2, "the two slots given up were not "
	    "logged");
	ctl_close(&c);
	cp_stop(&p);
}
END_TEST

START_TEST(test_pipeline_poison)
{
	struct cp_pipe p;
	struct cp_bench b;
	int fd;

	cp_start(&p, 4, CP_ARGS("--enable-crash"));
	cp_bench_start(&b, &p, CP_ARGS("-c", "8", "-d", "8", "-n", "40000",
	    "--crash-at", "200"));
	fd = cp_connect(&p);
	cp_expect(fd, "echo a", "OK a");
	cp_expect(fd, "crash", "ERR request crashed the processor 2 times");
	cp_expect(fd, "echo b", "OK b");
	cp_bench_wait(&b);
	cp_bench_assert_clean(&p, &b, 40000);
	ck_assert_uint_eq(cp_bench_u64(&b, "err"), 1);
	CP_ASSERT(&p, cp_log_count(&p, "quarantined request") == 2,
	    "expected two requests quarantined");
	cp_close(fd);
	cp_stop(&p);
}
END_TEST

START_TEST(test_pipeline_request_timeout)
{
	struct cp_pipe p;
	struct ctl c;
	int fd, other;

	cp_start(&p, 2, CP_ARGS("--request-timeout", "200"));
	cp_ctl(&p, &c);
	fd = cp_connect(&p);
	other = cp_connect(&p);
	cp_sends(fd, "sleep 5000\necho behind\n");
	cp_wait_log(&p, "spent over 200 ms on request 0 of connection");
	cp_expect(other, "echo meanwhile", "OK meanwhile");
	expect_n(fd, 1, "ERR timeout: the request ran longer than 200 ms");
	expect_n(fd, 1, "OK behind");
	cp_expect(fd, "sleep 10", "OK 10");
	CP_ASSERT(&p, cp_log_count(&p, "killed by signal 9 (SIGKILL) holding "
	    "request 0") == 1, "the processor was not killed");
	/* It is replaced, and all serve. */
	wait_log_count(&p, "started processor", 3);
	for (uint32_t r = SV_ROW_PROC0; r < SV_ROW_PROC0 + 2; r++)
		wait_row_replaced(&p, &c, r, 0);
	cp_bench_run(&p, 5000, CP_ARGS("-c", "4", "-d", "8", "-n", "5000"));
	ctl_close(&c);
	cp_close(fd);
	cp_close(other);
	cp_stop(&p);
}
END_TEST

/*
 * SIGKILL of the supervisor, or of the whole threaded process: the stages
 * go with it, clients see their streams end, and a new one with the same
 * name, pidfile and socket cleans up after it and serves.
 */
START_TEST(test_pipeline_supervisor_killed)
{
	struct cp_pipe p, q;
	pid_t rows[SV_ROW_PROC0 + 2], old;
	char want[160];
	struct ctl c;
	int fd, st;

	cp_start(&p, 2, NULL);
	cp_ctl(&p, &c);
	for (uint32_t r = 0; r < SV_ROW_PROC0 + 2; r++)
		rows[r] = cp_row_pid(&c, r);
	ctl_close(&c);
	fd = cp_connect(&p);
	cp_expect(fd, "echo up", "OK up");
	old = p.cp_pid;
	kill(old, SIGKILL);
	st = cp_wait_exit(&p, CP_WAIT_S);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	for (uint32_t r = 0; r < SV_ROW_PROC0 + 2; r++)
		CP_ASSERT(&p, cp_pid_gone(rows[r], CP_WAIT_S), "stage pid %d "
		    "outlived its supervisor", (int)rows[r]);
	cp_expect_eof(fd);
	cp_close(fd);
	/* The threaded build's are memory of the process, gone with it. */
	CP_ASSERT(&p, cp_segments(p.cp_name) == (p.cp_threads ? 0 : 3),
	    "expected the %d segments of the killed supervisor",
	    p.cp_threads ? 0 : 3);
	/* The same name, pidfile and socket: it cleans up and serves. */
	q = p;
	cp_spawn(&q, NULL);
	cp_wait_ready(&q);
	snprintf(want, sizeof(want), "removing stale segments of pipeline %s "
	    "(its supervisor, pid %d, is gone)", q.cp_name, (int)old);
	CP_ASSERT(&q, cp_log_has(&q, want) == !q.cp_threads, "'%s' %slogged",
	    want, q.cp_threads ? "" : "not ");
	cp_serves(&q, "again");
	cp_bench_run(&q, 5000, CP_ARGS("-c", "4", "-d", "8", "-n", "5000"));
	cp_stop(&q);
}
END_TEST

/*
 * Started again at once after a SIGKILL, as Restart=always does, on the
 * same name and socket: the new supervisor waits until the stages the
 * kernel is killing have let go of the name (and so of the listener),
 * then serves.  It used to find the old listener still answering, or the
 * address in use, now and then, and exit 71: 6 of 15 under load in a
 * black-box run; rarely here, without load, so this guards the behaviour
 * more than it catches that race.
 */
START_TEST(test_pipeline_supervisor_killed_restart)
{
	struct cp_pipe p, q;
	int st;

	cp_start(&p, 2, NULL);
	kill(p.cp_pid, SIGKILL);
	st = cp_wait_exit(&p, CP_WAIT_S);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	q = p;
	cp_spawn(&q, NULL);
	cp_wait_ready(&q);
	cp_serves(&q, "again");
	cp_stop(&q);
}
END_TEST

/*
 * What a crash does to the threaded build, under the load with which
 * test_pipeline_poison shows the process build answering the crashing
 * request ERR and every other one right: the handler's SIGSEGV is the
 * whole process's.  Every connection ends at once, its requests in
 * flight unanswered and no error line; nothing is left in /dev/shm but
 * the pidfile and the socket file are, and nobody is served until
 * something starts it again (which then works, on the same socket).
 */
START_TEST(test_pipeline_threaded_crash)
{
	struct cp_pipe p, q;
	struct cp_bench b;
	int fd, other, st;

	cp_start(&p, 4, CP_ARGS("--enable-crash"));
	fd = cp_connect(&p);
	other = cp_connect(&p);
	cp_expect(fd, "echo a", "OK a");
	cp_expect(other, "echo b", "OK b");
	cp_bench_start(&b, &p, CP_ARGS("-c", "8", "-d", "8", "-n", "40000",
	    "--crash-at", "200"));
	st = cp_wait_exit(&p, CP_WAIT_S);
	CP_ASSERT(&p, WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "status "
	    "%#x, expected death by SIGSEGV", st);
	cp_expect_eof(fd);
	cp_expect_eof(other);
	ck_assert_int_eq(cp_bench_wait(&b), 1);
	/* Every connection dropped; what was answered was right. */
	ck_assert_uint_eq(cp_bench_u64(&b, "connections_dropped"), 8);
	ck_assert_uint_eq(cp_bench_u64(&b, "err"), 0);
	ck_assert_uint_eq(cp_bench_u64(&b, "wrong"), 0);
	ck_assert_uint_eq(cp_bench_u64(&b, "duplicated"), 0);
	ck_assert_uint_eq(cp_bench_u64(&b, "out_of_order"), 0);
	ck_assert_uint_ge(cp_bench_u64(&b, "missing"), 1);
	ck_assert_uint_lt(cp_bench_u64(&b, "sent"), 40000);
	ck_assert_uint_eq(cp_bench_u64(&b, "ok") + cp_bench_u64(&b,
	    "missing"), cp_bench_u64(&b, "sent"));
	CP_ASSERT(&p, !cp_log_has(&p, "stopped"), "it stopped in order");
	CP_ASSERT(&p, !cp_log_has(&p, "Sanitizer"), "a sanitizer report");
	CP_ASSERT(&p, cp_segments(p.cp_name) == 0, "segments left");
	CP_ASSERT(&p, access(p.cp_pidfile, F_OK) == 0 && access(p.cp_sock,
	    F_OK) == 0, "expected its pidfile and socket file left");
	cp_close(fd);
	cp_close(other);
	q = p;
	cp_spawn(&q, CP_ARGS("--enable-crash"));
	cp_wait_ready(&q);
	cp_serves(&q, "again");
	cp_stop(&q);
}
END_TEST

/* ---- Signals ----------------------------------------------------------- */

#define DRAIN_CONNS	8
#define DRAIN_DEPTH	8

START_TEST(test_pipeline_drain)
{
	char got[LINE_MAX_TEST];
	struct cp_pipe p;
	struct cp_bench b;
	struct ctl c;
	int fd[DRAIN_CONNS];

	cp_start(&p, 4, NULL);
	cp_ctl(&p, &c);
	for (int i = 0; i < DRAIN_CONNS; i++) {
		fd[i] = cp_connect(&p);
		for (int k = 0; k < DRAIN_DEPTH; k++)
			cp_sends(fd[i], "sleep 50\n");
	}
	/* Every one of them read and on the queue; a load behind them. */
	wait_counter(&p, &c.c_hdr->accepted, DRAIN_CONNS * DRAIN_DEPTH,
	    "accepted");
	cp_bench_start(&b, &p, CP_ARGS("-c", "4", "-d", "8", "-v", "sleep",
	    "-a", "50", "-n", "100000", "-q"));
	wait_counter(&p, &c.c_hdr->accepted, DRAIN_CONNS * DRAIN_DEPTH +
	    16, "accepted");
	ctl_close(&c);
	kill(p.cp_pid, SIGTERM);
	for (int i = 0; i < DRAIN_CONNS; i++) {
		char req[64], rep[64];
		int late = 0;

		snprintf(req, sizeof(req), "echo late %d\n", i);
		snprintf(rep, sizeof(rep), "OK late %d", i);
		/* The server may have closed its side already. */
		(void)!send(fd[i], req, strlen(req), MSG_NOSIGNAL);
		expect_n(fd[i], DRAIN_DEPTH, "OK 50");
		/* The late line was read in time, or not at all. */
		while (cp_line(fd[i], got, sizeof(got)) >= 0) {
			ck_assert_int_eq(late++, 0);
			ck_assert_str_eq(got, rep);
		}
		cp_close(fd[i]);
	}
	expect_drained(&p);
	cp_assert_gone(&p);
	/* The bench's connections closed; what it got was right. */
	ck_assert_int_eq(cp_bench_wait(&b), 1);
	ck_assert_uint_eq(cp_bench_u64(&b, "wrong"), 0);
	ck_assert_uint_eq(cp_bench_u64(&b, "out_of_order"), 0);
	ck_assert_uint_eq(cp_bench_u64(&b, "duplicated"), 0);
	ck_assert_uint_eq(cp_bench_u64(&b, "timeouts"), 0);
	ck_assert_uint_gt(cp_bench_u64(&b, "ok"), 0);
	CP_ASSERT(&p, cp_log_has(&p, "terminating: answering the"),
	    "no drain logged");
}
END_TEST

/*
 * Deep drains: a request queue of 4 (--capacity) and DEEP_LINES requests
 * read from one client, most of them still to be put when SIGTERM comes.
 * The drain's signals wake the request stage's wait for room in the
 * queue; it must wait again, put every line it read and answer it, in
 * order.  Before, it took the wakeup for room, counted the unput lines
 * in the connection's last request and dropped them.
 */
#define DEEP_LINES	60
#define DEEP_FILE_LINES	200

/* Request i of a deep drain and the reply it gets: slow ones, and
 * echoes to tell them apart. */
static size_t
deep_line(unsigned i, char *buf, size_t size, char *want, size_t wsize)
{
	if (i % 2 == 0) {
		snprintf(want, wsize, "OK 20");
		return (size_t)snprintf(buf, size, "sleep 20\n");
	}
	snprintf(want, wsize, "OK deep %u", i);
	return (size_t)snprintf(buf, size, "echo deep %u\n", i);
}

/* Write n deep requests to fd; the bytes written. */
static size_t
deep_send(int fd, unsigned n)
{
	char line[64], want[64];
	size_t total = 0;

	for (unsigned i = 0; i < n; i++) {
		size_t len = deep_line(i, line, sizeof(line), want,
		    sizeof(want));

		cp_send(fd, line, len);
		total += len;
	}
	return total;
}

/* Wait until connection slot has read len bytes of its client. */
static void
wait_read(struct cp_pipe *p, const struct ctl *c, uint32_t slot, size_t len)
{
	uint64_t end = now_ms() + CP_WAIT_S * 1000u;

	while (atomic_load(&ctl_conn(c, slot)->in_total) < len) {
		CP_ASSERT(p, now_ms() < end, "connection %u: %" PRIu64 " of %zu bytes read "
		    "after %d s", slot, (uint64_t)atomic_load(&ctl_conn(c,
		    slot)->in_total), len, CP_WAIT_S);
		nap_ms(1);
	}
}

/*
 * Wait until the request stage has read `bytes` from its one client (in
 * slot `slot`'s ring), and check that most of it is not on the queue yet:
 * else the drain has nothing to do and the test proves nothing.
 */
static void
deep_wait_read(struct cp_pipe *p, const struct ctl *c, uint32_t slot,
    size_t bytes, unsigned lines)
{
	wait_read(p, c, slot, bytes);
	CP_ASSERT(p, atomic_load(&c->c_hdr->accepted) < lines / 2, "%" PRIu64
	    " of %u requests on the queue before the drain; the test proved "
	    "nothing", (uint64_t)atomic_load(&c->c_hdr->accepted), lines);
}

/* The first connection slot in use; waits for one. */
static uint32_t
deep_slot(struct cp_pipe *p, const struct ctl *c)
{
	uint64_t end = now_ms() + CP_WAIT_S * 1000u;

	for (;;) {
		for (uint32_t i = 0; i < c->c_g.max_conns; i++)
			if (SHMPIPE_CONN_FLAGS(atomic_load(&ctl_conn(c,
			    i)->state)) & SHMPIPE_CONN_OPEN)
				return i;
		CP_ASSERT(p, now_ms() < end, "the client has no connection "
		    "slot after %d s", CP_WAIT_S);
		nap_ms(1);
	}
}

START_TEST(test_pipeline_drain_deep)
{
	char line[64], want[64];
	struct cp_pipe p;
	struct ctl c;
	size_t bytes;
	int fd;

	cp_start(&p, 1, CP_ARGS("--capacity", "4"));
	cp_ctl(&p, &c);
	fd = cp_connect(&p);
	bytes = deep_send(fd, DEEP_LINES);
	deep_wait_read(&p, &c, deep_slot(&p, &c), bytes, DEEP_LINES);
	ctl_close(&c);
	kill(p.cp_pid, SIGTERM);
	for (unsigned i = 0; i < DEEP_LINES; i++) {
		deep_line(i, line, sizeof(line), want, sizeof(want));
		expect_reply(&p, fd, i, DEEP_LINES, want);
	}
	cp_expect_eof(fd);
	cp_close(fd);
	expect_drained(&p);
	cp_assert_gone(&p);
}
END_TEST

/*
 * A drain answers every whole line read, but not the start of one the
 * client is still sending: half a line is not a request (the client did
 * not end its input, which would make its last line whole).
 */
START_TEST(test_pipeline_drain_half_line)
{
	static const char sent[] = "echo a\necho b\necho par";
	static const char *const want[] = { "OK a", "OK b" };
	struct cp_pipe p;
	struct ctl c;
	uint32_t slot;
	int fd;

	cp_start(&p, 1, NULL);
	cp_ctl(&p, &c);
	fd = cp_connect(&p);
	cp_sends(fd, sent);
	slot = deep_slot(&p, &c);
	wait_read(&p, &c, slot, sizeof(sent) - 1);
	ctl_close(&c);
	kill(p.cp_pid, SIGTERM);
	for (unsigned i = 0; i < 2; i++)
		expect_reply(&p, fd, i, 2, want[i]);
	cp_expect_eof(fd);
	cp_close(fd);
	expect_drained(&p);
	cp_assert_gone(&p);
}
END_TEST

/*
 * File mode leaves its input where a program that read(2) it would: past
 * every line answered, the rest of a long line (ERR) included, so that a
 * program reading on gets nothing twice.  The long line's end comes in
 * while the queue is full (--capacity 2 behind slow requests), so that
 * it is skipped after the last message put, not with it.
 */
START_TEST(test_pipeline_file_offset)
{
	char prog[CP_PATH_LEN], in[CP_PATH_LEN + 8], out[CP_PATH_LEN + 8];
	struct cp_pipe p;
	off_t size;
	FILE *f;
	int fd, st;

	cp_prepare(&p, 1);
	snprintf(in, sizeof(in), "%s/in.txt", p.cp_dir);
	snprintf(out, sizeof(out), "%s/out.txt", p.cp_dir);
	ck_assert_ptr_nonnull(f = fopen(in, "we"));
	for (int i = 0; i < 3; i++)
		fprintf(f, "echo %0990d\n", i);
	for (int i = 0; i < 3; i++)
		fputs("sleep 100\n", f);
	for (int i = 0; i < 2000; i++)
		fputc('y', f);
	fputc('\n', f);
	fclose(f);
	ck_assert_int_ge(fd = open(in, O_RDONLY | O_CLOEXEC), 0);
	size = lseek(fd, 0, SEEK_END);
	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
	cp_server(prog, sizeof(prog));
	p.cp_pid = cp_spawnv(&p, CP_ARGS(prog, "--name", p.cp_name,
	    "--pidfile", p.cp_pidfile, "--processors", "1", "--capacity", "2",
	    "--max-line", "1000", "--input", "-", "--output", out), fd);
	st = cp_wait_exit(&p, CP_WAIT_S);
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x, "
	    "expected exit 0", st);
	CP_ASSERT(&p, lseek(fd, 0, SEEK_CUR) == size, "input left at %lld "
	    "of %lld bytes", (long long)lseek(fd, 0, SEEK_CUR),
	    (long long)size);
	close(fd);
	cp_assert_gone(&p);
}
END_TEST

/*
 * The same in file mode, from a pipe kept open (so the input never ends
 * by itself): SIGTERM stops the reading, and every line read is answered
 * in the output, in order.  Before, the request stage left at once,
 * neither parsing nor putting what it had read.
 */
/*
 * File mode (2 processors, a queue of capacity) reading a pipe, ready;
 * its output file's path into out.  Returns the pipe's write end.
 */
static int
pipe_spawn(struct cp_pipe *p, char *out, size_t outlen, const char *capacity)
{
	char prog[CP_PATH_LEN];
	int pfd[2];

	cp_prepare(p, 2);
	snprintf(out, outlen, "%s/out.txt", p->cp_dir);
	ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
	cp_server(prog, sizeof(prog));
	p->cp_pid = cp_spawnv(p, CP_ARGS(prog, "--name", p->cp_name,
	    "--pidfile", p->cp_pidfile, "--processors", "2", "--capacity",
	    capacity, "--input", "-", "--output", out), pfd[0]);
	close(pfd[0]);
	cp_wait_ready(p);
	return pfd[1];
}

START_TEST(test_pipeline_drain_file)
{
	char out[CP_PATH_LEN + 8], line[64], want[64];
	char got[LINE_MAX_TEST];
	struct cp_pipe p;
	struct ctl c;
	size_t bytes;
	unsigned n = 0;
	int wfd, st;
	FILE *f;

	wfd = pipe_spawn(&p, out, sizeof(out), "4");
	cp_ctl(&p, &c);
	bytes = deep_send(wfd, DEEP_FILE_LINES);
	deep_wait_read(&p, &c, 0, bytes, DEEP_FILE_LINES);
	ctl_close(&c);
	kill(p.cp_pid, SIGTERM);
	st = cp_wait_exit(&p, CP_WAIT_S);
	close(wfd);
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 0, "drained: "
	    "status %#x, expected exit 0", st);
	CP_ASSERT(&p, (f = fopen(out, "re")) != NULL, "no output file %s",
	    out);
	while (fgets(got, sizeof(got), f) != NULL) {
		got[strcspn(got, "\n")] = '\0';
		CP_ASSERT(&p, n < DEEP_FILE_LINES, "extra output line '%s'",
		    got);
		deep_line(n++, line, sizeof(line), want, sizeof(want));
		CP_ASSERT(&p, strcmp(got, want) == 0, "line %u: got '%s', "
		    "expected '%s'", n, got, want);
	}
	fclose(f);
	CP_ASSERT(&p, n == DEEP_FILE_LINES, "%u of %u lines answered", n,
	    DEEP_FILE_LINES);
	cp_assert_gone(&p);
}
END_TEST

/*
 * File mode reading a pipe whose writer has gone quiet but not closed it
 * (a terminal, tail -f): SIGTERM answers what was read and exits 0.
 * Before, the request stage sat in read(2) until the writer wrote again or
 * closed, in both builds.
 */
START_TEST(test_pipeline_drain_file_quiet)
{
	char out[CP_PATH_LEN + 8], got[64];
	struct cp_pipe p;
	struct ctl c;
	int wfd, st;
	FILE *f;

	wfd = pipe_spawn(&p, out, sizeof(out), "4096");
	cp_ctl(&p, &c);
	cp_sends(wfd, "echo one\necho two\n");
	for (int i = 0; atomic_load(&c.c_hdr->answered) < 2; i++) {
		CP_ASSERT(&p, i < CP_WAIT_S * 100, "the two lines were not "
		    "answered");
		usleep(10000);
	}
	ctl_close(&c);
	kill(p.cp_pid, SIGTERM);
	st = cp_wait_exit(&p, CP_WAIT_S);
	close(wfd);
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x, "
	    "expected exit 0", st);
	CP_ASSERT(&p, (f = fopen(out, "re")) != NULL, "no output file %s",
	    out);
	CP_ASSERT(&p, fgets(got, sizeof(got), f) != NULL &&
	    strcmp(got, "OK one\n") == 0, "first line wrong");
	CP_ASSERT(&p, fgets(got, sizeof(got), f) != NULL &&
	    strcmp(got, "OK two\n") == 0, "second line wrong");
	CP_ASSERT(&p, fgets(got, sizeof(got), f) == NULL, "extra output");
	fclose(f);
	cp_assert_gone(&p);
}
END_TEST

/*
 * The request process killed in a deep drain, while its processor is
 * stopped (so it cannot have put everything): its successor starts into
 * the drain, must take up the connections the supervisor hands it, and
 * put and answer every line left in their rings.  Before, it drained the
 * nothing it held, and the client got the few replies of what was put.
 */
START_TEST(test_pipeline_drain_request_killed)
{
	char line[64], want[64], dead[64];
	struct cp_pipe p;
	struct ctl c;
	pid_t req, proc;
	size_t bytes;
	int fd;

	cp_start(&p, 1, CP_ARGS("--capacity", "4"));
	cp_ctl(&p, &c);
	fd = cp_connect(&p);
	bytes = deep_send(fd, DEEP_LINES);
	deep_wait_read(&p, &c, deep_slot(&p, &c), bytes, DEEP_LINES);
	req = cp_row_pid(&c, SV_ROW_REQUEST);
	proc = cp_row_pid(&c, SV_ROW_PROC0);
	ck_assert_int_eq(kill(proc, SIGSTOP), 0);
	kill(p.cp_pid, SIGTERM);
	cp_wait_log(&p, "terminating: answering the");
	ck_assert_int_eq(kill(req, SIGKILL), 0);
	snprintf(dead, sizeof(dead), "request (pid %d) killed by signal 9",
	    (int)req);
	cp_wait_log(&p, dead);
	CP_ASSERT(&p, atomic_load(&c.c_hdr->accepted) < DEEP_LINES, "every "
	    "request was put before the kill; the test proved nothing");
	ck_assert_int_eq(kill(proc, SIGCONT), 0);
	ctl_close(&c);
	for (unsigned i = 0; i < DEEP_LINES; i++) {
		deep_line(i, line, sizeof(line), want, sizeof(want));
		expect_reply(&p, fd, i, DEEP_LINES, want);
	}
	cp_expect_eof(fd);
	cp_close(fd);
	expect_drained(&p);
	cp_assert_gone(&p);
}
END_TEST

/*
 * A drain that stops at the client's window (--conn-window 2) waits for
 * replies to make room, and goes on until no whole line is left: a window
 * that opened between staging and looking must not read as "only half a
 * line left".  The processor is stopped until the drain starts, so every
 * line is read and waits behind the window.
 */
#define WIN_LINES	600

START_TEST(test_pipeline_drain_window)
{
	char want[32], *all;
	size_t len = 0;
	struct cp_pipe p;
	struct ctl c;
	uint32_t slot;
	pid_t proc;
	int fd;

	cp_start(&p, 1, CP_ARGS("--conn-window", "2"));
	cp_ctl(&p, &c);
	proc = cp_row_pid(&c, SV_ROW_PROC0);
	ck_assert_int_eq(kill(proc, SIGSTOP), 0);
	ck_assert_ptr_nonnull(all = malloc(WIN_LINES * 16));
	for (unsigned i = 0; i < WIN_LINES; i++)
		len += (size_t)sprintf(all + len, "echo %u\n", i);
	fd = cp_connect(&p);
	cp_send(fd, all, len);
	free(all);
	slot = deep_slot(&p, &c);
	wait_read(&p, &c, slot, len);
	kill(p.cp_pid, SIGTERM);
	cp_wait_log(&p, "terminating: answering the");
	ck_assert_int_eq(kill(proc, SIGCONT), 0);
	ctl_close(&c);
	for (unsigned i = 0; i < WIN_LINES; i++) {
		snprintf(want, sizeof(want), "OK %u", i);
		expect_reply(&p, fd, i, WIN_LINES, want);
	}
	cp_expect_eof(fd);
	cp_close(fd);
	expect_drained(&p);
	cp_assert_gone(&p);
}
END_TEST

/*
 * A processor that --max-requests recycles during a drain is replaced:
 * requests are left to run.  Before, a processor that exited 0 in a drain
 * was retired as if it had emptied the queue, so once each had served its
 * share nobody took the rest, the request stage waited for ever for room
 * in the window (--window 16) to put the lines it had read, and the
 * drain never ended.  The processor is stopped until the drain starts, so
 * every line is read and most wait behind the window.
 */
#define RECYCLE_LINES	64

START_TEST(test_pipeline_drain_recycles)
{
	char want[32], *all;
	size_t len = 0;
	struct cp_pipe p;
	struct ctl c;
	pid_t proc;
	int fd;

	cp_start(&p, 1, CP_ARGS("--max-requests", "2", "--window", "16",
	    "--conn-window", "16"));
	cp_ctl(&p, &c);
	proc = cp_row_pid(&c, SV_ROW_PROC0);
	ck_assert_int_eq(kill(proc, SIGSTOP), 0);
	ck_assert_ptr_nonnull(all = malloc(RECYCLE_LINES * 16));
	for (unsigned i = 0; i < RECYCLE_LINES; i++)
		len += (size_t)sprintf(all + len, "echo %u\n", i);
	fd = cp_connect(&p);
	cp_send(fd, all, len);
	free(all);
	wait_read(&p, &c, deep_slot(&p, &c), len);
	kill(p.cp_pid, SIGTERM);
	cp_wait_log(&p, "terminating: answering the");
	CP_ASSERT(&p, atomic_load(&c.c_hdr->accepted) < RECYCLE_LINES / 2,
	    "%" PRIu64 " requests on the queue before the drain; the test "
	    "proved nothing", (uint64_t)atomic_load(&c.c_hdr->accepted));
	ck_assert_int_eq(kill(proc, SIGCONT), 0);
	ctl_close(&c);
	for (unsigned i = 0; i < RECYCLE_LINES; i++) {
		snprintf(want, sizeof(want), "OK %u", i);
		expect_reply(&p, fd, i, RECYCLE_LINES, want);
	}
	cp_expect_eof(fd);
	cp_close(fd);
	expect_drained(&p);
	cp_assert_gone(&p);
}
END_TEST

/*
 * A drain does not let one connection waiting on its window hold up the
 * end of the others.  The reply process is stopped, so the first client's
 * window (--conn-window 2) stays shut while the drain runs, as a client
 * that reads nothing keeps it; the second client's end of input must be
 * recorded all the same.  Before, the drain served connections one after
 * the other, and every client behind a stuck one waited for it (up to the
 * 10 s after which a client that reads nothing is dropped).
 */
START_TEST(test_pipeline_drain_stuck_window)
{
	static const char a_lines[] = "echo a0\necho a1\necho a2\necho a3\n"
	    "echo a4\n";
	struct cp_pipe p;
	struct ctl c;
	uint32_t slot_a = UINT32_MAX, slot_b = UINT32_MAX;
	uint64_t end;
	pid_t reply;
	int a, b;

	cp_start(&p, 1, CP_ARGS("--conn-window", "2"));
	cp_ctl(&p, &c);
	reply = cp_row_pid(&c, SV_ROW_REPLY);
	ck_assert_int_eq(kill(reply, SIGSTOP), 0);
	a = cp_connect(&p);
	cp_sends(a, a_lines);
	slot_a = deep_slot(&p, &c);
	b = cp_connect(&p);
	cp_sends(b, "echo b\n");
	end = now_ms() + CP_WAIT_S * 1000u;
	while (slot_b == UINT32_MAX) {
		for (uint32_t i = 0; i < c.c_g.max_conns; i++)
			if (i != slot_a && (SHMPIPE_CONN_FLAGS(atomic_load(
			    &ctl_conn(&c, i)->state)) & SHMPIPE_CONN_OPEN))
				slot_b = i;
		CP_ASSERT(&p, slot_b != UINT32_MAX || now_ms() < end, "the "
		    "second client has no slot after %d s", CP_WAIT_S);
		nap_ms(1);
	}
	wait_read(&p, &c, slot_a, sizeof(a_lines) - 1);
	wait_read(&p, &c, slot_b, strlen("echo b\n"));
	kill(p.cp_pid, SIGTERM);
	end = now_ms() + CP_WAIT_S * 1000u;
	while (!(SHMPIPE_CONN_FLAGS(atomic_load(&ctl_conn(&c, slot_b)->state)) &
	    SHMPIPE_CONN_RD_DONE)) {
		CP_ASSERT(&p, now_ms() < end, "the drain did not finish the "
		    "second client in %d s while the first waited on its "
		    "window", CP_WAIT_S);
		nap_ms(1);
	}
	CP_ASSERT(&p, !(SHMPIPE_CONN_FLAGS(atomic_load(&ctl_conn(&c,
	    slot_a)->state)) & SHMPIPE_CONN_RD_DONE), "the first client was "
	    "finished with lines behind its window; the test proved nothing");
	ctl_close(&c);
	ck_assert_int_eq(kill(reply, SIGCONT), 0);
	expect_reply(&p, b, 0, 1, "OK b");
	cp_expect_eof(b);
	for (unsigned i = 0; i < 5; i++) {
		char want[16];
		snprintf(want, sizeof(want), "OK a%u", i);
		expect_reply(&p, a, i, 5, want);
	}
	cp_expect_eof(a);
	cp_close(a);
	cp_close(b);
	expect_drained(&p);
	cp_assert_gone(&p);
}
END_TEST

/*
 * A client is idle when it sends nothing, not when the request process
 * has not read what it sent.  The request process reads the start of a
 * line and is stopped; the rest comes meanwhile.  That client is kept
 * (it used to be cut off, and its half line dropped), while a quiet one
 * whose last request was later is closed: its time, and so the first
 * one's, has passed.
 */
START_TEST(test_pipeline_idle_unread)
{
	struct cp_pipe p;
	struct ctl c;
	pid_t req;
	int waiting, quiet;

	cp_start(&p, 1, CP_ARGS("--idle-timeout", "300"));
	cp_ctl(&p, &c);
	req = cp_row_pid(&c, SV_ROW_REQUEST);
	waiting = cp_connect(&p);
	cp_sends(waiting, "echo wai");
	wait_read(&p, &c, deep_slot(&p, &c), strlen("echo wai"));
	quiet = cp_connect(&p);
	cp_expect(quiet, "echo then nothing", "OK then nothing");
	ck_assert_int_eq(kill(req, SIGSTOP), 0);
	cp_sends(waiting, "ted\n");
	cp_wait_log(&p, "idle for 300 ms; closing it");
	ck_assert_int_eq(kill(req, SIGCONT), 0);
	ctl_close(&c);
	expect_reply(&p, waiting, 0, 1, "OK waited");
	cp_expect_eof(quiet);
	cp_close(waiting);
	cp_close(quiet);
	cp_stop(&p);
}
END_TEST

#define CHURN_CLIENTS	200

/*
 * Clients one after another, each gone before the next comes, against a
 * single connection slot (-C 1): every one is served.  The slot of the
 * last is free as soon as it is done, not at the supervisor's next tick:
 * before, nine in ten such clients were told "ERR too many connections".
 */
START_TEST(test_pipeline_conn_churn)
{
	char line[96], want[32];
	struct cp_pipe p;

	cp_start(&p, 1, CP_ARGS("--max-connections", "1"));
	for (int i = 0; i < CHURN_CLIENTS; i++) {
		int fd = cp_connect(&p);

		snprintf(line, sizeof(line), "echo %d\n", i);
		cp_sends(fd, line);
		ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
		snprintf(want, sizeof(want), "OK %d", i);
		CP_ASSERT(&p, cp_line(fd, line, sizeof(line)) > 0 &&
		    strcmp(line, want) == 0, "client %d of %d: '%s', expected "
		    "'%s'", i + 1, CHURN_CLIENTS, line, want);
		cp_expect_eof(fd);
		cp_close(fd);
	}
	cp_stop(&p);
}
END_TEST

#define HELD_CONNS	400	/* more than a stage's channel holds (~280) */

/*
 * HELD_CONNS clients connect, client i sending "echo i", and each is
 * accepted: the counter moves HELD_CONNS past where it stood.
 */
static void
held_connect(struct cp_pipe *p, const struct ctl *c, int *fd)
{
	uint64_t base = atomic_load(&c->c_hdr->conns_accepted);
	char line[32];

	for (int i = 0; i < HELD_CONNS; i++) {
		fd[i] = cp_connect(p);
		snprintf(line, sizeof(line), "echo %d\n", i);
		cp_sends(fd[i], line);
	}
	for (int i = 0; atomic_load(&c->c_hdr->conns_accepted) - base <
	    HELD_CONNS; i++) {
		CP_ASSERT(p, i < CP_WAIT_S * 100, "only %" PRIu64 " of %d "
		    "connections accepted", atomic_load(
		    &c->c_hdr->conns_accepted) - base, HELD_CONNS);
		usleep(10000);
	}
}

/* Client i of HELD_CONNS is answered "OK <word>i"; then each is closed. */
static void
held_answered(struct cp_pipe *p, int *fd, const char *word)
{
	char line[48], want[48];

	for (int i = 0; i < HELD_CONNS; i++) {
		snprintf(want, sizeof(want), "OK %s%d", word, i);
		line[0] = '\0';
		CP_ASSERT(p, cp_line(fd[i], line, sizeof(line)) > 0 &&
		    strcmp(line, want) == 0, "client %d: '%s', expected '%s'",
		    i, line, want);
		cp_close(fd[i]);
	}
}

/*
 * The reply process stopped while HELD_CONNS clients connect, each with a
 * request, and kept stopped a while after: the supervisor's channel to it
 * fills.  Every client is answered once it runs again, and (loop 1) also
 * when the pipeline was told to drain meanwhile.  Before, the supervisor
 * waited 2 s on each send to the full channel, its loop held up, then
 * dropped the connection: those clients never had a reply; and (found
 * after that was fixed) a drain ended once the queue was empty, with the
 * connections still on their way never answered and the run exiting 0.
 */
START_TEST(test_pipeline_reply_stopped_connects)
{
	int fd[HELD_CONNS], st;
	struct cp_pipe p;
	struct ctl c;
	pid_t rep;

	cp_start(&p, 1, NULL);
	cp_ctl(&p, &c);
	rep = cp_row_pid(&c, SV_ROW_REPLY);
	ck_assert_int_eq(kill(rep, SIGSTOP), 0);
	held_connect(&p, &c, fd);
	/* Stopped past the 2 s a send to the full channel used to wait. */
	usleep(2500000);
	if (_i == 1) {
		kill(p.cp_pid, SIGTERM);
		/* Until the processors are done, and the reply process is
		 * all that is left of the drain. */
		for (int i = 0; !atomic_load(&c.c_hdr->procs_closed); i++) {
			CP_ASSERT(&p, i < CP_WAIT_S * 100, "no drain");
			usleep(10000);
		}
		/* The reply process runs its drain with what it has, the
		 * supervisor stopped: it must not end it (a second is given
		 * it to do so wrongly) while connections are owed it. */
		ck_assert_int_eq(kill(p.cp_pid, SIGSTOP), 0);
		ck_assert_int_eq(kill(rep, SIGCONT), 0);
		(void)cp_pid_gone(rep, 1);
		ck_assert_int_eq(kill(p.cp_pid, SIGCONT), 0);
	} else
		ck_assert_int_eq(kill(rep, SIGCONT), 0);
	held_answered(&p, fd, "");
	ctl_close(&c);
	if (_i == 0) {
		cp_stop(&p);
		return;
	}
	st = cp_wait_exit(&p, CP_WAIT_S);
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 0, "drained: "
	    "status %#x, expected exit 0", st);
	cp_assert_gone(&p);
}
END_TEST

/*
 * The supervisor stopped (SIGSTOP, a debugger) while HELD_CONNS clients
 * connect, more than the request process's channel to it holds.  A client
 * connected before is served meanwhile, and each new one is answered once
 * the supervisor runs again.  Before, the request process waited up to
 * 2 s on each send to the full channel: all it read from stalled behind
 * that, and a connection whose send timed out never reached the reply
 * process, its client never answered.
 */
START_TEST(test_pipeline_supervisor_stopped_connects)
{
	int fd[HELD_CONNS], early;
	struct cp_pipe p;
	struct ctl c;

	cp_start(&p, 1, NULL);
	cp_ctl(&p, &c);
	early = cp_connect(&p);
	cp_expect(early, "echo before", "OK before");
	ck_assert_int_eq(kill(p.cp_pid, SIGSTOP), 0);
	held_connect(&p, &c, fd);
	cp_expect(early, "echo during", "OK during");
	ck_assert_int_eq(kill(p.cp_pid, SIGCONT), 0);
	held_answered(&p, fd, "");
	cp_expect(early, "echo after", "OK after");
	cp_close(early);
	ctl_close(&c);
	cp_stop(&p);
}
END_TEST

/*
 * A reply process replaced while HELD_CONNS clients are connected, its
 * successor stopped before it reads a thing (reply.started): more
 * connections are owed it than its channel holds.  The supervisor sent
 * them waiting up to 2 s for room each, and at the first send that timed
 * out gave up on the rest, CHAN_SYNCED too: those clients were never
 * answered again.  It now keeps what does not fit and sends it as room
 * comes.  Once it has logged the start (done with its sends, before or
 * after), the successor goes on, and every client is answered.
 */
START_TEST(test_pipeline_reply_starts_stopped)
{
	char line[48], want[48], fired[CP_DIR_LEN + 16], started[64];
	uint64_t end = now_ms() + CP_WAIT_S * 1000u;
	int fd[HELD_CONNS];
	struct cp_pipe p;
	struct ctl c;
	pid_t old, rep;

	cp_prepare(&p, 1);
	p.cp_binary = "shmpipe-fi";
	/* Marked fired: the first reply process passes the point. */
	snprintf(fired, sizeof(fired), "%s/reply.started", p.cp_dir);
	ck_assert_int_ge(fd[0] = open(fired, O_WRONLY | O_CREAT | O_CLOEXEC,
	    0600), 0);
	close(fd[0]);
	ck_assert_int_eq(setenv("SHMQ_FAULT", "reply.started", 1), 0);
	ck_assert_int_eq(setenv("SHMQ_FAULT_ONCE", p.cp_dir, 1), 0);
	ck_assert_int_eq(setenv("SHMQ_FAULT_STOP", "1", 1), 0);
	cp_spawn(&p, NULL);
	unsetenv("SHMQ_FAULT");
	unsetenv("SHMQ_FAULT_ONCE");
	unsetenv("SHMQ_FAULT_STOP");
	cp_wait_ready(&p);
	cp_ctl(&p, &c);
	for (int i = 0; i < HELD_CONNS; i++) {
		fd[i] = cp_connect(&p);
		snprintf(line, sizeof(line), "echo %d", i);
		snprintf(want, sizeof(want), "OK %d", i);
		cp_expect(fd[i], line, want);
	}
	ck_assert_int_eq(unlink(fired), 0);
	/* Killed inside a write, a connection is closed: not here. */
	for (uint32_t i = 0; i < c.c_g.max_conns; i++)
		while (SHMPIPE_OUT_BUSY(atomic_load(&ctl_conn(&c,
		    i)->out_mark))) {
			CP_ASSERT(&p, now_ms() < end, "connection %u still "
			    "being written to", i);
			nap_ms(1);
		}
	old = cp_row_pid(&c, SV_ROW_REPLY);
	ck_assert_int_eq(kill(old, SIGKILL), 0);
	while ((rep = cp_row_pid(&c, SV_ROW_REPLY)) == old || rep == 0 ||
	    cp_pid_state(rep) != 'T') {
		CP_ASSERT(&p, now_ms() < end, "no stopped successor to reply "
		    "process %d", (int)old);
		nap_ms(1);
	}
	snprintf(started, sizeof(started), "started reply (pid %d)",
	    (int)rep);
	cp_wait_log(&p, started);
	ck_assert_int_eq(kill(rep, SIGCONT), 0);
	for (int i = 0; i < HELD_CONNS; i++) {
		int n = snprintf(line, sizeof(line), "echo again %d\n", i);

		CP_ASSERT(&p, send(fd[i], line, (size_t)n, MSG_NOSIGNAL) == n,
		    "client %d: send: %s", i, strerror(errno));
	}
	held_answered(&p, fd, "again ");
	ctl_close(&c);
	cp_stop(&p);
}
END_TEST

/* Whether signal sig waits, undelivered, for process pid. */
static bool
sig_pending(pid_t pid, int sig)
{
	char path[64], line[256];
	unsigned long long mask;
	bool pending = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return false;
	while (!pending && fgets(line, sizeof(line), f) != NULL)
		if ((sscanf(line, "ShdPnd: %llx", &mask) == 1 ||
		    sscanf(line, "SigPnd: %llx", &mask) == 1) &&
		    (mask & (1ull << (sig - 1))))
			pending = true;
	fclose(f);
	return pending;
}

/*
 * SIGTERM to every process of the pipeline, as a service manager stopping
 * the whole group sends it: the supervisor drains, and the stages, which
 * take a stop only from it, answer everything accepted.  The processor is
 * held stopped until every stage has had its signal, so that no reply can
 * be written before; a reply process that stopped on its own lost them.
 */
START_TEST(test_pipeline_term_everyone)
{
	char line[64], want[64];
	struct cp_pipe p;
	struct ctl c;
	pid_t pid[3];
	int fd;

	cp_start(&p, 1, NULL);
	cp_ctl(&p, &c);
	pid[0] = cp_row_pid(&c, SV_ROW_REQUEST);
	pid[1] = cp_row_pid(&c, SV_ROW_REPLY);
	pid[2] = cp_row_pid(&c, SV_ROW_PROC0);
	ck_assert_int_eq(kill(pid[2], SIGSTOP), 0);
	fd = cp_connect(&p);
	for (unsigned i = 0; i < 8; i++) {
		snprintf(line, sizeof(line), "echo term %u", i);
		cp_sends(fd, line);
		cp_sends(fd, "\n");
	}
	wait_counter(&p, &c.c_hdr->accepted, 8, "accepted");
	kill(p.cp_pid, SIGTERM);
	cp_wait_log(&p, "terminating: answering the");
	/* The request process may be gone already: it had nothing left. */
	CP_ASSERT(&p, kill(pid[0], SIGTERM) == 0 || errno == ESRCH, "kill: %s",
	    strerror(errno));
	for (unsigned i = 1; i < 3; i++)
		ck_assert_int_eq(kill(pid[i], SIGTERM), 0);
	for (unsigned i = 0; i < 2; i++)	/* the processor's waits */
		while (sig_pending(pid[i], SIGTERM))
			nap_ms(1);
	ck_assert_int_eq(kill(pid[2], SIGCONT), 0);
	ctl_close(&c);
	for (unsigned i = 0; i < 8; i++) {
		snprintf(want, sizeof(want), "OK term %u", i);
		expect_reply(&p, fd, i, 8, want);
	}
	cp_expect_eof(fd);
	cp_close(fd);
	expect_drained(&p);
	cp_assert_gone(&p);
}
END_TEST

/*
 * A SIGTERM to the request process alone (not from the supervisor) does
 * not stop it: it used to drain and exit, and as its end looked like the
 * pipeline's, it was never replaced and nobody was served again.
 */
START_TEST(test_pipeline_term_request_alone)
{
	struct cp_pipe p;
	struct ctl c;
	pid_t req;

	cp_start(&p, 1, NULL);
	cp_ctl(&p, &c);
	req = cp_row_pid(&c, SV_ROW_REQUEST);
	ck_assert_int_eq(kill(req, SIGTERM), 0);
	while (sig_pending(req, SIGTERM))
		nap_ms(1);
	cp_serves(&p, "still served");
	CP_ASSERT(&p, cp_row_pid(&c, SV_ROW_REQUEST) == req && kill(req, 0) ==
	    0, "the request process %d went away", (int)req);
	ctl_close(&c);
	cp_stop(&p);
}
END_TEST

/* Does path accept a connection yet?  (No assertion: it may not.) */
static bool
unix_listening(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	ck_assert_int_ge(fd, 0);
	strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
	ok = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
	close(fd);
	return ok;
}

/*
 * SIGTERM the moment the pipeline can be reached, while it is still making
 * its segments: a drain of nothing, exit 0, nothing left behind.  Before,
 * the signal's default action ended it there (143), leaving the pidfile,
 * the socket file and a queue segment.
 */
START_TEST(test_pipeline_term_at_start)
{
	struct cp_pipe p;
	int st;

	cp_prepare(&p, 2);
	cp_spawn(&p, NULL);
	for (int i = 0; !unix_listening(p.cp_sock); i++) {
		CP_ASSERT(&p, i < CP_WAIT_S * 10000, "never listened on %s",
		    p.cp_sock);
		usleep(100);
	}
	kill(p.cp_pid, SIGTERM);
	st = cp_wait_exit(&p, CP_WAIT_S);
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x, "
	    "expected exit 0", st);
	cp_assert_gone(&p);
}
END_TEST

START_TEST(test_pipeline_second_signal)
{
	struct cp_pipe p;
	struct ctl c;
	int fd, st;

	cp_start(&p, 2, CP_ARGS("--request-timeout", "0"));
	cp_ctl(&p, &c);
	fd = cp_connect(&p);
	cp_sends(fd, "sleep 60000\nsleep 60000\nsleep 60000\n");
	wait_counter(&p, &c.c_hdr->accepted, 3, "accepted");
	ctl_close(&c);
	kill(p.cp_pid, SIGTERM);
	cp_wait_log(&p, "terminating: answering the 3 request(s) in flight");
	kill(p.cp_pid, SIGTERM);
	st = cp_wait_exit(&p, 20);
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 1, "second signal: "
	    "status %#x, expected exit 1", st);
	CP_ASSERT(&p, cp_log_has(&p, "second signal: stopping now"),
	    "the second signal was not logged");
	cp_assert_gone(&p);
	cp_expect_eof(fd);
	cp_close(fd);
}
END_TEST

START_TEST(test_pipeline_reload)
{
	struct cp_pipe p;
	uint64_t end = now_ms() + CP_WAIT_S * 1000u;
	struct cp_bench b;
	struct ctl c;

	cp_start(&p, 4, NULL);
	cp_ctl(&p, &c);
	cp_bench_start(&b, &p, CP_ARGS("-c", "16", "-d", "8", "-n", "50000"));
	wait_counter(&p, &c.c_hdr->answered, 2000, "answered");
	CP_ASSERT(&p, !cp_bench_done(&b), "the load ended before SIGHUP");
	kill(p.cp_pid, SIGHUP);
	/* Load, one run after another, until the reload is done. */
	for (;;) {
		cp_bench_wait(&b);
		cp_bench_assert_clean(&p, &b, 50000);
		if (cp_log_has(&p, "reload done"))
			break;
		CP_ASSERT(&p, now_ms() < end, "no reload done in %d s",
		    CP_WAIT_S);
		cp_bench_start(&b, &p, CP_ARGS("-c", "16", "-d", "8", "-n",
		    "50000"));
	}
	CP_ASSERT(&p, cp_log_has(&p, "reload: replacing 4 processors"),
	    "no reload logged");
	CP_ASSERT(&p, !cp_log_has(&p, "killed by"), "a stage was killed");
	for (uint32_t i = 0; i < 4; i++) {
		char want[64];

		snprintf(want, sizeof(want), "started processor %u (pid", i);
		CP_ASSERT(&p, cp_log_count(&p, want) == 2, "processor %u was "
		    "not replaced once", i);
	}
	cp_bench_run(&p, 5000, CP_ARGS("-c", "4", "-d", "8", "-n", "5000"));
	ctl_close(&c);
	cp_stop(&p);
}
END_TEST

/*
 * Reloads whose new processor cannot start (the handler object replaced
 * by garbage) each stop and keep the old processors, however many there
 * are: they are not a crash loop that takes the pipeline down.
 */
START_TEST(test_pipeline_reload_fails_often)
{
	char good[CP_PATH_LEN], so[CP_PATH_LEN + 16], junk[CP_PATH_LEN + 16];
	char cmd[3 * CP_PATH_LEN + 64];
	struct cp_pipe p;
	FILE *f;

	cp_prepare(&p, 2);
	cp_prog(good, sizeof(good), "handler_example.so");
	snprintf(so, sizeof(so), "%s/h.so", p.cp_dir);
	snprintf(junk, sizeof(junk), "%s/junk.so", p.cp_dir);
	snprintf(cmd, sizeof(cmd), "cp %s %s", good, so);
	ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
	cp_spawn(&p, CP_ARGS("--handler", so));
	cp_wait_ready(&p);
	/* Renamed over it: the running processors keep their mapping. */
	ck_assert_ptr_nonnull(f = fopen(junk, "we"));
	fputs("not an object\n", f);
	fclose(f);
	ck_assert_int_eq(rename(junk, so), 0);
	for (size_t k = 1; k <= 6; k++) {
		uint64_t end = now_ms() + CP_WAIT_S * 1000u;

		kill(p.cp_pid, SIGHUP);
		while (cp_log_count(&p, "reload stopped") < k) {
			CP_ASSERT(&p, !cp_log_has(&p, "requests answered"),
			    "the pipeline stopped at reload %zu", k);
			CP_ASSERT(&p, now_ms() < end, "reload %zu never "
			    "stopped", k);
			nap_ms(5);
		}
	}
	CP_ASSERT(&p, !cp_log_has(&p, "crash loop"), "failed reloads were "
	    "taken for a crash loop");
	cp_serves(&p, "still here");
	cp_stop(&p);
}
END_TEST

/*
 * What only processes can do, the threaded build refuses out loud and
 * does not do, and keeps serving: SIGHUP replaces no processor,
 * --max-requests recycles none, and --request-timeout kills no thread (a
 * request runs as long as it runs).
 */
START_TEST(test_pipeline_threaded_refusals)
{
	uint64_t served = 0;
	struct cp_pipe p;
	struct ctl c;
	int fd;

	cp_start(&p, 2, CP_ARGS("--max-requests", "100", "--request-timeout",
	    "200", "--max-deliveries", "3"));
	CP_ASSERT(&p, cp_log_has(&p, "--max-requests has no effect in the "
	    "threaded build"), "--max-requests not refused");
	CP_ASSERT(&p, cp_log_has(&p, "--request-timeout has no effect in the "
	    "threaded build"), "--request-timeout not refused");
	CP_ASSERT(&p, cp_log_has(&p, "--max-deliveries has no effect in the "
	    "threaded build"), "--max-deliveries not refused");
	fd = cp_connect(&p);
	cp_expect(fd, "sleep 400", "OK 400");
	kill(p.cp_pid, SIGHUP);
	cp_wait_log(&p, "SIGHUP: the threaded build cannot replace its "
	    "processors");
	cp_expect(fd, "echo after", "OK after");
	cp_bench_run(&p, 5000, CP_ARGS("-c", "4", "-d", "8", "-n", "5000"));
	/* One process, its rows never replaced, a processor past 100. */
	cp_ctl(&p, &c);
	for (uint32_t r = 0; r < SV_ROW_PROC0 + 2; r++) {
		struct shmpipe_proc *pr = ctl_proc(&c, r);

		ck_assert_int_eq(cp_row_pid(&c, r), p.cp_pid);
		ck_assert_uint_le(atomic_load(&pr->generation), 1);
		if (r >= SV_ROW_PROC0 && atomic_load(&pr->served) > served)
			served = atomic_load(&pr->served);
	}
	ck_assert_uint_gt(served, 100);
	ctl_close(&c);
	CP_ASSERT(&p, !cp_log_has(&p, "killing it") && !cp_log_has(&p,
	    "recycling") && !cp_log_has(&p, "reload"), "a process-only "
	    "action was logged");
	cp_close(fd);
	cp_stop(&p);
}
END_TEST

/*
 * SIGKILLs of processors still starting are not a crash loop: the
 * processor's handler waits in init() until the test lets it go, and its
 * process is killed there again and again, more often than a crash loop
 * takes.  The supervisor restarts it each time (with its backoff), then
 * serves once init() returns.  It used to give up, exit 70, and drop
 * what it had accepted.
 */
START_TEST(test_pipeline_kill_starting)
{
	static const char src[] =
	    "#define _POSIX_C_SOURCE 200809L\n"
	    "#include <stdlib.h>\n"
	    "#include <time.h>\n"
	    "#include <unistd.h>\n"
	    "#include \"shmpipe_handler.h\"\n"
	    "static int gate(void) {\n"
	    "    struct timespec ts = { 0, 1000000 };\n"
	    "    while (access(getenv(\"CP_GATE\"), F_OK) != 0)\n"
	    "        nanosleep(&ts, NULL);\n"
	    "    return 0; }\n"
	    "static int h(const struct shmpipe_request *q,\n"
	    "    struct shmpipe_result *r) { (void)q; (void)r;\n"
	    "    return SHMPIPE_PASS; }\n"
	    "const struct shmpipe_handler shmpipe_handler = {\n"
	    "    SHMPIPE_HANDLER_ABI, \"gated\", gate, 0, h };\n";
	char so[CP_PATH_LEN + 16];
	char gate[CP_PATH_LEN + 16], dead[80];
	struct cp_pipe p;
	struct ctl c;
	pid_t last = 0;
	FILE *f;

	cp_prepare(&p, 1);
	snprintf(gate, sizeof(gate), "%s/gate", p.cp_dir);
	cp_handler_build(&p, "gated", src, so, sizeof(so));
	ck_assert_int_eq(setenv("CP_GATE", gate, 1), 0);
	cp_spawn(&p, CP_ARGS("--handler", so));
	cp_wait_log(&p, "started processor 0");
	cp_ctl(&p, &c);
	for (int k = 0; k < 2 * SV_LOOP_N; k++) {
		uint64_t end = now_ms() + CP_WAIT_S * 1000u;
		pid_t pid;

		/* The next processor, started and stuck in init(). */
		while ((pid = cp_row_pid(&c, SV_ROW_PROC0)) == 0 ||
		    pid == last || atomic_load(&ctl_proc(&c,
		    SV_ROW_PROC0)->state) != SHMPIPE_PROC_STARTING) {
			CP_ASSERT(&p, now_ms() < end && !cp_log_has(&p,
			    "crash loop"), "no processor %d came back",
			    k + 1);
			nap_ms(1);
		}
		ck_assert_int_eq(kill(pid, SIGKILL), 0);
		snprintf(dead, sizeof(dead), "(pid %d) killed by signal 9",
		    (int)pid);
		cp_wait_log(&p, dead);
		last = pid;
	}
	ctl_close(&c);
	CP_ASSERT(&p, !cp_log_has(&p, "crash loop"), "SIGKILLs taken for a "
	    "crash loop");
	ck_assert_ptr_nonnull(f = fopen(gate, "we"));
	fclose(f);
	cp_wait_ready(&p);
	cp_serves(&p, "after the kills");
	unsetenv("CP_GATE");
	cp_stop(&p);
}
END_TEST

START_TEST(test_pipeline_crash_loop)
{
	static const char src[] =
	    "#include \"shmpipe_handler.h\"\n"
	    "static int no(void) { return 7; }\n"
	    "static int h(const struct shmpipe_request *q,\n"
	    "    struct shmpipe_result *r) { (void)q; (void)r;\n"
	    "    return SHMPIPE_PASS; }\n"
	    "const struct shmpipe_handler shmpipe_handler = {\n"
	    "    SHMPIPE_HANDLER_ABI, \"refuser\", no, 0, h };\n";
	char so[CP_PATH_LEN + 16];
	char want[CP_PATH_LEN + 80];
	struct cp_pipe p;
	int st;

	cp_prepare(&p, 2);
	cp_handler_build(&p, "refuser", src, so, sizeof(so));
	cp_spawn(&p, CP_ARGS("--handler", so));
	st = cp_wait_exit(&p, CP_WAIT_S);
	/* Threads are not restarted: the handler, loaded once for them
	 * all, failing stops it all. */
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == (p.cp_threads ?
	    78 : 70), "crash loop: status %#x, expected exit %d", st,
	    p.cp_threads ? 78 : 70);
	CP_ASSERT(&p, cp_log_has(&p, p.cp_threads ? "the processors cannot "
	    "start without their handler: stopping" : "crash loop: "
	    "stages failed to start 5 times in 30 s"), "no crash loop "
	    "message");
	snprintf(want, sizeof(want), "handler object '%s' refused to start: "
	    "its init() returned 7", so);
	CP_ASSERT(&p, cp_log_has(&p, want), "the reason was not logged");
	cp_assert_gone(&p);
}
END_TEST

/*
 * A handler object that calls exit(0) is named in the log and makes its
 * process exit 78, never 0: from a constructor or init(), the processors
 * of shmpipe used to be replaced at once and for ever (an exit 0 is a
 * clean stop), about 600 forks a second, and shmpipe-threaded stopped
 * with exit 0 and not a word.  From handle(), shmpipe answers the request ERR after it has
 * taken --max-deliveries processors, as any crash; shmpipe-threaded used
 * to exit 0 silently, its pidfile and socket removed as if asked to stop.
 */
START_TEST(test_pipeline_handler_exits)
{
	static const char src[] =
	    "#include <stdlib.h>\n"
	    "#include <string.h>\n"
	    "#include \"shmpipe_handler.h\"\n"
	    "__attribute__((constructor)) static void c(void) {\n"
	    "    if (getenv(\"CP_QUIT_LOAD\") != NULL) exit(0); }\n"
	    "static int i(void) {\n"
	    "    if (getenv(\"CP_QUIT_INIT\") != NULL) exit(0);\n"
	    "    return 0; }\n"
	    "static int h(const struct shmpipe_request *q,\n"
	    "    struct shmpipe_result *r) { (void)r;\n"
	    "    if (q->verb_len == 4 && memcmp(q->verb, \"quit\", 4) == 0)\n"
	    "        exit(0);\n"
	    "    return SHMPIPE_PASS; }\n"
	    "const struct shmpipe_handler shmpipe_handler = {\n"
	    "    SHMPIPE_HANDLER_ABI, \"quitter\", i, 0, h };\n";
	char so[CP_PATH_LEN + 16], want[CP_PATH_LEN + 128];
	struct cp_pipe p;
	int fd, st;

	cp_prepare(&p, 1);
	cp_handler_build(&p, "quitter", src, so, sizeof(so));
	for (int i = 0; i < 2; i++) {
		setenv(i == 0 ? "CP_QUIT_LOAD" : "CP_QUIT_INIT", "1", 1);
		cp_spawn(&p, CP_ARGS("--handler", so));
		unsetenv(i == 0 ? "CP_QUIT_LOAD" : "CP_QUIT_INIT");
		st = cp_wait_exit(&p, CP_WAIT_S);
		CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) ==
		    (p.cp_threads ? 78 : 70), "exit() in %s: status %#x, "
		    "expected exit %d", i == 0 ? "a constructor" : "init()",
		    st, p.cp_threads ? 78 : 70);
		snprintf(want, sizeof(want), "handler object '%s' called "
		    "exit() in %s (expected it to return); exit 78", so,
		    i == 0 ? "a constructor" : "its init()");
		CP_ASSERT(&p, cp_log_has(&p, want), "'%s' not logged", want);
		cp_assert_gone(&p);
	}

	cp_spawn(&p, CP_ARGS("--handler", so));
	cp_wait_ready(&p);
	fd = cp_connect(&p);
	cp_expect(fd, "echo a", "OK a");
	snprintf(want, sizeof(want), "handler object '%s' called exit() in "
	    "its handle() (expected it to return); exit 78", so);
	if (p.cp_threads) {
		cp_sends(fd, "quit\n");
		st = cp_wait_exit(&p, CP_WAIT_S);
		CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 78,
		    "exit() in handle(): status %#x, expected exit 78", st);
		CP_ASSERT(&p, cp_log_has(&p, want), "'%s' not logged", want);
		cp_close(fd);
		cp_assert_gone(&p);
		return;
	}
	cp_expect(fd, "quit", "ERR request crashed the processor 2 times");
	cp_expect(fd, "echo b", "OK b");
	cp_close(fd);
	CP_ASSERT(&p, cp_log_has(&p, want), "'%s' not logged", want);
	cp_stop(&p);
}
END_TEST

/* The pid in p's pidfile, or 0. */
static pid_t
pidfile_pid(const struct cp_pipe *p)
{
	char buf[32] = "";
	FILE *f = fopen(p->cp_pidfile, "re");

	if (f == NULL)
		return 0;
	if (fgets(buf, sizeof(buf), f) == NULL)
		buf[0] = '\0';
	fclose(f);
	return (pid_t)atoi(buf);
}

/*
 * A handler whose init() never returns: its processor never started, and
 * nothing was logged; clients waited for ever, and a SIGTERM never
 * finished its drain (the threaded build ignored it).  Past
 * --start-timeout such a processor is killed as a failed start, so that a
 * pipeline whose processors cannot start ends as a crash loop (exit 70,
 * saying why); the threaded build stops (70) when its one init() runs
 * past it.  A SIGTERM with nothing accepted stops what is still starting
 * at once: exit 0.
 */
START_TEST(test_pipeline_handler_init_hangs)
{
	static const char src[] =
	    "#include <stdlib.h>\n"
	    "#include <unistd.h>\n"
	    "#include \"shmpipe_handler.h\"\n"
	    "static int i(void) {\n"
	    "    if (getenv(\"CP_HANG_INIT\") != NULL) for (;;) pause();\n"
	    "    return 0; }\n"
	    "static int h(const struct shmpipe_request *q,\n"
	    "    struct shmpipe_result *r) { (void)q; (void)r;\n"
	    "    return SHMPIPE_PASS; }\n"
	    "const struct shmpipe_handler shmpipe_handler = {\n"
	    "    SHMPIPE_HANDLER_ABI, \"hanger\", i, 0, h };\n";
	char so[CP_PATH_LEN + 16];
	struct cp_pipe p;
	int st;

	cp_prepare(&p, 2);
	cp_handler_build(&p, "hanger", src, so, sizeof(so));
	setenv("CP_HANG_INIT", "1", 1);
	cp_spawn(&p, CP_ARGS("--handler", so, "--start-timeout", "100"));
	st = cp_wait_exit(&p, CP_WAIT_S);
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 70, "processors "
	    "that never start: status %#x, expected exit 70", st);
	CP_ASSERT(&p, p.cp_threads ? cp_log_has(&p, "init() did not return "
	    "within 100 ms") : cp_log_has(&p, "did not start within 100 ms "
	    "(its handler's init() has not returned)") && cp_log_has(&p,
	    "crash loop"), "no slow start or crash loop logged");
	cp_assert_gone(&p);

	cp_spawn(&p, CP_ARGS("--handler", so, "--start-timeout", "600000"));
	unsetenv("CP_HANG_INIT");
	/* Once its pidfile is written, signals are caught. */
	for (uint64_t end = now_ms() + CP_WAIT_S * 1000u; pidfile_pid(&p) !=
	    p.cp_pid; nap_ms(1))
		CP_ASSERT(&p, now_ms() < end, "the second pipeline never "
		    "wrote its pidfile");
	ck_assert_int_eq(kill(p.cp_pid, SIGTERM), 0);
	st = cp_wait_exit(&p, CP_WAIT_S);
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 0, "drained with "
	    "processors starting: status %#x, expected exit 0", st);
	CP_ASSERT(&p, p.cp_threads ? cp_log_has(&p, "SIGTERM while the "
	    "handler's init() ran") : cp_log_count(&p, "is still starting "
	    "and nothing is left to answer") == 2, "the starting processors "
	    "were not stopped");
	cp_assert_gone(&p);
}
END_TEST

/*
 * A handler's init() runs once before its processor serves, and its
 * fini() not before every request it may get is answered: in the threaded
 * build too, where the processors are threads sharing one loaded object,
 * and a drain stops an idle one while another is still in a slow
 * handle().  The handler counts the calls it got; its `slow` verb touches
 * the file named by its argument, sleeps 1.5 s and answers the counts
 * (ERR unless init() ran once and fini() never), and fini() appends its
 * counts to that file plus ".fini".
 */
START_TEST(test_pipeline_handler_once)
{
	static const char src[] =
	    "#define _POSIX_C_SOURCE 200809L\n"
	    "#include <errno.h>\n"
	    "#include <stdatomic.h>\n"
	    "#include <stdio.h>\n"
	    "#include <string.h>\n"
	    "#include <time.h>\n"
	    "#include \"shmpipe_handler.h\"\n"
	    "static atomic_int inits, finis;\n"
	    "static char path[256];\n"
	    "static int in(void) { inits++; return 0; }\n"
	    "static void fi(void) {\n"
	    "    char f[300]; FILE *o;\n"
	    "    finis++;\n"
	    "    if (path[0] == 0) return;\n"
	    "    snprintf(f, sizeof(f), \"%s.fini\", path);\n"
	    "    if ((o = fopen(f, \"a\")) == NULL) return;\n"
	    "    fprintf(o, \"inits=%d finis=%d\\n\", inits, finis);\n"
	    "    fclose(o); }\n"
	    "static int h(const struct shmpipe_request *q,\n"
	    "    struct shmpipe_result *r) {\n"
	    "    struct timespec ts = { 1, 500000000 };\n"
	    "    FILE *o;\n"
	    "    int i, f;\n"
	    "    if (q->verb_len != 4 || memcmp(q->verb, \"slow\", 4) != 0 ||\n"
	    "        q->arg == NULL || q->arg_len >= sizeof(path))\n"
	    "        return SHMPIPE_PASS;\n"
	    "    memcpy(path, q->arg, q->arg_len);\n"
	    "    path[q->arg_len] = 0;\n"
	    "    if ((o = fopen(path, \"w\")) != NULL) fclose(o);\n"
	    "    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)\n"
	    "        ;\n"
	    "    i = inits; f = finis;\n"
	    "    r->len = (size_t)snprintf(r->buf, r->cap,\n"
	    "        \"inits=%d finis=%d\", i, f);\n"
	    "    return i == 1 && f == 0 ? SHMPIPE_OK : SHMPIPE_ERR; }\n"
	    "const struct shmpipe_handler shmpipe_handler = {\n"
	    "    SHMPIPE_HANDLER_ABI, \"counter\", in, fi, h };\n";
	char so[CP_PATH_LEN + 16];
	char mark[CP_PATH_LEN + 16], req[CP_PATH_LEN + 32];
	char fini[CP_PATH_LEN + 24], got[LINE_MAX_TEST];
	struct cp_pipe p;
	FILE *f;
	int fd;

	cp_prepare(&p, 2);
	snprintf(mark, sizeof(mark), "%s/slow", p.cp_dir);
	snprintf(fini, sizeof(fini), "%s.fini", mark);
	cp_handler_build(&p, "counter", src, so, sizeof(so));
	cp_spawn(&p, CP_ARGS("--handler", so));
	cp_wait_ready(&p);
	fd = cp_connect(&p);
	snprintf(req, sizeof(req), "slow %s\n", mark);
	cp_sends(fd, req);
	/* In handle() now: the drain stops the other processor meanwhile. */
	for (int i = 0; access(mark, F_OK) != 0; i++) {
		CP_ASSERT(&p, i < CP_WAIT_S * 100, "the slow request never "
		    "began");
		usleep(10000);
	}
	kill(p.cp_pid, SIGTERM);
	CP_ASSERT(&p, cp_line(fd, got, sizeof(got)) >= 0, "no reply");
	CP_ASSERT(&p, strcmp(got, "OK inits=1 finis=0") == 0, "the slow "
	    "request saw '%s', expected 'OK inits=1 finis=0'", got);
	cp_expect_eof(fd);
	cp_close(fd);
	expect_drained(&p);
	CP_ASSERT(&p, !cp_log_has(&p, "Sanitizer"), "a sanitizer reported a "
	    "problem");
	/* fini() ran once, where the slow request had been, after it. */
	ck_assert_ptr_nonnull(f = fopen(fini, "re"));
	CP_ASSERT(&p, fgets(got, sizeof(got), f) != NULL &&
	    strcmp(got, "inits=1 finis=1\n") == 0, "fini() wrote '%s', "
	    "expected 'inits=1 finis=1'", got);
	CP_ASSERT(&p, fgets(got, sizeof(got), f) == NULL, "fini() ran "
	    "again: '%s'", got);
	fclose(f);
	cp_assert_gone(&p);
}
END_TEST

START_TEST(test_pipeline_pidfile_refusal)
{
	char prog[CP_PATH_LEN], listen[CP_PATH_LEN + 8], want[400];
	char other[CP_PATH_LEN + 8], name[64], seg[64];
	struct cp_pipe p, q;
	int fd;

	cp_start(&p, 1, NULL);
	fd = cp_connect(&p);
	cp_server(prog, sizeof(prog));
	snprintf(listen, sizeof(listen), "unix:%s", p.cp_sock);
	q = p;
	snprintf(q.cp_log, sizeof(q.cp_log), "%s/log2", p.cp_dir);
	snprintf(want, sizeof(want), "pidfile %s is held by pid %d: a "
	    "pipeline runs with it already", p.cp_pidfile, (int)p.cp_pid);
	expect_refusal(&q, CP_ARGS(prog, "--name", p.cp_name, "--listen",
	    listen, "--pidfile", p.cp_pidfile), 1, want);
	/* Another pidfile: the live segments still refuse it (the threaded
	 * build has none; its socket refuses it, as below). */
	snprintf(other, sizeof(other), "%s/other.pid", p.cp_dir);
	if (!p.cp_threads) {
		snprintf(want, sizeof(want), "pipeline %s is already running "
		    "(supervisor pid %d)", p.cp_name, (int)p.cp_pid);
		expect_refusal(&q, CP_ARGS(prog, "--name", p.cp_name,
		    "--listen", listen, "--pidfile", other), 1, want);
		CP_ASSERT(&p, access(other, F_OK) != 0, "the refused one left "
		    "its pidfile %s", other);
		/* Its queues made, its control segment not yet: what a
		 * supervisor starting at the same time sees.  The name is
		 * taken all the same, and the queues are not "stale". */
		ctl_seg_name(seg, sizeof(seg), p.cp_name, "ctl");
		ck_assert_int_eq(shm_unlink(seg), 0);
		snprintf(want, sizeof(want), "pipeline %s is already running "
		    "or starting", p.cp_name);
		expect_refusal(&q, CP_ARGS(prog, "--name", p.cp_name,
		    "--listen", listen, "--pidfile", other), 1, want);
		CP_ASSERT(&p, cp_segments(p.cp_name) == 2, "the refused one "
		    "removed the running pipeline's queues");
	}
	/* Another name on its socket: refused, and nothing left of it. */
	snprintf(want, sizeof(want), "cannot listen on %s: a server is "
	    "answering there", listen);
	snprintf(name, sizeof(name), "%s-b", p.cp_name);
	expect_refusal(&q, CP_ARGS(prog, "--name", name, "--listen", listen,
	    "--pidfile", other), 71, want);
	CP_ASSERT(&p, access(other, F_OK) != 0, "the refused one left its "
	    "pidfile %s", other);
	CP_ASSERT(&p, cp_segments(name) == 0, "the refused one left "
	    "segments");
	/* Another name with its pidfile: the pidfile is what refuses it,
	 * and the line must not say that the new name is running. */
	snprintf(want, sizeof(want), "pidfile %s is held by pid %d: a "
	    "pipeline runs with it already", p.cp_pidfile, (int)p.cp_pid);
	expect_refusal(&q, CP_ARGS(prog, "--name", name, "--listen", listen,
	    "--pidfile", p.cp_pidfile), 1, want);
	CP_ASSERT(&p, cp_segments(name) == 0, "the refused one left "
	    "segments");
	/* The first one was not disturbed. */
	cp_expect(fd, "echo still mine", "OK still mine");
	cp_close(fd);
	cp_serves(&p, "new client");
	cp_stop(&p);
}
END_TEST

/*
 * A window smaller than the default window per client (256) is enough on
 * its own: the window per client shrinks to it, as shmpipe(1) says.
 */
START_TEST(test_pipeline_small_window)
{
	struct cp_pipe p;

	cp_start(&p, 1, CP_ARGS("--window", "100"));
	cp_serves(&p, "small");
	cp_stop(&p);
}
END_TEST

/* prog with the test's own name and pidfile: a start not refused is ours. */
#define OWN_ARGV(p, prog)	(prog), "--name", (p)->cp_name, \
	"--pidfile", (p)->cp_pidfile

START_TEST(test_pipeline_bad_flags)
{
	static const struct {
		const char *a, *b, *what;
	} bad[] = {
		{ "--processors", "0", "--processors" },
		{ "--processors", "lots", "--processors" },
		{ "--max-line", "8", "--max-line" },
		{ "--capacity", "1", "--capacity" },
		{ "--listen", "nowhere", "--listen" },
		{ "--listen", "tcp:127.0.0.1:99999", "port" },
		{ "--listen", "tcp:127.0.0.1:+80", "port" },
		{ "--listen", "tcp:[::1", "tcp:[V6ADDR]:PORT" },
		{ "--listen", "tcp:[::1]7878", "tcp:[V6ADDR]:PORT" },
		{ "--listen", "tcp:[]:7878", "tcp:[V6ADDR]:PORT" },
		{ "--listen", "tcp:127.0.0.1:80:90", "tcp:[V6ADDR]:PORT" },
		{ "--listen", "tcp:::1:7878", "tcp:[V6ADDR]:PORT" },
		/* brackets are an IPv6 literal's, as shmpipe-bench --tcp's */
		{ "--listen", "tcp:[localhost]:7878", "'tcp:[localhost]:7878': "
		    "brackets are for an IPv6 address only" },
		{ "--listen", "tcp:[127.0.0.1]:7878", "brackets are for an IPv6 "
		    "address only" },
		{ "--processors", " 2", "--processors" },
		{ "--name", "a/b", "--name" },
		{ "--output", "x", "--output needs --input" },
		{ "--conn-window", "8192", "larger than --window 4096" },
		{ "--sched", "fifo", "--sched: 'fifo' is no policy; expected "
		    "batch or other" },
		{ "-xq", NULL, "'-x'" },
		{ "--frobnicate", NULL, "--frobnicate" },
		{ "--name", NULL, "--name" },
		{ "stray", NULL, "stray" },
		/* getopt_long's val of a flag given a value is no character */
		{ "--enable-crash=yes", NULL,
		    "option '--enable-crash' takes no value" },
		{ "--quiet=1", NULL, "option '--quiet' takes no value" },
		{ "--help=x", NULL, "option '--help' takes no value" },
		{ "-qn", NULL, "option '-n' needs a value" },
		{ "--win", NULL, "option '--window' needs a value" },
		{ "--max=3", NULL, "option '--max' is ambiguous" },
		/* dlopen("") is the program itself; open("") a bare ENOENT */
		{ "--handler", "", "--handler '': expected the path" },
		{ "--pidfile", "", "--pidfile '': expected" },
		{ "--input", "", "--input '': expected a file, or -" },
		{ "--output", "", "--output '': expected a file, or -" },
		/* the user's bytes escaped: no ESC reaches the terminal */
		{ "--name", "\x1b[31mred", "--name '?[31mred'" },
	};
	char prog[CP_PATH_LEN], procs[16], want[CP_PATH_LEN + 16];
	unsigned max = cp_threads() ? OPT_PROCESSORS_MAX_THREADED :
	    OPT_PROCESSORS_MAX;
	struct cp_pipe p;

	cp_prepare(&p, 1);
	cp_server(prog, sizeof(prog));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_refusal(&p, CP_ARGS(OWN_ARGV(&p, prog), bad[i].a,
		    bad[i].b), 64, bad[i].what);
	/* One past what the queues' attachments allow. */
	snprintf(procs, sizeof(procs), "%u", max + 1);
	snprintf(want, sizeof(want), "expected a whole number 1..%u", max);
	expect_refusal(&p, CP_ARGS(OWN_ARGV(&p, prog), "--processors", procs),
	    64, want);
	/* The same address twice: its second bind would fail as if someone
	 * else held it ("a server is answering there", exit 71). */
	snprintf(want, sizeof(want), "unix:%s/twice", p.cp_dir);
	expect_refusal(&p, CP_ARGS(OWN_ARGV(&p, prog), "--listen", want,
	    "--listen", want), 64, "given twice; expected each address once");
	expect_refusal(&p, CP_ARGS(OWN_ARGV(&p, prog), "--listen",
	    "tcp:127.0.0.1:1", "--listen", "tcp:127.0.0.1:1"), 64,
	    "--listen 'tcp:127.0.0.1:1' given twice");
	CP_ASSERT(&p, cp_segments(p.cp_name) == 0, "a refused start left "
	    "segments");
}
END_TEST

/* ---- Usage: what is refused before anything is made -------------------- */

/* argv run by sh (which execs it) with descriptors closed: redir "<&-". */
#define SH_ARGS(redir, ...)	CP_ARGS("/bin/sh", "-c", \
	"exec \"$@\" " redir, "sh", __VA_ARGS__)
/* argv run by sh with a descriptor redirected to or from file. */
#define SH_FILE_ARGS(op, file, ...) CP_ARGS("/bin/sh", "-c", \
	"f=$1; shift; exec \"$@\" " op "\"$f\"", "sh", (file), __VA_ARGS__)

static void
write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	cp_send(fd, text, strlen(text));
	close(fd);
}

/* Assert that path holds exactly text. */
static void
assert_file(struct cp_pipe *p, const char *path, const char *text)
{
	char buf[256] = "";
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	CP_ASSERT(p, fd >= 0, "%s is gone: %s", path, strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	CP_ASSERT(p, n >= 0 && strcmp(buf, text) == 0, "%s holds '%s', "
	    "expected '%s'", path, buf, text);
}

/* A Unix socket file at path that nobody answers on. */
static void
stale_socket(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
	ck_assert_msg(fd >= 0 && bind(fd, (struct sockaddr *)&sun,
	    sizeof(sun)) == 0, "bind %s: %s", path, strerror(errno));
	close(fd);
}

static mode_t
lstat_type(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 ? st.st_mode & S_IFMT : 0;
}

/*
 * --listen unix:PATH replaces a socket file nobody answers on, and
 * nothing else: a file, a directory (the test's own, which the sweep
 * removes) or a symbolic link (even to such a socket) there is refused
 * and left as it was.
 */
START_TEST(test_pipeline_listen_not_socket)
{
	char prog[CP_PATH_LEN], file[CP_PATH_LEN + 8], ln[CP_PATH_LEN + 8];
	char arg[CP_PATH_LEN + 16], want[2 * CP_PATH_LEN + 64];
	struct cp_pipe p;
	const char *path[] = { file, p.cp_dir, ln };

	cp_prepare(&p, 1);
	cp_server(prog, sizeof(prog));
	snprintf(file, sizeof(file), "%s/data", p.cp_dir);
	write_file(file, "data\n");
	snprintf(ln, sizeof(ln), "%s/link", p.cp_dir);
	stale_socket(p.cp_sock);
	ck_assert_int_eq(symlink(p.cp_sock, ln), 0);
	for (size_t i = 0; i < sizeof(path) / sizeof(path[0]); i++) {
		snprintf(arg, sizeof(arg), "unix:%s", path[i]);
		snprintf(want, sizeof(want), "--listen %s: %s exists and is "
		    "not a socket", arg, path[i]);
		expect_refusal(&p, CP_ARGS(OWN_ARGV(&p, prog), "--listen",
		    arg), 71, want);
	}
	assert_file(&p, file, "data\n");
	CP_ASSERT(&p, lstat_type(p.cp_dir) == S_IFDIR, "the directory %s is "
	    "gone", p.cp_dir);
	CP_ASSERT(&p, lstat_type(ln) == S_IFLNK && lstat_type(p.cp_sock) ==
	    S_IFSOCK, "the link %s or the socket it names is gone", ln);
	CP_ASSERT(&p, cp_segments(p.cp_name) == 0 && access(p.cp_pidfile,
	    F_OK) != 0, "a refused start left segments or its pidfile");
	/* The stale socket itself is replaced, as before. */
	cp_spawn(&p, NULL);
	cp_wait_ready(&p);
	cp_serves(&p, "replaced");
	cp_stop(&p);
}
END_TEST

/* A --listen that fails takes the Unix sockets made before it along. */
START_TEST(test_pipeline_listen_fails_later)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	char prog[CP_PATH_LEN], unix_arg[CP_PATH_LEN + 8], tcp_arg[40];
	struct cp_pipe p;
	int busy;

	cp_prepare(&p, 1);
	cp_server(prog, sizeof(prog));
	busy = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_msg(busy >= 0 && bind(busy, (struct sockaddr *)&sin,
	    sizeof(sin)) == 0 && listen(busy, 1) == 0 && getsockname(busy,
	    (struct sockaddr *)&sin, &len) == 0, "no TCP port: %s",
	    strerror(errno));
	snprintf(unix_arg, sizeof(unix_arg), "unix:%s", p.cp_sock);
	snprintf(tcp_arg, sizeof(tcp_arg), "tcp:127.0.0.1:%u",
	    (unsigned)ntohs(sin.sin_port));
	expect_refusal(&p, CP_ARGS(OWN_ARGV(&p, prog), "--listen", unix_arg,
	    "--listen", tcp_arg), 71, "Address already in use");
	close(busy);
	cp_assert_gone(&p);
}
END_TEST

/*
 * The most processors --processors takes do start.  Not under TSan: each
 * thread of the threaded build maps both queues for its own attachment,
 * and TSan shadows every mapping, which for 248 threads is tens of GB and
 * minutes (the limit checked here is arithmetic, not a race).
 */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
START_TEST(test_pipeline_processors_max)
{
	struct cp_pipe p;

	cp_start(&p, cp_threads() ? OPT_PROCESSORS_MAX_THREADED :
	    OPT_PROCESSORS_MAX, CP_ARGS("--quiet"));
	cp_serves(&p, "all there");
	cp_stop(&p);
}
END_TEST
#endif

/*
 * File mode refuses what it cannot use before anything is made: a
 * directory as input (66), and an output that is the input (64: opening
 * it would truncate the input).
 */
START_TEST(test_pipeline_file_refusals)
{
	char prog[CP_PATH_LEN], in[CP_PATH_LEN + 8], ln[CP_PATH_LEN + 8];
	char want[2 * CP_PATH_LEN + 64];
	struct cp_pipe p;

	cp_prepare(&p, 1);
	cp_server(prog, sizeof(prog));
	snprintf(in, sizeof(in), "%s/in", p.cp_dir);
	snprintf(ln, sizeof(ln), "%s/in-link", p.cp_dir);
	write_file(in, "echo a\n");
	ck_assert_int_eq(link(in, ln), 0);
	snprintf(want, sizeof(want), "--input %s: is a directory", p.cp_dir);
	expect_refusal(&p, CP_ARGS(OWN_ARGV(&p, prog), "--input",
	    p.cp_dir), 66, want);
	expect_refusal(&p, SH_FILE_ARGS("<", p.cp_dir, OWN_ARGV(&p, prog),
	    "--input", "-"), 66, "--input -: standard input is a directory");
	/* The same file by its name, another name, or a standard stream. */
	expect_refusal(&p, CP_ARGS(OWN_ARGV(&p, prog), "--input", in,
	    "--output", in), 64, "are the same file");
	expect_refusal(&p, CP_ARGS(OWN_ARGV(&p, prog), "--input", in,
	    "--output", ln), 64, "are the same file");
	expect_refusal(&p, SH_FILE_ARGS("<", in, OWN_ARGV(&p, prog),
	    "--input", "-", "--output", ln), 64, "are the same file");
	expect_refusal(&p, SH_FILE_ARGS(">>", in, OWN_ARGV(&p, prog),
	    "--input", in, "--output", "-"), 64, "are the same file");
	/* Nor the handler object, which the output would truncate before
	 * the processors load it (here any file stands for it). */
	expect_refusal(&p, CP_ARGS(OWN_ARGV(&p, prog), "--input", "/dev/null",
	    "--handler", in, "--output", ln), 64, "would destroy the handler "
	    "object");
	assert_file(&p, in, "echo a\n");
	CP_ASSERT(&p, cp_segments(p.cp_name) == 0 && access(p.cp_pidfile,
	    F_OK) != 0, "a refused start left segments or its pidfile");
}
END_TEST

/*
 * A name with a '.' at either end would make ".." in its segments' names
 * ("/shmpipe.x..req"), which no segment may have: it is refused as a
 * usage error, by both builds, before anything is made.  Without --input
 * a start not refused would listen; with it, it ends by itself.
 */
START_TEST(test_pipeline_name_dots)
{
	static const char *const names[] = { ".", "x.", ".x", "x.y." };
	char prog[CP_PATH_LEN], want[64];
	struct cp_pipe p;

	cp_prepare(&p, 1);
	cp_server(prog, sizeof(prog));
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(want, sizeof(want), "--name '%s': expected",
		    names[i]);
		expect_refusal(&p, CP_ARGS(prog, "--name", names[i],
		    "--pidfile", p.cp_pidfile, "--input", "/dev/null"), 64,
		    want);
		CP_ASSERT(&p, cp_segments(names[i]) == 0, "'%s' left "
		    "segments", names[i]);
	}
}
END_TEST

/*
 * The pidfile is truncated at start and removed at exit: a --pidfile that
 * names the input, the output (even one still to be made, by another
 * name), the handler object or a Unix socket's path is refused before
 * anything is touched.  The input used to be replaced by the pid, its
 * requests answered "ERR unknown verb '<pid>'", and deleted, exit 0.
 */
START_TEST(test_pipeline_pidfile_other_file)
{
	char prog[CP_PATH_LEN], in[CP_PATH_LEN + 8], out[CP_PATH_LEN + 8];
	char dotted[CP_PATH_LEN + 16], sock[CP_PATH_LEN + 16];
	struct cp_pipe p;

	cp_prepare(&p, 1);
	cp_server(prog, sizeof(prog));
	snprintf(in, sizeof(in), "%s/in", p.cp_dir);
	snprintf(out, sizeof(out), "%s/replies", p.cp_dir);
	snprintf(dotted, sizeof(dotted), "%s/./replies", p.cp_dir);
	snprintf(sock, sizeof(sock), "unix:%s/sock", p.cp_dir);
	write_file(in, "echo a\n");
	expect_refusal(&p, CP_ARGS(prog, "--name", p.cp_name, "--pidfile",
	    in, "--input", in), 64, "and --input");
	expect_refusal(&p, CP_ARGS(prog, "--name", p.cp_name, "--pidfile",
	    dotted, "--input", in, "--output", out), 64, "and --output");
	expect_refusal(&p, CP_ARGS(prog, "--name", p.cp_name, "--pidfile",
	    in, "--input", "/dev/null", "--handler", in), 64,
	    "and --handler");
	expect_refusal(&p, CP_ARGS(prog, "--name", p.cp_name, "--pidfile",
	    sock + 5, "--listen", sock), 64, "and --listen unix:");
	assert_file(&p, in, "echo a\n");
	CP_ASSERT(&p, access(out, F_OK) != 0 && access(sock + 5, F_OK) != 0,
	    "a refused start made its output or socket");
	CP_ASSERT(&p, cp_segments(p.cp_name) == 0, "a refused start left "
	    "segments");
}
END_TEST

/*
 * Started with descriptors 0, 1 and 2 closed, nothing shmpipe opens
 * takes their place: the log does not end up in the output file, nor
 * replies in the pidfile.  A closed standard input or output is not one
 * to read requests from or write replies to.
 */
START_TEST(test_pipeline_std_fds_closed)
{
	char prog[CP_PATH_LEN], in[CP_PATH_LEN + 8], out[CP_PATH_LEN + 8];
	struct cp_pipe p;
	int st;

	cp_prepare(&p, 1);
	cp_server(prog, sizeof(prog));
	snprintf(in, sizeof(in), "%s/in", p.cp_dir);
	snprintf(out, sizeof(out), "%s/replies", p.cp_dir);
	write_file(in, "echo a\necho b\n");
	expect_refusal(&p, SH_ARGS("<&-", OWN_ARGV(&p, prog), "--input", "-"),
	    66, "--input -: standard input is closed");
	expect_refusal(&p, SH_ARGS(">&-", OWN_ARGV(&p, prog), "--input", in,
	    "--output", "-"), 73, "--output -: standard output is closed");
	p.cp_pid = cp_spawnv(&p, SH_ARGS("<&- >&- 2>&-",
	    OWN_ARGV(&p, prog), "--input", in, "--output", out), -1);
	st = cp_wait_exit(&p, CP_WAIT_S);
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x, "
	    "expected exit 0", st);
	assert_file(&p, out, "OK a\nOK b\n");
	cp_assert_gone(&p);
}
END_TEST

/*
 * With --input - and --output -, the standard streams are the pipeline's:
 * a handler that prints to stdout (debugging, say) writes to the log, not
 * into the replies, and one that reads stdin finds it at its end rather
 * than the requests.  Both used to reach the files themselves.
 */
START_TEST(test_pipeline_file_handler_stdio)
{
	static const char src[] =
	    "#include <stdio.h>\n"
	    "#include <string.h>\n"
	    "#include \"shmpipe_handler.h\"\n"
	    "static int h(const struct shmpipe_request *q,\n"
	    "    struct shmpipe_result *r) {\n"
	    "	if (q->verb_len != 5 || memcmp(q->verb, \"noisy\", 5) != 0)\n"
	    "		return SHMPIPE_PASS;\n"
	    "	printf(\"noise from a handler\\n\");\n"
	    "	fflush(stdout);\n"
	    "	r->len = (size_t)snprintf(r->buf, r->cap, \"%s\",\n"
	    "	    getchar() == EOF ? \"stdin at its end\" : \"stdin read\");\n"
	    "	return SHMPIPE_OK; }\n"
	    "const struct shmpipe_handler shmpipe_handler = {\n"
	    "    SHMPIPE_HANDLER_ABI, \"noisy\", 0, 0, h };\n";
	char prog[CP_PATH_LEN], in[CP_PATH_LEN + 8], so[CP_PATH_LEN + 16];
	struct cp_pipe p;
	int fd, st;

	cp_prepare(&p, 1);
	cp_server(prog, sizeof(prog));
	cp_handler_build(&p, "noisy", src, so, sizeof(so));
	snprintf(in, sizeof(in), "%s/in", p.cp_dir);
	write_file(in, "echo a\nnoisy\necho b\n");
	ck_assert_int_ge(fd = open(in, O_RDONLY | O_CLOEXEC), 0);
	p.cp_pid = cp_spawnv(&p, CP_ARGS(OWN_ARGV(&p, prog), "--processors",
	    "1", "--handler", so, "--input", "-", "--output", "-"), fd);
	close(fd);
	st = cp_wait_exit(&p, CP_WAIT_S);
	CP_ASSERT(&p, WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x, "
	    "expected exit 0", st);
	assert_file(&p, p.cp_out, "OK a\nOK stdin at its end\nOK b\n");
	CP_ASSERT(&p, cp_log_has(&p, "noise from a handler"), "the "
	    "handler's output is not in the log");
	cp_assert_gone(&p);
}
END_TEST

/*
 * Queues larger than /dev/shm can hold (a TiB each): one line saying so,
 * exit 71, nothing left.  The threaded build's memory is anonymous, which
 * no tmpfs limits: it used to fill it and call the OOM killer.
 */
START_TEST(test_pipeline_too_big)
{
	char prog[CP_PATH_LEN];
	struct cp_pipe p;

	cp_prepare(&p, 1);
	cp_server(prog, sizeof(prog));
	expect_refusal(&p, CP_ARGS(prog, "--name", p.cp_name, "--pidfile",
	    p.cp_pidfile, "--capacity", "1048576", "--max-line", "1048576",
	    "--listen", "tcp:127.0.0.1:0"), 71, "more than /dev/shm has free");
	CP_ASSERT(&p, cp_segments(p.cp_name) == 0, "a refused start left "
	    "segments");
}
END_TEST

/*
 * The tests of one build.  Threads cannot be killed, restarted, recycled
 * or timed out one at a time: the threaded suite has what it does instead.
 */
static Suite *
pipeline_suite_of(const char *name, bool threads)
{
	TCase *(*mk)(const char *, int) = threads ? cp_tcase_threads :
	    cp_tcase;
	Suite *s = suite_create(name);
	TCase *tc;

	cp_init();
	tc = mk("Core", 120);
	tcase_add_test(tc, test_pipeline_verbs);
	tcase_add_test(tc, test_pipeline_early_clients);
	if (!threads)
		tcase_add_test(tc, test_pipeline_crash_verb);
	tcase_add_test(tc, test_pipeline_in_order);
	tcase_add_test(tc, test_pipeline_long_lines);
	tcase_add_test(tc, test_pipeline_garbage);
	if (!threads) {
		tcase_add_test(tc, test_pipeline_foreign_messages);
		tcase_add_test(tc, test_pipeline_slow_batch_handed_back);
	}
	suite_add_tcase(s, tc);

	tc = mk("Limits", 120);
	tcase_add_test(tc, test_pipeline_disconnect_mid_line);
	tcase_add_test(tc, test_pipeline_many_connections);
	tcase_add_test(tc, test_pipeline_max_connections);
	tcase_add_test(tc, test_pipeline_idle_timeout);
	tcase_add_test(tc, test_pipeline_conn_churn);
	tcase_add_test(tc, test_pipeline_refused_tcp);
	if (!threads) {
		tcase_add_test(tc, test_pipeline_idle_unread);
		tcase_add_loop_test(tc, test_pipeline_reply_stopped_connects,
		    0, 2);
		tcase_add_test(tc, test_pipeline_supervisor_stopped_connects);
	}
	suite_add_tcase(s, tc);

	tc = mk("Files", 120);
	tcase_add_test(tc, test_pipeline_file_mode);
	tcase_add_test(tc, test_pipeline_file_mode_pipe);
	tcase_add_test(tc, test_pipeline_file_offset);
	tcase_add_test(tc, test_pipeline_file_output_fails);
	tcase_add_test(tc, test_pipeline_file_output_cut);
	tcase_add_test(tc, test_pipeline_file_handler_stdio);
	tcase_add_loop_test(tc, test_pipeline_file_fifo_signal, 0, 2);
	if (!threads)
		tcase_add_test(tc, test_pipeline_file_pile_up);
	suite_add_tcase(s, tc);

	tc = mk("Crash", 180);
	tcase_add_test(tc, test_pipeline_handler_init_hangs);
	if (threads) {
		tcase_add_test(tc, test_pipeline_threaded_crash);
	} else {
		tcase_add_test(tc, test_pipeline_kill_processor);
		tcase_add_test(tc, test_pipeline_kill_request);
		tcase_add_test(tc, test_pipeline_kill_request_tcp);
		tcase_add_test(tc, test_pipeline_kill_reply);
		tcase_add_test(tc, test_pipeline_kill_reply_unix);
		tcase_add_test(tc, test_pipeline_reply_dies_advancing);
		tcase_add_test(tc, test_pipeline_reply_dies_deciding);
		tcase_add_test(tc, test_pipeline_reply_starts_stopped);
		tcase_add_test(tc, test_pipeline_reply_len_corrupt);
		tcase_add_test(tc, test_pipeline_request_dies_claiming);
		tcase_add_test(tc, test_pipeline_stages_never_yield);
		tcase_add_test(tc, test_pipeline_poison);
		tcase_add_test(tc, test_pipeline_request_timeout);
	}
	tcase_add_test(tc, test_pipeline_supervisor_killed);
	tcase_add_test(tc, test_pipeline_supervisor_killed_restart);
	tcase_add_loop_test(tc, test_pipeline_stages_sched, 0, 2);
	suite_add_tcase(s, tc);

	tc = mk("Signals", 180);
	tcase_add_test(tc, test_pipeline_drain);
	tcase_add_test(tc, test_pipeline_drain_deep);
	tcase_add_test(tc, test_pipeline_drain_half_line);
	if (!threads)
		tcase_add_test(tc, test_pipeline_drain_window);
	if (!threads)
		tcase_add_test(tc, test_pipeline_drain_recycles);
	tcase_add_test(tc, test_pipeline_drain_file);
	tcase_add_test(tc, test_pipeline_drain_file_quiet);
	if (!threads)
		tcase_add_test(tc, test_pipeline_drain_stuck_window);
	if (!threads)
		tcase_add_test(tc, test_pipeline_drain_request_killed);
	tcase_add_test(tc, test_pipeline_second_signal);
	tcase_add_test(tc, test_pipeline_term_at_start);
	if (!threads) {
		tcase_add_test(tc, test_pipeline_term_everyone);
		tcase_add_test(tc, test_pipeline_term_request_alone);
	}
	if (threads)
		tcase_add_test(tc, test_pipeline_threaded_refusals);
	else {
		tcase_add_test(tc, test_pipeline_reload);
		tcase_add_test(tc, test_pipeline_reload_fails_often);
	}
	tcase_add_test(tc, test_pipeline_crash_loop);
	tcase_add_test(tc, test_pipeline_handler_exits);
	if (!threads)
		tcase_add_test(tc, test_pipeline_kill_starting);
	tcase_add_test(tc, test_pipeline_handler_once);
	tcase_add_test(tc, test_pipeline_pidfile_refusal);
	tcase_add_test(tc, test_pipeline_bad_flags);
	tcase_add_test(tc, test_pipeline_small_window);
	tcase_add_test(tc, test_pipeline_too_big);
	suite_add_tcase(s, tc);

	tc = mk("Usage", 120);
	tcase_add_test(tc, test_pipeline_listen_not_socket);
	tcase_add_test(tc, test_pipeline_listen_fails_later);
#ifndef UNDER_TSAN
	tcase_add_test(tc, test_pipeline_processors_max);
#endif
	tcase_add_test(tc, test_pipeline_file_refusals);
	tcase_add_test(tc, test_pipeline_std_fds_closed);
	tcase_add_test(tc, test_pipeline_name_dots);
	tcase_add_test(tc, test_pipeline_pidfile_other_file);
	suite_add_tcase(s, tc);
	return s;
}

Suite *
pipeline_suite(void)
{
	return pipeline_suite_of("pipeline", false);
}

Suite *
pipeline_threaded_suite(void)
{
	return pipeline_suite_of("pipeline_threaded", true);
}
