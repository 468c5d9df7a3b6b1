/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stage_reply.c - the reply stage: take replies, park each in the slab
 * slot its request reserved, and write them to each client in request
 * order, several per writev(2).
 *
 * Everything it knows lives in the control segment (slab slots, and each
 * connection's out_total and out_mark), so a new reply process carries on
 * where a dead one stopped: a reply is acked only once it is in the slab,
 * and a connection's progress is committed right after each write
 * returns, by one store of out_total.  The mark - the reply the output is
 * in, and where it began - follows, and only then are the written
 * replies' slab slots freed; a successor that finds the mark behind
 * out_total moves it up over the replies still in the slab (catch_up()).
 * The only window is between a write returning and that store (a SIGKILL
 * during writev(2) lands there): the bytes went out uncounted.  A TCP
 * socket says how many bytes it ever took from us, so the next process
 * counts them (recount()).  A Unix socket cannot say; the mark's busy bit
 * says the connection was being written to, and rather than send its
 * client some replies twice, or half of one, the next process closes it.
 * For a regular output file it uses pwrite at the stored offset, so file
 * mode has no window at all (an output pipe keeps it).
 * Pipeline crash points (shmpipe-fi): reply.wrote, reply.adopting, and
 * those of advance() and catch_up().
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "chan.h"
#include "fault.h"
#include "log.h"
#include "msg.h"
#include "stage.h"

#define RP_BATCH	64
#define RP_HOLD_MAX	1024		/* replies taken before writing at the
					 * latest, while the queue stays full */
#define RP_IOV		512		/* replies per writev, two iovecs each */
#define RP_OUT		65536		/* replies copied together per write */
#define RP_EV_CHAN	UINT32_MAX	/* epoll: the supervisor's channel */
#define RP_POLL_NS	1000000u	/* busy: epoll at least this often */
#define RP_STALL_NS	10000000000ull	/* a client that reads nothing 10 s */
#define RP_STARVE_NS	2000000000ull	/* 2 s, if it holds up everyone */
#define RP_SWEEP_NS	100000000u	/* busy: look at everyone this often */
#define RP_OWED_NS	10000000000ull	/* drained but for connections whose
					 * descriptor is on its way: so long */

struct rp_conn {
	int		 pc_fd;		/* -1 until the supervisor sends it */
	uint32_t	 pc_gen;
	bool		 pc_pollout;	/* waiting for EPOLLOUT */
	bool		 pc_regular;	/* a regular file: pwrite */
	bool		 pc_dirty;	/* queued in rp_dirty */
	uint64_t	 pc_stall_ns;	/* output waiting since, 0 if none */
};

struct rp {
	struct stage	*rp_st;
	const struct ctl *rp_ctl;
	uint32_t	 rp_nconns;
	uint32_t	 rp_window;	/* conn_window, a power of two */
	struct rp_conn	*rp_conns;
	uint32_t	*rp_pend;	/* [conn][seq % window]: slab slot + 1 */
	uint32_t	*rp_dirty;	/* connections with replies to write */
	uint32_t	 rp_ndirty;
	uint32_t	 rp_nstalled;
	int		 rp_ep;
	unsigned char	*rp_buf;	/* RP_BATCH messages */
	size_t		 rp_msg_size;
	struct iovec	 rp_iov[RP_BATCH];
	struct shmq_lease rp_lease[RP_BATCH];
	struct iovec	 rp_wiov[2 * RP_IOV];
	char		*rp_out;	/* RP_OUT bytes: replies to write */
	bool		 rp_chan_ready;	/* the channel has something */
	bool		 rp_fd_wanted;	/* replies wait for a connection */
	uint64_t	 rp_owed_ns;	/* drained but for those, since */
	uint64_t	 rp_now_ns;	/* this round's coarse clock */
	uint64_t	 rp_poll_ns;	/* last epoll_wait */
	uint64_t	 rp_sweep_ns;	/* last sweep() */
	uint64_t	 rp_answered, rp_freed;
	struct stage_drops rp_drops;	/* malformed messages taken */
	int		 rp_exit;	/* STAGE_EX_IOERR: stop with it */
};

static const char newline[1] = { '\n' };

static uint32_t *
pend(struct rp *rp, uint32_t slot, uint32_t seq)
{
	return &rp->rp_pend[(size_t)slot * rp->rp_window +
	    (seq & (rp->rp_window - 1))];
}

static void
mark_dirty(struct rp *rp, uint32_t slot)
{
	if (!rp->rp_conns[slot].pc_dirty) {
		rp->rp_conns[slot].pc_dirty = true;
		rp->rp_dirty[rp->rp_ndirty++] = slot;
	}
}

/*
 * Give a slab slot back, if its stage word is still w; count it (the
 * in-flight figure of shmq ps).
 */
static void
slab_free(struct rp *rp, struct shmpipe_slab *s, uint64_t w)
{
	/* Release: pairs with the request stage's acquire when it reuses
	 * the slot.  CAS on the whole word, generation and all: the
	 * supervisor may collect a RESERVED slot, and the request stage
	 * reserve it again, after we loaded w. */
	if (!atomic_compare_exchange_strong_explicit(&s->stage, &w,
	    SHMPIPE_SLAB_WORD(SHMPIPE_SLAB_GEN(w), SHMPIPE_SLAB_FREE),
	    memory_order_release, memory_order_relaxed))
		return;
	rp->rp_freed++;
	atomic_store_explicit(&rp->rp_ctl->c_hdr->freed, rp->rp_freed,
	    memory_order_relaxed);
}

/* Give back a slot we (or a dead predecessor) filled: no one else moves a
 * FILLED slot, so its word now is the one to free. */
static void
slab_free_filled(struct rp *rp, struct shmpipe_slab *s)
{
	/* Relaxed: ours (rebuild() acquired a predecessor's). */
	uint64_t w = atomic_load_explicit(&s->stage, memory_order_relaxed);

	if (SHMPIPE_SLAB_STAGE(w) == SHMPIPE_SLAB_FILLED)
		slab_free(rp, s, w);
}

static uint64_t
conn_state(const struct rp *rp, uint32_t slot)
{
	/* Acquire: pairs with the request stage's release of its flags. */
	return atomic_load_explicit(&ctl_conn(rp->rp_ctl, slot)->state,
	    memory_order_acquire);
}

/* Is connection id `id` still the one in its slot, and still wanted? */
static bool
conn_live(const struct rp *rp, uint64_t id)
{
	uint32_t slot = SHMPIPE_CONN_SLOT(id);
	uint64_t w;

	if (slot >= rp->rp_nconns)
		return false;
	w = conn_state(rp, slot);
	return SHMPIPE_CONN_GEN(w) == (uint32_t)(id >> 32) &&
	    (SHMPIPE_CONN_FLAGS(w) & SHMPIPE_CONN_OPEN) &&
	    !(SHMPIPE_CONN_FLAGS(w) & (SHMPIPE_CONN_ABORT |
	    SHMPIPE_CONN_RP_DONE));
}

/*
 * Is seq one of the conn_window replies from the connection's reply_seq
 * on?  One behind it was written already: a request put twice (by a
 * request process that died before it committed it) was answered twice.
 */
static bool
in_window(const struct rp *rp, uint32_t slot, uint32_t seq)
{
	uint32_t next = atomic_load_explicit(&ctl_conn(rp->rp_ctl,
	    slot)->reply_seq, memory_order_relaxed);

	return ((seq - next) & SHMPIPE_SEQ_MASK) < rp->rp_window;
}

/*
 * Park one reply in the slab slot its request reserved.  A reply whose slot
 * no longer waits for it (a duplicate from a redelivered request, or one
 * the supervisor collected) and one for a connection that is gone are
 * dropped.
 */
static void
place(struct rp *rp, const struct msg_hdr *h, const char *data, size_t len)
{
	struct shmpipe_ctl *c = rp->rp_ctl->c_hdr;
	struct shmpipe_slab *s;
	uint32_t slot = SHMPIPE_CONN_SLOT(h->mh_conn);
	uint64_t w;

	if (h->mh_slot >= rp->rp_ctl->c_g.slab_slots ||
	    len > rp->rp_ctl->c_g.reply_max)
		return;				/* corrupt: nothing to free */
	s = ctl_slab(rp->rp_ctl, h->mh_slot);
	/* Acquire: pairs with the request stage's release of RESERVED.
	 * The CASes below succeed only on this reservation, w. */
	w = atomic_load_explicit(&s->stage, memory_order_acquire);
	if (SHMPIPE_SLAB_STAGE(w) != SHMPIPE_SLAB_RESERVED ||
	    atomic_load_explicit(&s->conn, memory_order_relaxed) !=
	    h->mh_conn || atomic_load_explicit(&s->seq,
	    memory_order_relaxed) != h->mh_seq) {
		atomic_fetch_add_explicit(&c->duplicates, 1,
		    memory_order_relaxed);
		return;
	}
	if (!conn_live(rp, h->mh_conn) || *pend(rp, slot, h->mh_seq) != 0 ||
	    !in_window(rp, slot, h->mh_seq)) {
		slab_free(rp, s, w);
		atomic_fetch_add_explicit(conn_live(rp, h->mh_conn) ?
		    &c->duplicates : &c->dropped, 1, memory_order_relaxed);
		return;
	}
	memcpy(ctl_slab_data(s), data, len);
	atomic_store_explicit(&s->len, (uint32_t)len, memory_order_relaxed);
	atomic_store_explicit(&s->filled_ns, stage_coarse_ns(),
	    memory_order_relaxed);
	/* Release: pairs with the acquire in rebuild(), a reply process
	 * after us that sees FILLED sees the reply; the CAS loses only to
	 * the supervisor's collection (and then to nothing reserved since:
	 * the generation). */
	if (!atomic_compare_exchange_strong_explicit(&s->stage, &w,
	    SHMPIPE_SLAB_WORD(SHMPIPE_SLAB_GEN(w), SHMPIPE_SLAB_FILLED),
	    memory_order_release, memory_order_relaxed))
		return;
	*pend(rp, slot, h->mh_seq) = h->mh_slot + 1;
	mark_dirty(rp, slot);
}

/*
 * The length of the reply in a slot we indexed.  place() and rebuild()
 * checked it; bounded again because the slab is anyone's to scribble on,
 * and a length past reply_max would have gather() write what lies beyond
 * the slot (other clients' replies, or past the mapping).
 */
static uint32_t
slab_len(const struct rp *rp, struct shmpipe_slab *s)
{
	uint32_t len = atomic_load_explicit(&s->len, memory_order_relaxed);

	return len <= rp->rp_ctl->c_g.reply_max ? len :
	    rp->rp_ctl->c_g.reply_max;
}

/*
 * Add the bytes of one reply from off on, and its newline, to the iovecs:
 * copied into rp_out while there is room, so that the kernel copies one
 * run instead of two pieces per reply (most of a writev's cost), else
 * written from the slab where it lies.  *used: bytes of rp_out taken.
 */
static int
gather_one(struct rp *rp, int n, const char *data, uint32_t part,
    size_t *used)
{
	struct iovec *last = n > 0 ? &rp->rp_wiov[n - 1] : NULL;
	char *to = rp->rp_out + *used;

	if (RP_OUT - *used < (size_t)part + 1) {
		if (part > 0)
			rp->rp_wiov[n++] = (struct iovec){ (void *)data, part };
		rp->rp_wiov[n++] = (struct iovec){ (void *)newline, 1 };
		return n;
	}
	memcpy(to, data, part);
	to[part] = '\n';
	*used += (size_t)part + 1;
	if (last != NULL && (char *)last->iov_base + last->iov_len == to)
		last->iov_len += (size_t)part + 1;
	else
		rp->rp_wiov[n++] = (struct iovec){ to, (size_t)part + 1 };
	return n;
}

/*
 * Where a connection's output stands: seq, the first reply not wholly
 * written (the mark's), and off, how much of it was.  Ours alone to
 * change, or a dead predecessor's (relaxed: read after its death).
 */
static void
position(const struct rp *rp, uint32_t slot, uint32_t *seq, uint32_t *off)
{
	struct shmpipe_conn *cn = ctl_conn(rp->rp_ctl, slot);
	uint64_t m = atomic_load_explicit(&cn->out_mark, memory_order_relaxed);

	*seq = SHMPIPE_OUT_SEQ(m);
	*off = (uint32_t)atomic_load_explicit(&cn->out_total,
	    memory_order_relaxed) - SHMPIPE_OUT_BASE(m);
}

/* Gather in-order replies of a connection, from off into seq, into iovecs. */
static int
gather(struct rp *rp, uint32_t slot, uint32_t seq, uint32_t off,
    size_t *bytes)
{
	size_t used = 0;
	int n = 0;

	*bytes = 0;
	for (uint32_t i = 0; i < rp->rp_window && n + 2 <= 2 * RP_IOV; i++) {
		uint32_t k = *pend(rp, slot, seq + i);
		struct shmpipe_slab *sl;
		uint32_t len;

		if (k == 0)
			break;
		sl = ctl_slab(rp->rp_ctl, k - 1);
		len = slab_len(rp, sl);
		if (off > len)
			off = len;
		n = gather_one(rp, n, ctl_slab_data(sl) + off, len - off,
		    &used);
		*bytes += len + 1 - off;
		off = 0;
	}
	return n;
}

/* Give back the slab slots of replies [from, to) of a connection, written. */
static void
retire(struct rp *rp, uint32_t slot, uint32_t from, uint32_t to)
{
	for (uint32_t s = from; s != to; s = (s + 1) & SHMPIPE_SEQ_MASK) {
		uint32_t *p = pend(rp, slot, s);

		if (*p != 0) {
			slab_free_filled(rp, ctl_slab(rp->rp_ctl, *p - 1));
			*p = 0;
			SHMQ_FAULT("reply.freed");
		}
		rp->rp_answered++;
	}
	atomic_store_explicit(&rp->rp_ctl->c_hdr->answered, rp->rp_answered,
	    memory_order_relaxed);
}

/*
 * Move a connection's mark up to out_total, past every reply it covers
 * whole; then free those replies and move reply_seq, in that order.  So
 * a process that dies anywhere here leaves a mark at or behind out_total
 * with every reply from the mark on still in the slab, and its successor
 * calls this to finish the job (and to free what lies behind the mark).
 * The mark's busy bit becomes busy_bit: clear once a write is counted, kept
 * by adopt() until it has acted on it (see recount()).
 * Pipeline crash points (shmpipe-fi): reply.marked, reply.freed.
 */
static void
catch_up(struct rp *rp, uint32_t slot, bool busy_bit)
{
	struct shmpipe_conn *cn = ctl_conn(rp->rp_ctl, slot);
	uint32_t seq, off, base, from = atomic_load_explicit(&cn->reply_seq,
	    memory_order_relaxed);

	position(rp, slot, &seq, &off);
	base = SHMPIPE_OUT_BASE(atomic_load_explicit(&cn->out_mark,
	    memory_order_relaxed));
	for (uint32_t k; (k = *pend(rp, slot, seq)) != 0; ) {
		uint32_t len = slab_len(rp, ctl_slab(rp->rp_ctl, k - 1)) + 1;

		if (off < len)
			break;
		off -= len;
		base += len;
		seq = (seq + 1) & SHMPIPE_SEQ_MASK;
	}
	/* Release: after out_total, so a successor never finds the mark
	 * ahead of it. */
	atomic_store_explicit(&cn->out_mark, SHMPIPE_OUT_MARK(seq, base,
	    busy_bit), memory_order_release);
	SHMQ_FAULT("reply.marked");
	retire(rp, slot, from, seq);
	/* Release: the request stage reading reply_seq for its window. */
	atomic_store_explicit(&cn->reply_seq, seq, memory_order_release);
}

/*
 * Account for `wrote` bytes: commit them (out_total, one store: all a
 * successor needs, with the mark and the slab), then catch up.
 * Pipeline crash point (shmpipe-fi): reply.total.
 */
static void
advance(struct rp *rp, uint32_t slot, size_t wrote)
{
	struct shmpipe_conn *cn = ctl_conn(rp->rp_ctl, slot);

	/* Release: before the mark moves (catch_up). */
	atomic_store_explicit(&cn->out_total, atomic_load_explicit(
	    &cn->out_total, memory_order_relaxed) + wrote,
	    memory_order_release);
	SHMQ_FAULT("reply.total");
	catch_up(rp, slot, false);
}

/* Set or clear the mark's busy bit: a write to the connection in flight. */
static void
busy(struct rp *rp, uint32_t slot, bool on)
{
	struct shmpipe_conn *cn = ctl_conn(rp->rp_ctl, slot);
	uint64_t m = atomic_load_explicit(&cn->out_mark, memory_order_relaxed);

	/* Relaxed: only a successor reads it, once we are dead. */
	atomic_store_explicit(&cn->out_mark, SHMPIPE_OUT_MARK(
	    SHMPIPE_OUT_SEQ(m), SHMPIPE_OUT_BASE(m), on), memory_order_relaxed);
}

static void
watch_out(struct rp *rp, uint32_t slot, bool on)
{
	struct rp_conn *pc = &rp->rp_conns[slot];
	struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = slot };

	if (pc->pc_pollout == on || pc->pc_regular)
		return;
	if (epoll_ctl(rp->rp_ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, pc->pc_fd,
	    &ev) == 0 || !on) {
		pc->pc_pollout = on;
		rp->rp_nstalled += on ? 1 : -1;
	}
}

/* Let go of a connection: close our copy, say the reply side is done. */
static void
finish(struct rp *rp, uint32_t slot, bool abort)
{
	struct rp_conn *pc = &rp->rp_conns[slot];
	struct shmpipe_conn *cn = ctl_conn(rp->rp_ctl, slot);
	uint32_t seq = atomic_load_explicit(&cn->reply_seq,
	    memory_order_relaxed), gone = 0;

	for (uint32_t i = 0; i < rp->rp_window; i++, seq++) {
		uint32_t *p = pend(rp, slot, seq);
		if (*p != 0) {
			slab_free_filled(rp, ctl_slab(rp->rp_ctl, *p - 1));
			*p = 0;
			gone++;
		}
	}
	/* Relaxed: statistics; as place() counts those that come later. */
	if (gone > 0)
		atomic_fetch_add_explicit(&rp->rp_ctl->c_hdr->dropped, gone,
		    memory_order_relaxed);
	/*
	 * Done before the client can see the end, so that one that comes
	 * back at once finds the slot free to take (the socket is ours to
	 * shut down whatever the supervisor does with its copy meanwhile).
	 * Release: the supervisor frees the slot once both sides are done.
	 */
	atomic_fetch_or_explicit(&cn->state, SHMPIPE_CONN_RP_DONE |
	    (abort ? SHMPIPE_CONN_ABORT : 0), memory_order_release);
	if (pc->pc_fd >= 0) {
		watch_out(rp, slot, false);
		if (!pc->pc_regular && !(SHMPIPE_CONN_FLAGS(conn_state(rp,
		    slot)) & SHMPIPE_CONN_FILE)) {
			/* Aborting, shut the socket itself: the client and the
			 * request stage hold it too, and must see the end. */
			shutdown(pc->pc_fd, abort ? SHUT_RDWR : SHUT_WR);
			close(pc->pc_fd);
		}
	}
	pc->pc_fd = -1;
	pc->pc_stall_ns = 0;
}

/* All its requests answered and the client sent its last one? */
static bool
complete(struct rp *rp, uint32_t slot)
{
	struct shmpipe_conn *cn = ctl_conn(rp->rp_ctl, slot);
	uint64_t w = conn_state(rp, slot);
	uint32_t seq, off;

	position(rp, slot, &seq, &off);
	return (SHMPIPE_CONN_FLAGS(w) & SHMPIPE_CONN_RD_DONE) &&
	    atomic_load_explicit(&cn->final_seq, memory_order_relaxed) ==
	    seq && off == 0;
}

/*
 * A connection given up on before its descriptor reached us (the
 * supervisor had no room for it): no fd will come; let go of it.
 */
static bool
lost(const struct rp *rp, uint32_t slot)
{
	uint32_t f = SHMPIPE_CONN_FLAGS(conn_state(rp, slot));

	return rp->rp_conns[slot].pc_fd < 0 && (f & SHMPIPE_CONN_OPEN) &&
	    (f & SHMPIPE_CONN_ABORT) && !(f & SHMPIPE_CONN_RP_DONE);
}

static ssize_t
write_out(struct rp *rp, uint32_t slot, int n)
{
	struct rp_conn *pc = &rp->rp_conns[slot];
	struct shmpipe_conn *cn = ctl_conn(rp->rp_ctl, slot);
	ssize_t w;

	if (!pc->pc_regular)
		busy(rp, slot, true);
	do
		w = pc->pc_regular ? pwritev(pc->pc_fd, rp->rp_wiov, n,
		    (off_t)atomic_load_explicit(&cn->out_total,
		    memory_order_relaxed)) : writev(pc->pc_fd, rp->rp_wiov, n);
	while (w < 0 && errno == EINTR);
	return w;
}

/*
 * The pipeline's output file failed (a full disk) with a reply part
 * written: cut it back to where that reply began, so that the file ends
 * with whole lines.  A pipe cannot take back what it sent.
 */
static void
cut_partial(struct rp *rp, uint32_t slot)
{
	struct rp_conn *pc = &rp->rp_conns[slot];
	uint32_t seq, off;

	position(rp, slot, &seq, &off);
	if (pc->pc_regular && off > 0 && ftruncate(pc->pc_fd,
	    (off_t)(atomic_load_explicit(&ctl_conn(rp->rp_ctl, slot)->out_total,
	    memory_order_relaxed) - off)) != 0)
		log_event("cannot cut the output back to its last whole "
		    "line: %s", strerror(errno));
}

/* Write what is in order for a connection; close it when it is done. */
static void
flush_conn(struct rp *rp, uint32_t slot)
{
	struct rp_conn *pc = &rp->rp_conns[slot];
	uint32_t seq, off;
	size_t bytes;
	ssize_t w;
	int n;

	if (pc->pc_fd < 0) {
		if (lost(rp, slot))
			finish(rp, slot, true);
		else
			rp->rp_fd_wanted = true;	/* its fd is on the way */
		return;
	}
	if (!conn_live(rp, SHMPIPE_CONN_ID(pc->pc_gen, slot))) {
		finish(rp, slot, true);
		return;
	}
	/* One write takes at most RP_IOV replies: go on until all that are
	 * in order are out, or the client's socket is full. */
	for (;;) {
		position(rp, slot, &seq, &off);
		if ((n = gather(rp, slot, seq, off, &bytes)) == 0)
			break;
		w = write_out(rp, slot, n);
		if (w < 0 && errno != EAGAIN && (SHMPIPE_CONN_FLAGS(
		    conn_state(rp, slot)) & SHMPIPE_CONN_FILE)) {
			/* Nobody to drop: the pipeline's output has failed
			 * (a full disk, a reader gone), and that is its end. */
			log_event("cannot write the output: %s",
			    strerror(errno));
			cut_partial(rp, slot);
			busy(rp, slot, false);
			rp->rp_exit = STAGE_EX_IOERR;
			return;
		}
		if (w < 0 && errno != EAGAIN) {
			finish(rp, slot, true);	/* the client is gone */
			return;
		}
		if (w > 0) {
			SHMQ_FAULT("reply.wrote");	/* not counted yet */
			advance(rp, slot, (size_t)w);	/* clears busy */
			pc->pc_stall_ns = 0;
		} else {
			busy(rp, slot, false);
		}
		/* A regular file took less only because a signal came. */
		if (w > 0 && (size_t)w < bytes && pc->pc_regular)
			continue;
		if (w < 0 || (size_t)w < bytes) {
			if (pc->pc_stall_ns == 0)
				pc->pc_stall_ns = stage_coarse_ns();
			watch_out(rp, slot, true);
			return;
		}
	}
	watch_out(rp, slot, false);
	if (complete(rp, slot))
		finish(rp, slot, false);
}

static void
flush_dirty(struct rp *rp)
{
	for (uint32_t i = 0; i < rp->rp_ndirty; i++) {
		uint32_t slot = rp->rp_dirty[i];
		rp->rp_conns[slot].pc_dirty = false;
		flush_conn(rp, slot);
	}
	rp->rp_ndirty = 0;
}

/*
 * The bytes a TCP socket took from us, ever: those acked plus those still
 * queued, read again until no ack came in between.  -1 if it cannot say
 * (not TCP).
 */
static int64_t
tcp_sent(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	uint64_t acked;
	int queued;

	for (int i = 0; i < 16; i++) {
		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
		    len < offsetof(struct tcp_info, tcpi_bytes_acked) +
		    sizeof(ti.tcpi_bytes_acked))
			return -1;
		acked = ti.tcpi_bytes_acked;
		if (ioctl(fd, SIOCOUTQ, &queued) != 0 || getsockopt(fd,
		    IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
			return -1;
		if (ti.tcpi_bytes_acked == acked)
			return (int64_t)(acked + (uint64_t)queued);
	}
	return -1;
}

/*
 * Count the bytes a dead predecessor sent on slot and did not count; close
 * a Unix socket it was writing to (`was_busy`), as no one can know how
 * much went out.  The mark's busy bit stays set until that is done (the
 * connection ABORTed, or the count brought up to what the socket took):
 * a successor of ours that dies here must decide again, not write on from
 * a count that may be short.
 */
static void
recount(struct rp *rp, uint32_t slot, bool was_busy)
{
	struct shmpipe_conn *cn = ctl_conn(rp->rp_ctl, slot);
	uint64_t total = atomic_load_explicit(&cn->out_total,
	    memory_order_relaxed);
	int64_t sent = tcp_sent(rp->rp_conns[slot].pc_fd);
	uint32_t seq, off;
	size_t held;

	if (sent < 0 && was_busy) {
		log_event("connection %u: a reply process died writing to it, "
		    "and its socket cannot say how much went out; closing it",
		    slot);
		finish(rp, slot, true);
		return;
	}
	if (sent < 0)
		return;				/* not busy: nothing went out */
	if ((uint64_t)sent <= total) {
		if (was_busy)
			busy(rp, slot, false);	/* all of it counted */
		return;
	}
	position(rp, slot, &seq, &off);
	gather(rp, slot, seq, off, &held);
	if ((uint64_t)sent - total > held) {
		log_event("connection %u: its socket took %llu bytes we have "
		    "no replies for; closing it", slot,
		    (unsigned long long)((uint64_t)sent - total - held));
		finish(rp, slot, true);
		return;
	}
	log_event("connection %u: %llu bytes a dead reply process sent "
	    "counted", slot, (unsigned long long)((uint64_t)sent - total));
	advance(rp, slot, (size_t)((uint64_t)sent - total));	/* not busy */
}

/* A connection's fd arrived from the supervisor. */
static void
adopt(struct rp *rp, uint32_t slot, uint32_t gen, int fd)
{
	struct rp_conn *pc;
	struct stat st;
	bool was_busy;

	if (slot >= rp->rp_nconns) {
		close(fd);
		return;
	}
	pc = &rp->rp_conns[slot];
	if (pc->pc_fd >= 0) {
		watch_out(rp, slot, false);
		close(pc->pc_fd);
	}
	pc->pc_fd = fd;
	pc->pc_gen = gen;
	pc->pc_stall_ns = 0;
	pc->pc_regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	/*
	 * Where a predecessor stopped: its mark brought up to what it
	 * committed, keeping the busy bit on a socket until recount() has
	 * acted on it.  Cleared here, a death before recount() closed the
	 * connection would leave our successor a Unix socket that looks
	 * idle and a count that may be short: replies sent twice, or half
	 * of one.  Anything else is written at out_total (a regular file)
	 * or keeps its window (a pipe).  A connection given up already
	 * (one a predecessor closed, busy and all) is only closed again,
	 * by flush_conn(): nothing to decide, nor to log twice.
	 */
	was_busy = S_ISSOCK(st.st_mode) && SHMPIPE_OUT_BUSY(
	    atomic_load_explicit(&ctl_conn(rp->rp_ctl, slot)->out_mark,
	    memory_order_relaxed));
	catch_up(rp, slot, was_busy);
	if (was_busy)
		SHMQ_FAULT("reply.adopting");	/* caught up, not decided */
	if (S_ISSOCK(st.st_mode) && conn_live(rp, SHMPIPE_CONN_ID(gen, slot)))
		recount(rp, slot, was_busy);
	mark_dirty(rp, slot);
}

/*
 * A connection handed over without its descriptor: we had no room for it
 * (MSG_CTRUNC).  Its replies could never be written; give it up (ABORT),
 * and the request stage closes it.
 */
static void
drop(struct rp *rp, const struct chan_msg *m)
{
	uint64_t w;

	if (m->cm_slot >= rp->rp_nconns)
		return;
	w = conn_state(rp, m->cm_slot);
	if (SHMPIPE_CONN_GEN(w) != m->cm_gen ||
	    (SHMPIPE_CONN_FLAGS(w) & SHMPIPE_CONN_RP_DONE))
		return;
	log_event("connection %u: its descriptor did not reach us (out of "
	    "file descriptors?); closing it", m->cm_slot);
	finish(rp, m->cm_slot, true);
}

/* Control messages: connections handed over.  False at end of file. */
static bool
read_chan(struct rp *rp, bool *synced)
{
	struct chan_msg m;
	int fd, r;

	while ((r = chan_recv(rp->rp_st->st_chan, &m, &fd, synced != NULL &&
	    !*synced ? 1000 : 0)) == 1) {
		if (m.cm_type == CHAN_CONN && fd >= 0)
			adopt(rp, m.cm_slot, m.cm_gen, fd);
		else if (m.cm_type == CHAN_CONN)
			drop(rp, &m);
		else if (fd >= 0)
			close(fd);
		if (m.cm_type == CHAN_SYNCED && synced != NULL)
			*synced = true;
	}
	return r != 0;
}

/*
 * A FILLED slot whose length no reply can have (reply_max at most, as
 * place() checks): written by something buggy, its reply is lost.  Free
 * it and count it; a connection still waiting for that reply would wait
 * forever, so give it up (ABORT: flush_conn() closes it).
 */
static void
corrupt(struct rp *rp, struct shmpipe_slab *s, uint64_t w, uint32_t i,
    uint64_t id, uint32_t seq, uint32_t len)
{
	struct shmpipe_ctl *c = rp->rp_ctl->c_hdr;
	uint32_t slot = SHMPIPE_CONN_SLOT(id);

	atomic_fetch_add_explicit(&c->corrupt, 1, memory_order_relaxed);
	if (conn_live(rp, id) && in_window(rp, slot, seq)) {
		log_event("connection %u: slab slot %u holds reply %u with a "
		    "length of %u bytes (at most %u); closing the connection",
		    slot, i, seq, len, rp->rp_ctl->c_g.reply_max);
		/* Release: pairs with the acquire of the state by the
		 * request stage (conn_flags) and by us (conn_state). */
		atomic_fetch_or_explicit(&ctl_conn(rp->rp_ctl, slot)->state,
		    SHMPIPE_CONN_ABORT, memory_order_release);
		mark_dirty(rp, slot);
	} else {
		log_event("slab slot %u: a reply of %u bytes (at most %u) "
		    "for no connection waiting; freed", i, len,
		    rp->rp_ctl->c_g.reply_max);
	}
	slab_free(rp, s, w);
}

/* Slab slots a previous reply process filled: index them again. */
static void
rebuild(struct rp *rp)
{
	for (uint32_t i = 0; i < rp->rp_ctl->c_g.slab_slots; i++) {
		struct shmpipe_slab *s = ctl_slab(rp->rp_ctl, i);
		/* Acquire: pairs with place()'s release of FILLED, by a
		 * predecessor: its conn, seq, len and reply. */
		uint64_t w = atomic_load_explicit(&s->stage,
		    memory_order_acquire);
		uint64_t id;
		uint32_t seq, slot, len;

		if (SHMPIPE_SLAB_STAGE(w) != SHMPIPE_SLAB_FILLED)
			continue;
		id = atomic_load_explicit(&s->conn, memory_order_relaxed);
		seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
		len = atomic_load_explicit(&s->len, memory_order_relaxed);
		slot = SHMPIPE_CONN_SLOT(id);
		if (len > rp->rp_ctl->c_g.reply_max) {
			corrupt(rp, s, w, i, id, seq, len);
			continue;
		}
		if (!conn_live(rp, id) || *pend(rp, slot, seq) != 0 ||
		    !in_window(rp, slot, seq)) {
			slab_free(rp, s, w);
			continue;
		}
		*pend(rp, slot, seq) = i + 1;
		mark_dirty(rp, slot);
	}
}

static int
rp_setup(struct rp *rp, struct stage *st)
{
	const struct shmpipe_ctl *c = st->st_ctl->c_hdr;
	const struct ctl_geom *g = &st->st_ctl->c_g;

	memset(rp, 0, sizeof(*rp));
	rp->rp_st = st;
	rp->rp_ctl = st->st_ctl;
	rp->rp_nconns = g->max_conns;
	rp->rp_window = g->conn_window;
	rp->rp_msg_size = MSG_STRIDE(sizeof(struct msg_hdr) + g->reply_max);
	rp->rp_conns = calloc(g->max_conns, sizeof(*rp->rp_conns));
	rp->rp_pend = calloc((size_t)g->max_conns * g->conn_window,
	    sizeof(*rp->rp_pend));
	rp->rp_dirty = calloc(g->max_conns, sizeof(*rp->rp_dirty));
	rp->rp_buf = malloc(RP_BATCH * rp->rp_msg_size);
	rp->rp_out = malloc(RP_OUT);
	rp->rp_ep = epoll_create1(EPOLL_CLOEXEC);
	if (rp->rp_conns == NULL || rp->rp_pend == NULL ||
	    rp->rp_dirty == NULL || rp->rp_buf == NULL || rp->rp_out == NULL ||
	    rp->rp_ep < 0 || (st->st_chan >= 0 && epoll_ctl(rp->rp_ep,
	    EPOLL_CTL_ADD, st->st_chan, &(struct epoll_event){ .events =
	    EPOLLIN, .data.u32 = RP_EV_CHAN }) != 0)) {
		log_event("cannot set up: %s", strerror(errno));
		return -1;
	}
	for (uint32_t i = 0; i < g->max_conns; i++)
		rp->rp_conns[i].pc_fd = -1;
	rp->rp_answered = atomic_load_explicit(&c->answered,
	    memory_order_relaxed);
	rp->rp_freed = atomic_load_explicit(&c->freed, memory_order_relaxed);
	rebuild(rp);			/* before adopt() catches up */
	if (c->flags & SHMPIPE_CONN_FILE)
		adopt(rp, 0, SHMPIPE_CONN_GEN(conn_state(rp, 0)),
		    st->st_out_fd);
	return 0;
}

static void
rp_teardown(struct rp *rp)
{
	for (uint32_t i = 0; rp->rp_conns != NULL && i < rp->rp_nconns; i++)
		if (rp->rp_conns[i].pc_fd >= 0 && !rp->rp_conns[i].pc_regular &&
		    !(SHMPIPE_CONN_FLAGS(conn_state(rp, i)) & SHMPIPE_CONN_FILE))
			close(rp->rp_conns[i].pc_fd);
	if (rp->rp_ep >= 0)
		close(rp->rp_ep);
	free(rp->rp_conns);
	free(rp->rp_pend);
	free(rp->rp_dirty);
	free(rp->rp_buf);
	free(rp->rp_out);
}

/* Take what replies there are (waiting up to timeout_ms) and park them. */
static int
take(struct rp *rp, int timeout_ms)
{
	int n;

	for (unsigned i = 0; i < RP_BATCH; i++)
		rp->rp_iov[i] = (struct iovec){ rp->rp_buf + i *
		    rp->rp_msg_size, rp->rp_msg_size };
	n = shmq_take_batch(rp->rp_st->st_rep, rp->rp_iov, rp->rp_lease,
	    RP_BATCH, timeout_ms);
	for (int i = 0; i < n; i++) {
		const struct msg_hdr *h = rp->rp_iov[i].iov_base;
		if (rp->rp_iov[i].iov_len < sizeof(*h))
			stage_malformed(&rp->rp_drops, "reply",
			    rp->rp_iov[i].iov_len);
		else if (h->mh_flags & MSG_CONN_DONE)
			mark_dirty(rp, SHMPIPE_CONN_SLOT(h->mh_conn) %
			    rp->rp_nconns);
		else
			place(rp, h, (const char *)(h + 1),
			    rp->rp_iov[i].iov_len - sizeof(*h));
		shmq_ack(rp->rp_st->st_rep, &rp->rp_lease[i]);
	}
	return n;
}

/*
 * What epoll says: connections handed over on the channel, sockets
 * writable again; the channel is read only when it has something.  While
 * replies flow and nothing waits on epoll, it is asked once per RP_POLL_NS
 * rather than once a round (a system call per writev or two).  False when
 * the supervisor has gone.
 */
static bool
poll_events(struct rp *rp, bool idle)
{
	struct epoll_event ev[64];
	uint64_t now = rp->rp_now_ns = stage_coarse_ns();
	int n;

	if (!idle && rp->rp_nstalled == 0 && !rp->rp_fd_wanted &&
	    now - rp->rp_poll_ns < RP_POLL_NS)
		return true;
	rp->rp_poll_ns = now;
	n = epoll_wait(rp->rp_ep, ev, 64, 0);
	for (int i = 0; i < n; i++) {
		if (ev[i].data.u32 == RP_EV_CHAN)
			rp->rp_chan_ready = true;
		else
			mark_dirty(rp, ev[i].data.u32);
	}
	if (rp->rp_chan_ready) {
		rp->rp_chan_ready = false;
		rp->rp_fd_wanted = false;
		return read_chan(rp, NULL);
	}
	return true;
}

/*
 * Is every slab slot in use?  Then no client gets a new request in until
 * a reply goes out.  Relaxed: counters read as a hint; stale, they close
 * a stalled client one round early or late.  freed first: it never
 * passes reserved, so read before it, it cannot pass what we read of it.
 */
static bool
slab_full(const struct rp *rp)
{
	const struct shmpipe_ctl *c = rp->rp_ctl->c_hdr;
	uint64_t freed = atomic_load_explicit(&c->freed, memory_order_relaxed) +
	    atomic_load_explicit(&c->gc_freed, memory_order_relaxed);
	uint64_t reserved = atomic_load_explicit(&c->reserved,
	    memory_order_relaxed);

	return reserved > freed &&
	    reserved - freed >= rp->rp_ctl->c_g.slab_slots;
}

/*
 * Close clients that have not read for too long: RP_STALL_NS, or only
 * RP_STARVE_NS while the slab is full.  Clients that read nothing hold
 * their replies' slots, up to --conn-window each; a few of them (16 at
 * the defaults) take every slot, and the other clients, who do read,
 * would get nothing for the full RP_STALL_NS.
 */
static void
reap_stalled(struct rp *rp)
{
	uint64_t now = stage_coarse_ns(), limit;
	bool full;

	if (rp->rp_nstalled == 0)
		return;
	full = slab_full(rp);
	limit = full ? RP_STARVE_NS : RP_STALL_NS;
	for (uint32_t i = 0; rp->rp_nstalled > 0 && i < rp->rp_nconns; i++) {
		struct rp_conn *pc = &rp->rp_conns[i];
		if (pc->pc_fd < 0 || pc->pc_stall_ns == 0 ||
		    now - pc->pc_stall_ns < limit)
			continue;
		log_event("connection %u: client read nothing for %llu s%s; "
		    "closing it", i, limit / 1000000000ull, full ? " while "
		    "every reply slot was taken" : "");
		atomic_fetch_add_explicit(&rp->rp_ctl->c_hdr->slow_clients, 1,
		    memory_order_relaxed);
		finish(rp, i, true);
	}
}

/*
 * An open connection whose descriptor has not come?  The supervisor sends
 * what our channel had no room for on its next tick (we were stopped, or
 * slow, while clients connected); its replies are in the slab meanwhile.
 */
static bool
fd_owed(const struct rp *rp)
{
	const uint32_t done = SHMPIPE_CONN_RP_DONE | SHMPIPE_CONN_ABORT |
	    SHMPIPE_CONN_FILE;

	for (uint32_t i = 0; i < rp->rp_nconns; i++) {
		uint32_t f = SHMPIPE_CONN_FLAGS(conn_state(rp, i));

		if (rp->rp_conns[i].pc_fd < 0 && (f & SHMPIPE_CONN_OPEN) &&
		    !(f & done))
			return true;
	}
	return false;
}

/*
 * Drained: no processor will put again, nothing is left to take, and no
 * connection is owed us - waited for RP_OWED_NS at most, in case one
 * never comes (then its client is closed by the supervisor's exit).
 */
static bool
drained(struct rp *rp)
{
	const struct shmpipe_ctl *c = rp->rp_ctl->c_hdr;

	if (!stage_draining(rp->rp_st) ||
	    !atomic_load_explicit(&c->procs_closed, memory_order_acquire) ||
	    !stage_queue_drained(rp->rp_st->st_rep) || rp->rp_nstalled != 0)
		return false;
	if (!fd_owed(rp))
		return true;
	if (rp->rp_owed_ns == 0)
		rp->rp_owed_ns = rp->rp_now_ns;
	if (rp->rp_now_ns - rp->rp_owed_ns < RP_OWED_NS)
		return false;
	log_event("connections whose descriptor never came after %llu s: "
	    "ending the drain without them", RP_OWED_NS / 1000000000ull);
	return true;
}

/*
 * Close every connection whose requests are all answered, and let go of
 * those given up on before their descriptor came.  The request stage
 * says when a client is done with a message on the queue, but that put
 * may fail on a full queue: this look, when idle and now and then while
 * busy, is what closes such a connection.
 */
static void
sweep(struct rp *rp)
{
	rp->rp_sweep_ns = rp->rp_now_ns;
	for (uint32_t i = 0; i < rp->rp_nconns; i++)
		if (rp->rp_conns[i].pc_fd >= 0 || lost(rp, i))
			flush_conn(rp, i);
}

int
stage_reply(struct stage *st)
{
	struct rp rp;
	bool synced = st->st_chan < 0;
	int r = STAGE_EX_OK;
	unsigned held = 0;		/* replies taken since the last write */

	if (rp_setup(&rp, st) != 0) {
		rp_teardown(&rp);
		return STAGE_EX_SOFTWARE;
	}
	SHMQ_FAULT("reply.started");
	while (!synced && st->st_chan >= 0 && read_chan(&rp, &synced))
		;				/* connections we hold first */
	stage_state(st, SHMPIPE_PROC_READY);
	while (!stage_stopping(st)) {
		int n = take(&rp, rp.rp_ndirty > 0 ? 0 : rp.rp_nstalled > 0 ?
		    10 : 200);
		if (n < 0 && n != -EINTR && n != -ETIMEDOUT && n != -EAGAIN) {
			log_event("cannot take replies: %s", strerror(-n));
			r = STAGE_EX_SOFTWARE;
			break;
		}
		if (!poll_events(&rp, n <= 0))
			break;			/* the supervisor is gone */
		/* More replies waiting: take them before writing, so each
		 * client gets one write for all of its that are ready. */
		if (n == RP_BATCH && (held += n) < RP_HOLD_MAX)
			continue;
		held = 0;
		flush_dirty(&rp);
		reap_stalled(&rp);
		if (rp.rp_exit != 0) {
			r = rp.rp_exit;
			break;
		}
		if (n <= 0 || rp.rp_now_ns - rp.rp_sweep_ns >= RP_SWEEP_NS)
			sweep(&rp);		/* idle, or it is time */
		if (n <= 0 && drained(&rp))
			break;
	}
	rp_teardown(&rp);
	return r;
}
