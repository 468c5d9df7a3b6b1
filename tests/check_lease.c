/* SPDX-License-Identifier: BSD-2-Clause */
/* check_lease.c - tests of take, ack and release, redelivery, and the
 * leases handed back by shmq_close and shmq_recover. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check_util.h"
#include "shmq_int.h"

#define MSG_MAX		128
#define LEASE_MAX	4

static char		 qname[CU_NAME_LEN];
static struct shmq	*q;

static void
lease_new(const char *tag)
{
	cu_name(qname, tag);
	q = cu_create(qname, 16, MSG_MAX, 8, LEASE_MAX);
}

static void
lease_done(void)
{
	cu_finish(&q, qname);
}

static void
put_id(uint32_t id)
{
	cu_put_id(q, id, MSG_MAX);
}

/* Take the next message on handle h: it must be id, delivered deliv times. */
static void
take_id(struct shmq *h, uint32_t id, uint32_t deliv, struct shmq_lease *l)
{
	unsigned char buf[MSG_MAX];
	ssize_t n = shmq_take(h, buf, sizeof(buf), l, 0);
	uint32_t got = 0;

	QASSERT_EQ(q, n, (ssize_t)cu_msg_len(id, MSG_MAX));
	QASSERT_MSG(q, cu_msg_check(buf, (size_t)n, &got) && got == id,
	    "expected message %u, got %u", id, got);
	QASSERT_EQ(q, l->len, n);
	QASSERT_EQ(q, l->deliveries, deliv);
}

static void
get_id(uint32_t id)
{
	cu_get_id(q, id, MSG_MAX);
}

static void
stats(struct shmq_stats *st)
{
	QASSERT_EQ(q, shmq_stats(q, st), 0);
}

START_TEST(test_lease_take_ack)
{
	struct shmq_lease l;
	struct shmq_stats st;
	struct shmq_lease_info li[4];

	lease_new("takeack");
	put_id(1);
	take_id(q, 1, 1, &l);
	stats(&st);
	QASSERT_EQ(q, st.depth, 0);
	QASSERT_EQ(q, st.leases_held, 1);
	QASSERT_EQ(q, shmq_leases(q, li, 4), 1);
	QASSERT_EQ(q, li[0].holder, getpid());
	QASSERT_EQ(q, li[0].deliveries, 1);
	QASSERT_EQ(q, li[0].len, l.len);
	QASSERT_EQ(q, shmq_ack(q, &l), 0);
	stats(&st);
	QASSERT_EQ(q, st.leases_held, 0);
	QASSERT_EQ(q, st.redeliver_pending, 0);
	QASSERT_EQ(q, shmq_leases(q, li, 4), 0);
	QASSERT_EQ(q, shmq_get(q, NULL, 0, 0), -EAGAIN);
	lease_done();
}
END_TEST

START_TEST(test_lease_double_ack_estale)
{
	struct shmq_lease l, forged;

	lease_new("estale");
	put_id(1);
	put_id(2);
	take_id(q, 1, 1, &l);
	forged = l;
	forged.id ^= UINT64_C(1) << 32;		/* another generation */
	QASSERT_EQ(q, shmq_ack(q, &forged), -ESTALE);
	QASSERT_EQ(q, shmq_release(q, &forged), -ESTALE);
	forged.id = UINT32_MAX;			/* no such entry */
	QASSERT_EQ(q, shmq_ack(q, &forged), -ESTALE);
	QASSERT_EQ(q, shmq_ack(q, &l), 0);
	QASSERT_EQ(q, shmq_ack(q, &l), -ESTALE);
	QASSERT_EQ(q, shmq_release(q, &l), -ESTALE);
	/* The freed entry is reused: the old lease stays stale. */
	take_id(q, 2, 1, &forged);
	QASSERT_EQ(q, shmq_ack(q, &l), -ESTALE);
	QASSERT_EQ(q, shmq_ack(q, &forged), 0);
	QASSERT_EQ(q, shmq_ack(q, NULL), -EINVAL);
	lease_done();
}
END_TEST

START_TEST(test_lease_enobufs)
{
	struct shmq_lease l[LEASE_MAX + 1];
	unsigned char buf[MSG_MAX];
	struct shmq_stats st;

	lease_new("enobufs");
	for (uint32_t i = 1; i <= LEASE_MAX + 2; i++)
		put_id(i);
	for (uint32_t i = 0; i < LEASE_MAX; i++)
		take_id(q, i + 1, 1, &l[i]);
	QASSERT_EQ(q, shmq_take(q, buf, sizeof(buf), &l[LEASE_MAX], 0),
	    -ENOBUFS);
	QASSERT_EQ(q, shmq_take(q, buf, sizeof(buf), &l[LEASE_MAX], -1),
	    -ENOBUFS);
	stats(&st);
	QASSERT_EQ(q, st.depth, 2);	/* nothing was taken off */
	QASSERT_EQ(q, st.leases_held, LEASE_MAX);
	get_id(LEASE_MAX + 1);		/* plain gets need no lease */
	QASSERT_EQ(q, shmq_ack(q, &l[1]), 0);
	take_id(q, LEASE_MAX + 2, 1, &l[LEASE_MAX]);
	QASSERT_EQ(q, shmq_ack(q, &l[0]), 0);
	for (uint32_t i = 2; i <= LEASE_MAX; i++)
		QASSERT_EQ(q, shmq_ack(q, &l[i]), 0);
	lease_done();
}
END_TEST

START_TEST(test_lease_take_batch)
{
	unsigned char out[6][MSG_MAX];
	struct iovec bufs[6];
	struct shmq_lease l[6];
	uint32_t id;

	lease_new("takebatch");
	for (uint32_t i = 1; i <= 6; i++)
		put_id(i);
	for (unsigned i = 0; i < 6; i++) {
		bufs[i].iov_base = out[i];
		bufs[i].iov_len = MSG_MAX;
	}
	/* At most lease_max at once. */
	QASSERT_EQ(q, shmq_take_batch(q, bufs, l, 6, 0), LEASE_MAX);
	for (unsigned i = 0; i < LEASE_MAX; i++) {
		QASSERT(q, cu_msg_check(out[i], bufs[i].iov_len, &id) &&
		    id == i + 1);
		QASSERT_EQ(q, l[i].deliveries, 1);
		for (unsigned j = 0; j < i; j++)
			QASSERT(q, l[i].id != l[j].id);
	}
	for (unsigned i = 0; i < LEASE_MAX; i++)
		QASSERT_EQ(q, shmq_ack(q, &l[i]), 0);
	get_id(5);
	get_id(6);
	lease_done();
}
END_TEST

START_TEST(test_lease_release_redelivers)
{
	struct shmq_lease l;
	struct shmq_stats st;
	struct shmq_lease_info li[2];

	lease_new("release");
	put_id(1);
	take_id(q, 1, 1, &l);
	QASSERT_EQ(q, shmq_release(q, &l), 0);
	stats(&st);
	QASSERT_EQ(q, st.leases_held, 0);
	QASSERT_EQ(q, st.redeliver_pending, 1);
	QASSERT_EQ(q, st.redelivered, 1);
	QASSERT_EQ(q, shmq_leases(q, li, 2), 1);
	QASSERT_EQ(q, li[0].holder, 0);
	QASSERT_EQ(q, li[0].deliveries, 1);
	QASSERT_EQ(q, shmq_release(q, &l), -ESTALE);
	QASSERT_EQ(q, shmq_ack(q, &l), -ESTALE);
	take_id(q, 1, 2, &l);
	QASSERT_EQ(q, shmq_release(q, &l), 0);
	take_id(q, 1, 3, &l);
	QASSERT_EQ(q, shmq_ack(q, &l), 0);
	stats(&st);
	QASSERT_EQ(q, st.redeliver_pending, 0);
	QASSERT_EQ(q, st.leases_held, 0);
	QASSERT_EQ(q, shmq_get(q, NULL, 0, 0), -EAGAIN);
	lease_done();
}
END_TEST

START_TEST(test_lease_redelivery_comes_first)
{
	struct shmq_lease a, b;
	unsigned char buf[MSG_MAX];
	uint32_t id, seen = 0;
	ssize_t n;

	lease_new("first");
	put_id(1);
	put_id(2);
	put_id(3);
	take_id(q, 1, 1, &a);
	take_id(q, 2, 1, &b);
	QASSERT_EQ(q, shmq_release(q, &b), 0);
	QASSERT_EQ(q, shmq_release(q, &a), 0);
	put_id(4);
	/* Both redeliveries before 3 and 4, in either order; a get takes
	 * a redelivery as well as a take does. */
	n = shmq_take(q, buf, sizeof(buf), &a, 0);
	QASSERT(q, n > 0 && cu_msg_check(buf, (size_t)n, &id));
	QASSERT(q, (id == 1 || id == 2) && a.deliveries == 2);
	seen |= 1u << id;
	n = shmq_get(q, buf, sizeof(buf), 0);
	QASSERT(q, n > 0 && cu_msg_check(buf, (size_t)n, &id));
	QASSERT(q, id == 1 || id == 2);
	seen |= 1u << id;
	QASSERT_EQ(q, seen, 0x6);
	get_id(3);
	take_id(q, 4, 1, &b);
	QASSERT_EQ(q, shmq_ack(q, &a), 0);
	QASSERT_EQ(q, shmq_ack(q, &b), 0);
	lease_done();
}
END_TEST

/*
 * A redelivery dropped as corrupt (its length beyond msg_max, written by
 * a buggy process) must not move the consumers past the ring message
 * after it: that message was put, and stays deliverable.
 */
START_TEST(test_lease_corrupt_redelivery_skips_nothing)
{
	struct shmq_lease l;
	struct shmq_stats st;

	lease_new("badredo");
	put_id(1);
	take_id(q, 1, 1, &l);
	QASSERT_EQ(q, shmq_release(q, &l), 0);
	put_id(2);
	atomic_store(&shmq__entry(q, (uint32_t)l.id)->len, MSG_MAX + 1);
	QASSERT_EQ(q, shmq_get(q, NULL, 0, 0), -EPROTO);
	get_id(2);
	QASSERT_EQ(q, shmq_get(q, NULL, 0, 0), -EAGAIN);
	stats(&st);
	QASSERT_EQ(q, st.corrupt, 1);
	QASSERT_EQ(q, st.depth, 0);
	lease_done();
}
END_TEST

START_TEST(test_lease_close_hands_back)
{
	struct shmq_stats st;
	struct shmq_lease l;
	pid_t pid;

	lease_new("closeback");
	for (uint32_t i = 1; i <= 4; i++)
		put_id(i);
	pid = cu_fork();
	if (pid == 0) {
		struct shmq *c = shmq_open(qname);
		unsigned char buf[MSG_MAX];
		struct shmq_lease cl;
		int bad = c == NULL;

		for (int i = 0; i < 2 && !bad; i++)
			bad |= shmq_take(c, buf, sizeof(buf), &cl, 0) < 0;
		shmq_close(c);		/* without acking */
		_exit(bad);
	}
	cu_wait_exit(q, pid, 0);
	stats(&st);
	QASSERT_EQ(q, st.redeliver_pending, 2);
	QASSERT_EQ(q, st.leases_held, 0);
	QASSERT_EQ(q, st.procs, 1);
	take_id(q, 1, 2, &l);
	QASSERT_EQ(q, shmq_ack(q, &l), 0);
	take_id(q, 2, 2, &l);
	QASSERT_EQ(q, shmq_ack(q, &l), 0);
	get_id(3);
	get_id(4);
	/* A handle closed in this process hands back its leases too. */
	put_id(5);
	struct shmq *h = shmq_open(qname);
	QASSERT(q, h != NULL);
	take_id(h, 5, 1, &l);
	shmq_close(h);
	take_id(q, 5, 2, &l);
	QASSERT_EQ(q, shmq_ack(q, &l), 0);
	lease_done();
}
END_TEST

START_TEST(test_lease_recover_dead_child)
{
	struct shmq_stats st;
	struct shmq_lease l;
	pid_t pid;

	lease_new("recover");
	for (uint32_t i = 1; i <= 3; i++)
		put_id(i);
	pid = cu_fork();
	if (pid == 0) {
		struct shmq *c = shmq_open(qname);
		unsigned char buf[MSG_MAX];
		struct shmq_lease cl;

		if (c == NULL || shmq_take(c, buf, sizeof(buf), &cl, 0) < 0 ||
		    shmq_take(c, buf, sizeof(buf), &cl, 0) < 0)
			_exit(1);
		_exit(0);		/* dies holding two leases */
	}
	cu_wait_exit(q, pid, 0);
	stats(&st);
	QASSERT_EQ(q, st.leases_held, 2);
	QASSERT_EQ(q, st.procs, 2);
	QASSERT_EQ(q, shmq_recover(q, pid), 2);
	QASSERT_EQ(q, shmq_recover(q, pid), 0);	/* again: nothing */
	stats(&st);
	QASSERT_EQ(q, st.leases_held, 0);
	QASSERT_EQ(q, st.redeliver_pending, 2);
	QASSERT_EQ(q, st.procs, 1);
	QASSERT_EQ(q, st.procs_draining, 1);	/* its area holds them */
	take_id(q, 1, 2, &l);
	QASSERT_EQ(q, shmq_ack(q, &l), 0);
	take_id(q, 2, 2, &l);
	QASSERT_EQ(q, shmq_ack(q, &l), 0);
	get_id(3);
	stats(&st);
	QASSERT_EQ(q, st.procs_draining, 0);
	lease_done();
}
END_TEST

START_TEST(test_lease_recover_dead_finds_it)
{
	struct shmq_lease l;
	pid_t pid;

	lease_new("recoverdead");
	put_id(1);
	pid = cu_fork();
	if (pid == 0) {
		struct shmq *c = shmq_open(qname);
		unsigned char buf[MSG_MAX];
		struct shmq_lease cl;

		_exit(c == NULL || shmq_take(c, buf, sizeof(buf), &cl, 0) < 0);
	}
	cu_wait_exit(q, pid, 0);
	QASSERT_EQ(q, shmq_recover_dead(q), 1);
	QASSERT_EQ(q, shmq_recover_dead(q), 0);
	take_id(q, 1, 2, &l);
	QASSERT_EQ(q, shmq_ack(q, &l), 0);
	lease_done();
}
END_TEST

START_TEST(test_lease_recover_live_ebusy)
{
	struct shmq_stats st;
	struct shmq_lease l;
	int go[2], ready[2];
	char c = 0;
	pid_t pid;

	lease_new("ebusy");
	put_id(1);
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(ready), 0);
	pid = cu_fork();
	if (pid == 0) {
		struct shmq *h = shmq_open(qname);
		unsigned char buf[MSG_MAX];
		struct shmq_lease hl;

		if (h == NULL || shmq_take(h, buf, sizeof(buf), &hl, 0) < 0)
			_exit(1);
		(void)!write(ready[1], "r", 1);
		(void)!read(go[0], &c, 1);	/* until the parent says */
		_exit(shmq_ack(h, &hl) == 0 ? 0 : 2);
	}
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	QASSERT_EQ(q, shmq_recover(q, pid), -EBUSY);
	QASSERT_EQ(q, shmq_recover_dead(q), 0);
	QASSERT_EQ(q, shmq_recover(q, 0), -EINVAL);
	QASSERT_EQ(q, shmq_recover(q, -1), -EINVAL);
	stats(&st);
	QASSERT_EQ(q, st.leases_held, 1);	/* untouched */
	QASSERT_EQ(q, st.redeliver_pending, 0);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	cu_wait_exit(q, pid, 0);
	QASSERT_EQ(q, shmq_recover(q, pid), 0);
	QASSERT_EQ(q, shmq_take(q, NULL, 0, &l, 0), -EAGAIN);
	close(go[0]);
	close(go[1]);
	close(ready[0]);
	close(ready[1]);
	lease_done();
}
END_TEST

START_TEST(test_lease_procs_counts)
{
	struct shmq_proc_info pi[4];
	struct shmq_lease l[2];

	lease_new("procs");
	for (uint32_t i = 1; i <= 3; i++)
		put_id(i);
	take_id(q, 1, 1, &l[0]);
	take_id(q, 2, 1, &l[1]);
	QASSERT_EQ(q, shmq_ack(q, &l[0]), 0);
	QASSERT_EQ(q, shmq_procs(q, pi, 4), 1);
	QASSERT_EQ(q, pi[0].pid, getpid());
	QASSERT_EQ(q, pi[0].state, SHMQ_PROC_ALIVE);
	QASSERT_EQ(q, pi[0].n_put, 3);
	QASSERT_EQ(q, pi[0].n_get, 2);
	QASSERT_EQ(q, pi[0].n_ack, 1);
	QASSERT_EQ(q, pi[0].leases, 1);
	QASSERT_EQ(q, shmq_procs(q, NULL, 0), 1);
	QASSERT_EQ(q, shmq_ack(q, &l[1]), 0);
	get_id(3);
	lease_done();
}
END_TEST

Suite *
lease_suite(void)
{
	Suite *s = suite_create("lease");
	TCase *tc = cu_tcase("Core");

	tcase_add_test(tc, test_lease_take_ack);
	tcase_add_test(tc, test_lease_double_ack_estale);
	tcase_add_test(tc, test_lease_take_batch);
	tcase_add_test(tc, test_lease_release_redelivers);
	tcase_add_test(tc, test_lease_redelivery_comes_first);
	tcase_add_test(tc, test_lease_corrupt_redelivery_skips_nothing);
	tcase_add_test(tc, test_lease_close_hands_back);
	tcase_add_test(tc, test_lease_recover_dead_child);
	tcase_add_test(tc, test_lease_recover_dead_finds_it);
	tcase_add_test(tc, test_lease_recover_live_ebusy);
	tcase_add_test(tc, test_lease_procs_counts);
	suite_add_tcase(s, tc);

	tc = cu_tcase("Limits");
	tcase_add_test(tc, test_lease_enobufs);
	suite_add_tcase(s, tc);
	return s;
}
