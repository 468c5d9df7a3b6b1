/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * segment.c - the life of a segment: create, validate and attach, close,
 * unlink.  Nothing read from a segment is trusted before it is checked:
 * another process wrote it and may have been buggy, hostile or killed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "shmq_int.h"

#define DEF_CAPACITY	1024u
#define DEF_MSG_MAX	4096u
#define DEF_PROCS	32u
#define DEF_LEASES	4u
#define DEF_MODE	0600u

static_assert(sizeof(sem_t) <= sizeof(((struct shmq_seg_proc *)0)->wake_sem),
    "sem_t fits its slot");
static_assert(sizeof(pthread_mutex_t) <=
    sizeof(((struct shmq_seg_header *)0)->recover_lock), "mutex fits");

pid_t	 shmq__pid;		/* this process, kept right across fork */
static uint64_t self_start;	/* its start time, 0 until read */

/* Everything derived from the four free parameters of a segment. */
struct geom {
	uint32_t capacity, msg_max, max_procs, lease_max, flags;
	uint32_t slot_size, entry_size;
	uint64_t procs_off, entries_off, ring_off, data_off, seg_size;
};

static void
atfork_child(void)
{
	shmq__pid = getpid();
	self_start = 0;
}

static void
process_init(void)
{
	shmq__pid = getpid();
	pthread_atfork(NULL, NULL, atfork_child);
}

static void
lib_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, process_init);
	shmq__fence_init();
	shmq__sem_init();
	if (self_start == 0)
		self_start = shmq__self_start();
}

static uint64_t
round_up(uint64_t n, uint64_t to)
{
	return (n + to - 1) / to * to;
}

/* Fill in the derived sizes; -EINVAL if a parameter is out of range. */
static int
geom_compute(struct geom *g)
{
	if (g->capacity < SHMQ_CAPACITY_MIN || g->capacity > SHMQ_CAPACITY_MAX ||
	    (g->capacity & (g->capacity - 1)) != 0 || g->msg_max == 0 ||
	    g->msg_max > SHMQ_MSG_MAX_LIMIT || g->max_procs == 0 ||
	    g->max_procs > SHMQ_PROCS_LIMIT || g->lease_max == 0 ||
	    g->lease_max > SHMQ_LEASE_LIMIT)
		return -EINVAL;
	/* An odd number of lines: a power-of-two stride would put the start
	 * of every message in the same cache sets. */
	g->slot_size = (uint32_t)round_up(g->msg_max, SHMQ_CACHELINE);
	if ((g->slot_size / SHMQ_CACHELINE) % 2 == 0)
		g->slot_size += SHMQ_CACHELINE;
	g->entry_size = (uint32_t)round_up(sizeof(struct shmq_seg_entry) +
	    g->msg_max, SHMQ_CACHELINE);
	g->procs_off = sizeof(struct shmq_seg_header);
	g->entries_off = g->procs_off + (uint64_t)g->max_procs *
	    sizeof(struct shmq_seg_proc);
	g->ring_off = g->entries_off + (uint64_t)g->max_procs *
	    (g->lease_max + 1) * g->entry_size;
	g->data_off = g->ring_off + round_up((uint64_t)g->capacity *
	    sizeof(struct shmq_seg_slot), SHMQ_CACHELINE);
	g->seg_size = g->data_off + (uint64_t)g->capacity * g->slot_size;
	return g->seg_size > SIZE_MAX / 2 ? -EINVAL : 0;
}

static uint32_t
pow2_at_least(uint32_t n)
{
	uint32_t p = SHMQ_CAPACITY_MIN;

	while (p < n && p < SHMQ_CAPACITY_MAX)
		p <<= 1;
	return p;
}

static int
geom_from_config(const struct shmq_config *cfg, struct geom *g)
{
	static const struct shmq_config zero;

	if (cfg == NULL)
		cfg = &zero;
	if (cfg->capacity > SHMQ_CAPACITY_MAX ||
	    (cfg->flags & ~SHMQ_CREATE_FENCES) != 0)
		return -EINVAL;
	g->flags = cfg->flags & SHMQ_CREATE_FENCES ? SHMQ_SEG_FENCES : 0;
	g->capacity = pow2_at_least(cfg->capacity ? cfg->capacity :
	    DEF_CAPACITY);
	g->msg_max = cfg->msg_max ? cfg->msg_max : DEF_MSG_MAX;
	g->max_procs = cfg->max_procs ? cfg->max_procs : DEF_PROCS;
	g->lease_max = cfg->lease_max ? cfg->lease_max : DEF_LEASES;
	return geom_compute(g);
}

/* "/name" from "name" or "/name"; no further '/', no "..", not too long. */
static int
name_normalise(const char *name, char out[NAME_MAX + 1])
{
	size_t len;

	if (name == NULL)
		return -EINVAL;
	if (name[0] == '/')
		name++;
	len = strlen(name);
	if (len == 0 || len >= NAME_MAX || strchr(name, '/') != NULL ||
	    strstr(name, "..") != NULL || strcmp(name, ".") == 0)
		return -EINVAL;
	out[0] = '/';
	memcpy(out + 1, name, len + 1);
	return 0;
}

static struct shmq *
handle_new(const char *name, void *base, size_t size, const struct geom *g)
{
	struct shmq *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return NULL;
	q->base = base;
	q->size = size;
	q->hdr = base;
	q->procs = (unsigned char *)base + g->procs_off;
	q->entries = (unsigned char *)base + g->entries_off;
	q->ring = (unsigned char *)base + g->ring_off;
	q->data = (unsigned char *)base + g->data_off;
	q->capacity = g->capacity;
	q->mask = g->capacity - 1;
	q->msg_max = g->msg_max;
	q->slot_size = g->slot_size;
	q->entry_size = g->entry_size;
	q->max_procs = g->max_procs;
	q->lease_max = g->lease_max;
	q->nwords = (g->max_procs + 63) / 64;
	q->me = SHMQ_NONE;
	q->spin_ns = SHMQ_DEFAULT_SPIN_NS;
	q->yield = true;
	q->pid = shmq__pid;
	q->fd = -1;
	q->wake = shmq__wake_mode(g->flags);
	strcpy(q->name, name);
	return q;
}

/* Everything but the magic, which the caller publishes last. */
static int
segment_init(struct shmq *q, const struct geom *g)
{
	struct shmq_seg_header *h = q->hdr;
	pthread_mutexattr_t ma;
	struct timespec now;
	int r;

	h->version_major = SHMQ_LAYOUT_MAJOR;
	h->version_minor = SHMQ_LAYOUT_MINOR;
	h->header_size = sizeof(*h);
	h->flags = g->flags;
	h->capacity = g->capacity;
	h->msg_max = g->msg_max;
	h->slot_size = g->slot_size;
	h->entry_size = g->entry_size;
	h->proc_size = sizeof(struct shmq_seg_proc);
	h->max_procs = g->max_procs;
	h->lease_max = g->lease_max;
	h->creator_pid = (uint32_t)shmq__pid;
	h->creator_start = self_start;
	clock_gettime(CLOCK_REALTIME, &now);
	h->created_ns = (uint64_t)now.tv_sec * 1000000000u +
	    (uint64_t)now.tv_nsec;
	h->seg_size = g->seg_size;
	h->procs_off = g->procs_off;
	h->entries_off = g->entries_off;
	h->ring_off = g->ring_off;
	h->data_off = g->data_off;
	for (uint32_t i = 0; i < g->max_procs; i++)
		if (sem_init((sem_t *)(void *)shmq__proc(q, i)->wake_sem, 1,
		    0) != 0)
			return -errno;
	for (uint64_t i = 0; i < g->capacity; i++)
		atomic_init(&shmq__slot(q, i)->state,
		    SHMQ_SLOT_WORD(i, SHMQ_SLOT_EMPTY, 0));
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	r = pthread_mutex_init((pthread_mutex_t *)(void *)h->recover_lock, &ma);
	pthread_mutexattr_destroy(&ma);
	return -r;
}

/* Claim record i if it is free (or dead with nothing left in its area). */
static bool
claim_record(struct shmq *q, uint32_t i)
{
	struct shmq_seg_proc *p = shmq__proc(q, i);
	/* Acquire: pairs with the release that freed the record. */
	uint64_t w = atomic_load_explicit(&p->state, memory_order_acquire);
	uint32_t base = i * shmq__area_len(q);

	if (SHMQ_PROC_STATE(w) == SHMQ_PROC_DEAD) {
		for (uint32_t k = 0; k < shmq__area_len(q); k++)
			if (SHMQ_ENTRY_STATE(atomic_load_explicit(
			    &shmq__entry(q, base + k)->state,
			    memory_order_acquire)) != SHMQ_ENTRY_FREE)
				return false;
	} else if (SHMQ_PROC_STATE(w) != SHMQ_PROC_FREE) {
		return false;
	}
	/* The pid goes in with the claim, so recovery can always find it. */
	return atomic_compare_exchange_strong_explicit(&p->state, &w,
	    SHMQ_PROC_WORD(shmq__pid, SHMQ_PROC_ALIVE, SHMQ_PROC_GEN(w) + 1),
	    memory_order_acq_rel, memory_order_relaxed);
}

/* Take a record for this handle; -EUSERS if every one is in use. */
static int
attach(struct shmq *q)
{
	struct shmq_seg_proc *p;

	for (int pass = 0; q->me == SHMQ_NONE; pass++) {
		for (uint32_t i = 0; i < q->max_procs; i++)
			if (claim_record(q, i)) {
				q->me = i;
				break;
			}
		if (q->me == SHMQ_NONE && (pass > 0 || shmq_recover_dead(q) < 0))
			return -EUSERS;
	}
	SHMQ_FAULT("attach.claimed");
	p = q->rec = shmq__proc(q, q->me);
	/* Relaxed: a recoverer that reads 0 treats it as unknown. */
	atomic_store_explicit(&p->start_ticks, self_start, memory_order_relaxed);
	/* Relaxed: statistics and hints, read by tools. */
	atomic_store_explicit(&p->n_put, 0, memory_order_relaxed);
	atomic_store_explicit(&p->n_get, 0, memory_order_relaxed);
	atomic_store_explicit(&p->n_ack, 0, memory_order_relaxed);
	atomic_store_explicit(&p->asleep, 0, memory_order_relaxed);
	atomic_store_explicit(&p->last_op_ns, shmq__coarse_ns(),
	    memory_order_relaxed);
	shmq__sem_drain(p);
	return 0;
}

/*
 * Size, map and initialise the segment behind fd (ours, empty), then
 * attach.  NULL with errno; fd is left for the caller to close.
 */
static struct shmq *
create_on_fd(int fd, const char *name, const struct geom *g, mode_t mode)
{
	struct shmq *q;
	void *base;
	int r;

	if (fchmod(fd, mode) != 0)		/* exactly mode, whatever umask */
		return NULL;
	/* Reserve the pages now: a full /dev/shm is ENOSPC here, not a
	 * SIGBUS in the middle of a put. */
	if ((r = posix_fallocate(fd, 0, (off_t)g->seg_size)) != 0) {
		errno = r;
		return NULL;
	}
	base = mmap(NULL, g->seg_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	    0);
	if (base == MAP_FAILED)
		return NULL;
	if ((q = handle_new(name, base, g->seg_size, g)) == NULL)
		goto out_unmap;
	if ((r = segment_init(q, g)) != 0)
		goto out_free;
	/* Release: pairs with the acquire in shmq_open; the header is whole. */
	atomic_store_explicit(&q->hdr->magic, SHMQ_SEG_MAGIC,
	    memory_order_release);
	if ((r = attach(q)) != 0)
		goto out_free;
	return q;
out_free:
	free(q);
	errno = -r;
out_unmap:
	r = errno;
	munmap(base, g->seg_size);
	errno = r;
	return NULL;
}

static int
config_check(const char *name, char path[NAME_MAX + 1],
    const struct shmq_config *cfg, struct geom *g)
{
	mode_t mode = cfg != NULL ? cfg->mode : 0;
	int r;

	if ((name != NULL && (r = name_normalise(name, path)) != 0) ||
	    (r = geom_from_config(cfg, g)) != 0)
		return r;
	return (mode & ~0777u) != 0 ? -EINVAL : 0;
}

struct shmq *
shmq_create(const char *name, const struct shmq_config *cfg)
{
	char path[NAME_MAX + 1];
	struct geom g;
	struct shmq *q;
	int fd, r;

	lib_init();
	if ((r = name == NULL ? -EINVAL : config_check(name, path, cfg,
	    &g)) != 0) {
		errno = -r;
		return NULL;
	}
	fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return NULL;
	q = create_on_fd(fd, path, &g, cfg != NULL && cfg->mode != 0 ?
	    cfg->mode : DEF_MODE);
	r = errno;
	close(fd);
	if (q == NULL)
		shm_unlink(path);
	errno = r;
	return q;
}

uint64_t
shmq_anon_room(void)
{
	struct statvfs sv;
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);

	if (statvfs("/dev/shm", &sv) == 0 && sv.f_frsize > 0)
		return (uint64_t)sv.f_bavail * sv.f_frsize;
	return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size / 2 :
	    UINT64_MAX;
}

struct shmq *
shmq_create_anon(const struct shmq_config *cfg)
{
	struct geom g;
	struct shmq *q;
	int fd, r;

	lib_init();
	if ((r = config_check(NULL, NULL, cfg, &g)) != 0) {
		errno = -r;
		return NULL;
	}
	if (g.seg_size > shmq_anon_room()) {
		errno = ENOSPC;
		return NULL;
	}
	if ((fd = memfd_create("shmq", MFD_CLOEXEC)) < 0)
		return NULL;
	if ((q = create_on_fd(fd, "(anonymous)", &g, 0600)) == NULL) {
		r = errno;
		close(fd);
		errno = r;
		return NULL;
	}
	q->fd = fd;
	return q;
}

/* Check the header of a mapped segment and derive its geometry. */
static int
header_check(const struct shmq_seg_header *h, size_t file_size,
    struct geom *g)
{
	/* Acquire: pairs with the release of the magic in shmq_create. */
	uint64_t magic = atomic_load_explicit(&h->magic, memory_order_acquire);

	if (magic == 0)
		return -EAGAIN;
	if (magic != SHMQ_SEG_MAGIC)
		return -EPROTO;
	if (h->version_major != SHMQ_LAYOUT_MAJOR)
		return -EPROTONOSUPPORT;
	g->capacity = h->capacity;
	g->msg_max = h->msg_max;
	g->max_procs = h->max_procs;
	g->lease_max = h->lease_max;
	g->flags = h->flags;
	if (h->header_size != sizeof(*h) || (h->flags & ~SHMQ_SEG_FENCES) != 0 ||
	    geom_compute(g) != 0 || h->slot_size != g->slot_size ||
	    h->entry_size != g->entry_size ||
	    h->proc_size != sizeof(struct shmq_seg_proc) ||
	    h->procs_off != g->procs_off || h->entries_off != g->entries_off ||
	    h->ring_off != g->ring_off || h->data_off != g->data_off ||
	    h->seg_size != g->seg_size)
		return -EBADMSG;
	if (file_size < g->seg_size)
		return -ENODATA;
	return file_size == g->seg_size ? 0 : -EBADMSG;
}

/* Every state word within its range, every owner an attachment. */
static int
records_check(struct shmq *q)
{
	for (uint32_t i = 0; i < q->max_procs; i++)
		if (SHMQ_PROC_STATE(atomic_load_explicit(&shmq__proc(q,
		    i)->state, memory_order_acquire)) > SHMQ_PROC_DEAD)
			return -EBADMSG;
	for (uint32_t i = 0; i < shmq__nentries(q); i++) {
		struct shmq_seg_entry *e = shmq__entry(q, i);
		uint64_t w = atomic_load_explicit(&e->state,
		    memory_order_acquire);
		if (SHMQ_ENTRY_STATE(w) > SHMQ_ENTRY_REDELIVER ||
		    SHMQ_ENTRY_OWNER(w) >= q->max_procs ||
		    (SHMQ_ENTRY_STATE(w) != SHMQ_ENTRY_FREE &&
		    atomic_load_explicit(&e->len, memory_order_relaxed) >
		    q->msg_max))
			return -EBADMSG;
	}
	return 0;
}

/*
 * Ring indices and slot tags within reach of each other.  The queue may be
 * live and moving: the window is taken from cons_pos before the scan to
 * prod_pos after it, with a lap of slack on either side.
 */
static int
ring_check_once(struct shmq *q)
{
	/* Relaxed: each value is only compared against bounds. */
	uint64_t cons = atomic_load_explicit(&q->hdr->cons_pos,
	    memory_order_relaxed);
	int64_t cap = q->capacity, span, lo = INT64_MAX, hi = INT64_MIN;

	span = (int64_t)(atomic_load_explicit(&q->hdr->prod_pos,
	    memory_order_relaxed) - cons);
	if (span > 2 * cap + 64 || span < -2 * cap - 64)
		return -EBADMSG;		/* slack: the queue may move */
	for (uint64_t i = 0; i < q->capacity; i++) {
		uint64_t w = atomic_load_explicit(&shmq__slot(q, i)->state,
		    memory_order_relaxed);
		int64_t d = shmq__tag_diff(w, cons);
		if (SHMQ_SLOT_STATE(w) > SHMQ_SLOT_READING ||
		    SHMQ_SLOT_OWNER(w) >= q->max_procs)
			return -EBADMSG;
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
	}
	span = (int64_t)(atomic_load_explicit(&q->hdr->prod_pos,
	    memory_order_relaxed) - cons);
	if (span < -2 * cap || lo < -2 * cap || hi > (span > 0 ? span : 0) +
	    2 * cap)
		return -EBADMSG;
	return 0;
}

/* A check that fails may have been preempted between its loads while the
 * queue ran laps; a corrupt ring fails every time. */
static int
ring_check(struct shmq *q)
{
	int r = -EBADMSG;

	for (int i = 0; i < 3 && r != 0; i++)
		r = ring_check_once(q);
	return r;
}

/*
 * What a read-only open checks of the ring: every slot word in range - a
 * state and an owner that no writer can produce.  Nothing about positions:
 * without the lock the queue may run laps under the scan, and a tool must
 * not call a live queue corrupt.  The slot words are 16 bytes each, apart
 * from the messages; the pages of a big ring are let go as the scan passes
 * them (a shared mapping: the data stays), so that looking at a queue
 * costs a bounded resident size whatever its capacity.
 */
#define RING_CHUNK	(UINT32_C(1) << 16)	/* slots: 1 MiB of words */

static int
ring_states_check(struct shmq *q)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);

	for (uint32_t i = 0; i < q->capacity; i++) {
		/* Relaxed: the word is only compared against bounds. */
		uint64_t w = atomic_load_explicit(&shmq__slot(q, i)->state,
		    memory_order_relaxed);
		if (SHMQ_SLOT_STATE(w) > SHMQ_SLOT_READING ||
		    SHMQ_SLOT_OWNER(w) >= q->max_procs)
			return -EBADMSG;
		if ((i + 1) % RING_CHUNK == 0) {
			uintptr_t lo = (uintptr_t)shmq__slot(q, i + 1 -
			    RING_CHUNK), hi = (uintptr_t)(shmq__slot(q, i) + 1);
			lo = (lo + page - 1) & ~(page - 1);
			hi &= ~(page - 1);
			if (hi > lo)
				(void)madvise((void *)lo, hi - lo,
				    MADV_DONTNEED);
		}
	}
	return 0;
}

/* Refuse another user's segment, or one others may use, unless asked. */
static int
owner_check(const struct stat *st, unsigned flags)
{
	if (!(flags & SHMQ_OPEN_ANY_OWNER) && st->st_uid != geteuid())
		return -EPERM;
	if (!(flags & SHMQ_OPEN_ANY_MODE) && (st->st_mode & 077) != 0)
		return -EPERM;
	return 0;
}

static struct shmq *
open_mapped(const char *path, int fd, unsigned flags)
{
	bool rdonly = flags & SHMQ_OPEN_RDONLY;
	struct stat st;
	struct geom g;
	struct shmq *q;
	void *base;
	int r;

	if (fstat(fd, &st) != 0)
		return NULL;
	/* The file opened is the file mapped: anything but a regular file
	 * (a FIFO put in its place, say) is not a segment. */
	if (!S_ISREG(st.st_mode)) {
		r = -EPROTO;
		goto out_err;
	}
	if ((r = owner_check(&st, flags)) != 0)
		goto out_err;
	if (st.st_size == 0) {
		r = -EAGAIN;			/* creator between open and size */
		goto out_err;
	}
	if ((size_t)st.st_size < sizeof(struct shmq_seg_header)) {
		r = -ENODATA;
		goto out_err;
	}
	base = mmap(NULL, (size_t)st.st_size, rdonly ? PROT_READ :
	    PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return NULL;
	if ((r = header_check(base, (size_t)st.st_size, &g)) != 0 ||
	    (q = handle_new(path, base, (size_t)st.st_size, &g)) == NULL) {
		if (r == 0)
			r = -ENOMEM;
		munmap(base, (size_t)st.st_size);
		goto out_err;
	}
	q->rdonly = rdonly;
	/* A reader checks the header, the records and every ring slot word
	 * (ring_states_check: what no writer produces, robust to a queue
	 * moving under it); a writer also the ring's positions, under the
	 * guarantee of its retries, before it attaches. */
	if ((r = records_check(q)) != 0 || (rdonly &&
	    (r = ring_states_check(q)) != 0) || (!rdonly &&
	    ((r = ring_check(q)) != 0 || (r = attach(q)) != 0))) {
		munmap(base, q->size);
		free(q);
		goto out_err;
	}
	return q;
out_err:
	errno = -r;
	return NULL;
}

struct shmq *
shmq_open_flags(const char *name, unsigned flags)
{
	char path[NAME_MAX + 1];
	struct shmq *q;
	int fd, r;

	lib_init();
	if ((r = name_normalise(name, path)) != 0 ||
	    (flags & ~(SHMQ_OPEN_RDONLY | SHMQ_OPEN_ANY_OWNER |
	    SHMQ_OPEN_ANY_MODE)) != 0) {
		errno = r ? -r : EINVAL;
		return NULL;
	}
	/* Non-blocking: /dev/shm is anyone's, and a FIFO by this name would
	 * block a read-only open for good; open_mapped refuses it. */
	fd = shm_open(path, ((flags & SHMQ_OPEN_RDONLY) ? O_RDONLY : O_RDWR) |
	    O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	q = open_mapped(path, fd, flags);
	r = errno;
	close(fd);
	errno = r;
	return q;
}

struct shmq *
shmq_open(const char *name)
{
	return shmq_open_flags(name, 0);
}

struct shmq *
shmq_attach(struct shmq *q)
{
	struct shmq *nq;
	int fd, r;

	if (q == NULL || q->pid != shmq__pid) {
		errno = q == NULL ? EINVAL : ECHILD;
		return NULL;
	}
	if (q->fd < 0)
		return shmq_open_flags(q->name, SHMQ_OPEN_ANY_MODE);
	if ((fd = fcntl(q->fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return NULL;
	nq = open_mapped(q->name, fd, SHMQ_OPEN_ANY_MODE);
	r = errno;
	if (nq == NULL)
		close(fd);
	else
		nq->fd = fd;
	errno = r;
	return nq;
}

void
shmq_close(struct shmq *q)
{
	int n = 0, r;

	if (q == NULL)
		return;
	if (!q->rdonly && q->me != SHMQ_NONE && q->pid == shmq__pid &&
	    (r = shmq__lock(q)) >= 0) {
		/* A recoverer died holding the lock: its victim's repair
		 * falls to us, as it would to shmq_recover(). */
		if (r == 1)
			n = shmq__recover_dead_locked(q);
		n += shmq__recover_locked(q, q->me);	/* hand back leases */
		shmq__unlock(q);
		if (n > 0 || r == 1)
			shmq__wake_all(q);
	}
	munmap(q->base, q->size);
	if (q->fd >= 0)
		close(q->fd);
	free(q);
}

int
shmq_unlink(const char *name)
{
	char path[NAME_MAX + 1];
	int r = name_normalise(name, path);

	if (r != 0)
		return r;
	return shm_unlink(path) == 0 ? 0 : -errno;
}

uint32_t
shmq_capacity(const struct shmq *q)
{
	return q->capacity;
}

uint32_t
shmq_msg_max(const struct shmq *q)
{
	return q->msg_max;
}

const char *
shmq_name(const struct shmq *q)
{
	return q->name;
}

void
shmq_set_spin(struct shmq *q, uint32_t spin_ns)
{
	if (q != NULL)
		q->spin_ns = spin_ns;
}

void
shmq_set_yield(struct shmq *q, bool yield)
{
	if (q != NULL)
		q->yield = yield;
}
