/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * children.c - the supervisor's side of its stage processes: fork them,
 * notice their deaths, recover what they held on the queues, decide what
 * the request a processor died on deserves, restart with backoff, give up
 * on a crash loop, and replace processors one by one on SIGHUP.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"
#include "log.h"
#include "stage.h"
#include "supervisor.h"

#define BACKOFF_BASE_MS	10
#define BACKOFF_MAX_MS	2000
#define HEALTHY_NS	10000000000ull	/* alive this long: backoff reset */

static struct stage *child_stage;	/* for the child's signal handler */

const char *
sv_role_name(uint32_t role)
{
	return role == SHMPIPE_ROLE_REQUEST ? "request" :
	    role == SHMPIPE_ROLE_REPLY ? "reply" : "processor";
}

static void
child_name(const struct child *ch, char *buf, size_t len)
{
	if (ch->ch_role == SHMPIPE_ROLE_PROCESSOR)
		snprintf(buf, len, "processor %u", ch->ch_index);
	else
		snprintf(buf, len, "%s", sv_role_name(ch->ch_role));
}

/* ---- in the child ----------------------------------------------------- */

/*
 * Only the supervisor tells a stage to stop.  A SIGTERM from anyone else -
 * systemd stopping the whole control group, kill -TERM -PGID, an operator
 * - only makes the stage look at the pipeline's state again: the
 * supervisor, which got one too, runs the drain, and a reply process that
 * stopped on its own would lose every reply still to write.
 */
static void
on_child_signal(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (child_stage != NULL)
		stage_poke(child_stage, sig == SIGTERM &&
		    si->si_pid == getppid());
}

static void
child_signals(void)
{
	struct sigaction sa = { .sa_sigaction = on_child_signal };
	sigset_t all;

	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART | SA_SIGINFO;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGINT, SIG_IGN);	/* the terminal's ^C is for the parent */
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	sigfillset(&all);
	sigprocmask(SIG_UNBLOCK, &all, NULL);
}

/* Close what only the supervisor (or another stage) should hold. */
static void
child_close_fds(struct sv *sv, const struct child *me, int keep_chan)
{
	for (uint32_t i = 0; i < sv->sv_nrows; i++)
		if (sv->sv_child[i].ch_sock >= 0 && sv->sv_child[i].ch_sock !=
		    keep_chan)
			close(sv->sv_child[i].ch_sock);
	for (uint32_t i = 0; i < sv->sv_pl.pl_ctl.c_g.max_conns; i++)
		if (sv->sv_pl.pl_keep[i] >= 0)
			close(sv->sv_pl.pl_keep[i]);
	if (me->ch_role != SHMPIPE_ROLE_REQUEST)
		for (int i = 0; i < sv->sv_opt->nlisten; i++)
			close(sv->sv_pl.pl_listen[i]);
	close(sv->sv_ep);
	close(sv->sv_sigfd);
	if (sv->sv_pfh != NULL)
		pidfile_close(sv->sv_pfh);
	/* sv_lock is kept: the name stays taken until the last stage of
	 * this pipeline is gone, listeners and all. */
	shmq_close(sv->sv_pl.pl_req);		/* forked: only unmaps */
	shmq_close(sv->sv_pl.pl_rep);
}

static struct shmq *
child_queue(const struct sv *sv, const char *suffix)
{
	char name[64];
	struct shmq *q;

	ctl_seg_name(name, sizeof(name), sv->sv_opt->name, suffix);
	if ((q = shmq_open(name)) == NULL) {
		log_event("cannot open queue %s: %s", name, strerror(errno));
		_exit(STAGE_EX_SOFTWARE);
	}
	return q;
}

static void __attribute__((noreturn))
child_main(struct sv *sv, uint32_t row, int chan, pid_t parent)
{
	struct child *ch = &sv->sv_child[row];
	struct stage st = { 0 };
	char who[32];
	int r;

	prctl(PR_SET_PDEATHSIG, SIGKILL);	/* never outlive the parent */
	if (getppid() != parent)
		_exit(STAGE_EX_SOFTWARE);
	child_close_fds(sv, ch, chan);
	child_name(ch, who, sizeof(who));
	setproctitle("%s [%s]", who, sv->sv_opt->name);
	log_init(sv->sv_opt->name, who);
	st.st_opt = sv->sv_opt;
	st.st_ctl = &sv->sv_pl.pl_ctl;
	st.st_chan = chan;
	st.st_slot = row;
	st.st_listen = sv->sv_pl.pl_listen;
	st.st_listen_unix = sv->sv_pl.pl_listen_unix;
	st.st_nlisten = sv->sv_opt->nlisten;
	st.st_in_fd = sv->sv_pl.pl_in_fd;
	st.st_out_fd = sv->sv_pl.pl_out_fd;
	st.st_req = child_queue(sv, "req");
	st.st_rep = child_queue(sv, "rep");
	stage_policy(&st);
	child_stage = &st;
	child_signals();
	r = ch->ch_role == SHMPIPE_ROLE_REQUEST ? stage_request(&st) :
	    ch->ch_role == SHMPIPE_ROLE_REPLY ? stage_reply(&st) :
	    stage_processor(&st);
	child_stage = NULL;
	shmq_close(st.st_req);
	shmq_close(st.st_rep);
	_exit(r);
}

/* ---- forking ---------------------------------------------------------- */


/*
 * Set row's slot up for the process about to be forked: STARTING, its pid
 * to follow.  Before the fork, so that it never overwrites the READY the
 * child may store first.
 */
static void
row_reset(struct sv *sv, uint32_t row)
{
	struct child *ch = &sv->sv_child[row];
	struct shmpipe_proc *p = ctl_proc(&sv->sv_pl.pl_ctl, row);

	p->role = ch->ch_role;
	p->index = ch->ch_index;
	/* Relaxed: tools read these as a snapshot; state is last. */
	atomic_store_explicit(&p->busy_since_ns, 0, memory_order_relaxed);
	atomic_store_explicit(&p->served, 0, memory_order_relaxed);
	atomic_store_explicit(&p->started_ns, stage_clock_ns(CLOCK_REALTIME),
	    memory_order_relaxed);
	atomic_fetch_add_explicit(&p->generation, 1, memory_order_relaxed);
	atomic_store_explicit(&p->pid, 0, memory_order_relaxed);
	atomic_store_explicit(&p->state, SHMPIPE_PROC_STARTING,
	    memory_order_release);
}

void
sv_spawn(struct sv *sv, uint32_t row)
{
	struct child *ch = &sv->sv_child[row];
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = row };
	int pair[2] = { -1, -1 };
	pid_t parent = getpid(), pid;
	char who[32];

	if (ch->ch_role != SHMPIPE_ROLE_PROCESSOR && chan_pair(pair) != 0) {
		log_event("cannot make a channel: %s", strerror(errno));
		ch->ch_restart_ns = stage_now_ns() + 1000000000ull;
		return;
	}
	ch->ch_timed_out = false;
	ch->ch_start_kill = CH_KILL_NONE;
	ch->ch_restart_ns = 0;
	ch->ch_ready_ns = 0;
	ch->ch_started_ns = stage_now_ns();
	row_reset(sv, row);
	if ((pid = fork()) == 0) {
		if (pair[0] >= 0)
			close(pair[0]);
		child_main(sv, row, pair[1], parent);
	}
	if (pair[1] >= 0)
		close(pair[1]);
	child_name(ch, who, sizeof(who));
	if (pid < 0) {
		log_event("cannot fork %s: %s", who, strerror(errno));
		if (pair[0] >= 0)
			close(pair[0]);
		ch->ch_restart_ns = stage_now_ns() + 1000000000ull;
		atomic_store(&ctl_proc(&sv->sv_pl.pl_ctl, row)->state,
		    SHMPIPE_PROC_DOWN);
		return;
	}
	ch->ch_pid = pid;
	ch->ch_sock = pair[0];
	/* Relaxed: tools read it as a snapshot. */
	atomic_store_explicit(&ctl_proc(&sv->sv_pl.pl_ctl, row)->pid, (uint32_t)pid,
	    memory_order_relaxed);
	if (ch->ch_sock >= 0) {
		epoll_ctl(sv->sv_ep, EPOLL_CTL_ADD, ch->ch_sock, &ev);
		(void)pipeline_send_conns(&sv->sv_pl, ch->ch_role ==
		    SHMPIPE_ROLE_REQUEST ? PL_TO_REQUEST : PL_TO_REPLY,
		    ch->ch_sock);	/* the rest on the tick */
	}
	log_info("started %s (pid %d)", who, (int)pid);
}

/* ---- deaths ----------------------------------------------------------- */

static void
describe(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (SIG%s)",
		    WTERMSIG(status), sigabbrev_np(WTERMSIG(status)) ?
		    sigabbrev_np(WTERMSIG(status)) : "?");
	else
		snprintf(buf, len, "stopped (status %#x)", status);
}

/*
 * Record in the verdict table that a processor died holding (conn, seq),
 * or was killed for spending too long on it.  The next processor to get it
 * answers ERR instead of running it once it has killed max_deliveries.
 */
static uint32_t
verdict_note(struct sv *sv, uint64_t conn, uint32_t seq, bool timeout)
{
	struct shmpipe_verdict *v = NULL, *oldest = NULL;
	uint32_t crashes;

	for (uint32_t i = 0; i < sv->sv_pl.pl_ctl.c_g.nverdicts; i++) {
		struct shmpipe_verdict *x = ctl_verdict(&sv->sv_pl.pl_ctl, i);
		if (atomic_load(&x->conn) == conn && atomic_load(&x->seq) == seq)
			v = x;
		if (oldest == NULL || atomic_load(&x->when_ns) <
		    atomic_load(&oldest->when_ns))
			oldest = x;
	}
	if (v == NULL) {
		v = oldest;
		/* Release pair (V1): invalidate, fill, then publish conn. */
		atomic_store_explicit(&v->conn, 0, memory_order_release);
		atomic_store_explicit(&v->seq, seq, memory_order_relaxed);
		atomic_store_explicit(&v->crashes, 0, memory_order_relaxed);
		atomic_store_explicit(&v->flags, 0, memory_order_relaxed);
	}
	crashes = atomic_load(&v->crashes) + !timeout;
	atomic_store_explicit(&v->crashes, crashes, memory_order_relaxed);
	if (timeout)
		atomic_fetch_or_explicit(&v->flags, SHMPIPE_VERDICT_TIMEOUT,
		    memory_order_relaxed);
	atomic_store_explicit(&v->when_ns, stage_now_ns(),
	    memory_order_relaxed);
	/* V1: pairs with the processors' acquire of conn. */
	atomic_store_explicit(&v->conn, conn, memory_order_release);
	return crashes;
}

/* Whatever the dead process held on the queues comes back. */
static void
recover(struct sv *sv, pid_t pid, const char *who)
{
	int a = shmq_recover(sv->sv_pl.pl_req, pid);
	int b = shmq_recover(sv->sv_pl.pl_rep, pid);
	int n = (a > 0 ? a : 0) + (b > 0 ? b : 0);

	if (a < 0 || b < 0)
		log_event("cannot recover %s (pid %d): %s", who, (int)pid,
		    strerror(a < 0 ? -a : -b));
	if (n > 0) {
		atomic_fetch_add_explicit(&sv->sv_pl.pl_ctl.c_hdr->redelivered,
		    (uint64_t)n, memory_order_relaxed);
		log_event("redelivered %d message%s that %s (pid %d) held", n,
		    n == 1 ? "" : "s", who, (int)pid);
	}
}

/*
 * The request a dead processor was on, and what it deserves now: any death
 * in the middle of a request counts against it, an exit(0) from a handler
 * as much as a SIGSEGV.  True if it was on one.
 */
static bool
held_request(struct sv *sv, uint32_t row, char *buf, size_t len)
{
	struct shmpipe_proc *p = ctl_proc(&sv->sv_pl.pl_ctl, row);
	struct child *ch = &sv->sv_child[row];
	uint64_t conn;
	uint32_t seq, crashes;

	buf[0] = '\0';
	/* Acquire: pairs with the processor's release of busy_since. */
	if (ch->ch_role != SHMPIPE_ROLE_PROCESSOR ||
	    atomic_load_explicit(&p->busy_since_ns, memory_order_acquire) == 0)
		return false;
	conn = atomic_load(&p->cur_conn);
	seq = (uint32_t)atomic_load(&p->cur_seq);
	snprintf(buf, len, " holding request %u of connection %u", seq,
	    SHMPIPE_CONN_SLOT(conn));
	if (ch->ch_timed_out)
		return true;		/* a timeout, not a crash */
	crashes = verdict_note(sv, conn, seq, false);
	if (crashes >= sv->sv_pl.pl_ctl.c_hdr->max_deliveries)
		snprintf(buf + strlen(buf), len - strlen(buf), "; it has now "
		    "crashed %u processors and will be answered ERR", crashes);
	return true;
}

/* Startup failures in a row are a crash loop: stop instead of spinning. */
static bool
crash_loop(struct sv *sv, uint64_t now)
{
	memmove(sv->sv_fail_ns + 1, sv->sv_fail_ns, sizeof(sv->sv_fail_ns) -
	    sizeof(sv->sv_fail_ns[0]));
	sv->sv_fail_ns[0] = now;
	if (sv->sv_nfail < SV_LOOP_N)
		sv->sv_nfail++;
	return sv->sv_nfail == SV_LOOP_N &&
	    now - sv->sv_fail_ns[SV_LOOP_N - 1] <= SV_LOOP_NS;
}

/* Jitter: 75% to 125% of ms, so that children do not restart in step. */
static uint64_t
jitter_ns(uint64_t ms)
{
	return (ms * (75 + arc4random_uniform(51)) / 100) * 1000000u;
}

static uint64_t
backoff_ns(struct child *ch, uint64_t now)
{
	uint64_t ms;

	if (now - ch->ch_started_ns >= HEALTHY_NS)
		ch->ch_backoff = 0;
	ms = (uint64_t)BACKOFF_BASE_MS << (ch->ch_backoff < 8 ?
	    ch->ch_backoff : 8);
	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	ch->ch_backoff++;
	return jitter_ns(ms);
}

/*
 * A stage that was up and died by SIGKILL did not fail by itself: an
 * operator, the OOM killer or our request timeout killed it.  The backoff
 * is for stages that keep failing on their own; this one comes back after
 * the shortest delay, without growing it, so that deaths from outside do
 * not keep the pipeline down for seconds each.
 */
static bool
killed_from_outside(int status, uint32_t was)
{
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL &&
	    was != SHMPIPE_PROC_STARTING;
}

/* Did it fail to start: died starting, not by a SIGKILL from outside? */
static bool
start_failed(const struct child *ch, bool clean, int status, uint32_t was)
{
	if (was != SHMPIPE_PROC_STARTING || clean)
		return false;
	if (ch->ch_start_kill != CH_KILL_NONE)
		return ch->ch_start_kill == CH_KILL_SLOW;
	return !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/*
 * Is a child that exited 0 done for good?  In a drain, a processor exits 0
 * once the request stage has closed the queue and it is empty, but also
 * when --max-requests recycles it: then requests may be left, and the
 * request stage may be waiting for room in the window to put the last it
 * read.  Retired, it would leave them to nobody and the drain would never
 * end; it is replaced, as out of a drain.
 */
static bool
finished(const struct sv *sv, const struct child *ch)
{
	if (ch->ch_role == SHMPIPE_ROLE_REQUEST &&
	    atomic_load(&sv->sv_pl.pl_ctl.c_hdr->req_closed))
		return true;
	if (!sv->sv_draining)
		return false;
	return ch->ch_role != SHMPIPE_ROLE_PROCESSOR ||
	    (atomic_load(&sv->sv_pl.pl_ctl.c_hdr->req_closed) &&
	    stage_queue_drained(sv->sv_pl.pl_req));
}

/* Decide whether and when a dead child comes back. */
static void
schedule(struct sv *sv, uint32_t row, bool clean, int status, uint32_t was,
    uint64_t now)
{
	struct child *ch = &sv->sv_child[row];
	char who[32], why[64];
	uint64_t delay;

	child_name(ch, who, sizeof(who));
	if (ch->ch_retire || ch->ch_start_kill == CH_KILL_IDLE ||
	    (clean && finished(sv, ch))) {
		atomic_store(&ctl_proc(&sv->sv_pl.pl_ctl, row)->state,
		    SHMPIPE_PROC_RETIRED);
		return;
	}
	if (ch->ch_role == SHMPIPE_ROLE_REPLY && WIFEXITED(status) &&
	    WEXITSTATUS(status) == STAGE_EX_IOERR) {
		log_event("the output cannot be written; giving up");
		sv->sv_giving_up = true;
		sv->sv_exit = STAGE_EX_IOERR;
		return;
	}
	/* A SIGKILL is never the stage's own doing (an operator, the OOM
	 * killer) unless it is ours for a slow start: backed off, but no
	 * sign that stages cannot start. */
	if (start_failed(ch, clean, status, was) && crash_loop(sv, now)) {
		describe(status, why, sizeof(why));
		log_event("crash loop: stages failed to start %d times in "
		    "%llu s (last: %s %s); giving up", SV_LOOP_N,
		    SV_LOOP_NS / 1000000000ull, who, why);
		sv->sv_giving_up = true;
		sv->sv_exit = 70;
		return;
	}
	delay = clean ? 0 : killed_from_outside(status, was) &&
	    ch->ch_start_kill == CH_KILL_NONE ?
	    jitter_ns(BACKOFF_BASE_MS) : backoff_ns(ch, now);
	ch->ch_restart_ns = now + delay + 1;
	if (delay > 0)
		log_info("restarting %s in %llu ms", who,
		    (unsigned long long)(delay / 1000000u));
}

static void
on_death(struct sv *sv, uint32_t row, int status)
{
	struct child *ch = &sv->sv_child[row];
	struct shmpipe_proc *p = ctl_proc(&sv->sv_pl.pl_ctl, row);
	uint32_t was = atomic_load(&p->state);
	char who[32], why[64], held[160];
	pid_t pid = ch->ch_pid;
	bool busy, clean;

	child_name(ch, who, sizeof(who));
	describe(status, why, sizeof(why));
	busy = held_request(sv, row, held, sizeof(held));
	clean = WIFEXITED(status) && WEXITSTATUS(status) == 0 && !busy;
	atomic_store(&p->last_status, status);
	strlcpy(p->last_exit, why, sizeof(p->last_exit));
	if (!clean)
		log_event("%s (pid %d) %s%s", who, (int)pid, why, held);
	else
		log_info("%s (pid %d) %s", who, (int)pid, why);
	recover(sv, pid, who);
	if (ch->ch_role == SHMPIPE_ROLE_REQUEST) {
		/*
		 * Connections it sent that we have not read are still in the
		 * channel: keep them (its requests may be on the queue), then
		 * give up those whose descriptor it took with it.
		 */
		sv_read_chan(sv, row);
		pipeline_request_died(&sv->sv_pl);
	}
	if (ch->ch_sock >= 0) {
		epoll_ctl(sv->sv_ep, EPOLL_CTL_DEL, ch->ch_sock, NULL);
		close(ch->ch_sock);
		ch->ch_sock = -1;
	}
	ch->ch_pid = 0;
	atomic_store(&p->pid, 0);
	atomic_store(&p->state, SHMPIPE_PROC_DOWN);
	if (!clean)
		atomic_fetch_add(&p->restarts, 1);
	/* Before schedule(): a reload that fails keeps the old processors,
	 * so this is neither restarted nor a step towards a crash loop. */
	if ((int)row == sv->sv_reload_new && was == SHMPIPE_PROC_STARTING) {
		log_event("reload stopped: the new processor did not start; "
		    "keeping the others");
		ch->ch_retire = true;
		ch->ch_restart_ns = 0;
		sv->sv_reload_idx = sv->sv_reload_new = -1;
	}
	schedule(sv, row, clean, status, was, stage_now_ns());
}

void
sv_reap(struct sv *sv)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		for (uint32_t i = 0; i < sv->sv_nrows; i++)
			if (sv->sv_child[i].ch_pid == pid) {
				on_death(sv, i, status);
				break;
			}
}

void
sv_restarts(struct sv *sv, uint64_t now)
{
	for (uint32_t i = 0; i < sv->sv_nrows; i++) {
		struct child *ch = &sv->sv_child[i];

		if (ch->ch_pid == 0 && ch->ch_restart_ns != 0 &&
		    ch->ch_restart_ns <= now && !sv->sv_giving_up) {
			atomic_fetch_add(&sv->sv_pl.pl_ctl.c_hdr->restarts, 1);
			sv_spawn(sv, i);
		}
		if (ch->ch_pid != 0 && ch->ch_ready_ns == 0 &&
		    atomic_load(&ctl_proc(&sv->sv_pl.pl_ctl, i)->state) >=
		    SHMPIPE_PROC_READY)
			ch->ch_ready_ns = now;
	}
}

/*
 * Kill processors still starting past --start-timeout (their handler's
 * init() does not return: a failed start, towards a crash loop), and in a
 * drain with nothing left to answer, those still starting at all (they
 * hold nothing, and would keep the drain waiting on init()).
 */
static void
slow_starts(struct sv *sv, uint64_t now)
{
	uint64_t limit = (uint64_t)sv->sv_opt->start_timeout_ms * 1000000u;
	const struct shmpipe_ctl *c = sv->sv_pl.pl_ctl.c_hdr;

	for (uint32_t i = SV_ROW_PROC0; i < sv->sv_nrows; i++) {
		struct child *ch = &sv->sv_child[i];

		if (ch->ch_pid == 0 || ch->ch_start_kill != CH_KILL_NONE ||
		    atomic_load(&ctl_proc(&sv->sv_pl.pl_ctl, i)->state) !=
		    SHMPIPE_PROC_STARTING)
			continue;
		/* Signed: one forked after our clock read started later. */
		if (limit > 0 && (int64_t)(now - ch->ch_started_ns) >=
		    (int64_t)limit) {
			log_event("processor %u (pid %d) did not start within "
			    "%u ms (its handler's init() has not returned); "
			    "killing it", ch->ch_index, (int)ch->ch_pid,
			    sv->sv_opt->start_timeout_ms);
			ch->ch_start_kill = CH_KILL_SLOW;
		} else if (sv->sv_draining && atomic_load(&c->req_closed) &&
		    stage_queue_drained(sv->sv_pl.pl_req)) {
			log_info("processor %u (pid %d) is still starting and "
			    "nothing is left to answer; stopping it",
			    ch->ch_index, (int)ch->ch_pid);
			ch->ch_start_kill = CH_KILL_IDLE;
		} else {
			continue;
		}
		kill(ch->ch_pid, SIGKILL);
	}
}

/* Kill processors that have spent too long on one request. */
void
sv_timeouts(struct sv *sv, uint64_t now)
{
	uint64_t limit = (uint64_t)sv->sv_opt->request_timeout_ms * 1000000u;
	uint64_t coarse = stage_coarse_ns();

	for (uint32_t i = SV_ROW_PROC0; limit > 0 && i < sv->sv_nrows; i++) {
		struct child *ch = &sv->sv_child[i];
		struct shmpipe_proc *p = ctl_proc(&sv->sv_pl.pl_ctl, i);
		uint64_t since = atomic_load_explicit(&p->busy_since_ns,
		    memory_order_acquire);
		uint64_t conn;
		uint32_t seq;

		/* Signed: a request begun after our clock read has a later
		 * stamp than coarse, and has not run long. */
		if (ch->ch_pid == 0 || ch->ch_timed_out || since == 0 ||
		    (int64_t)(coarse - since) < (int64_t)limit)
			continue;
		conn = atomic_load_explicit(&p->cur_conn, memory_order_relaxed);
		seq = (uint32_t)atomic_load_explicit(&p->cur_seq,
		    memory_order_relaxed);
		/* The same stamp after reading them: they are the request
		 * that began then (or one begun in the same tick, which has
		 * run as long), not one the processor went on to.  A
		 * seqlock read: the acquire fence pairs with the release
		 * fence in the processor's busy(). */
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&p->busy_since_ns,
		    memory_order_relaxed) != since)
			continue;
		verdict_note(sv, conn, seq, true);
		atomic_fetch_add(&sv->sv_pl.pl_ctl.c_hdr->timeouts, 1);
		log_event("processor %u (pid %d) spent over %u ms on request "
		    "%u of connection %u; killing it", ch->ch_index,
		    (int)ch->ch_pid, sv->sv_opt->request_timeout_ms, seq,
		    SHMPIPE_CONN_SLOT(conn));
		ch->ch_timed_out = true;
		kill(ch->ch_pid, SIGKILL);
	}
	slow_starts(sv, now);
}

/* ---- SIGHUP: replace the processors one at a time --------------------- */

static int
free_row(const struct sv *sv)
{
	for (uint32_t i = SV_ROW_PROC0; i < sv->sv_nrows; i++)
		if (sv->sv_child[i].ch_pid == 0 &&
		    sv->sv_child[i].ch_restart_ns == 0 &&
		    (sv->sv_child[i].ch_role == 0 || sv->sv_child[i].ch_retire))
			return (int)i;
	return -1;
}

/* The row currently serving as processor idx (not being retired). */
static int
row_of(const struct sv *sv, uint32_t idx, int except)
{
	for (uint32_t i = SV_ROW_PROC0; i < sv->sv_nrows; i++)
		if ((int)i != except && sv->sv_child[i].ch_role ==
		    SHMPIPE_ROLE_PROCESSOR && sv->sv_child[i].ch_index == idx &&
		    !sv->sv_child[i].ch_retire)
			return (int)i;
	return -1;
}

void
sv_reload_start(struct sv *sv)
{
	if (sv->sv_draining)
		return;
	if (sv->sv_reload_idx >= 0) {
		log_event("reload already in progress");
		return;
	}
	log_event("reload: replacing %u processors one at a time",
	    sv->sv_opt->processors);
	sv->sv_reload_idx = 0;
	sv->sv_reload_new = -1;
	sv_reload_step(sv);
}

/* Start the next replacement, or retire the old one once it is ready. */
void
sv_reload_step(struct sv *sv)
{
	struct child *nw;
	int old, row;

	if (sv->sv_reload_idx < 0)
		return;
	if (sv->sv_reload_new < 0) {
		if ((uint32_t)sv->sv_reload_idx >= sv->sv_opt->processors) {
			log_event("reload done");
			sv->sv_reload_idx = -1;
			return;
		}
		if ((row = free_row(sv)) < 0)
			return;
		nw = &sv->sv_child[row];
		memset(nw, 0, sizeof(*nw));
		nw->ch_sock = -1;
		nw->ch_role = SHMPIPE_ROLE_PROCESSOR;
		nw->ch_index = (uint32_t)sv->sv_reload_idx;
		sv->sv_reload_new = row;
		sv_spawn(sv, (uint32_t)row);
		return;
	}
	nw = &sv->sv_child[sv->sv_reload_new];
	if (nw->ch_ready_ns == 0)
		return;				/* not ready yet */
	old = row_of(sv, (uint32_t)sv->sv_reload_idx, sv->sv_reload_new);
	if (old >= 0) {
		sv->sv_child[old].ch_retire = true;
		sv->sv_child[old].ch_restart_ns = 0;
		if (sv->sv_child[old].ch_pid != 0)
			kill(sv->sv_child[old].ch_pid, SIGTERM);
		else
			atomic_store(&ctl_proc(&sv->sv_pl.pl_ctl, (uint32_t)old)->state,
			    SHMPIPE_PROC_RETIRED);
	}
	sv->sv_reload_idx++;
	sv->sv_reload_new = -1;
	sv_reload_step(sv);
}

void
sv_kill_all(struct sv *sv, int sig)
{
	for (uint32_t i = 0; i < sv->sv_nrows; i++)
		if (sv->sv_child[i].ch_pid != 0)
			kill(sv->sv_child[i].ch_pid, sig);
}

bool
sv_alive(const struct sv *sv, uint32_t role)
{
	for (uint32_t i = 0; i < sv->sv_nrows; i++)
		if (sv->sv_child[i].ch_role == role &&
		    (sv->sv_child[i].ch_pid != 0 ||
		    sv->sv_child[i].ch_restart_ns != 0))
			return true;
	return false;
}
