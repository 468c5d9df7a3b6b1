/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tool_show.c - shmq show: every field of one queue, and each process
 * attached to it: alive or dead, what it is doing, the age of its last
 * operation, and the leases it holds.
 */
#define _GNU_SOURCE
#include <err.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmq_layout.h"
#include "tool.h"

/* Fields in the form asked for: table lines, JSON members, CSV rows. */
struct kv {
	enum tool_fmt		 k_fmt;
	struct tool_table	 k_table;
	struct tool_json	 k_json;
	FILE			*k_f;
	char			 k_prefix[32];	/* CSV: "proc.3." */
};

struct show {
	struct tool_ent		 s_ent;
	struct tool_qrow	 s_row;
	struct tool_qdetail	 s_detail;
	uint64_t		 s_now;		/* coarse ns */
};

static void
kv_str(struct kv *kv, const char *key, const char *val)
{
	if (kv->k_fmt == TOOL_FMT_JSON) {
		tool_json_str(&kv->k_json, key, val);
	} else if (kv->k_fmt == TOOL_FMT_CSV) {
		fprintf(kv->k_f, "%s", kv->k_prefix);
		tool_csv(kv->k_f, key, false);
		tool_csv(kv->k_f, val, true);
	} else {
		tool_table_row(&kv->k_table, key, val != NULL ? val : "-");
	}
}

static void
kv_u64(struct kv *kv, const char *key, uint64_t v)
{
	char buf[24];

	if (kv->k_fmt == TOOL_FMT_JSON) {
		tool_json_u64(&kv->k_json, key, v);
		return;
	}
	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	kv_str(kv, key, buf);
}

static void
kv_num(struct kv *kv, const char *key, double v)
{
	char buf[32];

	if (kv->k_fmt == TOOL_FMT_JSON) {
		tool_json_num(&kv->k_json, key, v);
		return;
	}
	snprintf(buf, sizeof(buf), "%.6g", v);
	kv_str(kv, key, isfinite(v) ? buf : NULL);
}

/* A duration in ms: a number (null if < 0), or a human age in tables. */
static void
kv_ms(struct kv *kv, const char *key, int64_t ms)
{
	char buf[24];

	if (kv->k_fmt == TOOL_FMT_TABLE) {
		tool_age(buf, sizeof(buf), ms);
		kv_str(kv, key, buf);
	} else if (ms < 0) {
		kv_str(kv, key, NULL);		/* JSON null, CSV empty */
	} else {
		kv_u64(kv, key, (uint64_t)ms);
	}
}

static void
kv_bool(struct kv *kv, const char *key, bool v)
{
	if (kv->k_fmt == TOOL_FMT_JSON)
		tool_json_bool(&kv->k_json, key, v);
	else
		kv_str(kv, key, v ? "true" : "false");
}

static int64_t
age_ms(uint64_t now, uint64_t then)
{
	return then == 0 ? -1 : now > then ? (int64_t)((now - then) /
	    1000000u) : 0;
}

/* ---- the queue --------------------------------------------------------- */

static void
show_identity(struct kv *kv, const struct show *s)
{
	const struct tool_ent *e = &s->s_ent;
	char buf[64];
	time_t t = (time_t)(e->e_created_ns / 1000000000u);
	struct tm tm;

	snprintf(buf, sizeof(buf), "%u.%u", e->e_major, e->e_minor);
	kv_str(kv, "layout", buf);
	kv_u64(kv, "size", e->e_size);
	kv_u64(kv, "uid", e->e_uid);
	snprintf(buf, sizeof(buf), "%04o", (unsigned)e->e_mode & 07777);
	kv_str(kv, "mode", buf);
	if (kv->k_fmt == TOOL_FMT_TABLE && e->e_created_ns != 0) {
		strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S %z",
		    localtime_r(&t, &tm));
		kv_str(kv, "created", buf);
	} else {
		kv_u64(kv, "created_ms", e->e_created_ns / 1000000u);
	}
	kv_u64(kv, "creator_pid", (uint64_t)e->e_creator);
	kv_bool(kv, "creator_alive", tool_pid_alive(e->e_creator,
	    e->e_creator_start));
	kv_u64(kv, "max_procs", e->e_max_procs);
	kv_u64(kv, "lease_max", e->e_lease_max);
}

/* Every statistic, named as in struct shmq_stats. */
static void
show_stats(struct kv *kv, const struct tool_qrow *r)
{
	const struct shmq_stats *st = &r->q_st;

	kv_u64(kv, "capacity", st->capacity);
	kv_u64(kv, "msg_max", st->msg_max);
	kv_u64(kv, "depth", st->depth);
	kv_num(kv, "fill_pct", tool_fill_pct(r));
	kv_u64(kv, "high_water", st->high_water);
	kv_ms(kv, "oldest_age_ms", st->oldest_age_ms);
	kv_num(kv, "enq_per_s", r->q_put_rate);
	kv_num(kv, "deq_per_s", r->q_get_rate);
	kv_u64(kv, "rate_window_ms", r->q_window_ms);
	kv_u64(kv, "enqueued", st->enqueued);
	kv_u64(kv, "dequeued", st->dequeued);
	kv_u64(kv, "redelivered", st->redelivered);
	kv_u64(kv, "redeliver_pending", st->redeliver_pending);
	kv_u64(kv, "leases_held", st->leases_held);
	kv_u64(kv, "put_waits", st->put_waits);
	kv_u64(kv, "get_waits", st->get_waits);
	kv_u64(kv, "voided", st->voided);
	kv_u64(kv, "recoveries", st->recoveries);
	kv_u64(kv, "corrupt", st->corrupt);
	kv_u64(kv, "attached", r->q_attached);
	kv_u64(kv, "attached_alive", r->q_attached_alive);
	kv_u64(kv, "producers", r->q_prod);
	kv_u64(kv, "producers_alive", r->q_prod_alive);
	kv_u64(kv, "consumers", r->q_cons);
	kv_u64(kv, "consumers_alive", r->q_cons_alive);
	kv_u64(kv, "procs_draining", st->procs_draining);
}

static void
show_queue(struct kv *kv, const struct show *s)
{
	const struct tool_qrow *r = &s->s_row;

	kv_str(kv, "name", r->q_name);
	kv_str(kv, "state", tool_state_name(r->q_state));
	kv_str(kv, "reason", r->q_why);
	show_identity(kv, s);
	if (r->q_have)
		show_stats(kv, r);
}

/* ---- the processes ----------------------------------------------------- */

/* What process i is doing: asleep on this queue, running, stopped... */
static const char *
proc_doing(const struct show *s, int i, char *pst)
{
	const struct shmq_proc_info *pi = &s->s_detail.d_procs[i];

	*pst = s->s_detail.d_alive[i] ? tool_proc_state(pi->pid) : 0;
	if (pi->state == SHMQ_PROC_DEAD)
		return "recovered";
	if (*pst == 0)
		return "dead";
	if (*pst == 'T' || *pst == 't')
		return *pst == 'T' ? "stopped" : "traced";
	if (pi->asleep & SHMQ_ASLEEP_GET)
		return "asleep-get";
	if (pi->asleep & SHMQ_ASLEEP_PUT)
		return "asleep-put";
	return *pst == 'R' ? "running" : *pst == 'D' ? "disk-wait" :
	    *pst == 'Z' ? "zombie" : "sleeping";
}

static const char *
proc_roles(uint32_t roles)
{
	static const char *const names[] = { "-", "producer", "consumer",
	    "producer+consumer" };

	return names[roles & 3];
}

/* "2: 1,3" - the delivery counts of the leases record idx holds. */
static void
proc_leases(const struct show *s, uint32_t idx, char *buf, size_t len)
{
	const struct tool_qdetail *d = &s->s_detail;
	size_t used = 0;
	int n = 0;

	buf[0] = '\0';
	for (int i = 0; i < d->d_nleases && used < len; i++) {
		if (d->d_leases[i].holder == 0 ||
		    d->d_leases[i].holder_index != idx)
			continue;
		used += (size_t)snprintf(buf + used, len - used, "%s%u",
		    n++ ? "," : "", d->d_leases[i].deliveries);
	}
}

static void
proc_table(const struct show *s, FILE *f)
{
	struct tool_table t;
	char pid[16], rec[16], age[16], put[24], get[24], ack[24], ls[128];
	char pst;

	tool_table_init(&t, "rrllllrrrrl", "PID", "REC", "ROLE", "ALIVE",
	    "DOING", "PROC", "LAST-OP", "PUT", "GET", "ACK", "LEASES");
	for (int i = 0; i < s->s_detail.d_nprocs; i++) {
		const struct shmq_proc_info *pi = &s->s_detail.d_procs[i];
		const char *doing = proc_doing(s, i, &pst);
		char st[2] = { pst ? pst : '-', '\0' };
		snprintf(pid, sizeof(pid), "%d", (int)pi->pid);
		snprintf(rec, sizeof(rec), "%u", pi->index);
		tool_age(age, sizeof(age), age_ms(s->s_now, pi->last_op_ns));
		tool_human(put, sizeof(put), pi->n_put);
		tool_human(get, sizeof(get), pi->n_get);
		tool_human(ack, sizeof(ack), pi->n_ack);
		proc_leases(s, pi->index, ls, sizeof(ls));
		tool_table_row(&t, pid, rec, proc_roles(pi->roles),
		    s->s_detail.d_alive[i] ? "yes" : "no", doing, st, age, put,
		    get, ack, ls[0] ? ls : "-");
	}
	if (s->s_detail.d_nprocs > 0) {
		fputc('\n', f);
		tool_table_print(&t, f);
	}
	tool_table_free(&t);
}

/* Leases of one record (or waiting redeliveries, holder 0) as JSON. */
static void
json_leases(struct tool_json *j, const struct show *s, bool held,
    uint32_t idx)
{
	const struct tool_qdetail *d = &s->s_detail;

	for (int i = 0; i < d->d_nleases; i++) {
		const struct shmq_lease_info *li = &d->d_leases[i];
		if ((li->holder != 0) != held || (held &&
		    li->holder_index != idx))
			continue;
		tool_json_open(j, NULL, '{');
		tool_json_u64(j, "deliveries", li->deliveries);
		tool_json_u64(j, "len", li->len);
		if (held && li->taken_ns != 0)
			tool_json_i64(j, "age_ms", age_ms(s->s_now,
			    li->taken_ns));
		else
			tool_json_null(j, "age_ms");
		tool_json_close(j, '}');
	}
}

/* The fields of one process, in JSON or as CSV rows. */
static void
proc_fields(struct kv *kv, const struct show *s, int i)
{
	const struct shmq_proc_info *pi = &s->s_detail.d_procs[i];
	char pst, st[2] = { 0, 0 }, ls[128];
	const char *doing = proc_doing(s, i, &pst);

	st[0] = pst;
	kv_u64(kv, "pid", (uint64_t)pi->pid);
	kv_u64(kv, "record", pi->index);
	kv_str(kv, "record_state", pi->state == SHMQ_PROC_DEAD ? "dead" :
	    "alive");
	kv_bool(kv, "alive", s->s_detail.d_alive[i]);
	kv_str(kv, "roles", proc_roles(pi->roles));
	kv_str(kv, "doing", doing);
	kv_str(kv, "proc_state", pst ? st : NULL);
	kv_ms(kv, "last_op_age_ms", age_ms(s->s_now, pi->last_op_ns));
	kv_u64(kv, "n_put", pi->n_put);
	kv_u64(kv, "n_get", pi->n_get);
	kv_u64(kv, "n_ack", pi->n_ack);
	kv_u64(kv, "leases_held", pi->leases);
	if (kv->k_fmt == TOOL_FMT_JSON) {
		tool_json_open(&kv->k_json, "leases", '[');
		json_leases(&kv->k_json, s, true, pi->index);
		tool_json_close(&kv->k_json, ']');
	} else {
		proc_leases(s, pi->index, ls, sizeof(ls));
		kv_str(kv, "lease_deliveries", ls);
	}
}

static void
show_json(struct kv *kv, const struct show *s, const struct tool_opts *o)
{
	struct tool_json *j = &kv->k_json;

	tool_json_init(j, stdout);
	tool_json_open(j, NULL, '{');
	tool_json_header(j, "show");
	tool_json_u64(j, "window_s", o->o_window);
	tool_json_open(j, "queue", '{');
	show_queue(kv, s);
	tool_json_close(j, '}');
	tool_json_open(j, "procs", '[');
	for (int i = 0; i < s->s_detail.d_nprocs; i++) {
		tool_json_open(j, NULL, '{');
		proc_fields(kv, s, i);
		tool_json_close(j, '}');
	}
	tool_json_close(j, ']');
	tool_json_open(j, "redeliveries", '[');
	json_leases(j, s, false, 0);
	tool_json_close(j, ']');
	tool_json_close(j, '}');
}

static void
show_csv(struct kv *kv, const struct show *s)
{
	fputs("field,value\r\n", stdout);
	show_queue(kv, s);
	for (int i = 0; i < s->s_detail.d_nprocs; i++) {
		snprintf(kv->k_prefix, sizeof(kv->k_prefix), "proc.%u.",
		    s->s_detail.d_procs[i].index);
		proc_fields(kv, s, i);
	}
}

static void
show_table(struct kv *kv, const struct show *s)
{
	int waiting = 0;

	tool_table_init(&kv->k_table, "ll", "FIELD", "VALUE");
	show_queue(kv, s);
	tool_table_print(&kv->k_table, stdout);
	tool_table_free(&kv->k_table);
	proc_table(s, stdout);
	for (int i = 0; i < s->s_detail.d_nleases; i++)
		waiting += s->s_detail.d_leases[i].holder == 0;
	if (waiting > 0)
		printf("\n%d message%s waiting for redelivery\n", waiting,
		    waiting == 1 ? "" : "s");
}

/* Per-process metrics after the queue's. */
static void
show_prom(const struct show *s)
{
	static const char *const fam[][3] = {
		{ "shmq_proc_alive", "gauge", "1 if the process is alive." },
		{ "shmq_proc_asleep", "gauge", "1 if asleep on this queue." },
		{ "shmq_proc_last_op_age_seconds", "gauge", "Since its last "
		    "operation on the queue." },
		{ "shmq_proc_leases", "gauge", "Leases it holds." },
		{ "shmq_proc_put_total", "counter", "Messages it put." },
		{ "shmq_proc_get_total", "counter", "Messages it took." },
	};
	char labels[TOOL_NAME_LEN * 2 + 96], pid[16], rec[16];

	tool_rows_prom(&s->s_row, 1, stdout);
	for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
		tool_prom_family(stdout, fam[f][0], fam[f][1], fam[f][2]);
		for (int i = 0; i < s->s_detail.d_nprocs; i++) {
			const struct shmq_proc_info *pi =
			    &s->s_detail.d_procs[i];
			int64_t age = age_ms(s->s_now, pi->last_op_ns);
			double v[] = { s->s_detail.d_alive[i], pi->asleep != 0,
			    age < 0 ? NAN : age / 1e3, pi->leases,
			    (double)pi->n_put, (double)pi->n_get };
			snprintf(pid, sizeof(pid), "%d", (int)pi->pid);
			snprintf(rec, sizeof(rec), "%u", pi->index);
			tool_prom_labels(labels, sizeof(labels), "queue",
			    s->s_row.q_name, "pid", pid, "record", rec, NULL);
			if (!isnan(v[f]))
				tool_prom_sample(stdout, fam[f][0], labels,
				    v[f]);
		}
	}
}

static int
show_exit(const struct tool_qrow *r)
{
	switch (r->q_state) {
	case TOOL_ST_GONE:
		return TOOL_EX_NOINPUT;
	case TOOL_ST_INIT:
		return TOOL_EX_TEMPFAIL;
	default:
		return tool_rows_exit(r, 1);
	}
}

int
tool_cmd_show(int argc, char **argv)
{
	static const struct option longopts[] = {
		TOOL_LONG_COMMON, { NULL, 0, NULL, 0 }
	};
	struct tool_opts o;
	struct kv kv;
	struct show *s;
	int ch, code;

	tool_opts_init(&o);
	while ((ch = getopt_long(argc, argv, ":ho:w:", longopts, NULL)) !=
	    -1) {
		if (ch == 'h')
			return tool_help("show");
		if (ch == TOOL_OPT_FILL_CRIT)	/* check's alone */
			return tool_usage("show", "--fill-crit is for check");
		if ((code = tool_opt_common(&o, ch, optarg)) < 0)
			return tool_usage("show", NULL);
		if (code == 0)
			return tool_opt_bad("show", ch, argv, longopts);
	}
	if (argc - optind != 1)
		return tool_usage("show", "expected one NAME");
	if ((s = calloc(1, sizeof(*s))) == NULL)
		err(TOOL_EX_OSERR, "calloc");
	if ((code = tool_lookup(argv[optind], TOOL_K_QUEUE | TOOL_K_QINIT,
	    &s->s_ent)) != 0) {
		free(s);
		return code;
	}
	tool_queue_read(&s->s_ent, &o, &s->s_row, &s->s_detail);
	s->s_now = tool_coarse_ns();
	memset(&kv, 0, sizeof(kv));
	kv.k_fmt = o.o_fmt;
	kv.k_f = stdout;
	if (s->s_row.q_state == TOOL_ST_GONE)
		tool_row_warn(&s->s_row);	/* "removed while ..." */
	else if (o.o_fmt == TOOL_FMT_JSON)
		show_json(&kv, s, &o);
	else if (o.o_fmt == TOOL_FMT_CSV)
		show_csv(&kv, s);
	else if (o.o_fmt == TOOL_FMT_PROM)
		show_prom(s);
	else
		show_table(&kv, s);
	if (s->s_row.q_why != NULL && s->s_row.q_state != TOOL_ST_GONE)
		tool_row_warn(&s->s_row);
	code = show_exit(&s->s_row);
	tool_qdetail_free(&s->s_detail);
	free(s);
	return code;
}
