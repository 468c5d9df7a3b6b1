/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * mkseeds.c - writes the seed corpus of the fuzz targets: real libshmq
 * segments of several geometries and states (some left by a process that
 * died at a fault point), pipeline control segments, and request lines.
 *
 *	mkseeds DIR	DIR/fuzz_segment, DIR/fuzz_tool, DIR/fuzz_proto
 *
 * Built with -DSHMQ_FAULT_INJECT (make fuzz-seeds).  Whatever depends on
 * the run - pids, start times, clocks, the rate history - is rewritten to
 * fixed values, so that a regenerated corpus is the same bytes: the
 * generator's own pid becomes 1 (always alive), every other pid one that
 * cannot exist (above PID_MAX_LIMIT), so the fuzzer meets both.
 *
 * What a fuzzer found is made again here from its root cause (the
 * regress-* seeds), so that make fuzz-seeds keeps every regression input.
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"
#include "fault.h"
#include "shmq.h"
#include "shmq_layout.h"

#define DEAD_PID	0x3ffff000u	/* + n: above PID_MAX_LIMIT */
#define FIXED_NS	UINT64_C(1700000000000000000)
#define FIXED_MONO_NS	UINT64_C(1000000000)
#define MAX_PIDS	16

static const char *outdir;
static char	 qname[64];
static pid_t	 pids[MAX_PIDS];	/* pids met, in order: DEAD_PID + i */
static unsigned	 npids;

/* ---- normalising --------------------------------------------------------- */

static uint32_t
pid_map(uint32_t pid)
{
	if (pid == 0)
		return 0;
	if (pid == (uint32_t)getpid())
		return 1;
	for (unsigned i = 0; i < npids; i++)
		if ((uint32_t)pids[i] == pid)
			return DEAD_PID + i;
	if (npids == MAX_PIDS)
		errx(1, "too many pids");
	pids[npids++] = (pid_t)pid;
	return DEAD_PID + npids - 1;
}

static void
put64(_Atomic uint64_t *p, uint64_t v)
{
	atomic_store_explicit(p, v, memory_order_relaxed);
}

static uint64_t
get64(_Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

/* The recovery mutex: its owner tid, and (glibc) the robust-list links a
 * process that died holding it left behind. */
static void
norm_mutex(uint8_t *lock)
{
#ifdef __GLIBC__
	pthread_mutex_t *m = (pthread_mutex_t *)(void *)lock;

	if (m->__data.__lock & FUTEX_TID_MASK)
		m->__data.__lock = (int)((m->__data.__lock & ~FUTEX_TID_MASK) |
		    pid_map((uint32_t)(m->__data.__lock & FUTEX_TID_MASK)));
	if (m->__data.__owner > 0)
		m->__data.__owner = (int)pid_map((uint32_t)m->__data.__owner);
	m->__data.__list.__prev = NULL;
	m->__data.__list.__next = NULL;
#else
	(void)lock;
#endif
}

static void
norm_queue(uint8_t *seg)
{
	struct shmq_seg_header *h = (void *)seg;
	uint32_t nent = h->max_procs * (h->lease_max + 1);

	npids = 0;
	h->creator_pid = pid_map(h->creator_pid);
	h->creator_start = 0;
	h->created_ns = FIXED_NS;
	put64(&h->rate_sec, 0);
	memset(h->rates, 0, sizeof(h->rates));
	norm_mutex(h->recover_lock);
	for (uint32_t i = 0; i < h->max_procs; i++) {
		struct shmq_seg_proc *p = (void *)(seg + h->procs_off +
		    i * sizeof(*p));
		uint64_t w = get64(&p->state);
		put64(&p->state, SHMQ_PROC_WORD(pid_map(SHMQ_PROC_PID(w)),
		    SHMQ_PROC_STATE(w), SHMQ_PROC_GEN(w)));
		put64(&p->start_ticks, 0);
		put64(&p->last_op_ns, get64(&p->last_op_ns) ? FIXED_MONO_NS :
		    0);
	}
	for (uint32_t i = 0; i < nent; i++) {
		struct shmq_seg_entry *e = (void *)(seg + h->entries_off +
		    (uint64_t)i * h->entry_size);
		put64(&e->taken_ns, get64(&e->taken_ns) ? FIXED_MONO_NS : 0);
		atomic_store(&e->put_ms, 1000);
	}
	for (uint32_t i = 0; i < h->capacity; i++) {
		struct shmq_seg_slot *s = (void *)(seg + h->ring_off +
		    (uint64_t)i * sizeof(*s));
		atomic_store(&s->put_ms, 1000);
	}
}

static void
norm_ctl(uint8_t *seg)
{
	struct shmpipe_ctl *h = (void *)seg;

	h->supervisor_pid = pid_map(h->supervisor_pid);
	h->supervisor_start = 0;
	h->started_ns = FIXED_NS;
}

/* ---- files ------------------------------------------------------------- */

static void
write_file(const char *target, const char *name, const void *p, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, target);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		err(1, "mkdir %s", path);
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
	if ((f = fopen(path, "w")) == NULL || fwrite(p, 1, n, f) != n ||
	    fclose(f) != 0)
		err(1, "%s", path);
}

/* The bytes of /dev/shm/seg, malloc'd. */
static uint8_t *
read_seg(const char *seg, size_t *np)
{
	struct stat st;
	uint8_t *p;
	int fd;

	if ((fd = shm_open(seg, O_RDONLY, 0)) < 0 || fstat(fd, &st) != 0)
		err(1, "%s", seg);
	if ((p = malloc((size_t)st.st_size)) == NULL ||
	    pread(fd, p, (size_t)st.st_size, 0) != st.st_size)
		err(1, "read %s", seg);
	close(fd);
	*np = (size_t)st.st_size;
	return p;
}

/* ---- queue seeds --------------------------------------------------------- */

struct qseed {
	const char	*s_name;
	uint32_t	 s_cap, s_msg_max, s_procs, s_leases, s_flags;
	void		(*s_fill)(struct shmq *q);
	unsigned	 s_to;		/* 1: segment corpus, 2: tool, 3 both */
	bool		 s_half;	/* magic 0: half created */
	void		(*s_patch)(uint8_t *seg);	/* or NULL */
};

static void
must(int r, const char *what)
{
	if (r < 0)
		errx(1, "%s: %s", what, strerror(-r));
}

/* A child opens the queue, arms point and runs op; it must die there. */
static pid_t
child_at(const char *point, void (*op)(struct shmq *q))
{
	struct shmq *q;
	pid_t pid;
	int st;

	if ((pid = fork()) < 0)
		err(1, "fork");
	if (pid == 0) {
		if ((q = shmq_open(qname)) == NULL)
			_exit(2);
		shmq_fault_arm(point, 1);
		op(q);
		_exit(3);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != SHMQ_FAULT_EXIT)
		errx(1, "child for %s: status %d", point, st);
	return pid;
}

static void
op_put(struct shmq *q)
{
	(void)shmq_put(q, "cut short", 9, 0);
}

static void
op_get(struct shmq *q)
{
	char buf[256];

	(void)shmq_get(q, buf, sizeof(buf), 0);
}

static void
op_get_wait(struct shmq *q)
{
	char buf[256];

	(void)shmq_get(q, buf, sizeof(buf), -1);
}

static void
op_take_ack(struct shmq *q)
{
	struct shmq_lease l;
	char buf[256];

	if (shmq_take(q, buf, sizeof(buf), &l, 0) >= 0)
		(void)shmq_ack(q, &l);
}

static void
fill_none(struct shmq *q)
{
	(void)q;
}

static void
fill_msgs(struct shmq *q)
{
	static const uint8_t bin[] = { 0, 1, 2, 0xff, '\n', '\t', 0x7f, 'x' };

	must(shmq_put(q, "hello", 5, 0), "put");
	must(shmq_put(q, "", 0, 0), "put");
	must(shmq_put(q, bin, sizeof(bin), 0), "put");
}

static void
fill_full(struct shmq *q)
{
	while (shmq_put(q, "full", 4, 0) == 0)
		;
}

/* The indices and tags a few laps on. */
static void
fill_wrapped(struct shmq *q)
{
	char buf[64];

	for (uint32_t i = 0; i < 2 * shmq_capacity(q) + 1; i++) {
		must(shmq_put(q, "lap", 3, 0), "put");
		must((int)shmq_get(q, buf, sizeof(buf), 0), "get");
	}
	must(shmq_put(q, "one", 3, 0), "put");
	must(shmq_put(q, "two", 3, 0), "put");
}

/* Leases held, one released for redelivery. */
static void
fill_leases(struct shmq *q)
{
	struct shmq_lease l1, l2;
	char buf[64];

	for (int i = 0; i < 4; i++)
		must(shmq_put(q, "leased", 6, 0), "put");
	must((int)shmq_take(q, buf, sizeof(buf), &l1, 0), "take");
	must((int)shmq_take(q, buf, sizeof(buf), &l2, 0), "take");
	must(shmq_release(q, &l2), "release");
}

static void
fill_put_cut(struct shmq *q)
{
	must(shmq_put(q, "before", 6, 0), "put");
	child_at("put.copied", op_put);
}

static void
fill_get_cut(struct shmq *q)
{
	must(shmq_put(q, "copied", 6, 0), "put");
	child_at("get.copied", op_get);
}

static void
fill_take_cut(struct shmq *q)
{
	must(shmq_put(q, "staged", 6, 0), "put");
	must(shmq_put(q, "held", 4, 0), "put");
	child_at("take.copied", op_take_ack);
	child_at("take.held", op_take_ack);
}

/* Leases of a dead consumer, one redelivery taken by another that died. */
static void
fill_dead_leases(struct shmq *q)
{
	pid_t dead;

	for (int i = 0; i < 3; i++)
		must(shmq_put(q, "lease", 5, 0), "put");
	dead = child_at("ack.before", op_take_ack);
	child_at("ack.before", op_take_ack);
	(void)shmq_recover(q, dead);
	child_at("redo.claimed", op_take_ack);
}

/* A recovery killed with the mutex held: its owner died in it. */
static void
fill_recovery_cut(struct shmq *q)
{
	pid_t dead;
	pid_t pid;
	int st;

	must(shmq_put(q, "rescued", 7, 0), "put");
	dead = child_at("take.claimed", op_take_ack);
	if ((pid = fork()) < 0)
		err(1, "fork");
	if (pid == 0) {
		struct shmq *h = shmq_open(qname);
		if (h == NULL)
			_exit(2);
		shmq_fault_arm("recover.staged", 1);
		(void)shmq_recover(h, dead);
		_exit(3);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != SHMQ_FAULT_EXIT)
		errx(1, "recovering child: status %d", st);
}

/* A consumer that died asleep: its sleeper bit and asleep flag set. */
static void
fill_sleeper(struct shmq *q)
{
	(void)q;
	child_at("wait.registered", op_get_wait);
}

/* ---- regressions: what the fuzzers found, made again by hand -------- */

/*
 * Garbage in every wake-up semaphore, and record 1 a dead process asleep in
 * get, its sleeper bit set: a put posts to it, recovery posts to it,
 * attaching drains our own.  Unchecked, glibc's sem_post() aborted on the
 * futex operation it read from the garbage (fuzz_segment).
 */
static void
patch_garbage_wake(uint8_t *seg)
{
	struct shmq_seg_header *h = (void *)seg;
	size_t off = offsetof(struct shmq_seg_proc, wake_sem);
	struct shmq_seg_proc *p;

	for (uint32_t i = 0; i < h->max_procs; i++)
		memset(seg + h->procs_off + i * sizeof(*p) + off, 0xff,
		    sizeof(p->wake_sem));
	p = (void *)(seg + h->procs_off + sizeof(*p));
	atomic_store(&p->state, SHMQ_PROC_WORD(DEAD_PID + 15, SHMQ_PROC_ALIVE,
	    1));
	atomic_store(&p->asleep, SHMQ_ASLEEP_GET);
	atomic_store(&h->get_sleepers[0], UINT64_C(1) << 1);
}

/*
 * Garbage in the recovery mutex around an unlocked lock word (bit 0 set:
 * fuzz_segment keeps such bytes).  Unchecked, pthread_mutex_lock() took it
 * for another kind of mutex or waited for ever (fuzz_segment).
 */
static void
patch_garbage_lock(uint8_t *seg)
{
	struct shmq_seg_header *h = (void *)seg;
	uint32_t word = 1;

	memset(h->recover_lock, 0xff, sizeof(h->recover_lock));
	memcpy(h->recover_lock, &word, sizeof(word));
}

static const struct qseed qseeds[] = {
	{ "q-min-empty", 2, 1, 1, 1, 0, fill_none, 3, false, NULL },
	{ "q-msgs", 4, 48, 2, 2, 0, fill_msgs, 3, false, NULL },
	{ "q-fences-msgs", 4, 16, 2, 1, SHMQ_CREATE_FENCES, fill_msgs, 1,
	    false, NULL },
	{ "q-full", 8, 32, 2, 1, 0, fill_full, 3, false, NULL },
	{ "q-wrapped", 4, 32, 2, 1, 0, fill_wrapped, 3, false, NULL },
	{ "q-leases", 8, 64, 3, 2, 0, fill_leases, 3, false, NULL },
	{ "q-put-cut", 8, 40, 4, 2, 0, fill_put_cut, 3, false, NULL },
	{ "q-get-cut", 8, 40, 4, 2, 0, fill_get_cut, 3, false, NULL },
	{ "q-take-cut", 8, 40, 4, 2, 0, fill_take_cut, 3, false, NULL },
	{ "q-dead-leases", 8, 40, 4, 2, 0, fill_dead_leases, 3, false, NULL },
	{ "q-recovery-cut", 4, 40, 4, 1, 0, fill_recovery_cut, 1, false, NULL },
	{ "q-sleeper", 4, 24, 2, 1, 0, fill_sleeper, 3, false, NULL },
	{ "q-many-procs", 4, 8, 70, 1, 0, fill_msgs, 3, false, NULL },
	{ "q-half-created", 4, 16, 2, 1, 0, fill_none, 2, true, NULL },
	{ "regress-garbage-wake", 4, 48, 2, 2, 0, fill_msgs, 3, false,
	    patch_garbage_wake },
	{ "regress-garbage-lock", 4, 48, 2, 2, 0, fill_msgs, 3, false,
	    patch_garbage_lock },
};

static void
queue_seed(const struct qseed *s)
{
	struct shmq_config cfg = { s->s_cap, s->s_msg_max, s->s_procs,
	    s->s_leases, 0600, s->s_flags };
	struct shmq *q;
	uint8_t *seg;
	size_t n;

	snprintf(qname, sizeof(qname), "/mkseeds-%d", (int)getpid());
	shmq_unlink(qname);
	if ((q = shmq_create(qname, &cfg)) == NULL)
		err(1, "shmq_create %s", s->s_name);
	s->s_fill(q);
	seg = read_seg(qname, &n);		/* q still attached */
	shmq_close(q);
	shmq_unlink(qname);
	norm_queue(seg);
	if (s->s_half)
		memset(seg, 0, sizeof(uint64_t));	/* the magic */
	if (s->s_patch != NULL)
		s->s_patch(seg);
	if (s->s_to & 1)
		write_file("fuzz_segment", s->s_name, seg, n);
	if (s->s_to & 2)
		write_file("fuzz_tool", s->s_name, seg, n);
	free(seg);
}

/* ---- control segment seeds ---------------------------------------------- */

static void
proc_set(struct ctl *c, uint32_t i, uint32_t role, uint32_t state,
    const char *last_exit)
{
	struct shmpipe_proc *p = ctl_proc(c, i);

	atomic_store(&p->pid, i == 0 ? 1 : DEAD_PID + 8 + i);
	atomic_store(&p->state, state);
	p->role = role;
	p->index = i;
	atomic_store(&p->generation, 1 + i);
	atomic_store(&p->served, 10 * i);
	atomic_store(&p->served_total, 100 * i);
	if (last_exit != NULL) {
		atomic_store(&p->last_status, 11);
		atomic_store(&p->restarts, 2);
		strlcpy(p->last_exit, last_exit, sizeof(p->last_exit));
	}
}

/* A running pipeline: one of each stage, a processor on a request. */
static void
ctl_running(struct ctl *c)
{
	struct shmpipe_proc *p = ctl_proc(c, 1);

	proc_set(c, 0, SHMPIPE_ROLE_REQUEST, SHMPIPE_PROC_READY, NULL);
	proc_set(c, 1, SHMPIPE_ROLE_PROCESSOR, SHMPIPE_PROC_READY, NULL);
	proc_set(c, 2, SHMPIPE_ROLE_REPLY, SHMPIPE_PROC_READY, NULL);
	atomic_store(&p->cur_conn, SHMPIPE_CONN_ID(3, 0));
	atomic_store(&p->cur_seq, 7);
	atomic_store(&p->busy_since_ns, FIXED_MONO_NS);
	atomic_store(&ctl_conn(c, 0)->state, (uint64_t)3 << 32 |
	    SHMPIPE_CONN_OPEN);
	atomic_store(&ctl_slab(c, 0)->stage, SHMPIPE_SLAB_WORD(1,
	    SHMPIPE_SLAB_FILLED));
	atomic_store(&ctl_slab(c, 0)->len, 7);
	memcpy(ctl_slab_data(ctl_slab(c, 0)), "OK echo", 7);
	atomic_store(&c->c_hdr->accepted, 8);
	atomic_store(&c->c_hdr->reserved, 8);
	atomic_store(&c->c_hdr->answered, 6);
	atomic_store(&c->c_hdr->freed, 6);
}

/* Draining after crashes: a processor down, one retired, a verdict. */
static void
ctl_crashed(struct ctl *c)
{
	proc_set(c, 0, SHMPIPE_ROLE_REQUEST, SHMPIPE_PROC_STOPPING, NULL);
	proc_set(c, 1, SHMPIPE_ROLE_PROCESSOR, SHMPIPE_PROC_DOWN,
	    "killed by signal 11 (SIGSEGV)");
	proc_set(c, 2, SHMPIPE_ROLE_PROCESSOR, SHMPIPE_PROC_RETIRED,
	    "exited with status 1");
	proc_set(c, 3, SHMPIPE_ROLE_REPLY, SHMPIPE_PROC_BUSY, NULL);
	atomic_store(&c->c_hdr->phase, SHMPIPE_PHASE_DRAINING);
	atomic_store(&c->c_hdr->restarts, 5);
	atomic_store(&c->c_hdr->timeouts, 1);
	atomic_store(&ctl_verdict(c, 0)->seq, 3);
	atomic_store(&ctl_verdict(c, 0)->crashes, 2);
	atomic_store(&ctl_verdict(c, 0)->conn, SHMPIPE_CONN_ID(1, 0));
}

static void
ctl_none(struct ctl *c)
{
	(void)c;
}

struct cseed {
	const char	*s_name;
	struct ctl_params s_params;
	void		(*s_fill)(struct ctl *c);
	bool		 s_half;
};

static const struct cseed cseeds[] = {
	{ "ctl-empty", { 1, 1, 1, 1, 1, 1, 0, 0 }, ctl_none, false },
	{ "ctl-running", { 3, 1, 64, 4, 2, 3, 1000, 0 }, ctl_running, false },
	{ "ctl-crashed", { 4, 1, 16, 2, 2, 3, 0, SHMPIPE_CONN_FILE },
	    ctl_crashed, false },
	{ "ctl-half-created", { 2, 1, 8, 1, 1, 1, 0, 0 }, ctl_none, true },
};

static void
ctl_seed(const struct cseed *s)
{
	char pipe[32], seg[64];
	struct ctl c;
	uint8_t *p;
	size_t n;

	snprintf(pipe, sizeof(pipe), "mkseeds%d", (int)getpid());
	snprintf(seg, sizeof(seg), "/shmpipe.%s.ctl", pipe);
	shm_unlink(seg);
	must(ctl_create(&c, pipe, &s->s_params), "ctl_create");
	s->s_fill(&c);
	ctl_close(&c);
	p = read_seg(seg, &n);
	shm_unlink(seg);
	norm_ctl(p);
	memset(((struct shmpipe_ctl *)(void *)p)->name, 0, SHMPIPE_NAME_MAX);
	strlcpy(((struct shmpipe_ctl *)(void *)p)->name, "fuzz",
	    SHMPIPE_NAME_MAX);
	if (s->s_half)
		memset(p, 0, sizeof(uint64_t));
	write_file("fuzz_tool", s->s_name, p, n);
	free(p);
}

/* ---- request lines ------------------------------------------------------- */

static const struct {
	const char	*l_name;
	const char	*l_text;
	size_t		 l_len;
} lines[] = {
#define LINE(name, text)	{ name, text, sizeof(text) - 1 }
	LINE("echo", "echo hello world"),
	LINE("echo-empty", "echo "),
	LINE("echo-cr", "ECHO x\r"),
	LINE("upper", "upper Mixed Case 123"),
	LINE("rev", "rev abc\0def"),
	LINE("sha256", "sha256 abc"),
	LINE("sha256-none", "sha256"),
	LINE("fib", "fib 20"),
	LINE("fib-bad", "fib 41"),
	LINE("fib-neg", "fib -1"),
	LINE("sleep", "sleep 0"),
	LINE("sleep-bad", "sleep x"),
	LINE("crash", "crash"),
	LINE("crash-arg", "crash now"),
	LINE("empty", ""),
	LINE("space", " x"),
	LINE("newline", "echo a\nb"),
	LINE("unknown", "frobnicate \x01\x7f\xff\\"),
	LINE("len", "len abcdef"),
	LINE("add", "add 2 3"),
	LINE("add-overflow", "add 9223372036854775807 1"),
	LINE("hello", "hello"),
	LINE("hello-name", "Hello bob"),
	LINE("long", "echo 0123456789012345678901234567890123456789012345678"
	    "9012345678901234567890123456789012345678901234567890123456789"
	    "0123456789012345678901234567890123456789"),
#undef LINE
};

int
main(int argc, char **argv)
{
	if (argc != 2)
		errx(64, "usage: mkseeds DIR");
	outdir = argv[1];
	if (mkdir(outdir, 0755) != 0 && errno != EEXIST)
		err(1, "mkdir %s", outdir);
	for (size_t i = 0; i < sizeof(qseeds) / sizeof(qseeds[0]); i++)
		queue_seed(&qseeds[i]);
	for (size_t i = 0; i < sizeof(cseeds) / sizeof(cseeds[0]); i++)
		ctl_seed(&cseeds[i]);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		write_file("fuzz_proto", lines[i].l_name, lines[i].l_text,
		    lines[i].l_len);
	return 0;
}
