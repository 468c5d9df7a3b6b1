/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * wait.c - how libshmq callers wait: spin briefly, yield the CPU once, then
 * sleep on their own process-shared semaphore until a peer claims their
 * sleeper bit and posts.
 *
 * The protocol is a Dekker pair.  A sleeper sets its bit in get_sleepers or
 * put_sleepers, issues the heavy fence F2, and checks the ring once more
 * before sem_wait.  A peer that publishes a message (or frees a slot) issues
 * the light fence F1 and reads the bitmap.  Either the sleeper's re-check
 * sees the message or the peer sees the bit, so nobody sleeps through it.
 *
 * F1 runs on every operation, F2 only before sleeping, so by default F1 is
 * made free: with membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) the sleeper
 * forces a full barrier on every CPU running a registered process, and F1
 * needs only to stop the compiler from reordering.  That interrupt costs
 * the sleeper microseconds (more in a VM), so a queue whose consumers sleep
 * often is better created with SHMQ_SEG_FENCES: both fences are then plain
 * seq_cst fences, in every process.  A process that cannot register for
 * membarrier on a default queue fences as well and sleeps in 1 ms slices,
 * because its peers' F1 is then not enough to order against its F2.
 *
 * A peer wakes a sleeper by clearing its bit (so each sleeper is woken once)
 * and posting that sleeper's semaphore.  The semaphores carry wake-ups, not
 * counts: the ring is the truth, every waker re-checks it, and a stray token
 * costs one spurious wake-up.  A waker that dies between clearing a bit and
 * posting is covered by recovery, which posts to every record marked asleep.
 *
 * A semaphore in the segment is memory another process may have scribbled
 * on, and libc trusts it: glibc's sem_post(3) and sem_wait(3) build their
 * futex call from a word of the sem_t that says whether it is
 * process-shared, and an impossible value there makes glibc abort the
 * caller.  So that word is checked before every post and sleep (see
 * sem_probe()); a peer's semaphore that fails is not posted to, our own is
 * made again before we sleep on it, and a count no waker could have left
 * is reset rather than drained one token at a time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shmq_int.h"

bool shmq__membarrier_ok;

#define SLICE_NS	1000000u	/* sleep slice without membarrier */
#define SEM_TOKENS_MAX	4096	/* more stray tokens than any waker leaves */

/* Where a sem_t says it is process-shared, and what it says; see
 * sem_probe().  SIZE_MAX: this libc keeps no such word apart. */
static size_t	sem_flag_off = SIZE_MAX;
static uint32_t	sem_flag_val;

uint64_t
shmq__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t
shmq__coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long
membarrier(int cmd, unsigned flags)
{
	return syscall(__NR_membarrier, cmd, flags, 0);
}

static void
fence_register(void)
{
	long cmds = membarrier(MEMBARRIER_CMD_QUERY, 0);

	shmq__membarrier_ok = cmds > 0 &&
	    (cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
	    membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0) == 0;
}

/* Register this process for membarrier once; a forked child inherits it. */
void
shmq__fence_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, fence_register);
}

/* This process's mode on a segment with these flags. */
uint8_t
shmq__wake_mode(uint32_t seg_flags)
{
	if (seg_flags & SHMQ_SEG_FENCES)
		return SHMQ__WAKE_FENCE;
	return shmq__membarrier_ok ? SHMQ__WAKE_MB : SHMQ__WAKE_POLL;
}

/* F2: pairs with shmq__fence_light() (F1) in every publishing peer. */
static void
fence_heavy(struct shmq *q)
{
	atomic_thread_fence(memory_order_seq_cst);
	if (q->wake == SHMQ__WAKE_MB &&
	    membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0) != 0)
		q->wake = SHMQ__WAKE_POLL;	/* peers still covered: slices */
}

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static sem_t *
proc_sem(struct shmq_seg_proc *p)
{
	return (sem_t *)(void *)p->wake_sem;
}

/*
 * Find the word of a sem_t that records process-sharing: the one that
 * differs between a shared and a private semaphore made alike on zeroed
 * memory (in glibc, the futex "private" flag that sem_post passes on).
 */
static void
sem_probe(void)
{
	union {
		sem_t		s;
		unsigned char	b[sizeof(sem_t)];
	} shared, private;

	memset(&shared, 0, sizeof(shared));
	memset(&private, 0, sizeof(private));
	if (sem_init(&shared.s, 1, 0) != 0 || sem_init(&private.s, 0, 0) != 0)
		return;
	for (size_t off = 0; off + 4 <= sizeof(sem_t); off += 4)
		if (memcmp(shared.b + off, private.b + off, 4) != 0) {
			memcpy(&sem_flag_val, shared.b + off, 4);
			sem_flag_off = off;
			break;
		}
	sem_destroy(&shared.s);
	sem_destroy(&private.s);
}

void
shmq__sem_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, sem_probe);
}

/* May libc be handed this record's semaphore? */
static bool
sem_sane(struct shmq_seg_proc *p)
{
	_Atomic uint32_t *flag;

	if (sem_flag_off == SIZE_MAX)
		return true;
	flag = (_Atomic uint32_t *)(void *)(p->wake_sem + sem_flag_off);
	/* Relaxed: only sem_init writes it, before the record is used. */
	return atomic_load_explicit(flag, memory_order_relaxed) ==
	    sem_flag_val;
}

/* Post to a record's semaphore if libc can take it. */
static void
sem_wake(struct shmq_seg_proc *p)
{
	if (sem_sane(p))
		(void)sem_post(proc_sem(p));
}

/*
 * Consume stray wake-ups; only the record's owner (or its recoverer) may.
 * A semaphore libc cannot take, or with more tokens than wakers leave, is
 * made again instead.
 */
void
shmq__sem_drain(struct shmq_seg_proc *p)
{
	sem_t *sem = proc_sem(p);
	int v;

	/* glibc reports a count above INT_MAX as negative. */
	if (!sem_sane(p) || sem_getvalue(sem, &v) != 0 || v < 0 ||
	    v > SEM_TOKENS_MAX) {
		(void)sem_init(sem, 1, 0);
		return;
	}
	for (int n = 0; n <= SEM_TOKENS_MAX && sem_trywait(sem) == 0; n++)
		;
}

static _Atomic uint64_t *
sleepers(struct shmq *q, enum shmq__kind kind)
{
	return kind == SHMQ__GET ? q->hdr->get_sleepers :
	    q->hdr->put_sleepers;
}

/*
 * Withdraw our sleeper bit.  If a waker had already claimed it, its token is
 * on the way or there; take it if it is, else leave it as a stray.
 */
static void
sleep_cancel(struct shmq *q, enum shmq__kind kind)
{
	_Atomic uint64_t *map = sleepers(q, kind);
	uint64_t bit = UINT64_C(1) << (q->me % 64);
	uint64_t old;

	/* Acq_rel: pairs with the waker's claim in shmq__wake (W1). */
	old = atomic_fetch_and_explicit(&map[q->me / 64], ~bit,
	    memory_order_acq_rel);
	if (!(old & bit))
		(void)sem_trywait(proc_sem(q->rec));
}

/*
 * Woken.  A waker claimed our bit before posting, but shmq_wakeup() and
 * a stray token post without claiming it: withdraw it then, or the next
 * waker would spend its wake-up on us, not on a consumer asleep.
 */
static void
sleep_woken(struct shmq *q, enum shmq__kind kind)
{
	uint64_t bit = UINT64_C(1) << (q->me % 64);

	/* Relaxed: only we set our bit, so clear means a waker claimed it;
	 * a stale set is settled by sleep_cancel's fetch_and. */
	if (atomic_load_explicit(&sleepers(q, kind)[q->me / 64],
	    memory_order_relaxed) & bit)
		sleep_cancel(q, kind);
}

/* Spin with growing pauses until try() stops saying -EAGAIN or time is up. */
static int
spin(struct shmq *q, shmq__try_fn try, void *arg, uint64_t until)
{
	int r = -EAGAIN;

	for (unsigned i = 1; r == -EAGAIN; i++) {
		for (unsigned j = 0; j < (i < 32 ? i : 32); j++)
			cpu_relax();
		r = try(q, arg);
		if ((i & 15) == 0 && shmq__now_ns() >= until)
			break;
	}
	return r;
}

static int
sem_sleep(struct shmq *q, uint64_t deadline)
{
	sem_t *sem = proc_sem(q->rec);
	struct timespec ts;
	uint64_t until = deadline;

	if (q->wake == SHMQ__WAKE_POLL) {
		uint64_t slice = shmq__now_ns() + SLICE_NS;
		if (slice < until)
			until = slice;
	}
	if (until == UINT64_MAX)
		return sem_wait(sem) == 0 ? 0 : -errno;
	ts.tv_sec = (time_t)(until / 1000000000u);
	ts.tv_nsec = (long)(until % 1000000000u);
	return sem_clockwait(sem, CLOCK_MONOTONIC, &ts) == 0 ? 0 : -errno;
}

/*
 * Register as a sleeper, look once more, then sleep.  Returns 1 if the last
 * look succeeded (*result holds it), 0 when woken or a slice ended (look
 * again), -ETIMEDOUT at the deadline, -EINTR.  The sleeper bit is ours
 * to withdraw whenever no waker claimed it.
 */
static int
sleep_once(struct shmq *q, enum shmq__kind kind, shmq__try_fn try, void *arg,
    uint64_t deadline, int *result)
{
	int r;

	/* Before the bit: a post that finds the bit must not be undone. */
	if (!sem_sane(q->rec))
		(void)sem_init(proc_sem(q->rec), 1, 0);
	shmq__bit_set(sleepers(q, kind), q->me);
	/* Relaxed: only tools and recovery read it, as a hint. */
	atomic_store_explicit(&q->rec->asleep,
	    kind == SHMQ__GET ? SHMQ_ASLEEP_GET : SHMQ_ASLEEP_PUT,
	    memory_order_relaxed);
	fence_heavy(q);				/* F2 */
	*result = try(q, arg);
	if (*result != -EAGAIN) {
		sleep_cancel(q, kind);
		r = 1;
		goto out;
	}
	SHMQ_FAULT("wait.registered");
	/* Relaxed: statistics. */
	atomic_fetch_add_explicit(kind == SHMQ__GET ? &q->hdr->get_waits :
	    &q->hdr->put_waits, 1, memory_order_relaxed);
	r = sem_sleep(q, deadline);
	if (r != 0)
		sleep_cancel(q, kind);
	else
		sleep_woken(q, kind);
	if (r == -ETIMEDOUT && shmq__now_ns() < deadline)
		r = 0;				/* a slice ended */
out:
	atomic_store_explicit(&q->rec->asleep, 0, memory_order_relaxed);
	return r;
}

static bool	woken(struct shmq *q);

/*
 * Yield the CPU before sleeping?  A peer we wait for may be runnable on our
 * CPU (more processes than CPUs); a yield lets it run first, so that its
 * answer costs neither of us a sleep and a wake-up.  A yield that finds
 * nothing costs a system call (alone on the CPU it is back at once), and
 * where other processes share the CPU two context switches more than
 * sleeping at once; so after YIELD_MISSES fruitless ones in a row, only
 * every YIELD_PROBE-th wait tries again.  Even a yield that pays can cost
 * a process that does better taking work in batches after a sleep:
 * shmq_set_yield() turns it off.
 */
#define YIELD_MISSES	4
#define YIELD_PROBE	64

static bool
yield_due(struct shmq *q)
{
	if (!q->yield)
		return false;
	if (q->yield_misses < YIELD_MISSES)
		return true;
	if (++q->yield_skips < YIELD_PROBE)
		return false;
	q->yield_skips = 0;
	return true;
}

static void
yield_score(struct shmq *q, bool paid)
{
	if (paid)
		q->yield_misses = 0;
	else if (q->yield_misses < YIELD_MISSES)
		q->yield_misses++;
}

/*
 * Wait until try() returns something other than -EAGAIN, or the timeout.
 * try() is retried after every spin step and every wake-up.
 */
int
shmq__wait(struct shmq *q, enum shmq__kind kind, int timeout_ms,
    shmq__try_fn try, void *arg)
{
	uint64_t now = shmq__now_ns();
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX :
	    now + (uint64_t)timeout_ms * 1000000u;
	uint64_t spin_until = now + q->spin_ns;
	int r = -EAGAIN, result;

	if (q->spin_ns > 0) {
		q->spinning = true;
		r = spin(q, try, arg, spin_until < deadline ? spin_until :
		    deadline);
		q->spinning = false;
	}
	if (r == -EAGAIN && yield_due(q)) {
		(void)sched_yield();
		SHMQ_FAULT("wait.yielded");
		r = try(q, arg);
		yield_score(q, r != -EAGAIN);
	}
	while (r == -EAGAIN) {
		int s;
		if (woken(q))
			return -EINTR;
		s = sleep_once(q, kind, try, arg, deadline, &result);
		if (s == 1)
			return result;
		r = try(q, arg);
		if (r == -EAGAIN && s < 0)
			return s;	/* timed out or interrupted */
	}
	return r;
}

/* Consume a pending shmq_wakeup(). */
static bool
woken(struct shmq *q)
{
	/* Acquire: pairs with the release in shmq_wakeup (the caller's
	 * flags, set before it, are visible once we return -EINTR). */
	return atomic_load_explicit(&q->wakeup, memory_order_relaxed) != 0 &&
	    atomic_exchange_explicit(&q->wakeup, 0, memory_order_acquire) != 0;
}

void
shmq_wakeup(struct shmq *q)
{
	if (q == NULL || q->rec == NULL || q->pid != shmq__pid)
		return;			/* not ours: a parent's handle */
	/* Release: pairs with the acquire in woken(). */
	atomic_store_explicit(&q->wakeup, 1, memory_order_release);
	sem_wake(q->rec);		/* async-signal-safe */
}

/* Wake up to n sleepers of this kind; call after shmq__fence_light(). */
void
shmq__wake(struct shmq *q, enum shmq__kind kind, unsigned n)
{
	_Atomic uint64_t *map = sleepers(q, kind);

	for (uint32_t w = 0; w < q->nwords && n > 0; w++) {
		/* Relaxed: F1 ordered our publication before this read. */
		uint64_t bits = atomic_load_explicit(&map[w],
		    memory_order_relaxed);
		while (bits != 0 && n > 0) {
			uint64_t bit = bits & -bits;
			/* W1: pairs with sleep_cancel's fetch_and. */
			uint64_t old = atomic_fetch_and_explicit(&map[w], ~bit,
			    memory_order_acq_rel);
			if (old & bit) {
				uint32_t idx = w * 64 + (uint32_t)__builtin_ctzll(bit);
				SHMQ_FAULT("wake.claimed");
				if (idx < q->max_procs)
					sem_wake(shmq__proc(q, idx));
				n--;
			}
			bits = old & ~bit;
		}
	}
}

/*
 * After a recovery: every live record that may be asleep gets one token,
 * whether or not its bit is still set (its waker may have died after
 * claiming it).  Extra tokens are harmless spurious wake-ups.
 */
void
shmq__wake_all(struct shmq *q)
{
	atomic_thread_fence(memory_order_seq_cst);
	for (uint32_t i = 0; i < q->max_procs; i++) {
		struct shmq_seg_proc *p = shmq__proc(q, i);
		uint64_t w = atomic_load_explicit(&p->state,
		    memory_order_acquire);
		uint64_t bit = UINT64_C(1) << (i % 64);
		uint64_t old;

		if (SHMQ_PROC_STATE(w) != SHMQ_PROC_ALIVE || i == q->me)
			continue;
		/* W1 as in shmq__wake; relaxed asleep: a hint. */
		old = atomic_fetch_and_explicit(&q->hdr->get_sleepers[i / 64],
		    ~bit, memory_order_acq_rel);
		old |= atomic_fetch_and_explicit(&q->hdr->put_sleepers[i / 64],
		    ~bit, memory_order_acq_rel);
		if ((old & bit) || atomic_load_explicit(&p->asleep,
		    memory_order_relaxed) != 0)
			sem_wake(p);
	}
}
