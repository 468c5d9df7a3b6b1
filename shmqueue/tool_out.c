/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tool_out.c - shmq(1)'s output: human numbers and ages, aligned tables,
 * and writers for JSON, CSV and the Prometheus text format that take care
 * of separators and escaping.
 */
#define _GNU_SOURCE
#include <err.h>
#include <inttypes.h>
#include <libutil.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"
#include "utf8.h"

/* ---- human numbers ----------------------------------------------------- */

void
tool_human(char *buf, size_t len, uint64_t n)
{
	if (len > 6)
		len = 6;		/* four digits and a unit, or five */
	if (humanize_number(buf, len, n > INT64_MAX ? INT64_MAX : (int64_t)n,
	    "", HN_AUTOSCALE, HN_DECIMAL | HN_NOSPACE | HN_DIVISOR_1000) < 0)
		snprintf(buf, len, "?");
}

void
tool_human_rate(char *buf, size_t len, double per_s)
{
	if (!(per_s > 0))
		snprintf(buf, len, "0");
	else if (per_s < 10)
		snprintf(buf, len, "%.1f", per_s);
	else
		tool_human(buf, len, (uint64_t)(per_s + 0.5));
}

void
tool_age(char *buf, size_t len, int64_t ms)
{
	int64_t s = ms / 1000;

	if (ms < 0)
		snprintf(buf, len, "-");
	else if (ms < 1000)
		snprintf(buf, len, "%" PRId64 "ms", ms);
	else if (ms < 60000)
		snprintf(buf, len, "%.1fs", (double)ms / 1000);
	else if (s < 3600)
		snprintf(buf, len, "%" PRId64 "m%02" PRId64 "s", s / 60,
		    s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m", s / 3600,
		    s / 60 % 60);
	else
		snprintf(buf, len, "%" PRId64 "d%02" PRId64 "h", s / 86400,
		    s / 3600 % 24);
}

/* ---- text from segments ------------------------------------------------ */

/*
 * Names and last_exit come from /dev/shm and from segments: any bytes.
 * Every format prints them as UTF-8: a valid sequence passes, a byte that
 * is not part of one becomes U+FFFD.  Control characters (C0, DEL, C1)
 * are escaped in JSON, become U+FFFD in Prometheus labels (a newline is
 * \n) and '?' in tables and CSV, where they would reach a terminal
 * (shmq.1, OUTPUT).  The checks are utf8.c's, shared with shmpipe-bench.
 */

/* s as tables and CSV show it (utf8_safe), into a new string. */
static char *
safe_dup(const char *s)
{
	size_t len;
	char *out;

	s = s != NULL ? s : "";
	len = strlen(s) * 3 + 1;	/* a byte: at most U+FFFD */
	if ((out = malloc(len)) == NULL)
		err(TOOL_EX_OSERR, "malloc");
	utf8_safe(out, len, s);
	return out;
}

const char *
tool_safe(char *buf, size_t len, const char *s)
{
	return utf8_safe(buf, len, s != NULL ? s : "");
}

/* Columns a safe string takes: its characters, not its bytes. */
static int
text_width(const char *s)
{
	int w = 0;

	for (; *s; s++)
		w += ((unsigned char)*s & 0xc0) != 0x80;
	return w;
}

/* ---- tables ------------------------------------------------------------ */

/* Append one row of t_ncols cells from ap. */
static void
table_vrow(struct tool_table *t, va_list ap)
{
	if ((t->t_nrows + 1) * t->t_ncols > t->t_cap) {
		size_t cap = t->t_cap ? t->t_cap * 2 : 16 * t->t_ncols;
		char **c = reallocarray(t->t_cells, cap, sizeof(*c));
		if (c == NULL)
			err(TOOL_EX_OSERR, "reallocarray");
		t->t_cells = c;
		t->t_cap = cap;
	}
	for (unsigned i = 0; i < t->t_ncols; i++)
		t->t_cells[t->t_nrows * t->t_ncols + i] =
		    safe_dup(va_arg(ap, const char *));
	t->t_nrows++;
}

void
tool_table_init(struct tool_table *t, const char *align, ...)
{
	va_list ap;

	memset(t, 0, sizeof(*t));
	t->t_align = align;
	t->t_ncols = (unsigned)strlen(align);
	va_start(ap, align);
	table_vrow(t, ap);
	va_end(ap);
}

void
tool_table_row(struct tool_table *t, ...)
{
	va_list ap;

	va_start(ap, t);
	table_vrow(t, ap);
	va_end(ap);
}

void
tool_table_print(const struct tool_table *t, FILE *f)
{
	int w[32] = { 0 };

	for (size_t r = 0; r < t->t_nrows; r++)
		for (unsigned c = 0; c < t->t_ncols && c < 32; c++) {
			int n = text_width(t->t_cells[r * t->t_ncols + c]);
			w[c] = n > w[c] ? n : w[c];
		}
	for (size_t r = 0; r < t->t_nrows; r++) {
		for (unsigned c = 0; c < t->t_ncols && c < 32; c++) {
			const char *cell = t->t_cells[r * t->t_ncols + c];
			bool last = c + 1 == t->t_ncols;
			/* Padded by characters: a name may be UTF-8. */
			int pad = (last && t->t_align[c] != 'r') ? 0 :
			    w[c] - text_width(cell);
			if (t->t_align[c] == 'r')
				fprintf(f, "%*s%s", pad, "", cell);
			else
				fprintf(f, "%s%*s", cell, pad, "");
			fputs(last ? "\n" : "  ", f);
		}
	}
}

void
tool_table_free(struct tool_table *t)
{
	for (size_t i = 0; i < t->t_nrows * t->t_ncols; i++)
		free(t->t_cells[i]);
	free(t->t_cells);
	memset(t, 0, sizeof(*t));
}

/* ---- JSON -------------------------------------------------------------- */

void
tool_json_init(struct tool_json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->j_f = f;
	j->j_first[0] = true;
}

/* The comma and the key before a value. */
static void
json_key(struct tool_json *j, const char *key)
{
	if (!j->j_first[j->j_depth])
		fputc(',', j->j_f);
	j->j_first[j->j_depth] = false;
	if (key != NULL) {
		utf8_json_string(j->j_f, key);
		fputc(':', j->j_f);
	}
}

void
tool_json_open(struct tool_json *j, const char *key, char brace)
{
	json_key(j, key);
	fputc(brace, j->j_f);
	if (j->j_depth + 1 < TOOL_JSON_DEPTH)
		j->j_depth++;
	j->j_first[j->j_depth] = true;
}

void
tool_json_close(struct tool_json *j, char brace)
{
	fputc(brace, j->j_f);
	if (j->j_depth > 0)
		j->j_depth--;
	if (j->j_depth == 0)
		fputc('\n', j->j_f);
}

void
tool_json_str(struct tool_json *j, const char *key, const char *s)
{
	json_key(j, key);
	if (s == NULL)
		fputs("null", j->j_f);
	else
		utf8_json_string(j->j_f, s);
}

void
tool_json_u64(struct tool_json *j, const char *key, uint64_t v)
{
	json_key(j, key);
	fprintf(j->j_f, "%" PRIu64, v);
}

void
tool_json_i64(struct tool_json *j, const char *key, int64_t v)
{
	json_key(j, key);
	fprintf(j->j_f, "%" PRId64, v);
}

void
tool_json_num(struct tool_json *j, const char *key, double v)
{
	json_key(j, key);
	if (isfinite(v))
		fprintf(j->j_f, "%.6g", v);
	else
		fputs("null", j->j_f);
}

void
tool_json_bool(struct tool_json *j, const char *key, bool v)
{
	json_key(j, key);
	fputs(v ? "true" : "false", j->j_f);
}

void
tool_json_null(struct tool_json *j, const char *key)
{
	json_key(j, key);
	fputs("null", j->j_f);
}

void
tool_json_header(struct tool_json *j, const char *command)
{
	tool_json_u64(j, "schema", TOOL_SCHEMA);
	tool_json_str(j, "tool", "shmq");
	tool_json_str(j, "version", SHMQ_VERSION);
	tool_json_str(j, "command", command);
	tool_json_u64(j, "time_ms", tool_real_ns() / 1000000u);
}

/* ---- CSV --------------------------------------------------------------- */

void
tool_csv(FILE *f, const char *s, bool last)
{
	char *t = s != NULL ? safe_dup(s) : NULL;	/* no \r, \n left */

	if (t != NULL && strpbrk(t, ",\"") != NULL) {
		fputc('"', f);
		for (const char *p = t; *p; p++) {
			if (*p == '"')
				fputc('"', f);
			fputc(*p, f);
		}
		fputc('"', f);
	} else if (t != NULL) {
		fputs(t, f);
	}
	free(t);
	fputs(last ? "\r\n" : ",", f);
}

void
tool_csv_u64(FILE *f, uint64_t v, bool last)
{
	fprintf(f, "%" PRIu64 "%s", v, last ? "\r\n" : ",");
}

void
tool_csv_num(FILE *f, double v, bool last)
{
	if (isfinite(v))
		fprintf(f, "%.6g", v);
	fputs(last ? "\r\n" : ",", f);
}

/* ---- Prometheus -------------------------------------------------------- */

void
tool_prom_family(FILE *f, const char *name, const char *type,
    const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void
tool_prom_sample(FILE *f, const char *name, const char *labels, double v)
{
	if (labels[0] != '\0')
		fprintf(f, "%s{%s} ", name, labels);
	else
		fprintf(f, "%s ", name);
	if (!isfinite(v))
		fputs("NaN\n", f);
	else if (v > -9e15 && v < 9e15 && v == (double)(int64_t)v)
		fprintf(f, "%" PRId64 "\n", (int64_t)v);
	else
		fprintf(f, "%.9g\n", v);
}

/*
 * Append s to buf (of len, holding *used) with \\ " and newline escaped,
 * as UTF-8: a byte that is not part of a sequence, or another control
 * character, becomes U+FFFD.  Only whole characters are appended.
 */
static void
prom_escape(char *buf, size_t len, size_t *used, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	for (; *p; p += n ? n : 1) {
		const char *out = (const char *)p;
		size_t olen;
		n = utf8_len(p);
		olen = n;
		if (*p == '\\' || *p == '"')
			out = *p == '"' ? "\\\"" : "\\\\", olen = 2;
		else if (*p == '\n')
			out = "\\n", olen = 2;
		else if (n == 0 || utf8_control(p, n) >= 0)
			out = UTF8_REPLACEMENT, olen = 3;
		if (*used + olen + 3 >= len)	/* room for the '"' after */
			break;
		memcpy(buf + *used, out, olen);
		*used += olen;
	}
	buf[*used] = '\0';
}

void
tool_prom_labels(char *buf, size_t len, ...)
{
	const char *key, *val;
	size_t used = 0;
	va_list ap;

	buf[0] = '\0';
	va_start(ap, len);
	while ((key = va_arg(ap, const char *)) != NULL) {
		val = va_arg(ap, const char *);
		int n = snprintf(buf + used, len - used, "%s%s=\"",
		    used ? "," : "", key);
		if (n < 0 || (size_t)n + 2 >= len - used)
			break;
		used += (size_t)n;
		prom_escape(buf, len, &used, val != NULL ? val : "");
		if (used + 2 < len) {
			buf[used++] = '"';
			buf[used] = '\0';
		}
	}
	va_end(ap);
}
