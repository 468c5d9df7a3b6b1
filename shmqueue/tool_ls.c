/* SPDX-License-Identifier: BSD-2-Clause */
/* tool_ls.c - shmq ls and shmq top: the listing of queues, once or
 * refreshed. */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

#define TOP_INTERVAL_MAX	86400.0

static volatile sig_atomic_t top_stop;

/* Parse a command's options into o; 0, or the exit code to return. */
static int
list_opts(const char *cmd, int argc, char **argv, struct tool_opts *o)
{
	static const struct option longopts[] = {
		TOOL_LONG_COMMON, { NULL, 0, NULL, 0 }
	};
	int ch, r;

	tool_opts_init(o);
	while ((ch = getopt_long(argc, argv, ":ho:w:", longopts, NULL)) !=
	    -1) {
		if (ch == 'h')
			return tool_help(cmd) == 0 ? -1 : TOOL_EX_USAGE;
		/* A threshold only check acts on: refused, as its help says,
		 * rather than taken and ignored. */
		if (ch == TOOL_OPT_FILL_CRIT)
			return tool_usage(cmd, "--fill-crit is for check");
		if ((r = tool_opt_common(o, ch, optarg)) < 0)
			return tool_usage(cmd, NULL);
		if (r == 0)
			return tool_opt_bad(cmd, ch, argv, longopts);
	}
	if (argc - optind > 1)
		return tool_usage(cmd, "one PATTERN at most");
	return optind < argc ? tool_pattern_arg(cmd, argv[optind],
	    &o->o_pattern) : 0;
}

static int
scan_failed(int r)
{
	errno = -r;
	warn("%s", TOOL_SHM_DIR);
	return r == -ENOMEM ? TOOL_EX_OSERR : tool_exit_code(-r);
}

/* A pattern is the user's bytes: said back as names are, controls as '?'
 * (an ESC would reach the terminal, a newline split the line). */
static int
no_match(const char *pattern)
{
	char shown[TOOL_NAME_LEN * 3];

	warnx("no queue matches %s", tool_safe(shown, sizeof(shown),
	    pattern));
	return TOOL_EX_NOINPUT;
}

int
tool_cmd_ls(int argc, char **argv)
{
	struct tool_opts o;
	struct tool_rows rs;
	int code, r;

	if ((code = list_opts("ls", argc, argv, &o)) != 0)
		return code < 0 ? 0 : code;
	if ((r = tool_rows_collect(&rs, &o)) != 0) {
		tool_rows_free(&rs);
		return scan_failed(r);
	}
	tool_rows_print(&rs, &o, stdout, "ls");
	(void)tool_flush();	/* rows before warnings; tool_run says if not */
	tool_rows_warn(&rs);
	code = tool_rows_exit(rs.r_rows, rs.r_n);
	if (code == 0 && o.o_pattern != NULL && rs.r_matched == 0)
		code = no_match(o.o_pattern);
	tool_rows_free(&rs);
	return code;
}

/* ---- top --------------------------------------------------------------- */

static void
on_top_signal(int sig)
{
	(void)sig;
	top_stop = 1;
}

static void
top_signals(void)
{
	struct sigaction sa = { .sa_handler = on_top_signal };

	sigemptyset(&sa.sa_mask);	/* no SA_RESTART: wake the sleep */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* The top line: when, how many, the window. */
static void
top_title(const struct tool_rows *rs, const struct tool_opts *o,
    double interval)
{
	char when[32], shown[TOOL_NAME_LEN * 3];
	time_t now = time(NULL);
	struct tm tm;

	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S",
	    localtime_r(&now, &tm));
	printf("shmq top - %s - %zu queue%s%s%s, every %gs\n", when, rs->r_n,
	    rs->r_n == 1 ? "" : "s", o->o_pattern ? " matching " : "",
	    o->o_pattern ? tool_safe(shown, sizeof(shown), o->o_pattern) :
	    "", interval);
}

/* One refresh: on a terminal, the screen; else a plain snapshot.  Sets
 * *matched if a queue matched the pattern. */
static int
top_once(const struct tool_opts *o, bool tty, double interval, bool *matched)
{
	struct tool_rows rs;
	int r;

	if ((r = tool_rows_collect(&rs, o)) != 0) {
		tool_rows_free(&rs);
		return scan_failed(r);
	}
	if (tty)
		fputs("\033[H\033[2J", stdout);
	top_title(&rs, o, interval);
	tool_rows_print(&rs, o, stdout, "top");
	if (!tty)
		putchar('\n');
	if (rs.r_matched > 0)
		*matched = true;
	tool_rows_free(&rs);
	return 0;
}

static void
top_sleep(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (time_t)s) * 1e9) };

	nanosleep(&ts, NULL);		/* a signal ends it early */
}

/* -i SECONDS: a positive number, fractions allowed. */
static bool
top_interval(const char *arg, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(arg, &end);
	return errno == 0 && end != arg && *end == '\0' && *out >= 0.01 &&
	    *out <= TOP_INTERVAL_MAX;
}

int
tool_cmd_top(int argc, char **argv)
{
	/* TOOL_LONG_COMMON but --output: top writes a table. */
	static const struct option longopts[] = {
		{ "window", required_argument, NULL, 'w' },
		{ "fill-warn", required_argument, NULL, TOOL_OPT_FILL_WARN },
		{ "fill-crit", required_argument, NULL, TOOL_OPT_FILL_CRIT },
		{ "stall", required_argument, NULL, TOOL_OPT_STALL },
		{ "help", no_argument, NULL, 'h' },
		{ "interval", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'n' }, { NULL, 0, NULL, 0 }
	};
	struct tool_opts o;
	double interval = 2;
	long long count = 0;
	int ch, oc, r = 0;
	bool tty = isatty(STDOUT_FILENO), matched = false;

	tool_opts_init(&o);
	while ((ch = getopt_long(argc, argv, ":hi:n:w:", longopts,
	    NULL)) != -1) {
		if (ch == 'h')
			return tool_help("top");
		if (ch == 'i' && !top_interval(optarg, &interval))
			return tool_usage("top", "-i: expected seconds, 0.01 "
			    "or more");
		if (ch == 'n' && !tool_num(optarg, 1, INT32_MAX, &count))
			return tool_usage("top", "-n: expected a count, 1 or "
			    "more");
		if (ch == TOOL_OPT_FILL_CRIT)	/* as in list_opts */
			return tool_usage("top", "--fill-crit is for check");
		if (ch == 'i' || ch == 'n')
			continue;
		if ((oc = tool_opt_common(&o, ch, optarg)) < 0)
			return tool_usage("top", NULL);
		if (oc == 0)
			return tool_opt_bad("top", ch, argv, longopts);
	}
	if (argc - optind > 1)
		return tool_usage("top", "one PATTERN at most");
	if (optind < argc && (r = tool_pattern_arg("top", argv[optind],
	    &o.o_pattern)) != 0)
		return r;
	top_signals();
	for (long long n = 0; !top_stop && (count == 0 || n < count); n++) {
		if (n > 0)
			top_sleep(interval);
		if (!top_stop && (r = top_once(&o, tty, interval,
		    &matched)) != 0)
			break;
		if (tool_flush() != 0)
			break;		/* nobody sees it; tool_run says why */
	}
	/* As ls: no refresh found anything the pattern names. */
	if (r == 0 && o.o_pattern != NULL && !matched)
		r = no_match(o.o_pattern);
	return r;
}
