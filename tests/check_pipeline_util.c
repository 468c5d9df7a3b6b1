/* SPDX-License-Identifier: BSD-2-Clause */
/* check_pipeline_util.c - run a shmpipe and shmpipe-bench for the tests. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_pipeline_util.h"
#include "check_util.h"
#include "supervisor.h"

#define CP_ARGV_MAX	64
#define CP_POLL_NS	1000000L	/* between looks at what we wait for */
#define CP_DUMP_BYTES	6000

static pid_t	 cp_runner;
static unsigned	 cp_seq;
static bool	 cp_threads_mode;	/* set by each test's fixture */

void
cp_init(void)
{
	cp_runner = getpid();
}

void
cp_prog(char *buf, size_t len, const char *prog)
{
	const char *b = getenv("SHMPIPE_BUILD");

	snprintf(buf, len, "%s/%s", b != NULL && b[0] != '\0' ? b : "build",
	    prog);
}

void
cp_server(char *buf, size_t len)
{
	cp_prog(buf, len, cp_threads_mode ? "shmpipe-threaded" : "shmpipe");
}

bool
cp_threads(void)
{
	return cp_threads_mode;
}

static uint64_t
cp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A short pause between looks at something we wait for. */
static void
cp_nap(void)
{
	struct timespec ts = { 0, CP_POLL_NS };

	nanosleep(&ts, NULL);
}

/* ---- the runner's sweep ------------------------------------------------ */

/* Is pid one of ours, a shmpipe or a shmpipe-bench, still running? */
static bool
cp_is_ours(pid_t pid)
{
	char path[64], cmd[256];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return false;
	n = read(fd, cmd, sizeof(cmd) - 1);
	close(fd);
	if (n <= 0)
		return false;
	cmd[n] = '\0';
	return strstr(cmd, "shmpipe") != NULL;
}

/* Kill the processes dir/pids names, then remove dir and its files. */
static void
cp_sweep_dir(const char *dir)
{
	char path[600];
	struct dirent *de;
	FILE *f;
	DIR *d;
	int pid;

	snprintf(path, sizeof(path), "%s/pids", dir);
	if ((f = fopen(path, "re")) != NULL) {
		while (fscanf(f, "%d", &pid) == 1)
			if (pid > 0 && cp_is_ours(pid))
				kill(pid, SIGKILL);
		fclose(f);
	}
	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

void
cp_sweep(void)
{
	char prefix[32], path[300];
	struct dirent *de;
	DIR *d;

	snprintf(prefix, sizeof(prefix), "ckp%d-", (int)cp_runner);
	if ((d = opendir("/tmp")) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
				continue;
			snprintf(path, sizeof(path), "/tmp/%s", de->d_name);
			cp_sweep_dir(path);
		}
		closedir(d);
	}
	snprintf(prefix, sizeof(prefix), "shmpipe.ckp%d-", (int)cp_runner);
	if ((d = opendir("/dev/shm")) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
				continue;
			fprintf(stderr, "left in /dev/shm: %s\n", de->d_name);
			snprintf(path, sizeof(path), "/dev/shm/%s", de->d_name);
			unlink(path);
		}
		closedir(d);
	}
}

static void
cp_mode_procs(void)
{
	cp_threads_mode = false;
}

static void
cp_mode_threads(void)
{
	cp_threads_mode = true;
}

/*
 * The mode is set in each test (a checked fixture), not when the suites
 * are made: both suites exist before any test runs, and with CK_FORK=no
 * one process runs them all.
 */
static TCase *
cp_tcase_mode(const char *name, int timeout_s, bool threads)
{
	TCase *tc = tcase_create(name);

	tcase_add_unchecked_fixture(tc, NULL, cp_sweep);
	tcase_add_checked_fixture(tc, threads ? cp_mode_threads :
	    cp_mode_procs, NULL);
	tcase_set_timeout(tc, timeout_s);
	return tc;
}

TCase *
cp_tcase(const char *name, int timeout_s)
{
	return cp_tcase_mode(name, timeout_s, false);
}

TCase *
cp_tcase_threads(const char *name, int timeout_s)
{
	return cp_tcase_mode(name, timeout_s, true);
}

/* ---- processes --------------------------------------------------------- */

int
cp_waitpid(pid_t pid, int *status, int timeout_ms)
{
	int pfd = pidfd_open(pid, 0), r;
	struct pollfd pf;

	ck_assert_msg(pfd >= 0, "pidfd_open(%d): %s", (int)pid,
	    strerror(errno));
	pf = (struct pollfd){ .fd = pfd, .events = POLLIN };
	do
		r = poll(&pf, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	close(pfd);
	if (r == 0)
		return 0;
	while ((r = waitpid(pid, status, 0)) < 0 && errno == EINTR)
		;
	ck_assert_msg(r == pid, "waitpid(%d): %s", (int)pid, strerror(errno));
	return 1;
}

char
cp_pid_state(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	/* "pid (comm) S ...": the name may hold anything, ')' too. */
	if ((p = strrchr(buf, ')')) == NULL || p[1] == '\0')
		return 0;
	return p[2];
}

bool
cp_pid_gone(pid_t pid, int timeout_s)
{
	uint64_t end = cp_now_ms() + (uint64_t)timeout_s * 1000u;
	char st;

	while (cp_now_ms() < end) {
		/* A zombie has ended. */
		if ((st = cp_pid_state(pid)) == 0 || st == 'Z')
			return true;
		cp_nap();
	}
	return false;
}

/* Note a pid in the directory for the runner's sweep. */
static void
cp_note_pid(const char *dir, pid_t pid)
{
	char path[CP_DIR_LEN + 8];
	FILE *f;

	snprintf(path, sizeof(path), "%s/pids", dir);
	if ((f = fopen(path, "ae")) != NULL) {
		fprintf(f, "%d\n", (int)pid);
		fclose(f);
	}
}

/* fork and exec argv with stdin, stdout and stderr as given. */
static pid_t
cp_exec(const char *dir, const char *const *argv, int in_fd,
    const char *out, const char *err)
{
	pid_t pid = cu_fork();
	int fd;

	if (pid == 0) {
		fd = in_fd >= 0 ? in_fd : open("/dev/null", O_RDONLY);
		dup2(fd, STDIN_FILENO);
		fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, STDOUT_FILENO);
		fd = open(err, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, STDERR_FILENO);
		close_range(3, ~0u, 0);
		execv(argv[0], (char *const *)argv);
		dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0],
		    strerror(errno));
		_exit(127);
	}
	cp_note_pid(dir, pid);
	return pid;
}

pid_t
cp_send_async(int fd, const void *buf, size_t len)
{
	const char *s = buf;
	pid_t pid = cu_fork();
	ssize_t n;

	if (pid != 0)
		return pid;
	while (len > 0) {
		n = send(fd, s, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(1);
		s += n;
		len -= (size_t)n;
	}
	_exit(0);
}

void
cp_prepare(struct cp_pipe *p, unsigned procs)
{
	unsigned n = cp_seq++;

	memset(p, 0, sizeof(*p));
	snprintf(p->cp_dir, sizeof(p->cp_dir), "/tmp/ckp%d-%d-%u.XXXXXX",
	    (int)cp_runner, (int)getpid(), n);
	ck_assert_msg(mkdtemp(p->cp_dir) != NULL, "mkdtemp: %s",
	    strerror(errno));
	snprintf(p->cp_name, sizeof(p->cp_name), "ckp%d-%d-%u", (int)cp_runner,
	    (int)getpid(), n);
	snprintf(p->cp_sock, sizeof(p->cp_sock), "%s/sock", p->cp_dir);
	snprintf(p->cp_pidfile, sizeof(p->cp_pidfile), "%s/pid", p->cp_dir);
	snprintf(p->cp_log, sizeof(p->cp_log), "%s/log", p->cp_dir);
	snprintf(p->cp_out, sizeof(p->cp_out), "%s/out", p->cp_dir);
	p->cp_procs = procs;
	p->cp_threads = cp_threads_mode;
}

void
cp_use_tcp(struct cp_pipe *p)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_msg(fd >= 0 && bind(fd, (struct sockaddr *)&sin,
	    sizeof(sin)) == 0 && getsockname(fd, (struct sockaddr *)&sin,
	    &len) == 0, "no free TCP port: %s", strerror(errno));
	close(fd);
	snprintf(p->cp_tcp, sizeof(p->cp_tcp), "127.0.0.1:%u",
	    (unsigned)ntohs(sin.sin_port));
	p->cp_bench_tcp = true;
}

pid_t
cp_spawnv(struct cp_pipe *p, const char *const *argv, int in_fd)
{
	return cp_exec(p->cp_dir, argv, in_fd, p->cp_out, p->cp_log);
}

pid_t
cp_spawn(struct cp_pipe *p, const char *const *extra)
{
	const char *argv[CP_ARGV_MAX];
	char prog[CP_PATH_LEN], listen[CP_PATH_LEN + 8], procs[16], tcp[40];
	int n = 0;

	if (p->cp_binary != NULL)
		cp_prog(prog, sizeof(prog), p->cp_binary);
	else
		cp_server(prog, sizeof(prog));
	snprintf(listen, sizeof(listen), "unix:%s", p->cp_sock);
	snprintf(procs, sizeof(procs), "%u", p->cp_procs);
	argv[n++] = prog;
	argv[n++] = "--name";
	argv[n++] = p->cp_name;
	argv[n++] = "--listen";
	argv[n++] = listen;
	if (p->cp_tcp[0] != '\0') {
		snprintf(tcp, sizeof(tcp), "tcp:%s", p->cp_tcp);
		argv[n++] = "--listen";
		argv[n++] = tcp;
	}
	argv[n++] = "--pidfile";
	argv[n++] = p->cp_pidfile;
	argv[n++] = "--processors";
	argv[n++] = procs;
	for (int i = 0; extra != NULL && extra[i] != NULL; i++) {
		ck_assert_int_lt(n, CP_ARGV_MAX - 1);
		argv[n++] = extra[i];
	}
	argv[n] = NULL;
	p->cp_pid = cp_spawnv(p, argv, -1);
	return p->cp_pid;
}

void
cp_start(struct cp_pipe *p, unsigned procs, const char *const *extra)
{
	cp_prepare(p, procs);
	cp_spawn(p, extra);
	cp_wait_ready(p);
}

/* Fail if the supervisor has ended while we wait for something else. */
static void
cp_check_alive(struct cp_pipe *p)
{
	int st;

	if (p->cp_pid == 0 || waitpid(p->cp_pid, &st, WNOHANG) != p->cp_pid)
		return;
	p->cp_pid = 0;
	p->cp_status = st;
	cp_dump(p, "the supervisor ended");
	ck_abort_msg("shmpipe %s ended (%s %d) while we waited", p->cp_name,
	    WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ?
	    WEXITSTATUS(st) : WTERMSIG(st));
}

void
cp_ctl(struct cp_pipe *p, struct ctl *c)
{
	uint64_t end = cp_now_ms() + CP_WAIT_S * 1000u;
	int r;

	for (;;) {
		if (!p->cp_threads)
			r = ctl_open(c, p->cp_name, CTL_OPEN_RDONLY);
		else
			r = p->cp_pid > 0 ? ctl_open_pid(c, p->cp_pid,
			    p->cp_name, CTL_OPEN_RDONLY) : -ESRCH;
		/* A killed supervisor's segment is not this one's. */
		if (r == 0 && (p->cp_pid == 0 || c->c_hdr->supervisor_pid ==
		    (uint32_t)p->cp_pid))
			return;
		if (r == 0)
			ctl_close(c);
		CP_ASSERT(p, (r == 0 || r == -ENOENT || r == -EAGAIN ||
		    r == -ENODATA) && cp_now_ms() < end, "ctl_open(%s): %s",
		    p->cp_name, strerror(-r));
		cp_check_alive(p);
		cp_nap();
	}
}

pid_t
cp_row_pid(const struct ctl *c, uint32_t row)
{
	return (pid_t)atomic_load(&ctl_proc(c, row)->pid);
}

void
cp_wait_ready(struct cp_pipe *p)
{
	uint64_t end = cp_now_ms() + CP_WAIT_S * 1000u;
	uint32_t rows = SV_ROW_PROC0 + p->cp_procs, ready;
	struct ctl c;

	cp_ctl(p, &c);
	for (;;) {
		ready = 0;
		for (uint32_t i = 0; i < rows; i++)
			ready += atomic_load(&ctl_proc(&c, i)->state) ==
			    SHMPIPE_PROC_READY && cp_row_pid(&c, i) != 0;
		if (ready == rows)
			break;
		CP_ASSERT(p, cp_now_ms() < end, "%s: %u of %u stages ready "
		    "after %d s", p->cp_name, ready, rows, CP_WAIT_S);
		cp_check_alive(p);
		cp_nap();
	}
	ctl_close(&c);
}

int
cp_wait_exit(struct cp_pipe *p, int timeout_s)
{
	if (p->cp_pid != 0) {
		CP_ASSERT(p, cp_waitpid(p->cp_pid, &p->cp_status,
		    timeout_s * 1000) == 1, "shmpipe %s still running after "
		    "%d s", p->cp_name, timeout_s);
		p->cp_pid = 0;
	}
	return p->cp_status;
}

int
cp_segments(const char *name)
{
	char prefix[64];
	struct dirent *de;
	DIR *d = opendir("/dev/shm");
	int n = 0;

	if (d == NULL)
		return 0;
	snprintf(prefix, sizeof(prefix), "shmpipe.%s.", name);
	while ((de = readdir(d)) != NULL)
		n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

void
cp_assert_gone(struct cp_pipe *p)
{
	CP_ASSERT(p, cp_segments(p->cp_name) == 0, "segments of %s left in "
	    "/dev/shm", p->cp_name);
	CP_ASSERT(p, access(p->cp_sock, F_OK) != 0, "socket %s left",
	    p->cp_sock);
	CP_ASSERT(p, access(p->cp_pidfile, F_OK) != 0, "pidfile %s left",
	    p->cp_pidfile);
}

void
cp_stop(struct cp_pipe *p)
{
	int st;

	CP_ASSERT(p, p->cp_pid != 0, "shmpipe %s is not running",
	    p->cp_name);
	kill(p->cp_pid, SIGTERM);
	st = cp_wait_exit(p, CP_WAIT_S);
	CP_ASSERT(p, WIFEXITED(st) && WEXITSTATUS(st) == 0, "shmpipe %s: %s "
	    "%d, expected exit 0", p->cp_name, WIFEXITED(st) ? "exit" :
	    "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	/* ASan, UBSan and TSan all end a report with "SUMMARY: ...". */
	CP_ASSERT(p, !cp_log_has(p, "Sanitizer"), "a sanitizer reported a "
	    "problem in %s", p->cp_name);
	cp_assert_gone(p);
}

/* ---- the log ----------------------------------------------------------- */

/* The whole of a file, NUL-terminated (malloc'd), or NULL. */
static char *
cp_slurp(const char *path, size_t *lenp)
{
	struct stat st;
	char *buf;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return NULL;
	if (fstat(fd, &st) != 0 || (buf = malloc((size_t)st.st_size + 1)) ==
	    NULL) {
		close(fd);
		return NULL;
	}
	n = read(fd, buf, (size_t)st.st_size);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	if (lenp != NULL)
		*lenp = n > 0 ? (size_t)n : 0;
	return buf;
}

size_t
cp_log_count(const struct cp_pipe *p, const char *needle)
{
	char *log = cp_slurp(p->cp_log, NULL), *s;
	size_t n = 0;

	for (s = log; s != NULL && (s = strstr(s, needle)) != NULL; s++)
		n++;
	free(log);
	return n;
}

bool
cp_log_has(const struct cp_pipe *p, const char *needle)
{
	return cp_log_count(p, needle) > 0;
}

void
cp_wait_log(const struct cp_pipe *p, const char *needle)
{
	uint64_t end = cp_now_ms() + CP_WAIT_S * 1000u;

	while (!cp_log_has(p, needle)) {
		CP_ASSERT(p, cp_now_ms() < end, "'%s' not logged in %d s",
		    needle, CP_WAIT_S);
		cp_nap();
	}
}

void
cp_dump(const struct cp_pipe *p, const char *why)
{
	size_t len;
	char *log = cp_slurp(p->cp_log, &len);

	fprintf(stderr, "---- %s: %s; its log%s:\n", p->cp_name, why,
	    log != NULL && len > CP_DUMP_BYTES ? " (the end)" : "");
	if (log != NULL)
		fputs(len > CP_DUMP_BYTES ? log + len - CP_DUMP_BYTES : log,
		    stderr);
	fprintf(stderr, "---- end of %s's log\n", p->cp_name);
	free(log);
}

/* ---- clients ----------------------------------------------------------- */

int
cp_connect(const struct cp_pipe *p)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { CP_WAIT_S, 0 };

	ck_assert_msg(fd >= 0, "socket: %s", strerror(errno));
	strlcpy(sun.sun_path, p->cp_sock, sizeof(sun.sun_path));
	CP_ASSERT(p, connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0,
	    "connect %s: %s", p->cp_sock, strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

void
cp_send(int fd, const void *buf, size_t len)
{
	const char *s = buf;
	ssize_t n;

	while (len > 0) {
		n = send(fd, s, len, MSG_NOSIGNAL);
		if (n < 0 && errno == ENOTSOCK)
			n = write(fd, s, len);		/* a file or a pipe */
		if (n < 0 && errno == EINTR)
			continue;
		ck_assert_msg(n > 0, "send: %s", n < 0 ? strerror(errno) :
		    "nothing written");
		s += n;
		len -= (size_t)n;
	}
}

void
cp_sends(int fd, const char *s)
{
	cp_send(fd, s, strlen(s));
}

/* Bytes a socket has read past the last line handed out, per fd. */
#define CP_RBUF		65536
#define CP_FDS		1024
static struct {
	char	 *rb_buf;
	size_t	  rb_len;
} cp_rbuf[CP_FDS];

void
cp_close(int fd)
{
	if (fd >= 0 && fd < CP_FDS)
		cp_rbuf[fd].rb_len = 0;
	close(fd);
}

ssize_t
cp_line(int fd, char *buf, size_t size)
{
	struct pollfd pf = { .fd = fd, .events = POLLIN };
	char *nl;
	ssize_t n;
	size_t len;

	ck_assert_int_lt(fd, CP_FDS);
	if (cp_rbuf[fd].rb_buf == NULL)
		ck_assert_ptr_nonnull(cp_rbuf[fd].rb_buf = malloc(CP_RBUF));
	while ((nl = memchr(cp_rbuf[fd].rb_buf, '\n', cp_rbuf[fd].rb_len)) ==
	    NULL) {
		ck_assert_msg(cp_rbuf[fd].rb_len < CP_RBUF, "reply line longer "
		    "than %d bytes", CP_RBUF);
		ck_assert_msg(poll(&pf, 1, CP_WAIT_S * 1000) == 1, "no reply "
		    "within %d s", CP_WAIT_S);
		n = read(fd, cp_rbuf[fd].rb_buf + cp_rbuf[fd].rb_len,
		    CP_RBUF - cp_rbuf[fd].rb_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || (n < 0 && errno == ECONNRESET)) {
			ck_assert_msg(cp_rbuf[fd].rb_len == 0, "the stream "
			    "ended in the middle of a line: '%.*s'",
			    (int)cp_rbuf[fd].rb_len, cp_rbuf[fd].rb_buf);
			return -1;
		}
		ck_assert_msg(n > 0, "read: %s", strerror(errno));
		cp_rbuf[fd].rb_len += (size_t)n;
	}
	len = (size_t)(nl - cp_rbuf[fd].rb_buf);
	ck_assert_msg(len < size, "reply line of %zu bytes, room for %zu", len,
	    size - 1);
	memcpy(buf, cp_rbuf[fd].rb_buf, len);
	buf[len] = '\0';
	cp_rbuf[fd].rb_len -= len + 1;
	memmove(cp_rbuf[fd].rb_buf, nl + 1, cp_rbuf[fd].rb_len);
	return (ssize_t)len;
}

void
cp_expect(int fd, const char *line, const char *want)
{
	char got[8192];

	cp_sends(fd, line);
	cp_sends(fd, "\n");
	ck_assert_msg(cp_line(fd, got, sizeof(got)) >= 0, "'%s': the "
	    "connection closed instead of a reply", line);
	ck_assert_msg(strcmp(got, want) == 0, "'%s': got '%s', expected '%s'",
	    line, got, want);
}

void
cp_expect_eof(int fd)
{
	char got[8192];
	ssize_t n = cp_line(fd, got, sizeof(got));

	ck_assert_msg(n < 0, "expected the end of the stream, got '%s'", got);
}

/* ---- shmpipe-bench ----------------------------------------------------- */

void
cp_bench_start(struct cp_bench *b, const struct cp_pipe *p,
    const char *const *args)
{
	static unsigned runs;
	const char *argv[CP_ARGV_MAX];
	char prog[CP_PATH_LEN];
	int n = 0;

	memset(b, 0, sizeof(*b));
	cp_prog(prog, sizeof(prog), "shmpipe-bench");
	snprintf(b->b_out, sizeof(b->b_out), "%s/bench%u.out", p->cp_dir,
	    runs);
	snprintf(b->b_err, sizeof(b->b_err), "%s/bench%u.err", p->cp_dir,
	    runs++);
	argv[n++] = prog;
	argv[n++] = p->cp_bench_tcp ? "--tcp" : "--unix";
	argv[n++] = p->cp_bench_tcp ? p->cp_tcp : p->cp_sock;
	argv[n++] = "--json";
	for (int i = 0; args != NULL && args[i] != NULL; i++) {
		ck_assert_int_lt(n, CP_ARGV_MAX - 1);
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	b->b_pid = cp_exec(p->cp_dir, argv, -1, b->b_out, b->b_err);
}

/* Read what the run printed once it has ended. */
static void
cp_bench_collect(struct cp_bench *b)
{
	char *s = cp_slurp(b->b_out, NULL);

	strlcpy(b->b_json, s != NULL ? s : "", sizeof(b->b_json));
	free(s);
	b->b_pid = 0;
}

bool
cp_bench_done(struct cp_bench *b)
{
	if (b->b_pid == 0)
		return true;
	if (waitpid(b->b_pid, &b->b_status, WNOHANG) != b->b_pid)
		return false;
	cp_bench_collect(b);
	return true;
}

int
cp_bench_wait(struct cp_bench *b)
{
	if (b->b_pid != 0) {
		ck_assert_msg(cp_waitpid(b->b_pid, &b->b_status,
		    CP_WAIT_S * 1000) == 1, "shmpipe-bench still running "
		    "after %d s", CP_WAIT_S);
		cp_bench_collect(b);
	}
	return WIFEXITED(b->b_status) ? WEXITSTATUS(b->b_status) : 128 +
	    WTERMSIG(b->b_status);
}

uint64_t
cp_bench_u64(const struct cp_bench *b, const char *key)
{
	char pat[64];
	const char *s;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	ck_assert_msg((s = strstr(b->b_json, pat)) != NULL, "no %s in the "
	    "bench's summary '%s'", key, b->b_json);
	return strtoull(s + strlen(pat), NULL, 10);
}

/* What the bench said besides its summary, for a failing test. */
static void
cp_bench_dump(const struct cp_bench *b)
{
	char *err = cp_slurp(b->b_err, NULL);

	fprintf(stderr, "---- shmpipe-bench: %s\n%s---- end of its stderr\n",
	    b->b_json, err != NULL ? err : "");
	free(err);
}

void
cp_bench_assert_clean(const struct cp_pipe *p, const struct cp_bench *b,
    uint64_t requests)
{
	static const char *const bad[] = { "wrong", "out_of_order",
	    "missing", "duplicated", "connections_dropped", "timeouts" };
	int code = WIFEXITED(b->b_status) ? WEXITSTATUS(b->b_status) : -1;
	bool ok = code == 0 && strstr(b->b_json, "\"passed\":true") != NULL;

	for (size_t i = 0; ok && i < sizeof(bad) / sizeof(bad[0]); i++)
		ok = cp_bench_u64(b, bad[i]) == 0;
	if (ok)
		ok = cp_bench_u64(b, "replies") == cp_bench_u64(b, "sent") &&
		    (requests == 0 || cp_bench_u64(b, "sent") == requests);
	if (!ok) {
		cp_bench_dump(b);
		cp_dump(p, "shmpipe-bench failed");
	}
	ck_assert_msg(ok, "shmpipe-bench exit %d (status %#x): %s", code,
	    b->b_status, b->b_json);
}

void
cp_bench_run(const struct cp_pipe *p, uint64_t requests,
    const char *const *args)
{
	struct cp_bench b;

	cp_bench_start(&b, p, args);
	cp_bench_wait(&b);
	cp_bench_assert_clean(p, &b, requests);
}

void
cp_handler_build(const struct cp_pipe *p, const char *name, const char *src,
    char *so, size_t solen)
{
	char c_src[CP_PATH_LEN + 32], cmd[3 * CP_PATH_LEN + 64];
	FILE *f;

	snprintf(c_src, sizeof(c_src), "%s/%s.c", p->cp_dir, name);
	snprintf(so, solen, "%s/%s.so", p->cp_dir, name);
	ck_assert_ptr_nonnull(f = fopen(c_src, "we"));
	fputs(src, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "cc -std=c11 -fPIC -shared -Iinclude -o %s "
	    "%s", so, c_src);
	ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
}

void
cp_serves(const struct cp_pipe *p, const char *word)
{
	char line[128], want[128];
	int fd = cp_connect(p);

	snprintf(line, sizeof(line), "echo %s", word);
	snprintf(want, sizeof(want), "OK %s", word);
	cp_expect(fd, line, want);
	cp_close(fd);
}
