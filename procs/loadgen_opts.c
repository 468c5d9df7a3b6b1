/* SPDX-License-Identifier: BSD-2-Clause */
/* loadgen_opts.c - the command line of shmpipe-bench, parsed and checked. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "loadgen_opts.h"
#include "longopt.h"
#include "options.h"
#include "proto.h"
#include "utf8.h"

#define STR(x)		#x
#define XSTR(x)		STR(x)

enum {
	OPT_TCP = 256,
	OPT_UNIX,
	OPT_CRASH_AT,
	OPT_RECONNECT,
	OPT_JSON,
	OPT_TIMEOUT,
	OPT_HANDLER,
	OPT_MAX_LINE
};

static const char usage[] =
"usage: shmpipe-bench [options]\n"
"Load a shmpipe server with requests and check every reply: its content,\n"
"its order, and that none is missing or extra.\n"
"\n"
"Target (one of):\n"
"  --tcp HOST:PORT          TCP server (default " LOADGEN_HOST_DEFAULT ":"
	LOADGEN_PORT_DEFAULT ";\n"
"                           [::1]:PORT for IPv6)\n"
"  --unix PATH              Unix stream socket\n"
"Load:\n"
"  -c, --connections N      connections, 1.." XSTR(LOADGEN_CONNS_MAX)
	" (default " XSTR(LOADGEN_CONNS_DEFAULT) ")\n"
"  -d, --depth D            requests in flight per connection, 1.."
	XSTR(LOADGEN_DEPTH_MAX) "\n"
"                           (default 1)\n"
"  -n, --requests COUNT     requests in all, shared by the connections\n"
"                           (default " XSTR(LOADGEN_COUNT_DEFAULT) ")\n"
"  -t, --duration SECONDS   send for this long instead, 1.."
	XSTR(LOADGEN_SECONDS_MAX) "\n"
"  -T, --threads N          event loops, one thread each, 1.."
	XSTR(LOADGEN_THREADS_MAX) " and at most\n"
"                           one per connection (default 1)\n"
"Requests:\n"
"  -v, --verb VERB          echo, upper, rev, sha256, fib, sleep, or a verb of\n"
"                           the --handler object (default echo)\n"
"  -s, --size BYTES         argument size of echo, upper, rev, sha256 and other\n"
"                           verbs, 0.." XSTR(LOADGEN_SIZE_MAX)
	" (default " XSTR(LOADGEN_SIZE_DEFAULT) "); never shorter\n"
"                           than the \"CONN:SEQ:\" tag that makes each\n"
"                           request unique\n"
"  -a, --arg ARG            the same argument in every request instead\n"
"                           (fib: 0.." XSTR(PROTO_FIB_MAX) ", default varies "
	"0..20;\n"
"                           sleep: milliseconds, default "
	LOADGEN_SLEEP_DEFAULT ")\n"
"  --handler PATH           load this handler object as the server does, to\n"
"                           compute the expected replies of its verbs\n"
"  --max-line BYTES         the server's --max-line, which limits requests\n"
"                           and replies, " XSTR(OPT_MAX_LINE_MIN) ".."
	XSTR(OPT_MAX_LINE_MAX) " (default " XSTR(OPT_MAX_LINE_DEFAULT) ")\n"
"  --crash-at K             send \"crash\" as request K (1, 2, ...) of\n"
"                           connection 0; its reply must be an ERR line\n"
"Checking:\n"
"  --timeout MS             a connection whose oldest request is unanswered\n"
"                           this long has timed out, 1.."
	XSTR(LOADGEN_TIMEOUT_MAX) " (default " XSTR(LOADGEN_TIMEOUT_DEFAULT) ")\n"
"  --reconnect              re-open connections that the server drops\n"
"                           (without it a drop is an error)\n"
"Output:\n"
"  --json                   the summary as one JSON object on stdout\n"
"  -q, --quiet              no summary (but --json's) and no event lines\n"
"  -h, --help               this text\n"
"  -V, --version            the version\n"
"\n"
"Exit status: 0 every reply was correct; 1 a reply was wrong, out of order,\n"
"missing or duplicated, a connection timed out, or one was dropped without\n"
"--reconnect; 2 cannot connect; 64 bad usage.\n";

static const struct option longopts[] = {
	{ "tcp",	 required_argument, NULL, OPT_TCP },
	{ "unix",	 required_argument, NULL, OPT_UNIX },
	{ "connections", required_argument, NULL, 'c' },
	{ "depth",	 required_argument, NULL, 'd' },
	{ "requests",	 required_argument, NULL, 'n' },
	{ "duration",	 required_argument, NULL, 't' },
	{ "threads",	 required_argument, NULL, 'T' },
	{ "verb",	 required_argument, NULL, 'v' },
	{ "size",	 required_argument, NULL, 's' },
	{ "arg",	 required_argument, NULL, 'a' },
	{ "handler",	 required_argument, NULL, OPT_HANDLER },
	{ "max-line",	 required_argument, NULL, OPT_MAX_LINE },
	{ "crash-at",	 required_argument, NULL, OPT_CRASH_AT },
	{ "timeout",	 required_argument, NULL, OPT_TIMEOUT },
	{ "reconnect",	 no_argument,	    NULL, OPT_RECONNECT },
	{ "json",	 no_argument,	    NULL, OPT_JSON },
	{ "quiet",	 no_argument,	    NULL, 'q' },
	{ "help",	 no_argument,	    NULL, 'h' },
	{ "version",	 no_argument,	    NULL, 'V' },
	{ NULL,		 0,		    NULL, 0 }
};

static const char *const verb_names[] = {
	[LOADGEN_ECHO] = "echo",
	[LOADGEN_UPPER] = "upper",
	[LOADGEN_REV] = "rev",
	[LOADGEN_SHA256] = "sha256",
	[LOADGEN_FIB] = "fib",
	[LOADGEN_SLEEP] = "sleep",
};

/* What the parse has seen so far, for checks of combinations. */
struct seen {
	bool	se_tcp;
	bool	se_count;
	bool	se_seconds;
};

const char *
loadgen_opts_usage(void)
{
	return usage;
}

/*
 * Write one line into err, the user's bytes in it shown as shmq shows a
 * name (utf8_safe: no control character, so no newline, reaches the
 * terminal); returns -EINVAL for the caller to pass on.
 */
static int __attribute__((format(printf, 3, 4)))
fail(char *err, size_t errlen, const char *fmt, ...)
{
	char raw[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	utf8_safe(err, errlen, raw);
	return -EINVAL;
}

/* The number s for option opt, what it counts and its range. */
static int
number(const char *opt, const char *what, const char *s, long long min,
    long long max, long long *v, char *err, size_t errlen)
{
	const char *errstr;

	*v = proto_number(s, min, max, &errstr);
	if (errstr == NULL)
		return 0;
	return fail(err, errlen, "%s '%s' is %s: expected %s, %lld..%lld",
	    opt, s, errstr, what, min, max);
}

static void
defaults(struct loadgen_opts *o)
{
	memset(o, 0, sizeof(*o));
	strlcpy(o->lo_host, LOADGEN_HOST_DEFAULT, sizeof(o->lo_host));
	strlcpy(o->lo_port, LOADGEN_PORT_DEFAULT, sizeof(o->lo_port));
	o->lo_conns = LOADGEN_CONNS_DEFAULT;
	o->lo_depth = 1;
	o->lo_threads = 1;
	o->lo_verb = "echo";
	o->lo_kind = LOADGEN_ECHO;
	o->lo_size = LOADGEN_SIZE_DEFAULT;
	o->lo_timeout_ms = LOADGEN_TIMEOUT_DEFAULT;
	o->lo_max_line = OPT_MAX_LINE_DEFAULT;
}

/* --tcp HOST:PORT or [V6ADDR]:PORT, read as shmpipe --listen reads it. */
static int
parse_tcp(struct loadgen_opts *o, const char *s, char *err, size_t errlen)
{
	const char *host, *portstr;
	size_t hlen;
	long long port;
	int rc;

	rc = options_hostport(s, &host, &hlen, &portstr);
	if (rc == OPTIONS_HOSTPORT_V6)
		return fail(err, errlen, "--tcp '%s': an IPv6 address goes in "
		    "brackets; expected " OPTIONS_HOSTPORT_FORMS, s);
	if (rc == OPTIONS_HOSTPORT_NOT_V6)
		return fail(err, errlen, "--tcp '%s': brackets are for an IPv6 "
		    "address only; expected " OPTIONS_HOSTPORT_FORMS, s);
	if (rc != 0)
		return fail(err, errlen, "--tcp '%s': expected "
		    OPTIONS_HOSTPORT_FORMS ", e.g. 127.0.0.1:7878", s);
	if (hlen >= sizeof(o->lo_host))
		return fail(err, errlen, "--tcp '%s': expected a host of "
		    "1..%zu bytes", s, sizeof(o->lo_host) - 1);
	if (number("--tcp port", "a port", portstr, 1, 65535, &port, err,
	    errlen) != 0)
		return -EINVAL;
	memcpy(o->lo_host, host, hlen);
	o->lo_host[hlen] = '\0';
	snprintf(o->lo_port, sizeof(o->lo_port), "%lld", port);
	return 0;
}

static int
parse_unix(struct loadgen_opts *o, const char *s, char *err, size_t errlen)
{
	struct sockaddr_un sun;

	if (s[0] == '\0' || strlen(s) >= sizeof(sun.sun_path))
		return fail(err, errlen, "--unix '%s': expected a socket path "
		    "of 1..%zu bytes", s, sizeof(sun.sun_path) - 1);
	o->lo_unix = s;
	return 0;
}

/* -v: one word of printable bytes; "crash" has its own option. */
static int
parse_verb(struct loadgen_opts *o, const char *s, char *err, size_t errlen)
{
	size_t n = strlen(s);

	if (n == 0 || n > LOADGEN_VERB_MAX)
		return fail(err, errlen, "-v '%s': expected a verb of 1..%d "
		    "bytes", s, LOADGEN_VERB_MAX);
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~')
			return fail(err, errlen, "-v '%s': expected a verb of "
			    "printable characters without spaces", s);
	if (strcasecmp(s, "crash") == 0)
		return fail(err, errlen, "-v crash: use --crash-at K to send "
		    "one crash request among the others");
	o->lo_verb = s;
	o->lo_kind = LOADGEN_OTHER;
	for (size_t k = 0; k < sizeof(verb_names) / sizeof(verb_names[0]); k++)
		if (strcasecmp(s, verb_names[k]) == 0)
			o->lo_kind = (enum loadgen_verb)k;
	return 0;
}

/* The options that take a number: what it counts, its range. */
struct numopt {
	int		 no_opt;
	const char	*no_name;
	const char	*no_what;
	long long	 no_min;
	long long	 no_max;
};

static const struct numopt numopts[] = {
	{ 'c', "-c", "a number of connections", 1, LOADGEN_CONNS_MAX },
	{ 'd', "-d", "a pipeline depth", 1, LOADGEN_DEPTH_MAX },
	{ 'n', "-n", "a number of requests", 1, LOADGEN_COUNT_MAX },
	{ 't', "-t", "a duration in seconds", 1, LOADGEN_SECONDS_MAX },
	{ 'T', "-T", "a number of threads", 1, LOADGEN_THREADS_MAX },
	{ 's', "-s", "a payload size in bytes", 0, LOADGEN_SIZE_MAX },
	{ OPT_CRASH_AT, "--crash-at", "a request number", 1,
	    LOADGEN_COUNT_MAX },
	{ OPT_TIMEOUT, "--timeout", "milliseconds", 1, LOADGEN_TIMEOUT_MAX },
	{ OPT_MAX_LINE, "--max-line", "the server's --max-line in bytes",
	    OPT_MAX_LINE_MIN, OPT_MAX_LINE_MAX },
};

/* Store v, checked, for option c. */
static void
store_number(struct loadgen_opts *o, int c, long long v, struct seen *se)
{
	switch (c) {
	case 'c':
		o->lo_conns = (unsigned)v;
		break;
	case 'd':
		o->lo_depth = (unsigned)v;
		break;
	case 'n':
		o->lo_count = (uint64_t)v;
		se->se_count = true;
		break;
	case 't':
		o->lo_seconds = (unsigned)v;
		se->se_seconds = true;
		break;
	case 'T':
		o->lo_threads = (unsigned)v;
		break;
	case 's':
		o->lo_size = (size_t)v;
		break;
	case OPT_CRASH_AT:
		o->lo_crash_at = (uint64_t)v;
		break;
	case OPT_MAX_LINE:
		o->lo_max_line = (uint32_t)v;
		break;
	default:	/* OPT_TIMEOUT */
		o->lo_timeout_ms = (unsigned)v;
		break;
	}
}

static int
parse_number_opt(struct loadgen_opts *o, int c, const char *s,
    struct seen *se, char *err, size_t errlen)
{
	const struct numopt *no = numopts;
	long long v;

	while (no->no_opt != c)
		no++;
	if (number(no->no_name, no->no_what, s, no->no_min, no->no_max, &v,
	    err, errlen) != 0)
		return -EINVAL;
	store_number(o, c, v, se);
	return 0;
}

/* One option c with its value s (NULL for flags). */
static int
parse_one(struct loadgen_opts *o, int c, const char *s, struct seen *se,
    char *err, size_t errlen)
{
	switch (c) {
	case OPT_TCP:
		se->se_tcp = true;
		return parse_tcp(o, s, err, errlen);
	case OPT_UNIX:
		return parse_unix(o, s, err, errlen);
	case 'v':
		return parse_verb(o, s, err, errlen);
	case 'a':
		o->lo_arg = s;
		return 0;
	case OPT_HANDLER:
		o->lo_handler = s;
		return 0;
	case OPT_RECONNECT:
		o->lo_reconnect = true;
		return 0;
	case OPT_JSON:
		o->lo_json = true;
		return 0;
	case 'q':
		o->lo_quiet = true;
		return 0;
	case 'h':
		return LOADGEN_OPTS_HELP;
	case 'V':
		return LOADGEN_OPTS_VERSION;
	default:
		return parse_number_opt(o, c, s, se, err, errlen);
	}
}

/*
 * -a: no newline (it could not be sent); sleep's must be milliseconds and
 * fib's its N.  A bad one would only get the server's ERR, which the run
 * counts as expected: it would pass without one reply computed.
 */
static int
check_arg(const struct loadgen_opts *o, char *err, size_t errlen)
{
	long long v;

	if (o->lo_arg == NULL)
		return 0;
	if (strchr(o->lo_arg, '\n') != NULL)
		return fail(err, errlen, "-a: expected an argument without "
		    "a newline");
	if (strlen(o->lo_arg) > LOADGEN_SIZE_MAX)
		return fail(err, errlen, "-a: expected an argument of at most "
		    "%d bytes", LOADGEN_SIZE_MAX);
	if (o->lo_kind == LOADGEN_SLEEP)
		return number("-a", "milliseconds to sleep", o->lo_arg, 0,
		    PROTO_SLEEP_MAX, &v, err, errlen);
	if (o->lo_kind == LOADGEN_FIB)
		return number("-a", "fib's N", o->lo_arg, 0, PROTO_FIB_MAX,
		    &v, err, errlen);
	return 0;
}

/*
 * Requests that all exceed the server's --max-line would all get its
 * "request too long" ERR, which the run would count as expected: refuse
 * them.  (The CONN:SEQ: tag may make some longer still; those get the
 * same ERR here as from the server.)
 */
static int
check_line(const struct loadgen_opts *o, char *err, size_t errlen)
{
	size_t verb = strlen(o->lo_verb) + 1, line;

	if (o->lo_arg != NULL) {
		line = verb + strlen(o->lo_arg);
		if (line > o->lo_max_line)
			return fail(err, errlen, "-a: requests of %zu bytes "
			    "exceed --max-line %u; expected the server's "
			    "--max-line", line, o->lo_max_line);
		return 0;
	}
	line = verb + o->lo_size;
	if (o->lo_kind != LOADGEN_FIB && line > o->lo_max_line)
		return fail(err, errlen, "-s %zu: requests of %zu bytes exceed "
		    "--max-line %u; expected the server's --max-line",
		    o->lo_size, line, o->lo_max_line);
	return 0;
}

/* Combinations: one target, -n or -t, threads and crash within bounds. */
static int
check(struct loadgen_opts *o, const struct seen *se, char *err,
    size_t errlen)
{
	if (se->se_tcp && o->lo_unix != NULL)
		return fail(err, errlen, "--tcp and --unix: expected one "
		    "target, not both");
	if (se->se_count && se->se_seconds)
		return fail(err, errlen, "-n and -t: expected a request count "
		    "or a duration, not both");
	if (!se->se_count && !se->se_seconds)
		o->lo_count = LOADGEN_COUNT_DEFAULT;
	if (o->lo_threads > o->lo_conns)
		return fail(err, errlen, "-T %u: expected at most one thread "
		    "per connection (-c %u)", o->lo_threads, o->lo_conns);
	if (o->lo_kind == LOADGEN_SLEEP && o->lo_arg == NULL)
		o->lo_arg = LOADGEN_SLEEP_DEFAULT;
	if (o->lo_crash_at > loadgen_opts_quota(o, 0))
		return fail(err, errlen, "--crash-at %ju: connection 0 sends "
		    "only %ju requests; expected 1..%ju",
		    (uintmax_t)o->lo_crash_at, (uintmax_t)loadgen_opts_quota(o,
		    0), (uintmax_t)loadgen_opts_quota(o, 0));
	if (check_arg(o, err, errlen) != 0)
		return -EINVAL;
	return check_line(o, err, errlen);
}

/*
 * Say what getopt_long() found wrong, as shmpipe does (options.c): it
 * sets optopt to the option's val when a value is missing (':') or given
 * to one that takes none ('?'), to the character of an unknown short
 * option, to 0 for an unknown or ambiguous long one.  The last argument
 * it took is the option, but for an unknown short one inside a cluster
 * not yet taken (-qx), which optopt names.
 */
static int
getopt_failed(int c, char **argv, char *err, size_t errlen)
{
	const char *arg = argv[optind - 1];
	const struct option *lo = longopt_by_val(longopts, optopt);
	bool is_long = strncmp(arg, "--", 2) == 0 && (c == ':' ||
	    optopt == 0 || (lo != NULL && lo->has_arg == no_argument));
	int n = (int)strcspn(arg, "=");
	char names[256];

	if (c == ':' && is_long && lo != NULL)
		return fail(err, errlen, "option --%s needs a value; see "
		    "--help", lo->name);
	if (c == ':')
		return fail(err, errlen, "option -%c needs a value; see --help",
		    optopt);
	if (is_long && optopt == 0 && longopt_matches(longopts, arg, ", ",
	    names, sizeof(names)) > 1)
		return fail(err, errlen, "option %.*s is ambiguous: expected "
		    "one of %s; see --help", n, arg, names);
	if (is_long && optopt == 0)
		return fail(err, errlen, "unknown option %.*s; see --help", n,
		    arg);
	if (is_long)
		return fail(err, errlen, "option %.*s takes no value; see "
		    "--help", n, arg);
	return fail(err, errlen, "unknown option -%c; see --help", optopt);
}

int
loadgen_opts_parse(struct loadgen_opts *o, int argc, char **argv, char *err,
    size_t errlen)
{
	struct seen se = { false, false, false };
	int c, rc;

	defaults(o);
	optind = 0;	/* glibc: start over, as for a new argv */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:d:n:t:T:v:s:a:qhV", longopts,
	    NULL)) != -1) {
		if (c == '?' || c == ':')
			return getopt_failed(c, argv, err, errlen);
		if ((rc = parse_one(o, c, optarg, &se, err, errlen)) != 0)
			return rc;
	}
	if (optind < argc)
		return fail(err, errlen, "unexpected argument '%s': expected "
		    "options only; see --help", argv[optind]);
	return check(o, &se, err, errlen);
}

uint64_t
loadgen_opts_quota(const struct loadgen_opts *o, unsigned id)
{
	if (o->lo_seconds != 0)
		return UINT64_MAX;
	return o->lo_count / o->lo_conns + (id < o->lo_count % o->lo_conns);
}
