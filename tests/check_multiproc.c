/* SPDX-License-Identifier: BSD-2-Clause */
/* check_multiproc.c - tests with several processes on one queue: exactly-
 * once delivery and per-producer order under load, and sleepers woken. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_util.h"
#include "fault.h"
#include "shmq_int.h"

#define MP_PRODUCERS	4
#define MP_CONSUMERS	4
#define MP_PER_PROD	250000u		/* 1,000,000 messages in all */
#define MP_BATCH	8
#define MP_PILL		UINT32_MAX	/* "producer" of the stop message */

/* One message: who put it, its sequence number (from 1), a check. */
struct mp_msg {
	uint32_t	producer;
	uint32_t	seq;
	uint32_t	check;
	uint32_t	pad;
};

/* What the consumers saw, in a shared anonymous mapping. */
struct mp_seen {
	_Atomic uint8_t	 count[MP_PRODUCERS][MP_PER_PROD];
	_Atomic uint64_t order_errors;	/* seq not above the last seen */
	_Atomic uint64_t malformed;
	_Atomic uint64_t got[MP_CONSUMERS];
};

static char		 qname[CU_NAME_LEN];
static struct shmq	*q;

static uint32_t
mp_check(uint32_t producer, uint32_t seq)
{
	return (producer * 0x9e3779b9u) ^ (seq * 0x85ebca6bu) ^ 0xabcdu;
}

static struct mp_msg
mp_make(uint32_t producer, uint32_t seq)
{
	struct mp_msg m = { producer, seq, mp_check(producer, seq), 0 };

	return m;
}

/* Producer p: MP_PER_PROD messages, one by one or in batches. */
static int
mp_produce(uint32_t p)
{
	struct shmq *h = shmq_open(qname);
	struct mp_msg m[MP_BATCH];
	struct iovec iov[MP_BATCH];

	if (h == NULL)
		return 10;
	for (uint32_t seq = 1; seq <= MP_PER_PROD; ) {
		unsigned n = p % 2 == 0 ? 1 : MP_BATCH;
		int r;

		if (n > MP_PER_PROD + 1 - seq)
			n = MP_PER_PROD + 1 - seq;
		for (unsigned i = 0; i < n; i++) {
			m[i] = mp_make(p, seq + i);
			iov[i].iov_base = &m[i];
			iov[i].iov_len = sizeof(m[i]);
		}
		r = shmq_put_batch(h, iov, n, -1);
		if (r <= 0)
			return 11;
		seq += (uint32_t)r;
	}
	shmq_close(h);
	return 0;
}

/* Record one message; true if it was the stop message. */
static bool
mp_record(struct mp_seen *s, uint32_t c, uint32_t last[MP_PRODUCERS],
    const struct mp_msg *m, size_t len)
{
	if (len == sizeof(*m) && m->producer == MP_PILL)
		return true;
	if (len != sizeof(*m) || m->producer >= MP_PRODUCERS || m->seq == 0 ||
	    m->seq > MP_PER_PROD || m->check != mp_check(m->producer,
	    m->seq)) {
		atomic_fetch_add(&s->malformed, 1);
		return false;
	}
	if (m->seq <= last[m->producer])
		atomic_fetch_add(&s->order_errors, 1);
	last[m->producer] = m->seq;
	atomic_fetch_add(&s->count[m->producer][m->seq - 1], 1);
	atomic_fetch_add_explicit(&s->got[c], 1, memory_order_relaxed);
	return false;
}

/* Consumer c: until the stop message, one by one or in batches. */
static int
mp_consume(struct mp_seen *s, uint32_t c)
{
	struct shmq *h = shmq_open(qname);
	uint32_t last[MP_PRODUCERS] = { 0 };
	struct mp_msg m[MP_BATCH];
	struct iovec iov[MP_BATCH];
	bool stop = false;

	if (h == NULL)
		return 20;
	while (!stop) {
		unsigned n = c % 2 == 0 ? 1 : MP_BATCH;
		int r;

		for (unsigned i = 0; i < n; i++) {
			iov[i].iov_base = &m[i];
			iov[i].iov_len = sizeof(m[i]);
		}
		r = shmq_get_batch(h, iov, n, -1);
		if (r <= 0)
			return 21;
		for (int i = 0; i < r; i++)
			stop |= mp_record(s, c, last, &m[i], iov[i].iov_len);
	}
	shmq_close(h);
	return 0;
}

START_TEST(test_multiproc_exactly_once_fifo)
{
	struct mp_seen *s = cu_shared(sizeof(*s));
	pid_t cons[MP_CONSUMERS], prod[MP_PRODUCERS];
	struct shmq_stats st;
	uint64_t lost = 0, dup = 0, total = 0;

	cu_name(qname, "mpmc");
	q = cu_create(qname, 1024, sizeof(struct mp_msg), 16, 4);
	for (uint32_t c = 0; c < MP_CONSUMERS; c++)
		if ((cons[c] = cu_fork()) == 0)
			_exit(mp_consume(s, c));
	for (uint32_t p = 0; p < MP_PRODUCERS; p++)
		if ((prod[p] = cu_fork()) == 0)
			_exit(mp_produce(p));
	for (uint32_t p = 0; p < MP_PRODUCERS; p++)
		cu_wait_exit_in(q, prod[p], 0, 240);
	/* One stop message at a time, so that no consumer takes two. */
	for (uint32_t c = 0; c < MP_CONSUMERS; c++) {
		struct mp_msg pill = mp_make(MP_PILL, 0);
		int status = 0;
		pid_t pid;

		QASSERT_EQ(q, shmq_put(q, &pill, sizeof(pill), -1), 0);
		pid = cu_wait(-1, &status, CU_WAIT_S);
		QASSERT_MSG(q, pid > 0, "no consumer took the stop message");
		QASSERT_MSG(q, WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "consumer %d: status %#x", (int)pid, status);
	}
	for (uint32_t p = 0; p < MP_PRODUCERS; p++)
		for (uint32_t i = 0; i < MP_PER_PROD; i++) {
			lost += s->count[p][i] == 0;
			dup += s->count[p][i] > 1;
		}
	for (uint32_t c = 0; c < MP_CONSUMERS; c++)
		total += s->got[c];
	QASSERT_EQ(q, s->malformed, 0);
	QASSERT_EQ(q, lost, 0);
	QASSERT_EQ(q, dup, 0);
	QASSERT_EQ(q, s->order_errors, 0);
	QASSERT_EQ(q, total, (uint64_t)MP_PRODUCERS * MP_PER_PROD);
	QASSERT_EQ(q, shmq_stats(q, &st), 0);
	QASSERT_EQ(q, st.enqueued, total + MP_CONSUMERS);
	QASSERT_EQ(q, st.dequeued, total + MP_CONSUMERS);
	QASSERT_EQ(q, st.depth, 0);
	QASSERT_EQ(q, st.procs, 1);
	QASSERT_EQ(q, shmq_get(q, NULL, 0, 0), -EAGAIN);
	cu_assert_no_sleepers(q);
	shmq_close(q);
	cu_assert_all_closed(qname);
	ck_assert_int_eq(shmq_unlink(qname), 0);
	cu_unshare(s, sizeof(*s));
}
END_TEST

START_TEST(test_multiproc_blocked_get_woken)
{
	_Atomic uint32_t *got = cu_shared(sizeof(*got));
	struct shmq_stats st;
	uint32_t id = 42;
	pid_t pid;

	cu_create_flags = _i ? SHMQ_CREATE_FENCES : 0;
	cu_name(qname, "wakeget");
	q = cu_create(qname, 8, 64, 4, 2);
	pid = cu_fork();
	if (pid == 0) {
		struct shmq *h = shmq_open(qname);
		uint32_t v = 0;

		if (h == NULL)
			_exit(1);
		shmq_set_spin(h, 0);
		if (shmq_get(h, &v, sizeof(v), -1) != sizeof(v))
			_exit(2);
		atomic_store(got, v);
		shmq_close(h);
		_exit(0);
	}
	/* Asleep is set before the sleeper's last look; the count after it
	 * failed, so only then is the put below sure to wake it. */
	cu_wait_asleep(q, pid, SHMQ_ASLEEP_GET);
	cu_wait_waits(q, SHMQ_ASLEEP_GET, 1);
	QASSERT_EQ(q, shmq_put(q, &id, sizeof(id), 0), 0);
	cu_wait_exit(q, pid, 0);
	QASSERT_EQ(q, atomic_load(got), 42);
	QASSERT_EQ(q, shmq_stats(q, &st), 0);
	QASSERT(q, st.get_waits >= 1);
	cu_assert_no_sleepers(q);
	shmq_close(q);
	cu_assert_all_closed(qname);
	ck_assert_int_eq(shmq_unlink(qname), 0);
	cu_unshare(got, sizeof(*got));
}
END_TEST

START_TEST(test_multiproc_blocked_put_woken)
{
	struct shmq_stats st;
	uint32_t v;
	pid_t pid;

	cu_create_flags = _i ? SHMQ_CREATE_FENCES : 0;
	cu_name(qname, "wakeput");
	q = cu_create(qname, 4, 64, 4, 2);
	for (v = 1; v <= 4; v++)
		QASSERT_EQ(q, shmq_put(q, &v, sizeof(v), 0), 0);
	pid = cu_fork();
	if (pid == 0) {
		struct shmq *h = shmq_open(qname);
		uint32_t id = 99;

		if (h == NULL)
			_exit(1);
		shmq_set_spin(h, 0);
		if (shmq_put(h, &id, sizeof(id), -1) != 0)
			_exit(2);
		shmq_close(h);
		_exit(0);
	}
	cu_wait_asleep(q, pid, SHMQ_ASLEEP_PUT);
	cu_wait_waits(q, SHMQ_ASLEEP_PUT, 1);
	QASSERT_EQ(q, shmq_get(q, &v, sizeof(v), 0), sizeof(v));
	QASSERT_EQ(q, v, 1);
	cu_wait_exit(q, pid, 0);
	for (uint32_t want = 2; want <= 5; want++) {
		QASSERT_EQ(q, shmq_get(q, &v, sizeof(v), 0), sizeof(v));
		QASSERT_EQ(q, v, want == 5 ? 99 : want);
	}
	QASSERT_EQ(q, shmq_stats(q, &st), 0);
	QASSERT(q, st.put_waits >= 1);
	cu_assert_no_sleepers(q);
	shmq_close(q);
	cu_assert_all_closed(qname);
	ck_assert_int_eq(shmq_unlink(qname), 0);
}
END_TEST

/* The sleeper of test_multiproc_wakeup_keeps_no_bit, and its signal. */
static struct shmq	*wk_h;

static void
wk_on_usr1(int sig)
{
	(void)sig;
	shmq_wakeup(wk_h);
}

/*
 * A consumer woken by shmq_wakeup() (no waker claimed its sleeper bit)
 * must not leave the bit set: the next put would wake it, not the
 * consumer asleep after it, which would sleep with a message waiting.
 */
START_TEST(test_multiproc_wakeup_keeps_no_bit)
{
	struct shmq_proc_info pi[4];
	int up[2], down[2], n;
	uint32_t v = 7, idx = UINT32_MAX;
	pid_t first, second;
	char c = 0;

	cu_create_flags = _i ? SHMQ_CREATE_FENCES : 0;
	cu_name(qname, "wakeup");
	q = cu_create(qname, 8, 64, 4, 2);
	ck_assert_int_eq(pipe(up), 0);
	ck_assert_int_eq(pipe(down), 0);
	first = cu_fork();
	if (first == 0) {
		char r;

		if ((wk_h = shmq_open(qname)) == NULL ||
		    signal(SIGUSR1, wk_on_usr1) == SIG_ERR)
			_exit(1);
		shmq_set_spin(wk_h, 0);
		r = shmq_get(wk_h, &v, sizeof(v), -1) == -EINTR ? 'i' : 'x';
		/* Stay attached, not waiting, until told to go. */
		if (write(up[1], &r, 1) != 1 || read(down[0], &r, 1) != 1)
			_exit(2);
		shmq_close(wk_h);
		_exit(0);
	}
	cu_wait_asleep(q, first, SHMQ_ASLEEP_GET);
	cu_wait_waits(q, SHMQ_ASLEEP_GET, 1);
	QASSERT_EQ(q, kill(first, SIGUSR1), 0);
	QASSERT_EQ(q, read(up[0], &c, 1), 1);
	QASSERT_EQ(q, c, 'i');
	n = shmq_procs(q, pi, 4);
	for (int i = 0; i < n; i++)
		if (pi[i].pid == first)
			idx = pi[i].index;
	QASSERT(q, idx < 64);
	QASSERT_MSG(q, !(atomic_load(&q->hdr->get_sleepers[0]) &
	    (UINT64_C(1) << idx)), "a consumer woken by shmq_wakeup kept its "
	    "sleeper bit");
	second = cu_fork();
	if (second == 0) {
		struct shmq *h = shmq_open(qname);

		if (h == NULL)
			_exit(1);
		shmq_set_spin(h, 0);
		/* Past CU_WAIT_S: a lost wake-up shows as the parent's
		 * timeout, not as this get's. */
		if (shmq_get(h, &v, sizeof(v), (CU_WAIT_S + 5) * 1000) !=
		    sizeof(v) || v != 42)
			_exit(3);
		shmq_close(h);
		_exit(0);
	}
	cu_wait_asleep(q, second, SHMQ_ASLEEP_GET);
	cu_wait_waits(q, SHMQ_ASLEEP_GET, 2);
	v = 42;
	QASSERT_EQ(q, shmq_put(q, &v, sizeof(v), 0), 0);
	cu_wait_exit(q, second, 0);
	QASSERT_EQ(q, write(down[1], &c, 1), 1);
	cu_wait_exit(q, first, 0);
	close(up[0]);
	close(up[1]);
	close(down[0]);
	close(down[1]);
	cu_assert_no_sleepers(q);
	shmq_close(q);
	cu_assert_all_closed(qname);
	ck_assert_int_eq(shmq_unlink(qname), 0);
}
END_TEST

/* A consumer that must get one message before its get times out. */
static pid_t
mp_one_getter(void)
{
	pid_t pid = cu_fork();

	if (pid == 0) {
		struct shmq *h = shmq_open(qname);
		uint32_t v;

		if (h == NULL)
			_exit(1);
		shmq_set_spin(h, 0);
		/* Past CU_WAIT_S: a lost wake-up shows as the parent's
		 * timeout, not as this get's. */
		if (shmq_get(h, &v, sizeof(v), (CU_WAIT_S + 5) * 1000) !=
		    sizeof(v))
			_exit(3);
		shmq_close(h);
		_exit(0);
	}
	return pid;
}

/*
 * Messages published behind a producer slow at an earlier position wake
 * consumers that find that position still being written, and sleep
 * again.  When the slow producer publishes, its put must wake a consumer
 * for every message now in reach, not only for its own.
 */
START_TEST(test_multiproc_slow_producer_wakes_all_in_reach)
{
	pid_t c0, c1, slow;
	uint32_t v;
	int status = 0;

	cu_name(qname, "slowput");
	q = cu_create(qname, 8, 64, 6, 2);
	c0 = mp_one_getter();
	cu_wait_asleep(q, c0, SHMQ_ASLEEP_GET);
	c1 = mp_one_getter();
	cu_wait_asleep(q, c1, SHMQ_ASLEEP_GET);
	cu_wait_waits(q, SHMQ_ASLEEP_GET, 2);
	slow = cu_fork();
	if (slow == 0) {
		struct shmq *h = shmq_open(qname);

		v = 1;
		if (h == NULL)
			_exit(1);
		shmq_fault_arm_stop("put.claimed", 1);
		if (shmq_put(h, &v, sizeof(v), 0) != 0)
			_exit(2);
		shmq_close(h);
		_exit(0);
	}
	/* Stopped holding position 0; 2 and 3 go after it. */
	QASSERT_EQ(q, waitpid(slow, &status, WUNTRACED), slow);
	QASSERT(q, WIFSTOPPED(status));
	for (v = 2; v <= 3; v++)
		QASSERT_EQ(q, shmq_put(q, &v, sizeof(v), 0), 0);
	cu_wait_waits(q, SHMQ_ASLEEP_GET, 4);	/* woken, and asleep again */
	cu_wait_asleep(q, c0, SHMQ_ASLEEP_GET);
	cu_wait_asleep(q, c1, SHMQ_ASLEEP_GET);
	QASSERT_EQ(q, kill(slow, SIGCONT), 0);
	cu_wait_exit(q, slow, 0);
	cu_wait_exit(q, c0, 0);
	cu_wait_exit(q, c1, 0);
	QASSERT_EQ(q, shmq_get(q, &v, sizeof(v), 0), sizeof(v));
	QASSERT_EQ(q, v, 3);
	cu_assert_no_sleepers(q);
	shmq_close(q);
	cu_assert_all_closed(qname);
	ck_assert_int_eq(shmq_unlink(qname), 0);
}
END_TEST

/*
 * Two processes bounce a message through two queues with no spinning.  On
 * CPUs of their own, most gets sleep (about half to all of them), and each
 * put must wake the other side: a single lost wake-up leaves both asleep
 * (caught by the generous timeout).  On one CPU, a waiter yields before it
 * sleeps, so the other side runs and answers with neither of them asleep.
 */
#define PP_ROUNDS	20000
#define PP_WEDGED_MS	10000

/* The client sends i and waits for it back; the server echoes it. */
static int
pp_bounce(const char *in_name, const char *out_name, bool serve, int cpu)
{
	struct shmq *in = shmq_open(in_name), *out = shmq_open(out_name);
	int r = 0;

	if (in == NULL || out == NULL || cu_pin(cpu) == 0)
		r = 1;
	shmq_set_spin(in, 0);
	shmq_set_spin(out, 0);
	for (uint32_t i = 0; r == 0 && i < PP_ROUNDS; i++) {
		uint32_t v = i;

		if (!serve && shmq_put(out, &v, sizeof(v), PP_WEDGED_MS) != 0)
			r = 2;
		else if (shmq_get(in, &v, sizeof(v), PP_WEDGED_MS) !=
		    sizeof(v))
			r = 3;		/* wedged: a wake-up was lost */
		else if (v != i)
			r = 4;
		else if (serve && shmq_put(out, &v, sizeof(v),
		    PP_WEDGED_MS) != 0)
			r = 2;
	}
	shmq_close(in);
	shmq_close(out);
	return r;
}

/*
 * Run a ping-pong between a client on CPU 0 and a server on CPU
 * server_cpu (of those allowed), on queues made with cu_create_flags;
 * return how many times a get slept.
 */
static uint64_t
pp_run(int server_cpu)
{
	char bname[CU_NAME_LEN];
	struct shmq_stats sa, sb;
	struct shmq *b;
	pid_t client, server;

	cu_name(qname, "pinga");
	cu_name(bname, "pingb");
	q = cu_create(qname, 4, 16, 4, 2);
	b = cu_create(bname, 4, 16, 4, 2);
	if ((server = cu_fork()) == 0)
		_exit(pp_bounce(qname, bname, true, server_cpu));
	if ((client = cu_fork()) == 0)
		_exit(pp_bounce(bname, qname, false, 0));
	cu_wait_exit(q, client, 0);
	cu_wait_exit(q, server, 0);
	cu_assert_no_sleepers(q);
	cu_assert_no_sleepers(b);
	QASSERT_EQ(q, shmq_stats(q, &sa), 0);
	QASSERT_EQ(b, shmq_stats(b, &sb), 0);
	QASSERT_EQ(q, sa.dequeued, PP_ROUNDS);
	QASSERT_EQ(b, sb.dequeued, PP_ROUNDS);
	shmq_close(b);
	cu_assert_all_closed(bname);
	ck_assert_int_eq(shmq_unlink(bname), 0);
	cu_finish(&q, qname);
	return sa.get_waits + sb.get_waits;
}

START_TEST(test_multiproc_pingpong_no_lost_wakeup)
{
	cu_create_flags = _i ? SHMQ_CREATE_FENCES : 0;
	(void)pp_run(1);
}
END_TEST

/* Without the yield, over half of the 2 * PP_ROUNDS gets sleep; with it,
 * a handful (the scheduler may still run another task first). */
START_TEST(test_multiproc_pingpong_one_cpu_hands_over)
{
	uint64_t slept;

	cu_create_flags = _i ? SHMQ_CREATE_FENCES : 0;
	slept = pp_run(0);
	ck_assert_msg(slept < PP_ROUNDS / 2, "%" PRIu64 " of %u gets slept",
	    slept, 2 * PP_ROUNDS);
}
END_TEST

/*
 * A waiter alone on a queue nobody fills: its yields never pay, so it
 * yields in its first 4 waits, then in one wait of 64; with the yield off,
 * never.  The child dies at the yield counted by nth, if it gets there
 * within `waits` waits.
 */
static int
yields_within(unsigned waits, unsigned nth, bool yield)
{
	pid_t pid;
	int status;

	cu_name(qname, "yield");
	q = cu_create(qname, 4, 16, 2, 1);
	if ((pid = cu_fork()) == 0) {
		struct shmq *h = shmq_open(qname);
		unsigned char buf[16];

		if (h == NULL)
			_exit(1);
		shmq_set_spin(h, 0);
		shmq_set_yield(h, yield);
		shmq_fault_arm("wait.yielded", nth);
		for (unsigned i = 0; i < waits; i++)
			if (shmq_get(h, buf, sizeof(buf), 1) != -ETIMEDOUT)
				_exit(2);
		shmq_close(h);
		_exit(0);
	}
	QASSERT_EQ(q, cu_wait(pid, &status, CU_WAIT_S), pid);
	QASSERT(q, WIFEXITED(status));
	QASSERT_EQ(q, shmq_recover(q, pid), 0);
	cu_finish(&q, qname);
	return WEXITSTATUS(status);
}

START_TEST(test_multiproc_yield_only_while_it_pays)
{
	ck_assert_int_eq(yields_within(4, 4, true), SHMQ_FAULT_EXIT);
	ck_assert_int_eq(yields_within(4 + 60, 5, true), 0);
	ck_assert_int_eq(yields_within(4 + 64, 5, true), SHMQ_FAULT_EXIT);
}
END_TEST

START_TEST(test_multiproc_yield_off)
{
	ck_assert_int_eq(yields_within(8, 1, false), 0);
	ck_assert_int_eq(yields_within(8, 1, true), SHMQ_FAULT_EXIT);
}
END_TEST

Suite *
multiproc_suite(void)
{
	Suite *s = suite_create("multiproc");
	TCase *tc = cu_tcase("Multi-process");

	tcase_add_loop_test(tc, test_multiproc_blocked_get_woken, 0, 2);	/* both wake modes */
	tcase_add_loop_test(tc, test_multiproc_blocked_put_woken, 0, 2);	/* both wake modes */
	tcase_add_loop_test(tc, test_multiproc_wakeup_keeps_no_bit, 0, 2);	/* both wake modes */
	tcase_add_test(tc, test_multiproc_slow_producer_wakes_all_in_reach);
	tcase_add_loop_test(tc, test_multiproc_pingpong_no_lost_wakeup, 0, 2);	/* both wake modes */
	tcase_add_loop_test(tc, test_multiproc_pingpong_one_cpu_hands_over, 0, 2);	/* both wake modes */
	tcase_add_test(tc, test_multiproc_yield_only_while_it_pays);
	tcase_add_test(tc, test_multiproc_yield_off);
	tcase_add_test(tc, test_multiproc_exactly_once_fifo);
	tcase_set_timeout(tc, 300);
	suite_add_tcase(s, tc);
	return s;
}
