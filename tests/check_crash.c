/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_crash.c - crash tests: a process dies at every fault point of the
 * library in turn and recovery must leave the queue whole (the claims at
 * the top of recover.c), then a storm of SIGKILLs against running
 * producers and consumers.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_util.h"
#include "shmq_int.h"

/*
 * Part 1: fault points.  Each scenario sets the queue up, forks a child
 * that reaches the point with shmq_fault_arm() and must _exit there, then
 * recovers it.  cr_verify() then checks every claim: accepted messages
 * delivered exactly once, whole, with the delivery count recover.c says;
 * a put cut short before publishing voided, after it delivered; nothing
 * delivered twice, no phantoms, FIFO for first deliveries; the capacity
 * whole; no sleeper bit left; every semaphore 0 once everyone has closed.
 */
#define CR_CAP		8
#define CR_MSG_MAX	256
#define CR_PROCS	16
#define CR_LEASES	4
#define CR_MAXID	256
#define CR_CHILD_ID	200		/* the message a crashing child puts */
#define CR_FILL_ID	1000		/* ids of the final fill */
#define CR_RETURNED	91		/* exit status: the point was missed */

enum cr_want {
	W_NONE,				/* never put: must not appear */
	W_ONCE,				/* accepted: exactly once */
	W_VOID,				/* put cut short before publishing */
	W_GONE				/* delivered before the crash */
};

static struct {
	char		 name[CU_NAME_LEN];
	struct shmq	*q;
	uint32_t	 next_id;	/* next id the parent puts */
	uint8_t		 want[CR_MAXID];
	uint8_t		 deliv[CR_MAXID];	/* deliveries expected */
	bool		 by_parent[CR_MAXID];
	pid_t		 victim;	/* whom a recovering child recovers */
	_Atomic uint64_t *report;	/* what a child received */
} cr;

typedef int (*cr_op)(struct shmq *h, const char *point);
typedef void (*cr_scenario)(const char *point);

/* A fresh queue, named after the scenario (a fault point). */
static void
cr_begin(const char *what)
{
	char tag[48];

	snprintf(tag, sizeof(tag), "crash-%s", what);
	memset(&cr, 0, sizeof(cr));
	cu_name(cr.name, tag);
	cr.q = cu_create(cr.name, CR_CAP, CR_MSG_MAX, CR_PROCS, CR_LEASES);
	cr.next_id = 1;
	cr.report = cu_shared(sizeof(*cr.report));
}

/* The parent puts n messages; each is accepted. */
static void
cr_put(unsigned n)
{
	unsigned char buf[CR_MSG_MAX];

	for (unsigned i = 0; i < n; i++) {
		uint32_t id = cr.next_id++;
		size_t len = cu_msg_make(buf, id, cu_msg_len(id, CR_MSG_MAX));

		QASSERT_EQ(cr.q, shmq_put(cr.q, buf, len, 0), 0);
		cr.want[id] = W_ONCE;
		cr.deliv[id] = 1;
		cr.by_parent[id] = true;
	}
}

/* A child that attaches and runs op; its exit status is op's. */
static pid_t
cr_fork(cr_op op, const char *point)
{
	pid_t pid = cu_fork();

	if (pid == 0) {
		struct shmq *h = shmq_open(cr.name);

		_exit(h == NULL ? 90 : op(h, point));
	}
	return pid;
}

/* The child must have died at its fault point. */
static void
cr_expect_fault(pid_t pid, const char *point)
{
	int status = 0;

	QASSERT_MSG(cr.q, cu_wait(pid, &status, CU_WAIT_S) == pid,
	    "child armed at %s still running", point);
	QASSERT_MSG(cr.q, WIFEXITED(status) &&
	    WEXITSTATUS(status) == SHMQ_FAULT_EXIT,
	    "fault point %s was not reached: child %s %d", point,
	    WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ?
	    WEXITSTATUS(status) : WTERMSIG(status));
}

/* Recover pid: n messages put up for redelivery, and nothing the second
 * time. */
static void
cr_recover(pid_t pid, int n)
{
	QASSERT_EQ(cr.q, shmq_recover(cr.q, pid), n);
	QASSERT_EQ(cr.q, shmq_recover(cr.q, pid), 0);
}

static int
cr_index_of(pid_t pid)
{
	struct shmq_proc_info pi[CR_PROCS];
	int n = shmq_procs(cr.q, pi, CR_PROCS);

	for (int i = 0; i < n && i < CR_PROCS; i++)
		if (pi[i].pid == pid && pi[i].state == SHMQ_PROC_ALIVE)
			return (int)pi[i].index;
	return -1;
}

/* Operations of the children.  Each arms point just before the call that
 * must reach it and returns CR_RETURNED if that call returned. */
static int
op_put(struct shmq *h, const char *point)
{
	unsigned char buf[CR_MSG_MAX];
	size_t len = cu_msg_make(buf, CR_CHILD_ID,
	    cu_msg_len(CR_CHILD_ID, CR_MSG_MAX));

	shmq_fault_arm(point, 1);
	(void)shmq_put(h, buf, len, 0);
	return CR_RETURNED;
}

static int
op_get(struct shmq *h, const char *point)
{
	unsigned char buf[CR_MSG_MAX];

	shmq_fault_arm(point, 1);
	(void)shmq_get(h, buf, sizeof(buf), 0);
	return CR_RETURNED;
}

static int
op_take(struct shmq *h, const char *point)
{
	unsigned char buf[CR_MSG_MAX];
	struct shmq_lease l;

	shmq_fault_arm(point, 1);
	(void)shmq_take(h, buf, sizeof(buf), &l, 0);
	return CR_RETURNED;
}

/* Take one message and die holding the lease (no fault point). */
static int
op_take_hold(struct shmq *h, const char *point)
{
	unsigned char buf[CR_MSG_MAX];
	struct shmq_lease l;

	(void)point;
	return shmq_take(h, buf, sizeof(buf), &l, 0) > 0 ? 0 : 1;
}

static int
op_ack(struct shmq *h, const char *point)
{
	unsigned char buf[CR_MSG_MAX];
	struct shmq_lease l;

	if (shmq_take(h, buf, sizeof(buf), &l, 0) <= 0)
		return 1;
	shmq_fault_arm(point, 1);
	(void)shmq_ack(h, &l);
	return CR_RETURNED;
}

static int
op_release(struct shmq *h, const char *point)
{
	unsigned char buf[CR_MSG_MAX];
	struct shmq_lease l;

	if (shmq_take(h, buf, sizeof(buf), &l, 0) <= 0)
		return 1;
	shmq_fault_arm(point, 1);
	(void)shmq_release(h, &l);
	return CR_RETURNED;
}

/* A blocking get on an empty queue. */
static int
op_wait(struct shmq *h, const char *point)
{
	unsigned char buf[CR_MSG_MAX];

	shmq_set_spin(h, 0);
	shmq_fault_arm(point, 1);
	(void)shmq_get(h, buf, sizeof(buf), -1);
	return CR_RETURNED;
}

/* A consumer asleep until a message comes; reports its id. */
static int
op_sleeper(struct shmq *h, const char *point)
{
	unsigned char buf[CR_MSG_MAX];
	ssize_t n;
	uint32_t id;

	(void)point;
	shmq_set_spin(h, 0);
	n = shmq_get(h, buf, sizeof(buf), -1);
	if (n < 0 || !cu_msg_check(buf, (size_t)n, &id))
		return 1;
	atomic_store(cr.report, id);
	shmq_close(h);
	return 0;
}

/* Hold one lease, then take another (dying at point). */
static int
op_hold_then_take(struct shmq *h, const char *point)
{
	return op_take_hold(h, NULL) == 0 ? op_take(h, point) : 1;
}

/* Hold one lease, then put (dying at point). */
static int
op_hold_then_put(struct shmq *h, const char *point)
{
	return op_take_hold(h, NULL) == 0 ? op_put(h, point) : 1;
}

static int
op_recover(struct shmq *h, const char *point)
{
	shmq_fault_arm(point, 1);
	(void)shmq_recover(h, cr.victim);
	return CR_RETURNED;
}

/* attach.claimed: the child dies inside shmq_open, holding a record. */
static void
sc_attach(const char *point)
{
	pid_t pid;

	cr_put(3);
	pid = cu_fork();
	if (pid == 0) {
		shmq_fault_arm(point, 1);
		(void)shmq_open(cr.name);
		_exit(CR_RETURNED);
	}
	cr_expect_fault(pid, point);
	QASSERT_MSG(cr.q, cr_index_of(pid) >= 0, "no record claimed");
	cr_recover(pid, 0);
	QASSERT_MSG(cr.q, cr_index_of(pid) < 0, "record not freed");
}

/* put.*: the child dies putting; the parent carries on putting. */
static void
sc_put(const char *point)
{
	pid_t pid;

	cr_put(3);
	pid = cr_fork(op_put, point);
	cr_expect_fault(pid, point);
	/* Cut short before FULL: voided.  After: an ordinary message. */
	if (strcmp(point, "put.published") == 0) {
		cr.want[CR_CHILD_ID] = W_ONCE;
		cr.deliv[CR_CHILD_ID] = 1;
	} else {
		cr.want[CR_CHILD_ID] = W_VOID;
	}
	cr_put(3);
	cr_recover(pid, 0);
}

/*
 * get.*: the child dies getting message 1.  A get claims nothing before
 * its CAS: cut short before it, the message is still in the ring, not a
 * redelivery; after it, the message was delivered.
 */
static void
sc_get(const char *point)
{
	bool delivered = strcmp(point, "get.released") == 0;
	pid_t pid;

	cr_put(4);
	pid = cr_fork(op_get, point);
	cr_expect_fault(pid, point);
	cr.want[1] = delivered ? W_GONE : W_ONCE;
	cr_recover(pid, 0);
}

/* take.*: the child dies taking message 1. */
static void
sc_take(const char *point)
{
	bool claimed = strcmp(point, "take.staged") != 0;
	pid_t pid;

	cr_put(4);
	pid = cr_fork(op_take, point);
	cr_expect_fault(pid, point);
	cr.deliv[1] = claimed ? 2 : 1;
	cr_recover(pid, claimed ? 1 : 0);
}

/* redo.*: message 1 waits for redelivery (its first taker died); the
 * child dies taking (redo.claimed) or getting (redo.copied) it. */
static void
sc_redo(const char *point)
{
	pid_t pid;

	cr_put(4);
	pid = cr_fork(op_take_hold, NULL);
	cu_wait_exit(cr.q, pid, 0);
	cr_recover(pid, 1);
	pid = cr_fork(strcmp(point, "redo.copied") == 0 ? op_get : op_take,
	    point);
	cr_expect_fault(pid, point);
	cr.deliv[1] = 3;
	cr_recover(pid, 1);
}

/* ack.before, release.before: the lease is still HELD: redelivered. */
static void
sc_ack_release(const char *point)
{
	pid_t pid;

	cr_put(3);
	pid = cr_fork(strcmp(point, "ack.before") == 0 ? op_ack : op_release,
	    point);
	cr_expect_fault(pid, point);
	cr.deliv[1] = 2;
	cr_recover(pid, 1);
}

/* wait.registered: the child dies asleep-to-be; its bit must go. */
static void
sc_wait(const char *point)
{
	uint64_t bit;
	pid_t pid;
	int idx;

	pid = cr_fork(op_wait, point);
	cr_expect_fault(pid, point);
	idx = cr_index_of(pid);
	QASSERT(cr.q, idx >= 0);
	bit = UINT64_C(1) << (idx % 64);
	QASSERT_MSG(cr.q, atomic_load(&cr.q->hdr->get_sleepers[idx / 64]) &
	    bit, "the dead sleeper's bit was never set");
	cr_recover(pid, 0);
	QASSERT_EQ(cr.q, atomic_load(&cr.q->hdr->get_sleepers[idx / 64]) &
	    bit, 0);
	QASSERT_EQ(cr.q, cu_sem_value(cr.q, (uint32_t)idx), 0);
	cr_put(2);
}

/* wait.yielded: the child dies between its yield and its last look, before
 * it is a sleeper; it holds nothing, and the queue goes on. */
static void
sc_yield(const char *point)
{
	pid_t pid = cr_fork(op_wait, point);

	cr_expect_fault(pid, point);
	cu_assert_no_sleepers(cr.q);
	cr_recover(pid, 0);
	cr_put(2);
}

/* wake.claimed: a producer dies between claiming a sleeper's bit and
 * posting; recovering the producer must wake the sleeper. */
static void
sc_wake(const char *point)
{
	pid_t sleeper, producer;

	cr_put(1);
	sleeper = cr_fork(op_sleeper, NULL);	/* takes message 1 ... */
	cu_wait_exit(cr.q, sleeper, 0);
	QASSERT_EQ(cr.q, atomic_load(cr.report), 1);
	cr.want[1] = W_GONE;
	sleeper = cr_fork(op_sleeper, NULL);	/* ... this one sleeps */
	cu_wait_asleep(cr.q, sleeper, SHMQ_ASLEEP_GET);
	producer = cr_fork(op_put, point);
	cr_expect_fault(producer, point);
	cr_recover(producer, 0);
	cu_wait_exit(cr.q, sleeper, 0);
	QASSERT_EQ(cr.q, atomic_load(cr.report), CR_CHILD_ID);
	cr.want[CR_CHILD_ID] = W_GONE;
}

/*
 * recover.*: X dies holding a lease on message 1 and in the middle of
 * taking message 2 (or, for recover.voided, of putting); R dies recovering
 * X, holding the recovery lock.  Recovering both must finish the job.
 */
static void
sc_recover(const char *point)
{
	bool voided = strcmp(point, "recover.voided") == 0;
	const char *xpoint = voided ? "put.claimed" : "take.claimed";
	pid_t x, r;

	cr_put(5);
	x = cr_fork(voided ? op_hold_then_put : op_hold_then_take, xpoint);
	cr_expect_fault(x, xpoint);
	cr.victim = x;
	r = cr_fork(op_recover, point);
	cr_expect_fault(r, point);
	QASSERT(cr.q, shmq_recover(cr.q, x) >= 0);
	QASSERT(cr.q, shmq_recover(cr.q, r) >= 0);
	QASSERT_EQ(cr.q, shmq_recover(cr.q, x), 0);
	QASSERT_EQ(cr.q, shmq_recover(cr.q, r), 0);
	cr.deliv[1] = 2;
	if (voided)
		cr.want[CR_CHILD_ID] = W_VOID;
	else
		cr.deliv[2] = 2;
}

static const struct {
	const char	*prefix;	/* a point, or "name." for a family */
	cr_scenario	 run;
} scenarios[] = {
	{ "attach.claimed",	sc_attach },
	{ "put.",		sc_put },
	{ "get.",		sc_get },
	{ "take.",		sc_take },
	{ "redo.",		sc_redo },
	{ "ack.before",		sc_ack_release },
	{ "release.before",	sc_ack_release },
	{ "wait.yielded",	sc_yield },
	{ "wait.registered",	sc_wait },
	{ "wake.claimed",	sc_wake },
	{ "recover.",		sc_recover },
};

static cr_scenario
scenario_for(const char *point)
{
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		if (strncmp(point, scenarios[i].prefix,
		    strlen(scenarios[i].prefix)) == 0)
			return scenarios[i].run;
	return NULL;
}

/* Drain with take: every claim about what is delivered, and how often. */
static void
cr_drain_check(void)
{
	unsigned char buf[CR_MSG_MAX], count[CR_MAXID] = { 0 };
	uint32_t id, last = 0;
	struct shmq_lease l;
	ssize_t n;

	while ((n = shmq_take(cr.q, buf, sizeof(buf), &l, 0)) >= 0) {
		QASSERT_MSG(cr.q, cu_msg_check(buf, (size_t)n, &id) &&
		    id < CR_MAXID, "a damaged message of %zd bytes", n);
		QASSERT_MSG(cr.q, cr.want[id] != W_NONE,
		    "phantom message %u", id);
		QASSERT_MSG(cr.q, cr.want[id] != W_GONE,
		    "message %u delivered again after its delivery", id);
		QASSERT_MSG(cr.q, cr.want[id] != W_VOID,
		    "message %u of a put cut short was delivered", id);
		QASSERT_MSG(cr.q, ++count[id] == 1, "message %u duplicated", id);
		QASSERT_MSG(cr.q, l.deliveries == cr.deliv[id],
		    "message %u: deliveries %u, expected %u", id,
		    l.deliveries, cr.deliv[id]);
		if (cr.by_parent[id] && l.deliveries == 1) {
			QASSERT_MSG(cr.q, id > last, "message %u after %u: "
			    "not FIFO", id, last);
			last = id;
		}
		QASSERT_EQ(cr.q, shmq_ack(cr.q, &l), 0);
	}
	QASSERT_EQ(cr.q, n, -EAGAIN);
	for (id = 0; id < CR_MAXID; id++)
		QASSERT_MSG(cr.q, cr.want[id] != W_ONCE || count[id] == 1,
		    "accepted message %u lost", id);
}

/* Not wedged: fill to exactly the capacity with timeout 0, drain again. */
static void
cr_fill_check(void)
{
	unsigned char buf[CR_MSG_MAX];
	struct shmq_stats st;
	uint32_t id;
	ssize_t n;

	for (uint32_t i = 0; i < CR_CAP; i++) {
		size_t len = cu_msg_make(buf, CR_FILL_ID + i,
		    cu_msg_len(CR_FILL_ID + i, CR_MSG_MAX));
		QASSERT_EQ(cr.q, shmq_put(cr.q, buf, len, 0), 0);
	}
	QASSERT_EQ(cr.q, shmq_put(cr.q, buf, CU_MSG_MIN, 0), -EAGAIN);
	QASSERT_EQ(cr.q, shmq_stats(cr.q, &st), 0);
	QASSERT_EQ(cr.q, st.depth, CR_CAP);
	for (uint32_t i = 0; i < CR_CAP; i++) {
		n = shmq_get(cr.q, buf, sizeof(buf), 0);
		QASSERT(cr.q, n > 0 && cu_msg_check(buf, (size_t)n, &id));
		QASSERT_EQ(cr.q, id, CR_FILL_ID + i);
	}
	QASSERT_EQ(cr.q, shmq_get(cr.q, buf, sizeof(buf), 0), -EAGAIN);
}

static void
cr_verify(void)
{
	struct shmq_stats st;

	cr_drain_check();
	QASSERT_EQ(cr.q, shmq_stats(cr.q, &st), 0);
	QASSERT_EQ(cr.q, st.depth, 0);
	QASSERT_EQ(cr.q, st.redeliver_pending, 0);
	QASSERT_EQ(cr.q, st.leases_held, 0);
	cr_fill_check();
	cu_assert_no_sleepers(cr.q);
	shmq_close(cr.q);
	cr.q = NULL;
	cu_assert_all_closed(cr.name);
	ck_assert_int_eq(shmq_unlink(cr.name), 0);
	cu_unshare(cr.report, sizeof(*cr.report));
}

START_TEST(test_crash_fault_point)
{
	const char *point = shmq_fault_points[_i];
	cr_scenario run = scenario_for(point);

	ck_assert_msg(run != NULL, "no crash scenario for fault point %s",
	    point);
	cr_begin(point);
	run(point);
	cr_verify();
}
END_TEST

/* Every scenario's point still exists (else it would never run). */
START_TEST(test_crash_scenarios_match_points)
{
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		bool found = false;

		for (int k = 0; shmq_fault_points[k] != NULL; k++)
			found |= strncmp(shmq_fault_points[k],
			    scenarios[i].prefix,
			    strlen(scenarios[i].prefix)) == 0;
		ck_assert_msg(found, "scenario %s: no such fault point",
		    scenarios[i].prefix);
	}
}
END_TEST

/*
 * Batches hold several slots at once: a put claims every slot of its batch
 * before it copies into any, and a get copies every message out before it
 * frees any slot.  A batch cut short at its second message (a put) or at
 * its first step (a get) must leave what it published delivered once,
 * every other slot of the put voided, and whatever the get had not freed
 * still in the ring.
 */
#define CR_BATCH	4

static int
op_put_batch(struct shmq *h, const char *point)
{
	unsigned char buf[CR_BATCH][CR_MSG_MAX];
	struct iovec iov[CR_BATCH];

	for (int i = 0; i < CR_BATCH; i++)
		iov[i] = (struct iovec){ buf[i], cu_msg_make(buf[i],
		    CR_CHILD_ID + (uint32_t)i, cu_msg_len(CR_CHILD_ID +
		    (uint32_t)i, CR_MSG_MAX)) };
	shmq_fault_arm(point, 2);
	(void)shmq_put_batch(h, iov, CR_BATCH, 0);
	return CR_RETURNED;
}

static int
op_get_batch(struct shmq *h, const char *point)
{
	unsigned char buf[CR_BATCH][CR_MSG_MAX];
	struct iovec iov[CR_BATCH];

	for (int i = 0; i < CR_BATCH; i++)
		iov[i] = (struct iovec){ buf[i], CR_MSG_MAX };
	shmq_fault_arm(point, 1);
	(void)shmq_get_batch(h, iov, CR_BATCH, 0);
	return CR_RETURNED;
}

static const char *const cr_batch_points[] = {
	"put.claimed", "put.copied", "put.published",
	"get.copied", "get.released",
};

START_TEST(test_crash_batch_cut)
{
	const char *point = cr_batch_points[_i];
	bool put = strncmp(point, "put.", 4) == 0;
	struct shmq_stats st;
	pid_t pid;

	cr_begin(point);
	cr_put(put ? 2 : CR_BATCH + 2);
	pid = cr_fork(put ? op_put_batch : op_get_batch, point);
	cr_expect_fault(pid, point);
	if (put) {
		/* Died filling message 2: 1 was published (2 as well, at
		 * put.published); the rest was never published. */
		unsigned published = strcmp(point, "put.published") == 0 ?
		    2 : 1;

		for (unsigned i = 0; i < CR_BATCH; i++) {
			cr.want[CR_CHILD_ID + i] = i < published ? W_ONCE :
			    W_VOID;
			cr.deliv[CR_CHILD_ID + i] = 1;
		}
		cr_recover(pid, 0);
		QASSERT_EQ(cr.q, shmq_stats(cr.q, &st), 0);
		QASSERT_EQ(cr.q, st.voided, CR_BATCH - published);
	} else if (strcmp(point, "get.released") == 0) {
		for (unsigned id = 1; id <= CR_BATCH; id++)
			cr.want[id] = W_GONE;
		cr_recover(pid, 0);
	} else {
		cr_recover(pid, 0);	/* all still FULL, none redelivered */
	}
	cr_verify();
}
END_TEST

/*
 * A producer killed after publishing its message and before moving the
 * producer index leaves the index short of a full slot.  A consumer that
 * waits (and spins first, looking at the index) must still get it.
 */
START_TEST(test_crash_published_index_lags)
{
	unsigned char buf[CR_MSG_MAX];
	uint32_t id;
	ssize_t n;
	pid_t pid;

	cr_begin("index-lags");
	pid = cr_fork(op_put, "put.published");
	cr_expect_fault(pid, "put.published");
	QASSERT_EQ(cr.q, atomic_load(&cr.q->hdr->prod_pos), 0);
	n = shmq_get(cr.q, buf, sizeof(buf), 10000);
	QASSERT_MSG(cr.q, n > 0 && cu_msg_check(buf, (size_t)n, &id) &&
	    id == CR_CHILD_ID, "the published message was not got: %zd", n);
	cr.want[CR_CHILD_ID] = W_GONE;
	cr_recover(pid, 0);
	cr_verify();
}
END_TEST

/* Report our record and start time, then close. */
static int
op_attach_only(struct shmq *h, const char *point)
{
	(void)point;
	atomic_store(cr.report, (uint64_t)h->me << 32 |
	    (uint32_t)cu_start_ticks(getpid()));
	shmq_close(h);
	return 0;
}

/*
 * A recoverer killed holding the recovery lock (at each recover.* point)
 * leaves its work to whoever takes the lock next -- here a process that
 * only attaches and closes.  The job must still get done: recovering
 * the recoverer alone then finds everything of its victim delivered.
 */
START_TEST(test_crash_recoverer_death_outlives_close)
{
	for (int k = 0; shmq_fault_points[k] != NULL; k++) {
		const char *point = shmq_fault_points[k];
		pid_t x, r;

		if (strncmp(point, "recover.", 8) != 0 ||
		    strcmp(point, "recover.voided") == 0)
			continue;
		cr_begin(point);
		cr_put(5);
		x = cr_fork(op_hold_then_take, "take.claimed");
		cr_expect_fault(x, "take.claimed");
		cr.victim = x;
		r = cr_fork(op_recover, point);
		cr_expect_fault(r, point);
		cu_wait_exit(cr.q, cr_fork(op_attach_only, NULL), 0);
		QASSERT(cr.q, shmq_recover(cr.q, r) >= 0);
		QASSERT_EQ(cr.q, shmq_recover(cr.q, x), 0);
		cr.deliv[1] = 2;
		cr.deliv[2] = 2;
		cr_verify();
	}
}
END_TEST

/* Report our start time, take one message and die holding the lease. */
static int
op_take_hold_report(struct shmq *h, const char *point)
{
	atomic_store(cr.report, cu_start_ticks(getpid()));
	return op_take_hold(h, point);
}

/* Make the next fork() return pid want (as root, via ns_last_pid). */
static bool
cr_next_pid(pid_t want)
{
	FILE *f = fopen("/proc/sys/kernel/ns_last_pid", "w");

	if (f == NULL)
		return false;
	fprintf(f, "%d", (int)want - 1);
	return fclose(f) == 0;
}

/*
 * A child that idles until fd is written, started in another clock tick
 * than not_ticks, and with pid want if want > 0.  0 if none could be made.
 */
static pid_t
cr_idle_child(int fd, pid_t want, uint64_t not_ticks)
{
	struct timespec tick = { 0, 2000000 };
	char c;

	for (int tries = 0; tries < 20; tries++) {
		pid_t pid;

		if (want > 0 && !cr_next_pid(want))
			return 0;
		if ((pid = cu_fork()) == 0)
			_exit(read(fd, &c, 1) == 1 ? 0 : 1);
		if ((want <= 0 || pid == want) &&
		    cu_start_ticks(pid) != (uint32_t)not_ticks)
			return pid;
		kill(pid, SIGKILL);	/* another's pid, or the same tick */
		waitpid(pid, NULL, 0);
		nanosleep(&tick, NULL);	/* pacing the retries */
	}
	return 0;
}

/*
 * The pid of a dead attachment, reused by an unrelated live process, must
 * not make recovery refuse (-EBUSY): the start time tells them apart.
 */
START_TEST(test_crash_recover_reused_pid)
{
	unsigned char buf[CR_MSG_MAX];
	struct shmq_lease l;
	int go[2];
	pid_t dead, reuser = 0;

	cr_begin("reused");
	ck_assert_int_eq(pipe(go), 0);
	for (int attempt = 0; reuser == 0; attempt++) {
		ck_assert_msg(attempt < 10, "could not reuse a pid");
		cr_put(1);
		dead = cr_fork(op_take_hold_report, NULL); /* holds it */
		cu_wait_exit(cr.q, dead, 0);
		cr.deliv[cr.next_id - 1] = 2;
		reuser = cr_idle_child(go[0], dead, atomic_load(cr.report));
		if (reuser == dead)
			break;
		/* Another process took the pid first: try again. */
		reuser = 0;
		cr_recover(dead, 1);
		QASSERT(cr.q, shmq_take(cr.q, buf, sizeof(buf), &l, 0) > 0);
		QASSERT_EQ(cr.q, shmq_ack(cr.q, &l), 0);
		cr.want[cr.next_id - 1] = W_GONE;
	}
	QASSERT_EQ(cr.q, shmq_recover(cr.q, dead), 1);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	cu_wait_exit(cr.q, reuser, 0);
	QASSERT_EQ(cr.q, shmq_recover(cr.q, dead), 0);
	close(go[0]);
	close(go[1]);
	cr_verify();
}
END_TEST

/*
 * A process between claiming its record in shmq_open() and storing its
 * start time leaves the previous occupant's start time in the record.
 * shmq_recover_dead() must not take it for a dead process whose pid was
 * reused.  The record is put in that state as claim_record() does it.
 */
START_TEST(test_crash_recover_dead_spares_attaching)
{
	struct shmq_seg_proc *p;
	uint64_t w, claimed, prev_ticks;
	int go[2];
	pid_t prev, y;
	uint32_t idx;

	cr_begin("attaching");
	prev = cr_fork(op_attach_only, NULL);	/* leaves its start time */
	cu_wait_exit(cr.q, prev, 0);
	idx = (uint32_t)(atomic_load(cr.report) >> 32);
	prev_ticks = (uint32_t)atomic_load(cr.report);
	ck_assert_int_eq(pipe(go), 0);
	y = cr_idle_child(go[0], 0, prev_ticks);
	ck_assert_msg(y > 0, "no child in another clock tick");
	p = shmq__proc(cr.q, idx);
	w = atomic_load(&p->state);
	QASSERT_EQ(cr.q, SHMQ_PROC_STATE(w), SHMQ_PROC_FREE);
	claimed = SHMQ_PROC_WORD(y, SHMQ_PROC_ALIVE, SHMQ_PROC_GEN(w) + 1);
	QASSERT(cr.q, atomic_compare_exchange_strong(&p->state, &w, claimed));
	QASSERT_EQ(cr.q, shmq_recover_dead(cr.q), 0);
	QASSERT_MSG(cr.q, atomic_load(&p->state) == claimed,
	    "shmq_recover_dead() recovered the live process %d while it was"
	    " attaching (record %u)", (int)y, idx);
	QASSERT_EQ(cr.q, shmq_recover(cr.q, y), -EBUSY);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	cu_wait_exit(cr.q, y, 0);
	cr_recover(y, 0);
	close(go[0]);
	close(go[1]);
	cr_verify();
}
END_TEST

/*
 * Part 2: a storm of SIGKILLs.  Producers tag each message with their
 * incarnation and a sequence number and record, after each put returns,
 * how far they got; consumers take, record (message, deliveries) and ack.
 * A killer kills one of them at random, recovers it and starts another.
 * Producers stop at a budget of messages, which bounds the bookkeeping.
 */
#define ST_PRODUCERS	3
#define ST_CONSUMERS	3
#define ST_KIDS		(ST_PRODUCERS + ST_CONSUMERS)
#define ST_KILLS	2000
#define ST_PER_INC	2000		/* messages per producer incarnation */
#define ST_SPAN		2048		/* id = incarnation * span + seq */
#define ST_MAX_INC	8192		/* > ST_KILLS + ST_BUDGET / ST_PER_INC */
#define ST_BUDGET	8000000		/* messages in all, at most */
#define ST_MSG_MAX	96
#define ST_PILL		1		/* incarnation 0, seq 1: stop */
#define ST_HOLD		4		/* leases a consumer holds at once */
#define ST_WORK		64		/* consumer's work per message */

static_assert(ST_MAX_INC > ST_KILLS + ST_BUDGET / ST_PER_INC + ST_PRODUCERS,
    "an id for every producer incarnation");
static_assert(ST_SPAN > ST_PER_INC, "seq fits in an id");

struct storm {
	_Atomic uint32_t accepted[ST_MAX_INC];	/* seq of the last put */
	_Atomic uint32_t seen[ST_MAX_INC][ST_SPAN]; /* bit d-1: deliveries d */
	_Atomic uint32_t spawned;	/* incarnations started: 1..spawned */
	_Atomic uint64_t reserved;	/* messages producers began */
	_Atomic uint64_t records, redeliveries, dups, phantoms, malformed;
	_Atomic uint64_t errors;
	_Atomic int64_t	 last_error;
};

struct st_kid {
	pid_t		 pid;
	bool		 producer;
};

static char		 st_name[CU_NAME_LEN];
static struct storm	*st;

static int
st_fail(int code, int64_t err)
{
	atomic_fetch_add(&st->errors, 1);
	atomic_store(&st->last_error, err);
	return code;
}

static int
st_produce(uint32_t inc)
{
	struct shmq *h = shmq_open(st_name);
	unsigned char buf[ST_MSG_MAX];

	if (h == NULL)
		return st_fail(40, -errno);
	for (uint32_t seq = 1; seq <= ST_PER_INC; seq++) {
		uint32_t id = inc * ST_SPAN + seq;
		size_t len = cu_msg_make(buf, id, cu_msg_len(id, ST_MSG_MAX));
		int r;

		if (atomic_fetch_add(&st->reserved, 1) >= ST_BUDGET)
			break;
		if ((r = shmq_put(h, buf, len, -1)) != 0)
			return st_fail(41, r);
		atomic_store_explicit(&st->accepted[inc], seq,
		    memory_order_release);
	}
	shmq_close(h);
	return 0;
}

/* Record one delivery of id; true if it was the stop message. */
static bool
st_record(uint32_t id, uint32_t deliveries)
{
	uint32_t inc = id / ST_SPAN, seq = id % ST_SPAN, bit, old;

	if (id == ST_PILL)
		return true;
	if (inc == 0 || inc > atomic_load(&st->spawned) || seq == 0 ||
	    seq > ST_PER_INC || deliveries == 0) {
		atomic_fetch_add(&st->phantoms, 1);
		return false;
	}
	bit = deliveries < 32 ? UINT32_C(1) << (deliveries - 1) :
	    UINT32_C(1) << 31;
	old = atomic_fetch_or(&st->seen[inc][seq], bit);
	if ((old & bit) && deliveries < 32)
		atomic_fetch_add(&st->dups, 1);
	if (deliveries > 1)
		atomic_fetch_add(&st->redeliveries, 1);
	atomic_fetch_add(&st->records, 1);
	return false;
}

/* Take one message (waiting up to timeout) and record it; 1 if taken, 0 if
 * none, 2 for the stop message, < 0 on error. */
static int
st_take_one(struct shmq *h, struct shmq_lease *l, int timeout)
{
	unsigned char buf[ST_MSG_MAX];
	ssize_t n = shmq_take(h, buf, sizeof(buf), l, timeout);
	uint32_t id;

	if (n == -EAGAIN && timeout == 0)
		return 0;
	if (n < 0)
		return st_fail(-1, n);
	/* Checked a few times over: work, so that consumers hold leases
	 * for a while and the kills find some held. */
	for (int i = 0; i < ST_WORK; i++)
		if (!cu_msg_check(buf, (size_t)n, &id)) {
			atomic_fetch_add(&st->malformed, 1);
			return 1;
		}
	return st_record(id, l->deliveries) ? 2 : 1;
}

/* Hold up to ST_HOLD leases at a time, so that kills find some held. */
static int
st_consume(void)
{
	struct shmq *h = shmq_open(st_name);
	struct shmq_lease l[ST_HOLD];
	bool stop = false;

	if (h == NULL)
		return st_fail(30, -errno);
	while (!stop) {
		unsigned n = 0;
		int r = st_take_one(h, &l[n], -1);

		while (r > 0) {
			stop |= r == 2;
			if (++n == ST_HOLD || stop)
				break;
			r = st_take_one(h, &l[n], 0);
		}
		if (r < 0)
			return 31;
		for (unsigned i = 0; i < n; i++)
			if ((r = shmq_ack(h, &l[i])) != 0)
				return st_fail(32, r);
	}
	shmq_close(h);
	return 0;
}

/* Start a child in k's role; a producer only while the budget lasts. */
static void
st_spawn(struct st_kid *k)
{
	uint32_t inc = 0;

	k->pid = 0;
	if (k->producer && atomic_load(&st->reserved) >= ST_BUDGET)
		return;
	if (k->producer) {
		inc = atomic_load(&st->spawned) + 1;
		ck_assert_uint_lt(inc, ST_MAX_INC);
		atomic_store(&st->spawned, inc);
	}
	k->pid = cu_fork();
	if (k->pid == 0)
		_exit(k->producer ? st_produce(inc) : st_consume());
}

static struct st_kid *
st_find(struct st_kid *kids, pid_t pid)
{
	for (int i = 0; i < ST_KIDS; i++)
		if (kids[i].pid == pid)
			return &kids[i];
	return NULL;
}

/* A child ended by itself (a producer done with its quota): recover it
 * (harmless) and start another. */
static void
st_reap(struct shmq *q, struct st_kid *kids)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct st_kid *k = st_find(kids, pid);

		QASSERT(q, k != NULL);
		QASSERT_MSG(q, WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "child %d ended with status %#x (error %" PRId64 ")",
		    (int)pid, status, atomic_load(&st->last_error));
		QASSERT(q, shmq_recover(q, pid) >= 0);
		st_spawn(k);
	}
}

static void
st_pause(void)
{
	struct timespec ts = { 0, 20000 + random() % 800000 };

	nanosleep(&ts, NULL);		/* chaos pacing, not a wait */
}

/* Kill until ST_KILLS children died of it; killed[1] counts the
 * producers, killed[0] the consumers. */
static void
st_kill_loop(struct shmq *q, struct st_kid *kids, unsigned killed[2],
    uint64_t *recovered)
{
	unsigned kills = 0;

	while (kills < ST_KILLS) {
		struct st_kid *k;
		int status, r;

		st_reap(q, kids);
		st_pause();
		do
			k = &kids[random() % ST_KIDS];
		while (k->pid == 0);
		QASSERT(q, kill(k->pid, SIGKILL) == 0);
		while (waitpid(k->pid, &status, 0) < 0)
			QASSERT(q, errno == EINTR);
		if (WIFSIGNALED(status)) {
			kills++;
			killed[k->producer]++;
		} else {
			QASSERT_MSG(q, WEXITSTATUS(status) == 0,
			    "child %d exited %d (error %" PRId64 ")",
			    (int)k->pid, WEXITSTATUS(status),
			    atomic_load(&st->last_error));
		}
		r = shmq_recover(q, k->pid);
		QASSERT_MSG(q, r >= 0, "shmq_recover(%d): %d", (int)k->pid, r);
		*recovered += (uint64_t)r;
		st_spawn(k);
	}
}

/* The end: producers finish, then each consumer gets a stop message. */
static void
st_wind_down(struct shmq *q, struct st_kid *kids)
{
	unsigned char buf[ST_MSG_MAX];
	size_t len = cu_msg_make(buf, ST_PILL, cu_msg_len(ST_PILL, ST_MSG_MAX));

	for (int i = 0; i < ST_KIDS; i++)
		if (kids[i].producer && kids[i].pid > 0)
			cu_wait_exit_in(q, kids[i].pid, 0, 120);
	for (int i = 0; i < ST_CONSUMERS; i++) {
		int status = 0;
		pid_t pid;

		QASSERT_EQ(q, shmq_put(q, buf, len, -1), 0);
		pid = cu_wait(-1, &status, 120);
		QASSERT_MSG(q, pid > 0, "the consumers are wedged");
		QASSERT_MSG(q, WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "consumer %d: status %#x", (int)pid, status);
	}
}

/* Lost, phantom and duplicate messages against what was accepted. */
static void
st_tally(struct shmq *q, uint64_t *accepted)
{
	uint64_t lost = 0, phantom = 0;
	uint32_t n = atomic_load(&st->spawned);

	*accepted = 0;
	for (uint32_t inc = 1; inc <= n; inc++) {
		uint32_t acc = atomic_load(&st->accepted[inc]);

		*accepted += acc;
		for (uint32_t seq = 1; seq <= acc; seq++)
			if (atomic_load(&st->seen[inc][seq]) == 0) {
				if (lost++ < 5)
					fprintf(stderr, "lost: incarnation %u"
					    " seq %u\n", inc, seq);
			}
		for (uint32_t seq = acc + 2; seq < ST_SPAN; seq++)
			phantom += atomic_load(&st->seen[inc][seq]) != 0;
	}
	QASSERT_EQ(q, atomic_load(&st->errors), 0);
	QASSERT_EQ(q, atomic_load(&st->malformed), 0);
	QASSERT_EQ(q, atomic_load(&st->phantoms), 0);
	QASSERT_EQ(q, phantom, 0);
	QASSERT_EQ(q, lost, 0);
	QASSERT_EQ(q, atomic_load(&st->dups), 0);
}

START_TEST(test_crash_sigkill_storm)
{
	struct st_kid kids[ST_KIDS];
	unsigned killed[2] = { 0, 0 };
	uint64_t recovered = 0, accepted;
	struct shmq_stats s;
	struct shmq *q;

	cu_create_flags = _i ? SHMQ_CREATE_FENCES : 0;
	srandom((unsigned)getpid());
	st = cu_shared(sizeof(*st));
	cu_name(st_name, "storm");
	q = cu_create(st_name, 64, ST_MSG_MAX, 64, 4);
	for (int i = 0; i < ST_KIDS; i++) {
		kids[i].producer = i < ST_PRODUCERS;
		st_spawn(&kids[i]);
	}
	st_kill_loop(q, kids, killed, &recovered);
	st_wind_down(q, kids);
	st_tally(q, &accepted);
	QASSERT_EQ(q, shmq_stats(q, &s), 0);
	fprintf(stderr, "storm: %u kills (%u producers, %u consumers), %u "
	    "incarnations, %" PRIu64 " messages accepted, %" PRIu64
	    " deliveries recorded, %" PRIu64 " redeliveries (%" PRIu64
	    " put back by recovery), %" PRIu64 " puts voided\n",
	    killed[0] + killed[1], killed[1], killed[0],
	    atomic_load(&st->spawned), accepted, atomic_load(&st->records),
	    atomic_load(&st->redeliveries), recovered, s.voided);
	QASSERT_EQ(q, s.depth, 0);
	QASSERT_EQ(q, s.redeliver_pending, 0);
	QASSERT_EQ(q, s.leases_held, 0);
	QASSERT_EQ(q, s.procs, 1);
	QASSERT_EQ(q, shmq_get(q, NULL, 0, 0), -EAGAIN);
	cu_assert_no_sleepers(q);
	for (uint32_t i = 0; i < q->max_procs; i++)
		QASSERT_MSG(q, cu_sem_value(q, i) == 0,
		    "record %u: semaphore value %d at the end", i,
		    cu_sem_value(q, i));
	shmq_close(q);
	cu_assert_all_closed(st_name);
	ck_assert_int_eq(shmq_unlink(st_name), 0);
	cu_unshare(st, sizeof(*st));
}
END_TEST

Suite *
crash_suite(void)
{
	Suite *s = suite_create("crash");
	TCase *tc = cu_tcase("Crash");
	int npoints = 0;

	while (shmq_fault_points[npoints] != NULL)
		npoints++;
	tcase_add_test(tc, test_crash_scenarios_match_points);
	tcase_add_loop_test(tc, test_crash_fault_point, 0, npoints);
	tcase_add_loop_test(tc, test_crash_batch_cut, 0,
	    sizeof(cr_batch_points) / sizeof(cr_batch_points[0]));
	tcase_add_test(tc, test_crash_published_index_lags);
	tcase_add_test(tc, test_crash_recover_reused_pid);
	tcase_add_test(tc, test_crash_recoverer_death_outlives_close);
	tcase_add_test(tc, test_crash_recover_dead_spares_attaching);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = cu_tcase("Crash storm");
	tcase_add_loop_test(tc, test_crash_sigkill_storm, 0, 2); /* both modes */
	tcase_set_timeout(tc, 400);
	suite_add_tcase(s, tc);
	return s;
}
