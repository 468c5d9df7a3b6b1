/* SPDX-License-Identifier: BSD-2-Clause */
/* stage.c - the little every stage shares: its table row, stop, time. */
#define _GNU_SOURCE
#include <time.h>

#include "stage.h"

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
