/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stats.c - snapshots of a queue for monitoring: counters, attached
 * processes, leases, and a look at waiting messages.  Everything here only
 * loads from the segment, so it works on a read-only mapping, takes no lock
 * and cannot disturb the processes it watches.
 */
#include <errno.h>
#include <string.h>

#include "shmq_int.h"

static uint64_t
load(_Atomic uint64_t *p)
{
	/* Relaxed: a snapshot; each value is checked against its bounds. */
	return atomic_load_explicit(p, memory_order_relaxed);
}

/* prod_pos and cons_pos read so that the depth is within [0, capacity]. */
static uint32_t
ring_depth(const struct shmq *q, uint64_t *prodp, uint64_t *consp)
{
	uint64_t prod = 0, cons = 0;
	int64_t d;

	for (int tries = 0; tries < 4; tries++) {
		uint64_t p1 = load(&q->hdr->prod_pos);
		cons = load(&q->hdr->cons_pos);
		prod = load(&q->hdr->prod_pos);
		if (p1 == prod)
			break;
	}
	*prodp = prod;
	*consp = cons;
	d = (int64_t)(prod - cons);
	return d <= 0 ? 0 : d >= q->capacity ? q->capacity : (uint32_t)d;
}

static int64_t
age_ms(uint32_t put_ms, uint32_t now_ms)
{
	return (int64_t)(uint32_t)(now_ms - put_ms);
}

/* Entry totals: leases held, redeliveries waiting, the oldest of those. */
static void
entry_totals(const struct shmq *q, struct shmq_stats *st, uint32_t now_ms)
{
	for (uint32_t i = 0; i < shmq__nentries(q); i++) {
		struct shmq_seg_entry *e = shmq__entry(q, i);
		unsigned s = SHMQ_ENTRY_STATE(load(&e->state));

		if (s == SHMQ_ENTRY_HELD) {
			st->leases_held++;
		} else if (s == SHMQ_ENTRY_REDELIVER) {
			int64_t age = age_ms(atomic_load_explicit(&e->put_ms,
			    memory_order_relaxed), now_ms);
			st->redeliver_pending++;
			if (age > st->oldest_age_ms)
				st->oldest_age_ms = age;
		}
	}
}

int
shmq_stats(struct shmq *q, struct shmq_stats *st)
{
	struct shmq_seg_header *h;
	uint64_t prod, cons, voided, hw;
	uint32_t now_ms;

	if (q == NULL || st == NULL)
		return -EINVAL;
	h = q->hdr;
	memset(st, 0, sizeof(*st));
	now_ms = (uint32_t)(shmq__coarse_ns() / 1000000u);
	st->oldest_age_ms = -1;
	st->capacity = q->capacity;
	st->msg_max = q->msg_max;
	st->depth = ring_depth(q, &prod, &cons);
	voided = load(&h->voided);
	st->enqueued = prod > voided ? prod - voided : 0;
	st->dequeued = cons > voided ? cons - voided : 0;
	st->redelivered = load(&h->redelivered);
	st->put_waits = load(&h->put_waits);
	st->get_waits = load(&h->get_waits);
	st->voided = voided;
	st->recoveries = load(&h->recoveries);
	st->corrupt = load(&h->corrupt);
	hw = load(&h->high_water);
	st->high_water = hw > q->capacity ? q->capacity : (uint32_t)hw;
	if (st->high_water < st->depth)
		st->high_water = st->depth;
	if (st->depth > 0) {
		struct shmq_seg_slot *s = shmq__slot(q, cons);
		uint64_t w = load(&s->state);
		if (SHMQ_SLOT_STATE(w) == SHMQ_SLOT_FULL &&
		    shmq__tag_diff(w, cons) == 0)
			st->oldest_age_ms = age_ms(atomic_load_explicit(
			    &s->put_ms, memory_order_relaxed), now_ms);
	}
	entry_totals(q, st, now_ms);
	for (uint32_t i = 0; i < q->max_procs; i++) {
		unsigned s = SHMQ_PROC_STATE(load(&shmq__proc(q, i)->state));
		st->procs += s == SHMQ_PROC_ALIVE;
		st->procs_draining += s == SHMQ_PROC_DEAD;
	}
	st->created_ns = h->created_ns;
	st->creator_pid = (pid_t)h->creator_pid;
	return 0;
}

static uint32_t
leases_of(const struct shmq *q, uint32_t idx)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < shmq__nentries(q); i++) {
		uint64_t w = load(&shmq__entry(q, i)->state);
		n += SHMQ_ENTRY_STATE(w) == SHMQ_ENTRY_HELD &&
		    SHMQ_ENTRY_OWNER(w) == idx;
	}
	return n;
}

static void
proc_info(const struct shmq *q, uint32_t i, uint64_t w,
    struct shmq_proc_info *pi)
{
	struct shmq_seg_proc *p = shmq__proc(q, i);

	memset(pi, 0, sizeof(*pi));
	pi->pid = (pid_t)SHMQ_PROC_PID(w);
	pi->index = i;
	pi->state = SHMQ_PROC_STATE(w);
	pi->n_put = load(&p->n_put);
	pi->n_get = load(&p->n_get);
	pi->n_ack = load(&p->n_ack);
	pi->roles = (pi->n_put ? SHMQ_ROLE_PRODUCER : 0) |
	    (pi->n_get ? SHMQ_ROLE_CONSUMER : 0);
	pi->asleep = atomic_load_explicit(&p->asleep, memory_order_relaxed) &
	    (SHMQ_ASLEEP_GET | SHMQ_ASLEEP_PUT);
	pi->leases = leases_of(q, i);
	pi->last_op_ns = load(&p->last_op_ns);
	pi->start_ticks = load(&p->start_ticks);
}

int
shmq_procs(struct shmq *q, struct shmq_proc_info *out, unsigned max)
{
	int n = 0;

	if (q == NULL || (out == NULL && max > 0))
		return -EINVAL;
	for (uint32_t i = 0; i < q->max_procs; i++) {
		uint64_t w = load(&shmq__proc(q, i)->state);
		if (SHMQ_PROC_STATE(w) == SHMQ_PROC_FREE)
			continue;
		if ((unsigned)n < max)
			proc_info(q, i, w, &out[n]);
		n++;
	}
	return n;
}

int
shmq_leases(struct shmq *q, struct shmq_lease_info *out, unsigned max)
{
	int n = 0;

	if (q == NULL || (out == NULL && max > 0))
		return -EINVAL;
	for (uint32_t i = 0; i < shmq__nentries(q); i++) {
		struct shmq_seg_entry *e = shmq__entry(q, i);
		uint64_t w = load(&e->state);
		unsigned s = SHMQ_ENTRY_STATE(w);

		if (s != SHMQ_ENTRY_HELD && s != SHMQ_ENTRY_REDELIVER)
			continue;
		if ((unsigned)n < max) {
			struct shmq_lease_info *li = &out[n];
			uint32_t owner = SHMQ_ENTRY_OWNER(w);
			memset(li, 0, sizeof(*li));
			if (s == SHMQ_ENTRY_HELD && owner < q->max_procs) {
				li->holder = (pid_t)SHMQ_PROC_PID(load(
				    &shmq__proc(q, owner)->state));
				li->holder_index = owner;
			}
			li->deliveries = SHMQ_ENTRY_DELIV(w);
			li->len = atomic_load_explicit(&e->len,
			    memory_order_relaxed);
			li->taken_ns = load(&e->taken_ns);
		}
		n++;
	}
	return n;
}

/* Copy a message that may change under us; -EAGAIN if it did. */
static ssize_t
copy_stable(_Atomic uint64_t *state, uint64_t w, _Atomic uint32_t *lenp,
    const unsigned char *data, void *buf, size_t cap, uint32_t msg_max)
{
	uint32_t len = atomic_load_explicit(lenp, memory_order_relaxed);

	if (len > msg_max)
		return -EAGAIN;
	if (len > cap)
		return -EMSGSIZE;
	memcpy(buf, data, len);
	/* Acquire fence: the copy is read before the re-check (seqlock). */
	atomic_thread_fence(memory_order_acquire);
	return load(state) == w ? (ssize_t)len : -EAGAIN;
}

ssize_t
shmq_peek(struct shmq *q, unsigned k, void *buf, size_t cap)
{
	uint64_t prod, cons;

	if (q == NULL || (buf == NULL && cap > 0))
		return -EINVAL;
	for (uint32_t i = 0; i < shmq__nentries(q); i++) {
		struct shmq_seg_entry *e = shmq__entry(q, i);
		uint64_t w = atomic_load_explicit(&e->state,
		    memory_order_acquire);
		if (SHMQ_ENTRY_STATE(w) == SHMQ_ENTRY_REDELIVER && k-- == 0)
			return copy_stable(&e->state, w, &e->len,
			    shmq__entry_data(e), buf, cap, q->msg_max);
	}
	ring_depth(q, &prod, &cons);
	for (uint64_t pos = cons; pos != prod && pos - cons < q->capacity;
	    pos++) {
		struct shmq_seg_slot *s = shmq__slot(q, pos);
		uint64_t w = atomic_load_explicit(&s->state,
		    memory_order_acquire);
		if (shmq__tag_diff(w, pos) != 0 ||
		    SHMQ_SLOT_STATE(w) != SHMQ_SLOT_FULL || k-- != 0)
			continue;
		return copy_stable(&s->state, w, &s->len,
		    shmq__slot_data(q, pos), buf, cap, q->msg_max);
	}
	return -ENOENT;
}

/* Record this second's indices in the history (one process wins). */
void
shmq__rate_record(struct shmq *q, uint64_t now_ns)
{
	struct shmq_seg_header *h = q->hdr;
	uint64_t sec = now_ns / 1000000000u;
	uint64_t old = atomic_load_explicit(&h->rate_sec, memory_order_relaxed);
	struct shmq_seg_rate *r = &h->rates[sec % SHMQ_RATE_SLOTS];
	uint64_t v;

	if (old == sec || !atomic_compare_exchange_strong_explicit(
	    &h->rate_sec, &old, sec, memory_order_relaxed,
	    memory_order_relaxed))
		return;
	/* Seqlock: odd while writing, and from odd: a writer killed
	 * between the two stores left it odd, which v + 1 would make even
	 * while writing and odd ever after.  R6: release pairs with the
	 * reader's acquire of version in rate_read(). */
	v = atomic_load_explicit(&r->version, memory_order_relaxed) | 1;
	atomic_store_explicit(&r->version, v, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&r->at_ns, now_ns, memory_order_relaxed);
	atomic_store_explicit(&r->prod_pos, load(&h->prod_pos),
	    memory_order_relaxed);
	atomic_store_explicit(&r->cons_pos, load(&h->cons_pos),
	    memory_order_relaxed);
	atomic_store_explicit(&r->version, v + 1, memory_order_release);
}

/* A consistent copy of one history slot; false if it is being written. */
static bool
rate_read(const struct shmq_seg_rate *r, uint64_t *at, uint64_t *prod,
    uint64_t *cons)
{
	/* R6: acquire pairs with the writer's release of version. */
	uint64_t v = atomic_load_explicit(&r->version, memory_order_acquire);

	if (v & 1)
		return false;
	*at = atomic_load_explicit(&r->at_ns, memory_order_relaxed);
	*prod = atomic_load_explicit(&r->prod_pos, memory_order_relaxed);
	*cons = atomic_load_explicit(&r->cons_pos, memory_order_relaxed);
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&r->version, memory_order_relaxed) == v;
}

int
shmq_rates(struct shmq *q, unsigned window_s, double *put_per_s,
    double *get_per_s, uint64_t *window_ms)
{
	uint64_t now = shmq__coarse_ns(), limit = (uint64_t)window_s *
	    1000000000u, best = 0, best_prod = 0, best_cons = 0, prod, cons;
	double span;

	if (q == NULL || put_per_s == NULL || get_per_s == NULL ||
	    window_ms == NULL || window_s == 0 || window_s > SHMQ_RATE_SLOTS)
		return -EINVAL;
	*put_per_s = *get_per_s = 0;
	*window_ms = 0;
	/* The oldest snapshot within the window: the longest span. */
	for (unsigned i = 0; i < SHMQ_RATE_SLOTS; i++) {
		uint64_t at, p, c;
		if (!rate_read(&q->hdr->rates[i], &at, &p, &c) || at == 0 ||
		    at > now || now - at > limit || (best != 0 && at >= best))
			continue;
		best = at;
		best_prod = p;
		best_cons = c;
	}
	if (best == 0)
		return 0;			/* idle for the whole window */
	ring_depth(q, &prod, &cons);
	/* A snapshot of this very tick of the coarse clock (a few ms) is a
	 * span of 1 ms, not none: what moved since it is there to count,
	 * and a caller may average it over a longer span (shmq(1) does). */
	span = now - best < 1000000u ? 0.001 : (double)(now - best) / 1e9;
	*window_ms = (uint64_t)(span * 1000);
	*put_per_s = (double)(prod - best_prod) / span;
	*get_per_s = (double)(cons - best_cons) / span;
	return 0;
}
