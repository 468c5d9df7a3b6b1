/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tool_check.c - shmq check: a health check for cron, container probes
 * and monitoring.  Every queue and pipeline that matches gets a status;
 * the worst one is the exit code (Nagios: 0 OK, 1 WARNING, 2 CRITICAL,
 * 3 UNKNOWN) and the first line says why, with performance data.
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

#define CHECK_NAMED	4	/* problems named on the status line */

/* One segment's verdict. */
struct verdict {
	char		 v_name[TOOL_NAME_LEN];
	const char	*v_kind;	/* "queue" or "pipeline" */
	enum tool_state	 v_state;
	int		 v_status;	/* TOOL_NAGIOS_* */
	char		 v_reason[128];
	const struct tool_qrow *v_row;	/* queues: for perfdata */
};

struct check {
	struct tool_opts o;
	struct tool_rows rows;
	struct verdict	*c_v;
	size_t		 c_n;
	unsigned	 c_pipes;
	int		 c_status;
};

static const char *const status_names[] = { "OK", "WARNING", "CRITICAL",
	"UNKNOWN" };

/* CRITICAL > WARNING > UNKNOWN > OK. */
static int
worse(int a, int b)
{
	static const int rank[] = { 0, 2, 3, 1 };

	return rank[b] > rank[a] ? b : a;
}

static struct verdict *
check_add(struct check *c, const char *name, const char *kind,
    enum tool_state st)
{
	struct verdict *v = reallocarray(c->c_v, c->c_n + 1, sizeof(*v));

	if (v == NULL)
		err(TOOL_NAGIOS_UNKNOWN, "reallocarray");
	c->c_v = v;
	v = &c->c_v[c->c_n++];
	memset(v, 0, sizeof(*v));
	strlcpy(v->v_name, name, sizeof(v->v_name));
	v->v_kind = kind;
	v->v_state = st;
	return v;
}

/* The status of a queue, and why, by the thresholds. */
static void
judge_queue(struct verdict *v, const struct tool_qrow *r,
    const struct tool_opts *o)
{
	char age[16];
	double fill = r->q_have ? tool_fill_pct(r) : 0;

	tool_age(age, sizeof(age), r->q_st.oldest_age_ms);
	v->v_row = r;
	switch (r->q_state) {
	case TOOL_ST_OK:
	case TOOL_ST_IDLE:
	case TOOL_ST_BACKLOG:
	case TOOL_ST_FULL:
		v->v_status = fill >= o->o_fill_crit ? TOOL_NAGIOS_CRITICAL :
		    fill >= o->o_fill_warn ? TOOL_NAGIOS_WARNING :
		    TOOL_NAGIOS_OK;
		snprintf(v->v_reason, sizeof(v->v_reason), "%.0f%% full",
		    fill);
		break;
	case TOOL_ST_STALLED:
		v->v_status = TOOL_NAGIOS_CRITICAL;
		snprintf(v->v_reason, sizeof(v->v_reason), "%u waiting, none "
		    "taken, oldest %s", r->q_st.depth +
		    r->q_st.redeliver_pending, age);
		break;
	case TOOL_ST_STALE:
		v->v_status = TOOL_NAGIOS_CRITICAL;
		snprintf(v->v_reason, sizeof(v->v_reason), "%s", r->q_why ?
		    r->q_why : "every attached process is dead");
		break;
	case TOOL_ST_CORRUPT:
		v->v_status = TOOL_NAGIOS_CRITICAL;
		snprintf(v->v_reason, sizeof(v->v_reason), "%s", r->q_why);
		break;
	case TOOL_ST_INIT:
		v->v_status = TOOL_NAGIOS_OK;
		snprintf(v->v_reason, sizeof(v->v_reason), "being created");
		break;
	default:
		v->v_status = TOOL_NAGIOS_UNKNOWN;
		snprintf(v->v_reason, sizeof(v->v_reason), "%s", r->q_why);
		break;
	}
}

static int
check_pipe(const struct tool_ent *e, void *arg)
{
	struct check *c = arg;
	char name[TOOL_NAME_LEN];
	const char *why = NULL, *suffix;
	enum tool_state st = TOOL_ST_DENIED;
	struct verdict *v;

	/* A pipeline is judged once, by its control segment: its queues,
	 * when they cannot be read, match the pattern too. */
	if (!tool_pipe_name(e->e_name, name, sizeof(name), &suffix) ||
	    strcmp(suffix, "ctl") != 0)
		return 0;
	if (e->e_kind != TOOL_K_DENIED)
		st = tool_pipe_state(name, &why);
	if (st == TOOL_ST_GONE)
		return 0;
	v = check_add(c, name, "pipeline", st);
	v->v_status = st == TOOL_ST_OK || st == TOOL_ST_INIT ?
	    TOOL_NAGIOS_OK : st == TOOL_ST_STALE || st == TOOL_ST_CORRUPT ?
	    TOOL_NAGIOS_CRITICAL : TOOL_NAGIOS_UNKNOWN;
	snprintf(v->v_reason, sizeof(v->v_reason), "%s", why ? why :
	    st == TOOL_ST_DENIED ? "permission denied" : "supervisor alive");
	c->c_pipes++;
	return 0;
}

/* Judge everything that matches; the overall status. */
static int
check_run(struct check *c)
{
	const char *pat = c->o.o_pattern ? c->o.o_pattern : "shmpipe.*.ctl";
	unsigned matched = 0;
	int r;

	if ((r = tool_rows_collect(&c->rows, &c->o)) != 0) {
		errno = -r;
		warn("%s", TOOL_SHM_DIR);
		return -1;
	}
	for (size_t i = 0; i < c->rows.r_n; i++)
		judge_queue(check_add(c, c->rows.r_rows[i].q_name, "queue",
		    c->rows.r_rows[i].q_state), &c->rows.r_rows[i], &c->o);
	if (tool_scan(pat, TOOL_K_PIPE | TOOL_K_PINIT | (c->o.o_pattern ?
	    TOOL_K_DENIED : 0), check_pipe, c, &matched) != 0)
		return -1;
	c->c_status = TOOL_NAGIOS_OK;
	for (size_t i = 0; i < c->c_n; i++)
		c->c_status = worse(c->c_status, c->c_v[i].v_status);
	if (c->c_n == 0 && c->o.o_pattern != NULL)
		c->c_status = TOOL_NAGIOS_UNKNOWN;
	return 0;
}

/*
 * Text for the plugin's output, which Nagios reads by rules of its own:
 * the first '|' of a line starts performance data, and the status is one
 * line.  A name in it is shown as tables show it (no control characters,
 * so no newline), with '|' as '/', which no segment name can hold.
 */
static const char *
nagios_text(char *buf, size_t len, const char *s)
{
	tool_safe(buf, len, s);
	for (char *p = buf; (p = strchr(p, '|')) != NULL; p++)
		*p = '/';
	return buf;
}

/* A performance data label, for inside '...': as nagios_text, a ' doubled
 * (the guidelines' escape) and '=', which ends the label, as '_'. */
static const char *
nagios_label(char *buf, size_t len, const char *s)
{
	char text[TOOL_NAME_LEN * 3];
	size_t o = 0;

	nagios_text(text, sizeof(text), s);
	for (const char *p = text; *p && o + 2 < len; p++) {
		if (*p == '\'')
			buf[o++] = '\'';
		buf[o++] = *p == '=' ? '_' : *p;
	}
	buf[o] = '\0';
	return buf;
}

/* "2 queues, 1 pipeline: q FULL (100% full), ..." */
static void
check_summary(const struct check *c, char *buf, size_t len)
{
	char name[TOOL_NAME_LEN * 3], why[sizeof(c->c_v->v_reason) * 3];
	size_t queues = c->c_n - c->c_pipes, used;
	unsigned named = 0, more = 0;

	used = (size_t)snprintf(buf, len, "%zu queue%s, %u pipeline%s",
	    queues, queues == 1 ? "" : "s", c->c_pipes, c->c_pipes == 1 ?
	    "" : "s");
	if (c->c_n == 0 && c->o.o_pattern != NULL)
		snprintf(buf + used, len - used, ": nothing matches %s",
		    nagios_text(name, sizeof(name), c->o.o_pattern));
	for (size_t i = 0; i < c->c_n && used < len; i++) {
		const struct verdict *v = &c->c_v[i];
		if (v->v_status == TOOL_NAGIOS_OK)
			continue;
		if (named++ >= CHECK_NAMED) {
			more++;
			continue;
		}
		used += (size_t)snprintf(buf + used, len - used, "%s%s %s (%s)",
		    named == 1 ? ": " : ", ", nagios_text(name, sizeof(name),
		    v->v_name), tool_state_name(v->v_state),
		    nagios_text(why, sizeof(why), v->v_reason));
	}
	if (more > 0 && used < len)
		snprintf(buf + used, len - used, " and %u more", more);
	else if (named == 0 && c->c_n > 0 && used < len)
		snprintf(buf + used, len - used, ", all OK");
}

/* Nagios performance data: fill and depth of each queue. */
static void
check_perf(const struct check *c, FILE *f)
{
	char label[TOOL_NAME_LEN * 6];
	bool first = true;

	for (size_t i = 0; i < c->c_n; i++) {
		const struct tool_qrow *r = c->c_v[i].v_row;
		if (r == NULL || !r->q_have)
			continue;
		nagios_label(label, sizeof(label), r->q_name);
		fprintf(f, "%s'%s_fill'=%.1f%%;%u;%u;0;100 "
		    "'%s_depth'=%u;;;0;%u",
		    first ? " | " : " ", label, tool_fill_pct(r),
		    c->o.o_fill_warn, c->o.o_fill_crit, label,
		    r->q_st.depth, r->q_st.capacity);
		first = false;
	}
}

static void
check_table(const struct check *c, const char *summary)
{
	char name[TOOL_NAME_LEN * 3], why[sizeof(c->c_v->v_reason) * 3];

	printf("SHMQ %s - %s", status_names[c->c_status], summary);
	check_perf(c, stdout);
	putchar('\n');
	for (size_t i = 0; i < c->c_n; i++)	/* Nagios long output */
		if (c->c_v[i].v_status != TOOL_NAGIOS_OK)
			printf("%s %s: %s %s (%s)\n", c->c_v[i].v_kind,
			    nagios_text(name, sizeof(name), c->c_v[i].v_name),
			    status_names[c->c_v[i].v_status],
			    tool_state_name(c->c_v[i].v_state),
			    nagios_text(why, sizeof(why),
			    c->c_v[i].v_reason));
}

static void
check_json(const struct check *c, const char *summary)
{
	struct tool_json j;

	tool_json_init(&j, stdout);
	tool_json_open(&j, NULL, '{');
	tool_json_header(&j, "check");
	tool_json_str(&j, "status", status_names[c->c_status]);
	tool_json_u64(&j, "code", (uint64_t)c->c_status);
	tool_json_str(&j, "summary", summary);
	tool_json_open(&j, "thresholds", '{');
	tool_json_u64(&j, "fill_warn_pct", c->o.o_fill_warn);
	tool_json_u64(&j, "fill_crit_pct", c->o.o_fill_crit);
	tool_json_u64(&j, "stall_s", c->o.o_stall);
	tool_json_close(&j, '}');
	tool_json_open(&j, "segments", '[');
	for (size_t i = 0; i < c->c_n; i++) {
		const struct verdict *v = &c->c_v[i];
		tool_json_open(&j, NULL, '{');
		tool_json_str(&j, "name", v->v_name);
		tool_json_str(&j, "kind", v->v_kind);
		tool_json_str(&j, "state", tool_state_name(v->v_state));
		tool_json_str(&j, "status", status_names[v->v_status]);
		tool_json_u64(&j, "code", (uint64_t)v->v_status);
		tool_json_str(&j, "reason", v->v_reason);
		tool_json_close(&j, '}');
	}
	tool_json_close(&j, ']');
	tool_json_close(&j, '}');
}

/*
 * One line per segment, after one of kind "check" with what JSON has of
 * the whole: its status, code, the summary as its reason, and the
 * thresholds (empty on the other lines).
 */
static void
check_csv(const struct check *c, const char *summary)
{
	FILE *f = stdout;

	fputs("name,kind,state,status,code,reason,fill_warn_pct,"
	    "fill_crit_pct,stall_s\r\n", f);
	fputs(",check,,", f);	/* no name, no state */
	tool_csv(f, status_names[c->c_status], false);
	tool_csv_u64(f, (uint64_t)c->c_status, false);
	tool_csv(f, summary, false);
	tool_csv_u64(f, c->o.o_fill_warn, false);
	tool_csv_u64(f, c->o.o_fill_crit, false);
	tool_csv_u64(f, c->o.o_stall, true);
	for (size_t i = 0; i < c->c_n; i++) {
		const struct verdict *v = &c->c_v[i];
		tool_csv(f, v->v_name, false);
		tool_csv(f, v->v_kind, false);
		tool_csv(f, tool_state_name(v->v_state), false);
		tool_csv(f, status_names[v->v_status], false);
		tool_csv_u64(f, (uint64_t)v->v_status, false);
		tool_csv(f, v->v_reason, false);
		fputs(",,\r\n", f);
	}
}

static void
check_prom(const struct check *c)
{
	char labels[TOOL_NAME_LEN * 2 + 96];

	tool_prom_family(stdout, "shmq_check_status", "gauge", "Overall: 0 "
	    "OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.");
	tool_prom_sample(stdout, "shmq_check_status", "", c->c_status);
	tool_prom_family(stdout, "shmq_check_segment_status", "gauge", "Per "
	    "queue or pipeline: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.");
	for (size_t i = 0; i < c->c_n; i++) {
		tool_prom_labels(labels, sizeof(labels), "name",
		    c->c_v[i].v_name, "kind", c->c_v[i].v_kind, "state",
		    tool_state_name(c->c_v[i].v_state), NULL);
		tool_prom_sample(stdout, "shmq_check_segment_status", labels,
		    c->c_v[i].v_status);
	}
}

/* Options; 0, or the exit code (usage errors are UNKNOWN here). */
static int
check_opts(struct check *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		TOOL_LONG_COMMON, { NULL, 0, NULL, 0 }
	};
	int ch, r;

	tool_opts_init(&c->o);
	while ((ch = getopt_long(argc, argv, ":ho:w:", longopts, NULL)) !=
	    -1) {
		if (ch == 'h')
			return tool_help("check") == 0 ? -1 : 1;
		if ((r = tool_opt_common(&c->o, ch, optarg)) < 0)
			return tool_usage("check", NULL);
		if (r == 0)
			return tool_opt_bad("check", ch, argv, longopts);
	}
	if (argc - optind > 1)
		return tool_usage("check", "one PATTERN at most");
	if (c->o.o_fill_warn > c->o.o_fill_crit) {
		char why[96];
		snprintf(why, sizeof(why), "--fill-warn %u is above --fill-crit "
		    "%u; expected it at most that", c->o.o_fill_warn,
		    c->o.o_fill_crit);
		return tool_usage("check", why);
	}
	c->o.o_pattern = NULL;
	return optind < argc ? tool_pattern_arg("check", argv[optind],
	    &c->o.o_pattern) : 0;
}

int
tool_cmd_check(int argc, char **argv)
{
	struct check c;
	char summary[1024];
	int r;

	memset(&c, 0, sizeof(c));
	if ((r = check_opts(&c, argc, argv)) != 0)
		return r < 0 ? 0 : TOOL_NAGIOS_UNKNOWN;
	if (check_run(&c) != 0) {
		printf("SHMQ UNKNOWN - cannot read " TOOL_SHM_DIR "\n");
		c.c_status = TOOL_NAGIOS_UNKNOWN;
	} else {
		check_summary(&c, summary, sizeof(summary));
		if (c.o.o_fmt == TOOL_FMT_JSON)
			check_json(&c, summary);
		else if (c.o.o_fmt == TOOL_FMT_CSV)
			check_csv(&c, summary);
		else if (c.o.o_fmt == TOOL_FMT_PROM)
			check_prom(&c);
		else
			check_table(&c, summary);
	}
	free(c.c_v);
	tool_rows_free(&c.rows);
	return c.c_status;
}
