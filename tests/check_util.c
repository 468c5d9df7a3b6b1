/* SPDX-License-Identifier: BSD-2-Clause */
/* check_util.c - helpers shared by the libshmq Check suites. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <inttypes.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_util.h"
#include "shmq_int.h"

#define CU_MAX_NAMES	64

static pid_t	 cu_runner;
static pid_t	 cu_owner;		/* process that registered the names */
static char	 cu_names[CU_MAX_NAMES][CU_NAME_LEN];
static int	 cu_nnames;
static int	 cu_left;		/* segments the sweeps found */

void
cu_init(void)
{
	cu_runner = getpid();
}

void
cu_cleanup(void)
{
	if (getpid() != cu_owner)
		return;			/* a child of the test: not ours */
	for (int i = 0; i < cu_nnames; i++)
		(void)shmq_unlink(cu_names[i]);
	cu_nnames = 0;
}

void
cu_name(char name[CU_NAME_LEN], const char *tag)
{
	if (cu_owner != getpid()) {
		cu_owner = getpid();
		cu_nnames = 0;
	}
	snprintf(name, CU_NAME_LEN, "/shmqt-%d-%s-%d", (int)cu_runner, tag,
	    (int)getpid());
	ck_assert_int_lt(cu_nnames, CU_MAX_NAMES);
	memcpy(cu_names[cu_nnames++], name, CU_NAME_LEN);
}

void
cu_sweep(void)
{
	char prefix[32], piped[48];
	struct dirent *de;
	DIR *d = opendir("/dev/shm");

	if (d == NULL)
		return;
	/* Ours, and pipeline queues named after ours (shmq_tool tests). */
	snprintf(prefix, sizeof(prefix), "shmqt-%d-", (int)cu_runner);
	snprintf(piped, sizeof(piped), "shmpipe.%s", prefix);
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, prefix, strlen(prefix)) != 0 &&
		    strncmp(de->d_name, piped, strlen(piped)) != 0)
			continue;
		fprintf(stderr, "left in /dev/shm: %s\n", de->d_name);
		(void)shmq_unlink(de->d_name);
		cu_left++;
	}
	closedir(d);
}

int
cu_left_behind(void)
{
	return cu_left;
}

TCase *
cu_tcase(const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, NULL, cu_cleanup);
	tcase_add_unchecked_fixture(tc, NULL, cu_sweep);
	return tc;
}

uint32_t cu_create_flags;

struct shmq *
cu_create(const char *name, uint32_t capacity, uint32_t msg_max,
    uint32_t max_procs, uint32_t lease_max)
{
	struct shmq_config cfg = { capacity, msg_max, max_procs, lease_max, 0,
	    cu_create_flags };
	struct shmq *q = shmq_create(name, &cfg);

	ck_assert_msg(q != NULL, "shmq_create(%s): %s", name, strerror(errno));
	return q;
}

static uint8_t
cu_pattern(uint32_t id, size_t len, size_t i)
{
	return (uint8_t)((id * 2654435761u >> 13) + len * 7 + i * 31);
}

size_t
cu_msg_len(uint32_t id, uint32_t msg_max)
{
	return CU_MSG_MIN + (id * 37u) % (msg_max - CU_MSG_MIN + 1);
}

size_t
cu_msg_make(void *buf, uint32_t id, size_t len)
{
	unsigned char *p = buf;
	uint32_t l = (uint32_t)len, sum = id ^ 0x5eed5eedu;

	memcpy(p, &id, 4);
	memcpy(p + 4, &l, 4);
	memcpy(p + 8, &sum, 4);
	for (size_t i = CU_MSG_MIN; i < len; i++)
		p[i] = cu_pattern(id, len, i);
	return len;
}

bool
cu_msg_check(const void *buf, size_t len, uint32_t *idp)
{
	const unsigned char *p = buf;
	uint32_t id, l, sum;

	if (len < CU_MSG_MIN)
		return false;
	memcpy(&id, p, 4);
	memcpy(&l, p + 4, 4);
	memcpy(&sum, p + 8, 4);
	if (l != len || sum != (id ^ 0x5eed5eedu))
		return false;
	for (size_t i = CU_MSG_MIN; i < len; i++)
		if (p[i] != cu_pattern(id, len, i))
			return false;
	*idp = id;
	return true;
}

void *
cu_shared(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert_msg(p != MAP_FAILED, "mmap: %s", strerror(errno));
	return p;
}

void
cu_unshare(void *p, size_t len)
{
	munmap(p, len);
}

pid_t
cu_fork(void)
{
	sigset_t set;
	pid_t pid;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	pid = fork();
	/* Not ck_assert: a passing check is a record written to Check's
	 * message file, and a child SIGKILLed in the middle of writing one
	 * leaves half a record, on which the runner gives up on the suite
	 * ("Bad message type").  Children must not write there at all. */
	if (pid < 0)
		ck_abort_msg("fork: %s", strerror(errno));
	if (pid == 0)
		sigprocmask(SIG_UNBLOCK, &set, NULL);
	return pid;
}

pid_t
cu_wait(pid_t pid, int *status, int timeout_s)
{
	struct timespec end, now, left;
	sigset_t set;
	pid_t r;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += timeout_s;
	for (;;) {
		r = waitpid(pid, status, WNOHANG);
		if (r > 0)
			return r;
		if (r < 0 && errno != EINTR)
			return 0;		/* no such child */
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec &&
		    now.tv_nsec >= end.tv_nsec))
			return 0;
		left.tv_sec = end.tv_sec - now.tv_sec;
		left.tv_nsec = end.tv_nsec - now.tv_nsec;
		if (left.tv_nsec < 0) {
			left.tv_sec--;
			left.tv_nsec += 1000000000L;
		}
		/* SIGCHLD is blocked (cu_fork): it stays pending until here. */
		(void)sigtimedwait(&set, NULL, &left);
	}
}

void
cu_wait_exit(struct shmq *q, pid_t pid, int code)
{
	cu_wait_exit_in(q, pid, code, CU_WAIT_S);
}

void
cu_wait_exit_in(struct shmq *q, pid_t pid, int code, int timeout_s)
{
	int status = 0;

	QASSERT_MSG(q, cu_wait(pid, &status, timeout_s) == pid,
	    "child %d still running after %d s", (int)pid, timeout_s);
	QASSERT_MSG(q, WIFEXITED(status) && WEXITSTATUS(status) == code,
	    "child %d: %s %d, expected exit %d", (int)pid,
	    WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ?
	    WEXITSTATUS(status) : WTERMSIG(status), code);
}

static bool
cu_is_asleep(struct shmq *q, pid_t pid, unsigned kind)
{
	struct shmq_proc_info pi[SHMQ_PROCS_LIMIT];
	int n = shmq_procs(q, pi, SHMQ_PROCS_LIMIT);

	for (int i = 0; i < n && i < SHMQ_PROCS_LIMIT; i++)
		if (pi[i].pid == pid && pi[i].state == SHMQ_PROC_ALIVE &&
		    (pi[i].asleep & kind))
			return true;
	return false;
}

void
cu_wait_asleep(struct shmq *q, pid_t pid, unsigned kind)
{
	struct timespec pause = { 0, 200000 };
	time_t end = time(NULL) + CU_WAIT_S;

	/* Polling the record is the signal: the sleeper has no other. */
	while (!cu_is_asleep(q, pid, kind)) {
		QASSERT_MSG(q, time(NULL) < end && waitpid(pid, NULL,
		    WNOHANG) == 0, "process %d never went to sleep", (int)pid);
		nanosleep(&pause, NULL);
	}
}

void
cu_wait_waits(struct shmq *q, unsigned kind, uint64_t n)
{
	struct timespec pause = { 0, 200000 };
	time_t end = time(NULL) + CU_WAIT_S;
	struct shmq_stats st;

	for (;;) {
		QASSERT_EQ(q, shmq_stats(q, &st), 0);
		if ((kind == SHMQ_ASLEEP_GET ? st.get_waits : st.put_waits) >= n)
			return;
		QASSERT_MSG(q, time(NULL) < end, "no %s wait was counted",
		    kind == SHMQ_ASLEEP_GET ? "get" : "put");
		nanosleep(&pause, NULL);
	}
}

uint64_t
cu_start_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ticks;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* After the name: state is field 3, start time field 22. */
	if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 2, "%*c %*d %*d %*d"
	    " %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d"
	    " %llu", &ticks) != 1)
		return 0;
	return ticks;
}

int
cu_pin(int k)
{
	cpu_set_t allowed, one;
	int n, seen = 0;

	if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0 ||
	    (n = CPU_COUNT(&allowed)) == 0)
		return 0;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &allowed) || seen++ != k % n)
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		return sched_setaffinity(0, sizeof(one), &one) == 0 ? n : 0;
	}
	return 0;
}

int
cu_sem_value(struct shmq *q, uint32_t i)
{
	int v = -1;

	sem_getvalue((sem_t *)(void *)shmq__proc(q, i)->wake_sem, &v);
	return v;
}

static const char *
cu_slot_state(unsigned st)
{
	static const char *const names[] = { "EMPTY", "WRITING", "FULL",
	    "READING" };

	return st < 4 ? names[st] : "?";
}

static const char *
cu_entry_state(unsigned st)
{
	static const char *const names[] = { "FREE", "STAGED", "HELD",
	    "RSTAGED", "REDELIVER" };

	return st < 5 ? names[st] : "?";
}

static void
cu_dump_stats(struct shmq *q)
{
	struct shmq_stats st;

	if (shmq_stats(q, &st) != 0)
		return;
	fprintf(stderr, "  stats: depth %u/%u enq %" PRIu64 " deq %" PRIu64
	    " redelivered %" PRIu64 " pending %u leases %u voided %" PRIu64
	    " recoveries %" PRIu64 " corrupt %" PRIu64 " procs %u draining %u"
	    " waits put %" PRIu64 " get %" PRIu64 "\n", st.depth, st.capacity,
	    st.enqueued, st.dequeued, st.redelivered, st.redeliver_pending,
	    st.leases_held, st.voided, st.recoveries, st.corrupt, st.procs,
	    st.procs_draining, st.put_waits, st.get_waits);
}

static void
cu_dump_records(struct shmq *q)
{
	for (uint32_t i = 0; i < q->max_procs; i++) {
		struct shmq_seg_proc *p = shmq__proc(q, i);
		uint64_t w = atomic_load(&p->state);
		int sem = cu_sem_value(q, i);

		if (SHMQ_PROC_STATE(w) == SHMQ_PROC_FREE && sem == 0)
			continue;
		fprintf(stderr, "  record %u: state %u pid %u gen %" PRIu64
		    " asleep %u sem %d put %" PRIu64 " get %" PRIu64
		    " ack %" PRIu64 "%s\n", i, SHMQ_PROC_STATE(w),
		    SHMQ_PROC_PID(w), SHMQ_PROC_GEN(w),
		    (unsigned)atomic_load(&p->asleep), sem,
		    (uint64_t)atomic_load(&p->n_put),
		    (uint64_t)atomic_load(&p->n_get),
		    (uint64_t)atomic_load(&p->n_ack), i == q->me ? " (me)" : "");
	}
}

static void
cu_dump_ring(struct shmq *q, uint64_t cons)
{
	uint64_t n = q->capacity < 64 ? q->capacity : 64;

	for (uint64_t k = 0; k < n; k++) {
		uint64_t pos = cons + k;
		struct shmq_seg_slot *s = shmq__slot(q, pos);
		uint64_t w = atomic_load(&s->state);

		fprintf(stderr, "  slot %" PRIu64 ": %s tag %" PRIu64
		    " owner %u len %u\n", pos & q->mask,
		    cu_slot_state(SHMQ_SLOT_STATE(w)), SHMQ_SLOT_TAG(w),
		    SHMQ_SLOT_OWNER(w), (unsigned)atomic_load(&s->len));
	}
}

static void
cu_dump_entries(struct shmq *q)
{
	for (uint32_t i = 0; i < shmq__nentries(q); i++) {
		struct shmq_seg_entry *e = shmq__entry(q, i);
		uint64_t w = atomic_load(&e->state);

		if (SHMQ_ENTRY_STATE(w) == SHMQ_ENTRY_FREE)
			continue;
		fprintf(stderr, "  entry %u (area %u): %s owner %u deliv %u"
		    " gen %u src %" PRIu64 " len %u\n", i,
		    i / shmq__area_len(q), cu_entry_state(SHMQ_ENTRY_STATE(w)),
		    SHMQ_ENTRY_OWNER(w), SHMQ_ENTRY_DELIV(w), SHMQ_ENTRY_GEN(w),
		    (uint64_t)atomic_load(&e->src_pos),
		    (unsigned)atomic_load(&e->len));
	}
}

void
cu_dump(struct shmq *q, const char *why)
{
	struct shmq_seg_header *h;
	uint64_t cons;

	if (q == NULL)
		return;
	h = q->hdr;
	cons = atomic_load(&h->cons_pos);
	fprintf(stderr, "queue %s (pid %d) at failure of '%s':\n", q->name,
	    (int)getpid(), why);
	fprintf(stderr, "  prod_pos %" PRIu64 " cons_pos %" PRIu64
	    " get_sleepers %#" PRIx64 " put_sleepers %#" PRIx64
	    " redeliver_map %#" PRIx64 "\n", (uint64_t)atomic_load(&h->prod_pos),
	    cons, (uint64_t)atomic_load(&h->get_sleepers[0]),
	    (uint64_t)atomic_load(&h->put_sleepers[0]),
	    (uint64_t)atomic_load(&h->redeliver_map[0]));
	cu_dump_stats(q);
	cu_dump_records(q);
	cu_dump_ring(q, cons);
	cu_dump_entries(q);
}

void
cu_assert_no_sleepers(struct shmq *q)
{
	for (uint32_t i = 0; i < SHMQ_BITMAP_WORDS; i++) {
		QASSERT_EQ(q, atomic_load(&q->hdr->get_sleepers[i]), 0);
		QASSERT_EQ(q, atomic_load(&q->hdr->put_sleepers[i]), 0);
	}
}

void
cu_assert_all_closed(const char *name)
{
	struct shmq *q = shmq_open_flags(name, SHMQ_OPEN_RDONLY);
	struct shmq_stats st;

	ck_assert_msg(q != NULL, "read-only open of %s: %s", name,
	    strerror(errno));
	cu_assert_no_sleepers(q);
	for (uint32_t i = 0; i < q->max_procs; i++) {
		QASSERT_MSG(q, cu_sem_value(q, i) == 0,
		    "record %u: semaphore value %d once all closed", i,
		    cu_sem_value(q, i));
		QASSERT_MSG(q, SHMQ_PROC_STATE(atomic_load(&shmq__proc(q,
		    i)->state)) == SHMQ_PROC_FREE,
		    "record %u not free once all closed", i);
	}
	QASSERT_EQ(q, shmq_stats(q, &st), 0);
	QASSERT_EQ(q, st.procs, 0);
	QASSERT_EQ(q, st.procs_draining, 0);
	shmq_close(q);
}

void
cu_put_id(struct shmq *q, uint32_t id, uint32_t msg_max)
{
	unsigned char buf[CU_MSG_MAX_TEST];
	size_t len = cu_msg_make(buf, id, cu_msg_len(id, msg_max));

	QASSERT_EQ(q, shmq_put(q, buf, len, 0), 0);
}

void
cu_get_id(struct shmq *q, uint32_t id, uint32_t msg_max)
{
	unsigned char buf[CU_MSG_MAX_TEST];
	ssize_t n = shmq_get(q, buf, msg_max, 0);
	uint32_t got = 0;

	QASSERT_EQ(q, n, (ssize_t)cu_msg_len(id, msg_max));
	QASSERT_MSG(q, cu_msg_check(buf, (size_t)n, &got) && got == id,
	    "expected message %u, got %u (or a damaged one)", id, got);
}

void
cu_finish(struct shmq **q, const char *name)
{
	shmq_close(*q);
	*q = NULL;
	cu_assert_all_closed(name);
	ck_assert_int_eq(shmq_unlink(name), 0);
}
