/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stage_request.c - the request stage: accept clients, read their lines,
 * put each on the request queue tagged with its connection, its sequence
 * number and the slab slot reserved for its reply.
 *
 * A client's bytes are read straight into its connection's ring in the
 * control segment, and in_pos (where the next line starts, and its number)
 * moves only after the lines before it are on the queue.  So a new request
 * process resumes every connection where the dead one left it: a line put
 * but not yet committed is put again under the same number, and the reply
 * stage drops the second reply.
 *
 * A read(2) that returned before in_total was stored would leave bytes in
 * the ring that no one counts.  We never peek, so a socket's SO_PEEK_OFF
 * is free to count for us: each read lowers it by what it took, in the
 * same step, and a new process reads the count back (recount()).  A
 * regular input file is read with pread at in_total, so file mode has no
 * window; a pipe (--input -) keeps it.
 *
 * Pipeline crash point (shmpipe-fi): request.claimed, between claiming a
 * connection slot and handing its descriptor to the supervisor.
 *
 * Back-pressure: a connection is not read while it has conn_window requests
 * in flight, and nothing is read while the slab (the pipeline's window) or
 * the request queue is full.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"
#include "fault.h"
#include "log.h"
#include "msg.h"
#include "stage.h"

#define RQ_BATCH	64		/* requests per put */
#define RQ_READ_MAX	65536		/* bytes per read */
#define RQ_PEEK_ARM	(1 << 30)	/* SO_PEEK_OFF armed: ARM - bytes read */
#define RQ_PEEK_MOD	(1u << 28)	/* ... counted modulo this; re-armed
					 * after as many, so never below 0 */
#define RQ_LISTEN	(UINT32_MAX - 16) /* epoll tags above conn slots */
#define RQ_CHAN		(UINT32_MAX - 1)
#define RQ_EMFILE_NS	100000000ull	/* out of descriptors: accept again
					 * after this long */
#define RQ_SWEEP_NS	100000000ull	/* look for aborted connections */
#define RQ_LINGER	64		/* refused sockets being closed */
#define RQ_LINGER_NS	200000000ull	/* ... for their client to go */
#define RQ_SLOTS_WAIT_MS 20		/* for the parent to free slots */
#define RQ_SLOTS_NS	10000000ull	/* after it freed none: ask again */
#define RQ_INPUT_SLICE_MS 100		/* file mode: a silent pipe, looked at
					 * for a drain this often */

/* A refused client's socket, closing. */
struct rq_linger {
	int		 fd;
	uint64_t	 at;		/* closed then at the latest */
};

/* Our side of a connection; the shared side is struct shmpipe_conn. */
struct rq_conn {
	int		 rc_fd;		/* -1: none */
	uint32_t	 rc_gen;
	uint32_t	 rc_head;	/* parsed up to (staged, not committed) */
	uint32_t	 rc_seq;
	bool		 rc_disc;	/* skipping the rest of a long line */
	bool		 rc_eof;	/* no more input: finish when put */
	bool		 rc_regular;	/* a regular file: pread */
	bool		 rc_blocks;	/* file mode's pipe, FIFO or terminal */
	bool		 rc_watched;	/* in the epoll set */
	bool		 rc_waiting;	/* in rq_wait */
	bool		 rc_ending;	/* in rq_eof */
	uint32_t	 rc_staged;	/* messages in the batch */
	uint64_t	 rc_armed;	/* in_total when SO_PEEK_OFF was set */
};

/* A connection the supervisor has not taken yet: the channel was full. */
struct rq_out {
	uint32_t	 ro_slot;
	uint32_t	 ro_gen;
	int		 ro_fd;		/* our own duplicate, closed once sent */
};

struct rq_commit {
	uint32_t	 cm_slot;
	uint64_t	 cm_in_pos;	/* the connection's in_pos after it */
};

struct rq {
	struct stage	*rq_st;
	const struct ctl *rq_ctl;
	struct shmpipe_ctl *rq_c;
	uint32_t	 rq_nconns;
	uint32_t	 rq_mask;	/* in_size - 1 */
	struct rq_conn	*rq_conns;
	int		 rq_ep;
	uint32_t	 rq_conn_cursor;
	uint32_t	 rq_slab_cursor;
	uint64_t	 rq_accepted;
	uint64_t	 rq_reserved;
	uint32_t	*rq_wait;	/* connections that could not go on */
	uint32_t	 rq_nwait;
	uint32_t	*rq_eof;	/* connections at end of input */
	uint32_t	 rq_neof;
	bool		 rq_slab_full;
	bool		 rq_synced;	/* the supervisor has handed us every
					 * connection it holds */
	uint64_t	 rq_accept_at;	/* listeners paused until; 0 = not */
	uint64_t	 rq_slots_at;	/* no CHAN_SLOTS before; 0 = any time */
	struct rq_out	*rq_out;	/* handed over once there is room */
	uint32_t	 rq_nout;
	bool		 rq_out_armed;	/* EPOLLOUT on the channel */
	struct rq_linger rq_linger[RQ_LINGER];	/* refused, closing */
	unsigned	 rq_nlinger;
	uint64_t	 rq_sweep_at;	/* next look for aborted connections */
	/* The batch being built. */
	unsigned	 rq_n;
	unsigned char	*rq_buf;
	size_t		 rq_msg_size;
	struct iovec	 rq_iov[RQ_BATCH];
	struct rq_commit rq_commit[RQ_BATCH];
	unsigned char	*rq_line;	/* a line that wraps the ring */
};

static struct shmpipe_conn *
conn(const struct rq *rq, uint32_t slot)
{
	return ctl_conn(rq->rq_ctl, slot);
}

static uint32_t
conn_flags(const struct rq *rq, uint32_t slot)
{
	/* Acquire: pairs with the release of ABORT by the reply stage. */
	return SHMPIPE_CONN_FLAGS(atomic_load_explicit(&conn(rq, slot)->state,
	    memory_order_acquire));
}

/* ---- the slab: one slot per request in flight ---------------------- */

/* Reserve a slot for (conn, seq); SHMPIPE_NONE-ish UINT32_MAX if full. */
static uint32_t
slab_reserve(struct rq *rq, uint64_t id, uint32_t seq)
{
	uint32_t n = rq->rq_ctl->c_g.slab_slots;

	for (uint32_t i = 0; i < n; i++) {
		uint32_t k = (rq->rq_slab_cursor + i) % n;
		struct shmpipe_slab *s = ctl_slab(rq->rq_ctl, k);
		/* Acquire: pairs with the release of FREE by the reply
		 * stage (slab_free) or the supervisor (slab_gc). */
		uint64_t w = atomic_load_explicit(&s->stage,
		    memory_order_acquire);

		if (SHMPIPE_SLAB_STAGE(w) != SHMPIPE_SLAB_FREE)
			continue;
		/* Relaxed: published by the release of RESERVED. */
		atomic_store_explicit(&s->conn, id, memory_order_relaxed);
		atomic_store_explicit(&s->seq, seq, memory_order_relaxed);
		/* A store, not a CAS: no one else moves a FREE slot.  The
		 * next generation, so that a CAS on the word as it was
		 * before the slot was freed fails (see slab_gc).  Release:
		 * pairs with the acquire of RESERVED in place() and
		 * slab_gc(). */
		atomic_store_explicit(&s->stage, SHMPIPE_SLAB_WORD(
		    SHMPIPE_SLAB_GEN(w) + 1, SHMPIPE_SLAB_RESERVED),
		    memory_order_release);
		rq->rq_slab_cursor = k + 1;
		rq->rq_reserved++;
		atomic_store_explicit(&rq->rq_c->reserved, rq->rq_reserved,
		    memory_order_relaxed);
		return k;
	}
	rq->rq_slab_full = true;
	return UINT32_MAX;
}

/* ---- building and putting a batch ----------------------------------- */

/* Copy ring bytes [head, head + len) out, in one or two pieces. */
static void
ring_copy(const struct rq *rq, uint32_t slot, uint32_t head, size_t len,
    unsigned char *dst)
{
	const unsigned char *ring = ctl_conn_ring(conn(rq, slot));
	size_t at = head & rq->rq_mask, first = rq->rq_mask + 1 - at;

	if (first >= len) {
		memcpy(dst, ring + at, len);
	} else {
		memcpy(dst, ring + at, first);
		memcpy(dst + first, ring, len - first);
	}
}

static int	flush(struct rq *rq, int timeout_ms);

/*
 * Stage the request whose line is ring [head, head + len) (or a too-long
 * marker), the connection's state after it being next_head/disc.  False if
 * the batch or the slab is full.
 */
static bool
stage_line(struct rq *rq, uint32_t slot, uint32_t head, size_t len,
    uint32_t next_head, bool too_long, bool disc)
{
	struct rq_conn *rc = &rq->rq_conns[slot];
	uint64_t id = SHMPIPE_CONN_ID(rc->rc_gen, slot);
	struct msg_hdr *h;
	uint32_t k;

	if (rq->rq_n == RQ_BATCH)
		flush(rq, 0);		/* a full batch goes now, not later */
	if (rq->rq_n == RQ_BATCH ||
	    (k = slab_reserve(rq, id, rc->rc_seq)) == UINT32_MAX)
		return false;		/* the queue or the slab is full */
	h = (struct msg_hdr *)(rq->rq_buf + rq->rq_n * rq->rq_msg_size);
	*h = (struct msg_hdr){ .mh_conn = id, .mh_seq = rc->rc_seq,
	    .mh_slot = k, .mh_flags = too_long ? MSG_TOO_LONG : 0 };
	if (too_long)
		len = 0;
	ring_copy(rq, slot, head, len, (unsigned char *)(h + 1));
	rq->rq_iov[rq->rq_n] = (struct iovec){ h, sizeof(*h) + len };
	rc->rc_seq = (rc->rc_seq + 1) & SHMPIPE_SEQ_MASK;
	rc->rc_head = next_head;
	rc->rc_disc = disc;
	rq->rq_commit[rq->rq_n++] = (struct rq_commit){ slot,
	    SHMPIPE_IN_POS(next_head, rc->rc_seq, disc) };
	rc->rc_staged++;
	return true;
}

/* The first '\n' in ring [head, tail), or -1. */
static long
find_nl(const struct rq *rq, uint32_t slot, uint32_t head, uint32_t tail)
{
	const unsigned char *ring = ctl_conn_ring(conn(rq, slot));
	size_t at = head & rq->rq_mask, len = tail - head;
	size_t first = rq->rq_mask + 1 - at;
	const unsigned char *p;

	if (first > len)
		first = len;
	if ((p = memchr(ring + at, '\n', first)) != NULL)
		return (long)(p - (ring + at));
	if (len > first && (p = memchr(ring, '\n', len - first)) != NULL)
		return (long)(first + (size_t)(p - ring));
	return -1;
}

/*
 * Whether ring [head, head + len), a line or the start of one, is longer
 * than max_line.  A '\r' that may end it does not count: the protocol
 * strips it, and the messages have room for it.
 */
static bool
too_long(const struct rq *rq, uint32_t slot, uint32_t head, size_t len)
{
	uint32_t max = rq->rq_ctl->c_g.max_line;
	const unsigned char *ring = ctl_conn_ring(conn(rq, slot));

	return len > (size_t)max + 1 || (len == (size_t)max + 1 &&
	    ring[(head + max) & rq->rq_mask] != '\r');
}

static bool
over_window(const struct rq *rq, uint32_t slot)
{
	const struct rq_conn *rc = &rq->rq_conns[slot];
	/* Acquire: pairs with the reply stage's release of reply_seq. */
	uint32_t done = atomic_load_explicit(&conn(rq, slot)->reply_seq,
	    memory_order_acquire);
	uint32_t flight = (rc->rc_seq - done) & SHMPIPE_SEQ_MASK;

	/* Behind the replies (lines a dead predecessor put but did not
	 * commit, now put again): nothing of ours is in flight. */
	return flight >= rq->rq_ctl->c_g.conn_window &&
	    flight < SHMPIPE_SEQ_MASK / 2;
}

/*
 * With nothing of this connection in the batch, a head that moved without
 * a message (the end of a skipped line) is committed at once, so that its
 * ring space is free again.
 */
static void
commit_skip(struct rq *rq, uint32_t slot)
{
	struct rq_conn *rc = &rq->rq_conns[slot];
	uint64_t pos = SHMPIPE_IN_POS(rc->rc_head, rc->rc_seq, rc->rc_disc);

	if (rc->rc_staged == 0)
		/* Release: as in commit(). */
		atomic_store_explicit(&conn(rq, slot)->in_pos, pos,
		    memory_order_release);
}

/*
 * Stage the complete lines of a connection, as far as the batch, the slab
 * and its window allow.  A line longer than max_line is answered ERR and
 * the rest of it skipped; at end of input a last line without '\n' counts.
 * False if a line was left for want of room in the batch or the slab
 * (not the start of one still being sent, nor the window: the caller
 * checks that).
 */
static bool
parse(struct rq *rq, uint32_t slot)
{
	struct rq_conn *rc = &rq->rq_conns[slot];
	/* Acquire: our own earlier store, or a dead predecessor's. */
	uint32_t tail = (uint32_t)atomic_load_explicit(&conn(rq,
	    slot)->in_total, memory_order_acquire);
	bool ok = true;

	while (ok && rc->rc_head != tail && !over_window(rq, slot)) {
		uint32_t head = rc->rc_head, avail = tail - head;
		long nl = find_nl(rq, slot, head, tail);

		if (rc->rc_disc) {		/* the rest of a long line */
			rc->rc_head = nl < 0 ? tail : head + (uint32_t)nl + 1;
			rc->rc_disc = nl < 0;
		} else if (nl >= 0) {
			ok = stage_line(rq, slot, head, (size_t)nl,
			    head + (uint32_t)nl + 1, too_long(rq, slot, head,
			    (size_t)nl), false);
		} else if (too_long(rq, slot, head, avail)) {
			ok = stage_line(rq, slot, head, 0, tail, true,
			    !rc->rc_eof);
		} else if (rc->rc_eof) {
			ok = stage_line(rq, slot, head, avail, tail, false,
			    false);
		} else {
			break;			/* the line is not complete */
		}
	}
	commit_skip(rq, slot);
	return ok;
}

/* Commit the connections of messages [0, n) now on the queue. */
static void
commit(struct rq *rq, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct rq_commit *cm = &rq->rq_commit[i];
		/* Release: a successor reading in_pos sees the ring bytes it
		 * covers as consumed; the messages are on the queue. */
		atomic_store_explicit(&conn(rq, cm->cm_slot)->in_pos,
		    cm->cm_in_pos, memory_order_release);
		rq->rq_conns[cm->cm_slot].rc_staged--;
	}
	rq->rq_accepted += n;
	atomic_store_explicit(&rq->rq_c->accepted, rq->rq_accepted,
	    memory_order_relaxed);
	memmove(rq->rq_iov, rq->rq_iov + n, (rq->rq_n - n) *
	    sizeof(rq->rq_iov[0]));
	memmove(rq->rq_commit, rq->rq_commit + n, (rq->rq_n - n) *
	    sizeof(rq->rq_commit[0]));
	rq->rq_n -= n;
}

/*
 * Put the batch, waiting at most timeout_ms while the queue is full.
 * Messages point into rq_buf by index, so after a partial put the rest
 * are moved down with their buffers.
 */
static int
flush(struct rq *rq, int timeout_ms)
{
	while (rq->rq_n > 0) {
		int r = shmq_put_batch(rq->rq_st->st_req, rq->rq_iov, rq->rq_n,
		    timeout_ms);
		if (r == -EAGAIN || r == -ETIMEDOUT || r == -EINTR)
			return 0;
		if (r < 0) {
			log_event("cannot put requests: %s", strerror(-r));
			return -1;
		}
		for (unsigned i = (unsigned)r; i < rq->rq_n; i++) {
			unsigned char *to = rq->rq_buf + (i - (unsigned)r) *
			    rq->rq_msg_size;
			memmove(to, rq->rq_iov[i].iov_base,
			    rq->rq_iov[i].iov_len);
			rq->rq_iov[i].iov_base = to;
		}
		commit(rq, (unsigned)r);
	}
	return 0;
}

/* ---- connections ----------------------------------------------------- */

static void
watch(struct rq *rq, uint32_t slot, bool on)
{
	struct rq_conn *rc = &rq->rq_conns[slot];
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP,
	    .data.u32 = slot };

	if (rc->rc_watched == on || rc->rc_fd < 0 || rc->rc_regular)
		return;
	if (epoll_ctl(rq->rq_ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL,
	    rc->rc_fd, &ev) == 0 || !on)
		rc->rc_watched = on;
}

/* Set the socket's SO_PEEK_OFF to count the bytes read from total on. */
static void
peek_arm(struct rq_conn *rc, uint64_t total)
{
	int off = RQ_PEEK_ARM - (int)(total % RQ_PEEK_MOD);

	(void)setsockopt(rc->rc_fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off));
	rc->rc_armed = total;		/* not a socket: try again much later */
}

/*
 * Bytes a dead predecessor read into the ring after it last stored
 * in_total are counted in the socket: take them as read.  Then (re)arm.
 */
static void
recount(struct rq *rq, uint32_t slot)
{
	struct rq_conn *rc = &rq->rq_conns[slot];
	struct shmpipe_conn *cn = conn(rq, slot);
	uint64_t total = atomic_load_explicit(&cn->in_total,
	    memory_order_acquire);
	socklen_t len = sizeof(int);
	uint32_t lost;
	int off;

	if (getsockopt(rc->rc_fd, SOL_SOCKET, SO_PEEK_OFF, &off, &len) == 0 &&
	    off >= 0 && off <= RQ_PEEK_ARM) {
		lost = ((uint32_t)(RQ_PEEK_ARM - off) - (uint32_t)(total %
		    RQ_PEEK_MOD)) % RQ_PEEK_MOD;
		if (lost > 0 && lost <= RQ_READ_MAX) {
			log_event("connection %u: %u bytes read by a dead "
			    "request process taken up", slot, lost);
			total += lost;
			/* Release: as in fill(). */
			atomic_store_explicit(&cn->in_total, total,
			    memory_order_release);
		}
	}
	peek_arm(rc, total);
}

/* Take up a connection (new, or handed back after a restart). */
static void
adopt(struct rq *rq, uint32_t slot, uint32_t gen, int fd)
{
	struct rq_conn *rc = &rq->rq_conns[slot];
	uint64_t pos = atomic_load_explicit(&conn(rq, slot)->in_pos,
	    memory_order_acquire);
	bool waiting = rc->rc_waiting;	/* it may still be in rq_wait */
	struct stat st;

	if (rc->rc_fd >= 0 && !(conn_flags(rq, slot) & SHMPIPE_CONN_FILE)) {
		watch(rq, slot, false);
		close(rc->rc_fd);
	}
	memset(rc, 0, sizeof(*rc));
	rc->rc_fd = fd;
	rc->rc_gen = gen;
	rc->rc_head = SHMPIPE_IN_HEAD(pos);
	rc->rc_seq = SHMPIPE_IN_SEQ(pos);
	rc->rc_disc = SHMPIPE_IN_DISC(pos);
	rc->rc_regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	rc->rc_waiting = waiting;
	if (S_ISSOCK(st.st_mode))
		recount(rq, slot);
	watch(rq, slot, true);
	/*
	 * Lines a dead predecessor read are in the ring, and the client may
	 * send nothing more to wake us for them: serve it next round.
	 */
	if (!rc->rc_waiting && rc->rc_head != (uint32_t)atomic_load_explicit(
	    &conn(rq, slot)->in_total, memory_order_acquire)) {
		rc->rc_waiting = true;
		rq->rq_wait[rq->rq_nwait++] = slot;
	}
}

/*
 * The connection has no more input and everything is on the queue: say how
 * many requests it made, let go of it, and tell the reply stage.  That
 * message only hastens the end: on a full queue it is not waited for (the
 * other clients would wait with it), and the reply stage's sweep finds the
 * connection done instead.
 */
static void
finish(struct rq *rq, uint32_t slot)
{
	struct rq_conn *rc = &rq->rq_conns[slot];
	struct shmpipe_conn *cn = conn(rq, slot);
	struct msg_hdr h = { .mh_conn = SHMPIPE_CONN_ID(rc->rc_gen, slot),
	    .mh_seq = rc->rc_seq, .mh_slot = UINT32_MAX,
	    .mh_flags = MSG_CONN_DONE };

	/* What parse() skipped after the last message put (the rest of a
	 * long line) is taken too: file mode leaves its input there. */
	commit_skip(rq, slot);
	watch(rq, slot, false);
	if (rc->rc_fd >= 0 && !(conn_flags(rq, slot) & SHMPIPE_CONN_FILE))
		close(rc->rc_fd);
	rc->rc_fd = -1;
	atomic_store_explicit(&cn->final_seq, rc->rc_seq, memory_order_relaxed);
	/* Release: the reply stage that sees RD_DONE sees final_seq. */
	atomic_fetch_or_explicit(&cn->state, SHMPIPE_CONN_RD_DONE,
	    memory_order_release);
	(void)shmq_put(rq->rq_st->st_rep, &h, sizeof(h), 0);
}

/*
 * Has file mode's blocking input something to read (or an end)?  Waited
 * for in slices, so that a drain is seen while its writer is silent: the
 * doorbell cuts a slice short in a stage process (poll(2) is never
 * restarted); a stage thread takes no signals and sees it within a slice.
 */
static bool
input_ready(int fd)
{
	struct pollfd pf = { .fd = fd, .events = POLLIN };

	return poll(&pf, 1, RQ_INPUT_SLICE_MS) > 0;
}

/* Read what the client sent into the ring.  False at end of input. */
static bool
fill(struct rq *rq, uint32_t slot)
{
	struct rq_conn *rc = &rq->rq_conns[slot];
	struct shmpipe_conn *cn = conn(rq, slot);
	uint64_t total = atomic_load_explicit(&cn->in_total,
	    memory_order_relaxed);
	uint32_t head = SHMPIPE_IN_HEAD(atomic_load_explicit(&cn->in_pos,
	    memory_order_relaxed)), tail = (uint32_t)total;
	size_t at = tail & rq->rq_mask, space = rq->rq_mask + 1 - (tail - head);
	ssize_t n;

	if (space > rq->rq_mask + 1 - at)
		space = rq->rq_mask + 1 - at;
	if (space > RQ_READ_MAX)
		space = RQ_READ_MAX;
	if (space == 0)
		return true;			/* full until the batch goes */
	if (rc->rc_blocks && !input_ready(rc->rc_fd))
		return true;			/* the loop looks at stop */
	n = rc->rc_regular ? pread(rc->rc_fd, ctl_conn_ring(cn) + at, space,
	    (off_t)total) : read(rc->rc_fd, ctl_conn_ring(cn) + at, space);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;			/* the loop looks at stop */
	if (n <= 0)
		return false;			/* end of input, or reset */
	/* Release: pairs with parse()'s acquire, here or in a successor. */
	atomic_store_explicit(&cn->in_total, total + (uint64_t)n,
	    memory_order_release);
	atomic_store_explicit(&cn->last_in_ns, stage_coarse_ns(),
	    memory_order_relaxed);
	if (total + (uint64_t)n - rc->rc_armed >= RQ_PEEK_MOD)
		peek_arm(rc, total + (uint64_t)n);
	return true;
}

static uint32_t
tail_of(const struct rq *rq, uint32_t slot)
{
	return (uint32_t)atomic_load_explicit(&conn(rq, slot)->in_total,
	    memory_order_relaxed);
}

/*
 * A connection is readable, or may go on: read (unless over its window)
 * and stage its lines.  One that could not stage all it has - window, slab
 * or batch full - waits in rq_wait, unwatched, and is served again each
 * round; one at end of input waits in rq_eof to be finished.
 */
static void
serve(struct rq *rq, uint32_t slot)
{
	struct rq_conn *rc = &rq->rq_conns[slot];
	bool room = true;

	if (rc->rc_fd < 0)
		return;
	if (conn_flags(rq, slot) & SHMPIPE_CONN_ABORT)
		rc->rc_eof = true;		/* given up: nothing more to put */
	else if (!rc->rc_eof && !over_window(rq, slot) && !fill(rq, slot))
		rc->rc_eof = true;
	if (!(conn_flags(rq, slot) & SHMPIPE_CONN_ABORT))
		room = parse(rq, slot);
	if (rc->rc_eof && !rc->rc_ending) {
		rc->rc_ending = true;
		rq->rq_eof[rq->rq_neof++] = slot;
	}
	/* The start of a line still being sent waits for more input, watched
	 * like any other; only lines there was no room for wait here. */
	if (!rc->rc_waiting && (over_window(rq, slot) || !room)) {
		watch(rq, slot, false);
		rc->rc_waiting = true;
		rq->rq_wait[rq->rq_nwait++] = slot;
	}
}

/* Serve the waiting connections again; those still stuck stay. */
static void
unblock(struct rq *rq)
{
	uint32_t n = rq->rq_nwait;

	rq->rq_nwait = 0;		/* serve() re-queues below index i */
	for (uint32_t i = 0; i < n; i++) {
		uint32_t slot = rq->rq_wait[i];
		struct rq_conn *rc = &rq->rq_conns[slot];

		rc->rc_waiting = false;
		if (rc->rc_fd < 0)
			continue;
		if (!rc->rc_eof)
			watch(rq, slot, true);
		serve(rq, slot);
	}
}

/* Finish connections at end of input once all their lines are put. */
static void
reap(struct rq *rq)
{
	uint32_t kept = 0;

	for (uint32_t i = 0; i < rq->rq_neof; i++) {
		uint32_t slot = rq->rq_eof[i];
		struct rq_conn *rc = &rq->rq_conns[slot];

		if (rc->rc_fd >= 0 && (rc->rc_staged > 0 ||
		    (rc->rc_head != tail_of(rq, slot) && !(conn_flags(rq,
		    slot) & SHMPIPE_CONN_ABORT)))) {
			rq->rq_eof[kept++] = slot;
			continue;
		}
		rc->rc_ending = false;
		if (rc->rc_fd >= 0)
			finish(rq, slot);
	}
	rq->rq_neof = kept;
}

/* ---- accepting ------------------------------------------------------- */

static bool	ask_slots(struct rq *);

/* A free connection slot, claimed; UINT32_MAX if every one is in use. */
static uint32_t
conn_claim(struct rq *rq, bool is_unix)
{
	for (uint32_t i = 0; i < rq->rq_nconns; i++) {
		uint32_t k = (rq->rq_conn_cursor + i) % rq->rq_nconns;
		struct shmpipe_conn *cn = conn(rq, k);
		uint64_t w = atomic_load_explicit(&cn->state,
		    memory_order_acquire);

		if (SHMPIPE_CONN_FLAGS(w) != 0)
			continue;
		atomic_store_explicit(&cn->in_pos, 0, memory_order_relaxed);
		atomic_store_explicit(&cn->in_total, 0, memory_order_relaxed);
		atomic_store_explicit(&cn->out_total, 0, memory_order_relaxed);
		atomic_store_explicit(&cn->final_seq, 0, memory_order_relaxed);
		atomic_store_explicit(&cn->reply_seq, 0, memory_order_relaxed);
		atomic_store_explicit(&cn->out_mark, SHMPIPE_OUT_MARK(0, 0, 0),
		    memory_order_relaxed);
		atomic_store_explicit(&cn->opened_ns, stage_coarse_ns(),
		    memory_order_relaxed);
		atomic_store_explicit(&cn->last_in_ns, stage_coarse_ns(),
		    memory_order_relaxed);
		/* Release: the fields above are set before the slot is. */
		if (!atomic_compare_exchange_strong_explicit(&cn->state, &w,
		    SHMPIPE_CONN_ID(SHMPIPE_CONN_GEN(w) + 1,
		    SHMPIPE_CONN_OPEN | (is_unix ? SHMPIPE_CONN_UNIX : 0)),
		    memory_order_release, memory_order_relaxed))
			continue;
		rq->rq_conn_cursor = k + 1;
		return k;
	}
	return UINT32_MAX;
}

/* Read and drop what a refused client sent; true at its end (or error). */
static bool
discard_input(int fd)
{
	char sink[4096];

	for (int k = 0; k < 16; k++) {
		ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 || errno != EAGAIN;
	}
	return false;
}

/* Close the refused sockets whose client has gone, or all at their time. */
static void
unlinger(struct rq *rq, bool all)
{
	uint64_t now = stage_coarse_ns();
	unsigned kept = 0;

	for (unsigned i = 0; i < rq->rq_nlinger; i++) {
		if (all || discard_input(rq->rq_linger[i].fd) ||
		    now >= rq->rq_linger[i].at)
			close(rq->rq_linger[i].fd);
		else
			rq->rq_linger[kept++] = rq->rq_linger[i];
	}
	rq->rq_nlinger = kept;
}

/*
 * Tell a client there is no room, and close - but not on what it sent:
 * closing a TCP socket with input unread sends a reset, and a client that
 * sent its request at once (they all do) and then read to the end lost
 * the line saying why.  The socket is shut for writing, its input read
 * and dropped, and it is closed when the client has gone or after
 * RQ_LINGER_NS (what comes after that is the client's lookout).
 */
static void
refuse(struct rq *rq, int fd)
{
	char msg[96];
	int n = snprintf(msg, sizeof(msg), "ERR too many connections "
	    "(max %u); try again later\n", rq->rq_nconns);

	(void)!write(fd, msg, (size_t)n);
	shutdown(fd, SHUT_WR);
	/* Past RQ_LINGER at once, in a flood of refusals. */
	if (discard_input(fd) || rq->rq_nlinger == RQ_LINGER)
		close(fd);
	else
		rq->rq_linger[rq->rq_nlinger++] = (struct rq_linger){ fd,
		    stage_coarse_ns() + RQ_LINGER_NS };
	atomic_fetch_add_explicit(&rq->rq_c->conns_refused, 1,
	    memory_order_relaxed);
}

/* Watch the listening sockets for clients, or stop watching them. */
static void
listeners(struct rq *rq, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN };

	for (int i = 0; i < rq->rq_st->st_nlisten; i++) {
		ev.data.u32 = RQ_LISTEN + (uint32_t)i;
		epoll_ctl(rq->rq_ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL,
		    rq->rq_st->st_listen[i], &ev);
	}
}

/*
 * Out of descriptors: the client stays in the listen backlog (the socket
 * stays readable, so watching it now would spin).  Say so once in a
 * while and look again in RQ_EMFILE_NS, by when a client may have left.
 */
static void
accept_pause(struct rq *rq, int error)
{
	static uint64_t quiet_until;
	uint64_t now = stage_coarse_ns();

	if (now > quiet_until) {
		log_event("cannot accept: %s; clients wait in the backlog",
		    strerror(error));
		quiet_until = now + 10000000000ull;
	}
	if (rq->rq_accept_at == 0)
		listeners(rq, false);
	rq->rq_accept_at = now + RQ_EMFILE_NS;
}

/* Send the supervisor connection slot's descriptor; wait for room or not. */
static int
send_conn(const struct rq *rq, uint32_t slot, uint32_t gen, int fd,
    bool wait)
{
	const struct chan_msg m = { CHAN_CONN, slot, gen, 0 };

	return wait ? chan_send(rq->rq_st->st_chan, &m, fd) :
	    chan_try_send(rq->rq_st->st_chan, &m, fd);
}

/* Watch the channel for room while connections wait to be handed over. */
static void
out_arm(struct rq *rq, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0),
	    .data.u32 = RQ_CHAN };

	if (rq->rq_out_armed != on &&
	    epoll_ctl(rq->rq_ep, EPOLL_CTL_MOD, rq->rq_st->st_chan, &ev) == 0)
		rq->rq_out_armed = on;
}

/*
 * Hand the waiting connections over, oldest first, as far as the channel
 * takes them.  One the supervisor cannot take at all (it is gone) is
 * dropped from the list like one sent: a successor is handed every
 * connection, and the supervisor gives up the slot of one that never
 * reached it.
 */
static void
out_flush(struct rq *rq)
{
	uint32_t k;

	for (k = 0; k < rq->rq_nout; k++) {
		struct rq_out *o = &rq->rq_out[k];

		if (send_conn(rq, o->ro_slot, o->ro_gen, o->ro_fd, false) ==
		    -EAGAIN)
			break;
		close(o->ro_fd);
	}
	memmove(rq->rq_out, rq->rq_out + k, (rq->rq_nout - k) *
	    sizeof(*rq->rq_out));
	rq->rq_nout -= k;
	out_arm(rq, rq->rq_nout > 0);
}

/*
 * Give the supervisor its copy of a new connection, which the reply stage
 * gets through it.  Never waited for: while the supervisor is stopped or
 * slow, its channel fills (a few hundred connections), and waiting there
 * would stall every client this process reads from.  What does not fit
 * waits in rq_out, a duplicate of the descriptor with it (ours may be
 * closed first), until the channel has room.
 */
static void
hand_over(struct rq *rq, uint32_t slot, uint32_t gen, int fd)
{
	struct rq_out *o;

	if (rq->rq_nout == 0 && send_conn(rq, slot, gen, fd, false) != -EAGAIN)
		return;
	o = &rq->rq_out[rq->rq_nout];
	if (rq->rq_nout >= rq->rq_nconns ||
	    (o->ro_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		/* No room to keep it: wait for the channel, as before. */
		(void)send_conn(rq, slot, gen, fd, true);
		return;
	}
	o->ro_slot = slot;
	o->ro_gen = gen;
	rq->rq_nout++;
	out_flush(rq);
}

/* Accept what is waiting on listener i and hand each to the supervisor. */
static void
accept_on(struct rq *rq, int i)
{
	int lfd = rq->rq_st->st_listen[i], one = 1;

	for (int k = 0; k < 64; k++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		uint32_t slot;

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				accept_pause(rq, errno);
			return;
		}
		slot = conn_claim(rq, rq->rq_st->st_listen_unix[i]);
		if (slot == UINT32_MAX && ask_slots(rq) && (slot = conn_claim(rq,
		    rq->rq_st->st_listen_unix[i])) != UINT32_MAX)
			rq->rq_slots_at = 0;	/* it freed some: ask again */
		if (slot == UINT32_MAX) {
			refuse(rq, fd);
			continue;
		}
		/* Dying here leaves a slot claimed whose descriptor no one
		 * else holds: the supervisor gives it up (children.c). */
		SHMQ_FAULT("request.claimed");
		if (!rq->rq_st->st_listen_unix[i])
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
			    sizeof(one));
		rq->rq_conns[slot].rc_gen = SHMPIPE_CONN_GEN(atomic_load(
		    &conn(rq, slot)->state));
		if (rq->rq_st->st_chan >= 0)
			hand_over(rq, slot, rq->rq_conns[slot].rc_gen, fd);
		atomic_fetch_add_explicit(&rq->rq_c->conns_accepted, 1,
		    memory_order_relaxed);
		adopt(rq, slot, rq->rq_conns[slot].rc_gen, fd);
	}
}

/*
 * Connections given up on elsewhere (ABORT) while their client is quiet:
 * the supervisor or the reply stage could not hold the descriptor, and
 * only we can close it.  A look every RQ_SWEEP_NS.
 */
static void
sweep_aborted(struct rq *rq)
{
	uint64_t now = stage_coarse_ns();

	if (now < rq->rq_sweep_at)
		return;
	rq->rq_sweep_at = now + RQ_SWEEP_NS;
	for (uint32_t i = 0; i < rq->rq_nconns; i++)
		if (rq->rq_conns[i].rc_fd >= 0 && !rq->rq_conns[i].rc_eof &&
		    (conn_flags(rq, i) & SHMPIPE_CONN_ABORT))
			serve(rq, i);
	if (rq->rq_accept_at != 0 && now >= rq->rq_accept_at) {
		rq->rq_accept_at = 0;
		listeners(rq, true);
	}
}

/* One message from the supervisor: a connection to take up, or its word
 * that it sent them all. */
static void
chan_take(struct rq *rq, const struct chan_msg *m, int fd)
{
	if (m->cm_type == CHAN_CONN && fd >= 0 && m->cm_slot <
	    rq->rq_nconns && !(conn_flags(rq, m->cm_slot) &
	    SHMPIPE_CONN_RD_DONE))
		adopt(rq, m->cm_slot, m->cm_gen, fd);
	else if (fd >= 0)
		close(fd);
	if (m->cm_type == CHAN_SYNCED)
		rq->rq_synced = true;
}

/*
 * Connections the supervisor hands us after a restart.  Until it has said
 * it sent them all, wait up to timeout_ms for each.
 */
static bool
read_chan(struct rq *rq, int timeout_ms)
{
	struct chan_msg m;
	int fd, r;

	while ((r = chan_recv(rq->rq_st->st_chan, &m, &fd, rq->rq_synced ? 0 :
	    timeout_ms)) == 1)
		chan_take(rq, &m, fd);	/* a late CHAN_SLOTS: nothing */
	return r != 0;
}

/*
 * Every connection slot is taken.  Only the parent frees them, on its
 * 20 ms tick, so clients that come and go quickly were refused far below
 * --max-connections: ask it to free the finished ones now, and wait (a
 * little) for its word.  If that freed none, refuse for a while without
 * asking: a pipeline that is truly full must not pay a round trip for
 * every client it turns away.  True if a slot may be free.
 */
static bool
ask_slots(struct rq *rq)
{
	struct chan_msg m;
	uint64_t now = stage_coarse_ns();
	int fd;

	if (rq->rq_st->st_chan < 0 || now < rq->rq_slots_at ||
	    chan_try_send(rq->rq_st->st_chan, &(struct chan_msg){ CHAN_SLOTS,
	    0, 0, 0 }, -1) != 0)
		return false;
	rq->rq_slots_at = now + RQ_SLOTS_NS;
	while (chan_recv(rq->rq_st->st_chan, &m, &fd, RQ_SLOTS_WAIT_MS) == 1) {
		if (m.cm_type == CHAN_SLOTS)
			return true;
		chan_take(rq, &m, fd);
	}
	return false;
}

/* ---- the loop -------------------------------------------------------- */

static int
rq_setup(struct rq *rq, struct stage *st)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = RQ_CHAN };
	const struct shmpipe_ctl *c = st->st_ctl->c_hdr;
	const struct ctl_geom *g = &st->st_ctl->c_g;

	memset(rq, 0, sizeof(*rq));
	rq->rq_st = st;
	rq->rq_ctl = st->st_ctl;
	rq->rq_c = st->st_ctl->c_hdr;
	rq->rq_nconns = g->max_conns;
	rq->rq_mask = g->in_size - 1;
	rq->rq_msg_size = MSG_STRIDE(sizeof(struct msg_hdr) + g->max_line +
	    1);
	rq->rq_accepted = atomic_load(&c->accepted);
	rq->rq_reserved = atomic_load(&c->reserved);
	rq->rq_conns = calloc(g->max_conns, sizeof(*rq->rq_conns));
	rq->rq_wait = calloc(g->max_conns, sizeof(*rq->rq_wait));
	rq->rq_eof = calloc(g->max_conns, sizeof(*rq->rq_eof));
	rq->rq_out = calloc(g->max_conns, sizeof(*rq->rq_out));
	rq->rq_buf = malloc(RQ_BATCH * rq->rq_msg_size);
	rq->rq_ep = epoll_create1(EPOLL_CLOEXEC);
	if (rq->rq_conns == NULL || rq->rq_wait == NULL || rq->rq_eof == NULL ||
	    rq->rq_out == NULL || rq->rq_buf == NULL || rq->rq_ep < 0)
		return -1;
	for (uint32_t i = 0; i < g->max_conns; i++)
		rq->rq_conns[i].rc_fd = -1;
	if (!stage_draining(st))
		listeners(rq, true);
	if (st->st_chan >= 0)
		epoll_ctl(rq->rq_ep, EPOLL_CTL_ADD, st->st_chan, &ev);
	return 0;
}

static void
rq_teardown(struct rq *rq)
{
	unlinger(rq, true);
	/* Connections still to hand over: now or never.  Room is waited for
	 * once, as long as the channel's send timeout; if none came, the
	 * supervisor is not reading, and the rest are only tried. */
	for (uint32_t k = 0, stuck = 0; k < rq->rq_nout; k++) {
		struct rq_out *o = &rq->rq_out[k];

		if (send_conn(rq, o->ro_slot, o->ro_gen, o->ro_fd, !stuck) ==
		    -EAGAIN)
			stuck = 1;
		close(o->ro_fd);
	}
	for (uint32_t i = 0; rq->rq_conns != NULL && i < rq->rq_nconns; i++)
		if (rq->rq_conns[i].rc_fd >= 0 && !(conn_flags(rq, i) &
		    SHMPIPE_CONN_FILE))
			close(rq->rq_conns[i].rc_fd);
	if (rq->rq_ep >= 0)
		close(rq->rq_ep);
	free(rq->rq_conns);
	free(rq->rq_wait);
	free(rq->rq_eof);
	free(rq->rq_out);
	free(rq->rq_buf);
}

/* Everything a round's events asked for. */
static bool
dispatch(struct rq *rq, const struct epoll_event *ev, int n)
{
	for (int i = 0; i < n; i++) {
		uint32_t tag = ev[i].data.u32;

		if (tag == RQ_CHAN) {
			if (ev[i].events & EPOLLOUT)
				out_flush(rq);
			if ((ev[i].events & ~EPOLLOUT) && !read_chan(rq, 0))
				return false;	/* the supervisor is gone */
		} else if (tag >= RQ_LISTEN) {
			accept_on(rq, (int)(tag - RQ_LISTEN));
		} else if (tag < rq->rq_nconns) {
			serve(rq, tag);
		}
	}
	return true;
}

/* Wait a moment for the reply stage to free room (window or slab). */
static void
breathe(void)
{
	struct timespec ts = { 0, 200000 };

	nanosleep(&ts, NULL);
}

/*
 * Put the whole batch, however long the queue stays full.  A wait that
 * a wakeup ends leaves the rest in the batch: the signals that start a
 * drain ring one each, and nothing in the drain is for them to cut short
 * (a second signal to the supervisor kills us outright).
 */
static int
flush_all(struct rq *rq)
{
	while (rq->rq_n > 0)
		if (flush(rq, -1) != 0)
			return -1;
	return 0;
}

/*
 * Whether a draining connection has put all it will: every whole line,
 * or it was given up.  What is left without a newline is the start of a
 * line the client was still sending, not a request (at the end of its
 * input, parse() took it whole).
 */
static bool
drained_conn(struct rq *rq, uint32_t slot)
{
	struct rq_conn *rc = &rq->rq_conns[slot];
	uint32_t tail = tail_of(rq, slot);

	return rc->rc_head == tail ||
	    (conn_flags(rq, slot) & SHMPIPE_CONN_ABORT) || (!rc->rc_eof &&
	    !too_long(rq, slot, rc->rc_head, tail - rc->rc_head) &&
	    find_nl(rq, slot, rc->rc_head, tail) < 0);
}

/*
 * Stop reading: stage and put every whole line already read (they were
 * accepted), then tell each connection how many requests it made, and
 * close our side.  Connections are served in rounds, so that one waiting
 * on its window (a client that does not read its replies) holds up no
 * other's end.  A process started into a drain (its predecessor died in
 * it) first takes up the connections the supervisor hands it, and with
 * them the lines in their rings.
 */
static int
drain(struct rq *rq)
{
	uint32_t left;

	if (rq->rq_st->st_chan >= 0)
		(void)read_chan(rq, 1000);
	do {
		left = 0;
		for (uint32_t i = 0; i < rq->rq_nconns; i++) {
			if (rq->rq_conns[i].rc_fd < 0)
				continue;
			parse(rq, i);
			/* All of it on the queue before final_seq counts it. */
			if (flush_all(rq) != 0)
				return STAGE_EX_SOFTWARE;
			if (drained_conn(rq, i))
				finish(rq, i);
			else
				left++;
		}
		if (left > 0)
			breathe();		/* windows or the slab full */
	} while (left > 0);
	/* Release: processors that see it closed see our last puts. */
	atomic_store_explicit(&rq->rq_c->req_closed, 1, memory_order_release);
	return STAGE_EX_OK;
}

/*
 * File mode: read the input to the end, as fast as the queue takes it.
 * Asked to stop (the supervisor drains the pipeline: SIGTERM) or started
 * into a drain, read no more, but answer every line read, as run_net.
 */
static int
run_file(struct rq *rq)
{
	struct rq_conn *rc = &rq->rq_conns[0];

	adopt(rq, 0, SHMPIPE_CONN_GEN(atomic_load(&conn(rq, 0)->state)),
	    rq->rq_st->st_in_fd);
	rc->rc_blocks = !rc->rc_regular;
	stage_state(rq->rq_st, SHMPIPE_PROC_READY);
	while (!stage_stopping(rq->rq_st) && !stage_draining(rq->rq_st) &&
	    rc->rc_fd >= 0) {
		rq->rq_nwait = 0;
		rc->rc_waiting = false;
		rq->rq_slab_full = false;
		serve(rq, 0);
		if (flush(rq, rq->rq_n == RQ_BATCH ? 50 : 0) != 0)
			return STAGE_EX_SOFTWARE;
		reap(rq);
		if (rq->rq_slab_full || (rc->rc_waiting && rq->rq_n == 0 &&
		    over_window(rq, 0)))
			breathe();
	}
	return drain(rq);
}

static int
run_net(struct rq *rq)
{
	struct epoll_event ev[64];

	stage_state(rq->rq_st, SHMPIPE_PROC_READY);
	while (!stage_stopping(rq->rq_st) && !stage_draining(rq->rq_st)) {
		bool busy = rq->rq_n > 0 || rq->rq_nwait > 0;
		int n = epoll_wait(rq->rq_ep, ev, 64, busy ? 1 :
		    RQ_SWEEP_NS / 1000000);

		rq->rq_slab_full = false;
		if (n < 0 && errno != EINTR)
			return STAGE_EX_SOFTWARE;
		if (!dispatch(rq, ev, n > 0 ? n : 0))
			return STAGE_EX_OK;
		unblock(rq);
		sweep_aborted(rq);
		if (rq->rq_nlinger > 0)
			unlinger(rq, false);
		if (flush(rq, 0) != 0)
			return STAGE_EX_SOFTWARE;
		reap(rq);
	}
	return drain(rq);
}

int
stage_request(struct stage *st)
{
	struct rq rq;
	int r;

	if (rq_setup(&rq, st) != 0) {
		log_event("cannot set up: %s", strerror(errno));
		rq_teardown(&rq);
		return STAGE_EX_SOFTWARE;
	}
	if (st->st_ctl->c_hdr->flags & SHMPIPE_CONN_FILE)
		r = run_file(&rq);
	else
		r = run_net(&rq);
	rq_teardown(&rq);
	return r;
}
