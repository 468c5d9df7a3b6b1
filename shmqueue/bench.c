/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench.c - shmq-bench: libshmq throughput and latency against a pipe, a
 * Unix socketpair, a POSIX message queue and the threaded design's
 * mutex+condvar queue, on one harness, in one run.
 *
 * Every figure is the median of several trials, the trials of all rows
 * interleaved, because the machines are shared and noisy: ratios measured
 * in the same minute are what mean something, not absolute rates.
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <mqueue.h>
#include <pthread.h>
#include <semaphore.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmq.h"

#define MAX_SAMPLES	16
#define BATCH		32
#define RING		1024		/* capacity of every bounded queue */

enum impl { I_SHMQ, I_PIPE, I_SOCK, I_MQ, I_CONDVAR };
static const char *impl_name[] = { "libshmq", "pipe", "socketpair",
    "posix mq", "mutex+condvar" };

struct row {
	enum impl	 impl;
	size_t		 msz;
	int		 np, nc;	/* producers, consumers */
	unsigned	 batch;
	uint64_t	 n;		/* messages per producer, calibrated */
	double		 rate[MAX_SAMPLES];
	int		 nrate;
};

static double	trial_secs = 0.25;
static int	repeats = 5;
static char	qname[64];	/* every queue of this run: /shmq-bench-PID */
static char	qname_b[65];	/* and the ping-pong's way back */
static pid_t	bench_pid;
static uint32_t	create_flags;	/* SHMQ_CREATE_* for the next libshmq queue */
static const char *only;	/* -f: rows whose queue name contains it */
static bool only_pp;		/* -p: the ping-pong latencies alone */

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n == 0 ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * Placement.  Where the scheduler puts two processes that hand messages to
 * each other decides the figure more than the transport does: on one CPU
 * each wake-up is a context switch, on two an interrupt to the other CPU
 * (tens of microseconds in a VM), and a fresh fork lands on either.  So
 * every worker is pinned: worker k of a trial (producers first; ping, then
 * pong) on the k-th CPU this process may use, the same for every
 * transport.  Ping-pong is also measured with both ends on one CPU.
 */
static cpu_set_t allowed;	/* the CPUs we started with */
static int	 cpus[8], ncpus;

static void
placement_init(void)
{
	if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
		return;
	for (int c = 0; c < CPU_SETSIZE && ncpus < 8; c++)
		if (CPU_ISSET(c, &allowed))
			cpus[ncpus++] = c;
}

/* Pin the calling thread to the CPU of worker k (same: the first). */
static void
pin_worker(int k, bool same)
{
	cpu_set_t set;

	if (ncpus < 2)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpus[same ? 0 : k % ncpus], &set);
	(void)sched_setaffinity(0, sizeof(set), &set);
}

static void
unpin(void)
{
	if (ncpus >= 2)
		(void)sched_setaffinity(0, sizeof(allowed), &allowed);
}

/*
 * Killed by ^C or kill(1): remove this run's queues, then die of the signal,
 * so that no /shmq-bench-PID is left in /dev/shm or /dev/mqueue.  Workers
 * die with the run (die_with_parent), not left blocked on a queue.
 */
static void
on_fatal(int sig)
{
	(void)shm_unlink(qname);
	(void)shm_unlink(qname_b);
	(void)mq_unlink(qname);
	(void)signal(sig, SIG_DFL);
	(void)raise(sig);
}

static void
cleanup_on_signals(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	struct sigaction sa = { .sa_handler = on_fatal };

	bench_pid = getpid();
	snprintf(qname, sizeof(qname), "/shmq-bench-%d", (int)bench_pid);
	snprintf(qname_b, sizeof(qname_b), "%sb", qname);
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		(void)sigaction(sigs[i], &sa, NULL);
}

/* In a forked worker: be killed when the run dies. */
static void
die_with_parent(void)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != bench_pid)
		_exit(1);
}

/* ---- the transports: one send and one receive each -------------------- */

struct chan {
	enum impl	 impl;
	size_t		 msz;
	char		 name[72];	/* libshmq, mq */
	int		 fd[2];		/* pipe, socketpair */
	mqd_t		 mq;
	struct shmq	*q;
	struct cvq	*cv;
};

/* The threaded design's queue: a bounded ring under one mutex. */
struct cvq {
	pthread_mutex_t	 mu;
	pthread_cond_t	 not_empty, not_full;
	unsigned	 head, tail;
	size_t		 msz;
	uint32_t	 len[RING];
	unsigned char	 data[];
};

static struct cvq *
cvq_new(size_t msz)
{
	struct cvq *c = calloc(1, sizeof(*c) + RING * msz);

	if (c == NULL)
		err(1, "calloc");
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->not_empty, NULL);
	pthread_cond_init(&c->not_full, NULL);
	c->msz = msz;
	return c;
}

static void
cvq_put(struct cvq *c, const void *m, size_t len, unsigned n)
{
	pthread_mutex_lock(&c->mu);
	for (unsigned i = 0; i < n; i++) {
		while (c->tail - c->head == RING)
			pthread_cond_wait(&c->not_full, &c->mu);
		memcpy(c->data + (c->tail % RING) * c->msz, m, len);
		c->len[c->tail++ % RING] = (uint32_t)len;
	}
	pthread_cond_signal(&c->not_empty);
	pthread_mutex_unlock(&c->mu);
}

static unsigned
cvq_get(struct cvq *c, void *buf, size_t *len, unsigned n)
{
	unsigned i = 0;

	pthread_mutex_lock(&c->mu);
	while (c->tail == c->head)
		pthread_cond_wait(&c->not_empty, &c->mu);
	for (; i < n && c->head != c->tail; i++, c->head++) {
		len[i] = c->len[c->head % RING];
		memcpy((unsigned char *)buf + i * c->msz, c->data +
		    (c->head % RING) * c->msz, len[i]);
	}
	pthread_cond_signal(&c->not_full);
	pthread_mutex_unlock(&c->mu);
	return i;
}

static void
chan_open(struct chan *ch, enum impl impl, size_t msz, const char *name)
{
	struct mq_attr ma = { .mq_maxmsg = RING, .mq_msgsize = (long)msz };
	struct shmq_config cfg = { .capacity = RING, .msg_max = (uint32_t)msz,
	    .max_procs = 16, .lease_max = 1, .flags = create_flags };

	memset(ch, 0, sizeof(*ch));
	ch->impl = impl;
	ch->msz = msz;
	strcpy(ch->name, name);
	switch (impl) {
	case I_SHMQ:
		shmq_unlink(ch->name);
		if ((ch->q = shmq_create(ch->name, &cfg)) == NULL)
			err(1, "shmq_create %s", ch->name);
		break;
	case I_PIPE:
		if (pipe(ch->fd) != 0)
			err(1, "pipe");
		break;
	case I_SOCK:
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, ch->fd) != 0)
			err(1, "socketpair");
		break;
	case I_MQ:
		mq_unlink(ch->name);
		ch->mq = mq_open(ch->name, O_RDWR | O_CREAT | O_EXCL, 0600,
		    &ma);
		if (ch->mq == (mqd_t)-1) {
			ma.mq_maxmsg = 10;	/* the unprivileged limit */
			ch->mq = mq_open(ch->name, O_RDWR | O_CREAT | O_EXCL,
			    0600, &ma);
		}
		if (ch->mq == (mqd_t)-1)
			err(1, "mq_open");
		break;
	case I_CONDVAR:
		ch->cv = cvq_new(msz);
		break;
	}
}

static void
chan_close(struct chan *ch)
{
	switch (ch->impl) {
	case I_SHMQ:
		shmq_close(ch->q);
		shmq_unlink(ch->name);
		break;
	case I_PIPE:
	case I_SOCK:
		close(ch->fd[0]);
		close(ch->fd[1]);
		break;
	case I_MQ:
		mq_close(ch->mq);
		mq_unlink(ch->name);
		break;
	case I_CONDVAR:
		free(ch->cv);
		break;
	}
}

/* In a child process: attach our own handle. */
static void
chan_child(struct chan *ch)
{
	if (ch->impl == I_SHMQ && (ch->q = shmq_open(ch->name)) == NULL)
		err(1, "shmq_open");
}

static void
full_io(ssize_t (*io)(int, void *, size_t), int fd, void *buf, size_t len)
{
	for (size_t off = 0; off < len; ) {
		ssize_t n = io(fd, (unsigned char *)buf + off, len - off);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			err(1, "pipe/socket i/o");
		}
		off += (size_t)n;
	}
}

static ssize_t
write_io(int fd, void *buf, size_t len)
{
	return write(fd, buf, len);
}

/* Send n messages of len bytes (each buf + i * msz). */
static void
chan_send(struct chan *ch, unsigned char *buf, size_t len, unsigned n)
{
	struct iovec iov[BATCH];
	unsigned done = 0;

	switch (ch->impl) {
	case I_SHMQ:
		if (n == 1) {
			if (shmq_put(ch->q, buf, len, -1) != 0)
				errx(1, "shmq_put");
			return;
		}
		for (unsigned i = 0; i < n; i++)
			iov[i] = (struct iovec){ buf + i * ch->msz, len };
		while (done < n) {
			int r = shmq_put_batch(ch->q, iov + done, n - done, -1);
			if (r < 0)
				errx(1, "shmq_put_batch: %s", strerror(-r));
			done += (unsigned)r;
		}
		return;
	case I_PIPE:
	case I_SOCK:
		for (unsigned i = 0; i < n; i++)
			full_io(write_io, ch->fd[1], buf + i * ch->msz, ch->msz);
		return;
	case I_MQ:
		for (unsigned i = 0; i < n; i++)
			while (mq_send(ch->mq, (char *)buf + i * ch->msz, len,
			    0) != 0)
				if (errno != EINTR)
					err(1, "mq_send");
		return;
	case I_CONDVAR:
		cvq_put(ch->cv, buf, len, n);
		return;
	}
}

/* Receive up to n messages into buf + i * msz; lengths into len[]. */
static unsigned
chan_recv(struct chan *ch, unsigned char *buf, size_t *len, unsigned n)
{
	struct iovec iov[BATCH];
	ssize_t r;

	switch (ch->impl) {
	case I_SHMQ:
		if (n == 1) {
			r = shmq_get(ch->q, buf, ch->msz, -1);
			if (r < 0)
				errx(1, "shmq_get: %s", strerror((int)-r));
			len[0] = (size_t)r;
			return 1;
		}
		for (unsigned i = 0; i < n; i++)
			iov[i] = (struct iovec){ buf + i * ch->msz, ch->msz };
		r = shmq_get_batch(ch->q, iov, n, -1);
		if (r < 0)
			errx(1, "shmq_get_batch: %s", strerror((int)-r));
		for (unsigned i = 0; i < (unsigned)r; i++)
			len[i] = iov[i].iov_len;
		return (unsigned)r;
	case I_PIPE:
	case I_SOCK:
		full_io(read, ch->fd[0], buf, ch->msz);
		len[0] = buf[0] == 0xff ? 0 : ch->msz;	/* end marker */
		return 1;
	case I_MQ:
		do
			r = mq_receive(ch->mq, (char *)buf, ch->msz, NULL);
		while (r < 0 && errno == EINTR);
		if (r < 0)
			err(1, "mq_receive");
		len[0] = (size_t)r;
		return 1;
	case I_CONDVAR:
		return cvq_get(ch->cv, buf, len, n);
	}
	return 0;
}

/* ---- throughput ------------------------------------------------------- */

struct worker {
	struct chan	*ch;
	const struct row *row;
	int		 go_fd;		/* processes: read blocks until start */
	pthread_barrier_t *go;		/* threads */
};

static void
wait_start(struct worker *w)
{
	char c;

	if (w->go != NULL)
		pthread_barrier_wait(w->go);
	else if (read(w->go_fd, &c, 1) < 0)
		err(1, "read");
}

/* Put n messages, then one end marker (length 0) per consumer. */
static void
produce(struct worker *w)
{
	const struct row *r = w->row;
	unsigned char *buf = calloc(BATCH, r->msz);
	unsigned b = r->batch;

	wait_start(w);
	for (uint64_t i = 0; i < r->n; i += b) {
		memcpy(buf + 8, &i, sizeof(i));	/* buf[0] != 0xff: data */
		chan_send(w->ch, buf, r->msz, r->n - i < b ?
		    (unsigned)(r->n - i) : b);
	}
	buf[0] = 0xff;			/* marker for stream transports */
	for (int i = 0; i < r->nc; i++)
		chan_send(w->ch, buf, w->ch->impl == I_PIPE ||
		    w->ch->impl == I_SOCK ? r->msz : 0, 1);
	free(buf);
}

/* Receive until one end marker per producer. */
static void
consume(struct worker *w)
{
	const struct row *r = w->row;
	unsigned char *buf = calloc(BATCH, r->msz);
	size_t len[BATCH];
	int ends = 0;

	wait_start(w);
	while (ends < r->np) {
		unsigned got = chan_recv(w->ch, buf, len, r->batch);
		for (unsigned i = 0; i < got; i++)
			ends += len[i] == 0;
	}
	free(buf);
}

struct tworker {
	struct worker	 w;
	int		 producer;
	int		 k;		/* which worker: its CPU */
};

static void *
tworker_main(void *arg)
{
	struct tworker *t = arg;

	pin_worker(t->k, false);
	if (t->producer)
		produce(&t->w);
	else
		consume(&t->w);
	return NULL;
}

static double
trial_threads(struct row *r, struct chan *ch)
{
	int n = r->np + r->nc;
	pthread_t th[8];
	struct tworker tw[8];
	pthread_barrier_t go;
	double t0;

	pthread_barrier_init(&go, NULL, (unsigned)n + 1);
	for (int i = 0; i < n; i++) {
		tw[i] = (struct tworker){ { ch, r, -1, &go }, i < r->np, i };
		pthread_create(&th[i], NULL, tworker_main, &tw[i]);
	}
	pthread_barrier_wait(&go);
	t0 = now();
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&go);
	return now() - t0;
}

static double
trial_procs(struct row *r, struct chan *ch)
{
	int go[2], n = r->np + r->nc, status;
	pid_t pids[8];
	double t0;

	if (pipe(go) != 0)
		err(1, "pipe");
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			err(1, "fork");
		if (pids[i] == 0) {
			struct worker w = { ch, r, go[0], NULL };
			close(go[1]);
			die_with_parent();
			pin_worker(i, false);
			chan_child(ch);
			if (i < r->np)
				produce(&w);
			else
				consume(&w);
			if (ch->impl == I_SHMQ)
				shmq_close(ch->q);
			_exit(0);
		}
	}
	close(go[0]);
	t0 = now();
	close(go[1]);			/* everyone starts */
	for (int i = 0; i < n; i++) {
		if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			errx(1, "%s worker failed", impl_name[r->impl]);
	}
	return now() - t0;
}

/* One trial of a row: messages per second. */
static double
trial(struct row *r)
{
	struct chan ch;
	double secs;

	chan_open(&ch, r->impl, r->msz, qname);
	secs = r->impl == I_CONDVAR ? trial_threads(r, &ch) :
	    trial_procs(r, &ch);
	chan_close(&ch);
	return (double)r->n * r->np / secs;
}

/* Size n so that a trial takes about trial_secs. */
static void
calibrate(struct row *r)
{
	double rate;

	r->n = 20000;
	rate = trial(r);
	r->n = (uint64_t)(rate * trial_secs / r->np);
	if (r->n < 1000)
		r->n = 1000;
}

/* ---- latency ---------------------------------------------------------- */

/*
 * How the two sides of a ping-pong wake each other.  The last two are
 * yardsticks for where a sleeping round trip's time goes: the wake-up alone,
 * and the queue's operations without its own way of sleeping.
 */
enum pp_wake {
	PP_OWN,		/* the channel's own blocking calls */
	PP_SEM_OPS,	/* a bare pair of pshared sem_t; the channel's calls
			 * then never wait */
	PP_SEM_ONLY,	/* that pair of sem_t alone, no message at all */
};

#define PP_ROWS		9	/* main()'s pp[] */

struct pingpong {
	const char	*name;
	const char	*target;	/* libshmq sleeping: its target's line */
	enum impl	 impl;
	uint32_t	 spin_ns;	/* libshmq: how long to spin */
	uint32_t	 flags;		/* libshmq: SHMQ_CREATE_* */
	enum pp_wake	 wake;
	bool		 one_cpu;	/* both ends pinned to one CPU */
	double		 p50, p99;
	double		 vs_pipe;	/* median over rounds of p50 / pipe's */
};

/* The semaphores of PP_SEM_*, and the end of a PP_SEM_ONLY run (read
 * after a sem_wait that the post following the store pairs with). */
struct pp_sems {
	sem_t		 go, back;
	int		 stop;
};

static void
sem_take(sem_t *s)
{
	while (sem_wait(s) != 0)
		;			/* EINTR */
}

/* Server side: echo from a to b until a zero-length message. */
static void
pong(struct chan *a, struct chan *b, uint32_t spin_ns, enum pp_wake wake,
    struct pp_sems *ps)
{
	unsigned char buf[64];
	size_t len[1];

	chan_child(a);
	chan_child(b);
	if (a->impl == I_SHMQ) {
		shmq_set_spin(a->q, spin_ns);
		shmq_set_spin(b->q, spin_ns);
	}
	for (;;) {
		if (wake != PP_OWN)
			sem_take(&ps->go);
		if (wake == PP_SEM_ONLY) {
			if (ps->stop)
				break;
			sem_post(&ps->back);
			continue;
		}
		chan_recv(a, buf, len, 1);	/* here already: no wait */
		if (len[0] == 0 || buf[0] == 0xff)
			break;
		chan_send(b, buf, 64, 1);
		if (wake != PP_OWN)
			sem_post(&ps->back);
	}
	if (a->impl == I_SHMQ) {
		shmq_close(a->q);
		shmq_close(b->q);
	}
	_exit(0);
}

static void
ping(struct pingpong *pp, int iters)
{
	struct chan a, b;
	unsigned char buf[64] = { 1 };
	double *rtt = calloc((size_t)iters, sizeof(*rtt));
	struct pp_sems *ps = mmap(NULL, sizeof(*ps), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	size_t len[1];
	pid_t pid;

	if (rtt == NULL || ps == MAP_FAILED)
		err(1, "ping");
	if (sem_init(&ps->go, 1, 0) != 0 || sem_init(&ps->back, 1, 0) != 0)
		err(1, "sem_init");

	create_flags = pp->flags;
	chan_open(&a, pp->impl, 64, qname);
	chan_open(&b, pp->impl, 64, qname_b);
	create_flags = 0;
	if (pp->impl == I_SHMQ) {
		shmq_set_spin(a.q, pp->spin_ns);
		shmq_set_spin(b.q, pp->spin_ns);
	}
	if ((pid = fork()) == 0) {
		die_with_parent();
		pin_worker(1, pp->one_cpu);
		pong(&a, &b, pp->spin_ns, pp->wake, ps);
	}
	pin_worker(0, pp->one_cpu);
	for (int i = -iters / 10; i < iters; i++) {
		double t0 = now();
		if (pp->wake != PP_SEM_ONLY)
			chan_send(&a, buf, 64, 1);
		if (pp->wake != PP_OWN) {
			sem_post(&ps->go);
			sem_take(&ps->back);
		}
		if (pp->wake != PP_SEM_ONLY)
			chan_recv(&b, buf, len, 1);
		if (i >= 0)
			rtt[i] = now() - t0;
	}
	buf[0] = 0xff;
	ps->stop = 1;
	if (pp->wake != PP_SEM_ONLY)
		chan_send(&a, buf, pp->impl == I_SHMQ ? 0 : 64, 1);
	if (pp->wake != PP_OWN)
		sem_post(&ps->go);
	waitpid(pid, NULL, 0);
	unpin();
	munmap(ps, sizeof(*ps));
	chan_close(&a);
	chan_close(&b);
	qsort(rtt, (size_t)iters, sizeof(*rtt), cmp_double);
	pp->p50 = rtt[iters / 2] * 1e6;
	pp->p99 = rtt[iters * 99 / 100] * 1e6;
	free(rtt);
}

/* The pipe row placed as the one_cpu rows are, every row's yardstick. */
static int
pipe_row(const struct pingpong *pp, int npp, bool one_cpu)
{
	for (int i = 0; i < npp; i++)
		if (pp[i].impl == I_PIPE && pp[i].wake == PP_OWN &&
		    pp[i].one_cpu == one_cpu)
			return i;
	abort();
}

/*
 * Ping-pong in alternating rounds, reporting the median of each round's
 * percentiles, so that libshmq and the pipe see the same machine, and the
 * median of each round's p50 over the pipe's of that round.  Each round
 * starts one row further on: on a loaded machine, the row run after the
 * spinning one took twice as long (the scheduler placed the next pair
 * apart), whatever it measured.
 */
static void
pingpong_rounds(struct pingpong *pp, int npp)
{
	double p50[PP_ROWS][MAX_SAMPLES], p99[PP_ROWS][MAX_SAMPLES];
	double vs[PP_ROWS][MAX_SAMPLES];
	int rounds = repeats * 2 < MAX_SAMPLES ? repeats * 2 : MAX_SAMPLES;

	for (int k = 0; k < rounds; k++)
		for (int j = 0; j < npp; j++) {
			int i = (j + k) % npp;
			ping(&pp[i], pp[i].spin_ns ? 10000 : 2000);
			p50[i][k] = pp[i].p50;
			p99[i][k] = pp[i].p99;
		}
	for (int i = 0; i < npp; i++) {
		int pipe = pipe_row(pp, npp, pp[i].one_cpu);

		for (int k = 0; k < rounds; k++)
			vs[i][k] = p50[i][k] / p50[pipe][k];
		pp[i].p50 = median(p50[i], rounds);
		pp[i].p99 = median(p99[i], rounds);
		pp[i].vs_pipe = median(vs[i], rounds);
	}
}

/*
 * Time from shmq_recover() returning to a sleeping consumer holding the
 * redelivered message of a consumer that was SIGKILLed with it leased.
 */
static double
redelivery_latency(void)
{
	struct shmq_config cfg = { .capacity = 64, .msg_max = 64 };
	struct shmq *q;
	double *when = mmap(NULL, sizeof(double), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct shmq_lease lease;
	unsigned char buf[64];
	pid_t taker, waiter;
	double t0, result;

	shmq_unlink(qname);
	if ((q = shmq_create(qname, &cfg)) == NULL)
		err(1, "shmq_create");
	shmq_put(q, "x", 1, 0);
	if ((taker = fork()) == 0) {
		struct shmq *c;

		die_with_parent();
		c = shmq_open(qname);
		shmq_take(c, buf, sizeof(buf), &lease, -1);
		kill(getpid(), SIGKILL);
	}
	waitpid(taker, NULL, 0);
	if ((waiter = fork()) == 0) {
		struct shmq *c;

		die_with_parent();
		c = shmq_open(qname);
		shmq_set_spin(c, 0);
		shmq_take(c, buf, sizeof(buf), &lease, -1);
		*when = now();
		_exit(0);
	}
	for (struct shmq_proc_info pi[4];;) {	/* until it is asleep */
		int n = shmq_procs(q, pi, 4), asleep = 0;
		for (int i = 0; i < n; i++)
			asleep |= pi[i].pid == waiter && pi[i].asleep;
		if (asleep)
			break;
		sched_yield();
	}
	t0 = now();			/* from the start of the call */
	shmq_recover(q, taker);
	waitpid(waiter, NULL, 0);
	result = (*when - t0) * 1e6;
	shmq_close(q);
	shmq_unlink(qname);
	munmap(when, sizeof(double));
	return result;
}

/* ---- report ----------------------------------------------------------- */

/*
 * Rows run in this order in every round, each libshmq row next to the
 * baselines it is compared with, so that a ratio is taken between figures
 * measured within a second of each other.
 */
static struct row rows[] = {
	{ I_SHMQ, 64, 1, 1, 1, 0, {0}, 0 },
	{ I_CONDVAR, 64, 1, 1, 1, 0, {0}, 0 },
	{ I_PIPE, 64, 1, 1, 1, 0, {0}, 0 },
	{ I_SHMQ, 64, 1, 1, BATCH, 0, {0}, 0 },
	{ I_SOCK, 64, 1, 1, 1, 0, {0}, 0 },
	{ I_MQ, 64, 1, 1, 1, 0, {0}, 0 },
	{ I_SHMQ, 64, 2, 2, 1, 0, {0}, 0 },
	{ I_PIPE, 64, 2, 2, 1, 0, {0}, 0 },
	{ I_CONDVAR, 64, 2, 2, 1, 0, {0}, 0 },
	{ I_SHMQ, 1024, 1, 1, 1, 0, {0}, 0 },
	{ I_CONDVAR, 1024, 1, 1, 1, 0, {0}, 0 },
	{ I_PIPE, 1024, 1, 1, 1, 0, {0}, 0 },
	{ I_SHMQ, 1024, 1, 1, BATCH, 0, {0}, 0 },
	{ I_SOCK, 1024, 1, 1, 1, 0, {0}, 0 },
	{ I_MQ, 1024, 1, 1, 1, 0, {0}, 0 },
	{ I_SHMQ, 1024, 2, 2, 1, 0, {0}, 0 },
	{ I_PIPE, 1024, 2, 2, 1, 0, {0}, 0 },
	{ I_CONDVAR, 1024, 2, 2, 1, 0, {0}, 0 },
};
#define NROWS	(sizeof(rows) / sizeof(rows[0]))

static struct row *
find_row(enum impl impl, size_t msz, int np, unsigned batch)
{
	for (size_t i = 0; i < NROWS; i++)
		if (rows[i].impl == impl && rows[i].msz == msz &&
		    rows[i].np == np && rows[i].batch == batch)
			return &rows[i];
	return NULL;
}

/* The median over rounds of a's rate divided by b's in the same round. */
static double
ratio(const struct row *a, const struct row *b)
{
	double v[MAX_SAMPLES];
	int n;

	if (a == NULL || b == NULL)
		return 0;
	n = a->nrate < b->nrate ? a->nrate : b->nrate;
	for (int k = 0; k < n; k++)
		v[k] = b->rate[k] > 0 ? a->rate[k] / b->rate[k] : 0;
	return median(v, n);
}

static void
print_rows(void)
{
	printf("\n%-14s %6s %5s %6s %12s %8s %8s %8s %8s\n", "queue", "size",
	    "procs", "batch", "msgs/s", "/pipe", "/sockpr", "/mq", "/condvar");
	for (size_t i = 0; i < NROWS; i++) {
		struct row *r = &rows[i];
		double rates[MAX_SAMPLES];

		if (r->nrate == 0)
			continue;
		memcpy(rates, r->rate, sizeof(rates));
		printf("%-14s %5zuB %dP%dC %6u %12.0f", impl_name[r->impl],
		    r->msz, r->np, r->nc, r->batch, median(rates, r->nrate));
		if (r->impl == I_SHMQ)
			printf(" %7.1fx %7.1fx %7.1fx %7.1fx",
			    ratio(r, find_row(I_PIPE, r->msz, r->np, 1)),
			    ratio(r, find_row(I_SOCK, r->msz, 1, 1)),
			    ratio(r, find_row(I_MQ, r->msz, 1, 1)),
			    ratio(r, find_row(I_CONDVAR, r->msz, r->np, 1)));
		printf("\n");
	}
	printf("(ratios: median over rounds of the two rates measured in the "
	    "same round)\n");
}

static void
verdict(const char *what, double got, double want)
{
	printf("  %-48s %7.2fx  (target %.1fx)  %s\n", what, got, want,
	    got >= want ? "met" : "MISSED");
}

static void
print_pingpong(const struct pingpong *pp, int npp)
{
	printf("\nping-pong round trip, 64 B (medians over rounds)\n");
	for (int i = 0; i < npp; i++)
		printf("  %-32s p50 %8.2f us   p99 %8.2f us   p50/pipe %.3f\n",
		    pp[i].name, pp[i].p50, pp[i].p99, pp[i].vs_pipe);
}

static void
print_targets(struct pingpong *pp, int npp, double redeliver_us)
{
	struct row *s64 = find_row(I_SHMQ, 64, 1, 1);
	struct row *p64 = find_row(I_PIPE, 64, 1, 1);

	print_pingpong(pp, npp);
	printf("\nredelivery: recover() to a sleeping consumer: %.0f us\n",
	    redeliver_us);
	printf("\ntargets (2-core machine):\n");
	verdict("64 B 1P1C single vs pipe", ratio(s64, p64), 5);
	verdict("64 B 1P1C single vs mutex+condvar threads",
	    ratio(s64, find_row(I_CONDVAR, 64, 1, 1)), 1.5);
	verdict("64 B 1P1C batch-32 vs pipe",
	    ratio(find_row(I_SHMQ, 64, 1, BATCH), p64), 20);
	verdict("64 B 2P2C single vs pipe 2P2C", ratio(find_row(I_SHMQ, 64, 2,
	    1), find_row(I_PIPE, 64, 2, 1)), 3);
	printf("  %-48s %7.2f us (target <= 2 us)  %s\n",
	    "ping-pong p50, both spinning", pp[0].p50,
	    pp[0].p50 <= 2 ? "met" : "MISSED");
	for (int i = 1; i < npp; i++)
		if (pp[i].impl == I_SHMQ && pp[i].wake == PP_OWN)
			printf("  %-48s %7.2fx pipe (target <= 1)  %s\n",
			    pp[i].target, pp[i].vs_pipe, pp[i].vs_pipe <= 1 ?
			    "met" : "MISSED");
}

static bool
selected(const struct row *r)
{
	return only == NULL || strstr(impl_name[r->impl], only) != NULL;
}

/* The usage on stdout (-h, exit 0) or stderr (exit 64). */
static void
usage(int code)
{
	fprintf(code == 0 ? stdout : stderr, "usage: shmq-bench [-q] [-f queue] [-r repeats] "
	    "[-t seconds] [-p]\n"
	    "  -f  only rows whose queue name contains this (no targets)\n"
	    "  -p  only the ping-pong latencies\n"
	    "  -q  quick: 3 repeats of 0.1 s\n"
	    "  -r  trials per row, median reported (default 5)\n"
	    "  -t  seconds per trial (default 0.25)\n");
	exit(code);
}

/* A bad value: say which and what is expected, and exit 64. */
static void
bad_arg(const char *opt, const char *arg, const char *expected)
{
	fprintf(stderr, "shmq-bench: %s '%s': expected %s\n", opt, arg,
	    expected);
	exit(64);
}

static int
parse_repeats(const char *arg)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno != 0 || end == arg || *end != '\0' || v < 1 ||
	    v > MAX_SAMPLES)
		bad_arg("-r", arg, "trials per row, 1 to 16");
	return (int)v;
}

static double
parse_secs(const char *arg)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(arg, &end);
	if (errno != 0 || end == arg || *end != '\0' || !(v >= 0.01 &&
	    v <= 60))
		bad_arg("-t", arg, "seconds per trial, 0.01 to 60");
	return v;
}

int
main(int argc, char **argv)
{
	struct pingpong pp[PP_ROWS] = {
		{ .name = "libshmq, spinning", .impl = I_SHMQ,
		    .spin_ns = 50000, .wake = PP_OWN },
		{ .name = "libshmq, sleeping (spin 0)", .impl = I_SHMQ,
		    .wake = PP_OWN, .target = "ping-pong p50, both sleeping" },
		{ .name = "libshmq, sleeping, fences queue", .impl = I_SHMQ,
		    .flags = SHMQ_CREATE_FENCES, .wake = PP_OWN,
		    .target = "ping-pong p50, both sleeping, fences queue" },
		{ .name = "pipe", .impl = I_PIPE, .wake = PP_OWN },
		/* Both ends on one CPU: each wake-up a context switch. */
		{ .name = "one CPU: libshmq, sleeping", .impl = I_SHMQ,
		    .wake = PP_OWN, .one_cpu = true,
		    .target = "ping-pong p50, both sleeping, one CPU" },
		{ .name = "one CPU: libshmq, fences queue", .impl = I_SHMQ,
		    .flags = SHMQ_CREATE_FENCES, .wake = PP_OWN, .one_cpu = true,
		    .target = "ping-pong p50, sleeping, fences, one CPU" },
		{ .name = "one CPU: pipe", .impl = I_PIPE, .wake = PP_OWN,
		    .one_cpu = true },
		/* Yardsticks: where a sleeping round trip's time goes. */
		{ .name = "bare sem_t pair, no message", .impl = I_PIPE,
		    .wake = PP_SEM_ONLY },
		{ .name = "libshmq ops woken by sem_t", .impl = I_SHMQ,
		    .wake = PP_SEM_OPS },
	};
	double redeliver_us;
	int c;

	opterr = 0;			/* our own lines, below */
	while ((c = getopt(argc, argv, ":f:pqr:t:h")) != -1) {
		switch (c) {
		case 'p':
			only_pp = true;
			break;
		case 'f':
			only = optarg;
			break;
		case 'q':
			repeats = 3;
			trial_secs = 0.1;
			break;
		case 'r':
			repeats = parse_repeats(optarg);
			break;
		case 't':
			trial_secs = parse_secs(optarg);
			break;
		case 'h':
			usage(0);
			break;
		case ':':
			fprintf(stderr, "shmq-bench: -%c needs a value; see "
			    "shmq-bench -h\n", optopt);
			exit(64);
		default:
			fprintf(stderr, "shmq-bench: unknown option -%c; see "
			    "shmq-bench -h\n", optopt);
			exit(64);
		}
	}
	if (optind < argc)
		bad_arg("argument", argv[optind], "none (options only)");
	if (only != NULL && !only_pp) {
		size_t i = 0;

		while (i < NROWS && !selected(&rows[i]))
			i++;
		if (i == NROWS)
			bad_arg("-f", only, "part of a queue's name: libshmq, "
			    "pipe, socketpair, posix mq or mutex+condvar");
	}
	cleanup_on_signals();
	placement_init();
	if (only_pp) {
		pingpong_rounds(pp, PP_ROWS);
		print_pingpong(pp, PP_ROWS);
		return 0;
	}
	printf("shmq-bench: %d trials of ~%.2f s per row, median\n", repeats,
	    trial_secs);
	for (size_t i = 0; i < NROWS; i++)
		if (selected(&rows[i]))
			calibrate(&rows[i]);
	for (int k = 0; k < repeats; k++) {
		for (size_t i = 0; i < NROWS; i++)
			if (selected(&rows[i]))
				rows[i].rate[rows[i].nrate++] =
				    trial(&rows[i]);
		fprintf(stderr, ".");
	}
	fprintf(stderr, "\n");
	if (only != NULL) {
		print_rows();
		return 0;
	}
	pingpong_rounds(pp, PP_ROWS);
	redeliver_us = redelivery_latency();
	print_rows();
	print_targets(pp, PP_ROWS, redeliver_us);
	return 0;
}
