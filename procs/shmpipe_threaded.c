/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shmpipe_threaded.c - main of shmpipe-threaded: the same pipeline, the same
 * stage code, flags, protocol and handlers, with the request, processor and
 * reply stages as threads of one process and the queues in its own memory
 * (anonymous libshmq queues: the same queue, so that comparing the two
 * builds compares processes with threads and nothing else).
 *
 * The main thread does the supervisor's other jobs: it relays connections
 * from the request thread to the reply thread, keeps the housekeeping, and
 * turns signals into a drain.  What threads cannot do is refused, not
 * faked: a crashing handler takes the whole process down; a processor is
 * not replaced (SIGHUP), recycled (--max-requests) or killed for taking too
 * long (--request-timeout).
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "chan.h"
#include "log.h"
#include "options.h"
#include "pipeline.h"
#include "proto.h"
#include "stage.h"

#define EX_OSERR	71
#define TICK_MS		20
#define SLAB_GC_TICKS	50
#define EP_SIGNAL	1u
#define EP_CHAN		2u

extern char **environ;

/* One stage thread. */
struct thr {
	struct stage	 th_st;
	pthread_t	 th_id;
	int		(*th_run)(struct stage *);
	char		 th_name[32];
	char		 th_comm[24];	/* for ps -L and top -H: 15 bytes
					 * used, the kernel's limit */
	_Atomic int	 th_done;	/* its stage returned */
	int		 th_status;
};

struct tp {
	struct options	*tp_opt;
	struct pipeline	 tp_pl;
	struct thr	*tp_thr;	/* request, reply, then processors */
	struct proto_handlers *tp_handlers; /* the processors share it */
	uint32_t	 tp_nthr;
	int		 tp_chan_req[2]; /* [0] ours, [1] the request thread's */
	int		 tp_chan_rep[2];
	int		 tp_sigfd;
	int		 tp_ep;
	int		 tp_signals;
	bool		 tp_draining;
	struct pidfh	*tp_pfh;
};

static void *
thr_main(void *arg)
{
	struct thr *t = arg;

	/* Our role only: the pipeline's name is the main thread's, set
	 * before it started us, and other stages log meanwhile. */
	log_set_role(t->th_name);
	(void)pthread_setname_np(pthread_self(), t->th_comm);
	stage_policy(&t->th_st);
	t->th_status = t->th_run(&t->th_st);
	/* Release: the main thread that sees it done sees the status. */
	atomic_store_explicit(&t->th_done, 1, memory_order_release);
	return NULL;
}

/* Give thread i its row, its own queue handles and what its stage needs. */
static void
thr_init(struct tp *tp, uint32_t i)
{
	struct thr *t = &tp->tp_thr[i];
	struct stage *st = &t->th_st;
	struct pipeline *pl = &tp->tp_pl;
	struct shmpipe_proc *p = ctl_proc(&pl->pl_ctl, i);

	st->st_opt = tp->tp_opt;
	st->st_ctl = &pl->pl_ctl;
	st->st_slot = i;
	st->st_chan = i == 0 ? tp->tp_chan_req[1] : i == 1 ?
	    tp->tp_chan_rep[1] : -1;
	st->st_listen = pl->pl_listen;
	st->st_listen_unix = pl->pl_listen_unix;
	st->st_nlisten = tp->tp_opt->nlisten;
	st->st_in_fd = pl->pl_in_fd;
	st->st_out_fd = pl->pl_out_fd;
	st->st_handlers = tp->tp_handlers;
	if ((st->st_req = shmq_attach(pl->pl_req)) == NULL ||
	    (st->st_rep = shmq_attach(pl->pl_rep)) == NULL)
		err(EX_OSERR, "cannot attach to the queues");
	p->role = i == 0 ? SHMPIPE_ROLE_REQUEST : i == 1 ?
	    SHMPIPE_ROLE_REPLY : SHMPIPE_ROLE_PROCESSOR;
	p->index = i < 2 ? 0 : i - 2;
	atomic_store(&p->pid, (uint32_t)getpid());
	atomic_store(&p->state, SHMPIPE_PROC_STARTING);
	t->th_run = i == 0 ? stage_request : i == 1 ? stage_reply :
	    stage_processor;
	if (i < 2)
		strlcpy(t->th_comm, i == 0 ? "request" : "reply",
		    sizeof(t->th_comm));
	else
		snprintf(t->th_comm, sizeof(t->th_comm), "processor %u",
		    i - 2);
	snprintf(t->th_name, sizeof(t->th_name), "%s thread", t->th_comm);
}

/* The threads start with every signal blocked: the main thread takes them
 * all through a signalfd (a crash is still the faulting thread's). */
static int
signals_block(void)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void
refuse_process_only(struct options *o)
{
	if (o->max_requests != 0)
		log_event("--max-requests has no effect in the threaded build: "
		    "a thread cannot be recycled");
	if (o->request_timeout_set && o->request_timeout_ms != 0)
		log_event("--request-timeout has no effect in the threaded "
		    "build: a thread cannot be killed");
	if (o->max_deliveries_set)
		log_event("--max-deliveries has no effect in the threaded "
		    "build: a crash stops the process, there is no retry");
	o->max_requests = 0;
	o->request_timeout_ms = 0;
}

static struct pidfh *exit_pfh;		/* for remove_pidfile() */

/* Exiting early (err(3) in setup) takes the pidfile along, as shmpipe. */
static void
remove_pidfile(void)
{
	if (exit_pfh != NULL)
		pidfile_remove(exit_pfh);
	exit_pfh = NULL;
}

static void
setup(struct tp *tp)
{
	struct options *o = tp->tp_opt;
	struct epoll_event ev = { .events = EPOLLIN };
	char path[PATH_MAX];
	pid_t other;

	pipeline_pidfile_path(o, path, sizeof(path));
	pipeline_signals_catch();
	if ((tp->tp_pfh = pidfile_open(path, 0600, &other)) == NULL) {
		if (errno == EEXIST)
			pipeline_pidfile_busy(path, other);
		err(EX_OSERR, "cannot create pidfile %s", path);
	}
	exit_pfh = tp->tp_pfh;
	atexit(remove_pidfile);
	refuse_process_only(o);
	tp->tp_nthr = OPT_STAGE_ROWS + o->processors;
	pipeline_open(&tp->tp_pl, o, tp->tp_nthr, true);
	if ((tp->tp_thr = calloc(tp->tp_nthr, sizeof(*tp->tp_thr))) == NULL ||
	    chan_pair(tp->tp_chan_req) != 0 || chan_pair(tp->tp_chan_rep) != 0)
		err(EX_OSERR, "setup");
	tp->tp_sigfd = signals_block();
	pipeline_signals_handover();
	tp->tp_ep = epoll_create1(EPOLL_CLOEXEC);
	ev.data.u32 = EP_SIGNAL;
	if (tp->tp_sigfd < 0 || tp->tp_ep < 0 ||
	    epoll_ctl(tp->tp_ep, EPOLL_CTL_ADD, tp->tp_sigfd, &ev) != 0)
		err(EX_OSERR, "signalfd/epoll");
	ev.data.u32 = EP_CHAN;
	epoll_ctl(tp->tp_ep, EPOLL_CTL_ADD, tp->tp_chan_req[0], &ev);
	pidfile_write(tp->tp_pfh);
}

/* The watch on init() ends the process: nothing of it runs yet. */
static void __attribute__((noreturn))
watch_exit(struct tp *tp, int code)
{
	pipeline_close(&tp->tp_pl);
	remove_pidfile();
	_exit(code);
}

/*
 * While the handler's init() runs in the main thread, with the stop
 * signals blocked for the signalfd nobody reads yet, this thread answers
 * for the process: SIGTERM or SIGINT ends it (nothing was accepted yet:
 * exit 0, as a drain with nothing in flight), and so does an init() that
 * runs past --start-timeout (exit 70: the processors cannot start).
 * SIGUSR1 from the main thread says init() returned.
 */
static void *
init_watch(void *arg)
{
	struct tp *tp = arg;
	uint32_t ms = tp->tp_opt->start_timeout_ms;
	uint64_t end = ms > 0 ? stage_now_ns() + (uint64_t)ms * 1000000u :
	    UINT64_MAX;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	for (;;) {
		uint64_t now = stage_now_ns(), left;
		struct timespec ts;
		int sig;

		if (now >= end) {
			log_event("the handler's init() did not return within "
			    "%u ms: the processors cannot start; stopping", ms);
			watch_exit(tp, 70);
		}
		left = end - now < 999999999u ? end - now : 999999999u;
		ts = (struct timespec){ 0, (long)left };
		if ((sig = sigtimedwait(&set, NULL, &ts)) == SIGUSR1)
			return NULL;
		if (sig == SIGTERM || sig == SIGINT) {
			log_event("SIG%s while the handler's init() ran: "
			    "stopping, nothing accepted yet", sigabbrev_np(sig));
			watch_exit(tp, 0);
		}
	}
}

/*
 * The processors share one handler set: every thread's dlopen(3) of the
 * object would be the same object, with the same statics, so its init()
 * would run once per thread on them, and its fini() while other threads
 * were still in handle().  It is loaded here, init() once before any
 * processor runs, and unloaded in teardown(), fini() once after every one
 * has stopped (shmpipe_handler.h).  An object that will not load stops
 * the process: no processor could start.
 */
static void
handlers_load(struct tp *tp)
{
	const struct options *o = tp->tp_opt;
	char err[256];
	pthread_t watch;
	bool watching = pthread_create(&watch, NULL, init_watch, tp) == 0;

	tp->tp_handlers = proto_load(o->handler, o->enable_crash, err,
	    sizeof(err));
	if (watching) {
		pthread_kill(watch, SIGUSR1);
		pthread_join(watch, NULL);
	}
	if (tp->tp_handlers != NULL)
		return;
	log_event("%s", err);
	log_event("the processors cannot start without their handler: "
	    "stopping");
	pipeline_close(&tp->tp_pl);
	remove_pidfile();
	exit(STAGE_EX_CONFIG);
}

static void
start_threads(struct tp *tp)
{
	for (uint32_t i = 0; i < tp->tp_nthr; i++)
		thr_init(tp, i);
	/* The reply thread first takes what the main thread has: nothing.
	 * The request thread's drain waits for the same word. */
	chan_send(tp->tp_chan_rep[0], &(struct chan_msg){ CHAN_SYNCED, 0, 0,
	    0 }, -1);
	chan_send(tp->tp_chan_req[0], &(struct chan_msg){ CHAN_SYNCED, 0, 0,
	    0 }, -1);
	for (uint32_t i = 0; i < tp->tp_nthr; i++)
		if (pthread_create(&tp->tp_thr[i].th_id, NULL, thr_main,
		    &tp->tp_thr[i]) != 0)
			err(EX_OSERR, "pthread_create");
}

/* A connection the request thread accepted: keep it, pass it on. */
static void
relay(struct tp *tp)
{
	struct chan_msg m;
	int fd;

	while (chan_recv(tp->tp_chan_req[0], &m, &fd, 0) == 1) {
		if (m.cm_type == CHAN_SLOTS) {
			pipeline_slots_asked(&tp->tp_pl, tp->tp_chan_req[0]);
			continue;
		}
		if (m.cm_type == CHAN_CONN && fd < 0)
			pipeline_lost_conn(&tp->tp_pl, &m);
		if (m.cm_type != CHAN_CONN || fd < 0) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		pipeline_keep(&tp->tp_pl, &m, fd);
		if (pipeline_pass(&tp->tp_pl, tp->tp_chan_rep[0], &m))
			stage_poke(&tp->tp_thr[1].th_st, false);
	}
}

static void
start_drain(struct tp *tp, const char *why)
{
	if (tp->tp_draining)
		return;
	tp->tp_draining = true;
	pipeline_drain(&tp->tp_pl, why);
	stage_poke(&tp->tp_thr[0].th_st, true);
	for (uint32_t i = 1; i < tp->tp_nthr; i++)
		stage_poke(&tp->tp_thr[i].th_st, false);
}

static void
on_signals(struct tp *tp)
{
	struct signalfd_siginfo si;

	while (read(tp->tp_sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			log_event("SIGHUP: the threaded build cannot replace its "
			    "processors; restart it to load a new handler");
		} else if (si.ssi_signo == SIGUSR1) {
			continue;
		} else if (++tp->tp_signals == 1) {
			start_drain(tp, si.ssi_signo == SIGINT ? "interrupted" :
			    "terminating");
		} else {
			log_event("second signal: stopping now");
			pipeline_abandon(&tp->tp_pl);
			remove_pidfile();
			_exit(1);
		}
	}
}

static bool
done(const struct thr *t)
{
	/* Acquire: pairs with the release in thr_main. */
	return atomic_load_explicit(&t->th_done, memory_order_acquire) != 0;
}

/*
 * The request thread stopped cleanly after closing the request queue: it
 * read its input to the end (file mode), the normal end that the drain
 * then follows, as the supervisor retires such a request stage
 * (children.c, schedule()).  It may stop between loop()'s
 * pipeline_input_done() and casualty(): seen here first, it is no
 * casualty, and the next tick starts the drain.
 */
static bool
input_ended(const struct tp *tp, uint32_t i)
{
	const struct shmpipe_ctl *c = tp->tp_pl.pl_ctl.c_hdr;

	/* Relaxed: done() acquired th_done, released after drain() stored
	 * req_closed (stage_request.c), so a request thread seen done has
	 * its req_closed seen too. */
	return i == 0 && tp->tp_thr[0].th_status == 0 &&
	    atomic_load_explicit(&c->req_closed, memory_order_relaxed) != 0;
}

/*
 * A stage that stops on its own outside a drain (a broken queue, memory
 * not to be had) cannot be replaced: stop everything with its code.
 */
static int
casualty(struct tp *tp)
{
	for (uint32_t i = 0; i < tp->tp_nthr; i++) {
		struct thr *t = &tp->tp_thr[i];
		if (done(t) && (!tp->tp_draining || t->th_status != 0) &&
		    !input_ended(tp, i)) {
			log_event("%s stopped (%d); the threaded build cannot "
			    "replace it: stopping", t->th_name, t->th_status);
			return t->th_status != 0 ? t->th_status : 70;
		}
	}
	return 0;
}

/* Draining: processors go when the request thread has, the reply last. */
static bool
drain_step(struct tp *tp)
{
	struct shmpipe_ctl *c = tp->tp_pl.pl_ctl.c_hdr;
	bool procs = false;

	if (!tp->tp_draining || !done(&tp->tp_thr[0]))
		return false;
	for (uint32_t i = 2; i < tp->tp_nthr; i++)
		procs |= !done(&tp->tp_thr[i]);
	if (!procs && !atomic_load(&c->procs_closed)) {
		/* Release: the reply thread that sees it sees every reply. */
		atomic_store_explicit(&c->procs_closed, 1,
		    memory_order_release);
		stage_poke(&tp->tp_thr[1].th_st, false);
	}
	return !procs && done(&tp->tp_thr[1]);
}

static int
loop(struct tp *tp)
{
	struct epoll_event ev[4];
	unsigned ticks = 0;
	int r;

	for (;;) {
		int n = epoll_wait(tp->tp_ep, ev, 4, TICK_MS);

		for (int i = 0; i < n; i++) {
			if (ev[i].data.u32 == EP_SIGNAL)
				on_signals(tp);
			else
				relay(tp);
		}
		if (pipeline_flush(&tp->tp_pl, PL_TO_REPLY,
		    tp->tp_chan_rep[0]))
			stage_poke(&tp->tp_thr[1].th_st, false);
		pipeline_gc(&tp->tp_pl, ++ticks % SLAB_GC_TICKS == 0);
		if (pipeline_input_done(&tp->tp_pl))
			start_drain(tp, "input read to the end");
		if ((r = casualty(tp)) != 0)
			return r;
		if (drain_step(tp))
			return 0;
	}
}

static void
teardown(struct tp *tp)
{
	for (uint32_t i = 0; i < tp->tp_nthr; i++) {
		pthread_join(tp->tp_thr[i].th_id, NULL);
		shmq_close(tp->tp_thr[i].th_st.st_req);
		shmq_close(tp->tp_thr[i].th_st.st_rep);
	}
	proto_unload(tp->tp_handlers);	/* fini(): no processor is left */
	pipeline_close(&tp->tp_pl);
	close(tp->tp_chan_req[0]);
	close(tp->tp_chan_req[1]);
	close(tp->tp_chan_rep[0]);
	close(tp->tp_chan_rep[1]);
	close(tp->tp_ep);
	close(tp->tp_sigfd);
	remove_pidfile();
	free(tp->tp_thr);
}

int
main(int argc, char **argv)
{
	struct options opt;
	struct tp tp = { .tp_opt = &opt };
	int r;

	proto_watch_exit();	/* the first atexit(3): run last */
	options_std_fds();	/* before anything is opened */
	setproctitle_init(argc, argv, environ);
	options_parse(&opt, argc, argv, true);
	log_init(opt.name, "main");
	log_quiet(opt.quiet);
	setup(&tp);
	handlers_load(&tp);
	pipeline_log_start(&tp.tp_pl, "threads");
	start_threads(&tp);
	r = loop(&tp);
	if (r != 0) {
		/* A stage is gone for good: no orderly drain is possible;
		 * the others still run on the memory, so unmap nothing. */
		pipeline_abandon(&tp.tp_pl);
		remove_pidfile();
		_exit(r);
	}
	r = pipeline_file_verdict(&tp.tp_pl);
	log_event("stopped: %llu requests answered, %llu replies dropped with "
	    "their clients", (unsigned long long)atomic_load(
	    &tp.tp_pl.pl_ctl.c_hdr->answered), (unsigned long long)
	    atomic_load(&tp.tp_pl.pl_ctl.c_hdr->dropped));
	teardown(&tp);
	return r;
}
