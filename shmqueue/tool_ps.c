/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tool_ps.c - shmq ps: a pipeline's process table, read from its control
 * segment (/dev/shm/shmpipe.NAME.ctl) mapped read-only: who runs each
 * stage, in which state, on which request and for how long, how much each
 * has served, how often it was restarted and how it last ended.
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "tool.h"

#define PS_EXIT_LEN	48
/* What ctl_name_ok() takes, as shmpipe --name says it. */
#define PS_STR(x)	#x
#define PS_XSTR(x)	PS_STR(x)
#define PS_NAME_RULE	"expected 1..40 characters of A-Z a-z 0-9 _ . -"
static_assert(sizeof(((struct shmpipe_proc *)0)->last_exit) == PS_EXIT_LEN,
    "last_exit is copied whole");

/* One row of the process table, copied out. */
struct ps_row {
	uint32_t	 r_row;
	pid_t		 r_pid;
	uint32_t	 r_role, r_index, r_gen, r_state, r_restarts;
	int32_t		 r_status;	/* wait status; -1 none */
	uint64_t	 r_conn, r_seq, r_busy_ns, r_served, r_served_total;
	bool		 r_alive;
	char		 r_exit[PS_EXIT_LEN];	/* its last_exit */
};

/* One pipeline. */
struct ps_pipe {
	char		 p_name[TOOL_NAME_LEN];	/* a valid one, or not */
	enum tool_state	 p_state;
	const char	*p_why;
	pid_t		 p_sup;
	bool		 p_sup_alive;
	uint32_t	 p_phase, p_window;
	uint64_t	 p_accepted, p_answered, p_in_flight, p_restarts;
	uint64_t	 p_timeouts, p_redelivered;
	struct ps_row	*p_rows;
	uint32_t	 p_nrows;
};

struct ps_list {
	struct ps_pipe	*l_pipes;
	size_t		 l_n;
	uint64_t	 l_now;		/* coarse ns */
};

/* A guarded open and read of a control segment. */
struct ps_read {
	const char	*x_name;
	pid_t		 x_pid;		/* > 0: the memfd of this process */
	struct ctl	*x_ctl;
	struct ps_pipe	*x_pipe;
};

static const char *const row_states[] = { "EMPTY", "STARTING", "READY",
	"BUSY", "STOPPING", "DOWN", "RETIRED" };

static uint64_t
ld64(_Atomic uint64_t *p)
{
	/* Relaxed: a snapshot; a field is shown, never trusted. */
	return atomic_load_explicit(p, memory_order_relaxed);
}

static uint32_t
ld32(_Atomic uint32_t *p)
{
	/* Relaxed: as ld64. */
	return atomic_load_explicit(p, memory_order_relaxed);
}

static const char *
role_name(uint32_t role)
{
	return role == SHMPIPE_ROLE_REQUEST ? "request" :
	    role == SHMPIPE_ROLE_REPLY ? "reply" :
	    role == SHMPIPE_ROLE_PROCESSOR ? "processor" : "?";
}

/* The state shown: READY with a request in hand is BUSY. */
static const char *
row_state(const struct ps_row *r)
{
	uint32_t st = r->r_state;

	if (st == SHMPIPE_PROC_READY && r->r_busy_ns != 0)
		st = SHMPIPE_PROC_BUSY;
	return st < sizeof(row_states) / sizeof(row_states[0]) ?
	    row_states[st] : "?";
}

static void
read_row(struct shmpipe_proc *p, uint32_t i, struct ps_row *r)
{
	r->r_row = i;
	r->r_pid = (pid_t)ld32(&p->pid);
	r->r_state = ld32(&p->state);
	r->r_role = p->role;
	r->r_index = p->index;
	r->r_gen = ld32(&p->generation);
	r->r_restarts = ld32(&p->restarts);
	r->r_status = (int32_t)atomic_load_explicit(&p->last_status,
	    memory_order_relaxed);
	/* Acquire: pairs with the processor's release of busy_since; the
	 * request it names was stored before. */
	r->r_busy_ns = atomic_load_explicit(&p->busy_since_ns,
	    memory_order_acquire);
	r->r_conn = ld64(&p->cur_conn);
	r->r_seq = ld64(&p->cur_seq);
	r->r_served = ld64(&p->served);
	r->r_served_total = ld64(&p->served_total);
	memcpy(r->r_exit, p->last_exit, sizeof(r->r_exit));
	r->r_exit[sizeof(r->r_exit) - 1] = '\0';
}

static int
read_ctl(void *arg)
{
	struct ps_read *x = arg;
	struct shmpipe_ctl *h;
	struct ps_pipe *p = x->x_pipe;
	uint64_t freed;
	int r;

	r = x->x_pid > 0 ? ctl_open_pid(x->x_ctl, x->x_pid, x->x_name,
	    CTL_OPEN_RDONLY | CTL_OPEN_ANY) : ctl_open(x->x_ctl, x->x_name,
	    CTL_OPEN_RDONLY | CTL_OPEN_ANY);
	if (r != 0)
		return r;
	h = x->x_ctl->c_hdr;
	p->p_sup = (pid_t)h->supervisor_pid;
	p->p_sup_alive = tool_pid_alive(p->p_sup, h->supervisor_start);
	p->p_phase = ld32(&h->phase);
	/* The counts are the copy ctl_open checked: the header may change
	 * under us, and a count read again may be one never checked. */
	p->p_window = x->x_ctl->c_g.slab_slots;
	/* Answered first: both only grow, so a request answered between
	 * the two loads cannot show as answered and not accepted. */
	p->p_answered = ld64(&h->answered);
	p->p_accepted = ld64(&h->accepted);
	freed = ld64(&h->freed) + ld64(&h->gc_freed);
	p->p_in_flight = ld64(&h->reserved);
	p->p_in_flight = p->p_in_flight > freed ? p->p_in_flight - freed : 0;
	if (p->p_in_flight > p->p_window)
		p->p_in_flight = p->p_window;
	p->p_restarts = ld64(&h->restarts);
	p->p_timeouts = ld64(&h->timeouts);
	p->p_redelivered = ld64(&h->redelivered);
	p->p_rows = calloc(x->x_ctl->c_g.nprocs, sizeof(*p->p_rows));
	if (p->p_rows == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < x->x_ctl->c_g.nprocs; i++) {
		read_row(ctl_proc(x->x_ctl, i), i, &p->p_rows[p->p_nrows]);
		if (p->p_rows[p->p_nrows].r_state != SHMPIPE_PROC_EMPTY)
			p->p_nrows++;
	}
	return 0;
}

static void
pipe_fail(struct ps_pipe *p, int err)
{
	p->p_state = err == EAGAIN ? TOOL_ST_INIT : err == EACCES ||
	    err == EPERM ? TOOL_ST_DENIED : err == EPROTONOSUPPORT ?
	    TOOL_ST_INCOMPATIBLE : err == ENOENT ? TOOL_ST_GONE :
	    TOOL_ST_CORRUPT;
	p->p_why = err == EFAULT ? "truncated while being read (SIGBUS)" :
	    err == ENODATA ? "truncated: smaller than its header says" :
	    err == EBADMSG ? "inconsistent sizes or offsets" :
	    err == EPROTO ? "replaced while being read (magic or file type)" :
	    err == EPROTONOSUPPORT ? "another major layout version; this "
	    "shmq reads " PS_XSTR(SHMPIPE_LAYOUT_MAJOR) ".x" :
	    err == EAGAIN ? "being created" : strerror(err);
}

/* Snapshot pipeline name (in /dev/shm, or held by process pid if > 0)
 * into p; its rows are malloc'd. */
static void
pipe_read(const char *name, pid_t pid, struct ps_pipe *p)
{
	struct ctl c = { 0 };
	struct ps_read x = { name, pid, &c, p };
	int r;

	memset(p, 0, sizeof(*p));
	strlcpy(p->p_name, name, sizeof(p->p_name));
	/* A file named as no supervisor names one: ctl_open would refuse
	 * its name (EINVAL), which says nothing of the file. */
	if (!ctl_name_ok(name)) {
		p->p_state = TOOL_ST_CORRUPT;
		p->p_why = "not a pipeline name: " PS_NAME_RULE;
		return;
	}
	r = tool_guard(read_ctl, &x);
	ctl_close(&c);			/* never opened: a no-op */
	if (r != 0) {
		pipe_fail(p, -r);
		return;
	}
	for (uint32_t i = 0; i < p->p_nrows; i++)
		p->p_rows[i].r_alive = p->p_rows[i].r_pid > 0 &&
		    tool_pid_alive(p->p_rows[i].r_pid, 0);
	p->p_state = p->p_sup_alive ? TOOL_ST_OK : TOOL_ST_STALE;
	p->p_why = p->p_sup_alive ? NULL : "its supervisor is dead";
}

static int
list_add(const struct tool_ent *e, void *arg)
{
	struct ps_list *l = arg;
	struct ps_pipe *p;
	char name[TOOL_NAME_LEN];	/* valid or not: pipe_read says */

	if (!tool_pipe_name(e->e_name, name, sizeof(name), NULL))
		return 0;
	p = reallocarray(l->l_pipes, l->l_n + 1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	l->l_pipes = p;
	p = &l->l_pipes[l->l_n];
	if (e->e_kind == TOOL_K_DENIED) {
		memset(p, 0, sizeof(*p));
		strlcpy(p->p_name, name, sizeof(p->p_name));
		pipe_fail(p, e->e_err);
	} else {
		pipe_read(name, 0, p);
	}
	l->l_n += p->p_state != TOOL_ST_GONE;
	return 0;
}

static void
list_free(struct ps_list *l)
{
	for (size_t i = 0; i < l->l_n; i++)
		free(l->l_pipes[i].p_rows);
	free(l->l_pipes);
}

/* ---- output ------------------------------------------------------------ */

static int64_t
busy_ms(const struct ps_list *l, const struct ps_row *r)
{
	if (r->r_busy_ns == 0)
		return -1;
	return l->l_now > r->r_busy_ns ? (int64_t)((l->l_now -
	    r->r_busy_ns) / 1000000u) : 0;
}

static const char *
phase_name(uint32_t phase)
{
	return phase == SHMPIPE_PHASE_RUNNING ? "running" :
	    phase == SHMPIPE_PHASE_DRAINING ? "draining" : NULL;
}

static void
pipe_title(const struct ps_pipe *p)
{
	char shown[sizeof(p->p_name) * 3];	/* a name from /dev/shm */
	uint32_t alive = 0;

	tool_safe(shown, sizeof(shown), p->p_name);
	for (uint32_t i = 0; i < p->p_nrows; i++)
		alive += p->p_rows[i].r_alive;
	if (p->p_why != NULL && p->p_nrows == 0) {
		printf("pipeline %s: %s (%s)\n", shown,
		    tool_state_name(p->p_state), p->p_why);
		return;
	}
	printf("pipeline %s: %s, supervisor %d %s, %s, %u of %u processes "
	    "alive\n  requests accepted %" PRIu64 ", answered %" PRIu64
	    ", in flight %" PRIu64 "/%u; restarts %" PRIu64 ", timeouts %"
	    PRIu64 ", redelivered %" PRIu64 "\n", shown,
	    tool_state_name(p->p_state), (int)p->p_sup, p->p_sup_alive ?
	    "alive" : "dead", phase_name(p->p_phase) ? phase_name(p->p_phase) :
	    "?", alive, p->p_nrows, p->p_accepted, p->p_answered,
	    p->p_in_flight, p->p_window, p->p_restarts, p->p_timeouts,
	    p->p_redelivered);
}

static void
pipe_table(const struct ps_list *l, const struct ps_pipe *p)
{
	struct tool_table t;
	char pid[16], idx[16], gen[16], req[48], age[16], srv[16], tot[16];
	char rst[16];

	pipe_title(p);
	tool_table_init(&t, "rlrrllrrrrrl", "PID", "ROLE", "IDX", "GEN",
	    "STATE", "ALIVE", "REQUEST", "AGE", "SERVED", "TOTAL", "RESTARTS",
	    "LAST-EXIT");
	for (uint32_t i = 0; i < p->p_nrows; i++) {
		const struct ps_row *r = &p->p_rows[i];
		snprintf(pid, sizeof(pid), "%d", (int)r->r_pid);
		snprintf(idx, sizeof(idx), "%u", r->r_index);
		snprintf(gen, sizeof(gen), "%u", r->r_gen);
		snprintf(req, sizeof(req), "c%u#%" PRIu64,
		    SHMPIPE_CONN_SLOT(r->r_conn), r->r_seq);
		tool_age(age, sizeof(age), busy_ms(l, r));
		tool_human(srv, sizeof(srv), r->r_served);
		tool_human(tot, sizeof(tot), r->r_served_total);
		snprintf(rst, sizeof(rst), "%u", r->r_restarts);
		tool_table_row(&t, pid, role_name(r->r_role), idx, gen,
		    row_state(r), r->r_alive ? "yes" : "no", r->r_busy_ns ?
		    req : "-", age, srv, tot, rst, r->r_status == -1 ? "-" :
		    r->r_exit);
	}
	if (p->p_nrows > 0)
		tool_table_print(&t, stdout);
	tool_table_free(&t);
}

static void
json_row(struct tool_json *j, const struct ps_list *l, const struct ps_row *r)
{
	tool_json_u64(j, "row", r->r_row);
	tool_json_i64(j, "pid", r->r_pid);
	tool_json_str(j, "role", role_name(r->r_role));
	tool_json_u64(j, "index", r->r_index);
	tool_json_u64(j, "generation", r->r_gen);
	tool_json_str(j, "state", row_state(r));
	tool_json_bool(j, "alive", r->r_alive);
	if (r->r_busy_ns != 0) {
		tool_json_open(j, "request", '{');
		tool_json_u64(j, "conn", SHMPIPE_CONN_SLOT(r->r_conn));
		tool_json_u64(j, "conn_gen", r->r_conn >> 32);
		tool_json_u64(j, "seq", r->r_seq);
		tool_json_close(j, '}');
		tool_json_i64(j, "request_age_ms", busy_ms(l, r));
	} else {
		tool_json_null(j, "request");
		tool_json_null(j, "request_age_ms");
	}
	tool_json_u64(j, "served", r->r_served);
	tool_json_u64(j, "served_total", r->r_served_total);
	tool_json_u64(j, "restarts", r->r_restarts);
	tool_json_str(j, "last_exit", r->r_status == -1 ? NULL : r->r_exit);
}

static void
json_pipe(struct tool_json *j, const struct ps_list *l,
    const struct ps_pipe *p)
{
	bool have = p->p_state == TOOL_ST_OK || p->p_state == TOOL_ST_STALE;

	tool_json_str(j, "name", p->p_name);
	tool_json_str(j, "state", tool_state_name(p->p_state));
	tool_json_str(j, "reason", p->p_why);
	if (!have) {
		tool_json_open(j, "procs", '[');
		tool_json_close(j, ']');
		return;
	}
	tool_json_i64(j, "supervisor_pid", p->p_sup);
	tool_json_bool(j, "supervisor_alive", p->p_sup_alive);
	tool_json_str(j, "phase", phase_name(p->p_phase));
	tool_json_u64(j, "accepted", p->p_accepted);
	tool_json_u64(j, "answered", p->p_answered);
	tool_json_u64(j, "in_flight", p->p_in_flight);
	tool_json_u64(j, "window", p->p_window);
	tool_json_u64(j, "restarts", p->p_restarts);
	tool_json_u64(j, "timeouts", p->p_timeouts);
	tool_json_u64(j, "redelivered", p->p_redelivered);
	tool_json_open(j, "procs", '[');
	for (uint32_t i = 0; i < p->p_nrows; i++) {
		tool_json_open(j, NULL, '{');
		json_row(j, l, &p->p_rows[i]);
		tool_json_close(j, '}');
	}
	tool_json_close(j, ']');
}

static void
ps_json(const struct ps_list *l)
{
	struct tool_json j;

	tool_json_init(&j, stdout);
	tool_json_open(&j, NULL, '{');
	tool_json_header(&j, "ps");
	tool_json_open(&j, "pipelines", '[');
	for (size_t i = 0; i < l->l_n; i++) {
		tool_json_open(&j, NULL, '{');
		json_pipe(&j, l, &l->l_pipes[i]);
		tool_json_close(&j, '}');
	}
	tool_json_close(&j, ']');
	tool_json_close(&j, '}');
}

/* A row's fields, or as many empty ones for a pipeline without rows. */
static void
csv_row(const struct ps_list *l, const struct ps_row *r, FILE *f)
{
	if (r == NULL) {
		fputs(",,,,,,,,,,,,,,", f);
		return;
	}
	tool_csv_u64(f, r->r_row, false);
	tool_csv_u64(f, (uint64_t)r->r_pid, false);
	tool_csv(f, role_name(r->r_role), false);
	tool_csv_u64(f, r->r_index, false);
	tool_csv_u64(f, r->r_gen, false);
	tool_csv(f, row_state(r), false);
	tool_csv(f, r->r_alive ? "true" : "false", false);
	if (r->r_busy_ns != 0) {
		tool_csv_u64(f, SHMPIPE_CONN_SLOT(r->r_conn), false);
		tool_csv_u64(f, r->r_seq, false);
		tool_csv_u64(f, (uint64_t)busy_ms(l, r), false);
	} else {
		fputs(",,,", f);
	}
	tool_csv_u64(f, r->r_served, false);
	tool_csv_u64(f, r->r_served_total, false);
	tool_csv_u64(f, r->r_restarts, false);
	tool_csv(f, r->r_status == -1 ? NULL : r->r_exit, false);
}

/* The pipeline's fields of JSON, empty where it could not be read; the
 * request's conn_gen, which came with them, last. */
static void
csv_pipe(const struct ps_pipe *p, const struct ps_row *r, FILE *f)
{
	bool have = p->p_state == TOOL_ST_OK || p->p_state == TOOL_ST_STALE;

	tool_csv(f, p->p_why, false);
	if (have) {
		tool_csv_u64(f, (uint64_t)p->p_sup, false);
		tool_csv(f, p->p_sup_alive ? "true" : "false", false);
		tool_csv(f, phase_name(p->p_phase), false);
		tool_csv_u64(f, p->p_accepted, false);
		tool_csv_u64(f, p->p_answered, false);
		tool_csv_u64(f, p->p_in_flight, false);
		tool_csv_u64(f, p->p_window, false);
		tool_csv_u64(f, p->p_restarts, false);
		tool_csv_u64(f, p->p_timeouts, false);
		tool_csv_u64(f, p->p_redelivered, false);
	} else {
		fputs(",,,,,,,,,,", f);
	}
	if (r != NULL && r->r_busy_ns != 0)
		tool_csv_u64(f, r->r_conn >> 32, true);
	else
		tool_csv(f, NULL, true);
}

/*
 * One line per process, and one for a pipeline without any (unreadable,
 * or all rows empty) so that every pipeline of JSON is there.  The fields
 * CSV gained after the first ones last, so that the columns a script
 * counts to stay where they were.
 */
static void
ps_csv(const struct ps_list *l)
{
	static const char *const head[] = { "pipeline", "pipeline_state",
	    "row", "pid", "role", "index", "generation", "state", "alive",
	    "request_conn", "request_seq", "request_age_ms", "served",
	    "served_total", "restarts", "last_exit", "reason",
	    "supervisor_pid", "supervisor_alive", "phase", "accepted",
	    "answered", "in_flight", "window", "pipeline_restarts",
	    "timeouts", "redelivered", "request_conn_gen" };
	FILE *f = stdout;

	for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++)
		tool_csv(f, head[i], i + 1 == sizeof(head) / sizeof(head[0]));
	for (size_t k = 0; k < l->l_n; k++) {
		const struct ps_pipe *p = &l->l_pipes[k];
		for (uint32_t i = 0; i < p->p_nrows || (i == 0 &&
		    p->p_nrows == 0); i++) {
			const struct ps_row *r = p->p_nrows > 0 ?
			    &p->p_rows[i] : NULL;
			tool_csv(f, p->p_name, false);
			tool_csv(f, tool_state_name(p->p_state), false);
			csv_row(l, r, f);
			csv_pipe(p, r, f);
		}
	}
}

/* Pipeline-wide metrics: one family per field. */
static void
prom_pipes(const struct ps_list *l)
{
	static const char *const fam[][3] = {
		{ "shmpipe_up", "gauge", "1 if the supervisor is alive." },
		{ "shmpipe_accepted_total", "counter", "Requests accepted." },
		{ "shmpipe_answered_total", "counter", "Replies written." },
		{ "shmpipe_in_flight", "gauge", "Requests accepted and not "
		    "yet answered." },
		{ "shmpipe_restarts_total", "counter", "Stage restarts." },
		{ "shmpipe_timeouts_total", "counter", "Processors killed "
		    "for a request timeout." },
	};
	char labels[128];

	for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
		tool_prom_family(stdout, fam[f][0], fam[f][1], fam[f][2]);
		for (size_t k = 0; k < l->l_n; k++) {
			const struct ps_pipe *p = &l->l_pipes[k];
			double v[] = { p->p_sup_alive, (double)p->p_accepted,
			    (double)p->p_answered, (double)p->p_in_flight,
			    (double)p->p_restarts, (double)p->p_timeouts };
			if (p->p_state != TOOL_ST_OK && p->p_state !=
			    TOOL_ST_STALE)
				continue;
			tool_prom_labels(labels, sizeof(labels), "pipeline",
			    p->p_name, NULL);
			tool_prom_sample(stdout, fam[f][0], labels, v[f]);
		}
	}
}

/* Per-process metrics. */
static void
prom_rows(const struct ps_list *l)
{
	static const char *const fam[][3] = {
		{ "shmpipe_proc_up", "gauge", "1 if the process is alive." },
		{ "shmpipe_proc_busy_seconds", "gauge", "How long it has been "
		    "on its current request." },
		{ "shmpipe_proc_served_total", "counter", "Requests served by "
		    "every incarnation." },
		{ "shmpipe_proc_restarts_total", "counter", "Restarts after a "
		    "failure." },
	};
	char labels[256], row[16], idx[16];

	for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
		tool_prom_family(stdout, fam[f][0], fam[f][1], fam[f][2]);
		for (size_t k = 0; k < l->l_n; k++)
			for (uint32_t i = 0; i < l->l_pipes[k].p_nrows; i++) {
				const struct ps_row *r =
				    &l->l_pipes[k].p_rows[i];
				int64_t b = busy_ms(l, r);
				double v[] = { r->r_alive, b < 0 ? NAN :
				    b / 1e3, (double)r->r_served_total,
				    r->r_restarts };
				snprintf(row, sizeof(row), "%u", r->r_row);
				snprintf(idx, sizeof(idx), "%u", r->r_index);
				tool_prom_labels(labels, sizeof(labels),
				    "pipeline", l->l_pipes[k].p_name, "row",
				    row, "role", role_name(r->r_role),
				    "index", idx, "state", row_state(r), NULL);
				if (!isnan(v[f]))
					tool_prom_sample(stdout, fam[f][0],
					    labels, v[f]);
			}
	}
}

static int
ps_exit(const struct ps_list *l)
{
	bool denied = false;

	for (size_t i = 0; i < l->l_n; i++) {
		if (l->l_pipes[i].p_state == TOOL_ST_CORRUPT ||
		    l->l_pipes[i].p_state == TOOL_ST_INCOMPATIBLE)
			return TOOL_EX_DATAERR;
		denied |= l->l_pipes[i].p_state == TOOL_ST_DENIED;
	}
	return denied ? TOOL_EX_NOPERM : 0;
}

static void
ps_print(const struct ps_list *l, enum tool_fmt fmt)
{
	switch (fmt) {
	case TOOL_FMT_TABLE:
		for (size_t i = 0; i < l->l_n; i++) {
			if (i > 0)
				putchar('\n');
			pipe_table(l, &l->l_pipes[i]);
		}
		break;
	case TOOL_FMT_JSON:
		ps_json(l);
		break;
	case TOOL_FMT_CSV:
		ps_csv(l);
		break;
	case TOOL_FMT_PROM:
		prom_pipes(l);
		prom_rows(l);
		break;
	}
}

/* "NAME" or "shmpipe.NAME.ctl" (or its path) into NAME. */
static int
ps_name(const char *arg, char name[SHMPIPE_NAME_MAX])
{
	char shown[TOOL_NAME_LEN * 3];

	arg = tool_pattern(arg);
	if (!tool_pipe_name(arg, name, SHMPIPE_NAME_MAX, NULL))
		strlcpy(name, arg, SHMPIPE_NAME_MAX);
	if (!ctl_name_ok(name)) {	/* the user's bytes, said back */
		warnx("%s: not a pipeline name: " PS_NAME_RULE, tool_safe(shown,
		    sizeof(shown), arg));
		return TOOL_EX_USAGE;
	}
	return 0;
}

/*
 * -p PID: the pipeline of a shmpipe-threaded, whose control area is a
 * memfd of that process rather than a segment in /dev/shm; the one named
 * by arg, or the one it holds.
 */
static int
ps_of_pid(struct ps_list *l, pid_t pid, const char *arg)
{
	char name[SHMPIPE_NAME_MAX];
	int r;

	if (arg != NULL && (r = ps_name(arg, name)) != 0)
		return r;
	if (kill(pid, 0) != 0 && errno == ESRCH) {
		warnx("process %d: no such process", (int)pid);
		return TOOL_EX_NOINPUT;
	}
	if (arg == NULL && (r = ctl_pid_pipeline(pid, name)) != 0) {
		warnx("process %d: %s", (int)pid, r == -ENOENT ? "holds no "
		    "pipeline's control area (not a shmpipe-threaded?)" :
		    strerror(-r));
		return tool_exit_code(-r);
	}
	if ((l->l_pipes = calloc(1, sizeof(*l->l_pipes))) == NULL)
		err(TOOL_EX_OSERR, "calloc");
	pipe_read(name, pid, &l->l_pipes[0]);
	l->l_n = l->l_pipes[0].p_state != TOOL_ST_GONE;
	return 0;
}

int
tool_cmd_ps(int argc, char **argv)
{
	/* Of TOOL_LONG_COMMON, what ps uses: it has no rates to judge. */
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
	};
	struct tool_opts o;
	struct ps_list l = { 0 };
	char pat[TOOL_NAME_LEN] = "shmpipe.*.ctl", name[SHMPIPE_NAME_MAX];
	char shown[TOOL_NAME_LEN * 3];
	const char *arg;
	long long pid = 0;
	unsigned matched;
	int ch, r;

	tool_opts_init(&o);
	while ((ch = getopt_long(argc, argv, ":ho:p:", longopts, NULL)) !=
	    -1) {
		if (ch == 'h')
			return tool_help("ps");
		if (ch == 'p' && !tool_num(optarg, 1, INT_MAX, &pid)) {
			warnx("-p %s: expected a process id, 1..%d",
			    tool_safe(shown, sizeof(shown), optarg), INT_MAX);
			return TOOL_EX_USAGE;
		}
		if (ch == 'o' && tool_opt_common(&o, ch, optarg) < 0)
			return tool_usage("ps", NULL);
		if (ch != 'p' && ch != 'o')
			return tool_opt_bad("ps", ch, argv, longopts);
	}
	if (argc - optind > 1)
		return tool_usage("ps", "one PIPELINE at most");
	arg = optind < argc ? argv[optind] : NULL;
	l.l_now = tool_coarse_ns();
	if (pid > 0) {
		if ((r = ps_of_pid(&l, (pid_t)pid, arg)) != 0)
			return r;
	} else {
		if (arg != NULL && (r = ps_name(arg, name)) != 0)
			return r;
		if (arg != NULL)
			snprintf(pat, sizeof(pat), "shmpipe.%s.ctl", name);
		r = tool_scan(pat, TOOL_K_PIPE | TOOL_K_PINIT |
		    TOOL_K_DENIED, list_add, &l, &matched);
		if (r != 0) {
			list_free(&l);
			errno = -r;
			warn("%s", TOOL_SHM_DIR);
			return tool_exit_code(-r);
		}
	}
	ps_print(&l, o.o_fmt);
	for (size_t i = 0; i < l.l_n; i++)
		if (l.l_pipes[i].p_why != NULL && l.l_pipes[i].p_state !=
		    TOOL_ST_STALE)
			warnx("%s: %s: %s", tool_safe(shown, sizeof(shown),
			    l.l_pipes[i].p_name),
			    tool_state_name(l.l_pipes[i].p_state),
			    l.l_pipes[i].p_why);
	r = ps_exit(&l);
	if (r == 0 && arg != NULL && l.l_n == 0) {
		warnx("no pipeline %s", tool_safe(shown, sizeof(shown), arg));
		r = TOOL_EX_NOINPUT;
	}
	list_free(&l);
	return r;
}

enum tool_state
tool_pipe_state(const char *pipeline, const char **why)
{
	struct ps_pipe p;

	pipe_read(pipeline, 0, &p);
	free(p.p_rows);
	*why = p.p_why;
	return p.p_state;
}
