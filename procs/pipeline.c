/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pipeline.c - setting a pipeline up and keeping it, for the supervisor of
 * stage processes and for the main thread of the threaded build alike.
 *
 * The parent holds a copy of every client connection: the request stage
 * sends it each one it accepts, and it passes them on to the reply stage
 * (and back to either when it is restarted).  It frees the connection
 * slots both stages are done with, closes clients silent past the idle
 * timeout, and collects slab slots reserved for requests nobody will
 * answer into them (a request process that died between reserving a slot
 * and putting its request).
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen.h"
#include "log.h"
#include "msg.h"
#include "pipeline.h"
#include "stage.h"

#define EX_NOINPUT	66
#define EX_OSERR	71
#define EX_CANTCREAT	73

static struct shmpipe_conn *
conn(const struct pipeline *pl, uint32_t slot)
{
	return ctl_conn(&pl->pl_ctl, slot);
}

static uint32_t
conn_flags(const struct pipeline *pl, uint32_t slot)
{
	/* Acquire: pairs with the stages' release of their flags. */
	return SHMPIPE_CONN_FLAGS(atomic_load_explicit(&conn(pl, slot)->state,
	    memory_order_acquire));
}

/* ---- signals while starting ------------------------------------------- */

/*
 * From the pidfile to the signalfd, SIGTERM or SIGINT would end us by
 * their default action and leave the pidfile and socket files behind; and
 * file mode may wait there as long as the user likes, in the open(2) of a
 * FIFO nobody opens the other end of.  Until the signalfd takes over they
 * are caught and kept: a waiting open gives up (open_waiting()), and
 * pipeline_signals_handover() raises the signal again for the signalfd.
 */
static volatile sig_atomic_t start_signal;

static void
on_start_signal(int sig)
{
	if (sig != SIGHUP)		/* a reload: nothing to reload yet */
		start_signal = sig;
}

void
pipeline_signals_catch(void)
{
	struct sigaction sa = { .sa_handler = on_start_signal };

	sigemptyset(&sa.sa_mask);	/* no SA_RESTART: open(2) gives up */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

void
pipeline_signals_handover(void)
{
	signal(SIGTERM, SIG_DFL);	/* blocked: they stay pending */
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	if (start_signal != 0)
		raise(start_signal);
}

/*
 * open(2) a file mode path, which may be a FIFO that waits for its other
 * end; a stop signal meanwhile ends the start (the usual exit status of
 * that signal, the pidfile removed by its atexit(3) handler).
 */
static int
open_waiting(const char *path, int flags)
{
	int fd;

	do {
		if (start_signal != 0)
			errx(128 + start_signal, "SIG%s while waiting to open %s",
			    sigabbrev_np(start_signal), path);
	} while ((fd = open(path, flags, 0644)) < 0 && errno == EINTR);
	return fd;
}

/* ---- setting up ------------------------------------------------------- */

/*
 * A standard stream as the input or output is moved to a descriptor of
 * the pipeline's own, and the stream itself pointed elsewhere (stdin at
 * /dev/null, stdout at the log), so that a handler's printf(3) or
 * getchar(3) cannot write into the replies or take requests.
 */
static int
take_std(int fd, int in_its_place)
{
	int own = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);

	if (own < 0 || dup2(in_its_place, fd) < 0)
		err(EX_OSERR, "cannot move standard %s aside",
		    fd == STDIN_FILENO ? "input" : "output");
	return own;
}

static void
open_files(struct pipeline *pl)
{
	const struct options *o = pl->pl_opt;
	int null;

	if (strcmp(o->input, "-") == 0) {
		if ((null = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
			err(EX_OSERR, "/dev/null");
		pl->pl_in_fd = take_std(STDIN_FILENO, null);
		close(null);
	} else
		pl->pl_in_fd = open_waiting(o->input, O_RDONLY | O_CLOEXEC);
	if (pl->pl_in_fd < 0)
		err(EX_NOINPUT, "cannot read %s", o->input);
	pl->pl_out_fd = strcmp(o->output, "-") == 0 ?
	    take_std(STDOUT_FILENO, STDERR_FILENO) :
	    open_waiting(o->output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC);
	if (pl->pl_out_fd < 0)
		err(EX_CANTCREAT, "cannot write %s", o->output);
}

static void
open_listeners(struct pipeline *pl, struct options *o)
{
	char why[512];

	for (int i = 0; i < o->nlisten; i++) {
		pl->pl_listen[i] = listen_open(&o->listen[i], why, sizeof(why));
		if (pl->pl_listen[i] < 0)
			errx(EX_OSERR, "%s", why);
		pl->pl_listen_unix[i] = o->listen[i].ls_unix;
		listen_bound_port(pl->pl_listen[i], &o->listen[i]);
	}
}

/*
 * The stages sleep often (there are more of them than CPUs, as a rule):
 * a fence per operation is cheaper than interrupting a CPU per sleep.
 */
/*
 * A segment could not be made: remove those made before it, and the Unix
 * sockets' paths, then exit saying why.  Only those we made: what is in
 * the way under our name (a file, a link) is not ours to remove.
 */
static void __attribute__((noreturn))
create_failed(const struct pipeline *pl, int error, const char *what)
{
	static const char *const suffix[] = { "req", "rep" };
	const struct options *o = pl->pl_opt;
	char seg[64];

	for (int i = 0; o->input == NULL && i < o->nlisten; i++) {
		close(pl->pl_listen[i]);
		listen_cleanup(&o->listen[i]);	/* a Unix socket's path */
	}
	for (unsigned i = 0; !pl->pl_anon && i < 2; i++)
		if ((pl->pl_made & (1u << i)) && ctl_seg_name(seg,
		    sizeof(seg), o->name, suffix[i]) == 0)
			shmq_unlink(seg);
	errc(EX_OSERR, error, "cannot create %s%s", what, error == ENOSPC ?
	    " (more than /dev/shm has free: see df /dev/shm, or ask for a "
	    "smaller --capacity, --max-line, --window or --max-connections)" :
	    error == EEXIST ?
	    " (something that is not a pipeline's segment has its name)" :
	    "");
}

static struct shmq *
make_queue(const struct pipeline *pl, const char *suffix, uint32_t msg_max,
    uint32_t procs, uint32_t leases)
{
	struct shmq_config cfg = { .capacity = pl->pl_opt->capacity,
	    .msg_max = msg_max, .max_procs = procs, .lease_max = leases,
	    .flags = SHMQ_CREATE_FENCES };
	char name[64], what[80];
	struct shmq *q;

	ctl_seg_name(name, sizeof(name), pl->pl_opt->name, suffix);
	q = pl->pl_anon ? shmq_create_anon(&cfg) : shmq_create(name, &cfg);
	if (q == NULL) {
		snprintf(what, sizeof(what), "queue %s", pl->pl_anon ? suffix :
		    name);
		create_failed(pl, errno, what);
	}
	return q;
}

/* A file's offset where shmpipe starts, 0 for what has none (a pipe). */
static uint64_t
offset_of(int fd)
{
	off_t off = lseek(fd, 0, SEEK_CUR);

	return off > 0 ? (uint64_t)off : 0;
}

/*
 * File mode is connection 0, reading and writing the files from their
 * current offsets (the stages use pread/pwrite at in_total/out_total).
 */
static void
file_conn(struct pipeline *pl)
{
	struct shmpipe_conn *cn = conn(pl, 0);
	uint64_t in = offset_of(pl->pl_in_fd), out = offset_of(pl->pl_out_fd);

	atomic_store(&cn->in_total, in);
	atomic_store(&cn->in_pos, SHMPIPE_IN_POS((uint32_t)in, 0, 0));
	atomic_store(&cn->out_total, out);
	atomic_store(&cn->out_mark, SHMPIPE_OUT_MARK(0, out, 0));
	atomic_store(&cn->state, SHMPIPE_CONN_ID(1, SHMPIPE_CONN_OPEN |
	    SHMPIPE_CONN_FILE));
}

static void
make_control(struct pipeline *pl, uint32_t nrows)
{
	const struct options *o = pl->pl_opt;
	struct ctl_params p = { .nprocs = nrows,
	    .max_conns = o->max_conns, .max_line = o->max_line,
	    .window = o->window, .conn_window = o->conn_window,
	    .max_deliveries = o->max_deliveries,
	    .request_timeout_ms = o->request_timeout_ms,
	    .flags = o->input != NULL ? SHMPIPE_CONN_FILE : 0 };
	int r = pl->pl_anon ? ctl_create_anon(&pl->pl_ctl, o->name, &p) :
	    ctl_create(&pl->pl_ctl, o->name, &p);

	if (r != 0)
		create_failed(pl, -r, "the control segment");
	if (o->input != NULL)
		file_conn(pl);
}

/*
 * Room for a descriptor per connection in the process that keeps them
 * all (three in one process, for threads): raise the soft limit as far as
 * needed and the hard one allows; say so when that is not far enough.
 * The stages inherit it.
 */
static void
fd_limit(const struct options *o, bool anon)
{
	rlim_t need = (rlim_t)o->max_conns * (anon ? 3 : 1) + 64;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need)
		log_event("--max-connections %u needs %ju open files, and the "
		    "limit is %ju (ulimit -Hn): past it, clients wait or are "
		    "closed", o->max_conns, (uintmax_t)need,
		    (uintmax_t)rl.rlim_cur);
}

void
pipeline_open(struct pipeline *pl, const struct options *o, uint32_t nrows,
    bool anon)
{
	memset(pl, 0, sizeof(*pl));
	pl->pl_opt = o;
	pl->pl_anon = anon;
	pl->pl_in_fd = pl->pl_out_fd = -1;
	if (o->input != NULL)
		open_files(pl);
	else
		open_listeners(pl, (struct options *)(uintptr_t)o);
	fd_limit(o, anon);
	pl->pl_req = make_queue(pl, "req", sizeof(struct msg_hdr) +
	    o->max_line + 1, nrows + OPT_QUEUE_SPARE, 16);
	pl->pl_made |= 1;
	pl->pl_rep = make_queue(pl, "rep", sizeof(struct msg_hdr) +
	    ctl_reply_max(o->max_line), nrows + OPT_QUEUE_SPARE, 64);
	pl->pl_made |= 2;
	make_control(pl, nrows);
	pl->pl_keep = malloc(o->max_conns * sizeof(*pl->pl_keep));
	pl->pl_keep_gen = calloc(o->max_conns, sizeof(*pl->pl_keep_gen));
	if (pl->pl_keep == NULL || pl->pl_keep_gen == NULL)
		err(EX_OSERR, "malloc");
	for (int to = 0; to < PL_TO_N; to++) {
		pl->pl_out[to] = (struct pl_outbox){ .ob_set = calloc(
		    (o->max_conns + 63) / 64, sizeof(uint64_t)) };
		if (pl->pl_out[to].ob_set == NULL)
			err(EX_OSERR, "malloc");
	}
	for (uint32_t i = 0; i < o->max_conns; i++)
		pl->pl_keep[i] = -1;
}

void
pipeline_pidfile_busy(const char *path, pid_t pid)
{
	/* Whose it is, the pidfile does not say: --pidfile may name any. */
	errx(1, "pidfile %s is held by pid %d: a pipeline runs with it "
	    "already", path, (int)pid);
}

void
pipeline_pidfile_path(const struct options *o, char *buf, size_t len)
{
	const char *dir = getenv("XDG_RUNTIME_DIR");

	if (o->pidfile != NULL)
		strlcpy(buf, o->pidfile, len);
	else if (geteuid() == 0)
		snprintf(buf, len, "/run/shmpipe.%s.pid", o->name);
	else
		snprintf(buf, len, "%s/shmpipe.%s.pid", dir != NULL ? dir :
		    "/tmp", o->name);
}

void
pipeline_unlink(const char *name)
{
	static const char *suffix[] = { "req", "rep", "ctl" };
	char seg[64];

	for (size_t i = 0; i < 3; i++)
		if (ctl_seg_name(seg, sizeof(seg), name, suffix[i]) == 0)
			shmq_unlink(seg);
}

/*
 * Leave the files' offsets past what was taken and written, as a program
 * that used read(2) and write(2) would: the stages used positioned I/O.
 * Taken, not read: a drain leaves the start of a line it had not read
 * whole (from in_pos's head to in_total) for whoever reads on.
 */
static void
file_offsets(struct pipeline *pl)
{
	struct shmpipe_conn *cn = conn(pl, 0);
	uint64_t total = atomic_load(&cn->in_total);
	uint32_t left = (uint32_t)total -
	    SHMPIPE_IN_HEAD(atomic_load(&cn->in_pos));

	if (left > total)
		left = 0;			/* not a position of ours */
	lseek(pl->pl_in_fd, (off_t)(total - left), SEEK_SET);
	lseek(pl->pl_out_fd, (off_t)atomic_load(&cn->out_total), SEEK_SET);
}

void
pipeline_close(struct pipeline *pl)
{
	const struct options *o = pl->pl_opt;

	if (o->input != NULL && pl->pl_ctl.c_hdr != NULL)
		file_offsets(pl);
	for (uint32_t i = 0; pl->pl_keep != NULL && i < o->max_conns; i++)
		if (pl->pl_keep[i] >= 0)
			close(pl->pl_keep[i]);
	for (int i = 0; o->input == NULL && i < o->nlisten; i++) {
		close(pl->pl_listen[i]);
		listen_cleanup(&o->listen[i]);
	}
	shmq_close(pl->pl_req);
	shmq_close(pl->pl_rep);
	ctl_close(&pl->pl_ctl);
	if (!pl->pl_anon)
		pipeline_unlink(o->name);
	free(pl->pl_keep);
	free(pl->pl_keep_gen);
	for (int to = 0; to < PL_TO_N; to++)
		free(pl->pl_out[to].ob_set);
	pl->pl_keep = NULL;
}

void
pipeline_abandon(struct pipeline *pl)
{
	const struct options *o = pl->pl_opt;

	if (o->input != NULL)
		file_offsets(pl);
	for (int i = 0; o->input == NULL && i < o->nlisten; i++)
		listen_cleanup(&o->listen[i]);
	if (!pl->pl_anon)
		pipeline_unlink(o->name);
}

/* ---- connections kept for the stages ---------------------------------- */

void
pipeline_keep(struct pipeline *pl, const struct chan_msg *m, int fd)
{
	if (m->cm_slot >= pl->pl_ctl.c_g.max_conns) {
		close(fd);
		return;
	}
	if (pl->pl_keep[m->cm_slot] >= 0)
		close(pl->pl_keep[m->cm_slot]);
	pl->pl_keep[m->cm_slot] = fd;
	pl->pl_keep_gen[m->cm_slot] = m->cm_gen;
}

void
pipeline_lost_conn(struct pipeline *pl, const struct chan_msg *m)
{
	struct shmpipe_conn *cn;
	uint64_t w;

	if (m->cm_slot >= pl->pl_ctl.c_g.max_conns)
		return;
	cn = conn(pl, m->cm_slot);
	w = atomic_load(&cn->state);
	log_event("connection %u: its descriptor did not reach us (out of "
	    "file descriptors?); closing it", m->cm_slot);
	/* We alone free slots, so the generation cannot change under us.
	 * Release: pairs with the stages' acquire of the flags. */
	if (SHMPIPE_CONN_GEN(w) == m->cm_gen &&
	    (SHMPIPE_CONN_FLAGS(w) & SHMPIPE_CONN_OPEN))
		atomic_fetch_or_explicit(&cn->state, SHMPIPE_CONN_ABORT,
		    memory_order_release);
}

void
pipeline_request_died(struct pipeline *pl)
{
	for (uint32_t i = 0; i < pl->pl_ctl.c_g.max_conns; i++) {
		uint32_t f = conn_flags(pl, i);

		if (!(f & SHMPIPE_CONN_OPEN) || (f & (SHMPIPE_CONN_FILE |
		    SHMPIPE_CONN_RD_DONE)) || pl->pl_keep[i] >= 0)
			continue;
		log_event("connection %u: the request process died before its "
		    "descriptor reached us; dropping it", i);
		/* RD_DONE: no request process will hold it again.  ABORT: the
		 * reply stage lets go of it without one (its lost()), then
		 * conns_gc frees the slot and slab_gc what its requests held.
		 * We alone free slots, so it is still the one we looked at.
		 * Release: pairs with the stages' acquire of the flags. */
		atomic_fetch_or_explicit(&conn(pl, i)->state,
		    SHMPIPE_CONN_RD_DONE | SHMPIPE_CONN_ABORT,
		    memory_order_release);
	}
}

void
pipeline_slots_asked(struct pipeline *pl, int sock)
{
	pipeline_gc(pl, false);
	(void)chan_try_send(sock, &(struct chan_msg){ CHAN_SLOTS, 0, 0, 0 },
	    -1);
}

/* What stage `to` has no use for: the connections it is done with. */
static uint32_t
done_flag(enum pl_to to)
{
	return to == PL_TO_REPLY ? SHMPIPE_CONN_RP_DONE : SHMPIPE_CONN_RD_DONE;
}

/* Send the kept connection of slot i to stage `to`; -EAGAIN if full. */
static int
pass_one(struct pipeline *pl, enum pl_to to, int sock, uint32_t i)
{
	if (pl->pl_keep[i] < 0 || (conn_flags(pl, i) & done_flag(to)))
		return 0;		/* gone meanwhile: nothing to pass */
	return chan_try_send(sock, &(struct chan_msg){ CHAN_CONN, i,
	    pl->pl_keep_gen[i], 0 }, pl->pl_keep[i]);
}

/* Words of an outbox's set. */
static uint32_t
set_words(const struct pipeline *pl)
{
	return (pl->pl_ctl.c_g.max_conns + 63) / 64;
}

static void
outbox_add(struct pl_outbox *ob, uint32_t i)
{
	uint64_t bit = UINT64_C(1) << (i % 64);

	if (!(ob->ob_set[i / 64] & bit)) {
		ob->ob_set[i / 64] |= bit;
		ob->ob_n++;
	}
}

bool
pipeline_pass(struct pipeline *pl, int sock, const struct chan_msg *m)
{
	if (m->cm_slot >= pl->pl_ctl.c_g.max_conns)
		return false;
	outbox_add(&pl->pl_out[PL_TO_REPLY], m->cm_slot);
	return pipeline_flush(pl, PL_TO_REPLY, sock);
}

bool
pipeline_flush(struct pipeline *pl, enum pl_to to, int sock)
{
	struct pl_outbox *ob = &pl->pl_out[to];
	bool sent = false;
	int r;

	for (uint32_t w = 0; ob->ob_n > 0 && w < set_words(pl); w++)
		while (ob->ob_set[w] != 0) {
			uint64_t bit = ob->ob_set[w] & -ob->ob_set[w];

			r = pass_one(pl, to, sock, w * 64 +
			    (uint32_t)__builtin_ctzll(bit));
			if (r == -EAGAIN)
				return sent;	/* the rest when it has room */
			/* Sent, gone, or the stage is: its successor is
			 * sent every connection when it starts. */
			sent |= r == 0;
			ob->ob_set[w] &= ~bit;
			ob->ob_n--;
		}
	if (ob->ob_synced) {
		r = chan_try_send(sock, &(struct chan_msg){ CHAN_SYNCED, 0, 0,
		    0 }, -1);
		ob->ob_synced = r == -EAGAIN;
		sent |= r == 0;
	}
	return sent;
}

bool
pipeline_send_conns(struct pipeline *pl, enum pl_to to, int sock)
{
	struct pl_outbox *ob = &pl->pl_out[to];

	memset(ob->ob_set, 0, set_words(pl) * sizeof(*ob->ob_set));
	ob->ob_n = 0;
	for (uint32_t i = 0; i < pl->pl_ctl.c_g.max_conns; i++)
		if (pl->pl_keep[i] >= 0 && !(conn_flags(pl, i) & done_flag(to)))
			outbox_add(ob, i);
	ob->ob_synced = true;
	return pipeline_flush(pl, to, sock);
}

/* ---- housekeeping ----------------------------------------------------- */

/*
 * Is the client on slot i silent past the idle timeout, nothing in flight?
 * Silent as the request stage last read it, and with nothing unread in
 * its socket: a request process stopped or slow has not read what came
 * meanwhile, and the client is not to blame.
 */
static bool
idle(const struct pipeline *pl, uint32_t i, uint32_t f, uint64_t now)
{
	struct shmpipe_conn *cn = conn(pl, i);
	uint64_t limit = (uint64_t)pl->pl_opt->idle_timeout_ms * 1000000u;
	/* The request stage may have stored a later time than now. */
	uint64_t last = atomic_load(&cn->last_in_ns);
	int unread = 0;

	return limit > 0 && !(f & SHMPIPE_CONN_RD_DONE) && pl->pl_keep[i] >= 0 &&
	    now > last && now - last > limit &&
	    atomic_load(&cn->reply_seq) == SHMPIPE_IN_SEQ(atomic_load(
	    &cn->in_pos)) &&
	    ioctl(pl->pl_keep[i], FIONREAD, &unread) == 0 && unread == 0;
}

/*
 * Close an idle client's input: the request stage sees the end and lets
 * go of it.  Half a line it sent is not a request (the rest may have been
 * coming): nothing is in flight, so the connection is given up (ABORT)
 * rather than answer the half as if it were whole.
 */
static void
idle_close(struct pipeline *pl, uint32_t i)
{
	struct shmpipe_conn *cn = conn(pl, i);
	bool partial = (uint32_t)atomic_load(&cn->in_total) !=
	    SHMPIPE_IN_HEAD(atomic_load(&cn->in_pos));

	log_info("connection %u idle for %u ms; closing it%s", i,
	    pl->pl_opt->idle_timeout_ms, partial ? " and dropping the partial "
	    "line it sent" : "");
	if (partial)
		/* Release: pairs with the stages' acquire of the flags. */
		atomic_fetch_or_explicit(&cn->state, SHMPIPE_CONN_ABORT,
		    memory_order_release);
	shutdown(pl->pl_keep[i], partial ? SHUT_RDWR : SHUT_RD);
}

/*
 * Free connection slots both stages have let go of; close clients that
 * were silent longer than the idle timeout with nothing in flight.
 */
static void
conns_gc(struct pipeline *pl, uint64_t now)
{
	const uint32_t both = SHMPIPE_CONN_RD_DONE | SHMPIPE_CONN_RP_DONE;

	for (uint32_t i = 0; i < pl->pl_ctl.c_g.max_conns; i++) {
		struct shmpipe_conn *cn = conn(pl, i);
		uint64_t w = atomic_load_explicit(&cn->state,
		    memory_order_acquire);
		uint32_t f = SHMPIPE_CONN_FLAGS(w);

		if (!(f & SHMPIPE_CONN_OPEN) || (f & SHMPIPE_CONN_FILE))
			continue;
		if ((f & both) == both) {
			if (pl->pl_keep[i] >= 0)
				close(pl->pl_keep[i]);
			pl->pl_keep[i] = -1;
			/* Release: the request stage may claim it again. */
			atomic_compare_exchange_strong(&cn->state, &w,
			    SHMPIPE_CONN_ID(SHMPIPE_CONN_GEN(w), 0));
		} else if (idle(pl, i, f, now)) {
			idle_close(pl, i);
			atomic_store(&cn->last_in_ns, now);
		}
	}
}

/* Is slab slot s reserved for a request nobody will answer into it? */
static bool
slab_orphan(const struct pipeline *pl, struct shmpipe_slab *s)
{
	uint64_t id = atomic_load(&s->conn);
	uint32_t slot = SHMPIPE_CONN_SLOT(id), seq = atomic_load(&s->seq);
	uint64_t w;
	uint32_t f, ahead;

	if (slot >= pl->pl_ctl.c_g.max_conns)
		return true;
	w = atomic_load(&conn(pl, slot)->state);
	f = SHMPIPE_CONN_FLAGS(w);
	if (SHMPIPE_CONN_GEN(w) != (uint32_t)(id >> 32) ||
	    !(f & SHMPIPE_CONN_OPEN) || (f & SHMPIPE_CONN_RP_DONE))
		return true;
	/* Answered through another slot already (a re-put request)? */
	ahead = (atomic_load(&conn(pl, slot)->reply_seq) - seq) &
	    SHMPIPE_SEQ_MASK;
	return ahead != 0 && ahead < SHMPIPE_SEQ_MASK / 2;
}

/*
 * Free the slab slots reserved for requests nobody will answer into them.
 * slab_orphan() judges the reservation whose stage word we loaded, w; the
 * reply stage may free that slot meanwhile (place(): its connection is
 * gone) and the request stage reserve it again for a live request.  Were
 * the CAS to compare RESERVED alone, it would then free the live
 * request's slot: its reply found no reservation, dropped as a duplicate,
 * and the connection waited for it forever.  It compares the generation
 * too, which every reservation moves on, so it succeeds only if the slot
 * is still in the reservation we judged: nothing frees it meanwhile
 * without changing the word, and a word the same again would take 2^32
 * reservations of this one slot between our load and our CAS.
 */
static void
slab_gc(struct pipeline *pl)
{
	struct shmpipe_ctl *c = pl->pl_ctl.c_hdr;

	for (uint32_t i = 0; i < pl->pl_ctl.c_g.slab_slots; i++) {
		struct shmpipe_slab *s = ctl_slab(&pl->pl_ctl, i);
		/* Acquire: pairs with the request stage's release of
		 * RESERVED, so slab_orphan() reads the conn and seq of the
		 * reservation w names, or of a later one (and the CAS
		 * fails). */
		uint64_t w = atomic_load_explicit(&s->stage,
		    memory_order_acquire);

		/* Seq_cst CAS (a release of FREE): pairs with the request
		 * stage's acquire in slab_reserve. */
		if (SHMPIPE_SLAB_STAGE(w) == SHMPIPE_SLAB_RESERVED &&
		    slab_orphan(pl, s) && atomic_compare_exchange_strong(
		    &s->stage, &w, SHMPIPE_SLAB_WORD(SHMPIPE_SLAB_GEN(w),
		    SHMPIPE_SLAB_FREE)))
			atomic_fetch_add(&c->gc_freed, 1);
	}
}

void
pipeline_gc(struct pipeline *pl, bool slab)
{
	conns_gc(pl, stage_coarse_ns());
	if (slab)
		slab_gc(pl);
}

void
pipeline_drain(struct pipeline *pl, const char *why)
{
	struct shmpipe_ctl *c = pl->pl_ctl.c_hdr;
	/* As shmq ps counts them: slab slots held for a reply (a reply
	 * dropped with its client frees its slot but is never answered). */
	uint64_t held = atomic_load(&c->reserved), done = atomic_load(
	    &c->freed) + atomic_load(&c->gc_freed);

	log_event("%s: answering the %llu request(s) in flight", why,
	    (unsigned long long)(held > done ? held - done : 0));
	/* Release: stages that see DRAINING see everything before it. */
	atomic_store_explicit(&c->phase, SHMPIPE_PHASE_DRAINING,
	    memory_order_release);
}

bool
pipeline_input_done(const struct pipeline *pl)
{
	return pl->pl_opt->input != NULL &&
	    atomic_load(&pl->pl_ctl.c_hdr->req_closed);
}

int
pipeline_file_verdict(const struct pipeline *pl)
{
	struct shmpipe_conn *cn;
	uint32_t left;

	if (pl->pl_opt->input == NULL)
		return 0;
	cn = conn(pl, 0);
	left = (atomic_load(&cn->final_seq) - atomic_load(&cn->reply_seq)) &
	    SHMPIPE_SEQ_MASK;
	if (left == 0 && (SHMPIPE_CONN_FLAGS(atomic_load(&cn->state)) &
	    SHMPIPE_CONN_RD_DONE))
		return 0;
	log_event("%u request(s) read were not written out; the output is "
	    "short", left);
	return STAGE_EX_SOFTWARE;
}

void
pipeline_log_start(const struct pipeline *pl, const char *what)
{
	const struct options *o = pl->pl_opt;
	char where[600] = "", one[300];

	for (int i = 0; i < o->nlisten && o->input == NULL; i++) {
		options_listen_str(&o->listen[i], one, sizeof(one));
		strlcat(where, i ? ", " : "", sizeof(where));
		strlcat(where, one, sizeof(where));
	}
	log_event("started %u processor%s (%s)%s%s%s (%s)", o->processors,
	    o->processors == 1 ? "" : "s", what, o->input ? ", file mode: " :
	    ", listening on ", o->input ? o->input : where,
	    o->handler ? ", handler loaded per processor" : "", SHMQ_VERSION);
}
