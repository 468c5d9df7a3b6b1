/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tool_queue.c - a snapshot of one queue through a read-only handle: its
 * statistics, windowed rates, attachments and their liveness, and the
 * state shmq(1) reports (the rules are in shmq.1, STATES).
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmq_layout.h"
#include "tool.h"

#define PID_CACHE	256		/* direct-mapped, by pid */

/* One snapshot in progress; what the guarded steps share. */
struct snap {
	const struct tool_ent	*s_ent;
	const struct tool_opts	*s_opts;
	struct tool_qrow	*s_row;
	struct tool_qdetail	*s_detail;
	struct shmq		*s_q;
};

static struct shmq_proc_info snap_procs[SHMQ_PROCS_LIMIT];

static struct {
	pid_t		pc_pid;
	uint64_t	pc_start;
	bool		pc_alive;
} pid_cache[PID_CACHE];

static const char *const state_names[] = {
	[TOOL_ST_OK] = "OK", [TOOL_ST_IDLE] = "IDLE",
	[TOOL_ST_BACKLOG] = "BACKLOG", [TOOL_ST_FULL] = "FULL",
	[TOOL_ST_STALLED] = "STALLED", [TOOL_ST_STALE] = "STALE",
	[TOOL_ST_CORRUPT] = "CORRUPT", [TOOL_ST_INCOMPATIBLE] = "INCOMPATIBLE",
	[TOOL_ST_INIT] = "INIT", [TOOL_ST_DENIED] = "DENIED",
	[TOOL_ST_GONE] = "GONE",
};

const char *
tool_state_name(enum tool_state st)
{
	return (unsigned)st < sizeof(state_names) / sizeof(state_names[0]) ?
	    state_names[st] : "?";
}

bool
tool_pid_alive(pid_t pid, uint64_t start)
{
	unsigned i = (unsigned)pid % PID_CACHE;

	if (pid <= 0)
		return false;
	if (pid_cache[i].pc_pid != pid || pid_cache[i].pc_start != start) {
		pid_cache[i].pc_pid = pid;
		pid_cache[i].pc_start = start;
		pid_cache[i].pc_alive = shmq_pid_alive(pid, start);
	}
	return pid_cache[i].pc_alive;
}

void
tool_pid_forget(void)
{
	memset(pid_cache, 0, sizeof(pid_cache));
}

char
tool_proc_state(pid_t pid)
{
	char path[32], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (pid <= 0 || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	p = strrchr(buf, ')');		/* the name may hold anything */
	return p != NULL && p[1] == ' ' ? p[2] : 0;
}

double
tool_fill_pct(const struct tool_qrow *r)
{
	return r->q_st.capacity == 0 ? 0 : 100.0 * r->q_st.depth /
	    r->q_st.capacity;
}

int
tool_rows_exit(const struct tool_qrow *rows, size_t n)
{
	bool denied = false;

	for (size_t i = 0; i < n; i++) {
		if (rows[i].q_state == TOOL_ST_CORRUPT ||
		    rows[i].q_state == TOOL_ST_INCOMPATIBLE)
			return TOOL_EX_DATAERR;
		denied |= rows[i].q_state == TOOL_ST_DENIED;
	}
	return denied ? TOOL_EX_NOPERM : 0;
}

/* The state a failure to open or read is, and why; false if none. */
static bool
fail_state(int err, enum tool_state *st, const char **why)
{
	static const struct {
		int		 f_err;
		enum tool_state	 f_state;
		const char	*f_why;
	} fails[] = {
		{ ENOENT, TOOL_ST_GONE, "removed while being read" },
		{ EACCES, TOOL_ST_DENIED, "permission denied" },
		{ EPERM, TOOL_ST_DENIED, "permission denied" },
		{ EAGAIN, TOOL_ST_INIT, "being created" },
		{ EPROTONOSUPPORT, TOOL_ST_INCOMPATIBLE,
		    "another major layout version" },
		{ EFAULT, TOOL_ST_CORRUPT,
		    "truncated while being read (SIGBUS)" },
		{ ENODATA, TOOL_ST_CORRUPT,
		    "truncated: smaller than its header says" },
		{ EBADMSG, TOOL_ST_CORRUPT, "inconsistent header, records or "
		    "ring" },
		{ EPROTO, TOOL_ST_CORRUPT,
		    "replaced while being read (magic or file type)" },
	};

	for (size_t i = 0; i < sizeof(fails) / sizeof(fails[0]); i++)
		if (fails[i].f_err == err) {
			*st = fails[i].f_state;
			*why = fails[i].f_why;
			return true;
		}
	return false;
}

/* A failure to open or read, as a state. */
static void
row_fail(struct tool_qrow *r, int err)
{
	r->q_err = err;
	r->q_have = false;
	if (!fail_state(err, &r->q_state, &r->q_why)) {
		r->q_state = TOOL_ST_CORRUPT;
		r->q_why = "cannot be read";
	}
}

/*
 * A header size other than ours under the same major version: a later
 * minor version may have grown it (INCOMPATIBLE: we cannot read it); under
 * our own minor it is garbage (CORRUPT).
 */
static void
header_size_fail(const struct tool_ent *e, struct tool_qrow *r)
{
	row_fail(r, e->e_minor != SHMQ_LAYOUT_MINOR ? EPROTONOSUPPORT :
	    EBADMSG);
	snprintf(r->q_whybuf, sizeof(r->q_whybuf), "layout %u.%u with a "
	    "header of %u bytes; %u.%u has %zu", e->e_major, e->e_minor,
	    e->e_header_size, SHMQ_LAYOUT_MAJOR, SHMQ_LAYOUT_MINOR,
	    sizeof(struct shmq_seg_header));
	r->q_why = r->q_whybuf;
}

/* What the header alone tells, before anything is mapped; true if so. */
static bool
row_from_header(const struct tool_ent *e, struct tool_qrow *r)
{
	if (e->e_kind == TOOL_K_DENIED) {
		row_fail(r, e->e_err);
	} else if (e->e_kind == TOOL_K_QINIT) {
		bool alive = tool_pid_alive(e->e_creator, e->e_creator_start);
		r->q_state = alive ? TOOL_ST_INIT : TOOL_ST_STALE;
		r->q_why = alive ? "being created" : "left half created by a "
		    "dead process";
	} else if (e->e_major != SHMQ_LAYOUT_MAJOR) {
		row_fail(r, EPROTONOSUPPORT);
		snprintf(r->q_whybuf, sizeof(r->q_whybuf), "layout %u.%u; this "
		    "shmq reads %u.x", e->e_major, e->e_minor,
		    SHMQ_LAYOUT_MAJOR);
		r->q_why = r->q_whybuf;
	} else if (e->e_size >= sizeof(struct shmq_seg_header) &&
	    e->e_header_size != sizeof(struct shmq_seg_header)) {
		header_size_fail(e, r);
	} else if (e->e_size < sizeof(struct shmq_seg_header) ||
	    e->e_size < e->e_seg_size) {
		row_fail(r, ENODATA);
	} else if (e->e_size != e->e_seg_size) {
		row_fail(r, EBADMSG);
	} else {
		return false;
	}
	return true;
}

static int
snap_open(void *arg)
{
	struct snap *s = arg;

	s->s_q = shmq_open_flags(s->s_ent->e_name, SHMQ_OPEN_RDONLY |
	    SHMQ_OPEN_ANY_OWNER | SHMQ_OPEN_ANY_MODE);
	return s->s_q != NULL ? 0 : -errno;
}

/* Count attachments, producers and consumers, and how many are alive. */
static void
snap_count(struct tool_qrow *r, const struct shmq_proc_info *pi, int n,
    bool *alive)
{
	for (int i = 0; i < n; i++) {
		bool live = pi[i].state == SHMQ_PROC_ALIVE &&
		    tool_pid_alive(pi[i].pid, pi[i].start_ticks);
		if (alive != NULL)
			alive[i] = live;
		/* A recovered record only keeps what its process held, for
		 * redelivery (a clean close with a lease released leaves one
		 * too): nobody is attached by it. */
		if (pi[i].state != SHMQ_PROC_ALIVE)
			continue;
		r->q_attached++;
		r->q_attached_alive += live;
		if (pi[i].roles & SHMQ_ROLE_PRODUCER) {
			r->q_prod++;
			r->q_prod_alive += live;
		}
		if (pi[i].roles & SHMQ_ROLE_CONSUMER) {
			r->q_cons++;
			r->q_cons_alive += live;
		}
	}
}

/* Copy records and leases out for show. */
static int
snap_detail(struct snap *s, int nprocs)
{
	struct tool_qdetail *d = s->s_detail;
	int n = shmq_leases(s->s_q, NULL, 0);
	unsigned room = (unsigned)(n > 0 ? n : 0) + 1;

	d->d_procs = reallocarray(NULL, (size_t)nprocs + 1,
	    sizeof(*d->d_procs));
	d->d_alive = calloc((size_t)nprocs + 1, sizeof(*d->d_alive));
	d->d_leases = reallocarray(NULL, room, sizeof(*d->d_leases));
	if (d->d_procs == NULL || d->d_alive == NULL || d->d_leases == NULL)
		return -ENOMEM;
	memcpy(d->d_procs, snap_procs, (size_t)nprocs * sizeof(*d->d_procs));
	d->d_nprocs = nprocs;
	/* shmq_leases returns how many there are, which on a live queue may
	 * be more than the count it gave a moment ago: only room of them
	 * were copied. */
	n = shmq_leases(s->s_q, d->d_leases, room);
	d->d_nleases = n < 0 ? 0 : (unsigned)n < room ? n : (int)room;
	return 0;
}

/*
 * Average the rates over no less than max(W - 1, 1) s of the window W:
 * a burst that began a moment ago is not extrapolated to a rate.  With
 * steady traffic the oldest snapshot in the window is W - 1..W s old, and
 * the library's figures stand.
 */
static void
rates_floor(struct tool_qrow *r, unsigned window)
{
	uint64_t floor_ms = window > 1 ? (window - 1) * 1000u : 1000u;
	double k;

	if (r->q_window_ms == 0 || r->q_window_ms >= floor_ms)
		return;
	k = (double)r->q_window_ms / (double)floor_ms;
	r->q_put_rate *= k;
	r->q_get_rate *= k;
	r->q_window_ms = floor_ms;
}

static int
snap_read(void *arg)
{
	struct snap *s = arg;
	struct tool_qrow *r = s->s_row;
	int n, err;

	if ((err = shmq_stats(s->s_q, &r->q_st)) != 0 ||
	    (err = shmq_rates(s->s_q, s->s_opts->o_window, &r->q_put_rate,
	    &r->q_get_rate, &r->q_window_ms)) != 0)
		return err;
	if ((n = shmq_procs(s->s_q, snap_procs, SHMQ_PROCS_LIMIT)) < 0)
		return n;
	if (n > SHMQ_PROCS_LIMIT)
		n = SHMQ_PROCS_LIMIT;
	if (s->s_detail != NULL && (err = snap_detail(s, n)) != 0)
		return err;
	rates_floor(r, s->s_opts->o_window);
	snap_count(r, snap_procs, n, s->s_detail != NULL ?
	    s->s_detail->d_alive : NULL);
	r->q_have = true;
	return 0;
}

/*
 * Ring positions get and put refuse to attach to (the library's bound:
 * more than two laps and 64 apart), from the counts the stats take of
 * them (voided puts off both, which only makes them nearer).  Judged only
 * of a queue no live process is attached to: the positions are hints,
 * moved after the slots, that a batch in flight takes far apart for a
 * moment, and a live queue is not called corrupt.  A few apart is what a
 * process killed before it moved one leaves.
 */
static bool
row_positions_bad(struct tool_qrow *r)
{
	const struct shmq_stats *st = &r->q_st;
	uint64_t reach = 2 * (uint64_t)st->capacity + 64;
	bool cons = st->dequeued > st->enqueued;
	uint64_t apart = cons ? st->dequeued - st->enqueued :
	    st->enqueued - st->dequeued;

	if (r->q_attached_alive > 0 || apart <= reach)
		return false;
	row_fail(r, EBADMSG);
	snprintf(r->q_whybuf, sizeof(r->q_whybuf), "ring positions out of "
	    "reach: the %s' %" PRIu64 " ahead", cons ? "consumers" :
	    "producers", apart);
	r->q_why = r->q_whybuf;
	return true;
}

/* The state of a queue that could be read; the rules of shmq.1. */
static enum tool_state
row_state(const struct tool_qrow *r, const struct tool_opts *o)
{
	const struct shmq_stats *st = &r->q_st;
	uint64_t waiting = (uint64_t)st->depth + st->redeliver_pending;
	bool moving = r->q_put_rate > 0 || r->q_get_rate > 0;

	if (r->q_attached > 0 && r->q_attached_alive == 0)
		return TOOL_ST_STALE;
	if (waiting > 0 && r->q_get_rate <= 0 && (st->oldest_age_ms >=
	    (int64_t)o->o_stall * 1000 || (st->oldest_age_ms < 0 &&
	    r->q_window_ms == 0)))
		return TOOL_ST_STALLED;
	if (st->depth >= st->capacity)
		return TOOL_ST_FULL;
	if ((uint64_t)st->depth * 100 >= (uint64_t)o->o_fill_warn *
	    st->capacity)
		return TOOL_ST_BACKLOG;
	return waiting == 0 && !moving ? TOOL_ST_IDLE : TOOL_ST_OK;
}

void
tool_queue_read(const struct tool_ent *e, const struct tool_opts *o,
    struct tool_qrow *r, struct tool_qdetail *d)
{
	struct snap s = { e, o, r, d, NULL };
	int err;

	memset(r, 0, sizeof(*r));
	if (d != NULL)
		memset(d, 0, sizeof(*d));
	strlcpy(r->q_name, e->e_name, sizeof(r->q_name));
	r->q_st.oldest_age_ms = -1;
	if (row_from_header(e, r))
		return;
	if ((err = tool_guard(snap_open, &s)) == 0)
		err = tool_guard(snap_read, &s);
	shmq_close(s.s_q);	/* read-only: only unmaps; NULL: no-op */
	if (err != 0) {
		row_fail(r, -err);
		return;
	}
	if (!row_positions_bad(r))
		r->q_state = row_state(r, o);
}

int
tool_queue_fail(const struct tool_ent *e, int err)
{
	char shown[TOOL_NAME_LEN * 3];
	struct tool_qrow r;

	memset(&r, 0, sizeof(r));
	strlcpy(r.q_name, e->e_name, sizeof(r.q_name));
	/* The header first, as tool_queue_read: what it says is why. */
	if (row_from_header(e, &r) || fail_state(err, &r.q_state, &r.q_why))
		tool_row_warn(&r);
	else
		warnx("%s: %s", tool_safe(shown, sizeof(shown), e->e_name),
		    strerror(err));
	return tool_exit_code(err);
}

void
tool_row_warn(const struct tool_qrow *r)
{
	char shown[TOOL_NAME_LEN * 3];

	tool_safe(shown, sizeof(shown), r->q_name);
	if (r->q_state == TOOL_ST_GONE)
		warnx("%s: %s", shown, r->q_why);
	else
		warnx("%s: %s: %s", shown, tool_state_name(r->q_state),
		    r->q_why);
}

void
tool_qdetail_free(struct tool_qdetail *d)
{
	free(d->d_procs);
	free(d->d_alive);
	free(d->d_leases);
	memset(d, 0, sizeof(*d));
}
