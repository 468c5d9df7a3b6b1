/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stage.h - what each stage of a pipeline is given, and the three stages:
 * request (clients -> request queue), processor (request queue -> handler
 * -> reply queue) and reply (reply queue -> clients, in order).  The same
 * code runs as forked processes (shmpipe) and as threads
 * (shmpipe-threaded).
 */
#ifndef STAGE_H
#define STAGE_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "ctl.h"
#include "options.h"
#include "shmq.h"

struct proto_handlers;

#define STAGE_EX_OK		0	/* done: drained, stopped, recycled */
#define STAGE_EX_SOFTWARE	70	/* a bug or a corrupt segment */
#define STAGE_EX_IOERR		74	/* file mode: the output cannot be
					 * written (the pipeline gives up) */
#define STAGE_EX_CONFIG		78	/* the handler object failed to load */

struct stage {
	const struct options *st_opt;
	struct ctl	*st_ctl;
	struct shmq	*st_req;	/* our own handles on the queues */
	struct shmq	*st_rep;
	int		 st_chan;	/* control socket, -1 if none */
	uint32_t	 st_slot;	/* our row in the process table */
	const int	*st_listen;	/* request stage: listening sockets */
	const bool	*st_listen_unix;
	int		 st_nlisten;
	int		 st_in_fd;	/* file mode */
	int		 st_out_fd;
	/* Processor: the handler set to use, loaded (init()) and unloaded
	 * (fini()) by whoever started us; NULL: load our own.  Threads of
	 * one process share one object, whose init() and fini() then run
	 * once, around them all (shmpipe-threaded). */
	const struct proto_handlers *st_handlers;
	_Atomic int	 st_stop;	/* finish up and return */
	_Atomic int	 st_doorbell;	/* a control message is waiting */
};

int	stage_request(struct stage *st);
int	stage_processor(struct stage *st);
int	stage_reply(struct stage *st);

/*
 * From the stage's own thread, before it runs: wait on the queues as
 * --spin-us says, never yielding; schedule the thread as --sched says.
 */
void	stage_policy(struct stage *st);

/* Our process table row, and moving it between states. */
struct shmpipe_proc *stage_proc(const struct stage *st);
void	stage_state(const struct stage *st, uint32_t state);

/* True once asked to stop; the pipeline's phase is DRAINING. */
bool	stage_stopping(const struct stage *st);
bool	stage_draining(const struct stage *st);

/*
 * Ask a stage to stop, or tell it a control message waits: sets the flag
 * and interrupts whatever queue call it is blocked in.  Async-signal-safe.
 */
void	stage_poke(struct stage *st, bool stop);

/* A queue that has nothing left for anyone: empty, no redeliveries. */
bool	stage_queue_drained(struct shmq *q);

/*
 * A message on one of the pipeline's queues too short for its header: no
 * stage put it (something else did: `shmq put`, a buggy program), and
 * nobody can be answered.  The caller drops it; this says so, at most
 * once every 10 s per stage, with how many were dropped meanwhile.
 */
struct stage_drops {
	uint64_t	 sd_n;		/* dropped, not yet said */
	uint64_t	 sd_quiet_until;
};
void	stage_malformed(struct stage_drops *d, const char *queue, size_t len);

uint64_t stage_clock_ns(clockid_t clk);	/* that clock, in ns */
uint64_t stage_now_ns(void);		/* CLOCK_MONOTONIC */
uint64_t stage_coarse_ns(void);		/* CLOCK_MONOTONIC_COARSE */

#endif /* STAGE_H */
