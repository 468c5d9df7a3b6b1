/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * recover.c - putting a queue back in order after one of its processes died.
 *
 * DESIGN
 * The ring state is the authority; semaphores are only wake-ups.  Every
 * piece of shared state a process can hold is tagged with its attachment
 * index in the same 64-bit word that says what state it is in: ring slots
 * (WRITING(p, o), READING(p, o)) and lease entries (STAGED, HELD, RSTAGED).
 * A process changes such a word with one CAS or store, so at any instant
 * the segment says exactly what every process holds - there is no moment at
 * which something is held but not recorded as held.  Recovery walks the
 * ring and the entries, and for each word tagged with the dead attachment
 * takes the one step that finishes or undoes it.  Live processes never
 * wait for a dead one, except consumers that reach a slot it was filling.
 *
 * CRASH POINTS (names as in fault.c) and what recovery finds:
 *
 *  put.claimed, put.copied - slot WRITING(p, dead).  The message was never
 *	published, and put had not returned, so it was not accepted.  The slot
 *	becomes EMPTY(p + capacity): consumers at p see a later tag and pass
 *	over it; the producer of p + capacity uses it.  Nothing half-written
 *	is delivered, because a slot is only ever read in state FULL.
 *  put.published - FULL(p) is an ordinary message; nothing to do.
 *  get.copied - a get copies FULL slots out before it claims any, so it
 *	holds nothing: the messages are still FULL; nothing to do.
 *  get.released - its CAS freed the slot (FULL(p) -> EMPTY(p + capacity))
 *	and the message was copied out before: delivered.
 *  (no point) - slot READING(p, dead), no entry names p: no get or take
 *	leaves this, only a foreign writer.  The message is intact (readers
 *	do not write).  It is copied into the dead attachment's rescue entry
 *	(RSTAGED), the slot is freed, and the entry becomes REDELIVER.
 *  take.staged - entry STAGED(dead) whose src_pos names a slot that is not
 *	READING(src_pos, dead): the claim never happened.  Entry freed.
 *  take.claimed, take.copied - slot READING(p, dead) and entry STAGED(dead)
 *	with src_pos p: the copy may be partial, so it is made again (RSTAGED),
 *	then as for get.
 *  take.held - slot READING(p, dead) and entry HELD(dead) with src_pos p:
 *	the copy is complete; only the slot is freed.  Not copied twice.
 *  take.released, and any time the consumer holds leases - entries
 *	HELD(dead) in any area become REDELIVER with their delivery count.
 *  redo.claimed, redo.copied - a redelivery claimed in place is HELD(dead)
 *	in another area: back to REDELIVER.
 *  ack.before - still HELD: redelivered (at-least-once).  After the store
 *	the entry is FREE: done.
 *  wait.yielded - the waiter has yielded and not yet set its sleeper bit:
 *	it holds nothing; nothing to do.
 *  wait.registered - the dead process's sleeper bit is cleared; its own
 *	semaphore is drained when the record is reused.
 *  wake.claimed - a waker died after claiming a sleeper's bit and before
 *	posting: shmq__wake_all() posts to every live record marked asleep.
 *  attach.claimed - record ALIVE(pid) before the rest is filled in: it holds
 *	nothing, recovery frees it.
 *
 * Recovery itself holds a robust process-shared mutex.  If it dies inside
 * (recover.*), the next locker gets EOWNERDEAD and recovers every dead
 * attachment again; each step is idempotent because each is decided by the
 * state word alone:
 *  recover.voided - the slot is already EMPTY(p + capacity): skipped.
 *  recover.staged - entry RSTAGED and slot still READING: the copy is
 *	complete, the slot is freed.
 *  recover.released - entry RSTAGED, slot free: it is published.
 *  recover.published, recover.done - the rest is redone; finishing the
 *	record twice is harmless.
 *
 * Finally no process may sleep while what it waits for is there: recovery
 * clears the dead process's sleeper bits and posts to every live sleeper,
 * because a freed slot or a redelivery may be what it waits for.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmq_int.h"

/* State letter and start time (clock ticks) of pid, from /proc. */
static int
proc_stat(pid_t pid, char *state, uint64_t *start)
{
	char path[32], buf[1024], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	do
		n = read(fd, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	p = strrchr(buf, ')');		/* the name may hold spaces */
	if (p == NULL || p[1] == '\0')
		return -EIO;
	*state = p[2];
	for (int field = 2; field < 22; field++) {	/* to the 22nd */
		p = strchr(p + 1, ' ');
		if (p == NULL)
			return -EIO;
	}
	*start = strtoull(p + 1, NULL, 10);
	return 0;
}

/*
 * True if pid is dead, a zombie, or a new process reusing the number.
 * Without its /proc entry (gone, or hidden: hidepid=2 for another user's
 * process, /proc not mounted) only the kernel can say, and a process it
 * still knows counts as alive: recovering a live one would deliver its
 * leases twice.
 */
bool
shmq__pid_gone(pid_t pid, uint64_t start_ticks)
{
	char state;
	uint64_t start;

	if (proc_stat(pid, &state, &start) < 0)
		return kill(pid, 0) != 0 && errno == ESRCH;
	if (state == 'Z' || state == 'X' || state == 'x')
		return true;
	return start_ticks != 0 && start != start_ticks;
}

uint64_t
shmq__self_start(void)
{
	return shmq_pid_start(getpid());
}

bool
shmq_pid_alive(pid_t pid, uint64_t start_ticks)
{
	return pid > 0 && !shmq__pid_gone(pid, start_ticks);
}

uint64_t
shmq_pid_start(pid_t pid)
{
	char state;
	uint64_t start;

	return proc_stat(pid, &state, &start) == 0 ? start : 0;
}

static pthread_mutex_t *
recover_mutex(struct shmq *q)
{
	return (pthread_mutex_t *)(void *)q->hdr->recover_lock;
}

/*
 * The recovery mutex is memory another process may have scribbled on, and
 * libc trusts it: a garbage kind makes pthread_mutex_lock() a different
 * lock altogether, a garbage owner makes it wait for ever.  So the words
 * that make a mutex robust and process-shared - found once, as those that
 * differ from a default mutex made alike on zeroed memory - are checked
 * before each lock, and no lock waits longer than LOCK_WAIT_S: a recovery
 * takes milliseconds, so a holder that long is stopped or not a holder.
 */
#define LOCK_WAIT_S	5
#define KIND_WORDS	4

static struct {
	unsigned	n;
	size_t		off[KIND_WORDS];
	uint32_t	val[KIND_WORDS];
} mutex_kind;

static void
mutex_probe(void)
{
	union {
		pthread_mutex_t	m;
		unsigned char	b[sizeof(pthread_mutex_t)];
	} robust, plain;
	pthread_mutexattr_t ma;

	memset(&robust, 0, sizeof(robust));
	memset(&plain, 0, sizeof(plain));
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	if (pthread_mutex_init(&robust.m, &ma) == 0 &&
	    pthread_mutex_init(&plain.m, NULL) == 0)
		for (size_t off = 0; off + 4 <= sizeof(pthread_mutex_t) &&
		    mutex_kind.n < KIND_WORDS; off += 4) {
			if (memcmp(robust.b + off, plain.b + off, 4) == 0)
				continue;
			mutex_kind.off[mutex_kind.n] = off;
			memcpy(&mutex_kind.val[mutex_kind.n++], robust.b + off,
			    4);
		}
	pthread_mutexattr_destroy(&ma);
}

/* Is the recovery mutex still a robust process-shared one? */
static bool
mutex_sane(struct shmq *q)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, mutex_probe);
	for (unsigned i = 0; i < mutex_kind.n; i++) {
		_Atomic uint32_t *w = (_Atomic uint32_t *)(void *)
		    (q->hdr->recover_lock + mutex_kind.off[i]);
		/* Relaxed: written by pthread_mutex_init alone, at create. */
		if (atomic_load_explicit(w, memory_order_relaxed) !=
		    mutex_kind.val[i])
			return false;
	}
	return true;
}

/*
 * 1 if the previous holder died inside a recovery, else 0, or -EBADMSG
 * (the mutex is not one), -ETIMEDOUT (held LOCK_WAIT_S), other -errno.
 */
int
shmq__lock(struct shmq *q)
{
	struct timespec until;
	int r;

	if (!mutex_sane(q))
		return -EBADMSG;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += LOCK_WAIT_S;
	r = pthread_mutex_timedlock(recover_mutex(q), &until);
	if (r == EOWNERDEAD) {
		pthread_mutex_consistent(recover_mutex(q));
		return 1;
	}
	return -r;
}

void
shmq__unlock(struct shmq *q)
{
	pthread_mutex_unlock(recover_mutex(q));
}

static void
slot_free(struct shmq_seg_slot *s, uint64_t w, uint32_t capacity)
{
	/* R2 as in ring.c: pairs with the producer's A1. */
	atomic_compare_exchange_strong_explicit(&s->state, &w,
	    SHMQ_SLOT_WORD(SHMQ_SLOT_TAG(w) + capacity, SHMQ_SLOT_EMPTY, 0),
	    memory_order_release, memory_order_relaxed);
}

/* The entry of area `dead` that names ring tag `tag` as its source. */
static uint32_t
find_link(struct shmq *q, uint32_t dead, uint64_t tag)
{
	uint32_t base = dead * shmq__area_len(q);

	for (uint32_t i = 0; i < shmq__area_len(q); i++) {
		struct shmq_seg_entry *e = shmq__entry(q, base + i);
		uint64_t w = atomic_load_explicit(&e->state,
		    memory_order_acquire);
		unsigned st = SHMQ_ENTRY_STATE(w);

		if ((st == SHMQ_ENTRY_STAGED || st == SHMQ_ENTRY_HELD ||
		    st == SHMQ_ENTRY_RSTAGED) && SHMQ_ENTRY_OWNER(w) == dead &&
		    (atomic_load_explicit(&e->src_pos, memory_order_relaxed) &
		    SHMQ_TAG_MASK) == tag)
			return base + i;
	}
	return SHMQ_NONE;
}

/* A FREE entry of area `dead`, the rescue entry first. */
static uint32_t
spare_entry(struct shmq *q, uint32_t dead)
{
	uint32_t base = dead * shmq__area_len(q);

	for (uint32_t k = 0; k < shmq__area_len(q); k++) {
		uint32_t i = base + (q->lease_max + k) % shmq__area_len(q);
		if (SHMQ_ENTRY_STATE(atomic_load_explicit(&shmq__entry(q,
		    i)->state, memory_order_acquire)) == SHMQ_ENTRY_FREE)
			return i;
	}
	return SHMQ_NONE;
}

/* A slot READING(p, dead): make sure its message survives in an entry. */
static void
rescue_reading(struct shmq *q, uint32_t dead, struct shmq_seg_slot *s,
    uint64_t w)
{
	uint64_t tag = SHMQ_SLOT_TAG(w);
	uint32_t idx = find_link(q, dead, tag), len;
	struct shmq_seg_entry *e;
	uint64_t ew;

	if (idx != SHMQ_NONE && SHMQ_ENTRY_STATE(atomic_load_explicit(
	    &shmq__entry(q, idx)->state, memory_order_relaxed)) !=
	    SHMQ_ENTRY_STAGED) {
		slot_free(s, w, q->capacity);	/* copy already complete */
		return;
	}
	if (idx == SHMQ_NONE)
		idx = spare_entry(q, dead);
	len = atomic_load_explicit(&s->len, memory_order_relaxed);
	if (idx == SHMQ_NONE || len > q->msg_max) {
		atomic_fetch_add_explicit(&q->hdr->corrupt, 1,
		    memory_order_relaxed);
		slot_free(s, w, q->capacity);
		return;
	}
	e = shmq__entry(q, idx);
	memcpy(shmq__entry_data(e), shmq__slot_data(q, tag), len);
	/* Relaxed: published by the release store below. */
	atomic_store_explicit(&e->len, len, memory_order_relaxed);
	atomic_store_explicit(&e->put_ms, atomic_load_explicit(&s->put_ms,
	    memory_order_relaxed), memory_order_relaxed);
	atomic_store_explicit(&e->src_pos, tag, memory_order_relaxed);
	atomic_store_explicit(&e->taken_ns, shmq__coarse_ns(),
	    memory_order_relaxed);
	ew = atomic_load_explicit(&e->state, memory_order_relaxed);
	/* Release: a later recovery that sees RSTAGED sees the copy. */
	atomic_store_explicit(&e->state, SHMQ_ENTRY_WORD(SHMQ_ENTRY_GEN(ew), 1,
	    SHMQ_ENTRY_RSTAGED, dead), memory_order_release);
	SHMQ_FAULT("recover.staged");
	slot_free(s, w, q->capacity);
	SHMQ_FAULT("recover.released");
}

/* Undo or finish whatever attachment `dead` was doing on the ring. */
static void
recover_ring(struct shmq *q, uint32_t dead)
{
	for (uint64_t i = 0; i < q->capacity; i++) {
		struct shmq_seg_slot *s = shmq__slot(q, i);
		uint64_t w = atomic_load_explicit(&s->state,
		    memory_order_acquire);
		unsigned st = SHMQ_SLOT_STATE(w);

		if ((st != SHMQ_SLOT_WRITING && st != SHMQ_SLOT_READING) ||
		    SHMQ_SLOT_OWNER(w) != dead)
			continue;
		if (st == SHMQ_SLOT_READING) {
			rescue_reading(q, dead, s, w);
			continue;
		}
		slot_free(s, w, q->capacity);	/* void an unfinished put */
		atomic_fetch_add_explicit(&q->hdr->voided, 1,
		    memory_order_relaxed);
		SHMQ_FAULT("recover.voided");
	}
}

/* Entries held by `dead`, anywhere: redeliver or free.  Returns how many
 * were put up for redelivery. */
static int
recover_entries(struct shmq *q, uint32_t dead)
{
	int n = 0;

	for (uint32_t i = 0; i < shmq__nentries(q); i++) {
		struct shmq_seg_entry *e = shmq__entry(q, i);
		uint64_t w = atomic_load_explicit(&e->state,
		    memory_order_acquire);
		unsigned st = SHMQ_ENTRY_STATE(w);

		if (SHMQ_ENTRY_OWNER(w) != dead)
			continue;
		if (st == SHMQ_ENTRY_STAGED) {
			/* Relaxed: nobody else touches a dead owner's entry. */
			atomic_store_explicit(&e->state, SHMQ_ENTRY_WORD(
			    SHMQ_ENTRY_GEN(w), 0, SHMQ_ENTRY_FREE, 0),
			    memory_order_relaxed);
		} else if (st == SHMQ_ENTRY_HELD || st == SHMQ_ENTRY_RSTAGED) {
			shmq__publish_redelivery(q, i);
			SHMQ_FAULT("recover.published");
			n++;
		}
	}
	return n;
}

/* Clear the dead attachment's bits and hand its record back. */
static void
recover_record(struct shmq *q, uint32_t dead)
{
	struct shmq_seg_proc *p = shmq__proc(q, dead);
	uint64_t bit = UINT64_C(1) << (dead % 64);
	uint64_t w = atomic_load_explicit(&p->state, memory_order_acquire);
	bool empty = true;
	uint32_t base = dead * shmq__area_len(q);

	atomic_fetch_and_explicit(&q->hdr->get_sleepers[dead / 64], ~bit,
	    memory_order_relaxed);
	atomic_fetch_and_explicit(&q->hdr->put_sleepers[dead / 64], ~bit,
	    memory_order_relaxed);
	atomic_store_explicit(&p->asleep, 0, memory_order_relaxed);
	shmq__sem_drain(p);
	for (uint32_t i = 0; i < shmq__area_len(q); i++)
		if (SHMQ_ENTRY_STATE(atomic_load_explicit(&shmq__entry(q,
		    base + i)->state, memory_order_relaxed)) !=
		    SHMQ_ENTRY_FREE)
			empty = false;
	SHMQ_FAULT("recover.done");
	/* The next occupant's start time is unknown until it writes it; a
	 * stale one would make it look like a reused pid, i.e. dead. */
	atomic_store_explicit(&p->start_ticks, 0, memory_order_relaxed);
	/* Release: pairs with the acquire in the claim of a record (and
	 * publishes start_ticks = 0).  A DEAD record whose last entry is
	 * freed meanwhile is reclaimed on attach. */
	atomic_store_explicit(&p->state, SHMQ_PROC_WORD(SHMQ_PROC_PID(w),
	    empty ? SHMQ_PROC_FREE : SHMQ_PROC_DEAD, SHMQ_PROC_GEN(w) + 1),
	    memory_order_release);
}

/*
 * Recover attachment idx, whose process is gone (or which is closing:
 * then it holds no slot and only its leases need handing back).  Call with
 * the recovery lock held.  Returns the number of messages redelivered.
 */
int
shmq__recover_locked(struct shmq *q, uint32_t idx)
{
	int n;

	SHMQ_FAULT("recover.locked");
	recover_ring(q, idx);
	n = recover_entries(q, idx);
	recover_record(q, idx);
	return n;
}

static bool
record_is(struct shmq *q, uint32_t i, pid_t pid)
{
	uint64_t w = atomic_load_explicit(&shmq__proc(q, i)->state,
	    memory_order_acquire);

	return SHMQ_PROC_STATE(w) == SHMQ_PROC_ALIVE && i != q->me &&
	    (pid == 0 || SHMQ_PROC_PID(w) == (uint32_t)pid);
}

static void
count_recovery(struct shmq *q)
{
	/* Relaxed: statistics. */
	atomic_fetch_add_explicit(&q->hdr->recoveries, 1,
	    memory_order_relaxed);
}

/* Recover every attachment whose process is gone.  Lock held. */
int
shmq__recover_dead_locked(struct shmq *q)
{
	int n = 0;

	for (uint32_t i = 0; i < q->max_procs; i++) {
		struct shmq_seg_proc *p = shmq__proc(q, i);
		uint64_t w = atomic_load_explicit(&p->state,
		    memory_order_acquire);

		/* Relaxed start_ticks: the state word's acquire ordered it. */
		if (!record_is(q, i, 0) || !shmq__pid_gone(
		    (pid_t)SHMQ_PROC_PID(w), atomic_load_explicit(
		    &p->start_ticks, memory_order_relaxed)))
			continue;
		n += shmq__recover_locked(q, i);
		count_recovery(q);
	}
	return n;
}

int
shmq_recover(struct shmq *q, pid_t pid)
{
	int n = 0, r = shmq__check(q);
	bool busy = false, any = false;

	if (r != 0)
		return r;
	if (pid <= 0)
		return -EINVAL;
	r = shmq__lock(q);
	if (r < 0)
		return r;
	if (r == 1) {
		n += shmq__recover_dead_locked(q);
		any = true;
	}
	for (uint32_t i = 0; i < q->max_procs; i++) {
		if (!record_is(q, i, pid))
			continue;
		if (!shmq__pid_gone(pid, atomic_load_explicit(
		    &shmq__proc(q, i)->start_ticks, memory_order_relaxed))) {
			busy = true;
			continue;
		}
		n += shmq__recover_locked(q, i);
		count_recovery(q);
		any = true;
	}
	shmq__unlock(q);
	if (any)
		shmq__wake_all(q);
	return busy ? -EBUSY : n;
}

int
shmq_recover_dead(struct shmq *q)
{
	int n, r = shmq__check(q);

	if (r != 0)
		return r;
	r = shmq__lock(q);
	if (r < 0)
		return r;
	n = shmq__recover_dead_locked(q);
	shmq__unlock(q);
	shmq__wake_all(q);
	return n;
}
