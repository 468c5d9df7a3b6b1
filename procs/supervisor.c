/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * supervisor.c - set a pipeline up, watch over it, take it down.
 *
 * The supervisor holds a copy of every client connection: the request
 * stage sends it each one it accepts, and it passes them on to the reply
 * stage, and back to either when it is restarted.  That is what lets a
 * stage process die without its clients noticing.  It also frees the
 * connection slots both stages are done with, and collects slab slots a
 * dead request process reserved but never used.
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"
#include "listen.h"
#include "log.h"
#include "msg.h"
#include "stage.h"
#include "supervisor.h"

#define TICK_NS		20000000ull	/* housekeeping every 20 ms */
#define SLAB_GC_TICKS	50
#define EP_SIGNAL	UINT32_MAX
#define EX_SOFTWARE	70
#define EX_OSERR	71

/* ---- connections kept for the stages ---------------------------------- */

static struct shmpipe_conn *
conn(const struct sv *sv, uint32_t slot)
{
	return ctl_conn(&sv->sv_ctl, slot);
}

static uint32_t
conn_flags(const struct sv *sv, uint32_t slot)
{
	/* Acquire: pairs with the stages' release of their flags. */
	return SHMPIPE_CONN_FLAGS(atomic_load_explicit(&conn(sv, slot)->state,
	    memory_order_acquire));
}

/* Send row's stage every connection it still has work on, then SYNCED. */
void
sv_send_conns(struct sv *sv, uint32_t row)
{
	struct child *ch = &sv->sv_child[row];
	uint32_t done = ch->ch_role == SHMPIPE_ROLE_REQUEST ?
	    SHMPIPE_CONN_RD_DONE : SHMPIPE_CONN_RP_DONE;

	for (uint32_t i = 0; i < sv->sv_ctl.c_hdr->max_conns; i++) {
		if (sv->sv_keep[i] < 0 || (conn_flags(sv, i) & done))
			continue;
		if (chan_send(ch->ch_sock, &(struct chan_msg){ CHAN_CONN, i,
		    sv->sv_keep_gen[i], 0 }, sv->sv_keep[i]) != 0)
			return;			/* it died; we will hear of it */
	}
	chan_send(ch->ch_sock, &(struct chan_msg){ CHAN_SYNCED, 0, 0, 0 }, -1);
}

/* A connection the request stage accepted: keep it, pass it on. */
static void
keep_conn(struct sv *sv, const struct chan_msg *m, int fd)
{
	struct child *rp = &sv->sv_child[SV_ROW_REPLY];

	if (m->cm_slot >= sv->sv_ctl.c_hdr->max_conns) {
		close(fd);
		return;
	}
	if (sv->sv_keep[m->cm_slot] >= 0)
		close(sv->sv_keep[m->cm_slot]);
	sv->sv_keep[m->cm_slot] = fd;
	sv->sv_keep_gen[m->cm_slot] = m->cm_gen;
	if (rp->ch_pid != 0 && rp->ch_sock >= 0 &&
	    chan_send(rp->ch_sock, m, fd) == 0)
		kill(rp->ch_pid, SIGUSR1);	/* doorbell: a take waits */
}

static void
read_chan(struct sv *sv, uint32_t row)
{
	struct chan_msg m;
	int fd;

	while (sv->sv_child[row].ch_sock >= 0 &&
	    chan_recv(sv->sv_child[row].ch_sock, &m, &fd, 0) == 1) {
		if (m.cm_type == CHAN_CONN && fd >= 0 &&
		    sv->sv_child[row].ch_role == SHMPIPE_ROLE_REQUEST)
			keep_conn(sv, &m, fd);
		else if (fd >= 0)
			close(fd);
	}
}

/*
 * Free connection slots both stages have let go of; close clients that
 * were silent longer than the idle timeout with nothing in flight.
 */
static void
conns_gc(struct sv *sv, uint64_t now)
{
	uint64_t idle = (uint64_t)sv->sv_opt->idle_timeout_ms * 1000000u;
	const uint32_t both = SHMPIPE_CONN_RD_DONE | SHMPIPE_CONN_RP_DONE;

	for (uint32_t i = 0; i < sv->sv_ctl.c_hdr->max_conns; i++) {
		struct shmpipe_conn *cn = conn(sv, i);
		uint64_t w = atomic_load_explicit(&cn->state,
		    memory_order_acquire);
		uint32_t f = SHMPIPE_CONN_FLAGS(w);
		/* The request stage may have stored a later time than now. */
		uint64_t last = atomic_load(&cn->last_in_ns);

		if (!(f & SHMPIPE_CONN_OPEN) || (f & SHMPIPE_CONN_FILE))
			continue;
		if ((f & both) == both) {
			if (sv->sv_keep[i] >= 0)
				close(sv->sv_keep[i]);
			sv->sv_keep[i] = -1;
			/* Release: the request stage may claim it again. */
			atomic_compare_exchange_strong(&cn->state, &w,
			    SHMPIPE_CONN_ID(SHMPIPE_CONN_GEN(w), 0));
		} else if (idle > 0 && !(f & SHMPIPE_CONN_RD_DONE) &&
		    sv->sv_keep[i] >= 0 && now > last && now - last > idle &&
		    atomic_load(&cn->reply_seq) ==
		    SHMPIPE_IN_SEQ(atomic_load(&cn->in_pos))) {
			log_info("connection %u idle for %u ms; closing it", i,
			    sv->sv_opt->idle_timeout_ms);
			shutdown(sv->sv_keep[i], SHUT_RD);
			atomic_store(&cn->last_in_ns, now);
		}
	}
}

/* Is slab slot s reserved for a request nobody will answer into it? */
static bool
slab_orphan(const struct sv *sv, struct shmpipe_slab *s)
{
	uint64_t id = atomic_load(&s->conn);
	uint32_t slot = SHMPIPE_CONN_SLOT(id), seq = atomic_load(&s->seq);
	uint64_t w;
	uint32_t f, ahead;

	if (slot >= sv->sv_ctl.c_hdr->max_conns)
		return true;
	w = atomic_load(&conn(sv, slot)->state);
	f = SHMPIPE_CONN_FLAGS(w);
	if (SHMPIPE_CONN_GEN(w) != (uint32_t)(id >> 32) ||
	    !(f & SHMPIPE_CONN_OPEN) || (f & SHMPIPE_CONN_RP_DONE))
		return true;
	/* Answered through another slot already (a re-put request)? */
	ahead = (atomic_load(&conn(sv, slot)->reply_seq) - seq) &
	    SHMPIPE_SEQ_MASK;
	return ahead != 0 && ahead < SHMPIPE_SEQ_MASK / 2;
}

static void
slab_gc(struct sv *sv)
{
	struct shmpipe_ctl *c = sv->sv_ctl.c_hdr;

	for (uint32_t i = 0; i < c->slab_slots; i++) {
		struct shmpipe_slab *s = ctl_slab(&sv->sv_ctl, i);
		uint32_t reserved = SHMPIPE_SLAB_RESERVED;

		if (atomic_load_explicit(&s->stage, memory_order_acquire) ==
		    SHMPIPE_SLAB_RESERVED && slab_orphan(sv, s) &&
		    atomic_compare_exchange_strong(&s->stage, &reserved,
		    SHMPIPE_SLAB_FREE))
			atomic_fetch_add(&c->gc_freed, 1);
	}
}

/* ---- draining --------------------------------------------------------- */

static void
start_drain(struct sv *sv, const char *why)
{
	struct shmpipe_ctl *c = sv->sv_ctl.c_hdr;
	uint64_t in = atomic_load(&c->accepted), out = atomic_load(&c->answered);

	if (sv->sv_draining)
		return;
	sv->sv_draining = true;
	sv->sv_reload_idx = sv->sv_reload_new = -1;
	log_event("%s: answering the %llu request(s) in flight", why,
	    (unsigned long long)(in > out ? in - out : 0));
	/* Release: stages that see DRAINING see everything before it. */
	atomic_store_explicit(&c->phase, SHMPIPE_PHASE_DRAINING,
	    memory_order_release);
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
	struct shmpipe_ctl *c = sv->sv_ctl.c_hdr;

	if (!sv->sv_draining || sv_alive(sv, SHMPIPE_ROLE_REQUEST))
		return false;
	if (!atomic_load(&c->req_closed))
		atomic_store(&c->req_closed, 1);	/* it died draining */
	if (!sv_alive(sv, SHMPIPE_ROLE_PROCESSOR) &&
	    !atomic_load(&c->procs_closed)) {
		if (!stage_queue_drained(sv->sv_req)) {
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

static int
signals_open(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
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

static void
pidfile_path(const struct options *o, char *buf, size_t len)
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

static void
unlink_segments(const char *pipeline)
{
	static const char *suffix[] = { "req", "rep", "ctl" };
	char name[64];

	for (size_t i = 0; i < 3; i++)
		if (ctl_seg_name(name, sizeof(name), pipeline,
		    suffix[i]) == 0)
			shmq_unlink(name);
}

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

/*
 * Segments of this name left by a supervisor that was killed: remove
 * them.  If that supervisor is in fact alive, refuse.
 */
static void
clear_stale(struct sv *sv)
{
	const struct options *o = sv->sv_opt;
	struct ctl c;
	int r = ctl_open(&c, o->name, true);

	if (r == 0) {
		pid_t pid = (pid_t)c.c_hdr->supervisor_pid;
		bool alive = shmq_pid_alive(pid, c.c_hdr->supervisor_start);
		ctl_close(&c);
		if (alive) {
			pidfile_remove(sv->sv_pfh);	/* ours, not its */
			errx(1, "pipeline %s is already running (supervisor "
			    "pid %d)", o->name, (int)pid);
		}
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
	unlink_segments(o->name);
}

static struct shmq *
make_queue(const struct options *o, const char *suffix, uint32_t msg_max,
    uint32_t procs, uint32_t leases)
{
	/* Stages sleep often (there are more of them than CPUs, as a rule):
	 * a fence per operation is cheaper than interrupting a CPU per sleep. */
	struct shmq_config cfg = { .capacity = o->capacity, .msg_max = msg_max,
	    .max_procs = procs, .lease_max = leases,
	    .flags = SHMQ_CREATE_FENCES };
	char name[64];
	struct shmq *q;

	ctl_seg_name(name, sizeof(name), o->name, suffix);
	if ((q = shmq_create(name, &cfg)) == NULL)
		err(EX_OSERR, "cannot create queue %s", name);
	return q;
}

static void
open_files(struct sv *sv)
{
	const struct options *o = sv->sv_opt;

	sv->sv_in_fd = strcmp(o->input, "-") == 0 ? STDIN_FILENO :
	    open(o->input, O_RDONLY | O_CLOEXEC);
	if (sv->sv_in_fd < 0)
		err(66, "cannot read %s", o->input);
	sv->sv_out_fd = strcmp(o->output, "-") == 0 ? STDOUT_FILENO :
	    open(o->output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (sv->sv_out_fd < 0)
		err(73, "cannot write %s", o->output);
}

static void
open_listeners(struct sv *sv)
{
	char why[512];

	for (int i = 0; i < sv->sv_opt->nlisten; i++) {
		sv->sv_listen[i] = listen_open(&sv->sv_opt->listen[i], why,
		    sizeof(why));
		if (sv->sv_listen[i] < 0) {
			pidfile_remove(sv->sv_pfh);
			errx(EX_OSERR, "%s", why);
		}
		sv->sv_listen_unix[i] = sv->sv_opt->listen[i].ls_unix;
		listen_bound_port(sv->sv_listen[i], &sv->sv_opt->listen[i]);
	}
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
file_conn(struct sv *sv)
{
	struct shmpipe_conn *cn = conn(sv, 0);
	uint64_t in = offset_of(sv->sv_in_fd);

	atomic_store(&cn->in_total, in);
	atomic_store(&cn->in_pos, SHMPIPE_IN_POS((uint32_t)in, 0, 0));
	atomic_store(&cn->out_total, offset_of(sv->sv_out_fd));
	atomic_store(&cn->state, SHMPIPE_CONN_ID(1, SHMPIPE_CONN_OPEN |
	    SHMPIPE_CONN_FILE));
}

/*
 * Leave the files' offsets past what was read and written, as a program
 * that used read(2) and write(2) would: the stages used positioned I/O.
 */
static void
file_offsets(struct sv *sv)
{
	struct shmpipe_conn *cn = conn(sv, 0);

	lseek(sv->sv_in_fd, (off_t)atomic_load(&cn->in_total), SEEK_SET);
	lseek(sv->sv_out_fd, (off_t)atomic_load(&cn->out_total), SEEK_SET);
}

static void
make_control(struct sv *sv)
{
	const struct options *o = sv->sv_opt;
	struct ctl_params p = { .nprocs = sv->sv_nrows,
	    .max_conns = o->max_conns, .max_line = o->max_line,
	    .window = o->window, .conn_window = o->conn_window,
	    .max_deliveries = o->max_deliveries,
	    .request_timeout_ms = o->request_timeout_ms,
	    .flags = o->input != NULL ? SHMPIPE_CONN_FILE : 0 };
	int r;

	if ((r = ctl_create(&sv->sv_ctl, o->name, &p)) != 0)
		errc(EX_OSERR, -r, "cannot create the control segment");
	if (o->input != NULL)
		file_conn(sv);
}

static void
rows_init(struct sv *sv)
{
	const struct options *o = sv->sv_opt;

	sv->sv_nrows = SV_ROW_PROC0 + 2 * o->processors;
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

static void
setup(struct sv *sv)
{
	const struct options *o = sv->sv_opt;
	uint32_t reply_max = ctl_reply_max(o->max_line);
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = EP_SIGNAL };
	char path[PATH_MAX];
	pid_t other;

	pidfile_path(o, path, sizeof(path));
	if ((sv->sv_pfh = pidfile_open(path, 0600, &other)) == NULL) {
		if (errno == EEXIST)
			errx(1, "pipeline %s is already running (pid %d, "
			    "pidfile %s)", o->name, (int)other, path);
		err(EX_OSERR, "cannot create pidfile %s", path);
	}
	clear_stale(sv);
	if (o->input != NULL)
		open_files(sv);
	else
		open_listeners(sv);
	rows_init(sv);
	sv->sv_req = make_queue(o, "req", sizeof(struct msg_hdr) +
	    o->max_line + 1, sv->sv_nrows + 8, 16);
	sv->sv_rep = make_queue(o, "rep", sizeof(struct msg_hdr) + reply_max,
	    sv->sv_nrows + 8, 64);
	make_control(sv);
	sv->sv_keep = malloc(o->max_conns * sizeof(*sv->sv_keep));
	sv->sv_keep_gen = calloc(o->max_conns, sizeof(*sv->sv_keep_gen));
	if (sv->sv_keep == NULL || sv->sv_keep_gen == NULL)
		err(EX_OSERR, "malloc");
	for (uint32_t i = 0; i < o->max_conns; i++)
		sv->sv_keep[i] = -1;
	sv->sv_sigfd = signals_open();
	sv->sv_ep = epoll_create1(EPOLL_CLOEXEC);
	if (sv->sv_sigfd < 0 || sv->sv_ep < 0 ||
	    epoll_ctl(sv->sv_ep, EPOLL_CTL_ADD, sv->sv_sigfd, &ev) != 0)
		err(EX_OSERR, "signalfd/epoll");
	pidfile_write(sv->sv_pfh);
}

static void
teardown(struct sv *sv)
{
	const struct options *o = sv->sv_opt;

	if (o->input != NULL)
		file_offsets(sv);

	for (uint32_t i = 0; sv->sv_keep != NULL && i < o->max_conns; i++)
		if (sv->sv_keep[i] >= 0)
			close(sv->sv_keep[i]);
	for (int i = 0; o->input == NULL && i < o->nlisten; i++) {
		close(sv->sv_listen[i]);
		listen_cleanup(&o->listen[i]);
	}
	shmq_close(sv->sv_req);
	shmq_close(sv->sv_rep);
	ctl_close(&sv->sv_ctl);
	unlink_segments(o->name);
	pidfile_remove(sv->sv_pfh);
	free(sv->sv_child);
	free(sv->sv_keep);
	free(sv->sv_keep_gen);
}

static void
log_start(const struct sv *sv)
{
	const struct options *o = sv->sv_opt;
	char where[600] = "", one[300];

	for (int i = 0; i < o->nlisten && o->input == NULL; i++) {
		options_listen_str(&o->listen[i], one, sizeof(one));
		strlcat(where, i ? ", " : "", sizeof(where));
		strlcat(where, one, sizeof(where));
	}
	log_event("started %u processor%s%s%s%s (%s)", o->processors,
	    o->processors == 1 ? "" : "s", o->input ? ", file mode: " :
	    ", listening on ", o->input ? o->input : where,
	    o->handler ? ", handler loaded per processor" : "", SHMQ_VERSION);
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
	conns_gc(sv, stage_coarse_ns());
	if (n % SLAB_GC_TICKS == 0)
		slab_gc(sv);
	sv_reload_step(sv);
	if (sv->sv_opt->input != NULL &&
	    atomic_load(&sv->sv_ctl.c_hdr->req_closed))
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
				read_chan(sv, ev[i].data.u32);
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
	struct sv sv = { .sv_opt = opt, .sv_in_fd = -1, .sv_out_fd = -1,
	    .sv_reload_idx = -1, .sv_reload_new = -1 };

	log_init(opt->name, "supervisor");
	log_quiet(opt->quiet);
	setup(&sv);
	setproctitle("supervisor [%s]", opt->name);
	log_start(&sv);
	for (uint32_t i = 0; i < SV_ROW_PROC0 + opt->processors; i++)
		sv_spawn(&sv, i);
	loop(&sv);
	if (sv.sv_giving_up)
		kill_and_reap(&sv);
	log_event("stopped: %llu requests answered, %llu restarts",
	    (unsigned long long)atomic_load(&sv.sv_ctl.c_hdr->answered),
	    (unsigned long long)atomic_load(&sv.sv_ctl.c_hdr->restarts));
	teardown(&sv);
	return sv.sv_exit;
}
