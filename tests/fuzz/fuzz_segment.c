/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_segment.c - libFuzzer target: attach to a segment made of arbitrary
 * bytes, read-only and then read-write, and use whatever opens.
 *
 * The input is the whole segment file (header, records, lease entries,
 * ring); tests/fuzz/corpus/fuzz_segment holds real segments of several
 * geometries and states, from tests/fuzz/mkseeds.c.  Each input is written
 * to a fresh shm object named for this process, opened with
 * SHMQ_OPEN_RDONLY|ANY_OWNER|ANY_MODE (inspected) and with 0 (a second
 * handle is attached too, then the name is unlinked), and the read-write
 * handles make one pass over the API with timeout 0.  shmq_open must
 * answer NULL with a documented errno, or a handle that survives every
 * call; a crash, hang or sanitizer report is a bug.
 *
 * The recovery mutex (recover_lock, 64 bytes) is fuzzed all but its owner:
 * libshmq checks the words that make it robust and process-shared, but an
 * owner that names no thread costs every lock libshmq's 5 s bound (by
 * design, and too slow to fuzz).  So its lock word (glibc keeps it first)
 * decides: with FUTEX_OWNER_DIED set it becomes a mutex whose owner died
 * in it, with bit 0 set the input's other bytes stay around an unlocked
 * word, else a fresh robust mutex.  The wake-up semaphores are fuzzed
 * whole: libshmq checks them before libc sees them.
 *
 * The shm object is removed after each input, and by fuzz_shm.c when a
 * sanitizer or a failed check ends the run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz_shm.h"
#include "shmq.h"
#include "shmq_layout.h"

#define LOCK_OFF	offsetof(struct shmq_seg_header, recover_lock)
#define LOCK_LEN	sizeof(((struct shmq_seg_header *)0)->recover_lock)
#define BATCH		3

int	LLVMFuzzerInitialize(int *argc, char ***argv);
int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t	 lock_free[LOCK_LEN];	/* a robust mutex, unlocked */
static uint8_t	 lock_dead[LOCK_LEN];	/* one whose owner died in it */

/* The two mutex templates: a child locks the second one and exits, so
 * the kernel marks it owner-died as it would after a real crash. */
static void
locks_init(void)
{
	pthread_mutexattr_t ma;
	pthread_mutex_t *m;
	pid_t pid;
	int st;

	m = mmap(NULL, LOCK_LEN, PROT_READ | PROT_WRITE, MAP_SHARED |
	    MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		fuzz_fail("mmap", errno);
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	if (pthread_mutex_init(m, &ma) != 0)
		fuzz_fail("pthread_mutex_init", 0);
	pthread_mutexattr_destroy(&ma);
	memcpy(lock_free, m, LOCK_LEN);
	if ((pid = fork()) < 0)
		fuzz_fail("fork", errno);
	if (pid == 0)
		_exit(pthread_mutex_lock(m));
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		fuzz_fail("owner-died template", st);
	memcpy(lock_dead, m, LOCK_LEN);
	munmap(m, LOCK_LEN);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_shm_init("shmq-fuzz-seg-", "");
	locks_init();
	return 0;
}

/* The segment file: the input with its recovery mutex replaced. */
static void
seg_write(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size ? size : 1);
	uint32_t word;

	if (copy == NULL)
		fuzz_fail("malloc", errno);
	memcpy(copy, data, size);
	if (size >= LOCK_OFF + LOCK_LEN) {
		memcpy(&word, copy + LOCK_OFF, sizeof(word));
		if (word & FUTEX_OWNER_DIED)
			memcpy(copy + LOCK_OFF, lock_dead, LOCK_LEN);
		else if (word & 1)
			memset(copy + LOCK_OFF, 0, sizeof(word));
		else
			memcpy(copy + LOCK_OFF, lock_free, LOCK_LEN);
	}
	fuzz_shm_write(copy, size);
	free(copy);
}

/* shmq_open's contract: NULL comes with one of the errors it lists. */
static void
check_open_errno(int e)
{
	switch (e) {
	case EAGAIN: case EPROTO: case EPROTONOSUPPORT: case ENODATA:
	case EBADMSG: case EUSERS: case ENOMEM:
		return;
	default:
		fuzz_fail("shmq_open failed with an undocumented errno", e);
	}
}

/* A get or take returned n for a buffer of cap bytes. */
static void
check_len(ssize_t n, size_t cap)
{
	if (n > (ssize_t)cap)
		fuzz_fail("message longer than the buffer", n);
}

/*
 * r, returned by call, is a count or length, or -e for one of the errnos
 * its contract in shmq.h lists for this use (the list ends with 0).
 * Returns r.
 */
static long
check_rc(const char *call, long r, ...)
{
	va_list ap;
	int e;

	if (r >= 0)
		return r;
	va_start(ap, r);
	while ((e = va_arg(ap, int)) != 0 && -r != e)
		;
	va_end(ap);
	if (e == 0) {
		fprintf(stderr, "fuzz_segment: %s: %s\n", call,
		    strerror((int)-r));
		fuzz_fail("an error its contract does not list", r);
	}
	return r;
}
#define RC(call, ...)	check_rc(#call, (long)(call), __VA_ARGS__, 0)
#define GET_ERRS	EAGAIN, EMSGSIZE, EPROTO	/* timeout 0 */
#define TAKE_ERRS	GET_ERRS, ENOBUFS
#define LOCK_ERRS	EBADMSG, ETIMEDOUT, ENOTRECOVERABLE	/* recovery */

static void
check_stats(struct shmq *q)
{
	struct shmq_stats st;

	if (shmq_stats(q, &st) != 0)
		fuzz_fail("shmq_stats", 0);
	if (st.capacity != shmq_capacity(q) || st.depth > st.capacity ||
	    st.high_water > st.capacity)
		fuzz_fail("stats out of range", st.depth);
}

/* What a read-only handle allows: snapshots; the rest is -EBADF. */
static void
use_rdonly(struct shmq *q, uint8_t *buf, uint32_t cap)
{
	struct shmq_proc_info pi[SHMQ_PROCS_LIMIT];
	struct shmq_lease_info li[64];
	struct shmq_lease lease = { 0 };
	double put_s, get_s;
	uint64_t win;

	check_stats(q);
	if (shmq_procs(q, pi, SHMQ_PROCS_LIMIT) < 0 ||
	    shmq_leases(q, li, 64) < 0 ||
	    shmq_rates(q, 8, &put_s, &get_s, &win) != 0)
		fuzz_fail("read-only snapshot", 0);
	for (unsigned k = 0; k < 3; k++)
		check_len(RC(shmq_peek(q, k, buf, cap), ENOENT, EAGAIN,
		    EMSGSIZE), cap);
	if (shmq_put(q, "x", 1, 0) != -EBADF ||
	    shmq_get(q, buf, cap, 0) != -EBADF ||
	    shmq_take(q, buf, cap, &lease, 0) != -EBADF ||
	    shmq_recover_dead(q) != -EBADF)
		fuzz_fail("read-only handle changed the queue", 0);
}

static void
use_batches(struct shmq *q, const uint8_t *data, size_t size, uint8_t *buf,
    uint32_t cap)
{
	struct iovec in[BATCH], out[BATCH];
	struct shmq_lease leases[BATCH];
	size_t part = size / BATCH;
	int n;

	for (int i = 0; i < BATCH; i++) {
		in[i].iov_base = (void *)(uintptr_t)(data + i * part);
		in[i].iov_len = part < cap ? part : cap;
		out[i].iov_base = buf;		/* overlapping is fine here */
		out[i].iov_len = cap;
	}
	RC(shmq_put_batch(q, in, BATCH, 0), EAGAIN);
	n = (int)RC(shmq_take_batch(q, out, leases, BATCH, 0), TAKE_ERRS);
	for (int i = 0; i < n; i++) {
		check_len((ssize_t)out[i].iov_len, cap);
		if ((i % 2 ? shmq_ack(q, &leases[i]) :
		    shmq_release(q, &leases[i])) != 0)
			fuzz_fail("ack or release of a lease just taken", i);
	}
	for (int i = 0; i < BATCH; i++)
		out[i].iov_len = cap;
	n = (int)RC(shmq_get_batch(q, out, BATCH, 0), GET_ERRS);
	for (int i = 0; i < n; i++)
		check_len((ssize_t)out[i].iov_len, cap);
}

/* One pass over the calls that change the queue, then the snapshots. */
static void
use_rdwr(struct shmq *q, const uint8_t *data, size_t size, uint8_t *buf,
    uint32_t cap)
{
	struct shmq_proc_info pi[SHMQ_PROCS_LIMIT];
	struct shmq_lease_info li[64];
	struct shmq_lease lease;
	uint8_t small[8];
	ssize_t n;
	int np;

	RC(shmq_put(q, data, size < cap ? size : cap, 0), EAGAIN);
	check_len(RC(shmq_get(q, small, sizeof(small), 0), GET_ERRS),
	    sizeof(small));
	check_len(RC(shmq_get(q, buf, cap, 0), GET_ERRS), cap);
	if ((n = RC(shmq_take(q, buf, cap, &lease, 0), TAKE_ERRS)) >= 0) {
		check_len(n, cap);
		if (shmq_release(q, &lease) != 0 ||
		    shmq_ack(q, &lease) != -ESTALE)
			fuzz_fail("release of a lease just taken", 0);
	}
	if ((n = RC(shmq_take(q, buf, cap, &lease, 0), TAKE_ERRS)) >= 0) {
		check_len(n, cap);
		if (shmq_ack(q, &lease) != 0)
			fuzz_fail("ack of a lease just taken", 0);
	}
	use_batches(q, data, size, buf, cap);
	check_stats(q);
	np = (int)RC(shmq_procs(q, pi, SHMQ_PROCS_LIMIT), 0);
	RC(shmq_leases(q, li, 64), 0);
	for (int i = 0; i < np && i < SHMQ_PROCS_LIMIT; i++)
		if (pi[i].pid > 0 && pi[i].pid != getpid())
			RC(shmq_recover(q, pi[i].pid), LOCK_ERRS, EBUSY);
	RC(shmq_recover_dead(q), LOCK_ERRS);
	check_len(RC(shmq_peek(q, 0, buf, cap), ENOENT, EAGAIN, EMSGSIZE),
	    cap);
	check_stats(q);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct shmq *q, *q2;
	uint8_t *buf;
	uint32_t cap;

	seg_write(data, size);
	if ((q = shmq_open_flags(fuzz_shm_path(), SHMQ_OPEN_RDONLY |
	    SHMQ_OPEN_ANY_OWNER | SHMQ_OPEN_ANY_MODE)) != NULL) {
		cap = shmq_msg_max(q);
		if ((buf = malloc(cap)) == NULL)
			fuzz_fail("malloc", errno);
		use_rdonly(q, buf, cap);
		free(buf);
		shmq_close(q);
	} else {
		check_open_errno(errno);
	}
	if ((q = shmq_open_flags(fuzz_shm_path(), 0)) == NULL) {
		check_open_errno(errno);
		fuzz_shm_unlink();
		return 0;
	}
	q2 = shmq_attach(q);
	fuzz_shm_unlink();
	cap = shmq_msg_max(q);
	if ((buf = malloc(cap)) == NULL)
		fuzz_fail("malloc", errno);
	use_rdwr(q, data, size, buf, cap);
	if (q2 != NULL)
		use_rdwr(q2, data, size, buf, cap);
	free(buf);
	shmq_close(q2);
	shmq_close(q);
	return 0;
}
