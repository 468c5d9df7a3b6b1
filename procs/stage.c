/* SPDX-License-Identifier: BSD-2-Clause */
/* stage.c - the little every stage shares: its table row, stop, time. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "msg.h"
#include "stage.h"

#define DROPS_QUIET_NS	10000000000ull	/* one line about drops per 10 s */

/*
 * How a stage waits and is scheduled; called by the stage's own thread
 * (its process, or its thread in shmpipe-threaded) before it runs.
 *
 * A stage waiting on a queue does not yield before it sleeps (libshmq's
 * default does): stages are several to a CPU, and a yield hands the CPU to
 * a stage that feeds this one a few messages at a time, where a sleep lets
 * them pile up and be taken in batches.  Measured with alternating runs of
 * shmpipe-bench, 50 connections: yielding cost 6 % at depth 16 and 10 %
 * unpipelined, though most yields found work.
 *
 * It runs SCHED_BATCH unless --sched other: then a stage woken by
 * another (a message on its queue, a client's bytes) does not preempt
 * whoever runs on that CPU, often the stage that woke it in the middle of
 * its round, but waits for it to sleep or its slice to end, and finds a
 * batch where it would have found a message or two.  Measured with
 * alternating runs of shmpipe-bench, 50 connections, 2 CPUs: +15..38 % at
 * depth 16, +14..30 % unpipelined, and one client's round trip 50 us
 * instead of 75-80 (the waker goes on to its own sleep instead of being
 * switched out and back).  Per thread, so the threaded build's stages get
 * it and its main thread does not; the supervisor, which reacts to
 * deaths, keeps the policy it was started with.  Any wait is the stage's
 * to pay: a SCHED_OTHER process's wake-up still preempts a stage.
 */
void
stage_policy(struct stage *st)
{
#ifdef SCHED_BATCH
	struct sched_param sp = { .sched_priority = 0 };
	int policy = st->st_opt->sched_batch ? SCHED_BATCH : SCHED_OTHER;
	int r;
#endif

	shmq_set_spin(st->st_req, st->st_opt->spin_ns);
	shmq_set_spin(st->st_rep, st->st_opt->spin_ns);
	shmq_set_yield(st->st_req, false);
	shmq_set_yield(st->st_rep, false);
#ifdef SCHED_BATCH
	if ((r = pthread_setschedparam(pthread_self(), policy, &sp)) != 0)
		log_event("cannot set the scheduling policy (%s): %s; going "
		    "on without", st->st_opt->sched_batch ? "batch" : "other",
		    strerror(r));
#endif
}

struct shmpipe_proc *
stage_proc(const struct stage *st)
{
	return ctl_proc(st->st_ctl, st->st_slot);
}

void
stage_state(const struct stage *st, uint32_t state)
{
	/* Release: the supervisor reading READY sees our setup. */
	atomic_store_explicit(&stage_proc(st)->state, state,
	    memory_order_release);
}

bool
stage_stopping(const struct stage *st)
{
	/* Relaxed: a flag polled between steps. */
	return atomic_load_explicit(&st->st_stop, memory_order_relaxed) != 0;
}

bool
stage_draining(const struct stage *st)
{
	/* Relaxed: polled; the supervisor's later flags carry the order. */
	return atomic_load_explicit(&st->st_ctl->c_hdr->phase,
	    memory_order_relaxed) == SHMPIPE_PHASE_DRAINING;
}

void
stage_poke(struct stage *st, bool stop)
{
	if (stop)
		atomic_store_explicit(&st->st_stop, 1, memory_order_relaxed);
	else
		atomic_store_explicit(&st->st_doorbell, 1,
		    memory_order_relaxed);
	if (st->st_req != NULL)
		shmq_wakeup(st->st_req);
	if (st->st_rep != NULL)
		shmq_wakeup(st->st_rep);
}

bool
stage_queue_drained(struct shmq *q)
{
	struct shmq_stats s;

	return shmq_stats(q, &s) == 0 && s.depth == 0 &&
	    s.redeliver_pending == 0;
}

uint64_t
stage_clock_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t
stage_now_ns(void)
{
	return stage_clock_ns(CLOCK_MONOTONIC);
}

uint64_t
stage_coarse_ns(void)
{
	return stage_clock_ns(CLOCK_MONOTONIC_COARSE);
}

void
stage_malformed(struct stage_drops *d, const char *queue, size_t len)
{
	uint64_t now = stage_coarse_ns();

	d->sd_n++;
	if (now < d->sd_quiet_until)
		return;
	log_event("dropped %" PRIu64 " message(s) from the %s queue: too short "
	    "to be one (the last %zu bytes; a header takes %zu): something "
	    "other than this pipeline puts on it", d->sd_n, queue, len,
	    sizeof(struct msg_hdr));
	d->sd_n = 0;
	d->sd_quiet_until = now + DROPS_QUIET_NS;
}
