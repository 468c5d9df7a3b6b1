/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * supervisor.h - the parent of a pipeline.  It creates the queues and the
 * control segment, forks the stages, and from then on only reaps,
 * recovers, restarts and keeps client connections; requests never pass
 * through it.
 */
#ifndef SUPERVISOR_H
#define SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ctl.h"
#include "options.h"
#include "pipeline.h"
#include "shmq.h"

#define SV_ROW_REQUEST	0u		/* process table rows */
#define SV_ROW_REPLY	1u
#define SV_ROW_PROC0	2u		/* processors, then spares */

struct child {
	pid_t		 ch_pid;	/* 0 when not running */
	int		 ch_sock;	/* our end of its channel, -1 */
	uint32_t	 ch_role;	/* SHMPIPE_ROLE_*, 0 = unused row */
	uint32_t	 ch_index;	/* processor number */
	uint64_t	 ch_started_ns;	/* CLOCK_MONOTONIC of the fork */
	uint64_t	 ch_restart_ns;	/* fork again then; 0 = not pending */
	uint64_t	 ch_ready_ns;	/* when it first reported ready */
	unsigned	 ch_backoff;	/* quick deaths in a row */
	bool		 ch_retire;	/* not to be restarted */
	bool		 ch_timed_out;	/* we killed it for a request timeout */
	uint8_t		 ch_start_kill;	/* we killed it starting: CH_KILL_* */
};

/* Why we killed a processor that had not started. */
#define CH_KILL_NONE	0
#define CH_KILL_SLOW	1	/* past --start-timeout: a failed start */
#define CH_KILL_IDLE	2	/* in a drain with nothing left to do */

#define SV_LOOP_N	5		/* startup failures that make a loop */
#define SV_LOOP_NS	30000000000ull	/* ... within this time */

struct sv {
	struct options	*sv_opt;
	struct pipeline	 sv_pl;		/* I/O, control area, queues, clients */
	struct pidfh	*sv_pfh;
	int		 sv_lock;	/* the name's lock, see name_lock() */
	struct child	*sv_child;	/* one per process table row */
	uint32_t	 sv_nrows;
	int		 sv_ep;
	int		 sv_sigfd;
	int		 sv_signals;	/* stop signals received */
	bool		 sv_draining;
	bool		 sv_giving_up;
	int		 sv_exit;
	uint64_t	 sv_fail_ns[SV_LOOP_N]; /* recent startup failures */
	unsigned	 sv_nfail;
	int		 sv_reload_idx;	/* next processor to replace, -1 */
	int		 sv_reload_new;	/* row of its replacement, -1 */
	uint64_t	 sv_tick_ns;
};

/* Run a pipeline until it is stopped; returns the exit status. */
int	supervisor_run(struct options *opt);

/* Take in what a stage sent on its channel: connections to keep. */
void	sv_read_chan(struct sv *sv, uint32_t row);

/* children.c: the life of the stage processes. */
void	sv_spawn(struct sv *sv, uint32_t row);
void	sv_reap(struct sv *sv);
void	sv_restarts(struct sv *sv, uint64_t now);
void	sv_timeouts(struct sv *sv, uint64_t now);
void	sv_reload_start(struct sv *sv);
void	sv_reload_step(struct sv *sv);
void	sv_kill_all(struct sv *sv, int sig);
bool	sv_alive(const struct sv *sv, uint32_t role);
const char *sv_role_name(uint32_t role);

#endif /* SUPERVISOR_H */
