/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_shmq_tool.c - tests of shmq(1), run as a program ($SHMPIPE_BUILD/
 * shmq) against live queues and a live pipeline: every command and every
 * output format (JSON parsed back), exit codes, gc, and segments that are
 * mutated, truncated under it or hammered by producers and consumers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_json.h"
#include "check_pipeline_util.h"
#include "check_util.h"
#include "shmq_layout.h"
#include "shmq_int.h"

Suite	*shmq_tool_suite(void);

#define ST_ARGS		32
#define ST_WAIT_S	30
#define ST_MUTATIONS	300	/* random mutations of a real segment */
#define ST_SAMPLES	1000000	/* stats samples under MPMC load */

/* One run of the tool. */
struct st_run {
	int		 r_code;	/* exit status, or 128 + signal */
	bool		 r_signaled;
	char		*r_out;		/* stdout, NUL-terminated */
	size_t		 r_len;
	char		*r_err;		/* stderr */
};

static const char *
st_prog(void)
{
	static char prog[256];
	const char *b = getenv("SHMPIPE_BUILD");

	snprintf(prog, sizeof(prog), "%s/shmq", b != NULL && *b ? b : "build");
	return prog;
}

static uint64_t
st_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
st_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Run the tool as nobody (st_run_to, as root): exit 99 if it cannot be. */
static bool st_nobody;

/* The child's side: stdin, stdout and stderr, a clean mask, exec. */
static void __attribute__((noreturn))
st_exec(const char *const *argv, int in, int out, int err)
{
	sigset_t none;

	if (st_nobody && (setgroups(0, NULL) != 0 || setgid(65534) != 0 ||
	    setuid(65534) != 0))
		_exit(99);
	dup2(in, STDIN_FILENO);
	dup2(out, STDOUT_FILENO);
	dup2(err, STDERR_FILENO);
	close_range(3, ~0u, 0);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execv(argv[0], (char *const *)argv);
	_exit(127);
}

/* Append what fd has to *buf; false at end of file. */
static bool
st_drain(int fd, char **buf, size_t *len, size_t *cap)
{
	ssize_t n;

	if (*len + 65536 + 1 > *cap) {
		*cap = (*len + 65536 + 1) * 2;
		ck_assert_ptr_nonnull(*buf = realloc(*buf, *cap));
	}
	do
		n = read(fd, *buf + *len, *cap - *len - 1);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return false;
	*len += (size_t)n;
	(*buf)[*len] = '\0';
	return true;
}

/* Read both pipes to their ends (poll: neither may fill and block). */
static void
st_collect(struct st_run *r, int out, int err)
{
	struct pollfd pf[2] = { { out, POLLIN, 0 }, { err, POLLIN, 0 } };
	size_t ocap = 0, ecap = 0, elen = 0;
	uint64_t end = st_now_ms() + ST_WAIT_S * 1000u;

	ck_assert_ptr_nonnull(r->r_out = calloc(1, 1));
	ck_assert_ptr_nonnull(r->r_err = calloc(1, 1));
	while (pf[0].fd >= 0 || pf[1].fd >= 0) {
		ck_assert_msg(st_now_ms() < end, "shmq ran for over %d s",
		    ST_WAIT_S);
		if (poll(pf, 2, 1000) <= 0)
			continue;
		if (pf[0].revents && !st_drain(out, &r->r_out, &r->r_len,
		    &ocap))
			pf[0].fd = -1;
		if (pf[1].revents && !st_drain(err, &r->r_err, &elen, &ecap))
			pf[1].fd = -1;
	}
}

/* Run shmq with args and in as its stdin (closed here); its stdout into
 * r_out, or into the file out if it is not NULL (/dev/full). */
static void
st_run_fd(struct st_run *r, int in, const char *out_path,
    const char *const *args)
{
	const char *argv[ST_ARGS];
	int out[2], err[2], n = 0, status;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	argv[n++] = st_prog();
	for (int i = 0; args[i] != NULL && n < ST_ARGS - 1; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	out[0] = -1;			/* st_collect skips it */
	if (out_path != NULL)
		ck_assert_int_ge(out[1] = open(out_path, O_WRONLY | O_CLOEXEC),
		    0);
	else
		ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
	if ((pid = cu_fork()) == 0)
		st_exec(argv, in, out[1], err[1]);
	close(in);
	close(out[1]);
	close(err[1]);
	st_collect(r, out[0], err[0]);
	if (out[0] >= 0)
		close(out[0]);
	close(err[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	r->r_signaled = WIFSIGNALED(status);
	r->r_code = WIFEXITED(status) ? WEXITSTATUS(status) :
	    128 + WTERMSIG(status);
}

/* Run shmq with args (and input on its stdin, if not NULL); its stdout
 * into r_out, or into the file out if it is not NULL (/dev/full). */
static void
st_run_to(struct st_run *r, const char *input, const char *out_path,
    const char *const *args)
{
	int in;

	ck_assert_int_ge(in = memfd_create("shmq-in", MFD_CLOEXEC), 0);
	if (input != NULL)
		ck_assert_int_eq(write(in, input, strlen(input)),
		    (ssize_t)strlen(input));
	lseek(in, 0, SEEK_SET);
	st_run_fd(r, in, out_path, args);
}

static void
st_run_in(struct st_run *r, const char *input, const char *const *args)
{
	st_run_to(r, input, NULL, args);
}

#define ST_RUN(r, ...) \
	st_run_in((r), NULL, (const char *const[]){ __VA_ARGS__, NULL })
#define ST_RUN_IN(r, in, ...) \
	st_run_in((r), (in), (const char *const[]){ __VA_ARGS__, NULL })
#define ST_RUN_TO(r, out, ...) \
	st_run_to((r), NULL, (out), (const char *const[]){ __VA_ARGS__, \
	    NULL })

static void
st_free(struct st_run *r)
{
	free(r->r_out);
	free(r->r_err);
	memset(r, 0, sizeof(*r));
}

/* Assert the exit status, showing what the tool said if it is not. */
static void
st_expect(const struct st_run *r, int code, const char *what)
{
	ck_assert_msg(!r->r_signaled && r->r_code == code, "%s: exit %d%s, "
	    "expected %d\n--- stdout:\n%s--- stderr:\n%s", what, r->r_code,
	    r->r_signaled ? " (signal)" : "", code, r->r_out, r->r_err);
}

/* Parse the output as JSON; it must be an object of schema 1. */
static struct cj *
st_json(const struct st_run *r, const char *command)
{
	const char *why = NULL;
	size_t at = 0;
	struct cj *v = cj_parse(r->r_out, &why, &at);

	ck_assert_msg(v != NULL, "shmq %s: bad JSON (%s at byte %zu):\n%s",
	    command, why, at, r->r_out);
	ck_assert_msg(cj_num(cj_get(v, "schema")) == 1, "no schema 1 in %s",
	    r->r_out);
	ck_assert_str_eq(cj_str(cj_get(v, "command")), command);
	return v;
}

/* The object in array key of v whose "name" is name, or NULL. */
static const struct cj *
st_find(const struct cj *v, const char *key, const char *name)
{
	const struct cj *arr = cj_get(v, key), *it;

	for (size_t i = 0; (it = cj_at(arr, i)) != NULL; i++)
		if (cj_str(cj_get(it, "name")) != NULL &&
		    strcmp(cj_str(cj_get(it, "name")), name) == 0)
			return it;
	return NULL;
}

/* A number member that must be there. */
static double
st_num(const struct cj *o, const char *key)
{
	double v = cj_num(cj_get(o, key));

	ck_assert_msg(!isnan(v), "no number %s", key);
	return v;
}

/* Fields of one CSV line (RFC 4180); the line is consumed from *p. */
static int
st_csv_fields(const char **p)
{
	const char *s = *p;
	bool quoted = false;
	int n = 1;

	for (; *s && (quoted || *s != '\r'); s++) {
		if (*s == '"')
			quoted = !quoted;
		else if (*s == ',' && !quoted)
			n++;
	}
	ck_assert_msg(s[0] == '\r' && s[1] == '\n', "CSV line without CRLF");
	*p = s + 2;
	return n;
}

/* Every CSV line has as many fields as the header; lines counted. */
static int
st_csv(const char *text)
{
	const char *p = text;
	int head = st_csv_fields(&p), lines = 1;

	while (*p) {
		ck_assert_int_eq(st_csv_fields(&p), head);
		lines++;
	}
	return lines;
}

/* Prometheus text format: HELP and TYPE before a family's samples, each
 * sample "name{k="v",...} value".  Samples counted. */
static int
st_prom(const char *text)
{
	char fam[128] = "", line[1024], name[128];
	const char *p = text, *nl;
	int samples = 0;

	for (; *p; p = nl + 1) {
		ck_assert_ptr_nonnull(nl = strchr(p, '\n'));
		ck_assert_int_lt(nl - p, (long)sizeof(line));
		memcpy(line, p, (size_t)(nl - p));
		line[nl - p] = '\0';
		if (sscanf(line, "# HELP %127s", name) == 1) {
			strlcpy(fam, name, sizeof(fam));
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			ck_assert_msg(strncmp(line + 7, fam, strlen(fam)) == 0,
			    "TYPE without HELP: %s", line);
			continue;
		}
		size_t n = strcspn(line, "{ ");
		ck_assert_msg(n == strlen(fam) && strncmp(line, fam, n) == 0,
		    "sample outside its family %s: %s", fam, line);
		const char *v = strrchr(line, ' ');
		char *end;
		ck_assert_ptr_nonnull(v);
		(void)strtod(v + 1, &end);
		ck_assert_msg(*end == '\0' && end != v + 1, "bad value: %s",
		    line);
		ck_assert_msg(line[n] == ' ' || strchr(line, '}') == v - 1,
		    "bad labels: %s", line);
		samples++;
	}
	return samples;
}

/* "shmqt-...-tag-pid" of a cu_name(), without the slash. */
static const char *
st_bare(const char *name)
{
	return name[0] == '/' ? name + 1 : name;
}

/* A glob for every segment this test makes: the names with its tag. */
static void
st_glob(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s*", st_bare(name));
}

static void
st_put_n(struct shmq *q, int n)
{
	for (int i = 0; i < n; i++)
		QASSERT_EQ(q, shmq_put(q, "message", 7, 0), 0);
}

/* The JSON row of queue name in "shmq ls -o json NAME". */
static struct cj *
st_ls_json(const char *name, const char *const *extra)
{
	const char *argv[ST_ARGS] = { "ls", "-o", "json" };
	struct st_run r;
	struct cj *v;
	int n = 3;

	for (int i = 0; extra != NULL && extra[i] != NULL; i++)
		argv[n++] = extra[i];
	argv[n++] = st_bare(name);
	argv[n] = NULL;
	st_run_in(&r, NULL, argv);
	st_expect(&r, 0, "ls -o json");
	v = st_json(&r, "ls");
	st_free(&r);
	return v;
}

static const char *
st_state(const char *name, const char *const *extra)
{
	static char state[32];
	struct cj *v = st_ls_json(name, extra);
	const struct cj *q = st_find(v, "queues", st_bare(name));

	ck_assert_ptr_nonnull(q);
	strlcpy(state, cj_str(cj_get(q, "state")), sizeof(state));
	cj_free(v);
	return state;
}

/* A child attached to name that waits in shmq_get until killed. */
static pid_t
st_sleeper(struct shmq *q, const char *name)
{
	pid_t pid = cu_fork();
	char buf[64];

	if (pid == 0) {
		struct shmq *c = shmq_open(name);
		if (c == NULL)
			_exit(1);
		for (;;)
			(void)shmq_get(c, buf, sizeof(buf), -1);
	}
	cu_wait_asleep(q, pid, SHMQ_ASLEEP_GET);
	return pid;
}

static void
st_kill(pid_t pid)
{
	kill(pid, SIGKILL);
	cu_wait(pid, NULL, ST_WAIT_S);
}

/* A child that attaches (creating the queue if cfg) and dies attached. */
static void
st_die_attached(const char *name, bool create)
{
	pid_t pid = cu_fork();

	if (pid == 0) {
		struct shmq *c = create ? shmq_create(name, &(struct
		    shmq_config){ .capacity = 16, .msg_max = 64 }) :
		    shmq_open(name);
		if (c == NULL)
			_exit(1);
		if (create)
			(void)shmq_put(c, "left", 4, 0);
		_exit(0);			/* no shmq_close */
	}
	cu_wait_exit(NULL, pid, 0);
}

/* ---- Core -------------------------------------------------------------- */

START_TEST(test_shmq_tool_usage)
{
	struct st_run r;

	ST_RUN(&r, "--help");
	st_expect(&r, 0, "--help");
	ck_assert_ptr_nonnull(strstr(r.r_out, "usage: shmq"));
	ck_assert_ptr_nonnull(strstr(r.r_out, "gc"));
	st_free(&r);
	ST_RUN(&r, "help", "peek");
	st_expect(&r, 0, "help peek");
	ck_assert_ptr_nonnull(strstr(r.r_out, "shmq peek"));
	st_free(&r);
	ST_RUN(&r, "-V");
	st_expect(&r, 0, "-V");
	ck_assert_ptr_nonnull(strstr(r.r_out, SHMQ_VERSION));
	st_free(&r);
	ST_RUN(&r, "frobnicate");
	st_expect(&r, 64, "unknown command");
	st_free(&r);
	ST_RUN(&r, "ls", "-o", "xml");
	st_expect(&r, 64, "ls -o xml");
	st_free(&r);
	ST_RUN(&r, "ls", "-w", "9");
	st_expect(&r, 64, "ls -w 9");
	st_free(&r);
	/* --fill-crit is check's: ls, top and show refuse it (ls took it
	 * and did nothing with it). */
	ST_RUN(&r, "ls", "--fill-crit", "90");
	st_expect(&r, 64, "ls --fill-crit");
	ck_assert_ptr_nonnull(strstr(r.r_err, "--fill-crit is for check"));
	st_free(&r);
	ST_RUN(&r, "top", "--fill-crit", "90");
	st_expect(&r, 64, "top --fill-crit");
	st_free(&r);
	ST_RUN(&r, "show", "--fill-crit", "90", "q");
	st_expect(&r, 64, "show --fill-crit");
	st_free(&r);
	ST_RUN(&r, "peek");
	st_expect(&r, 64, "peek without a name");
	st_free(&r);
	ST_RUN(&r, "show", "a/b");
	st_expect(&r, 64, "show a/b");
	st_free(&r);
	ST_RUN(&r, "get", "-n", "0", "q");
	st_expect(&r, 64, "get -n 0");
	st_free(&r);
	ST_RUN(&r, "get", "-n", "+1", "q");
	st_expect(&r, 64, "get -n +1");
	st_free(&r);
	ST_RUN(&r, "check", "--fill-warn", "500");
	st_expect(&r, 3, "check with a bad threshold is UNKNOWN");
	ck_assert_ptr_nonnull(strstr(r.r_err, "usage"));
	st_free(&r);
}
END_TEST

/*
 * Every command says what is wrong with an option in the tool's words, one
 * line "shmq: OPTION: what is wrong" and its usage under it, and exits 64
 * (check: 3).  getopt printed its own line before, named for the command
 * ("ls: invalid option -- 'z'"), and an option a command does not take but
 * another does (ps --window, top --output) got the usage without a word.
 */
START_TEST(test_shmq_tool_option_errors)
{
	static const char *const runs[][4] = {
		/* command, option, its value or NULL, what is said */
		{ "ls", "-o", NULL, "-o: expected a value, FMT" },
		{ "show", "--window", NULL, "--window: expected a value, S" },
		{ "ps", "--window", "3", "--window: unknown option" },
		{ "top", "--output", "json", "--output: unknown option" },
		{ "peek", "--hex=1", "q", "--hex: takes no value" },
		{ "put", "-t", NULL, "-t: expected a value, MS" },
		{ "get", "--count", NULL, "--count: expected a value, K" },
		{ "create", "-\x1b", "q", "-?: unknown option" },
		{ "rm", "--force=1", "q", "--force: takes no value" },
		{ "check", "--fill", "5", "--fill: ambiguous, expected "
		    "--fill-warn or --fill-crit" },
		{ "gc", "-nz", NULL, "-z: unknown option" },
	};
	static const char *const cmds[] = { "ls", "show", "ps", "top", "peek",
		"put", "get", "create", "rm", "check", "gc" };
	char want[256];
	struct st_run r;

	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		const char *cmd = runs[i][0];
		st_run_in(&r, NULL, (const char *const[]){ cmd, runs[i][1],
		    runs[i][2], NULL });
		st_expect(&r, strcmp(cmd, "check") == 0 ? 3 : 64, cmd);
		snprintf(want, sizeof(want), "shmq: %s\nusage: shmq %s ",
		    runs[i][3], cmd);
		ck_assert_msg(strncmp(r.r_err, want, strlen(want)) == 0 &&
		    strchr(r.r_err + strlen(want), '\n') == r.r_err +
		    strlen(r.r_err) - 1, "%s %s: stderr:\n%s", cmd, runs[i][1],
		    r.r_err);
		st_free(&r);
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		for (int k = 0; k < 2; k++) {
			const char *opt = k == 0 ? "-z" : "--bogus=1";
			ST_RUN(&r, cmds[i], opt);
			st_expect(&r, strcmp(cmds[i], "check") == 0 ? 3 : 64,
			    cmds[i]);
			snprintf(want, sizeof(want), "shmq: %s: unknown "
			    "option\nusage: shmq %s ", k == 0 ? "-z" :
			    "--bogus", cmds[i]);
			ck_assert_msg(strncmp(r.r_err, want, strlen(want)) ==
			    0, "%s %s: stderr:\n%s", cmds[i], opt, r.r_err);
			st_free(&r);
		}
}
END_TEST

/*
 * Operands that are there but say nothing get a line that says what is
 * wrong and what is expected: an empty PATTERN ("", "/dev/shm/") was "no
 * queue matches " and exit 66; an empty NAME was ": not a segment name";
 * "help nosuch" printed the usage on stdout without a word; "shmq -x" was
 * "no such command"; crossed thresholds did not say their values.
 */
START_TEST(test_shmq_tool_odd_operands)
{
	static const char *const runs[][5] = {
		/* exit, args..., what stderr starts with */
		{ "64", "ls", "", NULL, "shmq: '': an empty PATTERN, which "
		    "matches nothing; expected names or a fnmatch(3) pattern" },
		{ "64", "ls", "/dev/shm/", NULL, "shmq: '/dev/shm/': an empty "
		    "PATTERN" },
		{ "64", "gc", "/", NULL, "shmq: '/': an empty PATTERN" },
		{ "3", "check", "", NULL, "shmq: '': an empty PATTERN" },
		{ "64", "show", "", NULL, "shmq: '': not a segment name: "
		    "expected q, /q or /dev/shm/q\n" },
		{ "64", "peek", "/dev/shm/", NULL, "shmq: /dev/shm/: not a "
		    "segment name: expected q, /q or /dev/shm/q\n" },
		{ "64", "rm", "a/b", NULL, "shmq: a/b: not a segment name: "
		    "expected no '/' or '..' in it\n" },
		{ "64", "help", "nosuch", NULL, "shmq: help nosuch: no such "
		    "command\n" },
		{ "64", "-x", NULL, NULL, "shmq: -x: unknown option" },
		{ "3", "check", "--fill-warn=90", "--fill-crit=80", "shmq: "
		    "--fill-warn 90 is above --fill-crit 80; expected" },
	};
	struct st_run r;

	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		const char *const *row = runs[i];
		const char *want = row[4];
		st_run_in(&r, NULL, (const char *const[]){ row[1], row[2],
		    row[3], NULL });
		st_expect(&r, atoi(row[0]), row[1]);
		ck_assert_msg(strncmp(r.r_err, want, strlen(want)) == 0,
		    "%s %s: stderr:\n%s", row[1], row[2] ? row[2] : "",
		    r.r_err);
		ck_assert_msg(r.r_len == 0, "%s: stdout:\n%s", row[1], r.r_out);
		st_free(&r);
	}
}
END_TEST

/*
 * A get that cannot write its message gives it back (its lease, released,
 * waits in the get's own record for the next taker) and exits 71.  The
 * queue is still a script queue nobody is attached to: before, that record
 * made it STALE, check CRITICAL, and gc removed it with its messages.
 */
START_TEST(test_shmq_tool_get_fail_keeps_queue)
{
	char name[CU_NAME_LEN];
	struct st_run r;

	cu_name(name, "gfail");
	ST_RUN(&r, "create", "-c", "8", "-m", "64", name);
	st_expect(&r, 0, "create");
	st_free(&r);
	ST_RUN(&r, "put", name, "job1", "job2", "job3");
	st_expect(&r, 0, "put");
	st_free(&r);
	st_run_to(&r, NULL, "/dev/full", (const char *const[]){ "get", name,
	    NULL });
	st_expect(&r, 71, "get to a full device");
	st_free(&r);
	ST_RUN(&r, "ls", name);
	st_expect(&r, 0, "ls after the failed get");
	ck_assert_msg(strstr(r.r_out, "STALE") == NULL, "ls:\n%s", r.r_out);
	st_free(&r);
	ST_RUN(&r, "check", name);
	st_expect(&r, 0, "check after the failed get");
	st_free(&r);
	ST_RUN(&r, "gc", name);
	st_free(&r);
	ST_RUN(&r, "get", "-n", "3", "-t", "0", name);
	st_expect(&r, 0, "get after gc");
	ck_assert_str_eq(r.r_out, "job1\njob2\njob3\n");
	st_free(&r);
	ST_RUN(&r, "rm", name);
	st_expect(&r, 0, "rm");
	st_free(&r);
}
END_TEST

/*
 * A pipeline's queues hold its clients' requests and replies: get and put
 * refuse them (77, saying why) unless forced, and leave them untouched.
 */
START_TEST(test_shmq_tool_pipeline_queue_guard)
{
	char base[CU_NAME_LEN], name[CU_NAME_LEN + 16];
	struct st_run r;

	cu_name(base, "guard");		/* the sweep finds it after a failure */
	snprintf(name, sizeof(name), "shmpipe.%s.req", base + 1);
	ST_RUN(&r, "create", "-c", "8", "-m", "64", name);
	st_expect(&r, 0, "create");
	st_free(&r);
	ST_RUN(&r, "put", name, "x");
	st_expect(&r, 77, "put on a pipeline's queue");
	ck_assert_msg(strstr(r.r_err, "request queue of pipeline shmqt-") !=
	    NULL && strstr(r.r_err, "-f") != NULL,
	    "put: %s", r.r_err);
	st_free(&r);
	ST_RUN(&r, "put", "--force", name, "job");
	st_expect(&r, 0, "put -f");
	st_free(&r);
	ST_RUN(&r, "get", "-t", "0", name);
	st_expect(&r, 77, "get from a pipeline's queue");
	ck_assert_msg(strstr(r.r_err, "waiting for ever") != NULL, "get: %s",
	    r.r_err);
	ck_assert_str_eq(r.r_out, "");
	st_free(&r);
	ST_RUN(&r, "get", "-f", "-t", "0", name);
	st_expect(&r, 0, "get -f");
	ck_assert_str_eq(r.r_out, "job\n");
	st_free(&r);
	ST_RUN(&r, "rm", name);
	st_expect(&r, 0, "rm");
	st_free(&r);
}
END_TEST

START_TEST(test_shmq_tool_put_get)
{
	char name[CU_NAME_LEN];
	struct st_run r;

	cu_name(name, "io");
	ST_RUN(&r, "create", "-c", "16", "-m", "64", name);
	st_expect(&r, 0, "create");
	st_free(&r);
	ST_RUN(&r, "create", name);
	st_expect(&r, 73, "create again");
	st_free(&r);
	ST_RUN(&r, "put", name, "one", "-two", "three");
	st_expect(&r, 0, "put arguments");
	st_free(&r);
	ST_RUN_IN(&r, "four\nfive\n", "put", name);
	st_expect(&r, 0, "put from stdin");
	st_free(&r);
	ST_RUN(&r, "get", "-n", "4", name);
	st_expect(&r, 0, "get -n 4");
	ck_assert_str_eq(r.r_out, "one\n-two\nthree\nfour\n");
	st_free(&r);
	ST_RUN(&r, "get", "-n", "3", "-t", "100", name);
	st_expect(&r, 0, "get -n 3 with only one there");
	ck_assert_str_eq(r.r_out, "five\n");
	st_free(&r);
	ST_RUN(&r, "get", "-t", "0", name);
	st_expect(&r, 75, "get from an empty queue");
	st_free(&r);
	ST_RUN_IN(&r, "0123456789012345678901234567890123456789012345678901"
	    "234567890123456789\n", "put", name);
	st_expect(&r, 65, "put of a message too long");
	st_free(&r);
	ST_RUN(&r, "rm", name);
	st_expect(&r, 0, "rm");
	st_free(&r);
	ST_RUN(&r, "rm", name);
	st_expect(&r, 66, "rm of what is gone");
	st_free(&r);
	ST_RUN(&r, "put", name, "x");
	st_expect(&r, 66, "put to what is gone");
	st_free(&r);
}
END_TEST

/*
 * put from standard input reads at most msg_max + 1 bytes of a line: one
 * longer than the queue takes is refused, 65, as an argument is, and the
 * lines before it are on the queue, it and those after are not.  put read
 * each line whole (getline), so a line that never ends, or does not fit in
 * memory, was read for ever, or taken for the end of the input (exit 0,
 * later lines dropped, nothing said); here a line that never ends.
 */
START_TEST(test_shmq_tool_put_stdin_long)
{
	char name[CU_NAME_LEN], long_line[1000];
	struct st_run r;
	int pfd[2], dir;

	cu_name(name, "putlong");
	shmq_close(cu_create(name, 16, 16, 0, 0));
	ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
	memset(long_line, 'a', sizeof(long_line));
	ck_assert_int_eq(write(pfd[1], "first\n", 6), 6);
	ck_assert_int_eq(write(pfd[1], long_line, sizeof(long_line)),
	    (ssize_t)sizeof(long_line));
	st_run_fd(&r, pfd[0], NULL, (const char *const[]){ "put", name,
	    NULL });
	close(pfd[1]);			/* the line ends only now */
	st_expect(&r, 65, "put of a line that never ends");
	ck_assert_msg(strstr(r.r_err, ": a message longer than its 16 "
	    "bytes\n") != NULL, "%s", r.r_err);
	st_free(&r);
	ST_RUN(&r, "get", "-n", "10", "-t", "0", name);
	st_expect(&r, 0, "get");
	ck_assert_str_eq(r.r_out, "first\n");
	st_free(&r);

	/* msg_max bytes fit; one more does not; the last line needs no
	 * newline. */
	ST_RUN_IN(&r, "0123456789abcdef\nx\n0123456789abcdefX\nlast\n", "put",
	    name);
	st_expect(&r, 65, "put of a line one byte too long");
	st_free(&r);
	ST_RUN_IN(&r, "\nend", "put", name);
	st_expect(&r, 0, "put of an empty line and one without a newline");
	st_free(&r);
	ST_RUN(&r, "get", "-n", "10", "-t", "0", name);
	st_expect(&r, 0, "get");
	ck_assert_str_eq(r.r_out, "0123456789abcdef\nx\n\nend\n");
	st_free(&r);

	/* Input that cannot be read is a system error, said. */
	ck_assert_int_ge(dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC),
	    0);
	st_run_fd(&r, dir, NULL, (const char *const[]){ "put", name, NULL });
	st_expect(&r, 71, "put from a directory");
	ck_assert_msg(strstr(r.r_err, "stdin: Is a directory") != NULL, "%s",
	    r.r_err);
	st_free(&r);
}
END_TEST

/*
 * create refuses a bad value naming the option, the value and what it
 * expects, in one line as ls -w does, then its usage; it listed every
 * range and left the user to guess which one was meant.
 */
START_TEST(test_shmq_tool_create_values)
{
	char name[CU_NAME_LEN], path[CU_NAME_LEN + 16], want[128];
	struct st_run r;
	struct {
		const char	*opt, *val;
		long long	 lo, hi;	/* hi 0: -M */
	} bad[] = {
		{ "-c", "1", SHMQ_CAPACITY_MIN, SHMQ_CAPACITY_MAX },
		{ "--capacity", "x", SHMQ_CAPACITY_MIN, SHMQ_CAPACITY_MAX },
		{ "-m", "0", 1, SHMQ_MSG_MAX_LIMIT },
		{ "-p", "257", 1, SHMQ_PROCS_LIMIT },
		{ "-l", "+4", 1, SHMQ_LEASE_LIMIT },
		{ "-M", "999", 0, 0 },
		{ "-M", " 600", 0, 0 },		/* strtol took these */
		{ "-M", "+600", 0, 0 },
		{ "-M", "-0", 0, 0 },
		{ "-M", "0", 0, 0 },
	};

	cu_name(name, "create");
	snprintf(path, sizeof(path), "/dev/shm/%s", st_bare(name));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* A long option is named by its letter, as ls --window. */
		const char *o = strcmp(bad[i].opt, "--capacity") == 0 ? "-c" :
		    bad[i].opt;
		if (bad[i].hi != 0)
			snprintf(want, sizeof(want), "shmq: %s %s: expected a "
			    "whole number %lld..%lld\n", o, bad[i].val,
			    bad[i].lo, bad[i].hi);
		else
			snprintf(want, sizeof(want), "shmq: %s %s: expected "
			    "octal permissions 1..0777\n", o, bad[i].val);
		ST_RUN(&r, "create", bad[i].opt, bad[i].val, name);
		st_expect(&r, 64, bad[i].opt);
		ck_assert_msg(strncmp(r.r_err, want, strlen(want)) == 0 &&
		    strncmp(r.r_err + strlen(want), "usage: shmq create ",
		    19) == 0, "create %s '%s': stderr:\n%s", bad[i].opt,
		    bad[i].val, r.r_err);
		st_free(&r);
		ck_assert_msg(access(path, F_OK) != 0, "create %s '%s' made "
		    "the queue", bad[i].opt, bad[i].val);
	}
	ST_RUN(&r, "create", "-c", "2", "-m", "1", "-p", "256", "-l", "256",
	    "-M", "0640", name);
	st_expect(&r, 0, "create at the limits");
	st_free(&r);
}
END_TEST

START_TEST(test_shmq_tool_put_full_timeout)
{
	char name[CU_NAME_LEN];
	struct shmq *q;
	struct st_run r;

	cu_name(name, "full");
	q = cu_create(name, 4, 64, 0, 0);
	st_put_n(q, 4);
	ST_RUN(&r, "put", "-t", "50", name, "more");
	st_expect(&r, 75, "put to a full queue");
	st_free(&r);
	ST_RUN(&r, "rm", name);
	st_expect(&r, 75, "rm of a queue in use");
	st_free(&r);
	shmq_close(q);
}
END_TEST

/* A child that takes one message under a lease and holds it. */
static pid_t
st_holder(const char *name)
{
	int pfd[2];
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(pfd), 0);
	if ((pid = cu_fork()) == 0) {
		struct shmq *h = shmq_open(name);
		struct shmq_lease lease;
		char buf[64];
		if (h == NULL || shmq_take(h, buf, sizeof(buf), &lease,
		    -1) < 0)
			_exit(1);
		(void)!write(pfd[1], "t", 1);
		for (;;)
			pause();
	}
	close(pfd[1]);
	ck_assert_int_eq(read(pfd[0], &c, 1), 1);
	close(pfd[0]);
	return pid;
}

START_TEST(test_shmq_tool_ls_formats)
{
	char name[CU_NAME_LEN], pat[CU_NAME_LEN + 2];
	const struct cj *row;
	struct shmq *q;
	struct st_run r;
	struct cj *v;
	pid_t holder;

	cu_name(name, "ls");
	st_glob(pat, sizeof(pat), name);
	q = cu_create(name, 16, 64, 0, 0);
	st_put_n(q, 1);
	holder = st_holder(name);	/* a consumer: takes it, holds it */
	st_put_n(q, 2);
	ST_RUN(&r, "ls", pat);
	st_expect(&r, 0, "ls");
	ck_assert_ptr_nonnull(strstr(r.r_out, st_bare(name)));
	ck_assert_ptr_nonnull(strstr(r.r_out, "IN/s"));
	ck_assert_ptr_nonnull(strstr(r.r_out, "over the last 5 s"));
	st_free(&r);

	v = st_ls_json(name, NULL);
	ck_assert_ptr_nonnull(row = st_find(v, "queues", st_bare(name)));
	ck_assert_str_eq(cj_str(cj_get(row, "state")), "OK");
	ck_assert(st_num(row, "depth") == 2);
	ck_assert(st_num(row, "capacity") == 16);
	ck_assert(st_num(row, "fill_pct") == 200.0 / 16);
	ck_assert(st_num(row, "high_water") >= 2);
	ck_assert(st_num(row, "leases_held") == 1);
	ck_assert(st_num(row, "enq_per_s") > 0);
	ck_assert(st_num(row, "rate_window_ms") > 0);
	ck_assert(st_num(row, "oldest_age_ms") >= 0);
	ck_assert(st_num(row, "consumers") == 1);
	ck_assert(st_num(row, "consumers_alive") == 1);
	ck_assert(st_num(row, "producers") == 1);
	ck_assert(st_num(row, "attached_alive") == 2);
	ck_assert(cj_get(row, "reason")->cj_type == CJ_NULL);
	ck_assert(cj_num(cj_get(v, "window_s")) == 5);
	cj_free(v);

	ST_RUN(&r, "ls", "-o", "csv", pat);
	st_expect(&r, 0, "ls -o csv");
	ck_assert_int_eq(st_csv(r.r_out), 2);
	ck_assert(strncmp(r.r_out, "name,state,", 11) == 0);
	st_free(&r);
	ST_RUN(&r, "ls", "-o", "prom", pat);
	st_expect(&r, 0, "ls -o prom");
	ck_assert_int_ge(st_prom(r.r_out), 10);
	ck_assert_ptr_nonnull(strstr(r.r_out, "# TYPE shmq_queue_depth gauge"));
	ck_assert_ptr_nonnull(strstr(r.r_out, "shmq_queue_depth{queue=\""));
	st_free(&r);
	ST_RUN(&r, "ls", "nothing-matches-this-*");
	st_expect(&r, 66, "ls of nothing");
	st_free(&r);
	st_kill(holder);
	shmq_close(q);
}
END_TEST

/*
 * ls -o csv carries every field of ls -o json, named as there, as shmq.1
 * says of every format: msg_max, redeliver_pending, leases_held, enqueued
 * and dequeued were missing.
 */
START_TEST(test_shmq_tool_ls_csv_fields)
{
	char name[CU_NAME_LEN], head[1024], *tok, *save;
	const struct cj *row;
	struct shmq *q;
	struct st_run r;
	struct cj *v;
	size_t n;

	cu_name(name, "csvf");
	q = cu_create(name, 16, 64, 0, 0);
	st_put_n(q, 3);
	v = st_ls_json(name, NULL);
	ck_assert_ptr_nonnull(row = st_find(v, "queues", st_bare(name)));
	ST_RUN(&r, "ls", "-o", "csv", st_bare(name));
	st_expect(&r, 0, "ls -o csv");
	ck_assert_int_eq(st_csv(r.r_out), 2);
	n = strcspn(r.r_out, "\r");
	ck_assert_uint_lt(n, sizeof(head) - 2);
	head[0] = ',';
	memcpy(head + 1, r.r_out, n);
	strcpy(head + 1 + n, ",");
	for (size_t i = 0; i < row->cj_n; i++) {
		char want[64];
		snprintf(want, sizeof(want), ",%s,", row->cj_keys[i]);
		ck_assert_msg(strstr(head, want) != NULL, "ls -o csv has no "
		    "%s: %s", row->cj_keys[i], head + 1);
	}
	/* As many columns as JSON members, and the values under them. */
	head[n + 1] = '\0';
	n = 0;
	for (tok = strtok_r(head + 1, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save))
		n++;
	ck_assert_uint_eq(n, row->cj_n);
	ck_assert_ptr_nonnull(strstr(r.r_out, ",64,0,0,3,0\r\n"));
	cj_free(v);
	st_free(&r);
	shmq_close(q);
}
END_TEST

/* The value of family's sample labelled queue="name" in text; NAN if
 * there is none. */
static double
st_prom_value(const char *text, const char *family, const char *name)
{
	char key[256];
	const char *p;

	snprintf(key, sizeof(key), "\n%s{queue=\"%s\"} ", family, name);
	if ((p = strstr(text, key)) == NULL)
		return NAN;
	return strtod(p + strlen(key), NULL);
}

/*
 * ls -o prom carries every field of ls -o json but the reason (text), as
 * shmq.1 says, each as a sample of its own family with HELP and TYPE, in
 * the units Prometheus wants: msg_max, rate_window_ms, redeliver_pending
 * and leases_held were missing.  A member of JSON with no family here fails,
 * so that one added later is not forgotten again.  Those that move with
 * time (rates, ages, the rate window) are compared for presence only.
 */
START_TEST(test_shmq_tool_prom_fields)
{
	static const struct {
		const char	*json, *prom;
		double		 scale;
		bool		 moves;
	} map[] = {
		{ "depth", "shmq_queue_depth", 1, false },
		{ "capacity", "shmq_queue_capacity", 1, false },
		{ "fill_pct", "shmq_queue_fill_ratio", 0.01, false },
		{ "high_water", "shmq_queue_high_water", 1, false },
		{ "msg_max", "shmq_queue_msg_max_bytes", 1, false },
		{ "enq_per_s", "shmq_queue_enqueue_rate", 1, true },
		{ "deq_per_s", "shmq_queue_dequeue_rate", 1, true },
		{ "rate_window_ms", "shmq_queue_rate_window_seconds", 1e-3,
		    true },
		{ "oldest_age_ms", "shmq_queue_oldest_age_seconds", 1e-3,
		    true },
		{ "producers", "shmq_queue_producers", 1, false },
		{ "producers_alive", "shmq_queue_producers_alive", 1, false },
		{ "consumers", "shmq_queue_consumers", 1, false },
		{ "consumers_alive", "shmq_queue_consumers_alive", 1, false },
		{ "attached", "shmq_queue_attached", 1, false },
		{ "attached_alive", "shmq_queue_attached_alive", 1, false },
		{ "redeliver_pending", "shmq_queue_redeliver_pending", 1,
		    false },
		{ "leases_held", "shmq_queue_leases_held", 1, false },
		{ "enqueued", "shmq_queue_enqueued_total", 1, false },
		{ "dequeued", "shmq_queue_dequeued_total", 1, false },
	};
	char name[CU_NAME_LEN], type[128];
	const struct cj *row;
	struct shmq *q;
	struct st_run r;
	struct cj *v;
	pid_t holder;

	cu_name(name, "promf");
	q = cu_create(name, 16, 64, 0, 0);
	st_put_n(q, 3);
	holder = st_holder(name);	/* a lease held: leases_held 1 */
	v = st_ls_json(name, NULL);
	ck_assert_ptr_nonnull(row = st_find(v, "queues", st_bare(name)));
	ST_RUN(&r, "ls", "-o", "prom", st_bare(name));
	st_expect(&r, 0, "ls -o prom");
	ck_assert_int_gt(st_prom(r.r_out), 0);
	for (size_t i = 0; i < row->cj_n; i++) {
		const char *key = row->cj_keys[i];
		const struct cj *jv = cj_get(row, key);
		size_t m;
		double pv;

		/* Labels and text: the queue and state labels; a reason is
		 * no number, and is in none. */
		if (strcmp(key, "name") == 0 || strcmp(key, "state") == 0 ||
		    strcmp(key, "reason") == 0)
			continue;
		for (m = 0; m < sizeof(map) / sizeof(map[0]); m++)
			if (strcmp(map[m].json, key) == 0)
				break;
		ck_assert_msg(m < sizeof(map) / sizeof(map[0]), "no family "
		    "for %s of ls -o json", key);
		snprintf(type, sizeof(type), "# TYPE %s ", map[m].prom);
		ck_assert_msg(strstr(r.r_out, type) != NULL, "ls -o prom has "
		    "no %s (%s):\n%s", map[m].prom, key, r.r_out);
		pv = st_prom_value(r.r_out, map[m].prom, st_bare(name));
		if (jv->cj_type == CJ_NULL) {
			ck_assert_msg(isnan(pv), "%s: a sample of null",
			    map[m].prom);
			continue;
		}
		ck_assert_msg(!isnan(pv), "no sample of %s", map[m].prom);
		if (!map[m].moves)
			ck_assert_msg(fabs(pv - st_num(row, key) *
			    map[m].scale) < 1e-9, "%s %g, but %s %g",
			    map[m].prom, pv, key, st_num(row, key));
	}
	ck_assert(st_prom_value(r.r_out, "shmq_queue_msg_max_bytes",
	    st_bare(name)) == 64);
	ck_assert(st_prom_value(r.r_out, "shmq_queue_leases_held",
	    st_bare(name)) == 1);
	ck_assert(st_prom_value(r.r_out, "shmq_queue_redeliver_pending",
	    st_bare(name)) == 0);
	ck_assert(st_prom_value(r.r_out, "shmq_queue_rate_window_seconds",
	    st_bare(name)) > 0);
	cj_free(v);
	st_free(&r);
	st_kill(holder);
	shmq_close(q);
}
END_TEST

/*
 * A burst into a fresh queue has rates at once, averaged over the window
 * less a second, as shmq.1 says: with its first snapshot in the same tick
 * of the coarse clock as the look, shmq_rates measured no span, so ls said
 * IN/s 0 over 0 ms, and a queue whose next message was being written was
 * STALLED ("nobody touched it").  The snapshot is planted at the present
 * tick, after the puts, so that the look falls within it whatever the
 * machine's speed; the rates are the moves since, over a span of 1 ms to
 * the library and of 4 s (-w 5) to ls.
 */
START_TEST(test_shmq_tool_rate_first_tick)
{
	char name[CU_NAME_LEN];
	const struct cj *row;
	struct shmq_seg_rate *sr;
	struct timespec ts;
	struct shmq *q;
	struct cj *v;
	double put, get;
	uint64_t win;

	cu_name(name, "rate0");
	q = cu_create(name, 64, 16, 0, 0);
	st_put_n(q, 40);
	memset((void *)q->hdr->rates, 0, sizeof(q->hdr->rates));
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	sr = &q->hdr->rates[0];
	atomic_store(&sr->at_ns, (uint64_t)ts.tv_sec * 1000000000u +
	    (uint64_t)ts.tv_nsec);
	atomic_store(&sr->prod_pos, 0);
	atomic_store(&sr->cons_pos, 0);
	QASSERT_EQ(q, shmq_rates(q, 5, &put, &get, &win), 0);
	QASSERT(q, win >= 1);
	QASSERT(q, (uint64_t)(put * win / 1000.0 + 0.5) == 40);
	QASSERT(q, get == 0);
	v = st_ls_json(name, NULL);
	ck_assert_ptr_nonnull(row = st_find(v, "queues", st_bare(name)));
	ck_assert_str_eq(cj_str(cj_get(row, "state")), "OK");
	ck_assert(st_num(row, "rate_window_ms") >= 4000);
	ck_assert((uint64_t)(st_num(row, "enq_per_s") *
	    st_num(row, "rate_window_ms") / 1000.0 + 0.5) == 40);
	cj_free(v);
	shmq_close(q);
}
END_TEST

static const struct cj *
st_proc(const struct cj *v, pid_t pid)
{
	const struct cj *it;

	for (size_t i = 0; (it = cj_at(cj_get(v, "procs"), i)) != NULL; i++)
		if (cj_num(cj_get(it, "pid")) == pid)
			return it;
	ck_abort_msg("pid %d not in show's procs", (int)pid);
	return NULL;
}

START_TEST(test_shmq_tool_show)
{
	char name[CU_NAME_LEN], layout[16];
	const struct cj *qo, *p;
	struct shmq *q;
	struct st_run r;
	struct cj *v;
	pid_t sleeper, holder;

	cu_name(name, "show");
	q = cu_create(name, 16, 64, 0, 0);
	st_put_n(q, 2);
	holder = st_holder(name);	/* takes one under a lease */
	sleeper = st_sleeper(q, name);	/* gets the other, sleeps */
	st_die_attached(name, false);
	ST_RUN(&r, "show", "-o", "json", name);
	st_expect(&r, 0, "show -o json");
	v = st_json(&r, "show");
	qo = cj_get(v, "queue");
	ck_assert_str_eq(cj_str(cj_get(qo, "name")), st_bare(name));
	ck_assert(st_num(qo, "depth") == 0);
	ck_assert(st_num(qo, "dequeued") == 2);
	ck_assert(st_num(qo, "leases_held") == 1);
	ck_assert(st_num(qo, "attached") == 4);
	ck_assert(st_num(qo, "attached_alive") == 3);
	ck_assert(st_num(qo, "creator_pid") == getpid());
	snprintf(layout, sizeof(layout), "%d.%d", SHMQ_LAYOUT_MAJOR,
	    SHMQ_LAYOUT_MINOR);
	ck_assert_str_eq(cj_str(cj_get(qo, "layout")), layout);
	p = st_proc(v, sleeper);
	ck_assert_str_eq(cj_str(cj_get(p, "doing")), "asleep-get");
	ck_assert(cj_get(p, "alive")->cj_bool);
	ck_assert_str_eq(cj_str(cj_get(p, "roles")), "consumer");
	p = st_proc(v, holder);
	ck_assert(st_num(p, "leases_held") == 1);
	ck_assert(st_num(cj_at(cj_get(p, "leases"), 0), "deliveries") == 1);
	ck_assert(st_num(p, "last_op_age_ms") >= 0);
	p = st_proc(v, getpid());
	ck_assert_str_eq(cj_str(cj_get(p, "roles")), "producer");
	ck_assert_str_eq(cj_str(cj_get(p, "doing")), "sleeping");
	cj_free(v);
	st_free(&r);

	ST_RUN(&r, "show", name);
	st_expect(&r, 0, "show");
	ck_assert_ptr_nonnull(strstr(r.r_out, "asleep-get"));
	ck_assert_ptr_nonnull(strstr(r.r_out, "dead"));
	ck_assert_ptr_nonnull(strstr(r.r_out, "high_water"));
	st_free(&r);
	ST_RUN(&r, "show", "-o", "csv", name);
	st_expect(&r, 0, "show -o csv");
	ck_assert_int_gt(st_csv(r.r_out), 30);
	ck_assert_ptr_nonnull(strstr(r.r_out, "\r\ndepth,0\r\n"));
	st_free(&r);
	ST_RUN(&r, "show", "-o", "prom", name);
	st_expect(&r, 0, "show -o prom");
	ck_assert_int_gt(st_prom(r.r_out), 20);
	ck_assert_ptr_nonnull(strstr(r.r_out, "shmq_proc_asleep{"));
	st_free(&r);
	ST_RUN(&r, "show", "/dev/shm/no-such-queue-here");
	st_expect(&r, 66, "show of nothing");
	st_free(&r);
	st_kill(sleeper);
	st_kill(holder);
	shmq_close(q);
}
END_TEST

START_TEST(test_shmq_tool_peek)
{
	static const unsigned char bin[] = { 0, 1, 2, 0xff, 'a' };
	char name[CU_NAME_LEN];
	struct shmq_stats a, b;
	struct shmq *q;
	struct st_run r;

	cu_name(name, "peek");
	q = cu_create(name, 16, 64, 0, 0);
	QASSERT_EQ(q, shmq_put(q, "hello world", 11, 0), 0);
	QASSERT_EQ(q, shmq_put(q, bin, sizeof(bin), 0), 0);
	QASSERT_EQ(q, shmq_put(q, "third", 5, 0), 0);
	QASSERT_EQ(q, shmq_stats(q, &a), 0);
	ST_RUN(&r, "peek", "-n", "2", name);
	st_expect(&r, 0, "peek -n 2");
	ck_assert_ptr_nonnull(strstr(r.r_out, "#0 11 bytes: hello world\n"));
	ck_assert_ptr_nonnull(strstr(r.r_out, "binary"));
	ck_assert_ptr_nonnull(strstr(r.r_out, "00 01 02 ff 61"));
	ck_assert_ptr_null(strstr(r.r_out, "third"));
	st_free(&r);
	ST_RUN(&r, "peek", name);
	st_expect(&r, 0, "peek");
	ck_assert_ptr_nonnull(strstr(r.r_out, "#2 5 bytes: third"));
	st_free(&r);
	QASSERT_EQ(q, shmq_stats(q, &b), 0);
	QASSERT_EQ(q, b.depth, 3);
	QASSERT_EQ(q, b.dequeued, a.dequeued);
	QASSERT_EQ(q, b.enqueued, a.enqueued);
	shmq_close(q);
}
END_TEST

START_TEST(test_shmq_tool_states)
{
	static const char *const stall1[] = { "--stall", "1", NULL };
	char name[CU_NAME_LEN], dead[CU_NAME_LEN];
	struct shmq *q;

	cu_name(name, "st");
	cu_name(dead, "stdead");
	q = cu_create(name, 16, 64, 0, 0);
	ck_assert_str_eq(st_state(name, NULL), "IDLE");
	st_put_n(q, 1);
	ck_assert_str_eq(st_state(name, NULL), "OK");
	st_put_n(q, 12);
	ck_assert_str_eq(st_state(name, NULL), "BACKLOG");
	st_put_n(q, 3);
	ck_assert_str_eq(st_state(name, NULL), "FULL");
	st_sleep_ms(1100);
	ck_assert_str_eq(st_state(name, stall1), "STALLED");
	ck_assert_str_eq(st_state(name, NULL), "FULL");
	st_die_attached(dead, true);
	ck_assert_str_eq(st_state(dead, NULL), "STALE");
	shmq_close(q);
}
END_TEST

START_TEST(test_shmq_tool_check)
{
	char name[CU_NAME_LEN], pat[CU_NAME_LEN + 2];
	struct shmq *q;
	struct st_run r;
	struct cj *v;

	cu_name(name, "chk");
	st_glob(pat, sizeof(pat), name);
	q = cu_create(name, 16, 64, 0, 0);
	ST_RUN(&r, "check", pat);
	st_expect(&r, 0, "check of an idle queue");
	ck_assert(strncmp(r.r_out, "SHMQ OK - 1 queue", 17) == 0);
	st_free(&r);
	st_put_n(q, 13);
	ST_RUN(&r, "check", "--stall", "3600", pat);
	st_expect(&r, 1, "check of a queue 81% full");
	ck_assert(strncmp(r.r_out, "SHMQ WARNING", 12) == 0);
	ck_assert_ptr_nonnull(strstr(r.r_out, "| '"));
	st_free(&r);
	ST_RUN(&r, "check", "--fill-crit", "80", "--fill-warn", "50", pat);
	st_expect(&r, 2, "check above --fill-crit");
	st_free(&r);
	st_put_n(q, 3);
	ST_RUN(&r, "check", "-o", "json", pat);
	st_expect(&r, 2, "check of a full queue");
	v = st_json(&r, "check");
	ck_assert_str_eq(cj_str(cj_get(v, "status")), "CRITICAL");
	ck_assert(st_num(v, "code") == 2);
	ck_assert_str_eq(cj_str(cj_get(cj_at(cj_get(v, "segments"), 0),
	    "state")), "FULL");
	cj_free(v);
	st_free(&r);
	ST_RUN(&r, "check", "-o", "csv", pat);
	st_expect(&r, 2, "check -o csv");
	ck_assert_int_eq(st_csv(r.r_out), 3);	/* head, check, queue */
	st_free(&r);
	ST_RUN(&r, "check", "-o", "prom", pat);
	st_expect(&r, 2, "check -o prom");
	ck_assert_int_eq(st_prom(r.r_out), 2);
	ck_assert_ptr_nonnull(strstr(r.r_out, "shmq_check_status 2\n"));
	st_free(&r);
	ST_RUN(&r, "check", "nothing-matches-this-*");
	st_expect(&r, 3, "check of nothing is UNKNOWN");
	ck_assert(strncmp(r.r_out, "SHMQ UNKNOWN", 12) == 0);
	st_free(&r);
	shmq_close(q);
}
END_TEST

/* Overwrite bytes of a segment file. */
static void
st_poke(const char *name, off_t off, const void *bytes, size_t len)
{
	char path[CU_NAME_LEN + 16];
	int fd;

	snprintf(path, sizeof(path), "/dev/shm/%s", st_bare(name));
	ck_assert_int_ge(fd = open(path, O_RDWR | O_CLOEXEC), 0);
	ck_assert_int_eq(pwrite(fd, bytes, len, off), (ssize_t)len);
	close(fd);
}

/* A file of len bytes in /dev/shm with head at its start. */
static void
st_file(const char *name, const void *head, size_t hlen, size_t len)
{
	char path[CU_NAME_LEN + 16];
	int fd;

	snprintf(path, sizeof(path), "/dev/shm/%s", st_bare(name));
	ck_assert_int_ge(fd = open(path, O_RDWR | O_CREAT | O_TRUNC |
	    O_CLOEXEC, 0600), 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)len), 0);
	ck_assert_int_eq(pwrite(fd, head, hlen, 0), (ssize_t)hlen);
	close(fd);
}

static void
st_chmod(const char *name, mode_t mode)
{
	char path[CU_NAME_LEN * 4];	/* names of pipelines' segments too */

	snprintf(path, sizeof(path), "/dev/shm/%s", st_bare(name));
	ck_assert_int_eq(chmod(path, mode), 0);
}

START_TEST(test_shmq_tool_bad_segments)
{
	char corrupt[CU_NAME_LEN], incompat[CU_NAME_LEN], foreign[CU_NAME_LEN];
	char trunc[CU_NAME_LEN], pat[CU_NAME_LEN + 2];
	uint16_t major = 9;
	uint32_t huge = 0x7fffffff;
	const struct cj *row;
	struct st_run r;
	struct cj *v;

	cu_name(corrupt, "bad-corrupt");
	cu_name(incompat, "bad-incompat");
	cu_name(foreign, "bad-foreign");
	cu_name(trunc, "bad-trunc");
	snprintf(pat, sizeof(pat), "shmqt-*-bad-*-%d", (int)getpid());
	shmq_close(cu_create(corrupt, 16, 64, 0, 0));
	st_poke(corrupt, offsetof(struct shmq_seg_header, capacity), &huge,
	    sizeof(huge));
	shmq_close(cu_create(incompat, 16, 64, 0, 0));
	st_poke(incompat, offsetof(struct shmq_seg_header, version_major),
	    &major, sizeof(major));
	st_file(foreign, "NOTSHMQ!", 8, 4096);
	shmq_close(cu_create(trunc, 16, 64, 0, 0));
	{
		char path[CU_NAME_LEN + 16];
		snprintf(path, sizeof(path), "/dev/shm/%s", st_bare(trunc));
		ck_assert_int_eq(truncate(path, 100), 0);
	}

	ST_RUN(&r, "ls", "-o", "json", pat);
	st_expect(&r, 65, "ls of corrupt segments");
	v = st_json(&r, "ls");
	ck_assert_ptr_nonnull(row = st_find(v, "queues", st_bare(corrupt)));
	ck_assert_str_eq(cj_str(cj_get(row, "state")), "CORRUPT");
	ck_assert(cj_get(row, "depth")->cj_type == CJ_NULL);
	ck_assert_ptr_nonnull(row = st_find(v, "queues", st_bare(incompat)));
	ck_assert_str_eq(cj_str(cj_get(row, "state")), "INCOMPATIBLE");
	ck_assert_ptr_nonnull(row = st_find(v, "queues", st_bare(trunc)));
	ck_assert_str_eq(cj_str(cj_get(row, "state")), "CORRUPT");
	ck_assert_ptr_null(st_find(v, "queues", st_bare(foreign)));
	cj_free(v);
	st_free(&r);
	ST_RUN(&r, "show", corrupt);
	st_expect(&r, 65, "show of a corrupt queue");
	ck_assert_ptr_nonnull(strstr(r.r_out, "CORRUPT"));
	st_free(&r);
	ST_RUN(&r, "peek", incompat);
	st_expect(&r, 65, "peek of an incompatible queue");
	st_free(&r);
	ST_RUN(&r, "show", foreign);
	st_expect(&r, 65, "show of a foreign file");
	ck_assert_ptr_nonnull(strstr(r.r_err, "not a libshmq queue"));
	st_free(&r);
	ST_RUN(&r, "check", pat);
	st_expect(&r, 2, "check of corrupt segments");
	st_free(&r);
	ST_RUN(&r, "gc", pat);
	st_expect(&r, 0, "gc of corrupt segments");
	ck_assert_ptr_null(strstr(r.r_out, "removed"));
	st_free(&r);
	ST_RUN(&r, "rm", corrupt);
	st_expect(&r, 65, "rm of a corrupt queue without -f");
	st_free(&r);
	ST_RUN(&r, "rm", "-f", corrupt);
	st_expect(&r, 0, "rm -f of a corrupt queue");
	st_free(&r);
}
END_TEST

/*
 * A ring slot whose state word no writer can produce makes the queue
 * CORRUPT for every command, as shmq.1 says: a read-only open checks each
 * slot word.  It used to check none (IDLE, exit 0; check OK; rm without
 * -f removed it).
 */
START_TEST(test_shmq_tool_corrupt_ring)
{
	static const uint64_t bad = UINT64_C(0xffffffffffffffff);
	char name[CU_NAME_LEN], path[CU_NAME_LEN + 16];
	const struct cj *row;
	struct shmq *q;
	struct st_run r;
	struct cj *v;
	off_t off;

	cu_name(name, "badring");
	q = cu_create(name, 16, 64, 0, 0);
	off = (off_t)((unsigned char *)shmq__slot(q, 1) -
	    (unsigned char *)q->base);
	shmq_close(q);
	ST_RUN(&r, "ls", "-o", "json", name);
	st_expect(&r, 0, "ls of a sound ring");
	st_free(&r);
	st_poke(name, off, &bad, sizeof(bad));
	ST_RUN(&r, "ls", "-o", "json", name);
	st_expect(&r, 65, "ls of a queue with a corrupt ring slot");
	v = st_json(&r, "ls");
	ck_assert_ptr_nonnull(row = st_find(v, "queues", st_bare(name)));
	ck_assert_str_eq(cj_str(cj_get(row, "state")), "CORRUPT");
	cj_free(v);
	st_free(&r);
	ST_RUN(&r, "check", name);
	st_expect(&r, 2, "check of a corrupt ring");
	ck_assert(strncmp(r.r_out, "SHMQ CRITICAL", 13) == 0);
	st_free(&r);
	ST_RUN(&r, "rm", name);
	st_expect(&r, 65, "rm of a corrupt ring without -f");
	st_free(&r);
	snprintf(path, sizeof(path), "/dev/shm/%s", st_bare(name));
	ck_assert_int_eq(access(path, F_OK), 0);
	ST_RUN(&r, "rm", "-f", name);
	st_expect(&r, 0, "rm -f of a corrupt ring");
	st_free(&r);
	ck_assert_int_ne(access(path, F_OK), 0);
}
END_TEST

/*
 * Ring positions that get and put refuse to attach to (the library's
 * bound: more than two laps and 64 apart) make a queue nobody is attached
 * to CORRUPT: ls and check called one with the consumers' position 4093
 * ahead of the producers' IDLE and OK, while get said "Bad message".  A
 * few ahead is what a producer killed before it moved the index leaves,
 * and is no corruption.
 */
START_TEST(test_shmq_tool_bad_positions)
{
	char name[CU_NAME_LEN], buf[64];
	const struct cj *row;
	struct shmq *q;
	struct st_run r;
	struct cj *v;
	uint64_t pos;

	cu_name(name, "badpos");
	q = cu_create(name, 8, 64, 0, 0);
	st_put_n(q, 3);
	QASSERT_EQ(q, shmq_get(q, buf, sizeof(buf), 0), 7);
	shmq_close(q);
	pos = 3 + 5;
	st_poke(name, offsetof(struct shmq_seg_header, cons_pos), &pos,
	    sizeof(pos));
	ck_assert_str_ne(st_state(name, NULL), "CORRUPT");
	pos = 4096;
	st_poke(name, offsetof(struct shmq_seg_header, cons_pos), &pos,
	    sizeof(pos));
	ST_RUN(&r, "ls", "-o", "json", name);
	st_expect(&r, 65, "ls of a queue with impossible positions");
	v = st_json(&r, "ls");
	ck_assert_ptr_nonnull(row = st_find(v, "queues", st_bare(name)));
	ck_assert_str_eq(cj_str(cj_get(row, "state")), "CORRUPT");
	ck_assert_ptr_nonnull(strstr(cj_str(cj_get(row, "reason")),
	    "4093"));
	cj_free(v);
	st_free(&r);
	ST_RUN(&r, "check", name);
	st_expect(&r, 2, "check of a queue with impossible positions");
	st_free(&r);
	ST_RUN(&r, "get", "-t", "0", name);
	st_expect(&r, 65, "get of a queue with impossible positions");
	st_free(&r);
	/* The other way: the producers' three laps ahead. */
	pos = 1;
	st_poke(name, offsetof(struct shmq_seg_header, cons_pos), &pos,
	    sizeof(pos));
	pos = 1 + 3 * 8 + 64;
	st_poke(name, offsetof(struct shmq_seg_header, prod_pos), &pos,
	    sizeof(pos));
	ST_RUN(&r, "ls", "-o", "json", name);
	st_expect(&r, 65, "ls of a queue with impossible positions");
	v = st_json(&r, "ls");
	ck_assert_ptr_nonnull(row = st_find(v, "queues", st_bare(name)));
	ck_assert_str_eq(cj_str(cj_get(row, "state")), "CORRUPT");
	cj_free(v);
	st_free(&r);
}
END_TEST

/*
 * A FIFO by a segment's name: the libshmq and control segment opens that
 * shmq reaches after classifying a name fail at once (EPROTO) instead of
 * waiting for a writer forever.  The tool classifies names without
 * blocking, but a FIFO swapped in after that hung ls, show, check, gc,
 * peek and ps; here the opens meet the FIFO directly.
 */
START_TEST(test_shmq_tool_fifo)
{
	char name[CU_NAME_LEN], path[CU_NAME_LEN + 64], pipe[CU_NAME_LEN];
	struct ctl c;
	struct st_run r;

	cu_name(name, "fifo");
	snprintf(path, sizeof(path), "/dev/shm/%s", st_bare(name));
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	errno = 0;
	ck_assert_ptr_null(shmq_open_flags(name, SHMQ_OPEN_RDONLY |
	    SHMQ_OPEN_ANY_OWNER | SHMQ_OPEN_ANY_MODE));
	ck_assert_int_eq(errno, EPROTO);
	ck_assert_ptr_null(shmq_open(name));
	ck_assert_int_eq(errno, EPROTO);
	ST_RUN(&r, "show", name);
	ck_assert(!r.r_signaled && r.r_code != 0);
	st_free(&r);
	ck_assert_int_eq(unlink(path), 0);

	snprintf(pipe, sizeof(pipe), "%s", st_bare(name));
	snprintf(path, sizeof(path), "/dev/shm/shmpipe.%s.ctl", pipe);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	ck_assert_int_eq(ctl_open(&c, pipe, CTL_OPEN_RDONLY | CTL_OPEN_ANY),
	    -EPROTO);
	ck_assert_int_eq(ctl_open(&c, pipe, 0), -EPROTO);
	ST_RUN(&r, "ps", pipe);
	ck_assert(!r.r_signaled && r.r_code != 0);
	st_free(&r);
	ck_assert_int_eq(unlink(path), 0);
}
END_TEST

/*
 * get and put on what is not a queue say what show and peek say of it,
 * with the same exit status: they said strerror(ENODATA) "No data
 * available" of a small file, "Protocol error" of a FIFO and of a
 * pipeline's control segment.
 */
START_TEST(test_shmq_tool_io_not_a_queue)
{
	static const uint64_t magic = SHMPIPE_CTL_MAGIC;
	char text[CU_NAME_LEN], big[CU_NAME_LEN], fifo[CU_NAME_LEN];
	char ctl[CU_NAME_LEN + 16], path[CU_NAME_LEN + 16];
	const char *names[] = { text, big, fifo, ctl };
	struct st_run show[4], peek[4], get[4], put[4];

	cu_name(text, "nq-text");
	cu_name(big, "nq-big");
	cu_name(fifo, "nq-fifo");
	snprintf(ctl, sizeof(ctl), "shmpipe.%s.ctl", st_bare(text));
	st_file(text, "not a queue\n", 12, 12);
	st_file(big, "NOTSHMQ!", 8, 65536);
	snprintf(path, sizeof(path), "/dev/shm/%s", st_bare(fifo));
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	st_file(ctl, &magic, sizeof(magic), 4096);
	for (size_t i = 0; i < 4; i++) {
		ST_RUN(&show[i], "show", names[i]);
		ST_RUN(&peek[i], "peek", names[i]);
		ST_RUN(&get[i], "get", "-t", "0", names[i]);
		ST_RUN(&put[i], "put", "-t", "0", names[i], "x");
	}
	ck_assert_int_eq(shm_unlink(ctl), 0);	/* not cu_name's: ours */
	for (size_t i = 0; i < 4; i++) {
		st_expect(&show[i], 65, names[i]);
		ck_assert_ptr_nonnull(strstr(show[i].r_err, i == 3 ? "a "
		    "pipeline's control segment, not a queue" :
		    "not a libshmq queue"));
		st_expect(&peek[i], 65, "peek");
		st_expect(&get[i], 65, "get");
		st_expect(&put[i], 65, "put");
		ck_assert_str_eq(peek[i].r_err, show[i].r_err);
		ck_assert_str_eq(get[i].r_err, show[i].r_err);
		ck_assert_str_eq(put[i].r_err, show[i].r_err);
		st_free(&show[i]);
		st_free(&peek[i]);
		st_free(&get[i]);
		st_free(&put[i]);
	}
}
END_TEST

/* Is text valid UTF-8 (RFC 3629: no overlong forms, no surrogates)? */
static bool
st_utf8(const char *text)
{
	const unsigned char *p = (const unsigned char *)text;

	while (*p) {
		uint32_t c;
		int n = *p < 0x80 ? 0 : *p >= 0xc2 && *p <= 0xdf ? 1 :
		    *p >= 0xe0 && *p <= 0xef ? 2 : *p >= 0xf0 && *p <= 0xf4 ?
		    3 : -1;
		if (n < 0)
			return false;
		c = n == 0 ? *p : *p & (0x3f >> n);
		for (int i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			c = c << 6 | (p[i] & 0x3f);
		}
		if ((n == 2 && c < 0x800) || (n == 3 && c < 0x10000) ||
		    (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
			return false;
		p += n + 1;
	}
	return true;
}

/*
 * A queue whose name holds bytes that are not UTF-8, a valid e-acute, an
 * ESC and a C1 control: every format is valid UTF-8, JSON says U+FFFD for
 * the bad bytes and escapes the controls, and no control reaches a table
 * or CSV.  JSON and Prometheus passed 0xff 0xfe through before.
 */
START_TEST(test_shmq_tool_names_utf8)
{
	static const char *const fmts[] = { "table", "json", "csv", "prom" };
	char base[CU_NAME_LEN], name[CU_NAME_LEN + 16], pat[CU_NAME_LEN + 2];
	struct shmq *q;
	struct st_run r;

	cu_name(base, "utf8");
	snprintf(name, sizeof(name), "%s-\xff\xfe\xc3\xa9\x1b\xc2\x85",
	    base);
	st_glob(pat, sizeof(pat), base);
	q = cu_create(name, 16, 64, 0, 0);
	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		ST_RUN(&r, "ls", "-o", fmts[i], pat);
		st_expect(&r, 0, fmts[i]);
		ck_assert_msg(st_utf8(r.r_out), "ls -o %s: not UTF-8:\n%s",
		    fmts[i], r.r_out);
		ck_assert_msg(strchr(r.r_out, '\x1b') == NULL, "ls -o %s: an "
		    "ESC", fmts[i]);
		ck_assert_ptr_nonnull(strstr(r.r_out, "\xc3\xa9"));
		if (strcmp(fmts[i], "json") == 0) {
			cj_free(st_json(&r, "ls"));
			ck_assert_ptr_nonnull(strstr(r.r_out,
			    "-\\ufffd\\ufffd\xc3\xa9\\u001b\\u0085\""));
		} else if (strcmp(fmts[i], "prom") == 0) {
			ck_assert_int_gt(st_prom(r.r_out), 0);
			ck_assert_ptr_nonnull(strstr(r.r_out, "-\xef\xbf\xbd"
			    "\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\""));
		} else {
			ck_assert_ptr_nonnull(strstr(r.r_out, "-\xef\xbf\xbd"
			    "\xef\xbf\xbd\xc3\xa9??"));
			if (strcmp(fmts[i], "csv") == 0)
				ck_assert_int_eq(st_csv(r.r_out), 2);
		}
		st_free(&r);
	}
	ST_RUN(&r, "show", "-o", "json", name);
	st_expect(&r, 0, "show -o json");
	ck_assert(st_utf8(r.r_out));
	cj_free(st_json(&r, "show"));
	st_free(&r);
	shmq_close(q);
	ck_assert_int_eq(shmq_unlink(name), 0);
}
END_TEST

/*
 * Error lines are written for people: a name's control characters are '?'
 * in them, as in ls's and rm's.  show, peek, get and put wrote the name
 * raw (an ESC sequence reached the terminal, a newline split the line),
 * and of a truncated queue peek, get and put said "No data available"
 * where ls and show say CORRUPT and why; now all say it alike.
 */
START_TEST(test_shmq_tool_error_names)
{
	char base[CU_NAME_LEN], name[CU_NAME_LEN + 16], none[CU_NAME_LEN + 16];
	char path[CU_NAME_LEN + 32], want[CU_NAME_LEN + 96];
	char pat[CU_NAME_LEN + 2];
	const char *const runs[][6] = {
		{ "show", name }, { "peek", name }, { "get", "-t", "0", name },
		{ "put", "-t", "0", name, "x" }, { "ls", pat },
	};
	struct st_run r;

	cu_name(base, "ctlname");
	snprintf(name, sizeof(name), "%s-\x1b[7mX\nY", base);
	snprintf(none, sizeof(none), "%s-\x1b[7mnone", base);
	st_glob(pat, sizeof(pat), base);
	shmq_close(cu_create(name, 16, 64, 0, 0));
	snprintf(path, sizeof(path), "/dev/shm/%s", st_bare(name));
	ck_assert_int_eq(truncate(path, 1000), 0);
	snprintf(want, sizeof(want), "shmq: %s-?[7mX?Y: CORRUPT: truncated: "
	    "smaller than its header says\n", st_bare(base));
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		st_run_in(&r, NULL, runs[i]);
		st_expect(&r, 65, runs[i][0]);
		ck_assert_msg(strcmp(r.r_err, want) == 0, "%s: stderr:\n%s",
		    runs[i][0], r.r_err);
		st_free(&r);
	}
	for (size_t i = 0; i < 4; i++) {
		const char *const args[] = { runs[i][0], none, NULL };
		st_run_in(&r, NULL, args);
		st_expect(&r, 66, runs[i][0]);
		ck_assert_msg(strchr(r.r_err, '\x1b') == NULL &&
		    strstr(r.r_err, "-?[7mnone: no such segment\n") != NULL,
		    "%s of nothing: stderr:\n%s", runs[i][0], r.r_err);
		st_free(&r);
	}
	ck_assert_int_eq(unlink(path), 0);
}
END_TEST

/*
 * A pattern that matches nothing is said back as the rest of the error
 * lines say names: control characters as '?'.  ls, top and gc wrote it
 * raw (an ESC sequence reached the terminal, a newline split the line),
 * and top's title on standard output too.
 */
START_TEST(test_shmq_tool_error_patterns)
{
	char base[CU_NAME_LEN], pat[CU_NAME_LEN + 16], want[CU_NAME_LEN + 64];
	char shown[CU_NAME_LEN + 16];
	const char *const runs[][7] = {
		{ "ls", pat }, { "top", "-n", "1", "-i", "0.01", pat },
		{ "gc", pat }, { "gc", "-n", pat },
	};
	struct st_run r;

	cu_name(base, "ctlpat");
	snprintf(pat, sizeof(pat), "%s-\x1b[7mnone\n*", st_bare(base));
	snprintf(shown, sizeof(shown), "%s-?[7mnone?*", st_bare(base));
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		snprintf(want, sizeof(want), "shmq: no %s matches %s\n",
		    strcmp(runs[i][0], "gc") == 0 ? "segment" : "queue",
		    shown);
		st_run_in(&r, NULL, runs[i]);
		st_expect(&r, 66, runs[i][0]);
		ck_assert_msg(strcmp(r.r_err, want) == 0, "%s: stderr:\n%s",
		    runs[i][0], r.r_err);
		ck_assert_msg(strchr(r.r_out, '\x1b') == NULL, "%s: stdout:\n"
		    "%s", runs[i][0], r.r_out);
		if (strcmp(runs[i][0], "top") == 0)
			ck_assert_msg(strstr(r.r_out, shown) != NULL, "top: "
			    "stdout:\n%s", r.r_out);
		st_free(&r);
	}
}
END_TEST

/*
 * ps says a pipeline's name as the other commands say a queue's: control
 * characters as '?'.  It wrote the name raw in its error lines (one given
 * on the command line that is no pipeline name, and one of a control
 * segment in /dev/shm it could not read) and in the title of its table.
 * Whatever else of the command line an error line says back (an option's
 * value, a command) is the user's bytes too, and is said alike.
 */
START_TEST(test_shmq_tool_error_pipe_names)
{
	char base[CU_NAME_LEN], arg[CU_NAME_LEN + 16], ctl[CU_NAME_LEN + 32];
	char raw[CU_NAME_LEN + 16], want[CU_NAME_LEN + 160];
	const uint64_t magic = SHMPIPE_CTL_MAGIC;
	const char *const bad = "\x1b[7mX\nY";
	const char *const runs[][5] = {
		{ "ls", "-o", bad }, { "ls", "-w", bad }, { "ps", "-p", bad },
		{ bad }, { "create", "-M", bad, arg }, { "create", "-c", bad,
		arg },
	};
	struct st_run r;

	cu_name(base, "ctlps");
	snprintf(arg, sizeof(arg), "%s-\x1b[7mX\nY", st_bare(base));
	ST_RUN(&r, "ps", arg);
	st_expect(&r, 64, "ps of a name with controls");
	snprintf(want, sizeof(want), "shmq: %s-?[7mX?Y: not a pipeline "
	    "name: expected 1..40 characters of A-Z a-z 0-9 _ . -\n",
	    st_bare(base));
	ck_assert_msg(strcmp(r.r_err, want) == 0, "stderr:\n%s", r.r_err);
	st_free(&r);

	/* ps lists every pipeline: only the lines of this one are ours. */
	snprintf(raw, sizeof(raw), "%s-\x1b[7m", st_bare(base));
	snprintf(ctl, sizeof(ctl), "shmpipe.%s.ctl", raw);
	st_file(ctl, &magic, sizeof(magic), 4096);
	ST_RUN(&r, "ps");
	ck_assert_int_eq(shm_unlink(ctl), 0);
	st_expect(&r, 65, "ps of a corrupt control segment");
	snprintf(want, sizeof(want), "shmq: %s-?[7m: CORRUPT: ",
	    st_bare(base));
	ck_assert_msg(strstr(r.r_err, want) != NULL, "stderr:\n%s", r.r_err);
	snprintf(want, sizeof(want), "pipeline %s-?[7m: CORRUPT (",
	    st_bare(base));
	ck_assert_msg(strstr(r.r_out, want) != NULL, "stdout:\n%s", r.r_out);
	ck_assert_msg(strstr(r.r_err, raw) == NULL && strstr(r.r_out, raw) ==
	    NULL, "the name raw:\n%s---\n%s", r.r_out, r.r_err);
	st_free(&r);

	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		st_run_in(&r, NULL, runs[i]);
		st_expect(&r, 64, runs[i][0]);
		ck_assert_msg(strchr(r.r_err, '\x1b') == NULL && strstr(r.r_err,
		    "?[7mX?Y") != NULL, "%s %s: stderr:\n%s", runs[i][0],
		    runs[i][1] ? runs[i][1] : "", r.r_err);
		st_free(&r);
	}
	snprintf(ctl, sizeof(ctl), "/dev/shm/%s", arg);
	ck_assert_msg(access(ctl, F_OK) != 0, "create made it anyway");
}
END_TEST

/*
 * A file named as a control segment, "shmpipe.NAME.ctl" with the right
 * magic, whose NAME no supervisor would make (a space, a '!', 45
 * characters): ps and check say what is wrong with it, where they said
 * "Invalid argument" (ctl_open refusing the name); and ps lists the long
 * one too, which it left out.
 */
START_TEST(test_shmq_tool_bad_pipeline_name)
{
	char base[CU_NAME_LEN], bad[2][CU_NAME_LEN + 48];
	char ctl[2][CU_NAME_LEN + 64], want[2 * CU_NAME_LEN + 256];
	const uint64_t magic = SHMPIPE_CTL_MAGIC;
	struct st_run ps, chk;

	cu_name(base, "bpn");
	snprintf(bad[0], sizeof(bad[0]), "%s bad!", st_bare(base));
	snprintf(bad[1], sizeof(bad[1]), "%s-%045d", st_bare(base), 0);
	for (int i = 0; i < 2; i++) {
		snprintf(ctl[i], sizeof(ctl[i]), "shmpipe.%s.ctl", bad[i]);
		st_file(ctl[i], &magic, sizeof(magic), 4096);
	}
	ST_RUN(&ps, "ps");
	snprintf(want, sizeof(want), "shmpipe.%s*.ctl", st_bare(base));
	ST_RUN(&chk, "check", want);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(shm_unlink(ctl[i]), 0);
	st_expect(&ps, 65, "ps of misnamed control segments");
	st_expect(&chk, 2, "check of misnamed control segments");
	ck_assert_msg(strstr(ps.r_err, "Invalid argument") == NULL &&
	    strstr(chk.r_out, "Invalid argument") == NULL, "ps:\n%scheck:\n%s",
	    ps.r_err, chk.r_out);
	for (int i = 0; i < 2; i++) {
		snprintf(want, sizeof(want), "shmq: %s: CORRUPT: not a pipeline "
		    "name: expected 1..40 characters of A-Z a-z 0-9 _ . -\n",
		    bad[i]);
		ck_assert_msg(strstr(ps.r_err, want) != NULL, "ps: no %s in:\n%s",
		    want, ps.r_err);
		snprintf(want, sizeof(want), "pipeline %s: CRITICAL CORRUPT "
		    "(not a pipeline name: expected", bad[i]);
		ck_assert_msg(strstr(chk.r_out, want) != NULL, "check: no %s "
		    "in:\n%s", want, chk.r_out);
	}
	st_free(&ps);
	st_free(&chk);
}
END_TEST

/*
 * A control segment of another major layout version is INCOMPATIBLE, and
 * ps and check say so as ls says it of a queue; they said "Protocol not
 * supported" (EPROTONOSUPPORT by its strerror).
 */
START_TEST(test_shmq_tool_pipeline_incompatible)
{
	char base[CU_NAME_LEN], ctl[CU_NAME_LEN + 32], want[CU_NAME_LEN + 128];
	struct shmpipe_ctl h = { .version_major = SHMPIPE_LAYOUT_MAJOR + 1 };
	struct st_run ps, chk;

	atomic_init(&h.magic, SHMPIPE_CTL_MAGIC);
	cu_name(base, "pinc");
	snprintf(ctl, sizeof(ctl), "shmpipe.%s.ctl", st_bare(base));
	st_file(ctl, &h, sizeof(h), 4096);
	ST_RUN(&ps, "ps", st_bare(base));
	ST_RUN(&chk, "check", ctl);
	ck_assert_int_eq(shm_unlink(ctl), 0);
	st_expect(&ps, 65, "ps of another layout");
	st_expect(&chk, 3, "check of another layout");
	snprintf(want, sizeof(want), "shmq: %s: INCOMPATIBLE: another major "
	    "layout version; this shmq reads %d.x\n", st_bare(base),
	    SHMPIPE_LAYOUT_MAJOR);
	ck_assert_msg(strcmp(ps.r_err, want) == 0, "ps:\n%s", ps.r_err);
	snprintf(want, sizeof(want), "pipeline %s: UNKNOWN INCOMPATIBLE "
	    "(another major layout version; this shmq reads %d.x)\n",
	    st_bare(base), SHMPIPE_LAYOUT_MAJOR);
	ck_assert_msg(strstr(chk.r_out, want) != NULL, "check:\n%s",
	    chk.r_out);
	st_free(&ps);
	st_free(&chk);
}
END_TEST

/*
 * check's Nagios output with a queue named a|b'c<newline>d=e, 94% full:
 * one status line, whose only '|' is the one before the performance
 * data; labels with ' doubled and no '='.  The name went out raw before:
 * Nagios cut the status at its '|', and the newline split the line.
 */
START_TEST(test_shmq_tool_check_names)
{
	char base[CU_NAME_LEN], name[CU_NAME_LEN + 16], pat[CU_NAME_LEN + 2];
	char *nl, *bar;
	struct shmq *q;
	struct st_run r;

	cu_name(base, "nag");
	snprintf(name, sizeof(name), "%s-a|b'c\nd=e", base);
	st_glob(pat, sizeof(pat), base);
	q = cu_create(name, 16, 64, 0, 0);
	st_put_n(q, 15);
	ST_RUN(&r, "check", "--stall", "3600", pat);
	st_expect(&r, 1, "check of a queue 94% full");
	ck_assert_ptr_nonnull(nl = strchr(r.r_out, '\n'));
	*nl = '\0';
	ck_assert_ptr_nonnull(bar = strchr(r.r_out, '|'));
	ck_assert_msg(strchr(bar + 1, '|') == NULL, "a second |: %s",
	    r.r_out);
	ck_assert_msg(strstr(r.r_out, "-a/b'c?d=e BACKLOG") != NULL &&
	    strstr(r.r_out, "-a/b'c?d=e BACKLOG") < bar, "%s", r.r_out);
	ck_assert_msg(strstr(bar, "-a/b''c?d_e_fill'=93.8%;") != NULL, "%s",
	    bar);
	ck_assert_msg(strstr(bar, "-a/b''c?d_e_depth'=15;") != NULL, "%s",
	    bar);
	ck_assert_msg(strchr(nl + 1, '|') == NULL, "a | in the long output: %s",
	    nl + 1);
	st_free(&r);
	shmq_close(q);
	ck_assert_int_eq(shmq_unlink(name), 0);
}
END_TEST

START_TEST(test_shmq_tool_permission)
{
	char name[CU_NAME_LEN];
	struct st_run r;

	cu_name(name, "perm");
	shmq_close(cu_create(name, 16, 64, 0, 0));
	if (geteuid() == 0) {
		/* As nobody: the segment is root's, mode 0600. */
		const char *argv[] = { st_prog(), "show", name, NULL };
		int status;
		pid_t pid = cu_fork();
		if (pid == 0) {
			int null = open("/dev/null", O_WRONLY);
			if (setgid(65534) != 0 || setuid(65534) != 0)
				_exit(99);
			st_exec(argv, 0, null, null);
		}
		ck_assert_int_eq(cu_wait(pid, &status, ST_WAIT_S), pid);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
			return;		/* nobody may not run it here */
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 77,
		    "show as nobody: status %#x, expected exit 77", status);
		return;
	}
	{
		char path[CU_NAME_LEN + 16];
		snprintf(path, sizeof(path), "/dev/shm/%s", st_bare(name));
		ck_assert_int_eq(chmod(path, 0), 0);
	}
	ST_RUN(&r, "show", name);
	st_expect(&r, 77, "show of an unreadable queue");
	ck_assert_ptr_nonnull(strstr(r.r_err, "permission denied"));
	st_free(&r);
}
END_TEST

/*
 * A pipeline whose segments the user may not read is one pipeline and two
 * queues to check, as it is to root: check listed it once for each of its
 * three segments, and its control segment as a queue too ("3 queues, 3
 * pipelines"); ls listed the control segment as a queue.
 */
START_TEST(test_shmq_tool_denied_pipeline)
{
	static const char *const sfx[] = { "ctl", "req", "rep" };
	char base[CU_NAME_LEN], pipe[CU_NAME_LEN], seg[3][CU_NAME_LEN + 16];
	char pat[CU_NAME_LEN + 16], line[512];
	struct st_run chk, js, ls;
	const char *p;
	struct cj *v;
	int n;

	cu_name(base, "dpipe");
	snprintf(pipe, sizeof(pipe), "%s", st_bare(base));
	snprintf(pat, sizeof(pat), "shmpipe.%s.*", pipe);
	for (int i = 0; i < 3; i++) {
		snprintf(seg[i], sizeof(seg[i]), "shmpipe.%s.%s", pipe, sfx[i]);
		st_file(seg[i], "x", 1, 4096);
		if (geteuid() != 0)	/* root reads anything: nobody */
			st_chmod(seg[i], 0);
	}
	st_nobody = geteuid() == 0;
	ST_RUN(&chk, "check", pat);
	ST_RUN(&js, "check", "-o", "json", pat);
	ST_RUN(&ls, "ls", "-o", "csv", pat);
	st_nobody = false;
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(shm_unlink(seg[i]), 0);
	if (chk.r_code == 99 || chk.r_code == 127)
		goto out;		/* nobody may not run it here */
	st_expect(&chk, 3, "check of an unreadable pipeline");
	ck_assert_msg(strncmp(chk.r_out, "SHMQ UNKNOWN - 2 queues, 1 "
	    "pipeline:", 35) == 0, "%s", chk.r_out);
	snprintf(line, sizeof(line), "\npipeline %s: UNKNOWN DENIED", pipe);
	for (n = 0, p = chk.r_out; (p = strstr(p, line)) != NULL; p++)
		n++;
	ck_assert_msg(n == 1, "the pipeline %d times:\n%s", n, chk.r_out);
	snprintf(line, sizeof(line), "queue %s:", seg[0]);
	ck_assert_msg(strstr(chk.r_out, line) == NULL, "its control segment "
	    "as a queue:\n%s", chk.r_out);
	st_expect(&js, 3, "check -o json of an unreadable pipeline");
	v = st_json(&js, "check");
	ck_assert_ptr_nonnull(cj_at(cj_get(v, "segments"), 2));
	ck_assert_ptr_null(cj_at(cj_get(v, "segments"), 3));
	ck_assert_ptr_null(st_find(v, "segments", seg[0]));
	ck_assert_str_eq(cj_str(cj_get(st_find(v, "segments", pipe),
	    "kind")), "pipeline");
	cj_free(v);
	st_expect(&ls, 77, "ls of an unreadable pipeline's queues");
	ck_assert_int_eq(st_csv(ls.r_out), 3);
	ck_assert_ptr_null(strstr(ls.r_out, seg[0]));
out:
	st_free(&chk);
	st_free(&js);
	st_free(&ls);
}
END_TEST

START_TEST(test_shmq_tool_top)
{
	char name[CU_NAME_LEN], pat[CU_NAME_LEN + 2];
	struct st_run r;
	struct shmq *q;
	pid_t pid;

	cu_name(name, "top");
	st_glob(pat, sizeof(pat), name);
	/* Meanwhile the queue appears, disappears, is re-created. */
	if ((pid = cu_fork()) == 0) {
		for (int i = 0; i < 200; i++) {
			struct shmq *c = shmq_create(name, &(struct
			    shmq_config){ .capacity = 16, .msg_max = 64 });
			if (c != NULL)
				(void)shmq_put(c, "x", 1, 0);
			st_sleep_ms(3);
			shmq_close(c);
			shmq_unlink(name);
			st_sleep_ms(2);
		}
		_exit(0);
	}
	ST_RUN(&r, "top", "-n", "40", "-i", "0.02", pat);
	st_expect(&r, 0, "top");
	ck_assert_ptr_null(strchr(r.r_out, '\033'));
	{
		int n = 0;
		for (const char *s = r.r_out; (s = strstr(s, "shmq top - ")) !=
		    NULL; s++)
			n++;
		ck_assert_int_eq(n, 40);
	}
	st_free(&r);
	cu_wait_exit(NULL, pid, 0);
	q = cu_create(name, 16, 64, 0, 0);
	ST_RUN(&r, "top", "-n", "2", "-i", "0.01", pat);
	st_expect(&r, 0, "top");
	ck_assert_ptr_nonnull(strstr(r.r_out, st_bare(name)));
	st_free(&r);
	shmq_close(q);
	/* Nothing matched in any refresh: 66, as ls (it was 0). */
	shmq_unlink(name);
	ST_RUN(&r, "top", "-n", "2", "-i", "0.01", pat);
	st_expect(&r, 66, "top of a pattern matching nothing");
	ck_assert_ptr_nonnull(strstr(r.r_err, "no queue matches"));
	st_free(&r);
}
END_TEST

/* A magic-0 header by creator pid (start time start). */
static void
st_half(const char *name, pid_t pid, uint64_t start)
{
	struct shmq_seg_header h;

	memset(&h, 0, sizeof(h));
	h.version_major = SHMQ_LAYOUT_MAJOR;
	h.header_size = sizeof(h);
	h.creator_pid = (uint32_t)pid;
	h.creator_start = start;
	st_file(name, &h, sizeof(h), 65536);
}

static bool
st_exists(const char *name)
{
	char path[CU_NAME_LEN + 16];

	snprintf(path, sizeof(path), "/dev/shm/%s", st_bare(name));
	return access(path, F_OK) == 0;
}

START_TEST(test_shmq_tool_gc_queues)
{
	char mine[CU_NAME_LEN], live[CU_NAME_LEN], dead[CU_NAME_LEN];
	char half_dead[CU_NAME_LEN], half_live[CU_NAME_LEN];
	char pat[CU_NAME_LEN + 2];
	struct shmq *q;
	struct st_run r;
	uint64_t start;
	pid_t gone;

	cu_name(mine, "gc-mine");
	cu_name(live, "gc-live");
	cu_name(dead, "gc-dead");
	cu_name(half_dead, "gc-halfdead");
	cu_name(half_live, "gc-halflive");
	snprintf(pat, sizeof(pat), "shmqt-*-gc-*-%d", (int)getpid());
	ST_RUN(&r, "create", mine);
	st_expect(&r, 0, "create");
	st_free(&r);
	q = cu_create(live, 16, 64, 0, 0);
	st_die_attached(dead, true);
	if ((gone = cu_fork()) == 0)
		_exit(0);
	start = cu_start_ticks(gone);
	cu_wait_exit(NULL, gone, 0);
	st_half(half_dead, gone, start);
	st_half(half_live, getpid(), cu_start_ticks(getpid()));

	ST_RUN(&r, "gc", "-n", pat);
	st_expect(&r, 0, "gc -n");
	ck_assert_ptr_nonnull(strstr(r.r_out, "would remove"));
	st_free(&r);
	ck_assert(st_exists(dead));
	ST_RUN(&r, "gc", pat);
	st_expect(&r, 0, "gc");
	st_free(&r);
	ck_assert_msg(!st_exists(dead), "a queue of dead owners was kept");
	ck_assert_msg(!st_exists(half_dead), "a dead creator's half segment "
	    "was kept");
	ck_assert_msg(st_exists(mine), "a queue with nobody attached went");
	ck_assert_msg(st_exists(live), "a live queue went");
	ck_assert_msg(st_exists(half_live), "a segment being created went");
	ck_assert_str_eq(st_state(half_live, NULL), "INIT");
	/* A pattern that matches nothing is 66, as in ls and rm (it was 0,
	 * against shmq(1)); one that matches only what is kept is 0. */
	snprintf(pat, sizeof(pat), "shmqt-*-gc-none-%d", (int)getpid());
	ST_RUN(&r, "gc", "-n", pat);
	st_expect(&r, 66, "gc -n of a pattern matching nothing");
	ck_assert_ptr_nonnull(strstr(r.r_err, "no segment matches"));
	st_free(&r);
	ST_RUN(&r, "gc", pat);
	st_expect(&r, 66, "gc of a pattern matching nothing");
	st_free(&r);
	ST_RUN(&r, "gc", st_bare(mine));
	st_expect(&r, 0, "gc of a queue it keeps");
	ck_assert_str_eq(r.r_out, "");
	st_free(&r);
	shmq_close(q);
}
END_TEST

/*
 * Output that cannot be written is an error in every command that writes
 * any: exit 71 and one line on stderr, once.  ls and top flushed early,
 * so the final flush found nothing to write and the failure was lost.
 */
START_TEST(test_shmq_tool_write_error)
{
	char live[CU_NAME_LEN], dead[CU_NAME_LEN], pat[CU_NAME_LEN + 2];
	struct shmq *q;
	struct st_run r;

	cu_name(live, "wfull-live");
	cu_name(dead, "wfull-dead");
	snprintf(pat, sizeof(pat), "shmqt-*-wfull-*-%d", (int)getpid());
	q = cu_create(live, 16, 64, 0, 0);
	st_put_n(q, 2);
	st_die_attached(dead, true);	/* for gc -n to have a line */
	const char *const runs[][5] = {
		{ "ls", pat }, { "ls", "-o", "json", pat },
		{ "ls", "-o", "csv", pat }, { "ls", "-o", "prom", pat },
		{ "top", "-n", "1", pat }, { "show", live }, { "peek", live },
		{ "gc", "-n", pat }, { "get", live }, { "-h" }, { "--help" },
		{ "help", "ls" }, { "ls", "-h" }, { "-V" },
	};
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		st_run_to(&r, NULL, "/dev/full", runs[i]);
		st_expect(&r, 71, runs[i][0]);
		ck_assert_msg(strcmp(r.r_err, "shmq: stdout: No space left "
		    "on device\n") == 0, "%s %s: stderr:\n%s", runs[i][0],
		    runs[i][1] ? runs[i][1] : "", r.r_err);
		st_free(&r);
	}
	/* check answers a monitor, which knows 0..3: an OK it could not
	 * print is UNKNOWN. */
	st_run_to(&r, NULL, "/dev/full", (const char *const[]){ "check", live,
	    NULL });
	st_expect(&r, 3, "check");
	st_free(&r);
	/* The message get could not write went back to the queue. */
	ST_RUN(&r, "get", "-n", "2", "-t", "0", live);
	st_expect(&r, 0, "get after a failed get");
	ck_assert_str_eq(r.r_out, "message\nmessage\n");
	st_free(&r);
	shmq_close(q);
}
END_TEST

/* ---- Pipeline ---------------------------------------------------------- */

/* ps -o json of p until a processor is BUSY; the parsed output. */
static struct cj *
st_ps_busy(struct cp_pipe *p)
{
	uint64_t end = st_now_ms() + ST_WAIT_S * 1000u;
	const struct cj *pipe, *it;
	struct st_run r;
	struct cj *v;

	for (;;) {
		ST_RUN(&r, "ps", "-o", "json", p->cp_name);
		st_expect(&r, 0, "ps -o json");
		v = st_json(&r, "ps");
		st_free(&r);
		pipe = cj_at(cj_get(v, "pipelines"), 0);
		for (size_t i = 0; (it = cj_at(cj_get(pipe, "procs"), i)) !=
		    NULL; i++)
			if (strcmp(cj_str(cj_get(it, "state")), "BUSY") == 0)
				return v;
		cj_free(v);
		CP_ASSERT(p, st_now_ms() < end, "no processor became BUSY");
		st_sleep_ms(20);
	}
}

/*
 * A shmpipe-threaded keeps its process table in a memfd of its own, not
 * in /dev/shm: ps does not find it by name, ps -p PID does.
 */
START_TEST(test_shmq_tool_ps_threaded)
{
	char pid[16], self[16];
	const struct cj *pipe, *procs;
	struct cp_pipe p;
	struct st_run r;
	struct cj *v;

	cp_start(&p, 2, NULL);
	snprintf(pid, sizeof(pid), "%d", (int)p.cp_pid);
	snprintf(self, sizeof(self), "%d", (int)getpid());
	ST_RUN(&r, "ps", p.cp_name);
	st_expect(&r, 66, "ps by name of a threaded pipeline");
	st_free(&r);

	ST_RUN(&r, "ps", "-o", "json", "-p", pid);
	st_expect(&r, 0, "ps -p");
	v = st_json(&r, "ps");
	st_free(&r);
	pipe = cj_at(cj_get(v, "pipelines"), 0);
	ck_assert_str_eq(cj_str(cj_get(pipe, "name")), p.cp_name);
	ck_assert_str_eq(cj_str(cj_get(pipe, "state")), "OK");
	ck_assert(st_num(pipe, "supervisor_pid") == p.cp_pid);
	procs = cj_get(pipe, "procs");
	ck_assert_ptr_nonnull(cj_at(procs, 3));	/* request, reply, 2 */
	ck_assert_ptr_null(cj_at(procs, 4));
	ck_assert_str_eq(cj_str(cj_get(cj_at(procs, 3), "role")),
	    "processor");
	ck_assert(st_num(cj_at(procs, 3), "pid") == p.cp_pid);
	cj_free(v);

	ST_RUN(&r, "ps", "-p", pid, p.cp_name);
	st_expect(&r, 0, "ps -p PID PIPELINE");
	ck_assert_ptr_nonnull(strstr(r.r_out, "READY"));
	st_free(&r);
	ST_RUN(&r, "ps", "-p", pid, "no-such-pipeline");
	st_expect(&r, 66, "ps -p of a pipeline the process does not hold");
	st_free(&r);
	ST_RUN(&r, "ps", "-p", self);
	st_expect(&r, 66, "ps -p of a process without a pipeline");
	ck_assert_ptr_nonnull(strstr(r.r_err, "holds no pipeline"));
	st_free(&r);
	ST_RUN(&r, "ps", "-p", "0");
	st_expect(&r, 64, "ps -p 0");
	ck_assert_ptr_nonnull(strstr(r.r_err, "expected a process id"));
	st_free(&r);
	cp_stop(&p);
}
END_TEST

START_TEST(test_shmq_tool_ps)
{
	char req[96], pat[96], busy_pid[16];
	const struct cj *pipe, *it, *busy = NULL;
	struct cp_pipe p;
	struct st_run r;
	struct cj *v;
	int fd;

	cp_start(&p, 2, NULL);
	fd = cp_connect(&p);
	cp_sends(fd, "sleep 3000\n");
	v = st_ps_busy(&p);
	pipe = cj_at(cj_get(v, "pipelines"), 0);
	ck_assert_str_eq(cj_str(cj_get(pipe, "name")), p.cp_name);
	ck_assert_str_eq(cj_str(cj_get(pipe, "state")), "OK");
	ck_assert(cj_get(pipe, "supervisor_alive")->cj_bool);
	ck_assert(st_num(pipe, "supervisor_pid") == p.cp_pid);
	ck_assert_str_eq(cj_str(cj_get(pipe, "phase")), "running");
	for (size_t i = 0; (it = cj_at(cj_get(pipe, "procs"), i)) != NULL; i++)
		if (strcmp(cj_str(cj_get(it, "state")), "BUSY") == 0)
			busy = it;
	ck_assert_str_eq(cj_str(cj_get(busy, "role")), "processor");
	ck_assert(st_num(cj_get(busy, "request"), "seq") == 0);
	ck_assert(st_num(busy, "request_age_ms") >= 0);
	ck_assert(cj_get(busy, "alive")->cj_bool);
	ck_assert_str_eq(cj_str(cj_get(cj_at(cj_get(pipe, "procs"), 0),
	    "role")), "request");
	snprintf(busy_pid, sizeof(busy_pid), "%.0f", st_num(busy, "pid"));
	cj_free(v);

	ST_RUN(&r, "ps", p.cp_name);
	st_expect(&r, 0, "ps");
	ck_assert_ptr_nonnull(strstr(r.r_out, "BUSY"));
	ck_assert_ptr_nonnull(strstr(r.r_out, "c0#0"));
	ck_assert_ptr_nonnull(strstr(r.r_out, busy_pid));
	st_free(&r);
	ST_RUN(&r, "ps", "-o", "csv", p.cp_name);
	st_expect(&r, 0, "ps -o csv");
	ck_assert_int_eq(st_csv(r.r_out), 1 + 2 + 2);
	st_free(&r);
	ST_RUN(&r, "ps", "-o", "prom", p.cp_name);
	st_expect(&r, 0, "ps -o prom");
	ck_assert_int_ge(st_prom(r.r_out), 6 + 4 * 3);
	ck_assert_ptr_nonnull(strstr(r.r_out, "shmpipe_proc_busy_seconds{"));
	st_free(&r);

	snprintf(pat, sizeof(pat), "shmpipe.%s.*", p.cp_name);
	snprintf(req, sizeof(req), "shmpipe.%s.req", p.cp_name);
	ST_RUN(&r, "ls", "-o", "json", pat);
	st_expect(&r, 0, "ls of a pipeline's queues");
	v = st_json(&r, "ls");
	ck_assert_ptr_nonnull(it = st_find(v, "queues", req));
	ck_assert(st_num(it, "consumers_alive") >= 1);
	ck_assert(st_num(it, "producers_alive") == 1);
	ck_assert(st_num(it, "leases_held") == 1);
	cj_free(v);
	st_free(&r);
	ST_RUN(&r, "show", req);
	st_expect(&r, 0, "show of a pipeline's queue");
	ck_assert_ptr_nonnull(strstr(r.r_out, busy_pid));
	st_free(&r);
	ST_RUN(&r, "check", pat);
	st_expect(&r, 0, "check of a live pipeline");
	ck_assert_ptr_nonnull(strstr(r.r_out, "2 queues, 1 pipeline"));
	st_free(&r);
	ST_RUN(&r, "ps", "no-such-pipeline");
	st_expect(&r, 66, "ps of no pipeline");
	st_free(&r);
	cp_close(fd);
	cp_stop(&p);
}
END_TEST

/* Field col of CSV line n (0: the header) of text into buf, unquoted;
 * false if there is no such line or column. */
static bool
st_csv_get(const char *text, int n, const char *col, char *buf, size_t len)
{
	const char *p = text, *line;
	int want = -1, k = 0;
	size_t o = 0;

	for (int i = 0; i <= n && *p; i++) {
		line = p;
		(void)st_csv_fields(&p);	/* past the line */
		if (i == 0)
			for (const char *h = line; h < p; k++) {
				size_t w = strcspn(h, ",\r");
				if (w == strlen(col) && strncmp(h, col, w) == 0)
					want = k;
				h += w + 1;
			}
		if (i < n || want < 0)
			continue;
		for (k = 0; k < want; line++)	/* to the field's start */
			if (*line == '"')
				line = strchr(line + 1, '"');
			else if (*line == ',')
				k++;
		for (bool q = false; *line && (q || (*line != ',' &&
		    *line != '\r')); line++) {
			if (*line == '"' && !(q && line[1] == '"')) {
				q = !q;
				continue;
			}
			line += q && *line == '"';
			if (o + 1 < len)
				buf[o++] = *line;
		}
		buf[o] = '\0';
		return true;
	}
	return false;
}

/* Every member of JSON object o is a column of CSV (renamed if in ren,
 * pairs of JSON name, CSV name; skipped if renamed to NULL). */
static void
st_csv_has(const char *csv, const struct cj *o, const char *const *ren)
{
	char val[256];

	for (size_t i = 0; i < o->cj_n; i++) {
		const char *key = o->cj_keys[i];
		for (size_t k = 0; ren[k] != NULL; k += 2)
			if (strcmp(ren[k], key) == 0) {
				key = ren[k + 1];
				break;
			}
		ck_assert_msg(key == NULL || st_csv_get(csv, 0, key, val,
		    sizeof(val)), "CSV has no %s:\n%s", key, csv);
	}
}

/*
 * ps -o csv and check -o csv carry what their JSON has: ps lacked every
 * field of the pipeline itself (reason, supervisor, phase, counts) and the
 * request's conn_gen, and left out a pipeline without rows, one it could
 * not read; check lacked the whole check's status, code, summary and
 * thresholds.
 */
START_TEST(test_shmq_tool_ps_check_csv_fields)
{
	static const char *const ps_ren[] = { "name", "pipeline", "state",
	    "pipeline_state", "restarts", "pipeline_restarts", "procs", NULL,
	    NULL };
	static const char *const row_ren[] = { "request", "request_conn",
	    "restarts", "restarts", NULL };
	static const char *const chk_ren[] = { "thresholds", NULL, "segments",
	    NULL, "schema", NULL, "tool", NULL, "version", NULL, "command",
	    NULL, "time_ms", NULL, "summary", "reason", NULL };
	char val[512], pid[16], bad[CU_NAME_LEN + 16], ctl[CU_NAME_LEN + 32];
	char pat[CU_NAME_LEN + 32];
	const uint64_t magic = SHMPIPE_CTL_MAGIC;
	const struct cj *pipe, *th;
	struct cp_pipe p;
	struct st_run r;
	struct cj *v;
	int fd;

	cp_start(&p, 1, NULL);
	fd = cp_connect(&p);
	cp_sends(fd, "sleep 3000\n");
	v = st_ps_busy(&p);		/* a request in hand: conn_gen */
	pipe = cj_at(cj_get(v, "pipelines"), 0);
	ST_RUN(&r, "ps", "-o", "csv", p.cp_name);
	st_expect(&r, 0, "ps -o csv");
	st_csv_has(r.r_out, pipe, ps_ren);
	st_csv_has(r.r_out, cj_at(cj_get(pipe, "procs"), 0), row_ren);
	ck_assert(st_csv_get(r.r_out, 0, "request_seq", val, sizeof(val)));
	ck_assert(st_csv_get(r.r_out, 0, "request_conn_gen", val,
	    sizeof(val)));
	snprintf(pid, sizeof(pid), "%d", (int)p.cp_pid);
	for (int n = 1; n <= 3; n++) {
		ck_assert(st_csv_get(r.r_out, n, "supervisor_pid", val,
		    sizeof(val)));
		ck_assert_str_eq(val, pid);
		ck_assert(st_csv_get(r.r_out, n, "phase", val, sizeof(val)));
		ck_assert_str_eq(val, "running");
	}
	cj_free(v);
	st_free(&r);
	cp_close(fd);
	cp_stop(&p);

	/* A pipeline without rows is a line too, with its reason. */
	cu_name(bad, "csvbad");
	snprintf(ctl, sizeof(ctl), "shmpipe.%s,x.ctl", st_bare(bad));
	st_file(ctl, &magic, sizeof(magic), 4096);
	ST_RUN(&r, "ps", "-o", "csv");
	snprintf(pat, sizeof(pat), "shmpipe.%s*", st_bare(bad));
	ck_assert_int_eq(shm_unlink(ctl), 0);
	st_expect(&r, 65, "ps -o csv of a corrupt pipeline");
	(void)st_csv(r.r_out);
	snprintf(pat, sizeof(pat), "\"%s,x\",CORRUPT,,", st_bare(bad));
	ck_assert_msg(strstr(r.r_out, pat) != NULL && strstr(r.r_out,
	    ",not a pipeline name: expected") != NULL, "%s", r.r_out);
	st_free(&r);

	/* check: the whole check on a line of its own, first. */
	cu_name(bad, "csvchk");
	snprintf(pat, sizeof(pat), "%s*", st_bare(bad));
	shmq_close(cu_create(bad, 16, 64, 0, 0));
	ST_RUN(&r, "check", "-o", "json", "--stall", "7", pat);
	st_expect(&r, 0, "check -o json");
	v = st_json(&r, "check");
	st_free(&r);
	ST_RUN(&r, "check", "-o", "csv", "--stall", "7", pat);
	st_expect(&r, 0, "check -o csv");
	ck_assert_int_eq(st_csv(r.r_out), 3);
	st_csv_has(r.r_out, v, chk_ren);
	st_csv_has(r.r_out, cj_get(v, "thresholds"), (const char *const[]){
	    NULL });
	ck_assert(st_csv_get(r.r_out, 1, "kind", val, sizeof(val)));
	ck_assert_str_eq(val, "check");
	ck_assert(st_csv_get(r.r_out, 1, "reason", val, sizeof(val)));
	ck_assert_str_eq(val, cj_str(cj_get(v, "summary")));
	ck_assert(st_csv_get(r.r_out, 1, "status", val, sizeof(val)));
	ck_assert_str_eq(val, cj_str(cj_get(v, "status")));
	th = cj_get(v, "thresholds");
	ck_assert(st_csv_get(r.r_out, 1, "stall_s", val, sizeof(val)));
	ck_assert(strtod(val, NULL) == st_num(th, "stall_s"));
	ck_assert(st_csv_get(r.r_out, 1, "fill_warn_pct", val, sizeof(val)));
	ck_assert(strtod(val, NULL) == st_num(th, "fill_warn_pct"));
	ck_assert(st_csv_get(r.r_out, 2, "name", val, sizeof(val)));
	ck_assert_str_eq(val, st_bare(bad));
	cj_free(v);
	st_free(&r);
	ck_assert_int_eq(shmq_unlink(bad), 0);
}
END_TEST

/*
 * A control segment's header is anyone's to change while shmq reads it:
 * after ctl_open checked it, the counts and offsets it goes by are its own
 * copy.  Here the writer moves procs_off off the map and grows nprocs after
 * the reader opened it; the reader's process table is where it was checked
 * (ps and gc used to read both again: a wild read, or a heap overflow of
 * ps's rows).  A memfd: nothing in /dev/shm.
 */
START_TEST(test_shmq_tool_ctl_geometry_copied)
{
	const struct ctl_params cp = { .nprocs = 3, .max_conns = 2,
	    .max_line = 64, .window = 4, .conn_window = 2,
	    .max_deliveries = 3, .request_timeout_ms = 1000 };
	struct ctl w, rd;
	uint64_t procs_off;

	ck_assert_int_eq(ctl_create_anon(&w, "shmqt-geom", &cp), 0);
	ck_assert_int_eq(ctl_open_pid(&rd, getpid(), "shmqt-geom",
	    CTL_OPEN_RDONLY | CTL_OPEN_ANY), 0);
	procs_off = rd.c_hdr->procs_off;
	ck_assert_uint_eq(rd.c_g.nprocs, 3);
	ck_assert_uint_eq(rd.c_g.procs_off, procs_off);
	w.c_hdr->procs_off = UINT64_C(1) << 40;
	w.c_hdr->conns_off = UINT64_C(1) << 40;
	w.c_hdr->slab_off = UINT64_C(1) << 40;
	w.c_hdr->verdicts_off = UINT64_C(1) << 40;
	w.c_hdr->nprocs = 4096;
	w.c_hdr->max_conns = 1 << 20;
	ck_assert_uint_eq(rd.c_hdr->nprocs, 4096);	/* the same memory */
	ck_assert_uint_eq(rd.c_g.nprocs, 3);
	ck_assert_uint_eq(rd.c_g.max_conns, 2);
	ck_assert_ptr_eq(ctl_proc(&rd, 2), (struct shmpipe_proc *)(rd.c_base +
	    procs_off) + 2);
	ck_assert((unsigned char *)ctl_conn(&rd, 1) < rd.c_base + rd.c_size);
	ck_assert((unsigned char *)ctl_slab(&rd, 3) < rd.c_base + rd.c_size);
	ck_assert((unsigned char *)(ctl_verdict(&rd, CTL_NVERDICTS - 1) + 1) <=
	    rd.c_base + rd.c_size);
	ck_assert_int_eq(atomic_load(&ctl_proc(&rd, 2)->last_status), -1);
	ck_assert_uint_eq(rd.c_g.conn_window, 2);
	/* The window per client masks the reply stage's table: a header
	 * whose window is no power of two, or more than the slab, is not
	 * opened; put right otherwise, it is (the case [3]). */
	w.c_hdr->procs_off = procs_off;
	w.c_hdr->conns_off = rd.c_g.conns_off;
	w.c_hdr->slab_off = rd.c_g.slab_off;
	w.c_hdr->verdicts_off = rd.c_g.verdicts_off;
	w.c_hdr->nprocs = 3;
	w.c_hdr->max_conns = 2;
	ctl_close(&rd);
	for (uint32_t k = 0; k < 4; k++) {
		static const uint32_t win[] = { 0, 3, 8, 2 };
		struct ctl again;

		w.c_hdr->conn_window = win[k];
		ck_assert_int_eq(ctl_open_pid(&again, getpid(), "shmqt-geom",
		    CTL_OPEN_RDONLY | CTL_OPEN_ANY), k < 3 ? -EBADMSG : 0);
		if (k == 3)
			ctl_close(&again);
	}
	ctl_close(&w);
}
END_TEST

START_TEST(test_shmq_tool_gc_pipeline)
{
	char pat[96];
	struct cp_pipe dead, live;
	pid_t rows[8];
	struct st_run r;
	struct ctl c;

	cp_start(&dead, 2, NULL);
	cp_start(&live, 1, NULL);
	cp_ctl(&dead, &c);
	for (uint32_t i = 0; i < 4; i++)
		rows[i] = cp_row_pid(&c, i);
	ctl_close(&c);
	snprintf(pat, sizeof(pat), "shmpipe.ckp*-%d-*", (int)getpid());
	ST_RUN(&r, "gc", pat);
	st_expect(&r, 0, "gc of live pipelines");
	ck_assert_ptr_null(strstr(r.r_out, "removed"));
	st_free(&r);

	kill(dead.cp_pid, SIGKILL);
	cp_wait_exit(&dead, ST_WAIT_S);
	for (uint32_t i = 0; i < 4; i++)
		CP_ASSERT(&dead, cp_pid_gone(rows[i], ST_WAIT_S), "stage %d "
		    "outlived its supervisor", (int)rows[i]);
	ST_RUN(&r, "check", pat);
	st_expect(&r, 2, "check of a dead pipeline");
	ck_assert_ptr_nonnull(strstr(r.r_out, "STALE"));
	st_free(&r);
	ST_RUN(&r, "ps", dead.cp_name);
	st_expect(&r, 0, "ps of a dead pipeline");
	ck_assert_ptr_nonnull(strstr(r.r_out, "STALE"));
	st_free(&r);
	ST_RUN(&r, "gc", pat);
	st_expect(&r, 0, "gc");
	ck_assert_ptr_nonnull(strstr(r.r_out, "removed"));
	st_free(&r);
	CP_ASSERT(&dead, cp_segments(dead.cp_name) == 0, "gc left segments "
	    "of the dead pipeline");
	CP_ASSERT(&live, cp_segments(live.cp_name) == 3, "gc touched the "
	    "live pipeline");
	cp_stop(&live);
}
END_TEST

/* ---- Crash ------------------------------------------------------------- */

static uint64_t st_rng;

static uint32_t
st_rand(void)
{
	st_rng ^= st_rng << 13;
	st_rng ^= st_rng >> 7;
	st_rng ^= st_rng << 17;
	return (uint32_t)(st_rng >> 16);
}

/* The bytes of a segment file. */
static unsigned char *
st_slurp(const char *name, size_t *len)
{
	char path[CU_NAME_LEN + 16];
	struct stat st;
	unsigned char *buf;
	int fd;

	snprintf(path, sizeof(path), "/dev/shm/%s", st_bare(name));
	ck_assert_int_ge(fd = open(path, O_RDONLY | O_CLOEXEC), 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_ptr_nonnull(buf = malloc((size_t)st.st_size));
	ck_assert_int_eq(read(fd, buf, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

/* A copy of orig with a few random bytes (mostly in the header and the
 * records, where they matter most), sometimes cut short. */
static size_t
st_mutate(unsigned char *buf, const unsigned char *orig, size_t len)
{
	size_t hot = sizeof(struct shmq_seg_header) + 4 *
	    sizeof(struct shmq_seg_proc);
	unsigned n = 1 + st_rand() % 8;

	memcpy(buf, orig, len);
	for (unsigned i = 0; i < n; i++) {
		size_t at = st_rand() % 4 ? st_rand() % hot : st_rand() % len;
		buf[at] = st_rand() % 3 ? (unsigned char)st_rand() :
		    (unsigned char)(buf[at] ^ (1u << (st_rand() % 8)));
	}
	return st_rand() % 10 == 0 ? st_rand() % len : len;
}

/* The tool on a damaged segment: any verdict, but never a crash. */
static void
st_survives(const char *const *args, const char *what, unsigned iter)
{
	struct st_run r;
	struct cj *v;

	st_run_in(&r, NULL, args);
	ck_assert_msg(!r.r_signaled, "%s (mutation %u): killed by signal "
	    "%d\n%s", what, iter, r.r_code - 128, r.r_err);
	ck_assert_msg(r.r_code == 0 || r.r_code == 1 || r.r_code == 2 ||
	    r.r_code == 3 || r.r_code == 65 || r.r_code == 66 ||
	    r.r_code == 75, "%s (mutation %u): exit %d\n%s", what, iter,
	    r.r_code, r.r_err);
	if (strstr(what, "json") != NULL && r.r_len > 0) {
		v = cj_parse(r.r_out, NULL, NULL);
		ck_assert_msg(v != NULL, "%s (mutation %u): bad JSON\n%s",
		    what, iter, r.r_out);
		cj_free(v);
	}
	st_free(&r);
}

START_TEST(test_shmq_tool_mutations)
{
	char name[CU_NAME_LEN], mut[CU_NAME_LEN];
	unsigned char *orig, *buf;
	struct shmq_lease lease;
	struct shmq *q, *c;
	size_t len;
	char tmp[64];

	cu_name(name, "mut-orig");
	cu_name(mut, "mut");
	q = cu_create(name, 16, 64, 4, 2);
	st_put_n(q, 9);
	ck_assert_ptr_nonnull(c = shmq_open(name));
	QASSERT(q, shmq_take(c, tmp, sizeof(tmp), &lease, 0) > 0);
	QASSERT(q, shmq_get(c, tmp, sizeof(tmp), 0) > 0);
	orig = st_slurp(name, &len);
	ck_assert_ptr_nonnull(buf = malloc(len));
	st_rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
	fprintf(stderr, "mutations: seed %#" PRIx64 "\n", st_rng);
	for (unsigned i = 0; i < ST_MUTATIONS; i++) {
		size_t n = st_mutate(buf, orig, len);
		st_file(mut, buf, n, n);
		st_survives((const char *const[]){ "show", "-o",
		    "json", mut, NULL }, "show -o json", i);
		st_survives((const char *const[]){ "ls", "-o",
		    "json", st_bare(mut), NULL }, "ls -o json", i);
		st_survives((const char *const[]){ "peek", mut,
		    NULL }, "peek", i);
		if (i % 4 == 0)
			st_survives((const char *const[]){ "check",
			    st_bare(mut), NULL }, "check", i);
	}
	free(buf);
	free(orig);
	shmq_close(c);
	shmq_close(q);
}
END_TEST

START_TEST(test_shmq_tool_truncate_while_mapped)
{
	char name[CU_NAME_LEN], path[CU_NAME_LEN + 16];
	unsigned sigbus = 0, runs = 0;
	struct shmq *q;
	struct st_run r;
	volatile int *stop = cu_shared(sizeof(int));
	struct stat st;
	pid_t pid;

	cu_name(name, "trunc");
	q = cu_create(name, 4096, 4096, 0, 0);
	st_put_n(q, 3);
	shmq_close(q);
	snprintf(path, sizeof(path), "/dev/shm/%s", st_bare(name));
	ck_assert_int_eq(stat(path, &st), 0);
	if ((pid = cu_fork()) == 0) {
		int fd = open(path, O_RDWR);
		/* Whole for a moment (so that the tool maps it whole), then
		 * cut inside the attachment records, which every reader
		 * reads (a read-only open leaves most ring pages alone). */
		while (fd >= 0 && !*stop) {
			(void)!ftruncate(fd, st.st_size);
			st_sleep_ms(1);
			(void)!ftruncate(fd, 4096);
		}
		_exit(fd >= 0 ? 0 : 1);
	}
	for (uint64_t end = st_now_ms() + 20000; st_now_ms() < end &&
	    (runs < 20 || sigbus == 0); runs++) {
		ST_RUN(&r, "ls", "-o", "json", st_bare(name));
		ck_assert_msg(!r.r_signaled, "ls killed by signal %d",
		    r.r_code - 128);
		sigbus += strstr(r.r_out, "SIGBUS") != NULL;
		st_free(&r);
	}
	ST_RUN(&r, "top", "-n", "50", "-i", "0.01", st_bare(name));
	st_expect(&r, 0, "top while truncated");
	st_free(&r);
	*stop = 1;
	cu_wait_exit(NULL, pid, 0);
	fprintf(stderr, "truncation: %u of %u runs read across a truncation "
	    "(SIGBUS caught)\n", sigbus, runs);
	ck_assert_msg(sigbus > 0, "no run was caught by a truncation in %u",
	    runs);
	cu_unshare((void *)stop, sizeof(int));
}
END_TEST

/* A producer or consumer that runs flat out until *stop. */
static void __attribute__((noreturn))
st_worker(const char *name, bool producer, volatile int *stop)
{
	struct shmq *q = shmq_open(name);
	char buf[16] = "payload";

	if (q == NULL)
		_exit(1);
	while (!*stop)
		if (producer)
			(void)shmq_put(q, buf, 8, 10);
		else
			(void)shmq_get(q, buf, sizeof(buf), 10);
	shmq_close(q);
	_exit(0);
}

static void
st_sample(struct shmq *ro, uint32_t cap, uint64_t *moved)
{
	struct shmq_stats st;
	uint64_t first = 0;

	for (long i = 0; i < ST_SAMPLES; i++) {
		QASSERT_EQ(ro, shmq_stats(ro, &st), 0);
		QASSERT_MSG(ro, st.depth <= cap && st.high_water <= cap &&
		    st.oldest_age_ms >= -1, "sample %ld: depth %u, high water "
		    "%u, capacity %u", i, st.depth, st.high_water, cap);
		if (i == 0)
			first = st.dequeued;
	}
	*moved = st.dequeued - first;
}

START_TEST(test_shmq_tool_mpmc_consistency)
{
	char name[CU_NAME_LEN];
	volatile int *stop = cu_shared(sizeof(int));
	struct shmq *q, *ro;
	uint64_t moved;
	pid_t pids[4];
	struct cj *v;

	cu_name(name, "mpmc");
	q = cu_create(name, 8, 16, 8, 1);
	for (int i = 0; i < 4; i++)
		if ((pids[i] = cu_fork()) == 0)
			st_worker(name, i < 2, stop);
	ck_assert_ptr_nonnull(ro = shmq_open_flags(name, SHMQ_OPEN_RDONLY));
	st_sample(ro, 8, &moved);
	ck_assert_msg(moved > 1000, "only %" PRIu64 " messages moved: no "
	    "load", moved);
	for (int i = 0; i < 100; i++) {
		const struct cj *row;
		v = st_ls_json(name, NULL);
		row = st_find(v, "queues", st_bare(name));
		ck_assert_ptr_nonnull(row);
		ck_assert(st_num(row, "depth") >= 0 &&
		    st_num(row, "depth") <= 8);
		ck_assert(st_num(row, "high_water") <= 8);
		ck_assert(st_num(row, "fill_pct") <= 100);
		ck_assert(st_num(row, "producers_alive") == 2);
		cj_free(v);
	}
	*stop = 1;
	for (int i = 0; i < 4; i++)
		cu_wait_exit(q, pids[i], 0);
	shmq_close(ro);
	shmq_close(q);
	cu_unshare((void *)stop, sizeof(int));
}
END_TEST

Suite *
shmq_tool_suite(void)
{
	Suite *s = suite_create("shmq_tool");
	TCase *tc;

	cp_init();
	tc = cu_tcase("Core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_shmq_tool_usage);
	tcase_add_test(tc, test_shmq_tool_option_errors);
	tcase_add_test(tc, test_shmq_tool_odd_operands);
	tcase_add_test(tc, test_shmq_tool_put_get);
	tcase_add_test(tc, test_shmq_tool_pipeline_queue_guard);
	tcase_add_test(tc, test_shmq_tool_get_fail_keeps_queue);
	tcase_add_test(tc, test_shmq_tool_put_stdin_long);
	tcase_add_test(tc, test_shmq_tool_put_full_timeout);
	tcase_add_test(tc, test_shmq_tool_create_values);
	tcase_add_test(tc, test_shmq_tool_ls_formats);
	tcase_add_test(tc, test_shmq_tool_ls_csv_fields);
	tcase_add_test(tc, test_shmq_tool_prom_fields);
	tcase_add_test(tc, test_shmq_tool_rate_first_tick);
	tcase_add_test(tc, test_shmq_tool_show);
	tcase_add_test(tc, test_shmq_tool_peek);
	tcase_add_test(tc, test_shmq_tool_states);
	tcase_add_test(tc, test_shmq_tool_check);
	tcase_add_test(tc, test_shmq_tool_bad_segments);
	tcase_add_test(tc, test_shmq_tool_corrupt_ring);
	tcase_add_test(tc, test_shmq_tool_bad_positions);
	tcase_add_test(tc, test_shmq_tool_fifo);
	tcase_add_test(tc, test_shmq_tool_io_not_a_queue);
	tcase_add_test(tc, test_shmq_tool_names_utf8);
	tcase_add_test(tc, test_shmq_tool_check_names);
	tcase_add_test(tc, test_shmq_tool_error_names);
	tcase_add_test(tc, test_shmq_tool_error_patterns);
	tcase_add_test(tc, test_shmq_tool_error_pipe_names);
	tcase_add_test(tc, test_shmq_tool_bad_pipeline_name);
	tcase_add_test(tc, test_shmq_tool_pipeline_incompatible);
	tcase_add_test(tc, test_shmq_tool_permission);
	tcase_add_test(tc, test_shmq_tool_denied_pipeline);
	tcase_add_test(tc, test_shmq_tool_top);
	tcase_add_test(tc, test_shmq_tool_gc_queues);
	tcase_add_test(tc, test_shmq_tool_write_error);
	tcase_add_test(tc, test_shmq_tool_ctl_geometry_copied);
	suite_add_tcase(s, tc);

	tc = cp_tcase("Pipeline", 120);
	tcase_add_test(tc, test_shmq_tool_ps);
	tcase_add_test(tc, test_shmq_tool_ps_check_csv_fields);
	tcase_add_test(tc, test_shmq_tool_gc_pipeline);
	suite_add_tcase(s, tc);

	tc = cp_tcase_threads("Pipeline threaded", 60);
	tcase_add_test(tc, test_shmq_tool_ps_threaded);
	suite_add_tcase(s, tc);

	tc = cu_tcase("Crash");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_shmq_tool_mutations);
	tcase_add_test(tc, test_shmq_tool_truncate_while_mapped);
	tcase_add_test(tc, test_shmq_tool_mpmc_consistency);
	suite_add_tcase(s, tc);
	return s;
}
