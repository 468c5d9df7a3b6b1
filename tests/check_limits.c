/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_limits.c - shmpipe at the edge of its resources and against
 * hostile neighbours: /dev/shm full, out of file descriptors in the
 * request stage and in the supervisor, queues full for as long as a stage
 * is stopped, a client that never reads, clients that send nothing or half
 * a line, and segments that are not ours alone.  Each pipeline is started
 * as in check_pipeline.c; what it is run out of is taken away for real
 * (a small tmpfs, prlimit(2), SIGSTOP), never faked.
 */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_pipeline_util.h"
#include "check_util.h"
#include "supervisor.h"

Suite	*limits_suite(void);

#define LM_LINE		8192

/* ---- helpers ----------------------------------------------------------- */

static uint64_t
lm_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
lm_nap(void)
{
	struct timespec ts = { 0, 1000000 };

	nanosleep(&ts, NULL);
}

/* Wait until cond(arg) holds; fail after CP_WAIT_S saying what. */
#define LM_WAIT(p, cond, ...) do {					\
	uint64_t end_ = lm_now_ms() + CP_WAIT_S * 1000u;		\
	while (!(cond)) {						\
		CP_ASSERT((p), lm_now_ms() < end_, __VA_ARGS__);	\
		lm_nap();						\
	}								\
} while (0)

/* Connection slots in use. */
static uint32_t
conns_used(const struct ctl *c)
{
	uint32_t used = 0;

	for (uint32_t i = 0; i < c->c_g.max_conns; i++)
		used += SHMPIPE_CONN_FLAGS(atomic_load(&ctl_conn(c,
		    i)->state)) != 0;
	return used;
}

/*
 * The most requests one connection has in flight: committed (in_pos) and
 * not yet written back (reply_seq, read second: it only grows).
 */
static uint32_t
max_flight(const struct ctl *c)
{
	uint32_t most = 0;

	for (uint32_t i = 0; i < c->c_g.max_conns; i++) {
		struct shmpipe_conn *cn = ctl_conn(c, i);
		uint32_t in = SHMPIPE_IN_SEQ(atomic_load(&cn->in_pos));
		uint32_t flight = (in - atomic_load(&cn->reply_seq)) &
		    SHMPIPE_SEQ_MASK;

		if (flight > most && flight < SHMPIPE_SEQ_MASK / 2)
			most = flight;
	}
	return most;
}

static int
wait_child(pid_t pid)
{
	int st;

	ck_assert_int_eq(cp_waitpid(pid, &st, CP_WAIT_S * 1000), 1);
	return st;
}

/* Is fd readable (a line or the end) within CP_WAIT_S? */
static bool
readable(int fd)
{
	struct pollfd pf = { .fd = fd, .events = POLLIN };

	return poll(&pf, 1, CP_WAIT_S * 1000) == 1;
}

/* Descriptors pid has open, and the highest of them. */
static int
fds_of(pid_t pid, int *highest)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	ck_assert_ptr_nonnull(d = opendir(path));
	*highest = -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		n++;
		if (atoi(de->d_name) > *highest)
			*highest = atoi(de->d_name);
	}
	closedir(d);
	return n;
}

static void
set_nofile(pid_t pid, rlim_t soft, struct rlimit *old)
{
	struct rlimit rl;

	ck_assert_int_eq(prlimit(pid, RLIMIT_NOFILE, NULL, &rl), 0);
	if (old != NULL)
		*old = rl;
	rl.rlim_cur = soft;
	ck_assert_msg(prlimit(pid, RLIMIT_NOFILE, &rl, NULL) == 0,
	    "prlimit(%d): %s", (int)pid, strerror(errno));
}

/*
 * Run argv to its end with stderr to p's log; assert the exit code and
 * that it said one line naming each of what[] (NULL-terminated).
 */
static void
expect_exit(struct cp_pipe *p, const char *const *argv, int code,
    const char *const *what)
{
	char line[1024] = "";
	long before = 0;
	FILE *f;
	int st;

	if ((f = fopen(p->cp_log, "re")) != NULL) {
		fseek(f, 0, SEEK_END);
		before = ftell(f);
		fclose(f);
	}
	st = wait_child(cp_spawnv(p, argv, -1));
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == code, "%s %s: "
	    "status %#x, expected exit %d", argv[0], argv[1], st, code);
	ck_assert_ptr_nonnull(f = fopen(p->cp_log, "re"));
	fseek(f, before, SEEK_SET);
	ck_assert_msg(fgets(line, sizeof(line), f) != NULL, "%s: nothing "
	    "on stderr", argv[0]);
	ck_assert_msg(fgetc(f) == EOF, "%s: more than one line on stderr, "
	    "the first '%s'", argv[0], line);
	fclose(f);
	for (int i = 0; what[i] != NULL; i++)
		ck_assert_msg(strstr(line, what[i]) != NULL, "'%s' does not "
		    "name '%s'", line, what[i]);
}

/* ---- /dev/shm full ------------------------------------------------------ */

static void
write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd >= 0) {
		(void)!write(fd, s, strlen(s));
		close(fd);
	}
}

/*
 * Give this test process (Check forks one per test) a /dev/shm of its own:
 * a tmpfs in a private mount namespace, in a user namespace if we are not
 * allowed one otherwise.  False if neither can be had here.
 */
static bool
private_shm(char *why, size_t len)
{
	uid_t uid = geteuid();
	gid_t gid = getegid();
	char map[64];

	if (unshare(CLONE_NEWNS) != 0) {
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
			snprintf(why, len, "no mount namespace: %s",
			    strerror(errno));
			return false;
		}
		write_file("/proc/self/setgroups", "deny");
		snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
		write_file("/proc/self/uid_map", map);
		snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
		write_file("/proc/self/gid_map", map);
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV,
	    "size=64m,mode=1777") != 0) {
		snprintf(why, len, "cannot mount a tmpfs on /dev/shm: %s",
		    strerror(errno));
		return false;
	}
	return true;
}

static void
shm_resize(uint64_t bytes)
{
	char opt[64];

	snprintf(opt, sizeof(opt), "size=%" PRIu64 ",mode=1777", bytes);
	ck_assert_msg(mount(NULL, "/dev/shm", NULL, MS_REMOUNT | MS_NOSUID |
	    MS_NODEV, opt) == 0, "remount /dev/shm %s: %s", opt,
	    strerror(errno));
}

static int
shm_entries(void)
{
	struct dirent *de;
	DIR *d = opendir("/dev/shm");
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Bytes the pipeline's segment `suffix` takes. */
static uint64_t
seg_bytes(const struct cp_pipe *p, const char *suffix)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "/dev/shm/shmpipe.%s.%s", p->cp_name,
	    suffix);
	ck_assert_msg(stat(path, &st) == 0, "%s: %s", path, strerror(errno));
	return (uint64_t)st.st_blocks * 512u;
}

#define SMALL_PIPE	"--capacity", "64", "--max-connections", "64", \
			"--window", "256"

START_TEST(test_limits_enospc)
{
	char why[160], shmq[CP_PATH_LEN];
	const char *fork_mode = getenv("CK_FORK");
	uint64_t req, rep, ctl;
	struct cp_pipe p;
	struct shmq *q;
	int fd;

	if (fork_mode != NULL && strcmp(fork_mode, "no") == 0) {
		fprintf(stderr, "test_limits_enospc: skipped: it changes its "
		    "process's mount namespace, so it needs Check's fork "
		    "mode (CK_FORK=no is set)\n");
		return;
	}
	if (!private_shm(why, sizeof(why))) {
		fprintf(stderr, "test_limits_enospc: skipped: %s\n", why);
		return;
	}
	/* How much a small pipeline takes, with room to spare. */
	cp_start(&p, 1, CP_ARGS(SMALL_PIPE));
	req = seg_bytes(&p, "req");
	rep = seg_bytes(&p, "rep");
	ctl = seg_bytes(&p, "ctl");
	fd = cp_connect(&p);
	cp_expect(fd, "echo roomy", "OK roomy");
	cp_close(fd);
	cp_stop(&p);
	ck_assert_int_eq(shm_entries(), 0);

	/* Room for both queues and half the control segment. */
	shm_resize(req + rep + ctl / 2);
	errno = 0;
	q = shmq_create("/lm-too-big", &(struct shmq_config){ .capacity =
	    1 << 16, .msg_max = 4096 });
	ck_assert_msg(q == NULL && errno == ENOSPC, "shmq_create on a full "
	    "/dev/shm: %p, errno %d", (void *)q, errno);
	ck_assert_int_eq(shm_entries(), 0);
	cp_prog(shmq, sizeof(shmq), "shmq");
	expect_exit(&p, CP_ARGS(shmq, "create", "-c", "65536", "-m", "4096",
	    "lm-too-big"), 73, CP_ARGS("lm-too-big",
	    "No space left on device"));
	ck_assert_int_eq(shm_entries(), 0);
	cp_spawn(&p, CP_ARGS(SMALL_PIPE));
	CP_ASSERT(&p, WEXITSTATUS(cp_wait_exit(&p, CP_WAIT_S)) == 71,
	    "shmpipe on a full /dev/shm: expected exit 71");
	CP_ASSERT(&p, cp_log_has(&p, "cannot create the control segment "
	    "(more than /dev/shm has free: see df /dev/shm, or ask for a "
	    "smaller --capacity, --max-line, --window or --max-connections): "
	    "No space left on device"), "no clear message");
	/* The two queues it made before are gone with it. */
	CP_ASSERT(&p, shm_entries() == 0, "%d segment(s) left on a full "
	    "/dev/shm", shm_entries());
	cp_assert_gone(&p);

	/* Room again: it starts and serves. */
	shm_resize(64u << 20);
	cp_spawn(&p, CP_ARGS(SMALL_PIPE));
	cp_wait_ready(&p);
	fd = cp_connect(&p);
	cp_expect(fd, "echo room again", "OK room again");
	cp_close(fd);
	cp_stop(&p);
}
END_TEST

/* ---- out of file descriptors ------------------------------------------ */

/* Connect, send "echo tag"; true once served, false if it waits. */
static bool
try_client(struct cp_pipe *p, const struct ctl *c, int *fd, const char *tag)
{
	uint64_t before = atomic_load(&c->c_hdr->conns_accepted);
	char line[64], want[64], got[LM_LINE];

	*fd = cp_connect(p);
	snprintf(line, sizeof(line), "echo %s\n", tag);
	snprintf(want, sizeof(want), "OK %s", tag);
	cp_sends(*fd, line);
	LM_WAIT(p, atomic_load(&c->c_hdr->conns_accepted) > before ||
	    cp_log_has(p, "cannot accept: Too many open files"),
	    "client %s neither accepted nor refused", tag);
	if (atomic_load(&c->c_hdr->conns_accepted) == before)
		return false;
	ck_assert_int_ge(cp_line(*fd, got, sizeof(got)), 0);
	ck_assert_str_eq(got, want);
	return true;
}

START_TEST(test_limits_emfile_accept)
{
	char tag[32], got[LM_LINE];
	int fd[24], served = 0, waiting, highest;
	struct rlimit old;
	struct cp_pipe p;
	struct ctl c;
	pid_t rq;

	cp_start(&p, 1, NULL);
	cp_ctl(&p, &c);
	rq = cp_row_pid(&c, SV_ROW_REQUEST);
	fds_of(rq, &highest);
	set_nofile(rq, (rlim_t)highest + 3, &old);
	/* Clients until the request process has no descriptor left. */
	for (;;) {
		ck_assert_int_lt(served, 20);
		snprintf(tag, sizeof(tag), "c%d", served);
		if (!try_client(&p, &c, &fd[served], tag))
			break;
		served++;
	}
	ck_assert_int_ge(served, 1);
	/* That one and two more wait in the backlog, requests sent. */
	for (waiting = served + 1; waiting < served + 3; waiting++) {
		fd[waiting] = cp_connect(&p);
		snprintf(tag, sizeof(tag), "echo c%d\n", waiting);
		cp_sends(fd[waiting], tag);
	}
	CP_ASSERT(&p, cp_log_has(&p, "cannot accept: Too many open files; "
	    "clients wait in the backlog"), "the refusal was not logged");
	/* Clients leave; their descriptors free; the backlog is served. */
	for (int i = 0; i < served; i++)
		cp_close(fd[i]);
	for (int i = served; i < waiting; i++) {
		char want[32];

		snprintf(want, sizeof(want), "OK c%d", i);
		ck_assert_msg(cp_line(fd[i], got, sizeof(got)) >= 0, "client "
		    "%d: closed instead of served", i);
		ck_assert_str_eq(got, want);
		cp_close(fd[i]);
	}
	set_nofile(rq, old.rlim_cur, NULL);
	LM_WAIT(&p, conns_used(&c) == 0, "connection slots still in use");
	ctl_close(&c);
	cp_stop(&p);
}
END_TEST

/*
 * The supervisor keeps a copy of every client connection; one it has no
 * room for is lost on the way (MSG_CTRUNC).  That client must be closed,
 * cleanly and at once, the others go on, and the slot come free.
 */
START_TEST(test_limits_emfile_supervisor)
{
	char tag[32], got[LM_LINE];
	int fd[24], n, highest;
	struct rlimit old;
	struct cp_pipe p;
	struct ctl c;

	cp_start(&p, 1, NULL);
	cp_ctl(&p, &c);
	fds_of(p.cp_pid, &highest);
	set_nofile(p.cp_pid, (rlim_t)highest + 2, &old);
	for (n = 0;; n++) {
		ck_assert_int_lt(n, 20);
		fd[n] = cp_connect(&p);
		snprintf(tag, sizeof(tag), "echo k%d\n", n);
		cp_sends(fd[n], tag);
		ck_assert(readable(fd[n]));
		if (cp_line(fd[n], got, sizeof(got)) < 0)
			break;			/* closed: the lost one */
		snprintf(tag, sizeof(tag), "OK k%d", n);
		ck_assert_str_eq(got, tag);
	}
	CP_ASSERT(&p, cp_log_count(&p, "its descriptor did not reach us (out "
	    "of file descriptors?); closing it") == 1, "expected one log line");
	cp_close(fd[n]);
	for (int i = 0; i < n; i++)
		cp_expect(fd[i], "upper still here", "OK STILL HERE");
	set_nofile(p.cp_pid, old.rlim_cur, NULL);
	for (int i = 0; i < n; i++)
		cp_close(fd[i]);
	LM_WAIT(&p, conns_used(&c) == 0, "%u connection slots still in use",
	    conns_used(&c));
	fd[0] = cp_connect(&p);
	cp_expect(fd[0], "echo after", "OK after");
	cp_close(fd[0]);
	ctl_close(&c);
	cp_stop(&p);
}
END_TEST

/* ---- queues full for long ---------------------------------------------- */

#define FULL_CLIENTS	4
#define FULL_EACH	150

static void
stop_rows(const struct ctl *c, uint32_t from, uint32_t to, int sig)
{
	for (uint32_t r = from; r < to; r++)
		ck_assert_int_eq(kill(cp_row_pid(c, r), sig), 0);
}

/* Open the pipeline's queue `suffix` read-only, for its depth. */
static struct shmq *
queue_of(const struct cp_pipe *p, const char *suffix)
{
	char name[64];
	struct shmq *q;

	snprintf(name, sizeof(name), "/shmpipe.%s.%s", p->cp_name, suffix);
	ck_assert_ptr_nonnull(q = shmq_open_flags(name, SHMQ_OPEN_RDONLY));
	return q;
}

static uint32_t
depth(struct shmq *q)
{
	struct shmq_stats st;

	ck_assert_int_eq(shmq_stats(q, &st), 0);
	return st.depth;
}

/*
 * With the processors stopped the request queue fills and stays full; with
 * the reply process stopped the reply queue does.  Clients are held back
 * (nothing is read past the window), nobody is dropped or killed, and once
 * the stages go on every request is answered, in order.
 */
START_TEST(test_limits_queue_full)
{
	char *buf, want[64], got[LM_LINE];
	pid_t writer[FULL_CLIENTS];
	int fd[FULL_CLIENTS], procs = 2;
	struct shmq *req, *rep;
	struct cp_pipe p;
	struct ctl c;
	size_t len;

	cp_start(&p, (unsigned)procs, CP_ARGS("--capacity", "16"));
	cp_ctl(&p, &c);
	req = queue_of(&p, "req");
	rep = queue_of(&p, "rep");
	stop_rows(&c, SV_ROW_PROC0, SV_ROW_PROC0 + (uint32_t)procs, SIGSTOP);
	ck_assert_ptr_nonnull(buf = malloc(FULL_EACH * 32));
	for (int i = 0; i < FULL_CLIENTS; i++) {
		len = 0;
		for (int k = 0; k < FULL_EACH; k++)
			len += (size_t)sprintf(buf + len, "echo c%d-%d\n", i, k);
		fd[i] = cp_connect(&p);
		writer[i] = cp_send_async(fd[i], buf, len);
	}
	LM_WAIT(&p, depth(req) == shmq_capacity(req), "the request queue "
	    "never filled");
	/* The reply process stopped too: the reply queue fills instead. */
	kill(cp_row_pid(&c, SV_ROW_REPLY), SIGSTOP);
	stop_rows(&c, SV_ROW_PROC0, SV_ROW_PROC0 + (uint32_t)procs, SIGCONT);
	LM_WAIT(&p, depth(rep) == shmq_capacity(rep), "the reply queue never "
	    "filled");
	LM_WAIT(&p, depth(req) == shmq_capacity(req), "the request queue did "
	    "not fill again behind it");
	CP_ASSERT(&p, atomic_load(&c.c_hdr->answered) == 0 &&
	    atomic_load(&c.c_hdr->restarts) == 0, "answered or restarted while "
	    "stopped");
	kill(cp_row_pid(&c, SV_ROW_REPLY), SIGCONT);
	for (int i = 0; i < FULL_CLIENTS; i++) {
		for (int k = 0; k < FULL_EACH; k++) {
			snprintf(want, sizeof(want), "OK c%d-%d", i, k);
			ck_assert_msg(cp_line(fd[i], got, sizeof(got)) >= 0,
			    "client %d: closed after %d replies", i, k);
			ck_assert_str_eq(got, want);
		}
		ck_assert_int_eq(wait_child(writer[i]), 0);
		cp_close(fd[i]);
	}
	CP_ASSERT(&p, !cp_log_has(&p, "killed by") && atomic_load(
	    &c.c_hdr->slow_clients) == 0, "a stage or a client was let go");
	free(buf);
	shmq_close(req);
	shmq_close(rep);
	ctl_close(&c);
	cp_stop(&p);
}
END_TEST

/* ---- clients that hold resources --------------------------------------- */

#define SLOW_WINDOW	64
#define SLOW_ARG	3000

/* lines requests "echo " + SLOW_ARG letters, one after another; *len. */
static char *
slow_lines(int lines, size_t *len)
{
	char *buf = malloc((size_t)lines * (SLOW_ARG + 8));

	ck_assert_ptr_nonnull(buf);
	*len = 0;
	for (int k = 0; k < lines; k++) {
		*len += (size_t)sprintf(buf + *len, "echo ");
		memset(buf + *len, 'a' + k % 26, SLOW_ARG);
		*len += SLOW_ARG;
		buf[(*len)++] = '\n';
	}
	return buf;
}

/*
 * A client that sends and never reads: its replies wait in the slab, at
 * most --conn-window of them, its input is not read past that, and after
 * 10 s without progress it is disconnected.  Others are served all along.
 */
START_TEST(test_limits_slow_client)
{
	char *buf, cw[16];
	size_t len;
	int slow, other, lines = 4000;
	struct cp_pipe p;
	struct ctl c;
	pid_t writer;

	snprintf(cw, sizeof(cw), "%d", SLOW_WINDOW);
	cp_start(&p, 2, CP_ARGS("--conn-window", cw));
	cp_ctl(&p, &c);
	buf = slow_lines(lines, &len);
	slow = cp_connect(&p);
	writer = cp_send_async(slow, buf, len);
	other = cp_connect(&p);
	/* Its window full of replies nobody reads: held there. */
	LM_WAIT(&p, max_flight(&c) >= SLOW_WINDOW, "the slow client's window "
	    "never filled");
	cp_expect(other, "echo meanwhile", "OK meanwhile");
	CP_ASSERT(&p, max_flight(&c) <= SLOW_WINDOW, "%u requests of one "
	    "client in flight, its window is %d", max_flight(&c), SLOW_WINDOW);
	cp_wait_log(&p, "client read nothing for 10 s; closing it");
	CP_ASSERT(&p, atomic_load(&c.c_hdr->slow_clients) == 1, "slow_clients "
	    "not counted");
	/* The writer sees the end; the slot comes free; others go on. */
	wait_child(writer);
	cp_close(slow);
	LM_WAIT(&p, conns_used(&c) == 1, "the slow client's slot is still in "
	    "use");
	cp_expect(other, "rev abc", "OK cba");
	free(buf);
	cp_close(other);
	ctl_close(&c);
	cp_stop(&p);
}
END_TEST

#define STARVE_WINDOW	64

/*
 * Every slab slot holds a reply written to no one: the clients that hold
 * them have stopped reading, and the reply process has filled their
 * sockets (it writes what it takes at once, so a slot stays FILLED only
 * for a client it cannot write to).  Seen twice, 100 ms apart: replies
 * taken and not yet written in that instant do not count.
 */
static bool
slab_stalled(const struct ctl *c)
{
	for (int pass = 0; pass < 2; pass++) {
		uint32_t filled = 0;

		if (pass > 0)
			usleep(100000);
		for (uint32_t i = 0; i < c->c_g.slab_slots; i++)
			filled += SHMPIPE_SLAB_STAGE(atomic_load(&ctl_slab(c,
			    i)->stage)) == SHMPIPE_SLAB_FILLED;
		if (filled < c->c_g.slab_slots)
			return false;
	}
	return true;
}

/*
 * Clients that never read and between them hold every reply slot are cut
 * off sooner than one alone: meanwhile nobody else gets a request in.
 * Two slow clients of --conn-window 32 fill --window 64; a third client
 * must be answered once one of them is closed as holding up everyone,
 * not after the 10 s a slow client alone is given (it was).
 */
START_TEST(test_limits_slow_clients_fill_window)
{
	char *buf, cw[16], w[16];
	size_t len;
	int slow[2], other, lines = 4000;
	struct cp_pipe p;
	struct ctl c;
	pid_t writer[2];

	snprintf(cw, sizeof(cw), "%d", STARVE_WINDOW / 2);
	snprintf(w, sizeof(w), "%d", STARVE_WINDOW);
	cp_start(&p, 2, CP_ARGS("--window", w, "--conn-window", cw));
	cp_ctl(&p, &c);
	buf = slow_lines(lines, &len);
	for (int i = 0; i < 2; i++) {
		slow[i] = cp_connect(&p);
		writer[i] = cp_send_async(slow[i], buf, len);
	}
	LM_WAIT(&p, slab_stalled(&c), "the slow clients never filled the "
	    "window");
	other = cp_connect(&p);
	cp_expect(other, "echo meanwhile", "OK meanwhile");
	CP_ASSERT(&p, cp_log_has(&p, "while every reply slot was taken; "
	    "closing it"), "the other client was answered, but no slow client "
	    "was closed for holding every reply slot");
	CP_ASSERT(&p, atomic_load(&c.c_hdr->slow_clients) >= 1, "slow_clients "
	    "not counted");
	for (int i = 0; i < 2; i++) {
		kill(writer[i], SIGKILL);	/* the one left may still write */
		wait_child(writer[i]);
		cp_close(slow[i]);
	}
	free(buf);
	cp_close(other);
	ctl_close(&c);
	cp_stop(&p);
}
END_TEST

/*
 * Clients that connect and send nothing, or half a line, are let go; the
 * half line is not answered as if it were whole.
 */
START_TEST(test_limits_idle_half_line)
{
	struct cp_pipe p;
	struct ctl c;
	int silent, half, busy;

	cp_start(&p, 1, CP_ARGS("--idle-timeout", "300"));
	cp_ctl(&p, &c);
	silent = cp_connect(&p);
	half = cp_connect(&p);
	busy = cp_connect(&p);
	cp_sends(half, "echo never fini");
	cp_expect(busy, "echo at work", "OK at work");
	cp_expect_eof(silent);
	cp_expect_eof(half);
	CP_ASSERT(&p, cp_log_count(&p, "idle for 300 ms; closing it") >= 2,
	    "the idle clients were not closed");
	CP_ASSERT(&p, cp_log_has(&p, "idle for 300 ms; closing it and dropping "
	    "the partial line it sent"), "the half line was not dropped");
	cp_close(silent);
	cp_close(half);
	cp_close(busy);
	LM_WAIT(&p, conns_used(&c) == 0, "connection slots still in use");
	ctl_close(&c);
	cp_stop(&p);
}
END_TEST

/* ---- segments and names ------------------------------------------------ */

START_TEST(test_limits_segment_modes)
{
	static const char *const suffix[] = { "ctl", "req", "rep" };
	char path[128];
	struct cp_pipe p;
	struct stat st;

	cp_start(&p, 1, NULL);
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "/dev/shm/shmpipe.%s.%s",
		    p.cp_name, suffix[i]);
		ck_assert_int_eq(stat(path, &st), 0);
		ck_assert_msg((st.st_mode & 0777) == 0600 && st.st_uid ==
		    geteuid(), "%s: mode %03o, uid %u", path,
		    (unsigned)(st.st_mode & 0777), (unsigned)st.st_uid);
	}
	cp_stop(&p);
}
END_TEST

/* Make /dev/shm/shmpipe.NAME.SUFFIX with mode (and owner, if uid >= 0). */
static void
plant(const struct cp_pipe *p, const char *suffix, mode_t mode, int uid)
{
	char name[96];
	int fd;

	snprintf(name, sizeof(name), "/shmpipe.%s.%s", p->cp_name, suffix);
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ck_assert_msg(fd >= 0, "%s: %s", name, strerror(errno));
	ck_assert_int_eq(fchmod(fd, mode), 0);
	if (uid >= 0)
		ck_assert_int_eq(fchown(fd, (uid_t)uid, (gid_t)-1), 0);
	close(fd);
}

static void
unplant(const struct cp_pipe *p, const char *suffix)
{
	char name[96];

	snprintf(name, sizeof(name), "/shmpipe.%s.%s", p->cp_name, suffix);
	ck_assert_msg(shm_unlink(name) == 0, "%s was removed: %s", name,
	    strerror(errno));
}

/*
 * A segment of the pipeline's name that is not ours alone - open to
 * others, or another user's - is neither used nor removed: shmpipe says
 * so and stops.  ctl_open() refuses it too unless told otherwise.
 */
START_TEST(test_limits_foreign_segments)
{
	char prog[CP_PATH_LEN], listen[CP_PATH_LEN + 8];
	struct cp_pipe p;
	struct ctl c;

	cp_prepare(&p, 1);
	cp_prog(prog, sizeof(prog), "shmpipe");
	snprintf(listen, sizeof(listen), "unix:%s", p.cp_sock);
	plant(&p, "ctl", 0644, -1);
	ck_assert_int_eq(ctl_open(&c, p.cp_name, CTL_OPEN_RDONLY), -EPERM);
	ck_assert_int_eq(ctl_open(&c, p.cp_name, CTL_OPEN_RDONLY |
	    CTL_OPEN_ANY), -EAGAIN);		/* empty: not initialised */
	expect_exit(&p, CP_ARGS(prog, "--name", p.cp_name, "--listen", listen,
	    "--pidfile", p.cp_pidfile), 1, CP_ARGS("mode 644",
	    "refusing to use or remove"));
	unplant(&p, "ctl");
	plant(&p, "rep", 0660, -1);
	expect_exit(&p, CP_ARGS(prog, "--name", p.cp_name, "--listen", listen,
	    "--pidfile", p.cp_pidfile), 1, CP_ARGS("shmpipe.", ".rep",
	    "mode 660"));
	unplant(&p, "rep");
	if (geteuid() == 0) {
		plant(&p, "req", 0600, 12345);
		expect_exit(&p, CP_ARGS(prog, "--name", p.cp_name, "--listen",
		    listen, "--pidfile", p.cp_pidfile), 1,
		    CP_ARGS("owned by uid 12345", "refusing"));
		unplant(&p, "req");
	}
	cp_assert_gone(&p);
	/* Its own leftovers, 0600, are cleared as before: it starts. */
	plant(&p, "req", 0600, -1);
	cp_spawn(&p, NULL);
	cp_wait_ready(&p);
	cp_stop(&p);
}
END_TEST

START_TEST(test_limits_names)
{
	static const char *const bad[] = { "..", "a..b", "../x", "x/..",
	    "a/b", "/a/b" };
	char prog[CP_PATH_LEN], shmq[CP_PATH_LEN];
	struct cp_pipe p;

	cp_prepare(&p, 1);
	cp_prog(prog, sizeof(prog), "shmpipe");
	cp_prog(shmq, sizeof(shmq), "shmq");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		expect_exit(&p, CP_ARGS(prog, "--name", bad[i]), 64,
		    CP_ARGS("--name"));
		expect_exit(&p, CP_ARGS(shmq, "create", bad[i]), 64,
		    CP_ARGS("not a segment name"));
		errno = 0;
		ck_assert_ptr_null(shmq_create(bad[i], NULL));
		ck_assert_int_eq(errno, EINVAL);
	}
	cp_assert_gone(&p);
}
END_TEST

/* shmq-bench with a bad flag or value says which, in one line: exit 64. */
START_TEST(test_limits_bench_args)
{
	static const struct {
		const char *arg, *val, *what;
	} bad[] = {
		{ "-r", "0", "-r '0'" }, { "-r", "abc", "-r 'abc'" },
		{ "-r", "17", "1 to 16" }, { "-t", "0", "-t '0'" },
		{ "-t", "1e9", "0.01 to 60" }, { "-t", "0.5x", "-t '0.5x'" },
		{ "-f", "nothing", "-f 'nothing'" }, { "-z", NULL, "-z" },
		{ "-r", NULL, "-r needs a value" }, { "extra", NULL, "'extra'" },
	};
	char prog[CP_PATH_LEN];
	struct cp_pipe p;

	cp_prepare(&p, 1);
	cp_prog(prog, sizeof(prog), "shmq-bench");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_exit(&p, bad[i].val != NULL ? CP_ARGS(prog, bad[i].arg,
		    bad[i].val) : CP_ARGS(prog, bad[i].arg), 64,
		    CP_ARGS(bad[i].what));
	cp_assert_gone(&p);
}
END_TEST

/* Until path exists (true) or timeout_s passes (false). */
static bool
appears(const char *path, int timeout_s)
{
	struct timespec ms = { 0, 1000000 };

	for (long i = 0; i < timeout_s * 1000L; i++) {
		if (access(path, F_OK) == 0)
			return true;
		nanosleep(&ms, NULL);
	}
	return false;
}

/* Processes running prog (cmdlines compared); with sig, signalled. */
static int
running(const char *prog, int sig)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL) {
		char path[300], cmd[CP_PATH_LEN];
		ssize_t len;
		int fd;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		if ((fd = open(path, O_RDONLY)) < 0)
			continue;
		len = read(fd, cmd, sizeof(cmd) - 1);
		close(fd);
		if (len > 0 && strcmp(cmd, prog) == 0) {
			n++;
			if (sig != 0)
				(void)kill(atoi(e->d_name), sig);
		}
	}
	closedir(d);
	return n;
}

/*
 * shmq-bench killed in the middle of a run (^C, kill) removes its queues
 * and takes its workers with it: nothing in /dev/shm, nobody left blocked
 * on a queue that is gone.
 */
START_TEST(test_limits_bench_killed)
{
	char prog[CP_PATH_LEN], a[64], b[72];
	int status, left = 0;
	bool left_a, left_b;
	pid_t pid;

	cp_prog(prog, sizeof(prog), "shmq-bench");
	pid = cu_fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		execl(prog, prog, "-p", (char *)NULL);
		_exit(127);
	}
	snprintf(a, sizeof(a), "/dev/shm/shmq-bench-%d", (int)pid);
	snprintf(b, sizeof(b), "%sb", a);
	ck_assert_msg(appears(a, 60), "%s never appeared", a);
	for (int i = 0; i < 6000 && running(prog, 0) < 2; i++)
		usleep(10000);		/* until its first worker runs */
	ck_assert_msg(running(prog, 0) >= 2, "no shmq-bench worker started");
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(cu_wait(pid, &status, 30), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM,
	    "shmq-bench did not die of its SIGTERM: status %#x", status);
	left_a = unlink(a) == 0;	/* checked after the cleanup */
	left_b = unlink(b) == 0;
	/* Its workers get SIGKILL when it dies; give the kernel a moment
	 * to deliver it, looking every 10 ms for at most 10 s. */
	for (int i = 0; i < 1000 && (left = running(prog, 0)) > 0; i++)
		usleep(10000);
	if (left > 0)
		(void)running(prog, SIGKILL);
	ck_assert_msg(!left_a && !left_b, "shmq-bench left %s behind",
	    left_a ? a : b);
	ck_assert_msg(left == 0, "%d shmq-bench workers outlived the run",
	    left);
}
END_TEST

Suite *
limits_suite(void)
{
	Suite *s = suite_create("limits");
	TCase *tc;

	cp_init();
	tc = cp_tcase("Limits", 120);
	tcase_add_test(tc, test_limits_enospc);
	tcase_add_test(tc, test_limits_emfile_accept);
	tcase_add_test(tc, test_limits_emfile_supervisor);
	tcase_add_test(tc, test_limits_queue_full);
	tcase_add_test(tc, test_limits_slow_client);
	tcase_add_test(tc, test_limits_slow_clients_fill_window);
	tcase_add_test(tc, test_limits_idle_half_line);
	tcase_add_test(tc, test_limits_segment_modes);
	tcase_add_test(tc, test_limits_foreign_segments);
	tcase_add_test(tc, test_limits_names);
	tcase_add_test(tc, test_limits_bench_args);
	tcase_add_test(tc, test_limits_bench_killed);
	suite_add_tcase(s, tc);
	return s;
}
