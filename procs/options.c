/* SPDX-License-Identifier: BSD-2-Clause */
/* options.c - flags, defaults and their checking, for both builds. */
#define _GNU_SOURCE
#include <ctype.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"
#include "longopt.h"
#include "options.h"
#include "proto.h"
#include "shmq.h"
#include "utf8.h"

#define EX_USAGE	64
#define EX_NOINPUT	66
#define EX_OSERR	71
#define EX_CANTCREAT	73

enum { O_ENABLE_CRASH = 256, O_WINDOW, O_CONN_WINDOW, O_SPIN,
	O_START_TIMEOUT, O_SCHED };

static bool	conn_window_set;	/* given: file mode keeps it */
static bool	spin_set;		/* given: not guessed */
static bool	std_closed[3];		/* 0, 1, 2 at start: options_std_fds() */

static const struct option longopts[] = {
	{ "name",		required_argument,	NULL, 'n' },
	{ "listen",		required_argument,	NULL, 'l' },
	{ "processors",		required_argument,	NULL, 'p' },
	{ "handler",		required_argument,	NULL, 'H' },
	{ "capacity",		required_argument,	NULL, 'c' },
	{ "max-line",		required_argument,	NULL, 'm' },
	{ "max-requests",	required_argument,	NULL, 'r' },
	{ "request-timeout",	required_argument,	NULL, 't' },
	{ "max-deliveries",	required_argument,	NULL, 'd' },
	{ "start-timeout",	required_argument,	NULL, O_START_TIMEOUT },
	{ "max-connections",	required_argument,	NULL, 'C' },
	{ "idle-timeout",	required_argument,	NULL, 'I' },
	{ "window",		required_argument,	NULL, O_WINDOW },
	{ "conn-window",	required_argument,	NULL, O_CONN_WINDOW },
	{ "spin-us",		required_argument,	NULL, O_SPIN },
	{ "sched",		required_argument,	NULL, O_SCHED },
	{ "input",		required_argument,	NULL, 'i' },
	{ "output",		required_argument,	NULL, 'o' },
	{ "pidfile",		required_argument,	NULL, 'P' },
	{ "enable-crash",	no_argument,		NULL, O_ENABLE_CRASH },
	{ "quiet",		no_argument,		NULL, 'q' },
	{ "help",		no_argument,		NULL, 'h' },
	{ "version",		no_argument,		NULL, 'V' },
	{ NULL, 0, NULL, 0 }
};

/* The most processors whose queues have room for them all (options.h). */
static uint32_t
processors_max(bool threaded)
{
	return threaded ? OPT_PROCESSORS_MAX_THREADED : OPT_PROCESSORS_MAX;
}

static void
usage(FILE *f, bool threaded)
{
	fprintf(f,
"usage: %s [options]\n"
"Serve the line protocol (VERB [ARG] -> OK RESULT | ERR REASON) with a\n"
"request, %s and a reply stage.\n"
"  -n, --name NAME            pipeline name (shmpipe)\n"
"  -l, --listen tcp:HOST:PORT | tcp:[V6ADDR]:PORT | unix:PATH\n"
"                             where to accept clients, repeatable\n"
"                             (tcp:127.0.0.1:7878)\n"
"  -p, --processors N         processors, 1..%u (one per CPU)\n"
"  -H, --handler PATH.so      load request handlers from a shared object\n"
"  -c, --capacity N           messages each queue holds (4096)\n"
"  -m, --max-line BYTES       longest request line, 16..1048576 (4096)\n"
"  -r, --max-requests N       recycle a processor after N requests (never)\n"
"  -t, --request-timeout MS   kill a processor busy longer, answer\n"
"                             ERR timeout; 0 = never (30000)\n"
"  -d, --max-deliveries N     answer ERR after a request crashed N\n"
"                             processors (2)\n"
"      --start-timeout MS     a processor whose handler init() runs\n"
"                             longer has failed to start; 0 = never\n"
"                             (10000)\n"
"  -C, --max-connections N    clients at once (1024)\n"
"  -I, --idle-timeout MS      close clients silent this long; 0 = never\n"
"                             (300000)\n"
"      --window N             requests in flight in all (4096)\n"
"      --spin-us US           how long a stage spins before it sleeps\n"
"                             (20 if every stage has a CPU of its own,\n"
"                             else 0)\n"
"      --sched batch|other    the stages' scheduling policy (batch)\n"
"      --conn-window N        requests in flight per client (256, at\n"
"                             most --window; file mode: the whole window)\n"
"  -i, --input FILE|-         file mode: read requests from FILE\n"
"  -o, --output FILE|-        file mode: write replies to FILE (-)\n"
"  -P, --pidfile PATH         (/run/shmpipe.NAME.pid as root, else\n"
"                             $XDG_RUNTIME_DIR or /tmp)\n"
"      --enable-crash         allow the crash verb (tests and demos)\n"
"  -q, --quiet                log deaths and errors only\n"
"  -h, --help                 this text\n"
"  -V, --version              the version\n",
	    threaded ? "shmpipe-threaded" : "shmpipe",
	    threaded ? "processor threads" : "processor processes",
	    processors_max(threaded));
}

static void __attribute__((noreturn, format(printf, 1, 2)))
bad(const char *fmt, ...)
{
	char msg[1024], safe[3 * sizeof(msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* The user's bytes in it, as shmq and shmpipe-bench show them: no
	 * control character reaches the terminal. */
	fprintf(stderr, "%s: %s (see --help)\n", getprogname(),
	    utf8_safe(safe, sizeof(safe), msg));
	exit(EX_USAGE);
}

static long long
number(const char *flag, const char *arg, long long min, long long max)
{
	const char *why;
	long long v = proto_number(arg, min, max, &why);

	if (why != NULL)
		bad("%s: '%s' is %s; expected a whole number %lld..%lld", flag,
		    arg, why, min, max);
	return v;
}

/* A path given to flag: an empty one is no path (dlopen(3) would open
 * the program itself, open(2) fail with a bare "No such file"). */
static const char *
path(const char *flag, const char *arg, const char *what)
{
	if (arg[0] == '\0')
		bad("%s '': expected %s", flag, what);
	return arg;
}

#define LISTEN_TCP_FORMS	"tcp:HOST:PORT or tcp:[V6ADDR]:PORT"

/*
 * A host with a ':' is an IPv6 address, and only brackets say where it
 * ends: '::1:80' could be port 80 of ::1, or the address ::1:80 without
 * its port, so it is refused rather than guessed at.
 */
int
options_hostport(const char *s, const char **host, size_t *hlen,
    const char **port)
{
	const char *hp = s, *end;

	if (hp[0] == '[') {
		hp++;
		if ((end = strchr(hp, ']')) == NULL || end[1] != ':')
			return OPTIONS_HOSTPORT_FORM;
		*port = end + 2;
	} else {
		if ((end = strchr(hp, ':')) == NULL)
			return OPTIONS_HOSTPORT_FORM;
		*port = end + 1;
		if (strchr(*port, ':') != NULL)
			return OPTIONS_HOSTPORT_V6;
	}
	*host = hp;
	*hlen = (size_t)(end - hp);
	if (*hlen == 0 || memchr(hp, '[', *hlen) != NULL ||
	    memchr(hp, ']', *hlen) != NULL)
		return OPTIONS_HOSTPORT_FORM;
	/* Brackets are an IPv6 literal's ("[localhost]" is no address). */
	if (s[0] == '[' && memchr(hp, ':', *hlen) == NULL)
		return OPTIONS_HOSTPORT_NOT_V6;
	return 0;
}

/* The host and port of tcp:HOST:PORT or tcp:[V6ADDR]:PORT into ls. */
static void
parse_tcp(struct listen_spec *ls, const char *arg)
{
	const char *host, *port;
	size_t hlen;
	int rc;

	rc = options_hostport(arg + 4, &host, &hlen, &port);
	if (rc == OPTIONS_HOSTPORT_V6)
		bad("--listen '%s': an IPv6 address goes in brackets; "
		    "expected " LISTEN_TCP_FORMS, arg);
	if (rc == OPTIONS_HOSTPORT_NOT_V6)
		bad("--listen '%s': brackets are for an IPv6 address only; "
		    "expected " LISTEN_TCP_FORMS, arg);
	if (rc != 0)
		bad("--listen '%s': expected " LISTEN_TCP_FORMS, arg);
	if (hlen >= sizeof(ls->ls_host))
		bad("--listen '%s': host name too long", arg);
	memcpy(ls->ls_host, host, hlen);
	ls->ls_host[hlen] = '\0';
	number("--listen port", port, 0, 65535);
	strlcpy(ls->ls_port, port, sizeof(ls->ls_port));
}

/* Is ls an address already given?  Binding it again would fail as if
 * someone else held it.  Port 0 is a new port each time. */
static bool
listen_repeated(const struct options *o, const struct listen_spec *ls)
{
	for (int i = 0; i < o->nlisten; i++) {
		const struct listen_spec *x = &o->listen[i];

		if (x->ls_unix != ls->ls_unix)
			continue;
		if (ls->ls_unix ? strcmp(x->ls_path, ls->ls_path) == 0 :
		    strcmp(x->ls_host, ls->ls_host) == 0 &&
		    strcmp(x->ls_port, ls->ls_port) == 0 &&
		    strcmp(ls->ls_port, "0") != 0)
			return true;
	}
	return false;
}

/* tcp:HOST:PORT, tcp:[V6ADDR]:PORT or unix:PATH. */
static void
parse_listen(struct options *o, const char *arg)
{
	struct listen_spec *ls;

	if (o->nlisten == OPT_MAX_LISTEN)
		bad("--listen: at most %d addresses", OPT_MAX_LISTEN);
	ls = &o->listen[o->nlisten];
	memset(ls, 0, sizeof(*ls));
	if (strncmp(arg, "unix:", 5) == 0) {
		if (arg[5] == '\0' || strlcpy(ls->ls_path, arg + 5,
		    sizeof(ls->ls_path)) >= sizeof(ls->ls_path))
			bad("--listen '%s': expected unix:PATH, PATH 1..%zu "
			    "bytes", arg, sizeof(ls->ls_path) - 1);
		ls->ls_unix = true;
	} else if (strncmp(arg, "tcp:", 4) == 0)
		parse_tcp(ls, arg);
	else
		bad("--listen '%s': expected tcp:HOST:PORT, tcp:[V6ADDR]:PORT "
		    "or unix:PATH", arg);
	if (listen_repeated(o, ls))
		bad("--listen '%s' given twice; expected each address once",
		    arg);
	o->nlisten++;
}

static void
defaults(struct options *o, bool threaded)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	memset(o, 0, sizeof(*o));
	strlcpy(o->name, "shmpipe", sizeof(o->name));
	o->processors = cpus > 0 ? (uint32_t)cpus : 1;
	if (o->processors > processors_max(threaded))
		o->processors = processors_max(threaded);
	o->capacity = 4096;
	o->max_line = OPT_MAX_LINE_DEFAULT;
	o->request_timeout_ms = 30000;
	o->start_timeout_ms = 10000;
	o->max_deliveries = 2;
	o->max_conns = 1024;
	o->idle_timeout_ms = 300000;
	o->window = 4096;
	o->conn_window = 256;
	o->sched_batch = true;
}

static void
option(struct options *o, int c, const char *arg, bool threaded)
{
	switch (c) {
	case 'n':
		if (!ctl_name_ok(arg))
			bad("--name '%s': expected 1..40 characters of "
			    "A-Z a-z 0-9 _ . -, without '..' and not "
			    "starting or ending with '.'", arg);
		strlcpy(o->name, arg, sizeof(o->name));
		break;
	case 'l': parse_listen(o, arg); break;
	case 'p': o->processors = (uint32_t)number("--processors", arg, 1,
		    processors_max(threaded)); break;
	case 'H': o->handler = path("--handler", arg,
		    "the path of a shared object"); break;
	case 'c': o->capacity = (uint32_t)number("--capacity", arg, 2,
		    1 << 20); break;
	case 'm': o->max_line = (uint32_t)number("--max-line", arg,
		    OPT_MAX_LINE_MIN, OPT_MAX_LINE_MAX); break;
	case 'r': o->max_requests = (uint64_t)number("--max-requests", arg, 0,
		    INT64_MAX); break;
	case 't': o->request_timeout_ms = (uint32_t)number(
		    "--request-timeout", arg, 0, 86400000);
		o->request_timeout_set = true; break;
	case 'd': o->max_deliveries = (uint32_t)number("--max-deliveries",
		    arg, 1, 1000);
		o->max_deliveries_set = true; break;
	case 'C': o->max_conns = (uint32_t)number("--max-connections", arg, 1,
		    1 << 20); break;
	case 'I': o->idle_timeout_ms = (uint32_t)number("--idle-timeout", arg,
		    0, 86400000); break;
	case O_START_TIMEOUT: o->start_timeout_ms = (uint32_t)number(
		    "--start-timeout", arg, 0, 86400000); break;
	case O_WINDOW: o->window = (uint32_t)number("--window", arg, 16,
		    1 << 20); break;
	case O_CONN_WINDOW: o->conn_window = (uint32_t)number("--conn-window",
		    arg, 1, 1 << 16);
		conn_window_set = true;
		break;
	case O_SPIN: o->spin_ns = (uint32_t)number("--spin-us", arg, 0,
		    1000000) * 1000;
		spin_set = true;
		break;
	case O_SCHED:
		if (strcmp(arg, "batch") != 0 && strcmp(arg, "other") != 0)
			bad("--sched: '%s' is no policy; expected batch or "
			    "other", arg);
		o->sched_batch = strcmp(arg, "batch") == 0;
		break;
	case 'i': o->input = path("--input", arg, "a file, or - for "
		    "standard input"); break;
	case 'o': o->output = path("--output", arg, "a file, or - for "
		    "standard output"); break;
	case 'P': o->pidfile = path("--pidfile", arg, "a file's path");
		break;
	case O_ENABLE_CRASH: o->enable_crash = true; break;
	case 'q': o->quiet = true; break;
	case 'h': usage(stdout, threaded); exit(0);
	case 'V': printf("%s %s\n", getprogname(), SHMQ_VERSION); exit(0);
	default: bad("unknown option");
	}
}

/*
 * Say what getopt_long(3) found wrong.  It sets optopt to the option's
 * val when a value is missing (':') or given to a flag that takes none
 * ('?'), which is no character for a long-only option; to the character
 * of an unknown short option; to 0 for an unknown or ambiguous long one.
 * arg, the last argument it took, is the option for all but an unknown
 * short one, which may be inside a cluster not yet taken (-xq).
 */
static void __attribute__((noreturn))
getopt_failed(int c, const char *arg)
{
	const struct option *lo = longopt_by_val(longopts, optopt);
	bool is_long = strncmp(arg, "--", 2) == 0;

	if (c == ':' && is_long && lo != NULL)
		bad("option '--%s' needs a value", lo->name);
	if (c == ':')
		bad("option '-%c' needs a value", optopt);
	if (optopt == 0 && is_long && longopt_matches(longopts, arg, NULL, NULL, 0) > 1)
		bad("option '%.*s' is ambiguous", (int)strcspn(arg, "="), arg);
	if (optopt == 0)
		bad("unknown option '%.*s'", (int)strcspn(arg, "="), arg);
	/* A short option that is known never fails with '?'. */
	if (lo != NULL && lo->has_arg == no_argument)
		bad("option '--%s' takes no value", lo->name);
	if (optopt > 0 && optopt <= UCHAR_MAX && isprint(optopt))
		bad("unknown option '-%c'", optopt);
	bad("unknown option '-\\%03o'", (unsigned)optopt & 0xffu);
}

/*
 * A stage that spins waiting takes the CPU from the stage it waits for
 * unless each has one of its own: spin only when there are more CPUs than
 * stage processes (processors, request, reply and a client or two).
 */
static uint32_t
default_spin(uint32_t processors)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	return cpus > (long)processors + 3 ? 20000 : 0;
}

static uint32_t
pow2_at_least(uint32_t n)
{
	uint32_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

/*
 * The window per client, a power of two no larger than the window.  Not
 * given, it is the default or, if that is larger, the window (file mode:
 * one connection, all of it), rounded down.
 */
static void
conn_window(struct options *o)
{
	uint32_t given = o->conn_window;

	if (!conn_window_set && (o->input != NULL || given > o->window))
		given = o->window;
	o->conn_window = pow2_at_least(given);
	if (!conn_window_set && o->conn_window > o->window)
		o->conn_window >>= 1;
	if (o->conn_window > o->window)
		bad("--conn-window %u (%u, rounded up to a power of two) is "
		    "larger than --window %u", given, o->conn_window,
		    o->window);
}

void
options_std_fds(void)
{
	for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		std_closed[fd] = true;
		/* The lowest free descriptor: this one, the lower are open. */
		if (open("/dev/null", O_RDWR) != fd)
			err(EX_OSERR, "/dev/null in place of descriptor %d",
			    fd);
	}
}

/*
 * File mode's input or output, "-" for the standard one at fd, into st;
 * false if a named file cannot be looked at (pipeline_open() says why
 * when it opens it).  A closed standard one was not meant to be used.
 */
static bool
file_stat(const char *flag, const char *path, int fd, struct stat *st)
{
	if (strcmp(path, "-") != 0)
		return stat(path, st) == 0;
	if (std_closed[fd])
		errx(fd == STDIN_FILENO ? EX_NOINPUT : EX_CANTCREAT, "%s -: "
		    "standard %s is closed", flag, fd == STDIN_FILENO ?
		    "input" : "output");
	return fstat(fd, st) == 0;
}

/*
 * Refuse, before anything is made, what file mode cannot use: a directory
 * as input (read(2) fails at once: it would look empty), and an output
 * that is the input, which opening the output would truncate before a
 * line is read.  Regular files only: a terminal or a socket may well be
 * both input and output.
 */
static void
check_files(const struct options *o)
{
	struct stat in, out;
	bool in_ok, out_ok;

	in_ok = file_stat("--input", o->input, STDIN_FILENO, &in);
	if (in_ok && S_ISDIR(in.st_mode))
		errx(EX_NOINPUT, "--input %s: %s a directory", o->input,
		    strcmp(o->input, "-") == 0 ? "standard input is" : "is");
	out_ok = file_stat("--output", o->output, STDOUT_FILENO, &out);
	if (in_ok && out_ok && S_ISREG(in.st_mode) && S_ISREG(out.st_mode) &&
	    in.st_dev == out.st_dev && in.st_ino == out.st_ino)
		bad("--input %s and --output %s are the same file; writing "
		    "the replies would destroy the requests", o->input,
		    o->output);
}

/*
 * Where path is or would be: its device and inode if it exists, else the
 * real path of its directory and its last name (two paths name one file
 * to be made if those are the same).  False if neither can be known.
 */
static bool
file_id(const char *path, struct stat *st, char *where, size_t len)
{
	char dir[PATH_MAX], real[PATH_MAX];
	const char *base = strrchr(path, '/');

	where[0] = '\0';
	if (stat(path, st) == 0)
		return true;
	memset(st, 0, sizeof(*st));
	if (base == NULL) {
		strlcpy(dir, ".", sizeof(dir));
		base = path;
	} else {
		snprintf(dir, sizeof(dir), "%.*s", base == path ? 1 :
		    (int)(base - path), path);
		base++;
	}
	if (realpath(dir, real) == NULL)
		return false;
	snprintf(where, len, "%s/%s", real, base);
	return true;
}

/* Do a and b name the same file, made or to be made? */
static bool
same_file(const char *a, const char *b)
{
	char wa[2 * PATH_MAX], wb[2 * PATH_MAX];
	struct stat sa, sb;

	if (!file_id(a, &sa, wa, sizeof(wa)) ||
	    !file_id(b, &sb, wb, sizeof(wb)))
		return strcmp(a, b) == 0;
	if (wa[0] == '\0' && wb[0] == '\0')
		return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
	return wa[0] != '\0' && strcmp(wa, wb) == 0;
}

/*
 * The pidfile is truncated when shmpipe starts and removed when it
 * exits: naming the input, the output, the handler object or a socket's
 * path, it would destroy them.
 */
static void
check_pidfile(const struct options *o)
{
	const char *what = NULL, *other = NULL;

	if (o->input != NULL && strcmp(o->input, "-") != 0 &&
	    same_file(o->pidfile, o->input))
		what = "--input", other = o->input;
	else if (o->output != NULL && strcmp(o->output, "-") != 0 &&
	    same_file(o->pidfile, o->output))
		what = "--output", other = o->output;
	else if (o->handler != NULL && same_file(o->pidfile, o->handler))
		what = "--handler", other = o->handler;
	for (int i = 0; what == NULL && i < o->nlisten; i++)
		if (o->listen[i].ls_unix &&
		    same_file(o->pidfile, o->listen[i].ls_path))
			what = "--listen unix:", other = o->listen[i].ls_path;
	if (what != NULL)
		bad("--pidfile %s and %s%s%s are the same file; the pidfile is "
		    "overwritten at start and removed at exit, expected one "
		    "of its own", o->pidfile, what, what[strlen(what) - 1] ==
		    ':' ? "" : " ", other);
}

/* The output is truncated before the processors load the handler object:
 * the same file, the object would be destroyed unloaded. */
static void
check_output(const struct options *o)
{
	if (o->handler != NULL && strcmp(o->output, "-") != 0 &&
	    same_file(o->output, o->handler))
		bad("--output %s and --handler %s are the same file; writing "
		    "the replies would destroy the handler object", o->output,
		    o->handler);
}

void
options_parse(struct options *o, int argc, char **argv, bool threaded)
{
	int c;

	defaults(o, threaded);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":n:l:p:H:c:m:r:t:d:C:I:i:o:P:qhV",
	    longopts, NULL)) != -1) {
		if (c == ':' || c == '?')
			getopt_failed(c, argv[optind - 1]);
		option(o, c, optarg, threaded);
	}
	if (optind < argc)
		bad("unexpected argument '%s'", argv[optind]);
	if (o->output != NULL && o->input == NULL)
		bad("--output needs --input (file mode)");
	if (o->input != NULL && o->output == NULL)
		o->output = "-";
	if (o->nlisten > 0 && o->input != NULL)
		bad("--listen and --input: file mode serves no clients; "
		    "expected one or the other");
	if (o->nlisten == 0 && o->input == NULL)
		parse_listen(o, "tcp:127.0.0.1:7878");
	if (!spin_set)
		o->spin_ns = default_spin(o->processors);
	conn_window(o);
	if (o->input != NULL) {
		check_files(o);
		check_output(o);
	}
	if (o->pidfile != NULL)
		check_pidfile(o);
}

void
options_listen_str(const struct listen_spec *ls, char *buf, size_t len)
{
	if (ls->ls_unix)
		snprintf(buf, len, "unix:%s", ls->ls_path);
	else
		snprintf(buf, len, strchr(ls->ls_host, ':') ? "tcp:[%s]:%s" :
		    "tcp:%s:%s", ls->ls_host, ls->ls_port);
}
