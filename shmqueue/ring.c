/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ring.c - put, get and take: the fast paths of libshmq.
 *
 * The ring is an array of slots, each with one 64-bit state word that names
 * the position it holds, what is happening to it, and who is doing it
 * (shmq_layout.h).  Every transition is one CAS or one store of that word,
 * made by the attachment that owns the slot at that moment:
 *
 *	EMPTY(p) --producer CAS--> WRITING(p, o) --store--> FULL(p)
 *	FULL(p) --take CAS--> READING(p, o) --store--> EMPTY(p + capacity)
 *	FULL(p) --get CAS (after its copy)--> EMPTY(p + capacity)
 *
 * prod_pos and cons_pos only say where to start looking.  Whoever finds the
 * slot at that position already taken or already done moves the index on,
 * so a process that dies between claiming a slot and moving the index
 * blocks nobody.  The design argument for every crash point, and how
 * recovery undoes each, is at the top of recover.c.
 */
#include <errno.h>
#include <string.h>

#include "shmq_int.h"

struct put_args {
	const struct iovec *msgs;
	unsigned	 n;
};

struct get_args {
	struct iovec	*bufs;
	struct shmq_lease *leases;	/* NULL: plain get */
	unsigned	 n;
};

/*
 * The shared indices are hints of where to start looking: a caller claims
 * slots from its own position and moves the index once, to just past its
 * last claim, when its call is done.  The index only moves forward.
 */
static inline void
index_to(_Atomic uint64_t *ix, uint64_t to)
{
	/* Relaxed: the indices are hints; slot states carry the ordering. */
	uint64_t cur = atomic_load_explicit(ix, memory_order_relaxed);

	while ((int64_t)(to - cur) > 0 &&
	    !atomic_compare_exchange_weak_explicit(ix, &cur, to,
	    memory_order_relaxed, memory_order_relaxed))
		;
}

/* Where to look next after position pos was found taken or done. */
static inline uint64_t
next_pos(_Atomic uint64_t *ix, uint64_t pos)
{
	/* Relaxed: a hint, see index_to(). */
	uint64_t cur = atomic_load_explicit(ix, memory_order_relaxed);

	return (int64_t)(cur - pos) > 0 ? cur : pos + 1;
}

/*
 * How many sleepers to wake after publishing (or freeing) the positions
 * before pos: ours, and every position others took past ours meanwhile.
 * Theirs waited behind ours, so the wake-ups they made found our slot
 * still being written (or read) and were spent.  A wake-up to spare
 * costs a look that finds nothing.
 */
static unsigned
wake_count(const struct shmq *q, _Atomic uint64_t *ix, uint64_t pos,
    unsigned ours)
{
	/* Relaxed: a hint, see index_to(). */
	uint64_t past = atomic_load_explicit(ix, memory_order_relaxed) - pos;

	if ((int64_t)past <= 0)
		return ours;
	return ours + (unsigned)(past < q->capacity ? past : q->capacity);
}

/*
 * Claim the slot of the first free position at or after *posp (WRITING),
 * and leave that position in *posp.  -EAGAIN when the slot there still
 * holds the previous lap: full.
 */
static int
claim_put(struct shmq *q, uint64_t *posp)
{
	_Atomic uint64_t *ix = &q->hdr->prod_pos;
	uint64_t pos = *posp;

	for (;;) {
		struct shmq_seg_slot *s = shmq__slot(q, pos);
		/* CAS first, on the word we hope for: one trip for the line
		 * instead of a shared load and then an upgrade.  A1: acquire
		 * pairs with R2, the consumer's release of this slot. */
		uint64_t w = SHMQ_SLOT_WORD(pos, SHMQ_SLOT_EMPTY, 0);
		int64_t d;

		if (atomic_compare_exchange_strong_explicit(&s->state, &w,
		    SHMQ_SLOT_WORD(pos, SHMQ_SLOT_WRITING, q->me),
		    memory_order_acquire, memory_order_acquire)) {
			*posp = pos;
			return 0;
		}
		d = shmq__tag_diff(w, pos);
		if (d < 0)
			return -EAGAIN;
		pos = next_pos(ix, pos);	/* taken or done */
	}
}

/*
 * Find the first published slot at or after *posp, without claiming it:
 * leave its position in *posp, its state word in *wp and its length in
 * *lenp.  0, or -EAGAIN (nothing ready there) or -EMSGSIZE (it does not fit
 * in cap, and stays).  The length may exceed msg_max: the caller drops it.
 */
static int
find_full(struct shmq *q, size_t cap, uint64_t *posp, uint64_t *wp,
    uint32_t *lenp)
{
	_Atomic uint64_t *ix = &q->hdr->cons_pos;
	uint64_t pos = *posp;

	for (;;) {
		struct shmq_seg_slot *s = shmq__slot(q, pos);
		/* Look before claiming: a consumer that finds nothing leaves
		 * the line shared instead of taking it from the producer about
		 * to fill it, and a message too long for cap stays where it
		 * is.  A2: acquire pairs with R1, the producer's publication. */
		uint64_t w = atomic_load_explicit(&s->state,
		    memory_order_acquire);
		int64_t d = shmq__tag_diff(w, pos);
		uint32_t len;

		if (d > 0 || (d == 0 &&
		    SHMQ_SLOT_STATE(w) == SHMQ_SLOT_READING)) {
			pos = next_pos(ix, pos);	/* taken or done */
			continue;
		}
		if (d < 0 || SHMQ_SLOT_STATE(w) != SHMQ_SLOT_FULL)
			return -EAGAIN;
		/* Relaxed: A2 ordered it. */
		len = atomic_load_explicit(&s->len, memory_order_relaxed);
		if (len <= q->msg_max && len > cap)
			return -EMSGSIZE;
		*posp = pos;
		*wp = w;
		*lenp = len;
		return 0;
	}
}

/*
 * Hand the slot of pos, seen FULL as w, on to the producer of pos +
 * capacity: a get's claim and release in one.  False if another consumer
 * took it first.
 */
static inline bool
free_full(struct shmq *q, uint64_t pos, uint64_t w)
{
	/* R2: release pairs with A1 in claim_put, and keeps a get's copy
	 * before the slot is handed on. */
	return atomic_compare_exchange_strong_explicit(&shmq__slot(q,
	    pos)->state, &w, SHMQ_SLOT_WORD(pos + q->capacity,
	    SHMQ_SLOT_EMPTY, 0), memory_order_release, memory_order_relaxed);
}

/* Drop the slot of pos, seen FULL with an impossible length: its writer
 * is buggy.  False if another consumer took it first. */
static bool
drop_corrupt(struct shmq *q, uint64_t pos, uint64_t w)
{
	if (!free_full(q, pos, w))
		return false;
	/* Relaxed: statistics. */
	atomic_fetch_add_explicit(&q->hdr->corrupt, 1, memory_order_relaxed);
	return true;
}

/*
 * Claim the first full slot at or after *posp (READING) for a take, and
 * leave its position in *posp.  Its position is stored in intent before
 * the claim, for recovery to match.  0, or -EAGAIN, -EMSGSIZE, -EPROTO.
 */
static int
claim_get(struct shmq *q, size_t cap, _Atomic uint64_t *intent,
    uint64_t *posp, uint32_t *lenp)
{
	for (;;) {
		uint64_t w;
		uint32_t len;
		int r = find_full(q, cap, posp, &w, &len);

		if (r != 0)
			return r;
		if (len > q->msg_max) {
			if (drop_corrupt(q, *posp, w))
				return -EPROTO;
			continue;
		}
		/* The intent goes first: recovery matches it only to a slot
		 * READING by us, so a stale one is harmless.  Relaxed:
		 * published by the CAS's release below. */
		atomic_store_explicit(intent, *posp, memory_order_relaxed);
		/* Release: recovery that sees READING sees the intent. */
		if (atomic_compare_exchange_strong_explicit(&shmq__slot(q,
		    *posp)->state, &w, SHMQ_SLOT_WORD(*posp,
		    SHMQ_SLOT_READING, q->me), memory_order_acq_rel,
		    memory_order_relaxed)) {
			*lenp = len;
			return 0;
		}
	}
}

/* Hand the slot of pos on to the producer of pos + capacity. */
static inline void
release_slot(struct shmq *q, uint64_t pos)
{
	/* R2: pairs with A1 in claim_put. */
	atomic_store_explicit(&shmq__slot(q, pos)->state, SHMQ_SLOT_WORD(pos +
	    q->capacity, SHMQ_SLOT_EMPTY, 0), memory_order_release);
}

/* Producers sample the depth now and then for the high-water mark. */
static void
raise_high_water(struct shmq *q, uint64_t depth)
{
	/* Relaxed: statistics. */
	uint64_t hw = atomic_load_explicit(&q->hdr->high_water,
	    memory_order_relaxed);

	if (depth > q->capacity)
		depth = q->capacity;
	while (depth > hw && !atomic_compare_exchange_weak_explicit(
	    &q->hdr->high_water, &hw, depth, memory_order_relaxed,
	    memory_order_relaxed))
		;
}

static void
sample_depth(struct shmq *q, uint64_t pos)
{
	/* Relaxed: statistics. */
	uint64_t cons = atomic_load_explicit(&q->hdr->cons_pos,
	    memory_order_relaxed);

	if ((int64_t)(pos + 1 - cons) > 0)
		raise_high_water(q, pos + 1 - cons);
}

/* Our own counters: only we write them, so no read-modify-write. */
static inline void
count(_Atomic uint64_t *c, unsigned n)
{
	/* Relaxed: statistics, written by this attachment alone. */
	atomic_store_explicit(c, atomic_load_explicit(c,
	    memory_order_relaxed) + n, memory_order_relaxed);
}

static inline void
stamp(struct shmq *q, uint64_t now)
{
	/* Relaxed: read by tools only. */
	atomic_store_explicit(&q->rec->last_op_ns, now, memory_order_relaxed);
}

/*
 * A producer spinning on a full ring waits for a stretch of free slots, not
 * one: otherwise it follows the consumer slot by slot and every slot line
 * bounces between them.  Bounded by the spin phase, after which it takes
 * what there is.
 */
static bool
gap_open(const struct shmq *q, uint64_t pos)
{
	uint32_t gap = q->capacity / 8 < SHMQ_PUT_GAP ? q->capacity / 8 :
	    SHMQ_PUT_GAP;
	/* Relaxed: a hint; claim_put decides with acquire. */
	uint64_t w = atomic_load_explicit(&shmq__slot(q, pos + gap)->state,
	    memory_order_relaxed);

	return gap < 2 || shmq__tag_diff(w, pos + gap) >= 0;
}

/*
 * Copy a message.  Most are short, and at tens of millions a second the
 * call into libc's memcpy (through the PLT, then its size dispatch) costs
 * as much as the copy: up to 64 bytes are moved inline, as two overlapping
 * words of the largest size that fits, as libc would.
 */
#define COPY_PAIR(T, d, s, n) do {					\
	T a_, b_;							\
	memcpy(&a_, (s), sizeof(T));					\
	memcpy(&b_, (s) + (n) - sizeof(T), sizeof(T));			\
	memcpy((d), &a_, sizeof(T));					\
	memcpy((d) + (n) - sizeof(T), &b_, sizeof(T));			\
} while (0)

struct copy_16 { uint64_t w[2]; };
struct copy_32 { uint64_t w[4]; };

static inline void
copy_msg(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (n > 64)
		memcpy(d, s, n);
	else if (n > 32)
		COPY_PAIR(struct copy_32, d, s, n);
	else if (n > 16)
		COPY_PAIR(struct copy_16, d, s, n);
	else if (n >= 8)
		COPY_PAIR(uint64_t, d, s, n);
	else if (n >= 4)
		COPY_PAIR(uint32_t, d, s, n);
	else
		for (size_t i = 0; i < n; i++)
			d[i] = s[i];
}

/*
 * Claim up to n free slots from *posp on into at[], and leave *posp past
 * the last.  Every claim comes before any copy: a locked instruction waits
 * for the stores before it, so claiming between copies would make each
 * claim wait for the previous message's lines to arrive.
 */
static unsigned
claim_puts(struct shmq *q, uint64_t *posp, uint64_t *at, unsigned n)
{
	unsigned k;

	for (k = 0; k < n; k++, (*posp)++) {
		if (claim_put(q, posp) != 0)
			break;
		at[k] = *posp;
	}
	return k;
}

/* Fill the claimed slot of pos with m and publish it. */
static void
fill(struct shmq *q, uint64_t pos, const struct iovec *m, uint32_t put_ms)
{
	struct shmq_seg_slot *s = shmq__slot(q, pos);

	SHMQ_FAULT("put.claimed");
	if ((pos & (SHMQ_HWM_SAMPLE - 1)) == 0)
		sample_depth(q, pos);
	if (m->iov_len > 0)
		copy_msg(shmq__slot_data(q, pos), m->iov_base, m->iov_len);
	/* Relaxed: published by R1. */
	atomic_store_explicit(&s->len, (uint32_t)m->iov_len,
	    memory_order_relaxed);
	atomic_store_explicit(&s->put_ms, put_ms, memory_order_relaxed);
	SHMQ_FAULT("put.copied");
	/* R1: pairs with A2 in find_full. */
	atomic_store_explicit(&s->state, SHMQ_SLOT_WORD(pos, SHMQ_SLOT_FULL,
	    0), memory_order_release);
	SHMQ_FAULT("put.published");
}

static int
try_put(struct shmq *q, void *arg)
{
	struct put_args *a = arg;
	uint64_t now = shmq__coarse_ns();
	uint32_t put_ms = (uint32_t)(now / 1000000u);
	/* Relaxed: a hint, see index_to(). */
	uint64_t pos = atomic_load_explicit(&q->hdr->prod_pos,
	    memory_order_relaxed);
	uint64_t at[SHMQ_BATCH_CHUNK];
	unsigned done = 0, k;

	if (q->spinning && !gap_open(q, pos))
		return -EAGAIN;
	do {
		unsigned want = a->n - done < SHMQ_BATCH_CHUNK ?
		    a->n - done : SHMQ_BATCH_CHUNK;

		k = claim_puts(q, &pos, at, want);
		for (unsigned j = 0; j < k; j++)
			fill(q, at[j], &a->msgs[done + j], put_ms);
		done += k;
		if (k < want)
			break;
	} while (done < a->n);
	if (done == 0) {
		raise_high_water(q, q->capacity);
		return -EAGAIN;
	}
	index_to(&q->hdr->prod_pos, pos);
	count(&q->rec->n_put, done);
	stamp(q, now);
	shmq__rate_tick(q, now);
	shmq__notify(q, SHMQ__GET, wake_count(q, &q->hdr->prod_pos, pos,
	    done));
	return (int)done;
}

/*
 * Copy a message out of a slot that another consumer may take and a
 * producer refill meanwhile; the caller's CAS finds out, and drops the
 * copy.  Under ThreadSanitizer that benign race (a seqlock's) is not
 * reported: the copy is left uninstrumented, byte by byte so that it is
 * not turned back into an intercepted memcpy().
 */
#if defined(__SANITIZE_THREAD__)
__attribute__((no_sanitize_thread,
    optimize("no-tree-loop-distribute-patterns")))
static void
seq_copy(void *dst, const void *src, size_t len)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	for (size_t i = 0; i < len; i++)
		d[i] = s[i];
}
#else
#define seq_copy	copy_msg
#endif

/*
 * A plain get copies first and claims after: each message of the batch is
 * copied out of a slot seen FULL(p), then one CAS per slot, FULL(p) ->
 * EMPTY(p + capacity), claims and frees it at once.  A CAS that fails means
 * another consumer took p meanwhile and the copy may be torn: it is
 * dropped unclaimed, with the rest of the batch.  Such a slot is never
 * READING, so a get that dies holds nothing: before its CAS the message is
 * still FULL, after it the message was delivered.  Copying the whole batch
 * first also lets the misses on its lines overlap, instead of each waiting
 * behind a locked instruction.
 *
 * Up to SHMQ_BATCH_CHUNK messages into bufs; how many in *gotp.  0, or
 * -EAGAIN, -EMSGSIZE, -EPROTO (a corrupt slot, left in *posp, dropped) as
 * find_full(), for the message after the last one got.
 */
static int
get_ring(struct shmq *q, struct iovec *bufs, unsigned n, uint64_t *posp,
    unsigned *gotp)
{
	uint64_t at[SHMQ_BATCH_CHUNK], w[SHMQ_BATCH_CHUNK];
	uint32_t len[SHMQ_BATCH_CHUNK];
	unsigned k, got;
	int r = 0;

	if (n > SHMQ_BATCH_CHUNK)
		n = SHMQ_BATCH_CHUNK;
	for (k = 0; k < n; k++, (*posp)++) {
		r = find_full(q, bufs[k].iov_len, posp, &w[k], &len[k]);
		if (r != 0)
			break;
		if (len[k] > q->msg_max) {
			r = -EPROTO;
			break;
		}
		at[k] = *posp;
		if (len[k] > 0)	/* buf may be NULL for an empty message */
			seq_copy(bufs[k].iov_base, shmq__slot_data(q, *posp),
			    len[k]);
	}
	SHMQ_FAULT("get.copied");
	for (got = 0; got < k; got++) {
		if (!free_full(q, at[got], w[got])) {
			*posp = at[got];	/* taken: look on from there */
			r = 0;
			break;
		}
		bufs[got].iov_len = len[got];
	}
	SHMQ_FAULT("get.released");
	if (r == -EPROTO && !drop_corrupt(q, *posp, w[k]))
		r = 0;			/* taken by another */
	*gotp = got;
	return r;
}

/*
 * Take the next ring message under a lease: copy it into one of our lease
 * entries, mark the entry HELD, then free the ring slot.  The entry is
 * STAGED with the claimed position first, so that recovery can tell whether
 * the copy was made.
 */
static int
take_ring(struct shmq *q, struct iovec *buf, struct shmq_lease *lease,
    uint64_t *posp)
{
	uint32_t idx = q->leases_held < q->lease_max ? shmq__free_entry(q) :
	    SHMQ_NONE;
	struct shmq_seg_entry *e;
	struct shmq_seg_slot *s;
	uint64_t pos;
	uint32_t len, gen;
	int r;

	if (idx == SHMQ_NONE)
		return -ENOBUFS;
	e = shmq__entry(q, idx);
	/* Relaxed: only we write our FREE entries. */
	gen = SHMQ_ENTRY_GEN(atomic_load_explicit(&e->state,
	    memory_order_relaxed));
	/* Relaxed: made visible by the release of claim_get's CAS. */
	atomic_store_explicit(&e->state, SHMQ_ENTRY_WORD(gen, 0,
	    SHMQ_ENTRY_STAGED, q->me), memory_order_relaxed);
	SHMQ_FAULT("take.staged");
	r = claim_get(q, buf->iov_len, &e->src_pos, posp, &len);
	pos = *posp;
	if (r != 0) {
		atomic_store_explicit(&e->state, SHMQ_ENTRY_WORD(gen, 0,
		    SHMQ_ENTRY_FREE, 0), memory_order_relaxed);
		return r;
	}
	SHMQ_FAULT("take.claimed");
	s = shmq__slot(q, pos);
	memcpy(shmq__entry_data(e), shmq__slot_data(q, pos), len);
	/* Relaxed: published by R4. */
	atomic_store_explicit(&e->len, len, memory_order_relaxed);
	atomic_store_explicit(&e->put_ms, atomic_load_explicit(&s->put_ms,
	    memory_order_relaxed), memory_order_relaxed);
	atomic_store_explicit(&e->taken_ns, shmq__coarse_ns(),
	    memory_order_relaxed);
	SHMQ_FAULT("take.copied");
	/* R4: recovery and tools that see HELD see the copy. */
	atomic_store_explicit(&e->state, SHMQ_ENTRY_WORD(gen, 1,
	    SHMQ_ENTRY_HELD, q->me), memory_order_release);
	SHMQ_FAULT("take.held");
	release_slot(q, pos);
	SHMQ_FAULT("take.released");
	if (len > 0)
		memcpy(buf->iov_base, shmq__entry_data(e), len);
	buf->iov_len = len;
	lease->id = (uint64_t)gen << 32 | idx;
	lease->deliveries = 1;
	lease->len = len;
	q->leases_held++;
	return 0;
}

/*
 * Has a producer moved its index past pos?  A spinning consumer asks this
 * before it looks at the slot of pos, which the producer is about to claim
 * and fill: polling that line takes it from the producer at every look,
 * the index's only once a call.  A message published while the index lags
 * (its producer between publishing and index_to(), or dead there) is found
 * by the look the wait makes before sleeping, which asks no index.
 */
static inline bool
index_past(const struct shmq *q, uint64_t pos)
{
	/* Relaxed: a hint; find_full() decides with acquire. */
	return (int64_t)(atomic_load_explicit(&q->hdr->prod_pos,
	    memory_order_relaxed) - pos) > 0;
}

/* Messages *ip.. of a call from the ring at *posp on, and leave *posp past
 * the last one (or at a slot dropped as corrupt).  The last step's result. */
static int
from_ring_at(struct shmq *q, struct get_args *a, unsigned *ip, uint64_t *posp)
{
	unsigned got;
	int r = 0;

	while (r == 0 && *ip < a->n) {
		if (a->leases != NULL) {
			r = take_ring(q, &a->bufs[*ip], &a->leases[*ip], posp);
			got = r == 0;
			*posp += got;
		} else {
			r = get_ring(q, &a->bufs[*ip], a->n - *ip, posp, &got);
		}
		*ip += got;
	}
	return r;
}

/* Redeliveries first, then the ring; count what we got. */
static int
try_get(struct shmq *q, void *arg)
{
	struct get_args *a = arg;
	struct shmq_lease *lease = NULL;
	unsigned i = 0, from_ring = 0;
	uint64_t pos, now;
	bool ring_corrupt = false;
	int r = 0;

	if (unlikely(shmq__bitmap_any(q, q->hdr->redeliver_map)))
		for (; i < a->n; i++) {
			lease = a->leases != NULL ? &a->leases[i] : NULL;
			r = shmq__take_redelivery(q, &a->bufs[i], lease);
			if (r != 0)
				break;
		}
	/* Relaxed: a hint, see index_to(). */
	pos = atomic_load_explicit(&q->hdr->cons_pos, memory_order_relaxed);
	if (r == 0 || r == -EAGAIN) {
		unsigned first = i;

		if (i == 0 && q->spinning && !index_past(q, pos))
			return -EAGAIN;
		r = from_ring_at(q, a, &i, &pos);
		from_ring = i - first;
		ring_corrupt = r == -EPROTO;
	}
	/* Past a slot dropped as corrupt; not past pos when a redelivery
	 * was: pos was never looked at then. */
	if (from_ring > 0 || ring_corrupt)
		index_to(&q->hdr->cons_pos, ring_corrupt ? pos + 1 : pos);
	if (i == 0)
		return r;
	count(&q->rec->n_get, i);
	now = shmq__coarse_ns();
	stamp(q, now);
	shmq__rate_tick(q, now);
	if (from_ring > 0)
		shmq__notify(q, SHMQ__PUT, wake_count(q, &q->hdr->cons_pos,
		    pos, from_ring));
	return (int)i;
}

int
shmq_put_batch(struct shmq *q, const struct iovec *msgs, unsigned n,
    int timeout_ms)
{
	struct put_args a = { msgs, n };
	int r = shmq__check(q);

	if (unlikely(r != 0))
		return r;
	if (msgs == NULL || n == 0)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		if (msgs[i].iov_base == NULL && msgs[i].iov_len > 0)
			return -EINVAL;
		if (msgs[i].iov_len > q->msg_max) {
			if (i == 0)
				return -EMSGSIZE;
			a.n = i;
			break;
		}
	}
	r = try_put(q, &a);
	if (r == -EAGAIN && timeout_ms != 0)
		r = shmq__wait(q, SHMQ__PUT, timeout_ms, try_put, &a);
	return r;
}

int
shmq_put(struct shmq *q, const void *msg, size_t len, int timeout_ms)
{
	struct iovec iov = { (void *)(uintptr_t)msg, len };
	int r = shmq_put_batch(q, &iov, 1, timeout_ms);

	return r < 0 ? r : 0;
}

static int
get_common(struct shmq *q, struct iovec *bufs, struct shmq_lease *leases,
    unsigned n, int timeout_ms)
{
	struct get_args a = { bufs, leases, n };
	int r = shmq__check(q);

	if (unlikely(r != 0))
		return r;
	if (bufs == NULL || n == 0)
		return -EINVAL;
	r = try_get(q, &a);
	if (r == -EAGAIN && timeout_ms != 0)
		r = shmq__wait(q, SHMQ__GET, timeout_ms, try_get, &a);
	return r;
}

int
shmq_get_batch(struct shmq *q, struct iovec *bufs, unsigned n,
    int timeout_ms)
{
	return get_common(q, bufs, NULL, n, timeout_ms);
}

ssize_t
shmq_get(struct shmq *q, void *buf, size_t cap, int timeout_ms)
{
	struct iovec iov = { buf, cap };
	int r;

	if (buf == NULL && cap > 0)
		return -EINVAL;
	r = get_common(q, &iov, NULL, 1, timeout_ms);
	return r < 0 ? r : (ssize_t)iov.iov_len;
}

int
shmq_take_batch(struct shmq *q, struct iovec *bufs, struct shmq_lease *leases,
    unsigned n, int timeout_ms)
{
	if (leases == NULL)
		return -EINVAL;
	return get_common(q, bufs, leases, n, timeout_ms);
}

ssize_t
shmq_take(struct shmq *q, void *buf, size_t cap, struct shmq_lease *lease,
    int timeout_ms)
{
	struct iovec iov = { buf, cap };
	int r;

	if ((buf == NULL && cap > 0) || lease == NULL)
		return -EINVAL;
	r = get_common(q, &iov, lease, 1, timeout_ms);
	return r < 0 ? r : (ssize_t)iov.iov_len;
}
