/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tool_io.c - shmq put, get, create and rm: a queue used from shell
 * scripts.  Unlike the other commands these are ordinary queue users:
 * they attach (strictly: one's own queue, mode 0600), put and take.
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmq_layout.h"
#include "tool.h"

static struct shmq *volatile io_queue;	/* for the signal handler */
static volatile sig_atomic_t io_signal;

static void
on_io_signal(int sig)
{
	io_signal = sig;
	if (io_queue != NULL)
		shmq_wakeup(io_queue);	/* async-signal-safe */
}

/* A signal ends a wait with -EINTR; we then close cleanly. */
static void
io_signals(void)
{
	struct sigaction sa = { .sa_handler = on_io_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);	/* a closed stdout: EPIPE, no death */
}

/*
 * A pipeline's queues carry its clients' requests and replies: a message
 * taken from one is a request never answered (and, replies being written
 * in order, every later one on its connection), one put on it is dropped.
 * Refused without -f, saying so (exit 77).
 */
static bool
io_pipeline_queue(const char *seg, const char *cmd)
{
	char pipe[TOOL_NAME_LEN], shown[TOOL_NAME_LEN * 3],
	    pshown[TOOL_NAME_LEN * 3];
	const char *suffix;

	if (!tool_pipe_name(seg, pipe, sizeof(pipe), &suffix) ||
	    strcmp(suffix, "ctl") == 0)
		return false;
	warnx("%s: the %s queue of pipeline %s: %s; -f to do it anyway",
	    tool_safe(shown, sizeof(shown), seg), strcmp(suffix, "req") == 0 ?
	    "request" : "reply", tool_safe(pshown, sizeof(pshown), pipe),
	    strcmp(cmd, "get") == 0 ? "a message taken from it leaves a "
	    "client waiting for ever" : "the pipeline drops what it did not "
	    "put itself");
	return true;
}

/* Attach to NAME as a user; NULL with a message and *code set. */
static struct shmq *
io_open(const char *arg, const char *cmd, bool force, int *code)
{
	char shown[TOOL_NAME_LEN * 3];
	struct tool_ent e;
	struct shmq *q;

	/* What is not a queue is named as show and peek name it (the
	 * open would say only "Protocol error" or "No data available"). */
	if ((*code = tool_lookup(arg, TOOL_K_QUEUE | TOOL_K_QINIT, &e)) != 0)
		return NULL;
	if (!force && io_pipeline_queue(e.e_name, cmd)) {
		*code = TOOL_EX_NOPERM;
		return NULL;
	}
	if ((q = shmq_open(e.e_name)) == NULL && errno == EPERM) {
		warnx("%s: owned by another user, or open to group or others: "
		    "put and get use only one's own queues",
		    tool_safe(shown, sizeof(shown), e.e_name));
		*code = TOOL_EX_NOPERM;
		return NULL;
	}
	if (q == NULL) {		/* as show says it: CORRUPT... */
		*code = tool_queue_fail(&e, errno);
		return NULL;
	}
	/* Ours to do as a user: what a killed get or put left behind. */
	shmq_recover_dead(q);
	io_queue = q;
	*code = 0;
	return q;
}

static int
io_close(struct shmq *q, int code)
{
	io_queue = NULL;
	shmq_close(q);
	return io_signal != 0 ? 128 + io_signal : code;
}

/* The queue's name as the user gave it, without the leading slash, as
 * lines for people show it (static). */
static const char *
io_name(const struct shmq *q)
{
	static char shown[TOOL_NAME_LEN * 3];
	const char *name = shmq_name(q);

	return tool_safe(shown, sizeof(shown), name[0] == '/' ? name + 1 :
	    name);
}

/* The code for a failed put or get, with a message. */
static int
io_fail(const struct shmq *q, int r, const char *what)
{
	if (r == -EINTR && io_signal != 0)
		return 0;
	if (r == -EAGAIN || r == -ETIMEDOUT) {
		warnx("%s: timed out: %s", io_name(q), what);
		return TOOL_EX_TEMPFAIL;
	}
	if (r == -EMSGSIZE)
		warnx("%s: a message longer than its %u bytes", io_name(q),
		    shmq_msg_max(q));
	else
		warnx("%s: %s", io_name(q), strerror(-r));
	return tool_exit_code(-r);
}

/* -t MS: -1 (for ever) or 0..INT_MAX. */
static bool
io_timeout(const char *arg, int *ms)
{
	long long v;

	if (!tool_num(arg, -1, INT32_MAX, &v))
		return false;
	*ms = (int)v;
	return true;
}

/* ---- put --------------------------------------------------------------- */

static int
put_one(struct shmq *q, const char *msg, size_t len, int ms)
{
	int r;

	do
		r = shmq_put(q, msg, len, ms);
	while (r == -EINTR && io_signal == 0);
	return r == 0 ? 0 : io_fail(q, r, "the queue stayed full");
}

/*
 * The next line of f, without its newline, into buf of max bytes (the
 * queue's msg_max): 1 and its length in *len, 0 at the end of the input,
 * -EMSGSIZE for a line longer than max, or -errno if f cannot be read.  No
 * more than max + 1 bytes of a line are read: a line may be longer than
 * memory, or never end, and one that does not fit is refused anyway.
 */
static int
put_line(FILE *f, char *buf, size_t max, size_t *len)
{
	size_t n = 0;
	int c;

	while ((c = getc_unlocked(f)) != EOF && c != '\n') {
		if (n == max)
			return -EMSGSIZE;
		buf[n++] = (char)c;
	}
	if (c == EOF && ferror(f))
		return -(errno != 0 ? errno : EIO);
	*len = n;
	return c == EOF && n == 0 ? 0 : 1;
}

/* Each line of standard input, until one cannot be put (as arguments). */
static int
put_stdin(struct shmq *q, int ms)
{
	size_t max = shmq_msg_max(q), len = 0;
	char *line = malloc(max > 0 ? max : 1);
	int code = 0, r = 0;

	if (line == NULL) {
		warn("malloc");
		return TOOL_EX_OSERR;
	}
	while (code == 0 && io_signal == 0 &&
	    (r = put_line(stdin, line, max, &len)) > 0)
		code = put_one(q, line, len, ms);
	if (code == 0 && io_signal == 0 && r == -EMSGSIZE) {
		code = io_fail(q, r, "");
	} else if (code == 0 && io_signal == 0 && r < 0) {
		/* Not the end of the input: lines may be left unread. */
		warnx("stdin: %s", strerror(-r));
		code = TOOL_EX_OSERR;
	}
	free(line);
	return code;
}

int
tool_cmd_put(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
	};
	struct shmq *q;
	int ch, ms = -1, code;
	bool force = false;

	while ((ch = getopt_long(argc, argv, "+:fht:", longopts, NULL)) !=
	    -1) {
		if (ch == 'h')
			return tool_help("put");
		if (ch == 'f') {
			force = true;
			continue;
		}
		if (ch != 't')
			return tool_opt_bad("put", ch, argv, longopts);
		if (!io_timeout(optarg, &ms))
			return tool_usage("put", "-t: expected milliseconds, "
			    "-1 for ever");
	}
	if (optind >= argc)
		return tool_usage("put", "expected a NAME");
	io_signals();
	if ((q = io_open(argv[optind++], "put", force, &code)) == NULL)
		return code;
	if (optind == argc)
		code = put_stdin(q, ms);
	for (; optind < argc && code == 0 && io_signal == 0; optind++)
		code = put_one(q, argv[optind], strlen(argv[optind]), ms);
	return io_close(q, code);
}

/* ---- get --------------------------------------------------------------- */

/* Milliseconds left until deadline (ns); -1 if there is none. */
static int
get_left(uint64_t deadline)
{
	uint64_t now = tool_coarse_ns();

	if (deadline == 0)
		return -1;
	return now >= deadline ? 0 : (int)((deadline - now + 999999) /
	    1000000u);
}

/* Write one message and its newline; ack it only once it is out (a
 * failed fwrite or putchar shows in ferror(), which tool_flush checks;
 * tool_run reports it). */
static int
get_emit(struct shmq *q, const void *buf, size_t len,
    const struct shmq_lease *lease)
{
	fwrite(buf, 1, len, stdout);
	putchar('\n');
	if (tool_flush() != 0) {
		shmq_release(q, lease);	/* back for someone else */
		return TOOL_EX_OSERR;
	}
	shmq_ack(q, lease);
	return 0;
}

static int
get_loop(struct shmq *q, long long count, int ms)
{
	uint64_t deadline = ms >= 0 ? tool_coarse_ns() + (uint64_t)ms *
	    1000000u + 1 : 0;
	size_t cap = shmq_msg_max(q) ? shmq_msg_max(q) : 1;
	char *buf = malloc(cap);
	struct shmq_lease lease;
	long long got = 0;
	int code = 0;
	ssize_t n;

	if (buf == NULL)
		err(TOOL_EX_OSERR, "malloc");
	while (code == 0 && got < count && io_signal == 0) {
		n = shmq_take(q, buf, cap, &lease, get_left(deadline));
		if (n == -EINTR && io_signal == 0)
			continue;
		if (n == -EPROTO) {
			warnx("%s: a malformed message was dropped",
			    io_name(q));
			continue;
		}
		if (n < 0 && got > 0 && (n == -EAGAIN || n == -ETIMEDOUT))
			break;		/* what came in time is all */
		if (n < 0) {
			code = io_fail(q, (int)n, "no message");
			break;
		}
		if ((code = get_emit(q, buf, (size_t)n, &lease)) == 0)
			got++;
	}
	free(buf);
	return code;
}

int
tool_cmd_get(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "count", required_argument, NULL, 'n' },
		{ "force", no_argument, NULL, 'f' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
	};
	struct shmq *q;
	long long count = 1;
	int ch, ms = -1, code;
	bool force = false;

	while ((ch = getopt_long(argc, argv, ":fhn:t:", longopts, NULL)) !=
	    -1) {
		if (ch == 'h')
			return tool_help("get");
		if (ch == 'f') {
			force = true;
			continue;
		}
		if (ch == 'n' && tool_num(optarg, 1, INT32_MAX, &count))
			continue;
		if (ch == 't' && io_timeout(optarg, &ms))
			continue;
		if (ch != 'n' && ch != 't')
			return tool_opt_bad("get", ch, argv, longopts);
		return tool_usage("get", ch == 'n' ? "-n: expected a count, 1 "
		    "or more" : "-t: expected milliseconds, -1 for ever");
	}
	if (argc - optind != 1)
		return tool_usage("get", "expected one NAME");
	io_signals();
	if ((q = io_open(argv[optind], "get", force, &code)) == NULL)
		return code;
	return io_close(q, get_loop(q, count, ms));
}

/* ---- create ------------------------------------------------------------ */

/* -M: octal permissions 1..0777. */
static bool
create_mode(mode_t *dst, const char *arg)
{
	long v;
	char *end;

	if (*arg < '0' || *arg > '7')
		return false;		/* strtol takes " 600" and "+600" */
	errno = 0;
	v = strtol(arg, &end, 8);
	*dst = (mode_t)v;
	return errno == 0 && *end == '\0' && v > 0 && v <= 0777;
}

/* One option of create into cfg: NULL, or what is wrong with its value
 * (static), which names the option and what it expects. */
static const char *
create_opt(struct shmq_config *cfg, int ch, const char *arg)
{
	static char why[160];
	char shown[80];		/* the user's bytes, said back; cut to fit */
	uint32_t *dst;
	long long v, lo = 1, hi;

	switch (ch) {
	case 'c':
		dst = &cfg->capacity;
		lo = SHMQ_CAPACITY_MIN;
		hi = SHMQ_CAPACITY_MAX;
		break;
	case 'm':
		dst = &cfg->msg_max;
		hi = SHMQ_MSG_MAX_LIMIT;
		break;
	case 'p':
		dst = &cfg->max_procs;
		hi = SHMQ_PROCS_LIMIT;
		break;
	case 'l':
		dst = &cfg->lease_max;
		hi = SHMQ_LEASE_LIMIT;
		break;
	case 'M':
		if (create_mode(&cfg->mode, arg))
			return NULL;
		snprintf(why, sizeof(why), "-M %s: expected octal "
		    "permissions 1..0777", tool_safe(shown, sizeof(shown),
		    arg));
		return why;
	default:
		return "unknown option";	/* tool_opt_bad() said it */
	}
	if (!tool_num(arg, lo, hi, &v)) {
		snprintf(why, sizeof(why), "-%c %s: expected a whole number "
		    "%lld..%lld", ch, tool_safe(shown, sizeof(shown), arg),
		    lo, hi);
		return why;
	}
	*dst = (uint32_t)v;
	return NULL;
}

int
tool_cmd_create(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "capacity", required_argument, NULL, 'c' },
		{ "msg-max", required_argument, NULL, 'm' },
		{ "procs", required_argument, NULL, 'p' },
		{ "leases", required_argument, NULL, 'l' },
		{ "mode", required_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
	};
	struct shmq_config cfg = { 0 };
	char name[TOOL_NAME_LEN], shown[TOOL_NAME_LEN * 3];
	const char *why;
	struct shmq *q;
	int ch;

	while ((ch = getopt_long(argc, argv, ":c:hl:m:M:p:", longopts,
	    NULL)) != -1) {
		if (ch == 'h')
			return tool_help("create");
		if (ch == '?' || ch == ':')
			return tool_opt_bad("create", ch, argv, longopts);
		if ((why = create_opt(&cfg, ch, optarg)) != NULL)
			return tool_usage("create", why);
	}
	if (argc - optind != 1)
		return tool_usage("create", "expected one NAME");
	if (tool_seg_name(argv[optind], name, sizeof(name)) != 0)
		return TOOL_EX_USAGE;
	if ((q = shmq_create(name, &cfg)) == NULL) {
		int e = errno;
		warnx("%s: %s", tool_safe(shown, sizeof(shown), name),
		    strerror(e));
		return e == ENOSPC ? TOOL_EX_CANTCREAT : tool_exit_code(e);
	}
	shmq_close(q);
	return 0;
}

/* ---- rm ---------------------------------------------------------------- */

/* Why NAME must not go without -f, or NULL; *code for the refusal. */
static const char *
rm_refusal(const struct tool_ent *e, int *code)
{
	static char why[96];
	struct tool_opts o;
	struct tool_qrow r;

	tool_opts_init(&o);
	if (e->e_uid != geteuid()) {
		snprintf(why, sizeof(why), "owned by uid %u",
		    (unsigned)e->e_uid);
		*code = TOOL_EX_NOPERM;
		return why;
	}
	tool_queue_read(e, &o, &r, NULL);
	*code = tool_rows_exit(&r, 1);
	if (*code != 0)
		return tool_state_name(r.q_state);
	*code = TOOL_EX_TEMPFAIL;
	if (r.q_state == TOOL_ST_INIT)
		return "being created";
	if (r.q_attached_alive == 0)
		return NULL;
	snprintf(why, sizeof(why), "%u live process%s attached",
	    r.q_attached_alive, r.q_attached_alive == 1 ? "" : "es");
	return why;
}

static int
rm_one(const char *arg, bool force)
{
	char shown[TOOL_NAME_LEN * 3];
	struct tool_ent e;
	const char *why;
	int code, r;

	if ((code = tool_lookup(arg, TOOL_K_QUEUE | TOOL_K_QINIT, &e)) != 0)
		return code;
	if (!force && (why = rm_refusal(&e, &code)) != NULL) {
		warnx("%s: %s; not removed (-f removes it anyway)",
		    tool_safe(shown, sizeof(shown), e.e_name), why);
		return code;
	}
	if ((r = shmq_unlink(e.e_name)) != 0) {
		warnx("%s: %s", tool_safe(shown, sizeof(shown), e.e_name),
		    strerror(-r));
		return tool_exit_code(-r);
	}
	return 0;
}

int
tool_cmd_rm(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
	};
	bool force = false;
	int ch, code = 0, r;

	while ((ch = getopt_long(argc, argv, ":fh", longopts, NULL)) != -1) {
		if (ch == 'h')
			return tool_help("rm");
		if (ch != 'f')
			return tool_opt_bad("rm", ch, argv, longopts);
		force = true;
	}
	if (optind >= argc)
		return tool_usage("rm", "expected a NAME");
	for (; optind < argc; optind++)
		if ((r = rm_one(argv[optind], force)) != 0 && code == 0)
			code = r;
	return code;
}
