/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * supervisor.c - the parent of a pipeline of processes: set it up (with
 * pipeline.c), watch over it, take it down.  It holds the pidfile, removes
 * what a killed predecessor left, relays client connections from the
 * request stage to the reply stage, and turns signals into a drain, a
 * reload or a stop.  Forking, reaping and restarting are in children.c.
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"
#include "log.h"
#include "stage.h"
#include "supervisor.h"

#define TICK_NS		20000000ull	/* housekeeping every 20 ms */
#define SLAB_GC_TICKS	50
#define EP_SIGNAL	UINT32_MAX
#define EX_OSERR	71

/* ---- connections ------------------------------------------------------ */

/* A connection the request stage accepted: keep it, pass it on. */
static void
keep_conn(struct sv *sv, const struct chan_msg *m, int fd)
{
	struct child *rp = &sv->sv_child[SV_ROW_REPLY];

	pipeline_keep(&sv->sv_pl, m, fd);
	if (rp->ch_pid != 0 && rp->ch_sock >= 0 &&
	    pipeline_pass(&sv->sv_pl, rp->ch_sock, m))
		kill(rp->ch_pid, SIGUSR1);	/* doorbell: a take waits */
}

/* What the stages' channels had no room for, once they have. */
static void
pass_unsent(struct sv *sv)
{
	struct child *rq = &sv->sv_child[SV_ROW_REQUEST];
	struct child *rp = &sv->sv_child[SV_ROW_REPLY];

	if (rq->ch_pid != 0 && rq->ch_sock >= 0)
		(void)pipeline_flush(&sv->sv_pl, PL_TO_REQUEST, rq->ch_sock);
	if (rp->ch_pid != 0 && rp->ch_sock >= 0 &&
	    pipeline_flush(&sv->sv_pl, PL_TO_REPLY, rp->ch_sock))
		kill(rp->ch_pid, SIGUSR1);	/* doorbell */
}

void
sv_read_chan(struct sv *sv, uint32_t row)
{
	struct chan_msg m;
	int fd;

	while (sv->sv_child[row].ch_sock >= 0 &&
	    chan_recv(sv->sv_child[row].ch_sock, &m, &fd, 0) == 1) {
		if (m.cm_type == CHAN_SLOTS &&
		    sv->sv_child[row].ch_role == SHMPIPE_ROLE_REQUEST)
			pipeline_slots_asked(&sv->sv_pl,
			    sv->sv_child[row].ch_sock);
		else if (m.cm_type == CHAN_CONN && fd >= 0 &&
		    sv->sv_child[row].ch_role == SHMPIPE_ROLE_REQUEST)
			keep_conn(sv, &m, fd);
		else if (m.cm_type == CHAN_CONN &&
		    sv->sv_child[row].ch_role == SHMPIPE_ROLE_REQUEST)
			pipeline_lost_conn(&sv->sv_pl, &m);
		else if (fd >= 0)
			close(fd);
	}
}

/* ---- draining --------------------------------------------------------- */

static void
start_drain(struct sv *sv, const char *why)
{
	if (sv->sv_draining)
		return;
	sv->sv_draining = true;
	sv->sv_reload_idx = sv->sv_reload_new = -1;
	pipeline_drain(&sv->sv_pl, why);
	sv_kill_all(sv, SIGUSR1);	/* wake blocked stages to look */
	if (sv->sv_child[SV_ROW_REQUEST].ch_pid != 0)
		kill(sv->sv_child[SV_ROW_REQUEST].ch_pid, SIGTERM);
}

/* A processor row to bring back while requests remain after a crash. */
static void
revive_processor(struct sv *sv)
{
	for (uint32_t i = SV_ROW_PROC0; i < sv->sv_nrows; i++) {
		struct child *ch = &sv->sv_child[i];
		if (ch->ch_role == SHMPIPE_ROLE_PROCESSOR && ch->ch_pid == 0) {
			ch->ch_retire = false;
			ch->ch_restart_ns = stage_now_ns();
			return;
		}
	}
}

/* True once the last stage has exited. */
static bool
drain_step(struct sv *sv)
{
	struct shmpipe_ctl *c = sv->sv_pl.pl_ctl.c_hdr;

	if (!sv->sv_draining || sv_alive(sv, SHMPIPE_ROLE_REQUEST))
		return false;
	if (!atomic_load(&c->req_closed))
		atomic_store(&c->req_closed, 1);	/* it died draining */
	if (!sv_alive(sv, SHMPIPE_ROLE_PROCESSOR) &&
	    !atomic_load(&c->procs_closed)) {
		if (!stage_queue_drained(sv->sv_pl.pl_req)) {
			revive_processor(sv);
			return false;
		}
		/* Release: the reply stage that sees it sees every reply. */
		atomic_store_explicit(&c->procs_closed, 1,
		    memory_order_release);
		if (sv->sv_child[SV_ROW_REPLY].ch_pid != 0)
			kill(sv->sv_child[SV_ROW_REPLY].ch_pid, SIGUSR1);
	}
	return !sv_alive(sv, SHMPIPE_ROLE_PROCESSOR) &&
	    !sv_alive(sv, SHMPIPE_ROLE_REPLY);
}

/* ---- signals ---------------------------------------------------------- */

/*
 * The signals we take through a signalfd, blocked.  SIGUSR1 among them,
 * though it means nothing to us: a child starts with our mask, and the
 * doorbell we ring with it must wait, pending, until the child has its
 * handler (child_signals unblocks it then); unblocked, it would kill a
 * child we ring the moment it is forked.
 */
static int
signals_open(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void
on_signals(struct sv *sv)
{
	struct signalfd_siginfo si;

	while (read(sv->sv_sigfd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			sv_reap(sv);
			break;
		case SIGHUP:
			sv_reload_start(sv);
			break;
		case SIGUSR1:		/* blocked for our children's sake */
			break;
		default:
			if (++sv->sv_signals == 1) {
				start_drain(sv, si.ssi_signo == SIGINT ?
				    "interrupted" : "terminating");
			} else {
				log_event("second signal: stopping now");
				sv->sv_giving_up = true;
				sv->sv_exit = 1;
			}
		}
	}
}

/* ---- setup and teardown ----------------------------------------------- */

/* Does the pipeline's queue `suffix` exist (in /dev/shm)? */
static bool
queue_left(const char *pipeline, const char *suffix)
{
	char name[64];
	int fd;

	if (ctl_seg_name(name, sizeof(name), pipeline, suffix) != 0 ||
	    (fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0)) < 0)
		return false;
	close(fd);
	return true;
}

#define NAME_WAIT_NS	3000000000ull	/* for a dead supervisor's stages */

static void __attribute__((noreturn))
refuse_running(const struct options *o, pid_t pid)
{
	errx(1, "pipeline %s is already running (supervisor pid %d)", o->name,
	    (int)pid);
}

/*
 * Segments of this name left by a supervisor that was killed: remove
 * them.  If that supervisor is in fact alive, refuse.
 */
static void
clear_stale(const struct options *o)
{
	static const char *const suffix[] = { "ctl", "req", "rep" };
	char why[160];
	struct ctl c;
	int r;

	/* Another user's, or one others may write: not ours to use or
	 * remove (shmq rm -f does that, when it is meant). */
	for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++)
		if (ctl_seg_foreign(o->name, suffix[i], why, sizeof(why)))
			errx(1, "pipeline %s: %s; refusing to use or remove a "
			    "segment that is not ours alone", o->name, why);
	r = ctl_open(&c, o->name, CTL_OPEN_RDONLY);

	if (r == 0) {
		pid_t pid = (pid_t)c.c_hdr->supervisor_pid;
		bool alive = shmq_pid_alive(pid, c.c_hdr->supervisor_start);
		ctl_close(&c);
		if (alive)
			refuse_running(o, pid);
		log_event("removing stale segments of pipeline %s (its "
		    "supervisor, pid %d, is gone)", o->name, (int)pid);
	} else if (r != -ENOENT) {
		log_event("removing unreadable segments of pipeline %s (%s)",
		    o->name, strerror(-r));
	} else if (!queue_left(o->name, "req") && !queue_left(o->name, "rep")) {
		return;
	} else {
		log_event("removing queues of pipeline %s left without their "
		    "control segment", o->name);
	}
	pipeline_unlink(o->name);
}

_Static_assert(SV_ROW_PROC0 == OPT_STAGE_ROWS,
    "the rows before the processors are the stage rows options.h counts");

static void
rows_init(struct sv *sv)
{
	const struct options *o = sv->sv_opt;

	sv->sv_nrows = OPT_STAGE_ROWS + 2 * o->processors;
	sv->sv_child = calloc(sv->sv_nrows, sizeof(*sv->sv_child));
	if (sv->sv_child == NULL)
		err(EX_OSERR, "calloc");
	for (uint32_t i = 0; i < sv->sv_nrows; i++)
		sv->sv_child[i].ch_sock = -1;
	sv->sv_child[SV_ROW_REQUEST].ch_role = SHMPIPE_ROLE_REQUEST;
	sv->sv_child[SV_ROW_REPLY].ch_role = SHMPIPE_ROLE_REPLY;
	for (uint32_t i = 0; i < o->processors; i++) {
		sv->sv_child[SV_ROW_PROC0 + i].ch_role = SHMPIPE_ROLE_PROCESSOR;
		sv->sv_child[SV_ROW_PROC0 + i].ch_index = i;
	}
}

static struct pidfh *pidfh;		/* for remove_pidfile() */
static pid_t	pidfh_owner;

/* A supervisor that exits early (err(3)) takes its pidfile with it. */
static void
remove_pidfile(void)
{
	if (pidfh != NULL && getpid() == pidfh_owner)
		pidfile_remove(pidfh);
}

/*
 * One supervisor per pipeline name, whatever its pidfile: two started
 * together with their own pidfiles would each take the other's segments
 * for stale ones, or fail half-way and remove them.  The lock is a name in
 * the abstract Unix socket namespace: taken atomically, never left behind,
 * and let go when the last process holding it is gone.  The stages hold it
 * too, so that a supervisor killed with SIGKILL lets go of the name only
 * once its stages (which the kernel kills with it) have let go of its
 * listeners: its successor waits that long, not for ever.  The namespace
 * is the network namespace's, so pipelines that share /dev/shm across
 * network namespaces need names of their own.
 */
static int
name_lock(const struct options *o)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1,
	    "shmpipe.%s", o->name);
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
	    1 + (size_t)n);
	uint64_t end = stage_now_ns() + NAME_WAIT_NS;
	struct timespec nap = { 0, 10000000 };
	struct ctl c;

	if (fd < 0)
		err(EX_OSERR, "socket");
	while (bind(fd, (struct sockaddr *)&sa, len) != 0) {
		if (errno != EADDRINUSE)
			err(EX_OSERR, "cannot lock the name %s", o->name);
		if (ctl_open(&c, o->name, CTL_OPEN_RDONLY) == 0) {
			pid_t pid = (pid_t)c.c_hdr->supervisor_pid;
			bool alive = shmq_pid_alive(pid,
			    c.c_hdr->supervisor_start);

			ctl_close(&c);
			if (alive)
				refuse_running(o, pid);
		}
		if (stage_now_ns() >= end)
			errx(1, "pipeline %s is already running or starting "
			    "(another supervisor, or the stages of one that "
			    "died, hold the name)", o->name);
		nanosleep(&nap, NULL);	/* a dead one's stages are exiting */
	}
	return fd;
}

static void
setup(struct sv *sv)
{
	const struct options *o = sv->sv_opt;
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = EP_SIGNAL };
	char path[PATH_MAX];
	pid_t other;

	pipeline_pidfile_path(o, path, sizeof(path));
	pipeline_signals_catch();
	if ((sv->sv_pfh = pidfile_open(path, 0600, &other)) == NULL) {
		if (errno == EEXIST)
			pipeline_pidfile_busy(path, other);
		err(EX_OSERR, "cannot create pidfile %s", path);
	}
	pidfh = sv->sv_pfh;
	pidfh_owner = getpid();
	atexit(remove_pidfile);
	sv->sv_lock = name_lock(o);
	clear_stale(o);
	rows_init(sv);
	pipeline_open(&sv->sv_pl, o, sv->sv_nrows, false);
	sv->sv_sigfd = signals_open();
	pipeline_signals_handover();
	sv->sv_ep = epoll_create1(EPOLL_CLOEXEC);
	if (sv->sv_sigfd < 0 || sv->sv_ep < 0 ||
	    epoll_ctl(sv->sv_ep, EPOLL_CTL_ADD, sv->sv_sigfd, &ev) != 0)
		err(EX_OSERR, "signalfd/epoll");
	pidfile_write(sv->sv_pfh);
}

static void
teardown(struct sv *sv)
{
	pipeline_close(&sv->sv_pl);
	close(sv->sv_lock);		/* after the segments are gone */
	pidfile_remove(sv->sv_pfh);
	pidfh = NULL;
	free(sv->sv_child);
}

/* ---- the loop --------------------------------------------------------- */

static int
next_timeout(const struct sv *sv, uint64_t now)
{
	uint64_t next = sv->sv_tick_ns;

	for (uint32_t i = 0; i < sv->sv_nrows; i++)
		if (sv->sv_child[i].ch_restart_ns != 0 &&
		    sv->sv_child[i].ch_restart_ns < next)
			next = sv->sv_child[i].ch_restart_ns;
	return next <= now ? 0 : (int)((next - now + 999999) / 1000000);
}

/* Housekeeping; true when the pipeline is done. */
static bool
tick(struct sv *sv, uint64_t now, unsigned n)
{
	sv_timeouts(sv, now);
	pass_unsent(sv);
	pipeline_gc(&sv->sv_pl, n % SLAB_GC_TICKS == 0);
	sv_reload_step(sv);
	if (pipeline_input_done(&sv->sv_pl))
		start_drain(sv, "input read to the end");
	return drain_step(sv);
}

static void
loop(struct sv *sv)
{
	struct epoll_event ev[16];
	unsigned ticks = 0;

	sv->sv_tick_ns = stage_now_ns();
	while (!sv->sv_giving_up) {
		uint64_t now = stage_now_ns();
		int n = epoll_wait(sv->sv_ep, ev, 16, next_timeout(sv, now));

		for (int i = 0; i < n; i++) {
			if (ev[i].data.u32 == EP_SIGNAL)
				on_signals(sv);
			else if (ev[i].data.u32 < sv->sv_nrows)
				sv_read_chan(sv, ev[i].data.u32);
		}
		now = stage_now_ns();
		sv_restarts(sv, now);
		if (now >= sv->sv_tick_ns) {
			sv->sv_tick_ns = now + TICK_NS;
			if (tick(sv, now, ticks++))
				break;
		}
	}
}

/* Give the stages a moment to die after SIGKILL, and reap them. */
static void
kill_and_reap(struct sv *sv)
{
	sv_kill_all(sv, SIGKILL);
	for (uint32_t i = 0; i < sv->sv_nrows; i++)
		if (sv->sv_child[i].ch_pid != 0)
			waitpid(sv->sv_child[i].ch_pid, NULL, 0);
}

int
supervisor_run(struct options *opt)
{
	struct sv sv = { .sv_opt = opt, .sv_reload_idx = -1,
	    .sv_reload_new = -1 };
	struct shmpipe_ctl *c;

	log_init(opt->name, "supervisor");
	log_quiet(opt->quiet);
	setup(&sv);
	setproctitle("supervisor [%s]", opt->name);
	pipeline_log_start(&sv.sv_pl, "processes");
	for (uint32_t i = 0; i < SV_ROW_PROC0 + opt->processors; i++)
		sv_spawn(&sv, i);
	loop(&sv);
	if (sv.sv_giving_up)
		kill_and_reap(&sv);
	else if (sv.sv_exit == 0)
		sv.sv_exit = pipeline_file_verdict(&sv.sv_pl);
	c = sv.sv_pl.pl_ctl.c_hdr;
	log_event("stopped: %llu requests answered, %llu replies dropped with "
	    "their clients, %llu restarts",
	    (unsigned long long)atomic_load(&c->answered),
	    (unsigned long long)atomic_load(&c->dropped),
	    (unsigned long long)atomic_load(&c->restarts));
	teardown(&sv);
	return sv.sv_exit;
}
