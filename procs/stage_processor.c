/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stage_processor.c - a processor: take a few requests under lease, answer
 * each with the handlers, put the replies, then ack.  A processor that dies
 * anywhere in this loses nothing: what it had not acked is redelivered, a
 * reply it had already put is dropped as a duplicate by the reply stage.
 *
 * A redelivered request (deliveries > 1) is first looked up in the verdict
 * table, where the supervisor records the request a processor died on and
 * the one it killed for taking too long: those are answered ERR instead of
 * being run again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "msg.h"
#include "proto.h"
#include "stage.h"

#define PR_BATCH	8		/* requests taken at once */
#define PR_SLOW_NS	1000000u	/* after this, hand the rest back */

struct pr {
	struct stage	*pr_st;
	struct shmpipe_proc *pr_proc;
	const struct proto_handlers *pr_h;
	struct proto_handlers *pr_own;	/* pr_h, if we loaded it */
	unsigned char	*pr_in;		/* PR_BATCH request messages */
	unsigned char	*pr_out;	/* PR_BATCH reply messages */
	size_t		 pr_in_size;
	size_t		 pr_out_size;
	struct iovec	 pr_in_iov[PR_BATCH];
	struct iovec	 pr_out_iov[PR_BATCH];
	struct shmq_lease pr_lease[PR_BATCH];
	uint64_t	 pr_served;
	struct stage_drops pr_drops;
};

/* The verdict for (conn, seq), copied out consistently; false if none. */
static bool
verdict_find(const struct ctl *ctl, uint64_t conn, uint32_t seq,
    uint32_t *crashes, uint32_t *flags)
{
	for (uint32_t i = 0; i < ctl->c_g.nverdicts; i++) {
		struct shmpipe_verdict *v = ctl_verdict(ctl, i);
		/* Acquire: pairs with the supervisor's release of conn, which
		 * it writes last (and zeroes first when it reuses the row). */
		if (atomic_load_explicit(&v->conn, memory_order_acquire) !=
		    conn || atomic_load_explicit(&v->seq,
		    memory_order_relaxed) != seq)
			continue;
		*crashes = atomic_load_explicit(&v->crashes,
		    memory_order_relaxed);
		*flags = atomic_load_explicit(&v->flags, memory_order_relaxed);
		if (atomic_load_explicit(&v->conn, memory_order_acquire) ==
		    conn)
			return true;
	}
	return false;
}

/* A redelivered request that must not run again gets its ERR here. */
static size_t
verdict_answer(struct pr *pr, const struct msg_hdr *h, char *out, size_t cap)
{
	const struct shmpipe_ctl *c = pr->pr_st->st_ctl->c_hdr;
	uint32_t crashes, flags;
	int n;

	if (!verdict_find(pr->pr_st->st_ctl, h->mh_conn, h->mh_seq, &crashes,
	    &flags))
		return 0;
	if (flags & SHMPIPE_VERDICT_TIMEOUT) {
		n = snprintf(out, cap, "ERR timeout: the request ran longer "
		    "than %u ms", c->request_timeout_ms);
	} else if (crashes >= c->max_deliveries) {
		n = snprintf(out, cap, "ERR request crashed the processor %u "
		    "times", crashes);
		atomic_fetch_add_explicit(&pr->pr_st->st_ctl->c_hdr->quarantined,
		    1, memory_order_relaxed);
		log_event("quarantined request %u of connection %u: it "
		    "crashed %u processors", h->mh_seq,
		    SHMPIPE_CONN_SLOT(h->mh_conn), crashes);
	} else {
		return 0;
	}
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Tell the supervisor which request we are on since now (coarse ns), for
 * timeouts and crashes. */
static void
busy(struct pr *pr, const struct msg_hdr *h, uint64_t now)
{
	/* Release fence: idle()'s 0 (or the last request's stamp) before
	 * the new conn and seq; pairs with the acquire fence in
	 * sv_timeouts, which then sees the stamp change if it read them. */
	atomic_thread_fence(memory_order_release);
	/* Relaxed: published by the release store of busy_since. */
	atomic_store_explicit(&pr->pr_proc->cur_conn, h->mh_conn,
	    memory_order_relaxed);
	atomic_store_explicit(&pr->pr_proc->cur_seq, h->mh_seq,
	    memory_order_relaxed);
	/* Release: pairs with the supervisor's acquire of busy_since. */
	atomic_store_explicit(&pr->pr_proc->busy_since_ns, now,
	    memory_order_release);
}

static void
idle(struct pr *pr)
{
	atomic_store_explicit(&pr->pr_proc->busy_since_ns, 0,
	    memory_order_release);
}

/* Build the reply to request i of the batch, in reply slot i, starting
 * at now (coarse ns). */
static void
answer(struct pr *pr, unsigned i, uint64_t now)
{
	const struct msg_hdr *h = pr->pr_in_iov[i].iov_base;
	const char *line = (const char *)(h + 1);
	size_t len = pr->pr_in_iov[i].iov_len - sizeof(*h);
	struct msg_hdr *rh = (struct msg_hdr *)(pr->pr_out +
	    i * pr->pr_out_size);
	char *out = (char *)(rh + 1);
	size_t cap = pr->pr_st->st_ctl->c_g.reply_max, n = 0;

	*rh = *h;
	rh->mh_flags = 0;
	if (h->mh_flags & MSG_TOO_LONG)
		n = proto_err_too_long(pr->pr_st->st_ctl->c_g.max_line, out,
		    cap);
	else if (pr->pr_lease[i].deliveries > 1)
		n = verdict_answer(pr, h, out, cap);
	if (n == 0) {
		busy(pr, h, now);
		n = proto_handle(pr->pr_h, line, len,
		    pr->pr_lease[i].deliveries, out, cap);
		idle(pr);
	}
	pr->pr_out_iov[i] = (struct iovec){ rh, sizeof(*rh) + n };
}

/* Put replies [0, n) on the reply queue, then ack their requests. */
static int
flush(struct pr *pr, unsigned n)
{
	for (unsigned done = 0; done < n; ) {
		int r = shmq_put_batch(pr->pr_st->st_rep, pr->pr_out_iov + done,
		    n - done, -1);
		if (r == -EINTR)
			continue;
		if (r < 0) {
			log_event("cannot put replies: %s", strerror(-r));
			return -1;
		}
		done += (unsigned)r;
	}
	for (unsigned i = 0; i < n; i++)
		shmq_ack(pr->pr_st->st_req, &pr->pr_lease[i]);
	pr->pr_served += n;
	atomic_store_explicit(&pr->pr_proc->served, pr->pr_served,
	    memory_order_relaxed);
	atomic_fetch_add_explicit(&pr->pr_proc->served_total, n,
	    memory_order_relaxed);
	return 0;
}

/*
 * Drop the messages of a batch of n too short for a request's header (no
 * request stage put them: nobody to answer), and close up the rest.  How
 * many are left.
 */
static unsigned
drop_malformed(struct pr *pr, unsigned n)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++) {
		if (pr->pr_in_iov[i].iov_len >= sizeof(struct msg_hdr)) {
			pr->pr_in_iov[k] = pr->pr_in_iov[i];
			pr->pr_lease[k++] = pr->pr_lease[i];
			continue;
		}
		stage_malformed(&pr->pr_drops, "request",
		    pr->pr_in_iov[i].iov_len);
		shmq_ack(pr->pr_st->st_req, &pr->pr_lease[i]);
	}
	return k;
}

/*
 * Answer a batch.  If it is slow going (a long request among short ones),
 * the requests not yet started go back to the queue for other processors.
 * The coarse clock, free to read, says when it may be: it moves a tick
 * at a time (4 ms at HZ=250), so by it alone any batch that straddled a
 * tick looked slow, and under load some 30 batches a second went back
 * to the queue for nothing (counted as redeliveries).  The exact clock
 * decides, read once a batch and again only after a tick.
 */
static int
handle_batch(struct pr *pr, unsigned n)
{
	uint64_t t0 = stage_coarse_ns(), now = t0, start = stage_now_ns();
	unsigned i;

	n = drop_malformed(pr, n);
	for (i = 0; i < n; i++) {
		if (i > 0 && (now = stage_coarse_ns()) != t0 &&
		    stage_now_ns() - start > PR_SLOW_NS)
			break;
		answer(pr, i, now);
	}
	for (unsigned k = i; k < n; k++)
		shmq_release(pr->pr_st->st_req, &pr->pr_lease[k]);
	return flush(pr, i);
}

static int
pr_setup(struct pr *pr, struct stage *st)
{
	char err[256];

	memset(pr, 0, sizeof(*pr));
	pr->pr_st = st;
	pr->pr_proc = stage_proc(st);
	/* A thread must not run init() and fini() on an object other
	 * threads share (stage.h): it is given the one they all use. */
	if ((pr->pr_h = st->st_handlers) == NULL) {
		pr->pr_own = proto_load(st->st_opt->handler,
		    st->st_opt->enable_crash, err, sizeof(err));
		if ((pr->pr_h = pr->pr_own) == NULL) {
			log_event("%s", err);
			return STAGE_EX_CONFIG;
		}
	}
	/* A line may carry a '\r' past max_line (proto strips it). */
	pr->pr_in_size = MSG_STRIDE(sizeof(struct msg_hdr) +
	    st->st_ctl->c_g.max_line + 1);
	pr->pr_out_size = MSG_STRIDE(sizeof(struct msg_hdr) +
	    st->st_ctl->c_g.reply_max);
	pr->pr_in = malloc(PR_BATCH * pr->pr_in_size);
	pr->pr_out = malloc(PR_BATCH * pr->pr_out_size);
	if (pr->pr_in == NULL || pr->pr_out == NULL) {
		log_event("out of memory");
		return STAGE_EX_SOFTWARE;
	}
	return 0;
}

static void
pr_teardown(struct pr *pr)
{
	proto_unload(pr->pr_own);	/* NULL: none, or not ours */
	free(pr->pr_in);
	free(pr->pr_out);
}

/* Nothing more will come: draining, the request stage closed, all done. */
static bool
drained(struct pr *pr)
{
	const struct shmpipe_ctl *c = pr->pr_st->st_ctl->c_hdr;

	return stage_draining(pr->pr_st) &&
	    atomic_load_explicit(&c->req_closed, memory_order_acquire) &&
	    stage_queue_drained(pr->pr_st->st_req);
}

/* Take a batch, no more than max_requests leaves room for. */
static int
take(struct pr *pr)
{
	uint64_t max = pr->pr_st->st_opt->max_requests;
	unsigned n = max != 0 && max - pr->pr_served < PR_BATCH ?
	    (unsigned)(max - pr->pr_served) : PR_BATCH;

	for (unsigned i = 0; i < n; i++)
		pr->pr_in_iov[i] = (struct iovec){ pr->pr_in + i *
		    pr->pr_in_size, pr->pr_in_size };
	return shmq_take_batch(pr->pr_st->st_req, pr->pr_in_iov,
	    pr->pr_lease, n, stage_draining(pr->pr_st) ? 100 : -1);
}

int
stage_processor(struct stage *st)
{
	uint64_t max = st->st_opt->max_requests;
	struct pr pr;
	int r;

	if ((r = pr_setup(&pr, st)) != 0) {
		pr_teardown(&pr);
		return r;
	}
	stage_state(st, SHMPIPE_PROC_READY);
	while (!stage_stopping(st) && (max == 0 || pr.pr_served < max)) {
		int n = take(&pr);
		if (n == -EINTR || n == -ETIMEDOUT || n == -EAGAIN) {
			if (drained(&pr))
				break;
			continue;
		}
		if (n < 0) {
			log_event("cannot take requests: %s", strerror(-n));
			r = STAGE_EX_SOFTWARE;
			break;
		}
		if (handle_batch(&pr, (unsigned)n) != 0) {
			r = STAGE_EX_SOFTWARE;
			break;
		}
	}
	if (max != 0 && pr.pr_served >= max)
		log_info("recycling after %" PRIu64 " requests", pr.pr_served);
	stage_state(st, SHMPIPE_PROC_STOPPING);
	pr_teardown(&pr);
	return r;
}
