/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lease.c - lease entries: messages held by a consumer until it acks them,
 * and messages waiting to be redelivered after their consumer died.
 *
 * Each attachment owns an area of lease_max + 1 entries.  Only the owner
 * turns its FREE entries into leases; anyone may claim a REDELIVER entry in
 * any area, in place, by CAS to HELD(self) - the message is not copied
 * again.  An attachment whose process is gone stays DEAD until every entry
 * of its area is FREE, so the last one to free an entry there frees it.
 */
#include <errno.h>
#include <string.h>

#include "shmq_int.h"

/* A FREE lease entry of our own area (not the rescue entry), or NONE. */
uint32_t
shmq__free_entry(struct shmq *q)
{
	uint32_t base = q->me * shmq__area_len(q);

	for (uint32_t k = 0; k < q->lease_max; k++) {
		uint32_t i = (q->entry_hint + k) % q->lease_max;
		/* A4: pairs with R5 in free_entry; the last reader is done. */
		uint64_t w = atomic_load_explicit(&shmq__entry(q, base +
		    i)->state, memory_order_acquire);
		if (SHMQ_ENTRY_STATE(w) == SHMQ_ENTRY_FREE) {
			q->entry_hint = i + 1;
			return base + i;
		}
	}
	return SHMQ_NONE;
}

static bool
area_all_free(struct shmq *q, uint32_t area)
{
	uint32_t base = area * shmq__area_len(q);

	for (uint32_t i = 0; i < shmq__area_len(q); i++)
		/* Relaxed: a FREE entry cannot change once its owner is
		 * gone; the state CAS below decides. */
		if (SHMQ_ENTRY_STATE(atomic_load_explicit(&shmq__entry(q,
		    base + i)->state, memory_order_relaxed)) !=
		    SHMQ_ENTRY_FREE)
			return false;
	return true;
}

/* A DEAD attachment whose area is empty becomes FREE for reuse. */
void
shmq__area_maybe_free(struct shmq *q, uint32_t area)
{
	struct shmq_seg_proc *p = shmq__proc(q, area);
	uint64_t w = atomic_load_explicit(&p->state, memory_order_acquire);

	if (SHMQ_PROC_STATE(w) != SHMQ_PROC_DEAD || !area_all_free(q, area))
		return;
	/* Acq_rel: pairs with the claim in shmq_open (segment.c). */
	atomic_compare_exchange_strong_explicit(&p->state, &w,
	    SHMQ_PROC_WORD(SHMQ_PROC_PID(w), SHMQ_PROC_FREE,
	    SHMQ_PROC_GEN(w) + 1), memory_order_acq_rel, memory_order_relaxed);
}

static void
free_entry(struct shmq *q, uint32_t idx, uint32_t gen)
{
	uint32_t area = idx / shmq__area_len(q);

	/* R5: pairs with A4; we are done reading the message. */
	atomic_store_explicit(&shmq__entry(q, idx)->state,
	    SHMQ_ENTRY_WORD(gen + 1, 0, SHMQ_ENTRY_FREE, 0),
	    memory_order_release);
	if (area != q->me)
		shmq__area_maybe_free(q, area);
}

/*
 * Make entry idx (HELD or RSTAGED by someone) a redelivery and flag its
 * area.  Consumers are woken by the caller.
 */
void
shmq__publish_redelivery(struct shmq *q, uint32_t idx)
{
	struct shmq_seg_entry *e = shmq__entry(q, idx);
	uint32_t area = idx / shmq__area_len(q);
	/* Relaxed: the entry is ours (or a dead owner's) to change. */
	uint64_t w = atomic_load_explicit(&e->state, memory_order_relaxed);

	/* R3: pairs with A3 in take_from_area. */
	atomic_store_explicit(&e->state, SHMQ_ENTRY_WORD(SHMQ_ENTRY_GEN(w),
	    SHMQ_ENTRY_DELIV(w), SHMQ_ENTRY_REDELIVER, 0),
	    memory_order_release);
	/* R3': pairs with the acquire load of the map in take_redelivery. */
	atomic_fetch_or_explicit(&q->hdr->redeliver_map[area / 64],
	    UINT64_C(1) << (area % 64), memory_order_release);
	/* Relaxed: statistics. */
	atomic_fetch_add_explicit(&q->hdr->redelivered, 1,
	    memory_order_relaxed);
}

/* Claim one REDELIVER entry of area in place.  0, -EAGAIN if none. */
static int
take_from_area(struct shmq *q, uint32_t area, struct iovec *buf,
    struct shmq_lease *lease)
{
	uint32_t base = area * shmq__area_len(q);

	for (uint32_t i = 0; i < shmq__area_len(q); i++) {
		struct shmq_seg_entry *e = shmq__entry(q, base + i);
		/* A3: pairs with R3; the message is in place. */
		uint64_t w = atomic_load_explicit(&e->state,
		    memory_order_acquire);
		uint32_t len, deliv;

		if (SHMQ_ENTRY_STATE(w) != SHMQ_ENTRY_REDELIVER)
			continue;
		/* Relaxed: A3 ordered it; used only if the CAS succeeds. */
		len = atomic_load_explicit(&e->len, memory_order_relaxed);
		if (len <= q->msg_max && len > buf->iov_len)
			return -EMSGSIZE;
		deliv = SHMQ_ENTRY_DELIV(w) < 0xffff ?
		    SHMQ_ENTRY_DELIV(w) + 1 : 0xffff;
		if (!atomic_compare_exchange_strong_explicit(&e->state, &w,
		    SHMQ_ENTRY_WORD(SHMQ_ENTRY_GEN(w), deliv, SHMQ_ENTRY_HELD,
		    q->me), memory_order_acquire, memory_order_relaxed))
			continue;
		SHMQ_FAULT("redo.claimed");
		if (len > q->msg_max) {
			free_entry(q, base + i, SHMQ_ENTRY_GEN(w));
			/* Relaxed: statistics. */
			atomic_fetch_add_explicit(&q->hdr->corrupt, 1,
			    memory_order_relaxed);
			return -EPROTO;
		}
		/* Relaxed: tools only. */
		atomic_store_explicit(&e->taken_ns, shmq__coarse_ns(),
		    memory_order_relaxed);
		if (len > 0)
			memcpy(buf->iov_base, shmq__entry_data(e), len);
		buf->iov_len = len;
		if (lease == NULL) {
			SHMQ_FAULT("redo.copied");
			free_entry(q, base + i, SHMQ_ENTRY_GEN(w));
			return 0;
		}
		lease->id = (uint64_t)SHMQ_ENTRY_GEN(w) << 32 | (base + i);
		lease->deliveries = deliv;
		lease->len = len;
		q->leases_held++;
		return 0;
	}
	return -EAGAIN;
}

/*
 * Take one message waiting for redelivery, as a lease if lease is set.
 * 0, or -EAGAIN (none), -EMSGSIZE, -ENOBUFS, -EPROTO.
 */
int
shmq__take_redelivery(struct shmq *q, struct iovec *buf,
    struct shmq_lease *lease)
{
	_Atomic uint64_t *map = q->hdr->redeliver_map;

	if (lease != NULL && q->leases_held >= q->lease_max)
		return -ENOBUFS;
	for (uint32_t w = 0; w < q->nwords; w++) {
		/* Acquire: pairs with R3' in shmq__publish_redelivery. */
		uint64_t bits = atomic_load_explicit(&map[w],
		    memory_order_acquire);

		for (; bits != 0; bits &= bits - 1) {
			uint32_t area = w * 64 + (uint32_t)__builtin_ctzll(bits);
			uint64_t bit = UINT64_C(1) << (area % 64);
			int r;

			if (area >= q->max_procs)
				break;
			r = take_from_area(q, area, buf, lease);
			if (r != -EAGAIN)
				return r;
			/* Nothing there: clear the flag, then look once more
			 * in case it was set again meanwhile (R3'). */
			atomic_fetch_and_explicit(&map[w], ~bit,
			    memory_order_acq_rel);
			r = take_from_area(q, area, buf, lease);
			if (r != -EAGAIN) {
				atomic_fetch_or_explicit(&map[w], bit,
				    memory_order_release);
				return r;
			}
		}
	}
	return -EAGAIN;
}

/* The entry of a lease this handle holds, or NULL. */
static struct shmq_seg_entry *
lease_entry(struct shmq *q, const struct shmq_lease *lease, uint32_t *idxp,
    uint64_t *wp)
{
	uint32_t idx = (uint32_t)lease->id;
	struct shmq_seg_entry *e;
	uint64_t w;

	if (idx >= shmq__nentries(q))
		return NULL;
	e = shmq__entry(q, idx);
	/* Relaxed: a HELD entry of ours changes only by our hand. */
	w = atomic_load_explicit(&e->state, memory_order_relaxed);
	if (SHMQ_ENTRY_STATE(w) != SHMQ_ENTRY_HELD ||
	    SHMQ_ENTRY_OWNER(w) != q->me ||
	    SHMQ_ENTRY_GEN(w) != (uint32_t)(lease->id >> 32))
		return NULL;
	*idxp = idx;
	*wp = w;
	return e;
}

int
shmq_ack(struct shmq *q, const struct shmq_lease *lease)
{
	uint32_t idx;
	uint64_t w;
	int r = shmq__check(q);

	if (r != 0)
		return r;
	if (lease == NULL)
		return -EINVAL;
	if (lease_entry(q, lease, &idx, &w) == NULL)
		return -ESTALE;
	SHMQ_FAULT("ack.before");
	free_entry(q, idx, SHMQ_ENTRY_GEN(w));
	q->leases_held--;
	/* Relaxed: statistics, ours alone. */
	atomic_store_explicit(&q->rec->n_ack, atomic_load_explicit(
	    &q->rec->n_ack, memory_order_relaxed) + 1, memory_order_relaxed);
	return 0;
}

int
shmq_release(struct shmq *q, const struct shmq_lease *lease)
{
	uint32_t idx;
	uint64_t w;
	int r = shmq__check(q);

	if (r != 0)
		return r;
	if (lease == NULL)
		return -EINVAL;
	if (lease_entry(q, lease, &idx, &w) == NULL)
		return -ESTALE;
	SHMQ_FAULT("release.before");
	shmq__publish_redelivery(q, idx);
	q->leases_held--;
	shmq__notify(q, SHMQ__GET, 1);
	return 0;
}
