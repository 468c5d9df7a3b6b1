/* SPDX-License-Identifier: BSD-2-Clause */
/* tool.c - shmq(1): the command table and its dispatch, common options,
 * exit codes and the SIGBUS guard around reads of mappings. */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
/* Named directly: the Makefile's tool%.o rule (libbsd's overlay flags)
 * needs a non-empty stem, so it does not apply to this file. */

#include "shmq_layout.h"
#include "longopt.h"
#include "tool.h"

struct tool_cmd {
	const char	*c_name;
	int		(*c_run)(int argc, char **argv);
	const char	*c_args;
	const char	*c_what;
};

static const struct tool_cmd cmds[] = {
	{ "ls", tool_cmd_ls, "[-o FMT] [-w S] [--fill-warn P] [--stall S] "
	    "[PATTERN]", "queues: state, depth, fill, rates, processes" },
	{ "show", tool_cmd_show, "[-o FMT] [-w S] [--fill-warn P] [--stall S] "
	    "NAME", "one queue, every field and every process attached" },
	{ "ps", tool_cmd_ps, "[-o FMT] [-p PID] [PIPELINE]",
	    "pipelines' process tables: who is on which request" },
	{ "top", tool_cmd_top, "[-i S] [-n COUNT] [-w S] [--fill-warn P] "
	    "[--stall S] [PATTERN]", "ls, refreshed every -i seconds (2)" },
	{ "peek", tool_cmd_peek, "[-n K] [-x] NAME",
	    "the next K messages (10), not consumed; -x: all in hex" },
	{ "put", tool_cmd_put, "[-f] [-t MS] NAME [MSG ...]",
	    "put the MSGs, or each line of stdin (-t: wait at most MS; -f: "
	    "on a pipeline's queue too)" },
	{ "get", tool_cmd_get, "[-f] [-n K] [-t MS] NAME",
	    "take K messages (1), one per line (-t: wait at most MS; -f: "
	    "from a pipeline's queue too)" },
	{ "create", tool_cmd_create, "[-c CAPACITY] [-m MSG_MAX] [-p PROCS] "
	    "[-l LEASES] [-M MODE] NAME", "create a queue" },
	{ "rm", tool_cmd_rm, "[-f] NAME ...",
	    "remove queues (-f: even attached, corrupt or another's)" },
	{ "check", tool_cmd_check, "[-o FMT] [-w S] [--fill-warn P] "
	    "[--fill-crit P] [--stall S] [PATTERN]",
	    "health check: one line, Nagios exit codes 0-3" },
	{ "gc", tool_cmd_gc, "[-n] [PATTERN]",
	    "remove segments whose owners are proven dead (-n: only say)" },
};
#define NCMDS	(sizeof(cmds) / sizeof(cmds[0]))

static sigjmp_buf *volatile guard_jb;	/* innermost tool_guard() */
static volatile sig_atomic_t guard_hit;	/* a SIGBUS in the guard */
static long	 guard_page;
static int	 out_err;		/* stdout's first write error */

static const struct tool_cmd *
cmd_find(const char *name)
{
	for (size_t i = 0; i < NCMDS; i++)
		if (strcmp(cmds[i].c_name, name) == 0)
			return &cmds[i];
	return NULL;
}

static void
usage_all(FILE *f)
{
	fprintf(f, "usage: shmq [COMMAND [ARG ...]]\n"
	    "Inspect libshmq queues and shmpipe pipelines in " TOOL_SHM_DIR
	    " without disturbing\nthem (read-only mappings, no lock, no "
	    "write), and use queues from scripts.\nWithout a command: ls.\n\n");
	for (size_t i = 0; i < NCMDS; i++)
		fprintf(f, "  %s %s\n      %s\n", cmds[i].c_name,
		    cmds[i].c_args, cmds[i].c_what);
	fprintf(f, "  help [COMMAND]\n\n"
	    "FMT: table (default), json, csv, prom.  PATTERN: fnmatch(3) "
	    "over the names\nin " TOOL_SHM_DIR ".  NAME: \"q\", \"/q\" or "
	    "\"" TOOL_SHM_DIR "/q\".  -w: rate window, 1..8 s (5).\n"
	    "Exit: 0 ok, 64 usage, 65 corrupt or incompatible segment, "
	    "66 not found,\n73 exists, 75 timed out, 77 permission denied; "
	    "check: 0 OK, 1 WARNING,\n2 CRITICAL, 3 UNKNOWN.  See shmq(1).\n");
}

int
tool_usage(const char *cmd, const char *why)
{
	const struct tool_cmd *c = cmd != NULL ? cmd_find(cmd) : NULL;

	if (why != NULL)
		fprintf(stderr, "shmq: %s\n", why);
	if (c != NULL)
		fprintf(stderr, "usage: shmq %s %s\n", c->c_name, c->c_args);
	else
		usage_all(stderr);
	return TOOL_EX_USAGE;
}

int
tool_help(const char *cmd)
{
	const struct tool_cmd *c = cmd != NULL ? cmd_find(cmd) : NULL;

	if (c == NULL && cmd != NULL) {
		char shown[TOOL_NAME_LEN * 3];
		fprintf(stderr, "shmq: help %s: no such command\n",
		    tool_safe(shown, sizeof(shown), cmd));
		return tool_usage(NULL, NULL);
	}
	if (c == NULL) {
		usage_all(stdout);
		return 0;
	}
	printf("usage: shmq %s %s\n%s\n", c->c_name, c->c_args, c->c_what);
	return 0;
}

/* The word after option lo ("-o", "--stall") in the usage of cmd, "FMT",
 * into buf; by its long name or its short letter. */
static const char *
opt_value_name(const char *cmd, const struct option *lo, char *buf,
    size_t len)
{
	const struct tool_cmd *c = cmd_find(cmd);
	char want[2][64];
	const char *p = NULL;

	if (c == NULL || lo == NULL)
		return NULL;
	snprintf(want[0], sizeof(want[0]), "[--%s ", lo->name);
	snprintf(want[1], sizeof(want[1]), "[-%c ", lo->val > ' ' &&
	    lo->val < 0x7f ? lo->val : ' ');
	for (int i = 0; i < 2 && p == NULL; i++)
		if ((p = strstr(c->c_args, want[i])) != NULL)
			p += strlen(want[i]);
	if (p == NULL)
		return NULL;
	snprintf(buf, len, "%.*s", (int)strcspn(p, "] "), p);
	return buf;
}

/*
 * getopt_long(3) sets optopt to the option's val when a value is missing
 * (':') or given to one that takes none ('?'); to the character of an
 * unknown short option; to 0 for an unknown or ambiguous long one.  The
 * last argument it took is the option, but for an unknown short one
 * inside a cluster not yet taken (-xq), which optopt names.
 */
int
tool_opt_bad(const char *cmd, int ch, char **argv,
    const struct option *longopts)
{
	const char *arg = argv[optind - 1];
	const struct option *lo = longopt_by_val(longopts, ch == '?' ||
	    ch == ':' ? optopt : ch);
	bool is_long = strncmp(arg, "--", 2) == 0 && (ch != '?' ||
	    optopt == 0 || (lo != NULL && lo->has_arg == no_argument));
	char opt[TOOL_NAME_LEN], shown[TOOL_NAME_LEN * 3];
	char why[sizeof(shown) + 320];
	char names[256], value[32];

	if (ch != '?' && ch != ':')	/* known, but not to cmd */
		snprintf(opt, sizeof(opt), "--%s", lo != NULL ? lo->name :
		    "?");
	else if (is_long)
		snprintf(opt, sizeof(opt), "%.*s", (int)strcspn(arg, "="),
		    arg);
	else
		snprintf(opt, sizeof(opt), "-%c", (char)optopt);
	tool_safe(shown, sizeof(shown), opt);
	if (ch == ':' && opt_value_name(cmd, lo, value, sizeof(value)))
		snprintf(why, sizeof(why), "%s: expected a value, %s", shown,
		    value);
	else if (ch == ':')
		snprintf(why, sizeof(why), "%s: expected a value", shown);
	else if (ch != '?')
		snprintf(why, sizeof(why), "%s: not an option of %s", shown,
		    cmd);
	else if (is_long && optopt == 0 && longopt_matches(longopts, arg,
	    " or ", names, sizeof(names)) > 1)
		snprintf(why, sizeof(why), "%s: ambiguous, expected %s", shown,
		    names);
	else if (is_long && optopt != 0)
		snprintf(why, sizeof(why), "%s: takes no value", shown);
	else
		snprintf(why, sizeof(why), "%s: unknown option", shown);
	return tool_usage(cmd, why);
}

void
tool_opts_init(struct tool_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->o_fmt = TOOL_FMT_TABLE;
	o->o_window = 5;
	o->o_fill_warn = 80;
	o->o_fill_crit = 95;
	o->o_stall = 10;
}

bool
tool_num(const char *s, long long lo, long long hi, long long *out)
{
	const char *errstr = NULL;
	const char *d = lo < 0 && s[0] == '-' ? s + 1 : s;

	if (*d < '0' || *d > '9')
		return false;		/* strtonum takes " 5" and "+5" */
	*out = strtonum(s, lo, hi, &errstr);
	return errstr == NULL;
}

static int
opt_fmt(struct tool_opts *o, const char *arg)
{
	static const char *const names[] = { "table", "json", "csv", "prom" };
	char shown[TOOL_NAME_LEN * 3];	/* the user's bytes, said back */

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(arg, names[i]) == 0) {
			o->o_fmt = (enum tool_fmt)i;
			return 1;
		}
	warnx("-o %s: expected table, json, csv or prom", tool_safe(shown,
	    sizeof(shown), arg));
	return -1;
}

/* A numeric option into *dst, lo..hi; 1, or -1 with a message. */
static int
opt_num(unsigned *dst, const char *name, const char *arg, long long lo,
    long long hi)
{
	char shown[TOOL_NAME_LEN * 3];	/* as opt_fmt */
	long long v;

	if (!tool_num(arg, lo, hi, &v)) {
		warnx("%s %s: expected a whole number %lld..%lld", name,
		    tool_safe(shown, sizeof(shown), arg), lo, hi);
		return -1;
	}
	*dst = (unsigned)v;
	return 1;
}

int
tool_opt_common(struct tool_opts *o, int ch, const char *arg)
{
	switch (ch) {
	case 'o':
		return opt_fmt(o, arg);
	case 'w':
		return opt_num(&o->o_window, "-w", arg, 1, 8);
	case TOOL_OPT_FILL_WARN:
		return opt_num(&o->o_fill_warn, "--fill-warn", arg, 1, 100);
	case TOOL_OPT_FILL_CRIT:
		return opt_num(&o->o_fill_crit, "--fill-crit", arg, 1, 100);
	case TOOL_OPT_STALL:
		return opt_num(&o->o_stall, "--stall", arg, 1, 86400 * 365);
	default:
		return 0;
	}
}

int
tool_exit_code(int err)
{
	switch (err) {
	case 0:
		return 0;
	case ENOENT:
		return TOOL_EX_NOINPUT;
	case EACCES:
	case EPERM:
		return TOOL_EX_NOPERM;
	case EPROTO:
	case EPROTONOSUPPORT:
	case EBADMSG:
	case ENODATA:
	case EFAULT:
	case EMSGSIZE:
		return TOOL_EX_DATAERR;
	case EINVAL:
		return TOOL_EX_USAGE;
	case EEXIST:
		return TOOL_EX_CANTCREAT;
	case EAGAIN:
	case ETIMEDOUT:
	case EUSERS:
		return TOOL_EX_TEMPFAIL;
	default:
		return TOOL_EX_OSERR;
	}
}

int
tool_pattern_arg(const char *cmd, const char *arg, const char **pat)
{
	char shown[TOOL_NAME_LEN * 3], why[sizeof(shown) + 128];

	*pat = tool_pattern(arg);
	if (**pat != '\0')
		return 0;
	snprintf(why, sizeof(why), "'%s': an empty PATTERN, which matches "
	    "nothing; expected names or a fnmatch(3) pattern, '*' for all",
	    tool_safe(shown, sizeof(shown), arg));
	return tool_usage(cmd, why);
}

const char *
tool_pattern(const char *arg)
{
	static const char dir[] = TOOL_SHM_DIR "/";

	if (strncmp(arg, dir, sizeof(dir) - 1) == 0)
		arg += sizeof(dir) - 1;
	while (*arg == '/')
		arg++;
	return arg;
}

#define TOOL_STR(x)	#x
#define TOOL_XSTR(x)	TOOL_STR(x)
#define TOOL_NAME_MAX_S	TOOL_XSTR(NAME_MAX)

int
tool_seg_name(const char *arg, char *out, size_t len)
{
	char shown[TOOL_NAME_LEN * 3];

	const char *name = tool_pattern(arg);

	if (*name == '\0' || strchr(name, '/') != NULL ||
	    strstr(name, "..") != NULL || strcmp(name, ".") == 0 ||
	    strlcpy(out, name, len) >= len) {
		/* The empty one as the user wrote it: "''", "/dev/shm/". */
		warnx("%s%s: not a segment name: %s", *arg == '\0' ? "''" :
		    "", tool_safe(shown, sizeof(shown), *name ? name : arg),
		    *name == '\0' ? "expected q, /q or " TOOL_SHM_DIR "/q" :
		    strlen(name) >= len ? "longer than " TOOL_NAME_MAX_S
		    " bytes" : "expected no '/' or '..' in it");
		return -EINVAL;
	}
	return 0;
}

/* ---- the SIGBUS guard -------------------------------------------------- */

/*
 * A page of a mapping whose file was cut short under a guarded read: put
 * a private page of zeros in its place and let the read go on, so that
 * the library's open or snapshot runs to its end and frees what it
 * allocated; the guard then disbelieves all of it (-EFAULT).  If that
 * cannot be done, jump out of the guarded function instead.  Outside a
 * guard, SIGBUS is fatal as usual.
 */
static void
on_sigbus(int sig, siginfo_t *si, void *uc)
{
	uintptr_t page = (uintptr_t)si->si_addr & ~(uintptr_t)(guard_page - 1);

	(void)uc;
	if (guard_jb == NULL) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	guard_hit = 1;
	if (si->si_code == BUS_ADRERR && page != 0 && mmap((void *)page,
	    guard_page, PROT_READ, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1,
	    0) != MAP_FAILED)
		return;
	siglongjmp(*guard_jb, 1);
}

int
tool_guard(int (*fn)(void *), void *arg)
{
	sigjmp_buf jb, *outer = guard_jb;
	sig_atomic_t outer_hit = guard_hit;
	int r;

	if (sigsetjmp(jb, 1) != 0) {
		guard_jb = outer;
		guard_hit = 1;
		return -EFAULT;
	}
	guard_hit = 0;
	guard_jb = &jb;
	r = fn(arg);
	guard_jb = outer;
	if (guard_hit)
		r = -EFAULT;
	guard_hit = outer_hit || guard_hit;
	return r;
}

static void
guard_install(void)
{
	struct sigaction sa = { .sa_sigaction = on_sigbus,
	    .sa_flags = SA_SIGINFO };

	guard_page = sysconf(_SC_PAGESIZE);
	sigemptyset(&sa.sa_mask);
	if (guard_page <= 0 || sigaction(SIGBUS, &sa, NULL) != 0)
		err(TOOL_EX_OSERR, "sigaction");
}

/* ---- clocks ------------------------------------------------------------ */

static uint64_t
clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t
tool_coarse_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC_COARSE);
}

uint64_t
tool_real_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

/* ---- running a command --------------------------------------------------- */

int
tool_flush(void)
{
	int e = fflush(stdout) != 0 ? errno : 0;

	/* EIO: an earlier write failed, and its errno is gone. */
	if (out_err == 0 && ferror(stdout))
		out_err = e != 0 ? e : EIO;
	return out_err;
}

/*
 * Output that could not be written is an error too, said once, here; but
 * a reader that left (EPIPE: "shmq ls | head") only if the command failed
 * for it.  A command that succeeded then exits fail.
 */
static int
flush_out(int code, int fail)
{
	int e = tool_flush();

	if (e == 0 || (e == EPIPE && code == 0))
		return code;
	warnx("stdout: %s", strerror(e));
	return code != 0 ? code : fail;
}

static int
flush_stdout(int code)
{
	return flush_out(code, TOOL_EX_OSERR);
}

int
tool_run(int argc, char **argv)
{
	static char *ls_argv[] = { "ls", NULL };
	const struct tool_cmd *c;

	guard_install();
	out_err = 0;			/* the fuzzer runs us again and again */
	clearerr(stdout);
	if (argc < 2)
		return flush_stdout(tool_cmd_ls(1, ls_argv));
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
		return flush_stdout(tool_help(NULL));
	if (strcmp(argv[1], "help") == 0)
		return flush_stdout(tool_help(argc > 2 ? argv[2] : NULL));
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("shmq %s (segment layout %d.%d)\n", SHMQ_VERSION,
		    SHMQ_LAYOUT_MAJOR, SHMQ_LAYOUT_MINOR);
		return flush_stdout(0);
	}
	if ((c = cmd_find(argv[1])) == NULL) {
		char shown[TOOL_NAME_LEN * 3];
		fprintf(stderr, "shmq: %s: %s\n", tool_safe(shown,
		    sizeof(shown), argv[1]), argv[1][0] == '-' ?
		    "unknown option (-h, -V, or a command first)" :
		    "no such command");
		return tool_usage(NULL, NULL);
	}
	optind = 0;			/* GNU: start getopt afresh */
	opterr = 0;			/* its errors: tool_opt_bad() */
	/* check speaks to a monitor, which knows 0..3 only: an OK it could
	 * not print is UNKNOWN to it. */
	return flush_out(c->c_run(argc - 1, argv + 1), strcmp(c->c_name,
	    "check") == 0 ? TOOL_NAGIOS_UNKNOWN : TOOL_EX_OSERR);
}
