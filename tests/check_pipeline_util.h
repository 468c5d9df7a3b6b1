/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_pipeline_util.h - helpers of the pipeline suites: start a shmpipe
 * (or a shmpipe-threaded) of its own in a temporary directory, wait for
 * real signs of life (its process table, its log, a process ending), talk
 * to it over its Unix socket, run shmpipe-bench against it, and stop it
 * leaving nothing.
 *
 * Every process a test starts stays in the test's process group, so Check
 * kills what a failed test left; the runner's sweep (cp_sweep) kills what
 * is left without fork mode, and removes segments and directories.
 */
#ifndef CHECK_PIPELINE_UTIL_H
#define CHECK_PIPELINE_UTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ctl.h"

#define CP_PATH_LEN	128
#define CP_DIR_LEN	64
#define CP_WAIT_S	60	/* anything slower than this is wedged */

/* A pipeline under test. */
struct cp_pipe {
	char		 cp_dir[CP_DIR_LEN];	/* socket, pidfile, logs */
	char		 cp_name[48];		/* --name */
	char		 cp_sock[CP_PATH_LEN];	/* --listen unix: */
	char		 cp_pidfile[CP_PATH_LEN];
	char		 cp_log[CP_PATH_LEN];	/* its stderr */
	char		 cp_out[CP_PATH_LEN];	/* its stdout */
	char		 cp_tcp[32];		/* also tcp:, "HOST:PORT" */
	bool		 cp_bench_tcp;		/* benches go there */
	unsigned	 cp_procs;		/* --processors */
	const char	*cp_binary;		/* in the build; NULL: shmpipe */
	bool		 cp_threads;		/* shmpipe-threaded */
	pid_t		 cp_pid;		/* supervisor; 0 once reaped */
	int		 cp_status;		/* its wait status, reaped */
};

/* A shmpipe-bench run. */
struct cp_bench {
	pid_t		 b_pid;			/* 0 once reaped */
	int		 b_status;
	char		 b_out[CP_PATH_LEN];	/* its stdout: the JSON */
	char		 b_err[CP_PATH_LEN];
	char		 b_json[4096];
};

/* In the runner, when the suite is made: names carry the runner's pid. */
void	 cp_init(void);

/* The runner's sweep (an unchecked teardown): kill, unlink, remove. */
void	 cp_sweep(void);

/*
 * A TCase with cp_sweep as its unchecked teardown and a timeout, whose
 * tests run build/shmpipe (cp_tcase) or build/shmpipe-threaded
 * (cp_tcase_threads): a checked fixture sets which, in each test.
 */
TCase	*cp_tcase(const char *name, int timeout_s);
TCase	*cp_tcase_threads(const char *name, int timeout_s);

/* Does this test run the threaded build? */
bool	 cp_threads(void);

/* $SHMPIPE_BUILD/prog (default build/prog) into buf. */
void	 cp_prog(char *buf, size_t len, const char *prog);

/* The server this test runs: shmpipe or shmpipe-threaded, as cp_prog. */
void	 cp_server(char *buf, size_t len);

/* A fresh temporary directory and unique names for p; nothing runs. */
void	 cp_prepare(struct cp_pipe *p, unsigned procs);

/* Listen on a free TCP port too, and send benches there. */
void	 cp_use_tcp(struct cp_pipe *p);

/*
 * Start the server (cp_server) with --name, --listen unix:, --pidfile, --processors
 * and the NULL-terminated extra arguments; stderr to cp_log.  cp_spawnv
 * takes an argv of its own (no flags added) and stdin (-1: /dev/null).
 */
pid_t	 cp_spawn(struct cp_pipe *p, const char *const *extra);
pid_t	 cp_spawnv(struct cp_pipe *p, const char *const *argv, int in_fd);

/*
 * Write buf to fd from a child process (exit 0 when all is sent), so that
 * the test can read the replies meanwhile: a client that only writes
 * stalls the server.
 */
pid_t	 cp_send_async(int fd, const void *buf, size_t len);
#define CP_ARGS(...)	((const char *const[]){ __VA_ARGS__, NULL })

/* cp_prepare, cp_spawn, then wait until every stage is READY. */
void	 cp_start(struct cp_pipe *p, unsigned procs, const char *const *extra);

/* Wait until the request, reply and every processor row are READY. */
void	 cp_wait_ready(struct cp_pipe *p);

/*
 * Map the control segment read-only, waiting for it to exist: the named
 * segment of shmpipe, the memfd of a shmpipe-threaded (ctl_open_pid).
 */
void	 cp_ctl(struct cp_pipe *p, struct ctl *c);

/* The pid in a process table row (SV_ROW_*), 0 if none. */
pid_t	 cp_row_pid(const struct ctl *c, uint32_t row);

/*
 * SIGTERM, wait, assert exit 0, that nothing is left and that no
 * sanitizer reported anything in its log.
 */
void	 cp_stop(struct cp_pipe *p);

/* Wait for the supervisor to end; its wait status. */
int	 cp_wait_exit(struct cp_pipe *p, int timeout_s);

/* Assert that no segment, socket file or pidfile of p is left. */
void	 cp_assert_gone(struct cp_pipe *p);

/* Segments /dev/shm/shmpipe.NAME.* that exist. */
int	 cp_segments(const char *name);

/* Is needle in the log (from byte `from` on)?  Wait for it to be. */
bool	 cp_log_has(const struct cp_pipe *p, const char *needle);
void	 cp_wait_log(const struct cp_pipe *p, const char *needle);
size_t	 cp_log_count(const struct cp_pipe *p, const char *needle);

/* The log's last lines on stderr: what a failing test shows. */
void	 cp_dump(const struct cp_pipe *p, const char *why);

/* Compile handler source src into DIR/name.so (its path into so). */
void	 cp_handler_build(const struct cp_pipe *p, const char *name,
	    const char *src, char *so, size_t solen);

/* Assertions that show the pipeline's log before failing. */
#define CP_ASSERT(p, cond, ...) do {					\
	if (!(cond)) {							\
		cp_dump((p), #cond);					\
		ck_abort_msg(__VA_ARGS__);				\
	}								\
} while (0)

/* Wait for a process: 1 ended (status), 0 still running after timeout. */
int	 cp_waitpid(pid_t pid, int *status, int timeout_ms);

/* The state letter of pid in /proc ('R', 'S', 'T', 'Z', ...); 0: gone. */
char	 cp_pid_state(pid_t pid);

/* Wait until pid has gone (or is a zombie of someone else). */
bool	 cp_pid_gone(pid_t pid, int timeout_s);

/* ---- clients ---------------------------------------------------------- */

/* A connected, blocking Unix stream socket to p. */
int	 cp_connect(const struct cp_pipe *p);

/* Close a client socket and forget what was read ahead on it. */
void	 cp_close(int fd);

/* Write all of buf. */
void	 cp_send(int fd, const void *buf, size_t len);
void	 cp_sends(int fd, const char *s);

/*
 * Read one line (without '\n') into buf; its length, or -1 at end of
 * file.  Fails the test if none comes within CP_WAIT_S.
 */
ssize_t	 cp_line(int fd, char *buf, size_t size);

/* Send one line (adding '\n'), assert that the reply is want. */
void	 cp_expect(int fd, const char *line, const char *want);

/* Assert that the next thing on fd is the end of the stream. */
void	 cp_expect_eof(int fd);

/* A new client of p gets "OK word" for "echo word", and goes. */
void	 cp_serves(const struct cp_pipe *p, const char *word);

/* ---- shmpipe-bench ---------------------------------------------------- */

/* Start shmpipe-bench --unix p (or --tcp) --json and the args. */
void	 cp_bench_start(struct cp_bench *b, const struct cp_pipe *p,
	    const char *const *args);

/* Wait for it (CP_WAIT_S at most); its exit status, JSON in b_json. */
int	 cp_bench_wait(struct cp_bench *b);

/* Has it ended?  Reaps it if so. */
bool	 cp_bench_done(struct cp_bench *b);

/* A number from its JSON summary; fails the test if absent. */
uint64_t cp_bench_u64(const struct cp_bench *b, const char *key);

/* Assert a run passed: exit 0, passed, and no wrong/missing/... replies. */
void	 cp_bench_assert_clean(const struct cp_pipe *p,
	    const struct cp_bench *b, uint64_t requests);

/* Run it to the end and assert it was clean. */
void	 cp_bench_run(const struct cp_pipe *p, uint64_t requests,
	    const char *const *args);

#endif /* CHECK_PIPELINE_UTIL_H */
