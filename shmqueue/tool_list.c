/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tool_list.c - the listing of queues shared by ls, top and check: collect
 * one snapshot row per queue (each segment mapped, read and unmapped
 * before the next), then print the rows as a table, JSON, CSV or
 * Prometheus metrics.
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

struct collect {
	struct tool_rows	*c_rows;
	const struct tool_opts	*c_opts;
};

/* A Prometheus family of the listing: NAN from get leaves a row out. */
struct metric {
	const char	*m_name;
	const char	*m_type;
	const char	*m_help;
	double		(*m_get)(const struct tool_qrow *r);
};

static int
collect_one(const struct tool_ent *e, void *arg)
{
	struct collect *c = arg;
	struct tool_rows *rs = c->c_rows;
	struct tool_qrow *row;

	if (e->e_kind == TOOL_K_DENIED && c->c_opts->o_pattern == NULL) {
		rs->r_denied++;	/* maybe not even ours: say so once */
		return 0;
	}
	/* What cannot be read is told by its name alone, and one named as
	 * a control segment is a pipeline's (check and ps report it), as
	 * it would be to one who may read it. */
	if (e->e_kind == TOOL_K_DENIED && tool_pipe_ctl(e->e_name))
		return 0;
	rs->r_matched++;
	if (rs->r_n == rs->r_cap) {
		size_t cap = rs->r_cap ? rs->r_cap * 2 : 64;
		row = reallocarray(rs->r_rows, cap, sizeof(*row));
		if (row == NULL)
			return -ENOMEM;
		rs->r_rows = row;
		rs->r_cap = cap;
	}
	row = &rs->r_rows[rs->r_n];
	tool_queue_read(e, c->c_opts, row, NULL);
	if (row->q_state != TOOL_ST_GONE)	/* removed meanwhile */
		rs->r_n++;
	return 0;
}

int
tool_rows_collect(struct tool_rows *rs, const struct tool_opts *o)
{
	struct collect c = { rs, o };

	memset(rs, 0, sizeof(*rs));
	tool_pid_forget();
	return tool_scan(o->o_pattern, TOOL_K_QUEUE | TOOL_K_QINIT |
	    TOOL_K_DENIED, collect_one, &c, NULL);
}

void
tool_rows_free(struct tool_rows *rs)
{
	free(rs->r_rows);
	memset(rs, 0, sizeof(*rs));
}

void
tool_rows_warn(const struct tool_rows *rs)
{
	for (size_t i = 0; i < rs->r_n; i++) {
		const struct tool_qrow *r = &rs->r_rows[i];
		if (r->q_state == TOOL_ST_CORRUPT ||
		    r->q_state == TOOL_ST_INCOMPATIBLE ||
		    r->q_state == TOOL_ST_DENIED)
			tool_row_warn(r);
	}
	if (rs->r_denied > 0)
		warnx("%u file%s in " TOOL_SHM_DIR " not readable (permission "
		    "denied); name one to see it", rs->r_denied,
		    rs->r_denied == 1 ? "" : "s");
}

/* ---- table ------------------------------------------------------------- */

static void
row_cells(const struct tool_qrow *r, struct tool_table *t)
{
	char depth[8], cap[8], fill[8], hwm[8], in[8], out[8], age[16];
	char prod[24], cons[24];
	const struct shmq_stats *st = &r->q_st;

	if (!r->q_have) {
		tool_table_row(t, r->q_name, tool_state_name(r->q_state), "-",
		    "-", "-", "-", "-", "-", "-", "-", "-");
		return;
	}
	tool_human(depth, sizeof(depth), st->depth);
	tool_human(cap, sizeof(cap), st->capacity);
	snprintf(fill, sizeof(fill), "%d%%", (int)tool_fill_pct(r));
	tool_human(hwm, sizeof(hwm), st->high_water);
	tool_human_rate(in, sizeof(in), r->q_put_rate);
	tool_human_rate(out, sizeof(out), r->q_get_rate);
	tool_age(age, sizeof(age), st->oldest_age_ms);
	snprintf(prod, sizeof(prod), "%u/%u", r->q_prod_alive, r->q_prod);
	snprintf(cons, sizeof(cons), "%u/%u", r->q_cons_alive, r->q_cons);
	tool_table_row(t, r->q_name, tool_state_name(r->q_state), depth, cap,
	    fill, hwm, in, out, age, prod, cons);
}

static void
rows_table(const struct tool_rows *rs, const struct tool_opts *o, FILE *f)
{
	struct tool_table t;

	tool_table_init(&t, "llrrrrrrrrr", "NAME", "STATE", "DEPTH", "CAP",
	    "FILL", "HWM", "IN/s", "OUT/s", "OLDEST", "PROD", "CONS");
	for (size_t i = 0; i < rs->r_n; i++)
		row_cells(&rs->r_rows[i], &t);
	fprintf(f, "# %zu queue%s; IN/s, OUT/s: messages per second over the "
	    "last %u s; PROD, CONS: alive/attached\n", rs->r_n,
	    rs->r_n == 1 ? "" : "s", o->o_window);
	tool_table_print(&t, f);
	tool_table_free(&t);
}

/* ---- JSON -------------------------------------------------------------- */

/* A number, or null if the row has no stats. */
static void
json_u64(struct tool_json *j, const struct tool_qrow *r, const char *key,
    uint64_t v)
{
	if (r->q_have)
		tool_json_u64(j, key, v);
	else
		tool_json_null(j, key);
}

void
tool_row_json(struct tool_json *j, const struct tool_qrow *r)
{
	const struct shmq_stats *st = &r->q_st;

	tool_json_str(j, "name", r->q_name);
	tool_json_str(j, "state", tool_state_name(r->q_state));
	tool_json_str(j, "reason", r->q_why);
	json_u64(j, r, "depth", st->depth);
	json_u64(j, r, "capacity", st->capacity);
	if (r->q_have)
		tool_json_num(j, "fill_pct", tool_fill_pct(r));
	else
		tool_json_null(j, "fill_pct");
	json_u64(j, r, "high_water", st->high_water);
	json_u64(j, r, "msg_max", st->msg_max);
	tool_json_num(j, "enq_per_s", r->q_have ? r->q_put_rate : NAN);
	tool_json_num(j, "deq_per_s", r->q_have ? r->q_get_rate : NAN);
	json_u64(j, r, "rate_window_ms", r->q_window_ms);
	if (r->q_have && st->oldest_age_ms >= 0)
		tool_json_i64(j, "oldest_age_ms", st->oldest_age_ms);
	else
		tool_json_null(j, "oldest_age_ms");
	json_u64(j, r, "producers", r->q_prod);
	json_u64(j, r, "producers_alive", r->q_prod_alive);
	json_u64(j, r, "consumers", r->q_cons);
	json_u64(j, r, "consumers_alive", r->q_cons_alive);
	json_u64(j, r, "attached", r->q_attached);
	json_u64(j, r, "attached_alive", r->q_attached_alive);
	json_u64(j, r, "redeliver_pending", st->redeliver_pending);
	json_u64(j, r, "leases_held", st->leases_held);
	json_u64(j, r, "enqueued", st->enqueued);
	json_u64(j, r, "dequeued", st->dequeued);
}

static void
rows_json(const struct tool_rows *rs, const struct tool_opts *o, FILE *f,
    const char *command)
{
	struct tool_json j;

	tool_json_init(&j, f);
	tool_json_open(&j, NULL, '{');
	tool_json_header(&j, command);
	tool_json_u64(&j, "window_s", o->o_window);
	tool_json_open(&j, "queues", '[');
	for (size_t i = 0; i < rs->r_n; i++) {
		tool_json_open(&j, NULL, '{');
		tool_row_json(&j, &rs->r_rows[i]);
		tool_json_close(&j, '}');
	}
	tool_json_close(&j, ']');
	tool_json_close(&j, '}');
}

/* ---- CSV --------------------------------------------------------------- */

/* The fields of JSON; those it gained later at the end, so that the
 * columns a script counts to stay where they were. */
static const char *const csv_head[] = { "name", "state", "reason", "depth",
	"capacity", "fill_pct", "high_water", "enq_per_s", "deq_per_s",
	"rate_window_ms", "oldest_age_ms", "producers_alive", "producers",
	"consumers_alive", "consumers", "attached_alive", "attached",
	"msg_max", "redeliver_pending", "leases_held", "enqueued",
	"dequeued" };
#define CSV_NCOLS	(sizeof(csv_head) / sizeof(csv_head[0]))

static void
csv_row(const struct tool_qrow *r, FILE *f)
{
	const struct shmq_stats *st = &r->q_st;

	tool_csv(f, r->q_name, false);
	tool_csv(f, tool_state_name(r->q_state), false);
	tool_csv(f, r->q_why, false);
	if (!r->q_have) {
		for (size_t i = 3; i < CSV_NCOLS; i++)
			tool_csv(f, NULL, i + 1 == CSV_NCOLS);
		return;
	}
	tool_csv_u64(f, st->depth, false);
	tool_csv_u64(f, st->capacity, false);
	tool_csv_num(f, tool_fill_pct(r), false);
	tool_csv_u64(f, st->high_water, false);
	tool_csv_num(f, r->q_put_rate, false);
	tool_csv_num(f, r->q_get_rate, false);
	tool_csv_u64(f, r->q_window_ms, false);
	if (st->oldest_age_ms < 0)
		tool_csv(f, NULL, false);
	else
		tool_csv_u64(f, (uint64_t)st->oldest_age_ms, false);
	tool_csv_u64(f, r->q_prod_alive, false);
	tool_csv_u64(f, r->q_prod, false);
	tool_csv_u64(f, r->q_cons_alive, false);
	tool_csv_u64(f, r->q_cons, false);
	tool_csv_u64(f, r->q_attached_alive, false);
	tool_csv_u64(f, r->q_attached, false);
	tool_csv_u64(f, st->msg_max, false);
	tool_csv_u64(f, st->redeliver_pending, false);
	tool_csv_u64(f, st->leases_held, false);
	tool_csv_u64(f, st->enqueued, false);
	tool_csv_u64(f, st->dequeued, true);
}

static void
rows_csv(const struct tool_rows *rs, FILE *f)
{
	for (size_t i = 0; i < CSV_NCOLS; i++)
		tool_csv(f, csv_head[i], i + 1 == CSV_NCOLS);
	for (size_t i = 0; i < rs->r_n; i++)
		csv_row(&rs->r_rows[i], f);
}

/* ---- Prometheus -------------------------------------------------------- */

#define GET(field, expr) \
static double get_##field(const struct tool_qrow *r) \
{ return r->q_have ? (double)(expr) : NAN; }
GET(depth, r->q_st.depth)
GET(capacity, r->q_st.capacity)
GET(fill, tool_fill_pct(r) / 100)
GET(hwm, r->q_st.high_water)
GET(msg_max, r->q_st.msg_max)
GET(in, r->q_put_rate)
GET(out, r->q_get_rate)
GET(window, r->q_window_ms / 1e3)
GET(oldest, r->q_st.oldest_age_ms < 0 ? NAN : r->q_st.oldest_age_ms / 1e3)
GET(prod, r->q_prod)
GET(prod_alive, r->q_prod_alive)
GET(cons, r->q_cons)
GET(cons_alive, r->q_cons_alive)
GET(att, r->q_attached)
GET(att_alive, r->q_attached_alive)
GET(redel_pending, r->q_st.redeliver_pending)
GET(leases, r->q_st.leases_held)
GET(enq, r->q_st.enqueued)
GET(deq, r->q_st.dequeued)
GET(redel, r->q_st.redelivered)
#undef GET

static const struct metric metrics[] = {
	{ "shmq_queue_depth", "gauge", "Messages on the queue.", get_depth },
	{ "shmq_queue_capacity", "gauge", "Messages the queue holds.",
	    get_capacity },
	{ "shmq_queue_fill_ratio", "gauge", "Depth over capacity, 0 to 1.",
	    get_fill },
	{ "shmq_queue_high_water", "gauge", "Deepest the queue has been.",
	    get_hwm },
	{ "shmq_queue_msg_max_bytes", "gauge", "Longest message the queue "
	    "takes, in bytes.", get_msg_max },
	{ "shmq_queue_enqueue_rate", "gauge", "Messages put per second over "
	    "the rate window.", get_in },
	{ "shmq_queue_dequeue_rate", "gauge", "Messages taken per second over "
	    "the rate window.", get_out },
	{ "shmq_queue_rate_window_seconds", "gauge", "Span the rates were "
	    "measured over.", get_window },
	{ "shmq_queue_oldest_age_seconds", "gauge", "Age of the next message "
	    "to be taken.", get_oldest },
	{ "shmq_queue_producers", "gauge", "Attachments that have put.",
	    get_prod },
	{ "shmq_queue_producers_alive", "gauge", "Producers whose process is "
	    "alive.", get_prod_alive },
	{ "shmq_queue_consumers", "gauge", "Attachments that have taken.",
	    get_cons },
	{ "shmq_queue_consumers_alive", "gauge", "Consumers whose process is "
	    "alive.", get_cons_alive },
	{ "shmq_queue_attached", "gauge", "Attachment records in use.",
	    get_att },
	{ "shmq_queue_attached_alive", "gauge", "Attachments whose process is "
	    "alive.", get_att_alive },
	{ "shmq_queue_redeliver_pending", "gauge", "Messages waiting to be "
	    "delivered again.", get_redel_pending },
	{ "shmq_queue_leases_held", "gauge", "Messages taken under a lease "
	    "and not yet acknowledged.", get_leases },
	{ "shmq_queue_enqueued_total", "counter", "Messages put.", get_enq },
	{ "shmq_queue_dequeued_total", "counter", "Messages taken off the "
	    "ring.", get_deq },
	{ "shmq_queue_redelivered_total", "counter", "Messages put back after "
	    "a death or a release.", get_redel },
};

void
tool_rows_prom(const struct tool_qrow *rows, size_t n, FILE *f)
{
	char labels[TOOL_NAME_LEN * 2 + 64];

	tool_prom_family(f, "shmq_queue_state", "gauge", "1 for the state the "
	    "queue is in (OK, IDLE, BACKLOG, FULL, STALLED, STALE, CORRUPT, "
	    "INCOMPATIBLE, INIT, DENIED).");
	for (size_t i = 0; i < n; i++) {
		tool_prom_labels(labels, sizeof(labels), "queue",
		    rows[i].q_name, "state", tool_state_name(rows[i].q_state),
		    NULL);
		tool_prom_sample(f, "shmq_queue_state", labels, 1);
	}
	for (size_t m = 0; m < sizeof(metrics) / sizeof(metrics[0]); m++) {
		tool_prom_family(f, metrics[m].m_name, metrics[m].m_type,
		    metrics[m].m_help);
		for (size_t i = 0; i < n; i++) {
			double v = metrics[m].m_get(&rows[i]);
			if (isnan(v))
				continue;
			tool_prom_labels(labels, sizeof(labels), "queue",
			    rows[i].q_name, NULL);
			tool_prom_sample(f, metrics[m].m_name, labels, v);
		}
	}
}

void
tool_rows_print(const struct tool_rows *rs, const struct tool_opts *o,
    FILE *f, const char *command)
{
	switch (o->o_fmt) {
	case TOOL_FMT_TABLE:
		rows_table(rs, o, f);
		break;
	case TOOL_FMT_JSON:
		rows_json(rs, o, f, command);
		break;
	case TOOL_FMT_CSV:
		rows_csv(rs, f);
		break;
	case TOOL_FMT_PROM:
		tool_rows_prom(rs->r_rows, rs->r_n, f);
		break;
	}
}
