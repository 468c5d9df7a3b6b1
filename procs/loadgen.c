/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * loadgen.c - shmpipe-bench, the verifying load generator: pipelined
 * requests over many connections from one epoll loop per thread, and a
 * check that every reply answers its own request, in order, exactly once.
 *
 * Each request carries an argument unique to its (connection, sequence),
 * so its reply names the request it answers.  The expected reply is what
 * the server gives for the same line: proto_handle() with its reply size,
 * or its ERR for a line over its --max-line; replies that are the same for
 * many requests (sha256 and fib tables, a fixed -a) are computed once.
 *
 * A connection's replies are matched against a cursor, the oldest request
 * not yet answered.  A reply for a later request moves the cursor past
 * the ones it skipped, which count as missing until their reply turns up
 * late (then out of order).  A reply matching an answered request is a
 * duplicate; one matching nothing is wrong (it takes the cursor's place),
 * unless the right reply follows: then it was an extra line.
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "loadgen_opts.h"
#include "loadgen_stats.h"
#include "handlers.h"
#include "proto.h"
#include "shmq.h"
#include "utf8.h"

#define EXIT_WRONG	1	/* a reply was not right */
#define EXIT_CONNECT	2	/* could not connect */
#define EXIT_USAGE	64

#define FIB_SPREAD	21	/* fib without -a: arguments 0..20 */
#define SHA_TABLE	4096	/* distinct sha256 arguments */
#define TABLE_STRIDE	7919	/* shifts each connection's walk of a table */
#define TAG_MAX		48	/* "CONN:SEQ:" at most */
#define RING_MIN	64	/* requests remembered per connection, at least */
#define TICK_MS		20	/* timeouts, retries, deadline checked this often */
#define RETRY_MS	50	/* between attempts to re-open a connection */
#define RECONNECT_MS	100	/* a re-connect blocks the loop this long at most */
#define DRAIN_MS	200	/* after its last reply, wait this long for EOF */
#define DETAILS_MAX	10	/* mismatches described on stderr, per thread */
#define RBUF_MIN	16384
#define WBUF_MAX	(256 * 1024)	/* a batch of requests, at most */
#define EVENTS_MAX	256

enum seq_state {
	SEQ_PENDING,		/* sent, not answered */
	SEQ_DONE,		/* answered */
	SEQ_MISSING,		/* skipped by a later reply; counted missing */
	SEQ_WRONG		/* took a line that matched nothing */
};

enum cn_phase {
	CN_RUNNING,		/* sending and receiving */
	CN_DRAINING,		/* all answered, half-closed: extra replies? */
	CN_RETRY,		/* dropped, to be opened again */
	CN_DONE
};

enum lost {
	LOST_DROP,		/* the server closed or reset it */
	LOST_TIMEOUT,		/* its oldest request went unanswered */
	LOST_PROTOCOL		/* it sent a line too long to be a reply */
};

/* The read-only plan of a run, shared by every worker. */
struct plan {
	const struct loadgen_opts *pl_opts;
	struct proto_handlers	*pl_proto;
	struct sockaddr_storage	 pl_addr;
	socklen_t		 pl_addrlen;
	char			 pl_target[320];	/* for reports: raw */
	char			*pl_pad;	/* lo_size bytes of filler */
	size_t			 pl_verb_len;
	unsigned		 pl_table;	/* expectation table; 0: none */
	uint64_t		 pl_crash_seq;	/* on connection 0; or MAX */
	size_t			 pl_line_max;	/* request line, no '\n' */
	size_t			 pl_reply_cap;	/* the server's reply_max */
	size_t			 pl_rline_max;	/* a reply line accepted */
	size_t			 pl_wbuf;	/* a batch of requests */
	unsigned		 pl_ring;	/* power of two >= 2 * depth */
	uint64_t		 pl_start_ns;
	uint64_t		 pl_deadline_ns;	/* -t; UINT64_MAX for -n */
};

struct slot {
	uint64_t	sl_ns;		/* when the request was written */
	uint8_t		sl_state;	/* enum seq_state */
};

struct conn {
	struct worker	*cn_w;
	int		 cn_fd;
	unsigned	 cn_id;		/* 0..conns-1, in every payload */
	enum cn_phase	 cn_phase;
	bool		 cn_pollout;	/* EPOLLOUT asked for */
	uint64_t	 cn_quota;	/* requests it may send in all */
	uint64_t	 cn_sent;	/* requests sent; the next one's seq */
	uint64_t	 cn_next;	/* the oldest request not answered */
	uint64_t	 cn_since;	/* when it began retrying or draining */
	uint64_t	 cn_retry_ns;	/* next attempt to re-open it */
	struct slot	*cn_ring;	/* request seq at seq & (ring - 1) */
	char		*cn_wbuf;
	size_t		 cn_wlen;	/* bytes in cn_wbuf */
	size_t		 cn_woff;	/* of which written */
	char		*cn_rbuf;
	size_t		 cn_rlen;
	size_t		 cn_rcap;
};

/* An expected reply of a table entry, computed on first use. */
struct expect {
	char		*ex_text;	/* NULL until computed */
	size_t		 ex_len;
};

/* One event loop: its connections, counters and scratch space. */
struct worker {
	const struct plan *w_plan;
	unsigned	 w_index;
	int		 w_ep;
	struct conn	*w_conns;
	unsigned	 w_nconns;
	unsigned	 w_active;	/* connections not CN_DONE */
	struct expect	*w_cache;	/* pl_table entries */
	char		*w_line;	/* a request line, rebuilt */
	char		*w_reply;	/* its expected reply */
	uint64_t	 w_last_ns;	/* when the last reply came */
	uint64_t	 w_tick_ns;
	unsigned	 w_details;	/* mismatches described so far */
	bool		 w_crash_sent;
	struct loadgen_result w_res;
	struct loadgen_hist w_hist;
	pthread_t	 w_thread;
};

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (p == NULL)
		err(EXIT_FAILURE, "calloc");
	return p;
}


/* The bytes of s, printable, quoted and cut short, for a message. */
static const char *
shown(char *buf, size_t cap, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	buf[o++] = '\'';
	for (i = 0; i < n && o + 8 < cap; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= ' ' && c <= '~' && c != '\\') {
			buf[o++] = (char)c;
			continue;
		}
		buf[o++] = '\\';
		buf[o++] = 'x';
		buf[o++] = hex[c >> 4];
		buf[o++] = hex[c & 15];
	}
	buf[o++] = '\'';
	if (i < n) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

/* ---- requests and their expected replies ------------------------------ */

/* The argument of table entry i: sha256 "#I:" and filler, fib I, or -a. */
static size_t
entry_arg(const struct plan *pl, unsigned i, char *out)
{
	const struct loadgen_opts *o = pl->pl_opts;
	size_t n;

	if (o->lo_arg != NULL) {
		n = strlen(o->lo_arg);
		memcpy(out, o->lo_arg, n);
		return n;
	}
	if (o->lo_kind == LOADGEN_FIB)
		return handlers_u64(out, i);
	out[0] = '#';
	n = 1 + handlers_u64(out + 1, i);
	out[n++] = ':';
	if (n < o->lo_size) {
		memcpy(out + n, pl->pl_pad + n, o->lo_size - n);
		n = o->lo_size;
	}
	return n;
}

/* The argument unique to (connection, seq): "CONN:SEQ:" and filler. */
static size_t
unique_arg(const struct plan *pl, unsigned id, uint64_t seq, char *out)
{
	size_t n, size = pl->pl_opts->lo_size;

	n = handlers_u64(out, id);
	out[n++] = ':';
	n += handlers_u64(out + n, seq);
	out[n++] = ':';
	if (n < size) {
		memcpy(out + n, pl->pl_pad + n, size - n);
		n = size;
	}
	return n;
}

static unsigned
entry_of(const struct plan *pl, unsigned id, uint64_t seq)
{
	return (unsigned)((seq + (uint64_t)id * TABLE_STRIDE) % pl->pl_table);
}

static bool
is_crash(const struct plan *pl, unsigned id, uint64_t seq)
{
	return id == 0 && seq == pl->pl_crash_seq;
}

/* "VERB " at out; the length. */
static size_t
verb_prefix(const struct plan *pl, char *out)
{
	memcpy(out, pl->pl_opts->lo_verb, pl->pl_verb_len);
	out[pl->pl_verb_len] = ' ';
	return pl->pl_verb_len + 1;
}

/* Request seq of connection id as a line without its '\n'; the length. */
static size_t
request_line(const struct plan *pl, unsigned id, uint64_t seq, char *out)
{
	size_t n;

	if (is_crash(pl, id, seq)) {
		memcpy(out, "crash", 5);
		return 5;
	}
	n = verb_prefix(pl, out);
	if (pl->pl_table != 0)
		return n + entry_arg(pl, entry_of(pl, id, seq), out + n);
	return n + unique_arg(pl, id, seq, out + n);
}

/*
 * The server's reply to a request line of n bytes: as proto_handle() with
 * the room its --max-line gives a reply (ctl_reply_max), which shows in
 * the text of "result too long"; or its ERR for a line over --max-line.
 */
static size_t
server_reply(const struct plan *pl, const char *line, size_t n, char *out)
{
	uint32_t max = pl->pl_opts->lo_max_line;

	if (n > max)
		return proto_err_too_long(max, out, pl->pl_reply_cap);
	return proto_handle(pl->pl_proto, line, n, 1, out, pl->pl_reply_cap);
}

/* sleep's reply, made without sleeping: "OK MS" (-a is checked). */
static size_t
sleep_reply(const struct plan *pl, char *out)
{
	const char *errstr;
	long long ms;

	ms = strtonum(pl->pl_opts->lo_arg, 0, PROTO_SLEEP_MAX, &errstr);
	memcpy(out, "OK ", 3);
	return 3 + handlers_u64(out + 3, (uint64_t)ms);
}

/* The expected reply of table entry i, computed the first time. */
static const struct expect *
table_expect(struct worker *w, unsigned i)
{
	const struct plan *pl = w->w_plan;
	struct expect *ex = &w->w_cache[i];
	size_t n, len;

	if (ex->ex_text != NULL)
		return ex;
	if (pl->pl_opts->lo_kind == LOADGEN_SLEEP) {
		len = sleep_reply(pl, w->w_reply);
	} else {
		n = verb_prefix(pl, w->w_line);
		n += entry_arg(pl, i, w->w_line + n);
		len = server_reply(pl, w->w_line, n, w->w_reply);
	}
	if ((ex->ex_text = malloc(len + 1)) == NULL)
		err(EXIT_FAILURE, "malloc");
	memcpy(ex->ex_text, w->w_reply, len);
	ex->ex_len = len;
	return ex;
}

/* The expected reply to request seq of cn (not the crash request). */
static const char *
expected(struct worker *w, const struct conn *cn, uint64_t seq,
    size_t *lenp)
{
	const struct plan *pl = w->w_plan;
	const struct expect *ex;
	size_t n;

	if (pl->pl_table != 0) {
		ex = table_expect(w, entry_of(pl, cn->cn_id, seq));
		*lenp = ex->ex_len;
		return ex->ex_text;
	}
	n = request_line(pl, cn->cn_id, seq, w->w_line);
	*lenp = server_reply(pl, w->w_line, n, w->w_reply);
	return w->w_reply;
}

static bool
is_err(const char *line, size_t len)
{
	return len >= 3 && memcmp(line, "ERR", 3) == 0 &&
	    (len == 3 || line[3] == ' ');
}

/* Whether line is the reply request seq of cn expects. */
static bool
reply_matches(struct worker *w, const struct conn *cn, uint64_t seq,
    const char *line, size_t len)
{
	const char *want;
	size_t wlen;

	if (is_crash(w->w_plan, cn->cn_id, seq))
		return is_err(line, len);
	want = expected(w, cn, seq, &wlen);
	return wlen == len && memcmp(want, line, len) == 0;
}

/* ---- verdicts on replies ---------------------------------------------- */

static struct slot *
slot_of(const struct conn *cn, uint64_t seq)
{
	return &cn->cn_ring[seq & (cn->cn_w->w_plan->pl_ring - 1)];
}

static bool
quiet(const struct worker *w)
{
	return w->w_plan->pl_opts->lo_quiet;
}

/* Describe a mismatch on stderr, the first DETAILS_MAX of each thread. */
static void __attribute__((format(printf, 2, 3)))
detail(struct worker *w, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (quiet(w) || w->w_details > DETAILS_MAX)
		return;
	if (w->w_details++ == DETAILS_MAX) {
		warnx("further mismatches not described");
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	warnx("%s", msg);
}

/* Request seq of cn has its right reply, read at now: time it. */
static void
reply_time(struct worker *w, struct conn *cn, uint64_t seq, uint64_t now)
{
	struct slot *sl = slot_of(cn, seq);

	sl->sl_state = SEQ_DONE;
	loadgen_hist_record(&w->w_hist, now - sl->sl_ns);
}

/* Request seq of cn got its right reply line, in its turn. */
static void
reply_right(struct worker *w, struct conn *cn, uint64_t seq,
    const char *line, size_t len, uint64_t now)
{
	if (is_err(line, len))
		w->w_res.lr_err++;
	else
		w->w_res.lr_ok++;
	reply_time(w, cn, seq, now);
}

/* A pending request after the cursor that line answers: its seq, or 0. */
static uint64_t
find_ahead(struct worker *w, const struct conn *cn, const char *line,
    size_t len)
{
	for (uint64_t q = cn->cn_next + 1; q < cn->cn_sent; q++)
		if (reply_matches(w, cn, q, line, len))
			return q;
	return 0;
}

/* An answered or skipped request that line answers: its seq + 1, or 0. */
static uint64_t
find_behind(struct worker *w, const struct conn *cn, const char *line,
    size_t len)
{
	uint64_t ring = w->w_plan->pl_ring;
	uint64_t low = cn->cn_sent > ring ? cn->cn_sent - ring : 0;

	for (uint64_t q = cn->cn_next; q > low; q--)
		if (reply_matches(w, cn, q - 1, line, len))
			return q;
	return 0;
}

/* line answers request q > cursor: the ones between are missing (yet). */
static void
reply_ahead(struct worker *w, struct conn *cn, uint64_t q, const char *line,
    size_t len, uint64_t now)
{
	for (uint64_t s = cn->cn_next; s < q; s++)
		slot_of(cn, s)->sl_state = SEQ_MISSING;
	w->w_res.lr_missing += q - cn->cn_next;
	detail(w, "connection %u: reply to request %" PRIu64 " came while "
	    "%" PRIu64 " earlier one(s) from %" PRIu64 " were unanswered",
	    cn->cn_id, q, q - cn->cn_next, cn->cn_next);
	reply_right(w, cn, q, line, len, now);
	cn->cn_next = q + 1;
}

/*
 * line answers request q < cursor: late (it was missing), right after a
 * line that took its place (that was an extra one), or again.
 */
static void
reply_behind(struct worker *w, struct conn *cn, uint64_t q, const char *line,
    size_t len, uint64_t now)
{
	switch (slot_of(cn, q)->sl_state) {
	case SEQ_MISSING:
		w->w_res.lr_missing--;
		w->w_res.lr_out_of_order++;
		reply_time(w, cn, q, now);
		detail(w, "connection %u: reply to request %" PRIu64 " came "
		    "out of order, after later ones", cn->cn_id, q);
		return;
	case SEQ_WRONG:
		w->w_res.lr_wrong--;
		w->w_res.lr_duplicated++;
		reply_right(w, cn, q, line, len, now);
		detail(w, "connection %u: request %" PRIu64 " got its reply "
		    "after all: the line before was an extra one", cn->cn_id, q);
		return;
	default:
		break;
	}
	w->w_res.lr_duplicated++;
	detail(w, "connection %u: request %" PRIu64 " was answered again",
	    cn->cn_id, q);
}

/* line answers nothing: wrong in the cursor's place, or extra. */
static void
reply_wrong(struct worker *w, struct conn *cn, const char *line, size_t len)
{
	char got[128], want[128];
	const char *text = "an ERR line";
	size_t tlen = 11;

	if (cn->cn_next == cn->cn_sent) {
		w->w_res.lr_duplicated++;
		detail(w, "connection %u: extra reply %s with no request "
		    "outstanding", cn->cn_id, shown(got, sizeof(got), line,
		    len));
		return;
	}
	if (!is_crash(w->w_plan, cn->cn_id, cn->cn_next))
		text = expected(w, cn, cn->cn_next, &tlen);
	w->w_res.lr_wrong++;
	slot_of(cn, cn->cn_next)->sl_state = SEQ_WRONG;
	detail(w, "connection %u: request %" PRIu64 " got %s, expected %s",
	    cn->cn_id, cn->cn_next, shown(got, sizeof(got), line, len),
	    shown(want, sizeof(want), text, tlen));
	cn->cn_next++;
}

/* One reply line (no '\n') read on cn at now. */
static void
reply_take(struct worker *w, struct conn *cn, const char *line, size_t len,
    uint64_t now)
{
	uint64_t q;

	w->w_res.lr_replies++;
	if (cn->cn_next < cn->cn_sent &&
	    reply_matches(w, cn, cn->cn_next, line, len)) {
		reply_right(w, cn, cn->cn_next++, line, len, now);
		return;
	}
	if ((q = find_ahead(w, cn, line, len)) != 0)
		reply_ahead(w, cn, q, line, len, now);
	else if ((q = find_behind(w, cn, line, len)) != 0)
		reply_behind(w, cn, q - 1, line, len, now);
	else
		reply_wrong(w, cn, line, len);
}

/* ---- connections ------------------------------------------------------ */

static int
set_timeout(int fd, unsigned ms)
{
	struct timeval tv = { .tv_sec = ms / 1000,
	    .tv_usec = (suseconds_t)(ms % 1000) * 1000 };

	return setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/*
 * Open cn's socket: connect (blocking, at most ms), then make it
 * non-blocking and watch it.  Returns 0 or a negative errno.
 */
static int
conn_open(struct conn *cn, unsigned ms)
{
	const struct plan *pl = cn->cn_w->w_plan;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = cn };
	int fd, one = 1, rc;

	fd = socket(pl->pl_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (set_timeout(fd, ms) == -1 ||
	    connect(fd, (const struct sockaddr *)&pl->pl_addr,
	    pl->pl_addrlen) == -1)
		goto out_close;
	if (pl->pl_addr.ss_family != AF_UNIX)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
	if (fcntl(fd, F_SETFL, O_NONBLOCK) == -1 ||
	    epoll_ctl(cn->cn_w->w_ep, EPOLL_CTL_ADD, fd, &ev) == -1)
		goto out_close;
	cn->cn_fd = fd;
	cn->cn_phase = CN_RUNNING;
	cn->cn_pollout = false;
	cn->cn_wlen = cn->cn_woff = cn->cn_rlen = 0;
	return 0;

out_close:
	rc = errno == EINPROGRESS ? -ETIMEDOUT : -errno;
	close(fd);
	return rc;
}

static void
conn_close(struct conn *cn, enum cn_phase next)
{
	if (cn->cn_fd != -1) {
		(void)epoll_ctl(cn->cn_w->w_ep, EPOLL_CTL_DEL, cn->cn_fd, NULL);
		close(cn->cn_fd);
		cn->cn_fd = -1;
	}
	if (next == CN_DONE)
		cn->cn_w->w_active--;
	cn->cn_phase = next;
}

/* Whether a dropped cn is to be opened again. */
static bool
conn_may_retry(const struct conn *cn, uint64_t now)
{
	const struct plan *pl = cn->cn_w->w_plan;

	return pl->pl_opts->lo_reconnect && cn->cn_sent < cn->cn_quota &&
	    now < pl->pl_deadline_ns;
}

static const char *const lost_what[] = {
	[LOST_DROP] = "dropped by the server",
	[LOST_TIMEOUT] = "timed out",
	[LOST_PROTOCOL] = "closed: a reply line was too long",
};

/* cn is gone: count it and its unanswered requests; retry or end it. */
static void
conn_lost(struct conn *cn, enum lost why, int error)
{
	struct worker *w = cn->cn_w;
	uint64_t now = now_ns(), left = cn->cn_sent - cn->cn_next;
	bool abandon = why == LOST_DROP && w->w_plan->pl_opts->lo_reconnect;

	if (why == LOST_DROP)
		w->w_res.lr_dropped++;
	if (why == LOST_TIMEOUT)
		w->w_res.lr_timeouts++;
	if (abandon)
		w->w_res.lr_abandoned += left;
	else
		w->w_res.lr_missing += left;
	if (!quiet(w))
		warnx("connection %u: %s%s%s, %" PRIu64 " request(s) %s",
		    cn->cn_id, lost_what[why], error != 0 ? ": " : "",
		    error != 0 ? strerror(error) : "", left,
		    abandon ? "abandoned" : "unanswered");
	cn->cn_next = cn->cn_sent;
	cn->cn_since = cn->cn_retry_ns = now;
	conn_close(cn, conn_may_retry(cn, now) ? CN_RETRY : CN_DONE);
}

static void
conn_pollout(struct conn *cn, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0),
	    .data.ptr = cn };

	if (cn->cn_pollout == on)
		return;
	cn->cn_pollout = on;
	(void)epoll_ctl(cn->cn_w->w_ep, EPOLL_CTL_MOD, cn->cn_fd, &ev);
}

/* Write what cn_wbuf holds.  Returns whether it is all written. */
static bool
conn_flush(struct conn *cn)
{
	ssize_t n;

	while (cn->cn_woff < cn->cn_wlen) {
		n = send(cn->cn_fd, cn->cn_wbuf + cn->cn_woff,
		    cn->cn_wlen - cn->cn_woff, MSG_NOSIGNAL);
		if (n > 0) {
			cn->cn_woff += (size_t)n;
		} else if (errno == EAGAIN) {
			conn_pollout(cn, true);
			return false;
		} else if (errno != EINTR) {
			conn_lost(cn, LOST_DROP, errno);
			return false;
		}
	}
	conn_pollout(cn, false);
	cn->cn_wlen = cn->cn_woff = 0;
	return true;
}

/* All sent and answered: half-close and wait for EOF (extra replies?). */
static void
conn_finish(struct conn *cn, uint64_t now)
{
	(void)shutdown(cn->cn_fd, SHUT_WR);
	cn->cn_phase = CN_DRAINING;
	cn->cn_since = now;
}

/* Append requests while the window and the batch have room. */
static void
conn_batch(struct conn *cn, uint64_t now)
{
	const struct plan *pl = cn->cn_w->w_plan;
	size_t room = pl->pl_line_max + 1;

	while (cn->cn_sent < cn->cn_quota &&
	    cn->cn_sent - cn->cn_next < pl->pl_opts->lo_depth &&
	    cn->cn_wlen + room <= pl->pl_wbuf) {
		char *p = cn->cn_wbuf + cn->cn_wlen;
		size_t n = request_line(pl, cn->cn_id, cn->cn_sent, p);

		p[n] = '\n';
		cn->cn_wlen += n + 1;
		slot_of(cn, cn->cn_sent)->sl_ns = now;
		slot_of(cn, cn->cn_sent)->sl_state = SEQ_PENDING;
		if (is_crash(pl, cn->cn_id, cn->cn_sent))
			cn->cn_w->w_crash_sent = true;
		cn->cn_sent++;
		cn->cn_w->w_res.lr_sent++;
	}
}

/* Send what the window allows, in as few writes as the batch size lets. */
static void
conn_fill(struct conn *cn)
{
	const struct plan *pl = cn->cn_w->w_plan;
	uint64_t now;

	while (cn->cn_phase == CN_RUNNING && cn->cn_woff == cn->cn_wlen) {
		now = now_ns();
		if (now >= pl->pl_deadline_ns)
			cn->cn_quota = cn->cn_sent;
		if (cn->cn_sent == cn->cn_quota && cn->cn_next == cn->cn_sent) {
			conn_finish(cn, now);
			return;
		}
		conn_batch(cn, now);
		if (cn->cn_wlen == 0 || !conn_flush(cn))
			return;
	}
}

/* Make room to read: grow the buffer, or give up on an endless line. */
static bool
conn_room(struct conn *cn)
{
	const struct plan *pl = cn->cn_w->w_plan;
	size_t cap;
	char *p;

	if (cn->cn_rlen < cn->cn_rcap)
		return true;
	if (cn->cn_rcap >= pl->pl_rline_max) {
		cn->cn_w->w_res.lr_replies++;
		reply_wrong(cn->cn_w, cn, cn->cn_rbuf, cn->cn_rlen);
		conn_lost(cn, LOST_PROTOCOL, 0);
		return false;
	}
	cap = cn->cn_rcap * 2 < pl->pl_rline_max ? cn->cn_rcap * 2 :
	    pl->pl_rline_max;
	if ((p = realloc(cn->cn_rbuf, cap)) == NULL)
		err(EXIT_FAILURE, "realloc");
	cn->cn_rbuf = p;
	cn->cn_rcap = cap;
	return true;
}

/* Take every whole line in cn_rbuf; keep the partial one. */
static void
conn_parse(struct conn *cn, uint64_t now)
{
	char *p = cn->cn_rbuf, *end = cn->cn_rbuf + cn->cn_rlen, *nl;

	while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		reply_take(cn->cn_w, cn, p, (size_t)(nl - p), now);
		p = nl + 1;
	}
	if (p != cn->cn_rbuf) {
		cn->cn_w->w_last_ns = now;
		cn->cn_rlen = (size_t)(end - p);
		memmove(cn->cn_rbuf, p, cn->cn_rlen);
	}
}

/* EOF or an error on read: the end of a draining cn, else a drop. */
static void
conn_eof(struct conn *cn, int error)
{
	if (cn->cn_phase == CN_DRAINING)
		conn_close(cn, CN_DONE);
	else
		conn_lost(cn, LOST_DROP, error);
}

/* cn is readable: read, check the replies, send what they make room for. */
static void
conn_read(struct conn *cn)
{
	ssize_t n;
	size_t want;

	for (;;) {
		if (!conn_room(cn))
			return;
		want = cn->cn_rcap - cn->cn_rlen;
		n = read(cn->cn_fd, cn->cn_rbuf + cn->cn_rlen, want);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			break;
		if (n <= 0) {
			conn_eof(cn, n == 0 ? 0 : errno);
			return;
		}
		cn->cn_rlen += (size_t)n;
		conn_parse(cn, now_ns());
		if ((size_t)n < want)
			break;
	}
	conn_fill(cn);
}

/* cn is writable again: finish the batch, then send more. */
static void
conn_write(struct conn *cn)
{
	if (conn_flush(cn))
		conn_fill(cn);
}

/* ---- the event loop --------------------------------------------------- */

/* Try to open a dropped cn again; give up after the timeout. */
static void
conn_retry(struct conn *cn, uint64_t now)
{
	struct worker *w = cn->cn_w;
	uint64_t limit = (uint64_t)w->w_plan->pl_opts->lo_timeout_ms * 1000000;
	int rc;

	if (now < cn->cn_retry_ns)
		return;
	if (!conn_may_retry(cn, now)) {
		conn_close(cn, CN_DONE);
		return;
	}
	if ((rc = conn_open(cn, RECONNECT_MS)) == 0) {
		w->w_res.lr_reconnects++;
		conn_fill(cn);
		return;
	}
	if (now - cn->cn_since < limit) {
		cn->cn_retry_ns = now + RETRY_MS * 1000000ull;
		return;
	}
	w->w_res.lr_reconnect_failed++;
	if (!quiet(w))
		warnx("connection %u: cannot re-open it: %s", cn->cn_id,
		    strerror(-rc));
	conn_close(cn, CN_DONE);
}

/* Periodic duties of cn: its timeout, retry, deadline or drain. */
static void
conn_tick(struct conn *cn, uint64_t now)
{
	const struct plan *pl = cn->cn_w->w_plan;
	uint64_t limit = (uint64_t)pl->pl_opts->lo_timeout_ms * 1000000;

	switch (cn->cn_phase) {
	case CN_RUNNING:
		if (cn->cn_next < cn->cn_sent &&
		    now - slot_of(cn, cn->cn_next)->sl_ns > limit)
			conn_lost(cn, LOST_TIMEOUT, 0);
		else if (now >= pl->pl_deadline_ns)
			conn_fill(cn);
		break;
	case CN_DRAINING:
		if (now - cn->cn_since > DRAIN_MS * 1000000ull)
			conn_close(cn, CN_DONE);
		break;
	case CN_RETRY:
		conn_retry(cn, now);
		break;
	case CN_DONE:
		break;
	}
}

static void
worker_tick(struct worker *w)
{
	uint64_t now = now_ns();

	if (now - w->w_tick_ns < TICK_MS * 1000000ull)
		return;
	w->w_tick_ns = now;
	for (unsigned i = 0; i < w->w_nconns; i++)
		conn_tick(&w->w_conns[i], now);
}

static void
worker_event(const struct epoll_event *ev)
{
	struct conn *cn = ev->data.ptr;

	if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		conn_read(cn);
	if ((ev->events & EPOLLOUT) && cn->cn_phase == CN_RUNNING)
		conn_write(cn);
}

static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	struct epoll_event ev[EVENTS_MAX];
	int n;

	w->w_tick_ns = now_ns();
	for (unsigned i = 0; i < w->w_nconns; i++)
		conn_fill(&w->w_conns[i]);
	while (w->w_active > 0) {
		n = epoll_wait(w->w_ep, ev, EVENTS_MAX, TICK_MS);
		if (n == -1 && errno != EINTR)
			err(EXIT_FAILURE, "epoll_wait");
		for (int i = 0; i < n; i++)
			worker_event(&ev[i]);
		worker_tick(w);
	}
	return NULL;
}

/* ---- setting up ------------------------------------------------------- */

/* The target's address, or exit 2 if it cannot be had. */
static void
plan_target(struct plan *pl)
{
	const struct loadgen_opts *o = pl->pl_opts;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	struct sockaddr_un *sa = (struct sockaddr_un *)&pl->pl_addr;
	char text[sizeof(o->lo_host) * 3];	/* the user's bytes, shown */
	int rc;

	if (o->lo_unix != NULL) {
		sa->sun_family = AF_UNIX;
		strlcpy(sa->sun_path, o->lo_unix, sizeof(sa->sun_path));
		pl->pl_addrlen = sizeof(*sa);
		snprintf(pl->pl_target, sizeof(pl->pl_target), "unix:%s",
		    o->lo_unix);
		return;
	}
	if ((rc = getaddrinfo(o->lo_host, o->lo_port, &hints, &ai)) != 0)
		errx(EXIT_CONNECT, "cannot connect to %s:%s: %s",
		    utf8_safe(text, sizeof(text), o->lo_host), o->lo_port,
		    gai_strerror(rc));
	memcpy(&pl->pl_addr, ai->ai_addr, ai->ai_addrlen);
	pl->pl_addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	snprintf(pl->pl_target, sizeof(pl->pl_target), "tcp:%s%s%s:%s",
	    strchr(o->lo_host, ':') != NULL ? "[" : "", o->lo_host,
	    strchr(o->lo_host, ':') != NULL ? "]" : "", o->lo_port);
}

/* Sizes of lines and buffers, the table, the filler. */
static void
plan_sizes(struct plan *pl)
{
	const struct loadgen_opts *o = pl->pl_opts;
	size_t arg = o->lo_arg != NULL ? strlen(o->lo_arg) : o->lo_size;
	size_t per;

	if (arg < TAG_MAX)
		arg = TAG_MAX;
	pl->pl_verb_len = strlen(o->lo_verb);
	pl->pl_line_max = pl->pl_verb_len + 1 + arg;
	pl->pl_reply_cap = ctl_reply_max(o->lo_max_line);
	pl->pl_rline_max = pl->pl_reply_cap > (1u << 20) ? pl->pl_reply_cap :
	    (1u << 20);
	per = pl->pl_line_max + 1;
	pl->pl_wbuf = per * o->lo_depth;
	if (pl->pl_wbuf > WBUF_MAX)
		pl->pl_wbuf = per > WBUF_MAX ? per : WBUF_MAX / per * per;
	for (pl->pl_ring = RING_MIN; pl->pl_ring < 2 * o->lo_depth;
	    pl->pl_ring *= 2)
		;
	pl->pl_pad = xcalloc(o->lo_size + 1, 1);
	for (size_t i = 0; i < o->lo_size; i++)
		pl->pl_pad[i] = (char)('a' + i % 26);
}

static void
plan_init(struct plan *pl, const struct loadgen_opts *o)
{
	char msg[256];

	memset(pl, 0, sizeof(*pl));
	pl->pl_opts = o;
	pl->pl_deadline_ns = UINT64_MAX;
	pl->pl_crash_seq = o->lo_crash_at != 0 ? o->lo_crash_at - 1 :
	    UINT64_MAX;
	if (o->lo_arg != NULL)
		pl->pl_table = 1;
	else if (o->lo_kind == LOADGEN_SHA256)
		pl->pl_table = SHA_TABLE;
	else if (o->lo_kind == LOADGEN_FIB)
		pl->pl_table = FIB_SPREAD;
	plan_sizes(pl);
	/* With --crash-at the server has crash enabled, which shows in the
	 * text of some ERR replies; the crash line itself is never handled. */
	pl->pl_proto = proto_load(o->lo_handler, o->lo_crash_at != 0, msg,
	    sizeof(msg));
	if (pl->pl_proto == NULL)
		errx(EXIT_USAGE, "%s", msg);
	plan_target(pl);
}

static void
conn_init(struct worker *w, struct conn *cn, unsigned id)
{
	const struct plan *pl = w->w_plan;

	cn->cn_w = w;
	cn->cn_fd = -1;
	cn->cn_id = id;
	cn->cn_phase = CN_DONE;
	cn->cn_quota = loadgen_opts_quota(pl->pl_opts, id);
	cn->cn_ring = xcalloc(pl->pl_ring, sizeof(*cn->cn_ring));
	cn->cn_wbuf = xcalloc(pl->pl_wbuf, 1);
	cn->cn_rcap = pl->pl_wbuf < RBUF_MIN ? RBUF_MIN : pl->pl_wbuf;
	cn->cn_rbuf = xcalloc(cn->cn_rcap, 1);
}

/* Worker index of nthreads, with connections index, index + n, ... */
static void
worker_init(struct worker *w, const struct plan *pl, unsigned index)
{
	const struct loadgen_opts *o = pl->pl_opts;
	unsigned n = o->lo_threads;

	memset(w, 0, sizeof(*w));
	w->w_plan = pl;
	w->w_index = index;
	if ((w->w_ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		err(EXIT_FAILURE, "epoll_create1");
	w->w_nconns = (o->lo_conns - index + n - 1) / n;
	w->w_conns = xcalloc(w->w_nconns, sizeof(*w->w_conns));
	for (unsigned i = 0; i < w->w_nconns; i++)
		conn_init(w, &w->w_conns[i], index + i * n);
	if (pl->pl_table != 0)
		w->w_cache = xcalloc(pl->pl_table, sizeof(*w->w_cache));
	w->w_line = xcalloc(pl->pl_line_max + 1, 1);
	w->w_reply = xcalloc(pl->pl_reply_cap, 1);
	loadgen_hist_init(&w->w_hist);
}

static void
worker_free(struct worker *w)
{
	for (unsigned i = 0; i < w->w_nconns; i++) {
		struct conn *cn = &w->w_conns[i];
		if (cn->cn_fd != -1)
			close(cn->cn_fd);
		free(cn->cn_ring);
		free(cn->cn_wbuf);
		free(cn->cn_rbuf);
	}
	for (unsigned i = 0; w->w_cache != NULL && i < w->w_plan->pl_table;
	    i++)
		free(w->w_cache[i].ex_text);
	free(w->w_cache);
	free(w->w_conns);
	free(w->w_line);
	free(w->w_reply);
	close(w->w_ep);
}

/* Enough descriptors for every connection, or exit 2 saying why not. */
static void
raise_nofile(unsigned conns)
{
	rlim_t need = (rlim_t)conns + 64;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < need)
		errx(EXIT_CONNECT, "-c %u needs %ju open files; the limit is "
		    "%ju (ulimit -n)", conns, (uintmax_t)need,
		    (uintmax_t)rl.rlim_cur);
}

/* Open every connection before the clock starts; exit 2 if one fails. */
static void
connect_all(struct worker *ws, const struct plan *pl)
{
	const struct loadgen_opts *o = pl->pl_opts;
	char target[sizeof(pl->pl_target) * 3];
	int rc;

	for (unsigned t = 0; t < o->lo_threads; t++) {
		for (unsigned i = 0; i < ws[t].w_nconns; i++) {
			struct conn *cn = &ws[t].w_conns[i];
			if ((rc = conn_open(cn, o->lo_timeout_ms)) != 0)
				errx(EXIT_CONNECT, "cannot connect to %s "
				    "(connection %u of %u): %s", utf8_safe(
				    target, sizeof(target), pl->pl_target),
				    cn->cn_id + 1, o->lo_conns, strerror(-rc));
			ws[t].w_active++;
		}
	}
}

/* Run every worker, the first in this thread. */
static void
run_all(struct worker *ws, unsigned n)
{
	int rc;

	for (unsigned t = 1; t < n; t++)
		if ((rc = pthread_create(&ws[t].w_thread, NULL, worker_run,
		    &ws[t])) != 0)
			errc(EXIT_FAILURE, rc, "pthread_create");
	worker_run(&ws[0]);
	for (unsigned t = 1; t < n; t++)
		pthread_join(ws[t].w_thread, NULL);
}

/* ---- the report ------------------------------------------------------- */

struct summary {
	struct loadgen_result	 su_res;
	struct loadgen_hist	 su_hist;
	double			 su_elapsed;	/* seconds */
	bool			 su_passed;
	bool			 su_crash_sent;
};

static void
summarize(struct summary *su, struct worker *ws, const struct plan *pl)
{
	const struct loadgen_opts *o = pl->pl_opts;
	uint64_t end = 0;

	memset(&su->su_res, 0, sizeof(su->su_res));
	loadgen_hist_init(&su->su_hist);
	su->su_crash_sent = false;
	for (unsigned t = 0; t < o->lo_threads; t++) {
		loadgen_result_merge(&su->su_res, &ws[t].w_res);
		loadgen_hist_merge(&su->su_hist, &ws[t].w_hist);
		if (ws[t].w_last_ns > end)
			end = ws[t].w_last_ns;
		su->su_crash_sent |= ws[t].w_crash_sent;
	}
	if (end <= pl->pl_start_ns)
		end = now_ns();
	su->su_elapsed = (double)(end - pl->pl_start_ns) / 1e9;
	su->su_passed = loadgen_result_passed(&su->su_res, o->lo_reconnect);
}

static double
us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

static void
report_json(const struct summary *su, const struct plan *pl)
{
	const struct loadgen_opts *o = pl->pl_opts;
	const struct loadgen_result *r = &su->su_res;
	const struct loadgen_hist *h = &su->su_hist;

	fputs("{\"target\":", stdout);
	utf8_json_string(stdout, pl->pl_target);
	fputs(",\"verb\":", stdout);
	utf8_json_string(stdout, o->lo_verb);
	printf(",\"connections\":%u,\"depth\":%u,\"threads\":%u,"
	    "\"payload_bytes\":%zu", o->lo_conns, o->lo_depth, o->lo_threads,
	    o->lo_size);
	printf(",\"sent\":%" PRIu64 ",\"replies\":%" PRIu64 ",\"ok\":%" PRIu64
	    ",\"err\":%" PRIu64 ",\"wrong\":%" PRIu64 ",\"out_of_order\":%"
	    PRIu64 ",\"missing\":%" PRIu64 ",\"duplicated\":%" PRIu64,
	    r->lr_sent, r->lr_replies, r->lr_ok, r->lr_err, r->lr_wrong,
	    r->lr_out_of_order, r->lr_missing, r->lr_duplicated);
	printf(",\"abandoned\":%" PRIu64 ",\"connections_dropped\":%" PRIu64
	    ",\"reconnects\":%" PRIu64 ",\"reconnect_failures\":%" PRIu64
	    ",\"timeouts\":%" PRIu64, r->lr_abandoned, r->lr_dropped,
	    r->lr_reconnects, r->lr_reconnect_failed, r->lr_timeouts);
	printf(",\"elapsed_s\":%.6f,\"req_per_s\":%.1f", su->su_elapsed,
	    su->su_elapsed > 0 ? (double)r->lr_replies / su->su_elapsed : 0.0);
	printf(",\"lat_p50_us\":%.1f,\"lat_p99_us\":%.1f,\"lat_p999_us\":%.1f,"
	    "\"lat_max_us\":%.1f,\"lat_mean_us\":%.1f",
	    us(loadgen_hist_percentile(h, 500)),
	    us(loadgen_hist_percentile(h, 990)),
	    us(loadgen_hist_percentile(h, 999)), us(h->lh_max),
	    loadgen_hist_mean(h) / 1000.0);
	printf(",\"passed\":%s}\n", su->su_passed ? "true" : "false");
}

static void
report_human(const struct summary *su, const struct plan *pl)
{
	const struct loadgen_opts *o = pl->pl_opts;
	const struct loadgen_result *r = &su->su_res;
	const struct loadgen_hist *h = &su->su_hist;
	char target[sizeof(pl->pl_target) * 3];	/* a path: any bytes */

	printf("shmpipe-bench: %s to %s, %u connection(s), depth %u, "
	    "%u thread(s), payload %zu bytes\n", o->lo_verb,
	    utf8_safe(target, sizeof(target), pl->pl_target),
	    o->lo_conns, o->lo_depth, o->lo_threads, o->lo_size);
	printf("  requests     %" PRIu64 " sent, %" PRIu64 " replies in %.3f s: "
	    "%.0f req/s\n", r->lr_sent, r->lr_replies, su->su_elapsed,
	    su->su_elapsed > 0 ? (double)r->lr_replies / su->su_elapsed : 0.0);
	printf("  correct      %" PRIu64 " ok, %" PRIu64 " err (expected ERR)\n",
	    r->lr_ok, r->lr_err);
	printf("  incorrect    %" PRIu64 " wrong, %" PRIu64 " out of order, %"
	    PRIu64 " missing, %" PRIu64 " duplicated\n", r->lr_wrong,
	    r->lr_out_of_order, r->lr_missing, r->lr_duplicated);
	printf("  connections  %" PRIu64 " dropped, %" PRIu64 " reconnects, %"
	    PRIu64 " reconnect failures, %" PRIu64 " timeouts, %" PRIu64
	    " requests abandoned\n", r->lr_dropped, r->lr_reconnects,
	    r->lr_reconnect_failed, r->lr_timeouts, r->lr_abandoned);
	printf("  latency us   p50 %.1f, p99 %.1f, p99.9 %.1f, max %.1f, "
	    "mean %.1f\n", us(loadgen_hist_percentile(h, 500)),
	    us(loadgen_hist_percentile(h, 990)),
	    us(loadgen_hist_percentile(h, 999)), us(h->lh_max),
	    loadgen_hist_mean(h) / 1000.0);
	printf("  result       %s\n", su->su_passed ? "PASS" : "FAIL");
}

int
main(int argc, char **argv)
{
	struct loadgen_opts opts;
	struct summary su;
	struct worker *ws;
	struct plan pl;
	char msg[512];
	int rc;

	rc = loadgen_opts_parse(&opts, argc, argv, msg, sizeof(msg));
	if (rc == LOADGEN_OPTS_HELP) {
		fputs(loadgen_opts_usage(), stdout);
		return 0;
	}
	if (rc == LOADGEN_OPTS_VERSION) {
		printf("%s %s\n", getprogname(), SHMQ_VERSION);
		return 0;
	}
	if (rc != 0)
		errx(EXIT_USAGE, "%s", msg);
	plan_init(&pl, &opts);
	raise_nofile(opts.lo_conns);
	ws = xcalloc(opts.lo_threads, sizeof(*ws));
	for (unsigned t = 0; t < opts.lo_threads; t++)
		worker_init(&ws[t], &pl, t);
	connect_all(ws, &pl);
	pl.pl_start_ns = now_ns();
	pl.pl_deadline_ns = opts.lo_seconds == 0 ? UINT64_MAX :
	    pl.pl_start_ns + (uint64_t)opts.lo_seconds * 1000000000u;
	run_all(ws, opts.lo_threads);
	summarize(&su, ws, &pl);
	if (opts.lo_crash_at != 0 && !su.su_crash_sent && !opts.lo_quiet)
		warnx("--crash-at %" PRIu64 ": the run ended before connection "
		    "0 sent that request", opts.lo_crash_at);
	if (opts.lo_json)
		report_json(&su, &pl);
	else if (!opts.lo_quiet)
		report_human(&su, &pl);
	for (unsigned t = 0; t < opts.lo_threads; t++)
		worker_free(&ws[t]);
	free(ws);
	free(pl.pl_pad);
	proto_unload(pl.pl_proto);
	return su.su_passed ? 0 : EXIT_WRONG;
}
