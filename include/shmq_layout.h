/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shmq_layout.h - the byte layout of a libshmq segment, for readers outside
 * the library (the shmq(1) inspection tool, debuggers, other languages).
 *
 * Structs and constants only, no code.  Every field is a fixed-width integer
 * at a fixed offset; the static_asserts at the end pin what other processes
 * rely on.  A change to anything here bumps SHMQ_LAYOUT_MAJOR (incompatible)
 * or SHMQ_LAYOUT_MINOR (compatible addition) in the same commit.
 *
 * A segment is, in order, each part aligned to SHMQ_CACHELINE:
 *
 *	struct shmq_seg_header			offset 0
 *	struct shmq_seg_proc[max_procs]		procs_off
 *	lease entries[max_procs][lease_max+1]	entries_off, entry_size each:
 *	    struct shmq_seg_entry + msg_max bytes
 *	struct shmq_seg_slot[capacity]		ring_off, 16 bytes each
 *	message bytes[capacity]			data_off, slot_size each
 *
 * A slot's state word and its message are apart: slot words are packed four
 * to a cache line and a message of up to 64 bytes fills one line, so moving
 * a short message from one CPU to another moves one line of data, not two.
 *
 * Readers must check the file size against seg_size before touching anything
 * past the header, and must treat every field as possibly garbage.
 */
#ifndef SHMQ_LAYOUT_H
#define SHMQ_LAYOUT_H

#include <assert.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SHMQ_SEG_MAGIC		UINT64_C(0x00474553514d4853) /* "SHMQSEG\0" */
#define SHMQ_LAYOUT_MAJOR	3	/* 3: slot words apart from messages */
#define SHMQ_LAYOUT_MINOR	0
#define SHMQ_CACHELINE		64

/* Limits a valid segment respects; anything outside is corrupt. */
#define SHMQ_CAPACITY_MIN	2
#define SHMQ_CAPACITY_MAX	(UINT32_C(1) << 24)	/* power of two */
#define SHMQ_MSG_MAX_LIMIT	(UINT32_C(64) << 20)	/* 64 MiB */
#define SHMQ_PROCS_LIMIT	256	/* attachments at once */
#define SHMQ_LEASE_LIMIT	256	/* leases per attachment */
#define SHMQ_BITMAP_WORDS	(SHMQ_PROCS_LIMIT / 64)
#define SHMQ_RATE_SLOTS		8	/* seconds of rate history */

/* Header flags. */
#define SHMQ_SEG_FENCES		0x1u	/* every process fences each publish;
					 * sleepers interrupt no other CPU */

/*
 * Ring slot state word: | position tag (48) | state (4) | owner (12) |.
 * The tag is the ring position (mod 2^48) the state refers to; owner is the
 * index of the attachment (struct shmq_seg_proc) that holds the slot.
 *
 *	EMPTY(p)	free for the producer of position p
 *	WRITING(p, o)	producer o is copying position p in
 *	FULL(p)		position p holds a message
 *	READING(p, o)	consumer o is taking position p under a lease
 *
 * A released slot becomes EMPTY(p + capacity).  A plain get copies a FULL
 * slot out first and then frees it with one CAS, FULL(p) -> EMPTY(p +
 * capacity), so it never leaves a slot READING.
 */
#define SHMQ_TAG_BITS		48
#define SHMQ_TAG_MASK		((UINT64_C(1) << SHMQ_TAG_BITS) - 1)
#define SHMQ_SLOT_EMPTY		0u
#define SHMQ_SLOT_WRITING	1u
#define SHMQ_SLOT_FULL		2u
#define SHMQ_SLOT_READING	3u
#define SHMQ_SLOT_TAG(w)	((w) >> 16)
#define SHMQ_SLOT_STATE(w)	((unsigned)((w) >> 12) & 0xfu)
#define SHMQ_SLOT_OWNER(w)	((unsigned)(w) & 0xfffu)
#define SHMQ_SLOT_WORD(pos, st, own) \
	((((uint64_t)(pos) & SHMQ_TAG_MASK) << 16) | \
	 ((uint64_t)(st) << 12) | (uint64_t)(own))

/*
 * Attachment state word: | generation (28) | state (4) | pid (32) |.
 *
 *	FREE		unused; may be claimed by shmq_open()
 *	ALIVE(pid)	attached by process pid
 *	DEAD		its process is gone and recovered, but lease entries in its
 *			area still hold messages (redeliveries, or leases another
 *			process took from there); freed when they are all FREE
 */
#define SHMQ_PROC_FREE		0u
#define SHMQ_PROC_ALIVE		1u
#define SHMQ_PROC_DEAD		2u
#define SHMQ_PROC_PID(w)	((uint32_t)(w))
#define SHMQ_PROC_STATE(w)	((unsigned)((w) >> 32) & 0xfu)
#define SHMQ_PROC_GEN(w)	((w) >> 36)
#define SHMQ_PROC_WORD(pid, st, gen) \
	(((uint64_t)(gen) << 36) | ((uint64_t)(st) << 32) | (uint32_t)(pid))

/*
 * Lease entry state word: | generation (32) | deliveries (16) | state (4) |
 * owner (12) |.  Each attachment has lease_max + 1 entries; the last one is
 * kept free for recovery of a get() cut short.
 *
 *	FREE		unused
 *	STAGED(o)	owner o is about to take ring position src_pos into it
 *	HELD(o, d)	leased to o; delivered d times so far
 *	RSTAGED(o)	recovery of o copied src_pos in, not yet published
 *	REDELIVER(d)	waiting for the next consumer (delivered d times)
 */
#define SHMQ_ENTRY_FREE		0u
#define SHMQ_ENTRY_STAGED	1u
#define SHMQ_ENTRY_HELD		2u
#define SHMQ_ENTRY_RSTAGED	3u
#define SHMQ_ENTRY_REDELIVER	4u
#define SHMQ_ENTRY_OWNER(w)	((unsigned)(w) & 0xfffu)
#define SHMQ_ENTRY_STATE(w)	((unsigned)((w) >> 12) & 0xfu)
#define SHMQ_ENTRY_DELIV(w)	((unsigned)((w) >> 16) & 0xffffu)
#define SHMQ_ENTRY_GEN(w)	((uint32_t)((w) >> 32))
#define SHMQ_ENTRY_WORD(gen, d, st, own) \
	(((uint64_t)(gen) << 32) | ((uint64_t)((d) & 0xffffu) << 16) | \
	 ((uint64_t)(st) << 12) | (uint64_t)(own))

/* Offset 0 of every segment. */
struct shmq_seg_header {
	/* Identity: written once by the creator, magic last (release). */
	_Atomic uint64_t magic;		/* SHMQ_SEG_MAGIC once ready */
	uint16_t	version_major;
	uint16_t	version_minor;
	uint32_t	header_size;	/* sizeof(struct shmq_seg_header) */
	uint32_t	flags;		/* SHMQ_SEG_*; others must be 0 */
	uint32_t	capacity;	/* ring slots, a power of two */
	uint32_t	msg_max;	/* largest message, bytes */
	uint32_t	slot_size;	/* message bytes per ring slot */
	uint32_t	entry_size;	/* bytes per lease entry */
	uint32_t	proc_size;	/* sizeof(struct shmq_seg_proc) */
	uint32_t	max_procs;	/* attachment records */
	uint32_t	lease_max;	/* leases one attachment may hold */
	uint32_t	creator_pid;
	uint32_t	pad0;
	uint64_t	creator_start;	/* creator's start time, clock ticks */
	uint64_t	created_ns;	/* CLOCK_REALTIME at creation */
	uint64_t	seg_size;	/* whole segment, bytes */
	uint64_t	procs_off;
	uint64_t	entries_off;
	uint64_t	ring_off;	/* slot words */
	uint64_t	data_off;	/* the slots' message bytes */
	uint8_t		pad1[SHMQ_CACHELINE * 2 - 112];

	/* Producers' line. */
	_Atomic uint64_t prod_pos;	/* next position to claim (a hint) */
	uint8_t		pad2[SHMQ_CACHELINE - 8];

	/* Consumers' line. */
	_Atomic uint64_t cons_pos;	/* next position to consume (a hint) */
	uint8_t		pad3[SHMQ_CACHELINE - 8];

	/* Wake line: one bit per attachment asleep, read after every op. */
	_Atomic uint64_t get_sleepers[SHMQ_BITMAP_WORDS];
	_Atomic uint64_t put_sleepers[SHMQ_BITMAP_WORDS];

	/* Redelivery line: attachments whose area holds REDELIVER entries. */
	_Atomic uint64_t redeliver_map[SHMQ_BITMAP_WORDS];
	uint8_t		pad4[SHMQ_CACHELINE - 8 * SHMQ_BITMAP_WORDS];

	/* Sampled by producers every SHMQ_HWM_SAMPLE puts. */
	_Atomic uint64_t high_water;
	uint8_t		pad5[SHMQ_CACHELINE - 8];

	/* Slow-path statistics. */
	_Atomic uint64_t put_waits;	/* times a producer slept (full) */
	_Atomic uint64_t get_waits;	/* times a consumer slept (empty) */
	_Atomic uint64_t redelivered;	/* messages put up for redelivery */
	_Atomic uint64_t voided;	/* positions of producers that died */
	_Atomic uint64_t recoveries;	/* attachments recovered */
	_Atomic uint64_t corrupt;	/* slots dropped as malformed */
	uint8_t		pad6[SHMQ_CACHELINE - 48];

	/* Serialises recovery; a robust process-shared pthread_mutex_t. */
	uint8_t		recover_lock[SHMQ_CACHELINE];

	/* Rate history: the first process to act in a new second records
	 * the indices, so tools get rates over a recent window. */
	_Atomic uint64_t rate_sec;	/* the second last recorded */
	uint8_t		pad7[SHMQ_CACHELINE - 8];
	struct shmq_seg_rate {
		_Atomic uint64_t version; /* odd while being written */
		_Atomic uint64_t at_ns;	/* CLOCK_MONOTONIC(_COARSE) */
		_Atomic uint64_t prod_pos;
		_Atomic uint64_t cons_pos;
	} rates[SHMQ_RATE_SLOTS];
};

/* One per attachment, at procs_off + index * proc_size. */
struct shmq_seg_proc {
	_Atomic uint64_t state;		/* SHMQ_PROC_WORD */
	_Atomic uint64_t start_ticks;	/* pid's start time; 0 = unknown */
	_Atomic uint64_t last_op_ns;	/* CLOCK_MONOTONIC of last call */
	_Atomic uint64_t n_put;		/* messages put */
	_Atomic uint64_t n_get;		/* messages got or taken */
	_Atomic uint64_t n_ack;		/* leases acked */
	_Atomic uint32_t asleep;	/* SHMQ_ASLEEP_* while in sem_wait */
	uint32_t	pad0[3];
	uint8_t		wake_sem[32];	/* sem_t, process-shared */
	uint8_t		pad1[SHMQ_CACHELINE - 32];
};

/* Head of each lease entry, at entries_off + index * entry_size. */
struct shmq_seg_entry {
	_Atomic uint64_t state;		/* SHMQ_ENTRY_WORD */
	_Atomic uint64_t src_pos;	/* ring position the message came from */
	_Atomic uint32_t len;
	_Atomic uint32_t put_ms;	/* stamp of the original put */
	_Atomic uint64_t taken_ns;	/* CLOCK_MONOTONIC when last delivered */
	/* message bytes follow */
};

/*
 * Each ring slot, at ring_off + (pos & (capacity-1)) * 16; its message
 * bytes are at data_off + (pos & (capacity-1)) * slot_size.
 */
struct shmq_seg_slot {
	_Atomic uint64_t state;		/* SHMQ_SLOT_WORD */
	_Atomic uint32_t len;
	_Atomic uint32_t put_ms;	/* CLOCK_MONOTONIC ms at put (wraps) */
};

#define SHMQ_HWM_SAMPLE		32	/* producers update high_water every N */

static_assert(sizeof(_Atomic uint64_t) == 8, "atomic u64 is 8 bytes");
static_assert(sizeof(struct shmq_seg_header) == 14 * SHMQ_CACHELINE,
    "header size is part of the layout");
static_assert(offsetof(struct shmq_seg_header, rate_sec) == 576, "layout");
static_assert(offsetof(struct shmq_seg_header, rates) == 640, "layout");
static_assert(offsetof(struct shmq_seg_header, prod_pos) == 128, "layout");
static_assert(offsetof(struct shmq_seg_header, cons_pos) == 192, "layout");
static_assert(offsetof(struct shmq_seg_header, get_sleepers) == 256, "layout");
static_assert(offsetof(struct shmq_seg_header, redeliver_map) == 320,
    "layout");
static_assert(offsetof(struct shmq_seg_header, high_water) == 384, "layout");
static_assert(offsetof(struct shmq_seg_header, put_waits) == 448, "layout");
static_assert(offsetof(struct shmq_seg_header, recover_lock) == 512,
    "layout");
static_assert(offsetof(struct shmq_seg_header, ring_off) == 96, "layout");
static_assert(offsetof(struct shmq_seg_header, data_off) == 104, "layout");
static_assert(sizeof(struct shmq_seg_proc) == 2 * SHMQ_CACHELINE, "layout");
static_assert(offsetof(struct shmq_seg_proc, wake_sem) == 64, "layout");
static_assert(sizeof(struct shmq_seg_entry) == 32, "layout");
static_assert(sizeof(struct shmq_seg_slot) == 16, "layout");

#endif /* SHMQ_LAYOUT_H */
