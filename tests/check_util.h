/* SPDX-License-Identifier: BSD-2-Clause */
/* check_util.h - helpers shared by the libshmq Check suites: unique segment
 * names and their cleanup, patterned messages, child processes, and a dump
 * of a queue's state for failing tests. */
#ifndef CHECK_UTIL_H
#define CHECK_UTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shmq.h"

/* The suites, for the runner. */
Suite	*segment_suite(void);
Suite	*ring_suite(void);
Suite	*lease_suite(void);
Suite	*multiproc_suite(void);
Suite	*crash_suite(void);

#define CU_NAME_LEN	96
#define CU_WAIT_S	30	/* a child that takes longer is wedged */

/* Remember the runner's pid: every segment name carries it. */
void	 cu_init(void);

/*
 * Fill name with "/shmqt-<runner>-<tag>-<pid>" and register it, so that
 * cu_cleanup(), the checked teardown, unlinks it after the test.
 */
void	 cu_name(char name[CU_NAME_LEN], const char *tag);
void	 cu_cleanup(void);

/*
 * In the runner: unlink whatever this run left in /dev/shm (a test that
 * failed or died exits before its teardown), counting it: names as
 * cu_name() makes them, and "shmpipe." followed by one.
 */
void	 cu_sweep(void);
int	 cu_left_behind(void);

/* A TCase with both: cu_cleanup checked, cu_sweep unchecked. */
TCase	*cu_tcase(const char *name);

/* shmq_create() that must succeed; 0 for a field takes its default. */
/* SHMQ_CREATE_* flags cu_create() passes on (loop tests set it per mode). */
extern uint32_t cu_create_flags;

struct shmq *cu_create(const char *name, uint32_t capacity, uint32_t msg_max,
	    uint32_t max_procs, uint32_t lease_max);

/*
 * Patterned messages: id, length and a byte pattern derived from both, so
 * a message that is short, half-written or another's is always noticed.
 * cu_msg_len() is the length used for id (>= CU_MSG_MIN, <= msg_max).
 */
#define CU_MSG_MIN	12
#define CU_MSG_MAX_TEST	4096	/* largest msg_max cu_put_id() handles */
size_t	 cu_msg_len(uint32_t id, uint32_t msg_max);
size_t	 cu_msg_make(void *buf, uint32_t id, size_t len);
bool	 cu_msg_check(const void *buf, size_t len, uint32_t *idp);

/* Put message id (timeout 0); get the next one, which must be id, whole. */
void	 cu_put_id(struct shmq *q, uint32_t id, uint32_t msg_max);
void	 cu_get_id(struct shmq *q, uint32_t id, uint32_t msg_max);

/* Close *q, check every record of name is free, unlink it. */
void	 cu_finish(struct shmq **q, const char *name);

/* A shared anonymous mapping, zeroed; cu_unshare() unmaps it. */
void	*cu_shared(size_t len);
void	 cu_unshare(void *p, size_t len);

/*
 * fork() with SIGCHLD blocked in the parent (cu_wait waits for it with
 * sigtimedwait), and SIGCHLD unblocked in the child.  The child must
 * leave with _exit() or exec, and call no ck_ function: even a passing
 * check writes to Check's message file.  Every test forks through this.
 */
pid_t	 cu_fork(void);

/*
 * Wait up to timeout_s for pid (-1: any child) to end.  Returns the pid
 * reaped, with *status, or 0 if none ended in time.
 */
pid_t	 cu_wait(pid_t pid, int *status, int timeout_s);

/* Wait for pid (up to CU_WAIT_S, or timeout_s); assert it exited with
 * code.  q, if not NULL, is dumped on failure. */
void	 cu_wait_exit(struct shmq *q, pid_t pid, int code);
void	 cu_wait_exit_in(struct shmq *q, pid_t pid, int code, int timeout_s);

/*
 * Wait until the attachment of pid is asleep in a blocking call of kind
 * SHMQ_ASLEEP_GET or SHMQ_ASLEEP_PUT, as shmq_procs() shows it.
 */
void	 cu_wait_asleep(struct shmq *q, pid_t pid, unsigned kind);

/* Wait until the queue has counted `n` waits of kind (SHMQ_ASLEEP_*): a
 * sleeper is counted only once its last look before sleeping failed. */
void	 cu_wait_waits(struct shmq *q, unsigned kind, uint64_t n);

/* Start time of pid in clock ticks (/proc/PID/stat field 22), or 0. */
uint64_t cu_start_ticks(pid_t pid);

/*
 * Pin the calling process to the k-th CPU it may run on (k modulo their
 * number).  Returns how many CPUs it could run on, or 0 if it could not be
 * pinned.  Calls no ck_ function: a forked child may use it.
 */
int	 cu_pin(int k);

/* Value of the wake semaphore of attachment record i. */
int	 cu_sem_value(struct shmq *q, uint32_t i);

/* The queue's state on stderr: indices, stats, records, slots, entries. */
void	 cu_dump(struct shmq *q, const char *why);

/* Assert that nobody sleeps and nothing waits: sleeper bitmaps zero. */
void	 cu_assert_no_sleepers(struct shmq *q);

/*
 * With every process detached from segment name: open it read-only and
 * assert that each record is free and its semaphore value is 0.
 */
void	 cu_assert_all_closed(const char *name);

/* Assertions on a queue that print its state before failing. */
#define QASSERT(q, cond) do {						\
	if (!(cond)) {							\
		cu_dump((q), #cond);					\
		ck_abort_msg("Assertion '%s' failed", #cond);		\
	}								\
} while (0)

#define QASSERT_MSG(q, cond, ...) do {					\
	if (!(cond)) {							\
		cu_dump((q), #cond);					\
		ck_abort_msg(__VA_ARGS__);				\
	}								\
} while (0)

#define QASSERT_EQ(q, a, b) do {					\
	intmax_t qa_ = (intmax_t)(a), qb_ = (intmax_t)(b);		\
	if (qa_ != qb_) {						\
		cu_dump((q), #a " == " #b);				\
		ck_abort_msg("Assertion '%s == %s' failed: %jd != %jd",	\
		    #a, #b, qa_, qb_);					\
	}								\
} while (0)

#endif /* CHECK_UTIL_H */
