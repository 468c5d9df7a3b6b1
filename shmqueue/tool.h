/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tool.h - shmq(1), the shell tool that inspects libshmq queues and shmpipe
 * pipelines: what its modules share (exit codes, options, the SIGBUS guard,
 * the scan of /dev/shm, queue snapshots, output helpers).
 *
 * The inspecting commands (ls, show, ps, top, peek, check, gc) map every
 * segment read-only, take no lock, write nothing and make no futex call;
 * put, get, create and rm are ordinary queue users.  The tool is single
 * threaded: the module-level state below is not meant for threads.
 */
#ifndef TOOL_H
#define TOOL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "shmq.h"

/* Exit codes, sysexits(3) values; check uses the Nagios ones instead. */
#define TOOL_EX_USAGE		64	/* bad command line */
#define TOOL_EX_DATAERR		65	/* corrupt or incompatible */
#define TOOL_EX_NOINPUT		66	/* no such segment */
#define TOOL_EX_SOFTWARE	70
#define TOOL_EX_OSERR		71	/* no memory, no /dev/shm */
#define TOOL_EX_CANTCREAT	73	/* create: it exists already */
#define TOOL_EX_TEMPFAIL	75	/* timed out; being created; retry */
#define TOOL_EX_NOPERM		77	/* permission denied */

#define TOOL_NAGIOS_OK		0
#define TOOL_NAGIOS_WARNING	1
#define TOOL_NAGIOS_CRITICAL	2
#define TOOL_NAGIOS_UNKNOWN	3

#define TOOL_SHM_DIR		"/dev/shm"
#define TOOL_SCHEMA		1	/* of the JSON output */
#define TOOL_NAME_LEN		(NAME_MAX + 1)

enum tool_fmt { TOOL_FMT_TABLE, TOOL_FMT_JSON, TOOL_FMT_CSV, TOOL_FMT_PROM };

struct tool_json;
struct option;

/* Options shared by the commands; each command takes the ones it uses. */
struct tool_opts {
	enum tool_fmt	 o_fmt;		/* -o */
	unsigned	 o_window;	/* -w: rate window, 1..8 s (5) */
	unsigned	 o_fill_warn;	/* --fill-warn: percent (80) */
	unsigned	 o_fill_crit;	/* --fill-crit: percent (95) */
	unsigned	 o_stall;	/* --stall: seconds (10) */
	const char	*o_pattern;	/* the PATTERN operand, or NULL */
};

/* Long options of tool_opt_common(); their short letters are o and w. */
#define TOOL_OPT_FILL_WARN	0x100
#define TOOL_OPT_FILL_CRIT	0x101
#define TOOL_OPT_STALL		0x102
#define TOOL_LONG_COMMON \
	{ "output", required_argument, NULL, 'o' }, \
	{ "window", required_argument, NULL, 'w' }, \
	{ "fill-warn", required_argument, NULL, TOOL_OPT_FILL_WARN }, \
	{ "fill-crit", required_argument, NULL, TOOL_OPT_FILL_CRIT }, \
	{ "stall", required_argument, NULL, TOOL_OPT_STALL }, \
	{ "help", no_argument, NULL, 'h' }

/* ---- tool.c: dispatch, options, errors, the SIGBUS guard ------------- */

/*
 * The whole of shmq(1) for argv (argv[0] is the program): installs the
 * SIGBUS guard, runs the command, flushes stdout and returns the exit
 * code.  main() (tool_main.c) is only this; the fuzzer calls it too, any
 * number of times in one process.
 */
int	 tool_run(int argc, char **argv);

/*
 * Flush stdout: 0 if all that was written to it went out, else the errno
 * of its first failure (EIO if no longer known), from then on.  glibc
 * drops a buffer it could not write, so a later fflush() succeeds: a
 * command that flushes early calls this instead, and tool_run reports the
 * failure at the end.
 */
int	 tool_flush(void);

/* Defaults into o. */
void	 tool_opts_init(struct tool_opts *o);

/*
 * Take option ch (with its argument) if it is a common one: 1 if taken, 0
 * if not common, -1 if its value is bad (a message was printed).
 */
int	 tool_opt_common(struct tool_opts *o, int ch, const char *arg);

/*
 * An option getopt_long(3) stopped at (it returned ch, '?' or ':', with
 * opterr 0 and ':' leading the option string) said in the tool's words,
 * "shmq: -z: unknown option", with the usage of cmd under it: unknown,
 * ambiguous, without its value, or with one it does not take.  longopts
 * are cmd's.  Returns TOOL_EX_USAGE.
 */
int	 tool_opt_bad(const char *cmd, int ch, char **argv,
	    const struct option *longopts);

/* Usage of command cmd on stderr ("shmq: " why first, if not NULL);
 * returns TOOL_EX_USAGE.  tool_help prints it on stdout, returns 0. */
int	 tool_usage(const char *cmd, const char *why);
int	 tool_help(const char *cmd);

/* Exit code for an errno value (ENOENT 66, EACCES 77, EBADMSG 65 ...). */
int	 tool_exit_code(int err);

/* A PATTERN operand without "/dev/shm/" or a leading '/'. */
const char *tool_pattern(const char *arg);

/* The PATTERN operand arg of cmd into *pat (tool_pattern): 0, or the
 * usage error of one that is empty ("", "/dev/shm/"), said. */
int	 tool_pattern_arg(const char *cmd, const char *arg, const char **pat);

/* A whole number lo..hi from s; false if it is not one. */
bool	 tool_num(const char *s, long long lo, long long hi,
	    long long *out);

/*
 * Segment name of a NAME operand: "q", "/q" and "/dev/shm/q" are all "q".
 * 0, or -EINVAL (empty, or a '/' or ".." left in it; a message printed).
 */
int	 tool_seg_name(const char *arg, char *out, size_t len);

/*
 * Run fn(arg) with SIGBUS caught: a page of a mapping whose file shrank
 * under fn reads as zeros from then on, and fn runs to its end.  Returns
 * what fn returned, or -EFAULT if there was a SIGBUS: nothing fn read can
 * then be believed, but what it allocated or mapped is where it put it,
 * for the caller to free.  (If a page cannot be replaced, fn is left by
 * siglongjmp and may leak.)  Guards nest.
 */
int	 tool_guard(int (*fn)(void *), void *arg);

/* Clocks: CLOCK_MONOTONIC_COARSE (the queues' stamps) and REALTIME. */
uint64_t tool_coarse_ns(void);
uint64_t tool_real_ns(void);

/* ---- tool_scan.c: which files in /dev/shm are ours -------------------- */

#define TOOL_K_QUEUE	0x01u	/* libshmq segment (right magic) */
#define TOOL_K_PIPE	0x02u	/* shmpipe control segment */
#define TOOL_K_QINIT	0x04u	/* libshmq segment, magic still 0 */
#define TOOL_K_PINIT	0x08u	/* control segment half created */
#define TOOL_K_DENIED	0x10u	/* matches, but we may not read it */
#define TOOL_K_ALL	0x1fu

/* One file of /dev/shm, from its first bytes and its inode. */
struct tool_ent {
	char		 e_name[TOOL_NAME_LEN];	/* no leading '/' */
	unsigned	 e_kind;		/* TOOL_K_* */
	int		 e_err;		/* DENIED: the errno */
	uint16_t	 e_major, e_minor;	/* layout version */
	uint32_t	 e_header_size;
	uint64_t	 e_size;		/* file size */
	uint64_t	 e_seg_size;		/* as the header says */
	uint32_t	 e_capacity, e_msg_max, e_max_procs, e_lease_max;
	pid_t		 e_creator;	/* creator or supervisor */
	uint64_t	 e_creator_start;	/* its start time, ticks */
	uint64_t	 e_created_ns;		/* CLOCK_REALTIME */
	dev_t		 e_dev;
	ino_t		 e_ino;
	uid_t		 e_uid;
	mode_t		 e_mode;
};

/*
 * Classify /dev/shm/name.  0 with e filled if it is ours (or DENIED), else
 * -ENOENT (gone), -EPROTO (another application's file, or an empty one).
 */
int	 tool_classify(const char *name, struct tool_ent *e);

/*
 * Call fn for every file of /dev/shm, in name order, that matches pattern
 * (fnmatch(3); NULL: all) and is of one of the kinds.  *matched counts
 * them.  Returns 0, the first non-zero fn return, or -errno if /dev/shm
 * cannot be read.
 */
typedef int (*tool_scan_fn)(const struct tool_ent *e, void *arg);
int	 tool_scan(const char *pattern, unsigned kinds, tool_scan_fn fn,
	    void *arg, unsigned *matched);

/*
 * The NAME operand of show, peek, rm...: classify it and say what is wrong
 * (no such segment 66, not of kinds 65, permission 77, bad name 64).
 * 0 with e filled, or that exit code.
 */
int	 tool_lookup(const char *arg, unsigned kinds, struct tool_ent *e);

/* Is "shmpipe.NAME.SUFFIX" a pipeline's segment?  NAME into pipe. */
bool	 tool_pipe_name(const char *seg, char *pipe, size_t len,
	    const char **suffix);

/* Is it named as a pipeline's control segment, "shmpipe.NAME.ctl"? */
bool	 tool_pipe_ctl(const char *seg);

/* ---- tool_queue.c: a snapshot of one queue ---------------------------- */

enum tool_state {
	TOOL_ST_OK, TOOL_ST_IDLE, TOOL_ST_BACKLOG, TOOL_ST_FULL,
	TOOL_ST_STALLED, TOOL_ST_STALE, TOOL_ST_CORRUPT,
	TOOL_ST_INCOMPATIBLE, TOOL_ST_INIT, TOOL_ST_DENIED, TOOL_ST_GONE
};

/* What ls shows of a queue.  Fields past q_why are valid if q_have. */
struct tool_qrow {
	char		 q_name[TOOL_NAME_LEN];
	enum tool_state	 q_state;
	const char	*q_why;		/* why CORRUPT etc., or NULL */
	char		 q_whybuf[96];	/* q_why with figures */
	int		 q_err;		/* errno behind the state */
	bool		 q_have;	/* stats were read */
	struct shmq_stats q_st;
	double		 q_put_rate, q_get_rate;	/* per second */
	uint64_t	 q_window_ms;	/* span the rates cover */
	uint32_t	 q_attached, q_attached_alive;
	uint32_t	 q_prod, q_prod_alive;
	uint32_t	 q_cons, q_cons_alive;
};

/* Extra detail for show: the records and leases, malloc'd. */
struct tool_qdetail {
	struct shmq_proc_info	*d_procs;
	int			 d_nprocs;
	struct shmq_lease_info	*d_leases;
	int			 d_nleases;
	bool			*d_alive;	/* per d_procs entry */
};

const char *tool_state_name(enum tool_state st);

/*
 * Snapshot the queue of e into r (and, if d is not NULL, its records and
 * leases; free them with tool_qdetail_free).  The state is always set;
 * failures to read become CORRUPT, INCOMPATIBLE, DENIED, INIT or GONE.
 */
void	 tool_queue_read(const struct tool_ent *e,
	    const struct tool_opts *o, struct tool_qrow *r,
	    struct tool_qdetail *d);
void	 tool_qdetail_free(struct tool_qdetail *d);

/*
 * Say on stderr why the queue of e cannot be opened or read (errno err) in
 * the words of ls and show, "q: CORRUPT: truncated: smaller than its
 * header says"; an err that is no state of a queue (ENOMEM) by its
 * strerror.  Returns the exit status for err.
 */
int	 tool_queue_fail(const struct tool_ent *e, int err);

/* The line ls and show write on stderr for a row's state and its why. */
void	 tool_row_warn(const struct tool_qrow *r);

/* Fill %, 0..100, of a row with stats. */
double	 tool_fill_pct(const struct tool_qrow *r);

/* Exit code of a listing: 65 if a row is CORRUPT or INCOMPATIBLE, else
 * 77 if one is DENIED, else 0. */
int	 tool_rows_exit(const struct tool_qrow *rows, size_t n);

/*
 * Is pid alive, and the process that started at start (0: any)?
 * tool_pid_alive remembers answers until tool_pid_forget(); gc asks
 * shmq_pid_alive() itself, every time.
 */
bool	 tool_pid_alive(pid_t pid, uint64_t start);
void	 tool_pid_forget(void);

/* The letter of /proc/PID/stat (R, S, D, T, t, Z...), or 0 if gone. */
char	 tool_proc_state(pid_t pid);

/* ---- tool_ps.c ------------------------------------------------------- */

/*
 * The state of pipeline's control segment: OK (its supervisor is alive),
 * STALE (dead), CORRUPT, INCOMPATIBLE, INIT, DENIED or GONE; *why is
 * static text, or NULL.
 */
enum tool_state tool_pipe_state(const char *pipeline, const char **why);

/* ---- tool_list.c: the rows of a listing (ls, top, check) -------------- */

struct tool_rows {
	struct tool_qrow *r_rows;
	size_t		  r_n, r_cap;
	unsigned	  r_matched;	/* queues that matched the pattern */
	unsigned	  r_denied;	/* unreadable, left out */
};

/* Snapshot every queue that matches o->o_pattern.  0 or -errno. */
int	 tool_rows_collect(struct tool_rows *rs, const struct tool_opts *o);
void	 tool_rows_free(struct tool_rows *rs);

/* Print rows in o->o_fmt; command names the output in JSON. */
void	 tool_rows_print(const struct tool_rows *rs,
	    const struct tool_opts *o, FILE *f, const char *command);

/* The fields of one row into an open JSON object; all rows as metrics. */
void	 tool_row_json(struct tool_json *j, const struct tool_qrow *r);
void	 tool_rows_prom(const struct tool_qrow *rows, size_t n, FILE *f);

/* Problems with rows (CORRUPT, DENIED...) on stderr, one line each. */
void	 tool_rows_warn(const struct tool_rows *rs);

/* ---- tool_out.c: formatting ------------------------------------------- */

/* humanize_number(3): "950", "4.1k", "12M". */
void	 tool_human(char *buf, size_t len, uint64_t n);
void	 tool_human_rate(char *buf, size_t len, double per_s);
/* An age: "850ms", "12.3s", "5m03s", "2h05m", "3d04h"; "-" if < 0. */
void	 tool_age(char *buf, size_t len, int64_t ms);

/* A table with aligned columns ('l' or 'r' per column in align). */
struct tool_table {
	unsigned	 t_ncols;
	const char	*t_align;
	char		**t_cells;	/* row 0: the header */
	size_t		 t_nrows, t_cap;
};
void	 tool_table_init(struct tool_table *t, const char *align, ...);
void	 tool_table_row(struct tool_table *t, ...);
void	 tool_table_print(const struct tool_table *t, FILE *f);
void	 tool_table_free(struct tool_table *t);

/* A JSON writer: commas and escapes are its business. */
#define TOOL_JSON_DEPTH	16
struct tool_json {
	FILE		*j_f;
	int		 j_depth;
	bool		 j_first[TOOL_JSON_DEPTH];
};
void	 tool_json_init(struct tool_json *j, FILE *f);
void	 tool_json_open(struct tool_json *j, const char *key, char brace);
void	 tool_json_close(struct tool_json *j, char brace);
void	 tool_json_str(struct tool_json *j, const char *key, const char *s);
void	 tool_json_u64(struct tool_json *j, const char *key, uint64_t v);
void	 tool_json_i64(struct tool_json *j, const char *key, int64_t v);
void	 tool_json_num(struct tool_json *j, const char *key, double v);
void	 tool_json_bool(struct tool_json *j, const char *key, bool v);
void	 tool_json_null(struct tool_json *j, const char *key);
/* The document header every output starts with: schema and tool. */
void	 tool_json_header(struct tool_json *j, const char *command);

/* CSV (RFC 4180): a field, quoted if it must be; NULL is empty. */
void	 tool_csv(FILE *f, const char *s, bool last);

/* s (a name from /dev/shm, text from a segment) as tables show it into
 * buf: UTF-8, U+FFFD for a byte that is not, '?' for a control. */
const char *tool_safe(char *buf, size_t len, const char *s);
void	 tool_csv_u64(FILE *f, uint64_t v, bool last);
void	 tool_csv_num(FILE *f, double v, bool last);

/* Prometheus text format: a family's HELP and TYPE, then samples. */
void	 tool_prom_family(FILE *f, const char *name, const char *type,
	    const char *help);
void	 tool_prom_sample(FILE *f, const char *name, const char *labels,
	    double v);
/* labels: key, value pairs ending with NULL, values escaped. */
void	 tool_prom_labels(char *buf, size_t len, ...);

/* ---- the commands ------------------------------------------------------ */

int	 tool_cmd_ls(int argc, char **argv);
int	 tool_cmd_top(int argc, char **argv);
int	 tool_cmd_show(int argc, char **argv);
int	 tool_cmd_ps(int argc, char **argv);
int	 tool_cmd_peek(int argc, char **argv);
int	 tool_cmd_put(int argc, char **argv);
int	 tool_cmd_get(int argc, char **argv);
int	 tool_cmd_create(int argc, char **argv);
int	 tool_cmd_rm(int argc, char **argv);
int	 tool_cmd_check(int argc, char **argv);
int	 tool_cmd_gc(int argc, char **argv);

#endif /* TOOL_H */
