/* SPDX-License-Identifier: BSD-2-Clause */
/* check_segment.c - tests of segment life and validation: create, open,
 * close, names, permissions, and segments that are truncated, foreign or
 * corrupt. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_util.h"
#include "shmq_int.h"

/* Open must fail with errno err. */
static void
expect_open_fails(const char *name, unsigned flags, int err, const char *what)
{
	struct shmq *q;

	errno = 0;
	q = shmq_open_flags(name, flags);
	if (q != NULL) {
		shmq_close(q);
		ck_abort_msg("%s: shmq_open succeeded, expected %s", what,
		    strerror(err));
	}
	ck_assert_msg(errno == err, "%s: errno %d (%s), expected %d (%s)",
	    what, errno, strerror(errno), err, strerror(err));
}

/* A thread of its own attachment on an anonymous queue: producer. */
static void *
anon_producer(void *arg)
{
	struct shmq *q = shmq_attach(arg);
	intptr_t bad = q == NULL;

	for (uint32_t i = 0; !bad && i < 10000; i++)
		bad = shmq_put(q, &i, sizeof(i), -1) != 0;
	shmq_close(q);
	return (void *)bad;
}

/* Anonymous queues: threads, each with its own attachment; no name. */
START_TEST(test_segment_anon_threads)
{
	struct shmq_config cfg = { .capacity = 64, .msg_max = 16 };
	struct shmq *q = shmq_create_anon(&cfg);
	struct shmq_stats st;
	pthread_t th;
	void *bad;

	ck_assert_ptr_nonnull(q);
	ck_assert_str_eq(shmq_name(q), "(anonymous)");
	ck_assert_int_eq(pthread_create(&th, NULL, anon_producer, q), 0);
	for (uint32_t i = 0; i < 10000; i++) {
		uint32_t v;
		ck_assert_int_eq(shmq_get(q, &v, sizeof(v), -1), sizeof(v));
		ck_assert_uint_eq(v, i);
	}
	ck_assert_int_eq(pthread_join(th, &bad), 0);
	ck_assert_ptr_null(bad);
	ck_assert_int_eq(shmq_stats(q, &st), 0);
	ck_assert_uint_eq(st.procs, 1);		/* the thread's is gone */
	ck_assert_uint_eq(st.enqueued, 10000);
	shmq_close(q);
}
END_TEST

/*
 * An anonymous queue larger than /dev/shm could hold is refused with
 * ENOSPC, as a named one is, before any memory is taken: a memfd has no
 * size limit of its own, and filling it would call the OOM killer.
 */
START_TEST(test_segment_anon_too_big)
{
	struct shmq_config cfg = { .capacity = SHMQ_CAPACITY_MAX,
	    .msg_max = SHMQ_MSG_MAX_LIMIT };

	/* 16 M slots of 64 MiB: a PiB, more than any /dev/shm. */
	ck_assert_uint_lt(shmq_anon_room(), (uint64_t)cfg.capacity *
	    cfg.msg_max);
	errno = 0;
	ck_assert_ptr_null(shmq_create_anon(&cfg));
	ck_assert_int_eq(errno, ENOSPC);
}
END_TEST

START_TEST(test_segment_create_open_close)
{
	char name[CU_NAME_LEN], buf[64];
	struct shmq *a, *b;
	struct shmq_stats st;

	cu_name(name, "open");
	a = cu_create(name, 16, 64, 4, 2);
	b = shmq_open(name);
	ck_assert_ptr_nonnull(b);
	ck_assert_str_eq(shmq_name(a), name);
	ck_assert_str_eq(shmq_name(b), name);
	ck_assert_uint_eq(shmq_capacity(b), 16);
	ck_assert_uint_eq(shmq_msg_max(b), 64);
	QASSERT_EQ(a, shmq_put(a, "hello", 5, 0), 0);
	QASSERT_EQ(b, shmq_get(b, buf, sizeof(buf), 0), 5);
	ck_assert_mem_eq(buf, "hello", 5);
	QASSERT_EQ(a, shmq_stats(a, &st), 0);
	QASSERT_EQ(a, st.procs, 2);
	QASSERT_EQ(a, st.creator_pid, getpid());
	shmq_close(b);
	QASSERT_EQ(a, shmq_stats(a, &st), 0);
	QASSERT_EQ(a, st.procs, 1);
	shmq_close(a);
	cu_assert_all_closed(name);
	ck_assert_int_eq(shmq_unlink(name), 0);
}
END_TEST

START_TEST(test_segment_name_validation)
{
	static const char *const bad[] = { "a/b", "/a/b", "..", "/..",
	    "x..y", "", "/", ".", NULL };
	char name[CU_NAME_LEN];
	struct shmq *q;

	for (int i = 0; bad[i] != NULL; i++) {
		errno = 0;
		ck_assert_msg(shmq_create(bad[i], NULL) == NULL &&
		    errno == EINVAL, "create \"%s\": errno %d", bad[i], errno);
		expect_open_fails(bad[i], 0, EINVAL, bad[i]);
		ck_assert_int_eq(shmq_unlink(bad[i]), -EINVAL);
	}
	errno = 0;
	ck_assert_ptr_null(shmq_create(NULL, NULL));
	ck_assert_int_eq(errno, EINVAL);
	/* "name" and "/name" are the same segment. */
	cu_name(name, "names");
	q = cu_create(name + 1, 4, 16, 2, 1);
	ck_assert_str_eq(shmq_name(q), name);
	shmq_close(q);
	q = shmq_open(name);
	ck_assert_ptr_nonnull(q);
	shmq_close(q);
	ck_assert_int_eq(shmq_unlink(name + 1), 0);
}
END_TEST

START_TEST(test_segment_create_exists)
{
	char name[CU_NAME_LEN];
	struct shmq *q;

	cu_name(name, "exists");
	q = cu_create(name, 4, 16, 2, 1);
	errno = 0;
	ck_assert_ptr_null(shmq_create(name, NULL));
	ck_assert_int_eq(errno, EEXIST);
	QASSERT_EQ(q, shmq_put(q, "x", 1, 0), 0);	/* still intact */
	shmq_close(q);
	ck_assert_int_eq(shmq_unlink(name), 0);
}
END_TEST

START_TEST(test_segment_open_missing)
{
	char name[CU_NAME_LEN];

	cu_name(name, "missing");
	expect_open_fails(name, 0, ENOENT, "missing");
	expect_open_fails(name, SHMQ_OPEN_RDONLY, ENOENT, "missing rdonly");
	ck_assert_int_eq(shmq_unlink(name), -ENOENT);
}
END_TEST

START_TEST(test_segment_bad_config)
{
	static const struct shmq_config bad[] = {
		{ SHMQ_CAPACITY_MAX + 1, 0, 0, 0, 0, 0 },
		{ 0, SHMQ_MSG_MAX_LIMIT + 1, 0, 0, 0, 0 },
		{ 0, 0, SHMQ_PROCS_LIMIT + 1, 0, 0, 0 },
		{ 0, 0, 0, SHMQ_LEASE_LIMIT + 1, 0, 0 },
		{ 0, 0, 0, 0, 01600, 0 },
		{ 0, 0, 0, 0, 0, 0x80 },		/* unknown flag */
	};
	char name[CU_NAME_LEN];

	cu_name(name, "config");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		ck_assert_msg(shmq_create(name, &bad[i]) == NULL &&
		    errno == EINVAL, "config %zu: errno %d", i, errno);
	}
	expect_open_fails(name, 0, ENOENT, "nothing created");
	expect_open_fails(name, 0x100, EINVAL, "unknown open flag");
}
END_TEST

START_TEST(test_segment_rdonly_ebadf)
{
	char name[CU_NAME_LEN], buf[64];
	struct shmq *q, *ro;
	struct shmq_lease lease;
	struct shmq_stats st;
	struct shmq_proc_info pi[4];
	struct shmq_lease_info li[4];
	struct iovec iov = { buf, sizeof(buf) };

	cu_name(name, "rdonly");
	q = cu_create(name, 8, 64, 4, 2);
	QASSERT_EQ(q, shmq_put(q, "abc", 3, 0), 0);
	QASSERT_EQ(q, shmq_take(q, buf, sizeof(buf), &lease, 0), 3);
	QASSERT_EQ(q, shmq_put(q, "defg", 4, 0), 0);
	ro = shmq_open_flags(name, SHMQ_OPEN_RDONLY);
	ck_assert_ptr_nonnull(ro);
	QASSERT_EQ(q, shmq_put(ro, "x", 1, 0), -EBADF);
	QASSERT_EQ(q, shmq_put_batch(ro, &iov, 1, 0), -EBADF);
	QASSERT_EQ(q, shmq_get(ro, buf, sizeof(buf), 0), -EBADF);
	QASSERT_EQ(q, shmq_get_batch(ro, &iov, 1, 0), -EBADF);
	QASSERT_EQ(q, shmq_take(ro, buf, sizeof(buf), &lease, 0), -EBADF);
	QASSERT_EQ(q, shmq_ack(ro, &lease), -EBADF);
	QASSERT_EQ(q, shmq_release(ro, &lease), -EBADF);
	QASSERT_EQ(q, shmq_recover(ro, 1), -EBADF);
	QASSERT_EQ(q, shmq_recover_dead(ro), -EBADF);
	/* Inspection works and takes no record. */
	QASSERT_EQ(ro, shmq_stats(ro, &st), 0);
	QASSERT_EQ(ro, st.procs, 1);
	QASSERT_EQ(ro, st.depth, 1);
	QASSERT_EQ(ro, st.leases_held, 1);
	QASSERT_EQ(ro, shmq_procs(ro, pi, 4), 1);
	QASSERT_EQ(ro, pi[0].pid, getpid());
	QASSERT_EQ(ro, shmq_leases(ro, li, 4), 1);
	QASSERT_EQ(ro, li[0].holder, getpid());
	QASSERT_EQ(ro, shmq_peek(ro, 0, buf, sizeof(buf)), 4);
	ck_assert_mem_eq(buf, "defg", 4);
	shmq_close(ro);
	QASSERT_EQ(q, shmq_ack(q, &lease), 0);
	QASSERT_EQ(q, shmq_get(q, buf, sizeof(buf), 0), 4);
	shmq_close(q);
	cu_assert_all_closed(name);
	ck_assert_int_eq(shmq_unlink(name), 0);
}
END_TEST

START_TEST(test_segment_fork_echild)
{
	char name[CU_NAME_LEN], buf[64];
	struct shmq *q;
	struct shmq_lease lease;
	struct shmq_stats st;
	pid_t pid;

	cu_name(name, "echild");
	q = cu_create(name, 8, 64, 4, 2);
	QASSERT_EQ(q, shmq_put(q, "abc", 3, 0), 0);
	QASSERT_EQ(q, shmq_put(q, "def", 3, 0), 0);
	QASSERT_EQ(q, shmq_take(q, buf, sizeof(buf), &lease, 0), 3);
	pid = cu_fork();
	if (pid == 0) {
		struct shmq *own;
		int bad = 0;

		bad |= shmq_put(q, "x", 1, 0) != -ECHILD;
		bad |= shmq_get(q, buf, sizeof(buf), 0) != -ECHILD;
		bad |= shmq_take(q, buf, sizeof(buf), &lease, 0) != -ECHILD;
		bad |= shmq_ack(q, &lease) != -ECHILD;
		bad |= shmq_release(q, &lease) != -ECHILD;
		bad |= shmq_recover(q, 1) != -ECHILD;
		bad |= shmq_recover_dead(q) != -ECHILD;
		shmq_close(q);		/* only unmaps */
		own = shmq_open(name);
		bad |= own == NULL || shmq_put(own, "child", 5, 0) != 0;
		shmq_close(own);
		_exit(bad ? 1 : 0);
	}
	cu_wait_exit(q, pid, 0);
	/* The parent's attachment and lease survived the child's close. */
	QASSERT_EQ(q, shmq_stats(q, &st), 0);
	QASSERT_EQ(q, st.procs, 1);
	QASSERT_EQ(q, st.leases_held, 1);
	QASSERT_EQ(q, st.redeliver_pending, 0);
	QASSERT_EQ(q, shmq_ack(q, &lease), 0);
	QASSERT_EQ(q, shmq_get(q, buf, sizeof(buf), 0), 3);
	ck_assert_mem_eq(buf, "def", 3);
	QASSERT_EQ(q, shmq_get(q, buf, sizeof(buf), 0), 5);
	ck_assert_mem_eq(buf, "child", 5);
	shmq_close(q);
	cu_assert_all_closed(name);
	ck_assert_int_eq(shmq_unlink(name), 0);
}
END_TEST

START_TEST(test_segment_unlink_keeps_attached)
{
	char name[CU_NAME_LEN], buf[16];
	struct shmq *a, *b;

	cu_name(name, "unlink");
	a = cu_create(name, 4, 16, 2, 1);
	b = shmq_open(name);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(shmq_unlink(name), 0);
	expect_open_fails(name, 0, ENOENT, "after unlink");
	QASSERT_EQ(a, shmq_put(a, "z", 1, 0), 0);
	QASSERT_EQ(b, shmq_get(b, buf, sizeof(buf), 0), 1);
	shmq_close(b);
	shmq_close(a);
}
END_TEST

START_TEST(test_segment_eusers)
{
	char name[CU_NAME_LEN];
	struct shmq *a, *b, *c;

	cu_name(name, "eusers");
	a = cu_create(name, 4, 16, 2, 1);
	b = shmq_open(name);
	ck_assert_ptr_nonnull(b);
	expect_open_fails(name, 0, EUSERS, "third attachment");
	shmq_close(b);
	c = shmq_open(name);		/* the record is free again */
	ck_assert_ptr_nonnull(c);
	shmq_close(c);
	shmq_close(a);
	cu_assert_all_closed(name);
	ck_assert_int_eq(shmq_unlink(name), 0);
}
END_TEST

START_TEST(test_segment_capacity_rounded)
{
	static const uint32_t asked[] = { 0, 1, 2, 3, 5, 100, 1024, 1025 };
	static const uint32_t got[] = { 1024, 2, 2, 4, 8, 128, 1024, 2048 };
	char name[CU_NAME_LEN];

	cu_name(name, "round");
	for (size_t i = 0; i < sizeof(asked) / sizeof(asked[0]); i++) {
		struct shmq *q = cu_create(name, asked[i], 16, 2, 1);
		struct shmq_stats st;

		QASSERT_EQ(q, shmq_capacity(q), got[i]);
		QASSERT_EQ(q, shmq_stats(q, &st), 0);
		QASSERT_EQ(q, st.capacity, got[i]);
		shmq_close(q);
		ck_assert_int_eq(shmq_unlink(name), 0);
	}
}
END_TEST

/*
 * Bad segments: a valid segment is created and closed, then corrupted
 * through a plain mapping of its file.  The pristine bytes are kept so
 * that each case starts from a valid segment.
 */
struct bad {
	char		 name[CU_NAME_LEN];
	int		 fd;
	size_t		 size;
	unsigned char	*map;
	unsigned char	*pristine;
	struct shmq_seg_header geo;	/* the header as created */
};

static void
bad_open(struct bad *b, const char *tag)
{
	char path[CU_NAME_LEN + 16];
	struct shmq *q;
	struct stat st;

	cu_name(b->name, tag);
	q = cu_create(b->name, 4, 64, 4, 2);
	shmq_close(q);
	snprintf(path, sizeof(path), "/dev/shm%s", b->name);
	b->fd = open(path, O_RDWR | O_CLOEXEC);
	ck_assert_msg(b->fd >= 0, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(fstat(b->fd, &st), 0);
	b->size = (size_t)st.st_size;
	b->map = mmap(NULL, b->size, PROT_READ | PROT_WRITE, MAP_SHARED, b->fd,
	    0);
	ck_assert(b->map != MAP_FAILED);
	b->pristine = malloc(b->size);
	ck_assert_ptr_nonnull(b->pristine);
	memcpy(b->pristine, b->map, b->size);
	memcpy(&b->geo, b->map, sizeof(b->geo));
}

/* Back to the valid segment as created. */
static void
bad_restore(struct bad *b)
{
	ck_assert_int_eq(ftruncate(b->fd, (off_t)b->size), 0);
	memcpy(b->map, b->pristine, b->size);
}

static void
bad_close(struct bad *b)
{
	munmap(b->map, b->size);
	close(b->fd);
	free(b->pristine);
	ck_assert_int_eq(shmq_unlink(b->name), 0);
}

static struct shmq_seg_header *
bad_hdr(struct bad *b)
{
	return (struct shmq_seg_header *)(void *)b->map;
}

static void
bad_put32(struct bad *b, size_t off, uint32_t v)
{
	memcpy(b->map + off, &v, sizeof(v));
}

static void
bad_put64(struct bad *b, size_t off, uint64_t v)
{
	memcpy(b->map + off, &v, sizeof(v));
}

/* The segment, restored, must open (and be usable) with flags. */
static void
bad_expect_ok(struct bad *b, unsigned flags, const char *what)
{
	struct shmq *q = shmq_open_flags(b->name, flags);
	char buf[64];

	ck_assert_msg(q != NULL, "%s: %s", what, strerror(errno));
	if (!(flags & SHMQ_OPEN_RDONLY)) {
		QASSERT_EQ(q, shmq_put(q, "ok", 2, 0), 0);
		QASSERT_EQ(q, shmq_get(q, buf, sizeof(buf), 0), 2);
	}
	shmq_close(q);
}

START_TEST(test_segment_bad_truncated)
{
	struct bad b;

	bad_open(&b, "trunc");
	ck_assert_int_eq(ftruncate(b.fd, (off_t)b.size - 1), 0);
	expect_open_fails(b.name, 0, ENODATA, "one byte short");
	ck_assert_int_eq(ftruncate(b.fd, (off_t)b.size / 2), 0);
	expect_open_fails(b.name, 0, ENODATA, "half");
	expect_open_fails(b.name, SHMQ_OPEN_RDONLY, ENODATA, "half, rdonly");
	ck_assert_int_eq(ftruncate(b.fd, sizeof(struct shmq_seg_header)), 0);
	expect_open_fails(b.name, 0, ENODATA, "header only");
	bad_restore(&b);
	bad_expect_ok(&b, 0, "restored");
	bad_close(&b);
}
END_TEST

START_TEST(test_segment_bad_shorter_than_header)
{
	struct bad b;

	bad_open(&b, "short");
	ck_assert_int_eq(ftruncate(b.fd, sizeof(struct shmq_seg_header) - 1),
	    0);
	expect_open_fails(b.name, 0, ENODATA, "header - 1");
	ck_assert_int_eq(ftruncate(b.fd, 8), 0);
	expect_open_fails(b.name, 0, ENODATA, "magic only");
	bad_close(&b);
}
END_TEST

START_TEST(test_segment_bad_empty_file)
{
	struct bad b;

	bad_open(&b, "empty");
	ck_assert_int_eq(ftruncate(b.fd, 0), 0);
	expect_open_fails(b.name, 0, EAGAIN, "size 0");
	expect_open_fails(b.name, SHMQ_OPEN_RDONLY, EAGAIN, "size 0, rdonly");
	bad_close(&b);
}
END_TEST

START_TEST(test_segment_bad_oversized)
{
	struct bad b;

	bad_open(&b, "oversize");
	ck_assert_int_eq(ftruncate(b.fd, (off_t)b.size + 4096), 0);
	expect_open_fails(b.name, 0, EBADMSG, "larger than seg_size");
	bad_close(&b);
}
END_TEST

START_TEST(test_segment_bad_magic)
{
	struct bad b;

	bad_open(&b, "magic");
	bad_put64(&b, 0, SHMQ_SEG_MAGIC ^ 1);
	expect_open_fails(b.name, 0, EPROTO, "wrong magic");
	expect_open_fails(b.name, SHMQ_OPEN_RDONLY, EPROTO, "rdonly");
	bad_put64(&b, 0, 0);
	expect_open_fails(b.name, 0, EAGAIN, "magic 0: not initialised");
	bad_restore(&b);
	bad_expect_ok(&b, 0, "restored");
	bad_close(&b);
}
END_TEST

START_TEST(test_segment_bad_version)
{
	struct bad b;

	bad_open(&b, "version");
	bad_hdr(&b)->version_major = SHMQ_LAYOUT_MAJOR + 1;
	expect_open_fails(b.name, 0, EPROTONOSUPPORT, "next major");
	bad_hdr(&b)->version_major = SHMQ_LAYOUT_MAJOR - 1;
	expect_open_fails(b.name, 0, EPROTONOSUPPORT, "previous major");
	/* A newer minor version is compatible. */
	bad_restore(&b);
	bad_hdr(&b)->version_minor = SHMQ_LAYOUT_MINOR + 1;
	bad_expect_ok(&b, 0, "next minor");
	bad_close(&b);
}
END_TEST

START_TEST(test_segment_bad_geometry)
{
#define HOFF(f)	offsetof(struct shmq_seg_header, f)
	struct bad b;

	bad_open(&b, "geometry");
	const struct { size_t off; int wide; uint64_t v; const char *what; }
	    cases[] = {
		{ HOFF(header_size), 0, b.geo.header_size + 64, "header_size" },
		{ HOFF(header_size), 0, 0, "header_size 0" },
		{ HOFF(flags), 0, 0x80000000u, "unknown flag" },
		{ HOFF(capacity), 0, 0, "capacity 0" },
		{ HOFF(capacity), 0, 3, "capacity 3" },
		{ HOFF(capacity), 0, 1, "capacity 1" },
		{ HOFF(capacity), 0, UINT32_C(1) << 31, "capacity 2^31" },
		{ HOFF(capacity), 0, 8, "capacity 8 (sizes disagree)" },
		{ HOFF(msg_max), 0, 0, "msg_max 0" },
		{ HOFF(msg_max), 0, UINT32_MAX, "msg_max 2^32-1" },
		{ HOFF(msg_max), 0, 200, "msg_max 200 (sizes disagree)" },
		{ HOFF(max_procs), 0, 0, "max_procs 0" },
		{ HOFF(max_procs), 0, 257, "max_procs 257" },
		{ HOFF(max_procs), 0, 5, "max_procs 5 (sizes disagree)" },
		{ HOFF(lease_max), 0, 0, "lease_max 0" },
		{ HOFF(lease_max), 0, 100000, "lease_max 100000" },
		{ HOFF(slot_size), 0, b.geo.slot_size - 64, "slot_size" },
		{ HOFF(entry_size), 0, 8, "entry_size" },
		{ HOFF(proc_size), 0, 64, "proc_size" },
		{ HOFF(seg_size), 1, b.geo.seg_size + 64, "seg_size" },
		{ HOFF(seg_size), 1, UINT64_MAX, "seg_size 2^64-1" },
		{ HOFF(procs_off), 1, b.geo.procs_off + 64, "procs_off" },
		{ HOFF(entries_off), 1, UINT64_MAX - 63, "entries_off" },
		{ HOFF(ring_off), 1, b.geo.ring_off - 64, "ring_off" },
		{ HOFF(ring_off), 1, b.size, "ring_off at the end" },
		{ HOFF(data_off), 1, b.geo.data_off - 64, "data_off" },
		{ HOFF(data_off), 1, b.size, "data_off at the end" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bad_restore(&b);
		if (cases[i].wide)
			bad_put64(&b, cases[i].off, cases[i].v);
		else
			bad_put32(&b, cases[i].off, (uint32_t)cases[i].v);
		expect_open_fails(b.name, 0, EBADMSG, cases[i].what);
		expect_open_fails(b.name, SHMQ_OPEN_RDONLY, EBADMSG,
		    cases[i].what);
	}
	bad_restore(&b);
	bad_expect_ok(&b, 0, "restored");
	bad_close(&b);
#undef HOFF
}
END_TEST

START_TEST(test_segment_bad_indices)
{
	struct bad b;
	size_t prod = offsetof(struct shmq_seg_header, prod_pos);
	size_t cons = offsetof(struct shmq_seg_header, cons_pos);
	uint64_t far = 1000000;

	bad_open(&b, "indices");
	bad_put64(&b, prod, far);
	expect_open_fails(b.name, 0, EBADMSG, "prod_pos far ahead");
	bad_restore(&b);
	bad_put64(&b, cons, far);
	expect_open_fails(b.name, 0, EBADMSG, "cons_pos far ahead");
	bad_restore(&b);
	bad_put64(&b, cons, UINT64_MAX - far);
	expect_open_fails(b.name, 0, EBADMSG, "cons_pos far behind");
	bad_restore(&b);
	bad_put64(&b, prod, far);
	bad_put64(&b, cons, far + 5 * b.geo.capacity);
	expect_open_fails(b.name, 0, EBADMSG, "both far from every slot tag");
	bad_close(&b);
}
END_TEST

static size_t
slot_off(struct bad *b, uint32_t i)
{
	return b->geo.ring_off + (size_t)i * sizeof(struct shmq_seg_slot);
}

static size_t
entry_off(struct bad *b, uint32_t i)
{
	return b->geo.entries_off + (size_t)i * b->geo.entry_size;
}

START_TEST(test_segment_bad_slot_words)
{
	struct bad b;

	bad_open(&b, "slots");
	uint32_t np = b.geo.max_procs, cap = b.geo.capacity;
	const struct { uint64_t w; const char *what; } cases[] = {
		{ SHMQ_SLOT_WORD(1, SHMQ_SLOT_WRITING, np), "owner = max_procs" },
		{ SHMQ_SLOT_WORD(1, SHMQ_SLOT_READING, 0xfff), "owner 4095" },
		{ SHMQ_SLOT_WORD(1, 4, 0), "state 4" },
		{ SHMQ_SLOT_WORD(1, 15, 0), "state 15" },
		{ SHMQ_SLOT_WORD(1 + 1000 * cap, SHMQ_SLOT_EMPTY, 0),
		    "tag far ahead" },
		{ SHMQ_SLOT_WORD(SHMQ_TAG_MASK - 1000 * cap, SHMQ_SLOT_FULL,
		    0), "tag far behind" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bad_restore(&b);
		bad_put64(&b, slot_off(&b, 1), cases[i].w);
		expect_open_fails(b.name, 0, EBADMSG, cases[i].what);
	}
	bad_close(&b);
}
END_TEST

START_TEST(test_segment_bad_lease_entries)
{
	struct bad b;

	bad_open(&b, "entries");
	uint32_t np = b.geo.max_procs, mm = b.geo.msg_max;
	const struct { uint64_t w; uint32_t len; const char *what; } cases[] = {
		{ SHMQ_ENTRY_WORD(0, 1, 5, 0), 0, "state 5" },
		{ SHMQ_ENTRY_WORD(0, 1, 15, 0), 0, "state 15" },
		{ SHMQ_ENTRY_WORD(0, 1, SHMQ_ENTRY_HELD, np), 0,
		    "owner = max_procs" },
		{ SHMQ_ENTRY_WORD(0, 1, SHMQ_ENTRY_HELD, 0), mm + 1,
		    "HELD, len > msg_max" },
		{ SHMQ_ENTRY_WORD(0, 1, SHMQ_ENTRY_REDELIVER, 0), UINT32_MAX,
		    "REDELIVER, len 2^32-1" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bad_restore(&b);
		bad_put64(&b, entry_off(&b, 2), cases[i].w);
		bad_put32(&b, entry_off(&b, 2) + offsetof(struct shmq_seg_entry,
		    len), cases[i].len);
		expect_open_fails(b.name, 0, EBADMSG, cases[i].what);
	}
	bad_close(&b);
}
END_TEST

START_TEST(test_segment_bad_proc_record)
{
	struct bad b;

	bad_open(&b, "record");
	bad_put64(&b, b.geo.procs_off + sizeof(struct shmq_seg_proc),
	    SHMQ_PROC_WORD(1, 7, 0));
	expect_open_fails(b.name, 0, EBADMSG, "record state 7");
	bad_close(&b);
}
END_TEST

/*
 * Wake-up semaphores are written by whoever is attached, so any bytes may
 * be there, and glibc trusts them: found by fuzz_segment, a garbage
 * "process-shared" word made a waker's sem_post() abort the process, and
 * attaching drained a garbage count one token at a time (4e9 of them).
 */
START_TEST(test_segment_bad_wake_sems)
{
	size_t off = offsetof(struct shmq_seg_proc, wake_sem);
	struct shmq_seg_proc *p;
	struct shmq *q;
	struct bad b;
	char buf[64];

	bad_open(&b, "wake");
	for (uint32_t i = 0; i < b.geo.max_procs; i++)
		memset(b.map + b.geo.procs_off + i * sizeof(*p) + off, 0xff,
		    sizeof(p->wake_sem));
	/* Record 1: a dead process asleep in get, its sleeper bit set. */
	p = (struct shmq_seg_proc *)(void *)(b.map + b.geo.procs_off +
	    sizeof(*p));
	atomic_store(&p->state, SHMQ_PROC_WORD(0x7ffffff0, SHMQ_PROC_ALIVE,
	    1));
	atomic_store(&p->asleep, SHMQ_ASLEEP_GET);
	atomic_store(&bad_hdr(&b)->get_sleepers[0], UINT64_C(1) << 1);
	q = shmq_open(b.name);
	ck_assert_msg(q != NULL, "open: %s", strerror(errno));
	QASSERT_EQ(q, shmq_put(q, "woken", 5, 0), 0);	/* posts to record 1 */
	QASSERT_EQ(q, shmq_recover_dead(q), 0);		/* posts to all asleep */
	QASSERT_EQ(q, shmq_get(q, buf, sizeof(buf), 0), 5);
	/* Sleeps on our own semaphore, made again, and wakes at the end. */
	QASSERT_EQ(q, shmq_get(q, buf, sizeof(buf), 10), -ETIMEDOUT);
	shmq_close(q);
	bad_close(&b);
}
END_TEST

/*
 * The recovery mutex is libc's, and libc trusts it: garbage in it once made
 * pthread_mutex_lock() wait for ever (found by fuzz_segment).  A mutex that
 * is not robust and process-shared is refused at once.
 */
START_TEST(test_segment_bad_recover_lock)
{
	size_t off = offsetof(struct shmq_seg_header, recover_lock);
	struct shmq *q;
	struct bad b;

	bad_open(&b, "lock");
	memset(b.map + off, 0xff, sizeof(bad_hdr(&b)->recover_lock));
	q = shmq_open(b.name);
	ck_assert_msg(q != NULL, "open: %s", strerror(errno));
	QASSERT_EQ(q, shmq_recover_dead(q), -EBADMSG);
	QASSERT_EQ(q, shmq_recover(q, 0x7ffffff0), -EBADMSG);
	shmq_close(q);				/* detaches all the same */
	bad_restore(&b);
	bad_expect_ok(&b, 0, "lock restored");
	bad_close(&b);
}
END_TEST

/*
 * A live process that holds the recovery mutex and never lets go (stopped,
 * or spinning) costs a recoverer LOCK_WAIT_S, not for ever; once it dies
 * the mutex is taken over as it should be.
 */
START_TEST(test_segment_recover_lock_held)
{
	pthread_mutex_t *m;
	struct shmq *q;
	struct bad b;
	int ready[2], st;
	pid_t pid;
	char c;

	bad_open(&b, "held");
	m = (pthread_mutex_t *)(void *)bad_hdr(&b)->recover_lock;
	ck_assert_int_eq(pipe(ready), 0);
	if ((pid = cu_fork()) == 0) {
		if (pthread_mutex_lock(m) != 0)
			_exit(1);
		(void)!write(ready[1], "x", 1);
		for (;;)
			pause();
	}
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	q = shmq_open(b.name);
	ck_assert_msg(q != NULL, "open: %s", strerror(errno));
	QASSERT_EQ(q, shmq_recover_dead(q), -ETIMEDOUT);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFSIGNALED(st));
	QASSERT_EQ(q, shmq_recover_dead(q), 0);	/* the owner died: ours */
	shmq_close(q);
	close(ready[0]);
	close(ready[1]);
	bad_close(&b);
}
END_TEST

START_TEST(test_segment_bad_foreign_file)
{
	struct bad b;

	bad_open(&b, "foreign");
	srandom(7);
	for (size_t i = 0; i < b.size; i++)
		b.map[i] = (unsigned char)random();
	if (bad_hdr(&b)->magic == 0 || bad_hdr(&b)->magic == SHMQ_SEG_MAGIC)
		bad_put64(&b, 0, 0x0123456789abcdefu);
	expect_open_fails(b.name, 0, EPROTO, "random bytes");
	expect_open_fails(b.name, SHMQ_OPEN_RDONLY, EPROTO, "random, rdonly");
	bad_close(&b);
}
END_TEST

START_TEST(test_segment_bad_owner)
{
	struct bad b;

	bad_open(&b, "owner");
	ck_assert_int_eq(fchown(b.fd, 12345, (gid_t)-1), 0);
	expect_open_fails(b.name, 0, EPERM, "another uid");
	expect_open_fails(b.name, SHMQ_OPEN_RDONLY, EPERM, "another, rdonly");
	expect_open_fails(b.name, SHMQ_OPEN_ANY_MODE, EPERM, "any mode");
	bad_expect_ok(&b, SHMQ_OPEN_ANY_OWNER, "SHMQ_OPEN_ANY_OWNER");
	bad_expect_ok(&b, SHMQ_OPEN_ANY_OWNER | SHMQ_OPEN_RDONLY,
	    "SHMQ_OPEN_ANY_OWNER, rdonly");
	bad_close(&b);
}
END_TEST

START_TEST(test_segment_bad_mode)
{
	static const mode_t modes[] = { 0666, 0640, 0604, 0660, 0601 };
	struct bad b;

	bad_open(&b, "mode");
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		ck_assert_int_eq(fchmod(b.fd, modes[i]), 0);
		expect_open_fails(b.name, 0, EPERM, "group/other access");
		expect_open_fails(b.name, SHMQ_OPEN_ANY_OWNER, EPERM,
		    "any owner");
		bad_expect_ok(&b, SHMQ_OPEN_ANY_MODE, "SHMQ_OPEN_ANY_MODE");
	}
	ck_assert_int_eq(fchmod(b.fd, 0600), 0);
	bad_expect_ok(&b, 0, "0600");
	bad_close(&b);
}
END_TEST

/* One random byte of the header or of a state word, as an offset. */
static size_t
fuzz_offset(struct bad *b)
{
	uint32_t cap = b->geo.capacity, np = b->geo.max_procs;
	uint32_t ne = np * (b->geo.lease_max + 1);

	switch (random() % 4) {
	case 0:
		/* The header up to the recovery mutex, which cannot be
		 * validated (a garbage owner would block shmq_close). */
		return (size_t)random() % offsetof(struct shmq_seg_header,
		    recover_lock);
	case 1:
		return b->geo.procs_off + (size_t)(random() % np) *
		    sizeof(struct shmq_seg_proc) + (size_t)random() % 8;
	case 2:
		return entry_off(b, (uint32_t)random() % ne) +
		    (size_t)random() % sizeof(struct shmq_seg_entry);
	default:
		return slot_off(b, (uint32_t)random() % cap) +
		    (size_t)random() % sizeof(struct shmq_seg_slot);
	}
}

/* A usable segment (after fuzzing) survives a short session. */
static void
fuzz_use(struct shmq *q)
{
	char buf[64];
	struct shmq_lease lease;
	struct shmq_stats st;
	struct shmq_proc_info pi[8];
	struct shmq_lease_info li[16];

	(void)shmq_put(q, "fuzz", 4, 0);
	(void)shmq_get(q, buf, sizeof(buf), 0);
	if (shmq_take(q, buf, sizeof(buf), &lease, 0) >= 0)
		(void)shmq_ack(q, &lease);
	(void)shmq_peek(q, 0, buf, sizeof(buf));
	(void)shmq_stats(q, &st);
	(void)shmq_procs(q, pi, 8);
	(void)shmq_leases(q, li, 16);
}

START_TEST(test_segment_fuzz_never_crashes)
{
	static const int documented[] = { EAGAIN, EPROTO, EPROTONOSUPPORT,
	    ENODATA, EBADMSG, EUSERS };
	unsigned opened = 0, refused = 0;
	struct bad b;

	bad_open(&b, "fuzz");
	for (unsigned it = 0; it < 2000; it++) {
		struct shmq *q;
		bool ok = false;

		srandom(it);
		bad_restore(&b);
		for (long n = 1 + random() % 4; n > 0; n--)
			b.map[fuzz_offset(&b)] ^= (unsigned char)(1 +
			    random() % 255);
		errno = 0;
		q = shmq_open(b.name);
		if (q != NULL) {
			fuzz_use(q);
			shmq_close(q);
			opened++;
			continue;
		}
		for (size_t i = 0; i < sizeof(documented) /
		    sizeof(documented[0]); i++)
			ok |= errno == documented[i];
		ck_assert_msg(ok, "iteration %u (srandom(%u)): errno %d (%s)"
		    " is not documented for shmq_open", it, it, errno,
		    strerror(errno));
		refused++;
	}
	fprintf(stderr, "fuzz: %u opened, %u refused\n", opened, refused);
	bad_close(&b);
}
END_TEST

Suite *
segment_suite(void)
{
	Suite *s = suite_create("segment");
	TCase *tc = cu_tcase("Core");

	tcase_add_test(tc, test_segment_create_open_close);
	tcase_add_test(tc, test_segment_anon_threads);
	tcase_add_test(tc, test_segment_anon_too_big);
	tcase_add_test(tc, test_segment_name_validation);
	tcase_add_test(tc, test_segment_create_exists);
	tcase_add_test(tc, test_segment_open_missing);
	tcase_add_test(tc, test_segment_bad_config);
	tcase_add_test(tc, test_segment_rdonly_ebadf);
	tcase_add_test(tc, test_segment_fork_echild);
	tcase_add_test(tc, test_segment_unlink_keeps_attached);
	tcase_add_test(tc, test_segment_eusers);
	suite_add_tcase(s, tc);

	tc = cu_tcase("Limits");
	tcase_add_test(tc, test_segment_capacity_rounded);
	suite_add_tcase(s, tc);

	tc = cu_tcase("Bad segments");
	tcase_add_test(tc, test_segment_bad_truncated);
	tcase_add_test(tc, test_segment_bad_shorter_than_header);
	tcase_add_test(tc, test_segment_bad_empty_file);
	tcase_add_test(tc, test_segment_bad_oversized);
	tcase_add_test(tc, test_segment_bad_magic);
	tcase_add_test(tc, test_segment_bad_version);
	tcase_add_test(tc, test_segment_bad_geometry);
	tcase_add_test(tc, test_segment_bad_indices);
	tcase_add_test(tc, test_segment_bad_slot_words);
	tcase_add_test(tc, test_segment_bad_lease_entries);
	tcase_add_test(tc, test_segment_bad_proc_record);
	tcase_add_test(tc, test_segment_bad_wake_sems);
	tcase_add_test(tc, test_segment_bad_recover_lock);
	tcase_add_test(tc, test_segment_recover_lock_held);
	tcase_add_test(tc, test_segment_bad_foreign_file);
	tcase_add_test(tc, test_segment_bad_owner);
	tcase_add_test(tc, test_segment_bad_mode);
	tcase_add_test(tc, test_segment_fuzz_never_crashes);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return s;
}
