/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shmpipe_layout.h - the control segment of a shmpipe pipeline,
 * /shmpipe.NAME.ctl: the process table, the connection table, the reply
 * slab and the verdict table.  Structs and constants only, fixed-width
 * fields; read by shmq(1) ps without locks.
 *
 * The segment is, in order, each part aligned to 64 bytes:
 *	struct shmpipe_ctl			offset 0
 *	struct shmpipe_proc[nprocs]		procs_off
 *	struct shmpipe_conn + in ring, [max_conns]	conns_off, conn_size each
 *	struct shmpipe_slab + reply, [slab_slots]	slab_off, slab_size each
 *	struct shmpipe_verdict[nverdicts]	verdicts_off
 *
 * Who writes what (single writer unless noted):
 *	supervisor	header, proc slots' pid/state/generation/restarts/exit,
 *			verdicts, conn slots FREE again, slab slots a dead
 *			request process reserved and never used (CAS)
 *	request		conn in_pos/in_total/final_seq, conn OPEN/RD_DONE,
 *			slab slots FREE -> RESERVED (the next generation),
 *			ctl accepted/reserved
 *	processor	its proc slot's cur_conn/cur_seq/busy_since/served
 *	reply		conn reply_seq/out_mark/out_total, RP_DONE,
 *			slab RESERVED -> FILLED -> FREE (CAS), ctl answered/freed/
 *			corrupt
 *	anyone		conn ABORT (fetch_or)
 *
 * The slab is the pipeline's window: the request stage reserves a slot for
 * each request it accepts and puts the slot number in the message; the
 * reply stage fills that slot with the reply, writes replies to the client
 * in sequence order, and frees the slot.  So replies waiting for an earlier
 * one survive the death of the reply process, and the number of requests
 * in flight can never exceed slab_slots.
 */
#ifndef SHMPIPE_LAYOUT_H
#define SHMPIPE_LAYOUT_H

#include <assert.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SHMPIPE_CTL_MAGIC	UINT64_C(0x004c544350504853) /* "SHPPCTL\0" */
#define SHMPIPE_LAYOUT_MAJOR	3	/* 3: slab stage with a generation */
#define SHMPIPE_LAYOUT_MINOR	0
#define SHMPIPE_NAME_MAX	48

/* Roles of processes in the table. */
#define SHMPIPE_ROLE_REQUEST	1u
#define SHMPIPE_ROLE_PROCESSOR	2u
#define SHMPIPE_ROLE_REPLY	3u

/* Process slot states. */
#define SHMPIPE_PROC_EMPTY	0u	/* never used */
#define SHMPIPE_PROC_STARTING	1u	/* forked, not ready yet */
#define SHMPIPE_PROC_READY	2u	/* running, waiting for work */
#define SHMPIPE_PROC_BUSY	3u	/* processor handling cur_seq */
#define SHMPIPE_PROC_STOPPING	4u	/* asked to finish and exit */
#define SHMPIPE_PROC_DOWN	5u	/* dead; restart pending */
#define SHMPIPE_PROC_RETIRED	6u	/* dead; not restarted */

/* Pipeline phases. */
#define SHMPIPE_PHASE_RUNNING	1u
#define SHMPIPE_PHASE_DRAINING	2u	/* no new work; answering the rest */

/* Connection flags (low 32 bits of state; the generation is above). */
#define SHMPIPE_CONN_OPEN	0x01u
#define SHMPIPE_CONN_RD_DONE	0x02u	/* no more requests; final_seq set */
#define SHMPIPE_CONN_RP_DONE	0x04u	/* reply side has let go */
#define SHMPIPE_CONN_ABORT	0x08u	/* give up: drop what is pending */
#define SHMPIPE_CONN_FILE	0x10u	/* --input/--output file mode */
#define SHMPIPE_CONN_UNIX	0x20u	/* accepted on a Unix socket */
#define SHMPIPE_CONN_FLAGS(w)	((uint32_t)(w))
#define SHMPIPE_CONN_GEN(w)	((uint32_t)((w) >> 32))
/* A connection id names a slot and a generation of it. */
#define SHMPIPE_CONN_ID(gen, slot) (((uint64_t)(gen) << 32) | (uint32_t)(slot))
#define SHMPIPE_CONN_SLOT(id)	((uint32_t)(id))

/* in_pos: | head (32) | seq (31) | discarding (1) |. */
#define SHMPIPE_IN_POS(head, seq, disc) \
	(((uint64_t)(head) << 32) | ((uint64_t)((seq) & 0x7fffffffu) << 1) | \
	 (uint64_t)((disc) != 0))
#define SHMPIPE_IN_HEAD(p)	((uint32_t)((p) >> 32))
#define SHMPIPE_IN_SEQ(p)	((uint32_t)((p) >> 1) & 0x7fffffffu)
#define SHMPIPE_IN_DISC(p)	((unsigned)(p) & 1u)
#define SHMPIPE_SEQ_MASK	0x7fffffffu	/* sequence numbers wrap */

/*
 * out_mark: | busy (1) | seq (31) | base (32) |: reply seq starts at byte
 * base (mod 2^32) of the connection's output; busy while a write is in
 * flight.  out_total alone commits how far the output went; the mark may
 * lag it (a reply process died between the two stores), never lead it.
 */
#define SHMPIPE_OUT_MARK(seq, base, busy) \
	(((uint64_t)((busy) != 0) << 63) | \
	 ((uint64_t)((seq) & SHMPIPE_SEQ_MASK) << 32) | (uint32_t)(base))
#define SHMPIPE_OUT_SEQ(m)	((uint32_t)((m) >> 32) & SHMPIPE_SEQ_MASK)
#define SHMPIPE_OUT_BASE(m)	((uint32_t)(m))
#define SHMPIPE_OUT_BUSY(m)	((unsigned)((m) >> 63))

#define SHMPIPE_VERDICT_TIMEOUT	0x1u

struct shmpipe_ctl {
	/* Identity and geometry: written once, magic last (release). */
	_Atomic uint64_t magic;
	uint16_t	version_major;
	uint16_t	version_minor;
	uint32_t	header_size;
	uint32_t	supervisor_pid;
	uint32_t	flags;		/* SHMPIPE_CONN_FILE in file mode */
	uint64_t	supervisor_start; /* its start time, clock ticks */
	uint64_t	started_ns;	/* CLOCK_REALTIME */
	char		name[SHMPIPE_NAME_MAX];
	uint32_t	nprocs;
	uint32_t	proc_size;
	uint32_t	max_conns;
	uint32_t	conn_size;
	uint32_t	in_size;	/* input ring per connection, 2^n */
	uint32_t	max_line;
	uint32_t	reply_max;
	uint32_t	slab_slots;	/* = window */
	uint32_t	slab_size;
	uint32_t	nverdicts;
	uint32_t	conn_window;	/* in-flight requests per connection */
	uint32_t	max_deliveries;
	uint32_t	request_timeout_ms;
	uint32_t	pad0;
	uint64_t	procs_off;
	uint64_t	conns_off;
	uint64_t	slab_off;
	uint64_t	verdicts_off;
	uint64_t	seg_size;
	uint8_t		pad1[256 - 184];

	/* Supervisor line. */
	_Atomic uint32_t phase;		/* SHMPIPE_PHASE_* */
	_Atomic uint32_t req_closed;	/* request stage put its last one */
	_Atomic uint32_t procs_closed;	/* no processor will put again */
	_Atomic uint32_t pad2;
	_Atomic uint64_t restarts;
	_Atomic uint64_t quarantined;
	_Atomic uint64_t timeouts;
	_Atomic uint64_t redelivered;
	uint8_t		pad3[64 - 48];

	/* Request stage line. */
	_Atomic uint64_t accepted;	/* requests committed */
	_Atomic uint64_t reserved;	/* slab slots reserved */
	_Atomic uint64_t conns_accepted;
	_Atomic uint64_t conns_refused;	/* over max_conns */
	uint8_t		pad4[64 - 32];

	/* Reply stage line. */
	_Atomic uint64_t answered;	/* replies written to clients */
	_Atomic uint64_t freed;		/* slab slots freed (reply stage) */
	_Atomic uint64_t dropped;	/* replies for connections gone */
	_Atomic uint64_t duplicates;	/* replies dropped as already sent */
	_Atomic uint64_t slow_clients;	/* disconnected for not reading */
	_Atomic uint64_t corrupt;	/* FILLED slab slots found unusable */
	uint8_t		pad5[64 - 48];

	/* Supervisor's garbage collection of the slab. */
	_Atomic uint64_t gc_freed;
	uint8_t		pad6[64 - 8];
};

struct shmpipe_proc {
	_Atomic uint32_t pid;
	_Atomic uint32_t state;		/* SHMPIPE_PROC_* */
	uint32_t	role;		/* SHMPIPE_ROLE_* */
	uint32_t	index;		/* processor number */
	_Atomic uint32_t generation;	/* incarnations of this slot */
	_Atomic uint32_t restarts;
	_Atomic int32_t	last_status;	/* wait(2) status; -1 none yet */
	uint32_t	pad0;
	_Atomic uint64_t started_ns;	/* CLOCK_REALTIME of the fork */
	_Atomic uint64_t cur_conn;	/* request being handled */
	_Atomic uint64_t cur_seq;
	_Atomic uint64_t busy_since_ns;	/* CLOCK_MONOTONIC; 0 when idle */
	_Atomic uint64_t served;	/* by this incarnation */
	_Atomic uint64_t served_total;	/* by every incarnation */
	char		last_exit[48];	/* "killed by signal 11 (SIGSEGV)" */
};

struct shmpipe_conn {
	_Atomic uint64_t state;		/* gen << 32 | SHMPIPE_CONN_* */
	_Atomic uint64_t in_pos;	/* SHMPIPE_IN_POS: next line to put */
	_Atomic uint64_t in_total;	/* bytes read ever; ring tail = mod */
	_Atomic uint64_t out_total;	/* bytes written ever (files: offset) */
	_Atomic uint32_t final_seq;	/* requests in all, once RD_DONE */
	_Atomic uint32_t reply_seq;	/* next reply to write (may lag the
					 * mark: the request stage's window) */
	_Atomic uint64_t out_mark;	/* SHMPIPE_OUT_MARK */
	_Atomic uint64_t opened_ns;	/* CLOCK_MONOTONIC */
	_Atomic uint64_t last_in_ns;	/* last bytes from the client */
	/* in_size bytes of input ring follow */
};

/*
 * Slab slot stage: | generation (32) | SHMPIPE_SLAB_* (32) |.  The request
 * stage adds one to the generation each time it reserves the slot, and
 * every other change keeps it; so a CAS from a stage word loaded earlier
 * fails if the slot was freed and reserved again meanwhile (the
 * supervisor's collection racing the reply stage and a new reservation).
 */
#define SHMPIPE_SLAB_FREE	0u
#define SHMPIPE_SLAB_RESERVED	1u	/* for request (conn, seq) */
#define SHMPIPE_SLAB_FILLED	2u	/* holds its reply */
#define SHMPIPE_SLAB_WORD(gen, st) (((uint64_t)(gen) << 32) | (uint32_t)(st))
#define SHMPIPE_SLAB_STAGE(w)	((uint32_t)(w))
#define SHMPIPE_SLAB_GEN(w)	((uint32_t)((w) >> 32))

struct shmpipe_slab {
	_Atomic uint64_t stage;		/* SHMPIPE_SLAB_WORD; written last */
	_Atomic uint64_t conn;		/* connection id */
	_Atomic uint32_t seq;
	_Atomic uint32_t len;		/* reply length, once FILLED */
	_Atomic uint64_t filled_ns;	/* CLOCK_MONOTONIC */
	/* reply_max bytes follow */
};

struct shmpipe_verdict {
	_Atomic uint64_t conn;		/* 0 = unused; written last */
	_Atomic uint32_t seq;
	_Atomic uint32_t crashes;	/* processors that died holding it */
	_Atomic uint32_t flags;		/* SHMPIPE_VERDICT_* */
	uint32_t	pad;
	_Atomic uint64_t when_ns;
};

static_assert(sizeof(struct shmpipe_ctl) == 512, "layout");
static_assert(offsetof(struct shmpipe_ctl, phase) == 256, "layout");
static_assert(offsetof(struct shmpipe_ctl, accepted) == 320, "layout");
static_assert(offsetof(struct shmpipe_ctl, answered) == 384, "layout");
static_assert(offsetof(struct shmpipe_ctl, seg_size) == 176, "layout");
static_assert(sizeof(struct shmpipe_proc) == 128, "layout");
static_assert(sizeof(struct shmpipe_conn) == 64, "layout");
static_assert(offsetof(struct shmpipe_conn, out_mark) == 40, "layout");
static_assert(sizeof(struct shmpipe_slab) == 32, "layout");
static_assert(offsetof(struct shmpipe_slab, conn) == 8, "layout");
static_assert(offsetof(struct shmpipe_slab, len) == 20, "layout");
static_assert(sizeof(struct shmpipe_verdict) == 32, "layout");

#endif /* SHMPIPE_LAYOUT_H */
