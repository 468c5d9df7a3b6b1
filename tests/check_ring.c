/* SPDX-License-Identifier: BSD-2-Clause */
/* check_ring.c - tests of put and get in one process: sizes, order,
 * wrap-around, full and empty, timeouts, batches, peek and statistics. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_util.h"
#include "shmq_int.h"

#define MSG_MAX		256

static char		 qname[CU_NAME_LEN];
static struct shmq	*q;

/* A fresh queue of the given capacity, msg_max MSG_MAX. */
static struct shmq *
ring_new(const char *tag, uint32_t capacity)
{
	cu_name(qname, tag);
	q = cu_create(qname, capacity, MSG_MAX, 4, 4);
	return q;
}

/* Close and check that nothing is left behind. */
static void
ring_done(void)
{
	cu_finish(&q, qname);
}

static void
put_id(uint32_t id)
{
	cu_put_id(q, id, MSG_MAX);
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

START_TEST(test_ring_put_get)
{
	char buf[MSG_MAX];

	ring_new("putget", 8);
	QASSERT_EQ(q, shmq_put(q, "hello, world", 12, 0), 0);
	QASSERT_EQ(q, shmq_get(q, buf, sizeof(buf), 0), 12);
	ck_assert_mem_eq(buf, "hello, world", 12);
	QASSERT_EQ(q, shmq_get(q, buf, sizeof(buf), 0), -EAGAIN);
	ring_done();
}
END_TEST

static void
fill_sized(unsigned char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(len * 7 + i * 13 + 1);
}

START_TEST(test_ring_every_size)
{
	unsigned char in[MSG_MAX], out[MSG_MAX + 16];

	ring_new("sizes", 16);
	/* One at a time, 0..msg_max. */
	for (size_t len = 0; len <= MSG_MAX; len++) {
		fill_sized(in, len);
		QASSERT_EQ(q, shmq_put(q, in, len, 0), 0);
		memset(out, 0xee, sizeof(out));
		QASSERT_EQ(q, shmq_get(q, out, MSG_MAX, 0), (ssize_t)len);
		QASSERT_MSG(q, memcmp(in, out, len) == 0,
		    "size %zu: contents differ", len);
		QASSERT_MSG(q, out[len] == 0xee, "size %zu: wrote past", len);
	}
	/* Queued sixteen deep, in every slot, from the top down. */
	for (size_t base = MSG_MAX + 1; base > 0; base -= base >= 16 ? 16 :
	    base) {
		size_t n = base >= 16 ? 16 : base;
		for (size_t k = 0; k < n; k++) {
			fill_sized(in, base - 1 - k);
			QASSERT_EQ(q, shmq_put(q, in, base - 1 - k, 0), 0);
		}
		for (size_t k = 0; k < n; k++) {
			size_t len = base - 1 - k;
			fill_sized(in, len);
			QASSERT_EQ(q, shmq_get(q, out, sizeof(out), 0),
			    (ssize_t)len);
			QASSERT_MSG(q, memcmp(in, out, len) == 0,
			    "size %zu: contents differ", len);
		}
	}
	ring_done();
}
END_TEST

/* An empty message needs no buffer either way (NULL with length 0). */
START_TEST(test_ring_empty_message_null_buffer)
{
	struct shmq_lease l;

	ring_new("nullbuf", 8);
	QASSERT_EQ(q, shmq_put(q, NULL, 0, 0), 0);
	QASSERT_EQ(q, shmq_put(q, NULL, 0, 0), 0);
	QASSERT_EQ(q, shmq_get(q, NULL, 0, 0), 0);
	QASSERT_EQ(q, shmq_take(q, NULL, 0, &l, 0), 0);
	QASSERT_EQ(q, l.len, 0);
	QASSERT_EQ(q, shmq_release(q, &l), 0);
	QASSERT_EQ(q, shmq_get(q, NULL, 0, 0), 0);	/* the redelivery */
	QASSERT_EQ(q, shmq_get(q, NULL, 0, 0), -EAGAIN);
	ring_done();
}
END_TEST

START_TEST(test_ring_fifo)
{
	ring_new("fifo", 128);
	for (uint32_t id = 1; id <= 128; id++)
		put_id(id);
	for (uint32_t id = 1; id <= 128; id++)
		get_id(id);
	ring_done();
}
END_TEST

START_TEST(test_ring_wraparound)
{
	struct shmq_stats st;
	uint32_t next_put = 1, next_get = 1, depth = 0;
	const unsigned laps = 3000;

	ring_new("wrap", 4);
	for (unsigned i = 0; i < laps; i++) {
		unsigned k = 1 + (i * 7) % 4;	/* 1..4 deep */
		if (k > 4 - depth)
			k = 4 - depth;
		for (unsigned j = 0; j < k; j++)
			put_id(next_put++);
		depth += k;
		/* Leave one behind on odd rounds, so the phase varies. */
		for (; depth > (i & 1); depth--)
			get_id(next_get++);
	}
	while (next_get < next_put)
		get_id(next_get++);
	QASSERT_EQ(q, shmq_get(q, NULL, 0, 0), -EAGAIN);
	stats(&st);
	QASSERT_MSG(q, next_put - 1 > 100 * shmq_capacity(q),
	    "only %u messages: too few laps", next_put - 1);
	QASSERT_EQ(q, st.enqueued, next_put - 1);
	QASSERT_EQ(q, st.dequeued, next_put - 1);
	QASSERT_EQ(q, st.depth, 0);
	QASSERT_EQ(q, atomic_load(&q->hdr->prod_pos), next_put - 1);
	QASSERT_EQ(q, atomic_load(&q->hdr->cons_pos), next_put - 1);
	ring_done();
}
END_TEST

START_TEST(test_ring_empty)
{
	char buf[MSG_MAX];
	struct shmq_lease lease[2];
	struct iovec iov[2] = { { buf, 64 }, { buf + 64, 64 } };
	struct shmq_stats st;

	ring_new("empty", 8);
	QASSERT_EQ(q, shmq_get(q, buf, sizeof(buf), 0), -EAGAIN);
	QASSERT_EQ(q, shmq_take(q, buf, sizeof(buf), lease, 0), -EAGAIN);
	QASSERT_EQ(q, shmq_get_batch(q, iov, 2, 0), -EAGAIN);
	QASSERT_EQ(q, shmq_take_batch(q, iov, lease, 2, 0), -EAGAIN);
	QASSERT_EQ(q, shmq_peek(q, 0, buf, sizeof(buf)), -ENOENT);
	stats(&st);
	QASSERT_EQ(q, st.depth, 0);
	QASSERT_EQ(q, st.leases_held, 0);
	QASSERT_EQ(q, st.oldest_age_ms, -1);
	/* Drained after use is empty too. */
	put_id(1);
	get_id(1);
	QASSERT_EQ(q, shmq_get(q, buf, sizeof(buf), 0), -EAGAIN);
	ring_done();
}
END_TEST

START_TEST(test_ring_batch)
{
	unsigned char in[5][MSG_MAX], out[8][MSG_MAX];
	struct iovec msgs[5], bufs[8];
	uint32_t id;

	ring_new("batch", 16);
	for (unsigned i = 0; i < 5; i++) {
		msgs[i].iov_base = in[i];
		msgs[i].iov_len = cu_msg_make(in[i], 10 + i,
		    cu_msg_len(10 + i, MSG_MAX));
	}
	QASSERT_EQ(q, shmq_put_batch(q, msgs, 5, 0), 5);
	for (unsigned i = 0; i < 8; i++) {
		bufs[i].iov_base = out[i];
		bufs[i].iov_len = MSG_MAX;
	}
	QASSERT_EQ(q, shmq_get_batch(q, bufs, 2, 0), 2);
	QASSERT_EQ(q, shmq_get_batch(q, bufs + 2, 6, 0), 3);
	for (unsigned i = 0; i < 5; i++) {
		QASSERT_EQ(q, bufs[i].iov_len, msgs[i].iov_len);
		QASSERT(q, cu_msg_check(out[i], bufs[i].iov_len, &id) &&
		    id == 10 + i);
	}
	QASSERT_EQ(q, bufs[5].iov_len, MSG_MAX);	/* untouched */
	ring_done();
}
END_TEST

START_TEST(test_ring_peek)
{
	unsigned char buf[MSG_MAX];
	struct shmq_stats st;
	uint32_t id;

	ring_new("peek", 8);
	for (uint32_t i = 1; i <= 5; i++)
		put_id(i);
	for (unsigned round = 0; round < 2; round++)
		for (unsigned k = 0; k < 5; k++) {
			ssize_t n = shmq_peek(q, k, buf, sizeof(buf));
			QASSERT_EQ(q, n, (ssize_t)cu_msg_len(k + 1, MSG_MAX));
			QASSERT(q, cu_msg_check(buf, (size_t)n, &id) &&
			    id == k + 1);
		}
	QASSERT_EQ(q, shmq_peek(q, 5, buf, sizeof(buf)), -ENOENT);
	QASSERT_EQ(q, shmq_peek(q, 0, buf, CU_MSG_MIN - 1), -EMSGSIZE);
	stats(&st);
	QASSERT_EQ(q, st.depth, 5);
	QASSERT_EQ(q, st.dequeued, 0);
	for (uint32_t i = 1; i <= 5; i++)
		get_id(i);		/* peek consumed nothing */
	QASSERT_EQ(q, shmq_peek(q, 0, buf, sizeof(buf)), -ENOENT);
	ring_done();
}
END_TEST

START_TEST(test_ring_stats_invariants)
{
	struct shmq_stats st;
	struct shmq_proc_info pi[4];
	uint32_t cap;

	ring_new("stats", 16);
	cap = shmq_capacity(q);
	for (uint32_t i = 1; i <= cap; i++) {
		put_id(i);
		stats(&st);
		QASSERT_EQ(q, st.depth, i);
		QASSERT_EQ(q, st.enqueued, i);
		QASSERT_EQ(q, st.dequeued, 0);
		QASSERT(q, st.high_water >= st.depth);
		QASSERT(q, st.high_water <= st.capacity);
		QASSERT(q, st.oldest_age_ms >= 0);
	}
	for (uint32_t i = 1; i <= cap; i++) {
		get_id(i);
		stats(&st);
		QASSERT_EQ(q, st.depth, cap - i);
		QASSERT_EQ(q, st.dequeued, i);
		QASSERT(q, st.high_water <= st.capacity);
	}
	QASSERT_EQ(q, st.oldest_age_ms, -1);
	QASSERT_EQ(q, st.redeliver_pending, 0);
	QASSERT_EQ(q, st.leases_held, 0);
	QASSERT_EQ(q, st.procs, 1);
	QASSERT_EQ(q, st.voided, 0);
	QASSERT_EQ(q, st.corrupt, 0);
	QASSERT_EQ(q, st.msg_max, MSG_MAX);
	QASSERT_EQ(q, shmq_procs(q, pi, 4), 1);
	QASSERT_EQ(q, pi[0].pid, getpid());
	QASSERT_EQ(q, pi[0].n_put, cap);
	QASSERT_EQ(q, pi[0].n_get, cap);
	QASSERT_EQ(q, pi[0].roles, SHMQ_ROLE_PRODUCER | SHMQ_ROLE_CONSUMER);
	QASSERT_EQ(q, pi[0].asleep, 0);
	ring_done();
}
END_TEST

/*
 * Rates come from the history the queue keeps: plant a snapshot two
 * seconds back with known indices and the rates must be the difference over
 * the span the snapshot says, whatever the time the test took.
 */
START_TEST(test_ring_rates_window)
{
	struct shmq_seg_rate *r;
	double put, get;
	uint64_t win, now;
	struct timespec ts;

	ring_new("rates", 64);
	QASSERT_EQ(q, shmq_rates(q, 0, &put, &get, &win), -EINVAL);
	QASSERT_EQ(q, shmq_rates(q, SHMQ_RATE_SLOTS + 1, &put, &get, &win),
	    -EINVAL);
	for (uint32_t i = 1; i <= 40; i++)
		put_id(i);
	for (uint32_t i = 1; i <= 10; i++)
		get_id(i);
	memset((void *)q->hdr->rates, 0, sizeof(q->hdr->rates));
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	r = &q->hdr->rates[0];
	atomic_store(&r->at_ns, now - 2000000000u);
	atomic_store(&r->prod_pos, 0);
	atomic_store(&r->cons_pos, 0);
	QASSERT_EQ(q, shmq_rates(q, 8, &put, &get, &win), 0);
	QASSERT(q, win >= 2000 && win < 8000);
	QASSERT(q, put > 0 && get > 0);
	/* Whatever the span, the rates are the index moves over it. */
	QASSERT(q, (uint64_t)(put * win / 1000.0 + 0.5) == 40);
	QASSERT(q, (uint64_t)(get * win / 1000.0 + 0.5) == 10);
	/* A snapshot older than the window does not count. */
	atomic_store(&r->at_ns, now - 9000000000ull);
	QASSERT_EQ(q, shmq_rates(q, 8, &put, &get, &win), 0);
	QASSERT_EQ(q, win, 0);
	QASSERT(q, put == 0 && get == 0);
	ring_done();
}
END_TEST

/*
 * A writer of the rate history killed between its two version stores
 * leaves the version odd ("being written"); the next writer of that
 * slot must leave it even, or shmq_rates would skip the slot for ever.
 */
START_TEST(test_ring_rates_after_killed_writer)
{
	struct shmq_seg_rate *r;
	uint64_t sec = 1000;

	ring_new("ratekill", 64);
	r = &q->hdr->rates[sec % SHMQ_RATE_SLOTS];
	atomic_store(&r->version, 5);		/* a writer died mid-way */
	atomic_store(&q->hdr->rate_sec, sec - 1);
	shmq__rate_record(q, sec * 1000000000u);
	QASSERT_EQ(q, atomic_load(&q->hdr->rate_sec), sec);
	QASSERT_EQ(q, atomic_load(&r->at_ns), sec * 1000000000u);
	QASSERT_EQ(q, atomic_load(&r->version) % 2, 0);
	ring_done();
}
END_TEST

START_TEST(test_ring_einval)
{
	char buf[16];
	struct iovec iov = { NULL, 4 };

	ring_new("einval", 8);
	QASSERT_EQ(q, shmq_put(q, NULL, 4, 0), -EINVAL);
	QASSERT_EQ(q, shmq_put_batch(q, &iov, 1, 0), -EINVAL);
	QASSERT_EQ(q, shmq_put_batch(q, NULL, 1, 0), -EINVAL);
	QASSERT_EQ(q, shmq_put_batch(q, &iov, 0, 0), -EINVAL);
	QASSERT_EQ(q, shmq_get(q, NULL, 4, 0), -EINVAL);
	QASSERT_EQ(q, shmq_get_batch(q, NULL, 1, 0), -EINVAL);
	QASSERT_EQ(q, shmq_take(q, buf, sizeof(buf), NULL, 0), -EINVAL);
	QASSERT_EQ(q, shmq_put(NULL, buf, 1, 0), -EINVAL);
	QASSERT_EQ(q, shmq_get(NULL, buf, 1, 0), -EINVAL);
	QASSERT_EQ(q, shmq_stats(q, NULL), -EINVAL);
	ring_done();
}
END_TEST

/* Fill to exactly the capacity with timeout 0; one more is -EAGAIN. */
static void
fill_exactly(uint32_t cap)
{
	unsigned char buf[MSG_MAX];
	struct iovec iov = { buf, 20 };
	struct shmq_stats st;

	for (uint32_t i = 1; i <= cap; i++)
		put_id(i);
	memset(buf, 1, sizeof(buf));
	QASSERT_EQ(q, shmq_put(q, buf, 20, 0), -EAGAIN);
	QASSERT_EQ(q, shmq_put_batch(q, &iov, 1, 0), -EAGAIN);
	stats(&st);
	QASSERT_EQ(q, st.depth, cap);
	QASSERT_EQ(q, st.enqueued, cap);
	get_id(1);
	put_id(cap + 1);		/* one slot free again */
	QASSERT_EQ(q, shmq_put(q, buf, 20, 0), -EAGAIN);
	for (uint32_t i = 2; i <= cap + 1; i++)
		get_id(i);
}

START_TEST(test_ring_full_at_capacity)
{
	ring_new("full", 16);
	QASSERT_EQ(q, shmq_capacity(q), 16);
	fill_exactly(16);
	ring_done();
}
END_TEST

START_TEST(test_ring_full_at_rounded_capacity)
{
	static const uint32_t asked[] = { 5, 9, 3 }, got[] = { 8, 16, 4 };

	for (unsigned i = 0; i < 3; i++) {
		ring_new("round", asked[i]);
		QASSERT_EQ(q, shmq_capacity(q), got[i]);
		fill_exactly(got[i]);
		ring_done();
	}
}
END_TEST

START_TEST(test_ring_timeout_empty)
{
	char buf[MSG_MAX];
	struct shmq_lease lease;
	struct iovec iov = { buf, sizeof(buf) };
	struct shmq_stats st;

	ring_new("tmoempty", 8);
	QASSERT_EQ(q, shmq_get(q, buf, sizeof(buf), 1), -ETIMEDOUT);
	QASSERT_EQ(q, shmq_get(q, buf, sizeof(buf), 20), -ETIMEDOUT);
	QASSERT_EQ(q, shmq_take(q, buf, sizeof(buf), &lease, 5), -ETIMEDOUT);
	QASSERT_EQ(q, shmq_get_batch(q, &iov, 1, 5), -ETIMEDOUT);
	stats(&st);
	QASSERT_EQ(q, st.leases_held, 0);
	cu_assert_no_sleepers(q);
	put_id(1);			/* and still works */
	get_id(1);
	ring_done();
}
END_TEST

START_TEST(test_ring_timeout_full)
{
	char buf[MSG_MAX] = { 0 };
	struct iovec iov = { buf, 16 };
	struct shmq_stats st;

	ring_new("tmofull", 4);
	for (uint32_t i = 1; i <= 4; i++)
		put_id(i);
	QASSERT_EQ(q, shmq_put(q, buf, 16, 1), -ETIMEDOUT);
	QASSERT_EQ(q, shmq_put(q, buf, 16, 20), -ETIMEDOUT);
	QASSERT_EQ(q, shmq_put_batch(q, &iov, 1, 5), -ETIMEDOUT);
	stats(&st);
	QASSERT_EQ(q, st.depth, 4);
	QASSERT_EQ(q, st.enqueued, 4);
	cu_assert_no_sleepers(q);
	for (uint32_t i = 1; i <= 4; i++)
		get_id(i);
	ring_done();
}
END_TEST

START_TEST(test_ring_put_emsgsize)
{
	unsigned char buf[MSG_MAX + 1] = { 0 };
	struct iovec iov[2] = { { buf, MSG_MAX + 1 }, { buf, 1 } };
	struct shmq_stats st;

	ring_new("putsize", 8);
	QASSERT_EQ(q, shmq_put(q, buf, MSG_MAX + 1, 0), -EMSGSIZE);
	QASSERT_EQ(q, shmq_put(q, buf, SIZE_MAX, 0), -EMSGSIZE);
	QASSERT_EQ(q, shmq_put_batch(q, iov, 2, 0), -EMSGSIZE);
	stats(&st);
	QASSERT_EQ(q, st.depth, 0);
	QASSERT_EQ(q, shmq_put(q, buf, MSG_MAX, 0), 0);	/* the limit fits */
	QASSERT_EQ(q, shmq_get(q, buf, MSG_MAX, 0), MSG_MAX);
	ring_done();
}
END_TEST

START_TEST(test_ring_get_emsgsize)
{
	unsigned char buf[MSG_MAX];
	struct shmq_lease lease;
	struct iovec iov = { buf, 99 };
	struct shmq_stats st;
	uint32_t id;
	size_t len;

	ring_new("getsize", 8);
	len = cu_msg_make(buf, 7, 100);
	QASSERT_EQ(q, shmq_put(q, buf, len, 0), 0);
	put_id(8);
	QASSERT_EQ(q, shmq_get(q, buf, 99, 0), -EMSGSIZE);
	QASSERT_EQ(q, shmq_get(q, buf, 0, 0), -EMSGSIZE);
	QASSERT_EQ(q, shmq_get_batch(q, &iov, 1, 0), -EMSGSIZE);
	QASSERT_EQ(q, shmq_take(q, buf, 99, &lease, 0), -EMSGSIZE);
	/* Still queued, in front, and no lease was taken. */
	stats(&st);
	QASSERT_EQ(q, st.depth, 2);
	QASSERT_EQ(q, st.leases_held, 0);
	QASSERT_EQ(q, st.dequeued, 0);
	QASSERT_EQ(q, shmq_get(q, buf, 100, 0), 100);
	QASSERT(q, cu_msg_check(buf, 100, &id) && id == 7);
	get_id(8);
	ring_done();
}
END_TEST

START_TEST(test_ring_batch_partial_full)
{
	unsigned char in[5][MSG_MAX];
	struct iovec msgs[5];

	ring_new("bfull", 8);
	for (uint32_t i = 1; i <= 6; i++)
		put_id(i);
	for (unsigned i = 0; i < 5; i++) {
		msgs[i].iov_base = in[i];
		msgs[i].iov_len = cu_msg_make(in[i], 7 + i,
		    cu_msg_len(7 + i, MSG_MAX));
	}
	QASSERT_EQ(q, shmq_put_batch(q, msgs, 5, 0), 2);
	QASSERT_EQ(q, shmq_put_batch(q, msgs + 2, 3, 0), -EAGAIN);
	QASSERT_EQ(q, shmq_put_batch(q, msgs + 2, 3, 5), -ETIMEDOUT);
	for (uint32_t i = 1; i <= 8; i++)
		get_id(i);
	QASSERT_EQ(q, shmq_get(q, in[0], MSG_MAX, 0), -EAGAIN);
	ring_done();
}
END_TEST

START_TEST(test_ring_batch_partial_empty)
{
	unsigned char out[8][MSG_MAX];
	struct iovec bufs[8];
	uint32_t id;

	ring_new("bempty", 8);
	for (uint32_t i = 1; i <= 3; i++)
		put_id(i);
	for (unsigned i = 0; i < 8; i++) {
		bufs[i].iov_base = out[i];
		bufs[i].iov_len = MSG_MAX;
	}
	QASSERT_EQ(q, shmq_get_batch(q, bufs, 8, -1), 3);
	for (unsigned i = 0; i < 3; i++)
		QASSERT(q, cu_msg_check(out[i], bufs[i].iov_len, &id) &&
		    id == i + 1);
	QASSERT_EQ(q, shmq_get_batch(q, bufs, 8, 0), -EAGAIN);
	ring_done();
}
END_TEST

START_TEST(test_ring_batch_oversized_stops)
{
	unsigned char in[4][MSG_MAX + 1];
	struct iovec msgs[4];
	struct shmq_stats st;

	ring_new("boversize", 8);
	for (unsigned i = 0; i < 4; i++) {
		msgs[i].iov_base = in[i];
		msgs[i].iov_len = cu_msg_make(in[i], i + 1,
		    cu_msg_len(i + 1, MSG_MAX));
	}
	msgs[2].iov_len = MSG_MAX + 1;
	QASSERT_EQ(q, shmq_put_batch(q, msgs, 4, 0), 2);
	QASSERT_EQ(q, shmq_put_batch(q, msgs + 2, 2, 0), -EMSGSIZE);
	stats(&st);
	QASSERT_EQ(q, st.depth, 2);
	get_id(1);
	get_id(2);
	QASSERT_EQ(q, shmq_get(q, in[0], MSG_MAX, 0), -EAGAIN);
	ring_done();
}
END_TEST

START_TEST(test_ring_get_batch_stops_at_small_buffer)
{
	unsigned char out[3][MSG_MAX];
	struct iovec bufs[3];
	uint32_t id;

	ring_new("bsmall", 8);
	for (uint32_t i = 1; i <= 3; i++)
		put_id(i);
	for (unsigned i = 0; i < 3; i++) {
		bufs[i].iov_base = out[i];
		bufs[i].iov_len = MSG_MAX;
	}
	bufs[1].iov_len = CU_MSG_MIN - 1;
	QASSERT_EQ(q, shmq_get_batch(q, bufs, 3, 0), 1);
	QASSERT(q, cu_msg_check(out[0], bufs[0].iov_len, &id) && id == 1);
	get_id(2);			/* stayed queued */
	get_id(3);
	ring_done();
}
END_TEST

Suite *
ring_suite(void)
{
	Suite *s = suite_create("ring");
	TCase *tc = cu_tcase("Core");

	tcase_add_test(tc, test_ring_put_get);
	tcase_add_test(tc, test_ring_every_size);
	tcase_add_test(tc, test_ring_empty_message_null_buffer);
	tcase_add_test(tc, test_ring_fifo);
	tcase_add_test(tc, test_ring_wraparound);
	tcase_add_test(tc, test_ring_empty);
	tcase_add_test(tc, test_ring_batch);
	tcase_add_test(tc, test_ring_peek);
	tcase_add_test(tc, test_ring_stats_invariants);
	tcase_add_test(tc, test_ring_einval);
	tcase_add_test(tc, test_ring_rates_window);
	tcase_add_test(tc, test_ring_rates_after_killed_writer);
	suite_add_tcase(s, tc);

	tc = cu_tcase("Limits");
	tcase_add_test(tc, test_ring_full_at_capacity);
	tcase_add_test(tc, test_ring_full_at_rounded_capacity);
	tcase_add_test(tc, test_ring_timeout_empty);
	tcase_add_test(tc, test_ring_timeout_full);
	tcase_add_test(tc, test_ring_put_emsgsize);
	tcase_add_test(tc, test_ring_get_emsgsize);
	tcase_add_test(tc, test_ring_batch_partial_full);
	tcase_add_test(tc, test_ring_batch_partial_empty);
	tcase_add_test(tc, test_ring_batch_oversized_stops);
	tcase_add_test(tc, test_ring_get_batch_stops_at_small_buffer);
	suite_add_tcase(s, tc);
	return s;
}
