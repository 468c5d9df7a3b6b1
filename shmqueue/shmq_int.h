/* SPDX-License-Identifier: BSD-2-Clause */
/* shmq_int.h - libshmq internals shared by its modules: the handle, layout
 * accessors and the cross-file shmq__ interfaces. */
#ifndef SHMQ_INT_H
#define SHMQ_INT_H

#include <errno.h>
#include <limits.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "shmq.h"
#include "shmq_layout.h"
#include "fault.h"

#define SHMQ_NONE		UINT32_MAX
#define SHMQ_DEFAULT_SPIN_NS	20000u
#define SHMQ_BATCH_CHUNK	32	/* slots a batch claims (put) or copies
					 * (get) before the next step */
#define SHMQ_PUT_GAP		32	/* free slots a spinning producer
					 * waits for (at most capacity / 8) */

#define likely(x)		__builtin_expect(!!(x), 1)
#define unlikely(x)		__builtin_expect(!!(x), 0)

/* The process-local handle: one attachment of one process. */
struct shmq {
	struct shmq_seg_header *hdr;
	unsigned char	*base;		/* the mapping */
	size_t		 size;
	unsigned char	*ring;		/* slot words */
	unsigned char	*data;		/* their message bytes */
	unsigned char	*procs;
	unsigned char	*entries;
	uint64_t	 mask;		/* capacity - 1 */
	uint32_t	 capacity;
	uint32_t	 msg_max;
	uint32_t	 slot_size;
	uint32_t	 entry_size;
	uint32_t	 max_procs;
	uint32_t	 lease_max;
	uint32_t	 nwords;	/* bitmap words in use */
	uint32_t	 me;		/* our attachment; SHMQ_NONE if read-only */
	struct shmq_seg_proc *rec;	/* our record */
	uint32_t	 spin_ns;
	uint32_t	 entry_hint;	/* where to look for a free entry */
	uint32_t	 leases_held;	/* leases this handle holds */
	_Atomic int	 wakeup;	/* shmq_wakeup() pending */
	bool		 spinning;	/* in the spin phase of a wait */
	bool		 yield;		/* shmq_set_yield() */
	uint8_t		 yield_misses;	/* recent yields that found nothing */
	uint8_t		 yield_skips;	/* waits since the last yield */
	uint8_t		 wake;		/* SHMQ__WAKE_*: how sleepers are seen */
	pid_t		 pid;		/* process that opened the handle */
	int		 fd;		/* anonymous queues: the memfd, else -1 */
	bool		 rdonly;
	char		 name[NAME_MAX + 1];
};

/* Kinds of wait: what a sleeper waits for. */
enum shmq__kind { SHMQ__GET, SHMQ__PUT };

/* How a publisher and a sleeper see each other (wait.c). */
#define SHMQ__WAKE_MB		0	/* light fence; sleeper: membarrier */
#define SHMQ__WAKE_FENCE	1	/* full fences (SHMQ_SEG_FENCES) */
#define SHMQ__WAKE_POLL		2	/* no membarrier here: fences, and
					 * sleep in slices */

static inline struct shmq_seg_slot *
shmq__slot(const struct shmq *q, uint64_t pos)
{
	return (struct shmq_seg_slot *)(q->ring + (pos & q->mask) *
	    sizeof(struct shmq_seg_slot));
}

static inline unsigned char *
shmq__slot_data(const struct shmq *q, uint64_t pos)
{
	return q->data + (pos & q->mask) * q->slot_size;
}

static inline struct shmq_seg_proc *
shmq__proc(const struct shmq *q, uint32_t idx)
{
	return (struct shmq_seg_proc *)(q->procs + (size_t)idx *
	    sizeof(struct shmq_seg_proc));
}

/* Entries per attachment area: lease_max leases plus one rescue entry. */
static inline uint32_t
shmq__area_len(const struct shmq *q)
{
	return q->lease_max + 1;
}

static inline uint32_t
shmq__nentries(const struct shmq *q)
{
	return q->max_procs * shmq__area_len(q);
}

static inline struct shmq_seg_entry *
shmq__entry(const struct shmq *q, uint32_t idx)
{
	return (struct shmq_seg_entry *)(q->entries + (size_t)idx *
	    q->entry_size);
}

static inline unsigned char *
shmq__entry_data(struct shmq_seg_entry *e)
{
	return (unsigned char *)(e + 1);
}

/* Signed distance from position pos to the 48-bit tag of slot word w. */
static inline int64_t
shmq__tag_diff(uint64_t w, uint64_t pos)
{
	uint64_t d = (SHMQ_SLOT_TAG(w) - pos) << (64 - SHMQ_TAG_BITS);

	return (int64_t)d >> (64 - SHMQ_TAG_BITS);
}

/* Bitmap helpers over max_procs bits. */
static inline void
shmq__bit_set(_Atomic uint64_t *map, uint32_t idx)
{
	/* Relaxed: callers order it with a fence or the wake protocol. */
	atomic_fetch_or_explicit(&map[idx / 64], UINT64_C(1) << (idx % 64),
	    memory_order_relaxed);
}

static inline bool
shmq__bitmap_any(const struct shmq *q, _Atomic uint64_t *map)
{
	for (uint32_t i = 0; i < q->nwords; i++)
		/* Relaxed: a hint, read after the caller's fence. */
		if (atomic_load_explicit(&map[i], memory_order_relaxed) != 0)
			return true;
	return false;
}

/* wait.c: time without a system call (vDSO). */
uint64_t	shmq__now_ns(void);		/* CLOCK_MONOTONIC */
uint64_t	shmq__coarse_ns(void);		/* CLOCK_MONOTONIC_COARSE */

/* segment.c */
extern pid_t	shmq__pid;		/* getpid(), kept right across fork */

/* 0 if q may operate on the queue, else why not. */
static inline int
shmq__check(const struct shmq *q)
{
	if (unlikely(q == NULL))
		return -EINVAL;
	if (unlikely(q->pid != shmq__pid))
		return -ECHILD;
	if (unlikely(q->rdonly))
		return -EBADF;
	return 0;
}

/* stats.c */
void		shmq__rate_record(struct shmq *q, uint64_t now_ns);

/*
 * Once a second, whoever acts first records the indices for shmq_rates().
 * One relaxed load of a line written once a second is all it costs.
 */
static inline void
shmq__rate_tick(struct shmq *q, uint64_t now_ns)
{
	uint64_t sec = now_ns / 1000000000u;

	/* Relaxed: the CAS in shmq__rate_record decides who records. */
	if (unlikely(atomic_load_explicit(&q->hdr->rate_sec,
	    memory_order_relaxed) != sec))
		shmq__rate_record(q, now_ns);
}

/* lease.c */
void		shmq__area_maybe_free(struct shmq *q, uint32_t area);

/* wait.c */
typedef int	(*shmq__try_fn)(struct shmq *q, void *arg);
void		shmq__fence_init(void);
int		shmq__wait(struct shmq *q, enum shmq__kind kind,
		    int timeout_ms, shmq__try_fn try, void *arg);
void		shmq__wake(struct shmq *q, enum shmq__kind kind, unsigned n);
void		shmq__wake_all(struct shmq *q);
void		shmq__sem_init(void);
void		shmq__sem_drain(struct shmq_seg_proc *p);
extern bool	shmq__membarrier_ok;
uint8_t		shmq__wake_mode(uint32_t seg_flags);

/*
 * After making something another process may sleep on (a message, a free
 * slot, a redelivery): order that store before reading the sleeper bitmap,
 * then wake up to n sleepers.  Pairs with shmq__wait()'s heavy fence.
 */
static inline void
shmq__fence_light(const struct shmq *q)
{
	if (likely(q->wake == SHMQ__WAKE_MB))
		/* F1: pairs with membarrier() in the sleeper (F2). */
		atomic_signal_fence(memory_order_seq_cst);
	else
		/* F1: pairs with the sleeper's seq_cst fence (F2). */
		atomic_thread_fence(memory_order_seq_cst);
}

static inline void
shmq__notify(struct shmq *q, enum shmq__kind kind, unsigned n)
{
	_Atomic uint64_t *map = kind == SHMQ__GET ? q->hdr->get_sleepers :
	    q->hdr->put_sleepers;

	shmq__fence_light(q);
	if (unlikely(shmq__bitmap_any(q, map)))
		shmq__wake(q, kind, n);
}

int		shmq__take_redelivery(struct shmq *q, struct iovec *buf,
		    struct shmq_lease *lease);
uint32_t	shmq__free_entry(struct shmq *q);
void		shmq__publish_redelivery(struct shmq *q, uint32_t eidx);

/* recover.c */
bool		shmq__pid_gone(pid_t pid, uint64_t start_ticks);
uint64_t	shmq__self_start(void);
int		shmq__lock(struct shmq *q);
void		shmq__unlock(struct shmq *q);
int		shmq__recover_locked(struct shmq *q, uint32_t idx);
int		shmq__recover_dead_locked(struct shmq *q);

#endif /* SHMQ_INT_H */
