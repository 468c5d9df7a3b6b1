/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tool_gc.c - shmq gc: remove segments whose owners are all dead, after
 * proving it, and never a live one.  What counts as proof (shmq.1, GC):
 *
 *   a pipeline	its control segment names a supervisor that is dead (pid
 *		and start time) and no process of its table is alive: the
 *		control segment goes, and so do its .req and .rep queues
 *		unless a live process is attached to one of them;
 *   a queue	at least one attachment record, and every one of them
 *		dead (pid gone, or the start time no longer matches);
 *   half made	magic still 0, written by a creator that is dead.
 *
 * Anything that cannot be read (corrupt, another layout version, no
 * permission) proves nothing and stays.  Each proof is made twice, the
 * second time right before the unlink, on the same inode.
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ctl.h"
#include "shmq_layout.h"
#include "tool.h"

struct gc_cand {
	char		 g_name[TOOL_NAME_LEN];
	bool		 g_allow_empty;	/* a dead pipeline's queue */
	dev_t		 g_dev;
	ino_t		 g_ino;
	char		 g_why[128];
};

struct gc {
	struct tool_ent	*g_ents;
	size_t		 g_nents;
	struct gc_cand	*g_cands;
	size_t		 g_ncands;
	bool		 g_dry;
	int		 g_code;
};

/* A guarded look at the records of a queue, or at a control segment. */
struct gc_look {
	const char	*l_name;
	const char	*l_pipe;	/* pipeline of a control segment */
	struct shmq	*l_q;
	struct ctl	*l_ctl;
	unsigned	 l_records, l_alive;
};

static struct shmq_proc_info gc_procs[SHMQ_PROCS_LIMIT];

static int
look_queue(void *arg)
{
	struct gc_look *l = arg;
	int n;

	l->l_q = shmq_open_flags(l->l_name, SHMQ_OPEN_RDONLY |
	    SHMQ_OPEN_ANY_OWNER | SHMQ_OPEN_ANY_MODE);
	if (l->l_q == NULL)
		return -errno;
	if ((n = shmq_procs(l->l_q, gc_procs, SHMQ_PROCS_LIMIT)) < 0)
		return n;
	for (int i = 0; i < n && i < SHMQ_PROCS_LIMIT; i++) {
		/* Recovered records hold messages, not owners (snap_count). */
		if (gc_procs[i].state != SHMQ_PROC_ALIVE)
			continue;
		l->l_records++;
		/* Never the cache: a fresh look at /proc each time. */
		l->l_alive += shmq_pid_alive(gc_procs[i].pid,
		    gc_procs[i].start_ticks);
	}
	return 0;
}

static int
look_ctl(void *arg)
{
	struct gc_look *l = arg;
	struct shmpipe_ctl *h;
	int r;

	if ((r = ctl_open(l->l_ctl, l->l_pipe, CTL_OPEN_RDONLY |
	    CTL_OPEN_ANY)) != 0)
		return r;
	h = l->l_ctl->c_hdr;
	l->l_records = 1;
	l->l_alive = shmq_pid_alive((pid_t)h->supervisor_pid,
	    h->supervisor_start);
	/* The checked copy of nprocs: the header's may have changed. */
	for (uint32_t i = 0; i < l->l_ctl->c_g.nprocs; i++) {
		/* Relaxed: a snapshot; proven again before the unlink. */
		pid_t pid = (pid_t)atomic_load_explicit(&ctl_proc(l->l_ctl,
		    i)->pid, memory_order_relaxed);
		l->l_alive += pid > 0 && shmq_pid_alive(pid, 0);
	}
	return 0;
}

/* Records and live owners of a valid queue or control segment. */
static int
gc_look(const struct tool_ent *e, struct gc_look *l)
{
	char pipe[SHMPIPE_NAME_MAX];
	struct ctl c = { 0 };
	int r;

	memset(l, 0, sizeof(*l));
	l->l_name = e->e_name;
	if (e->e_kind == TOOL_K_QUEUE) {
		r = tool_guard(look_queue, l);
		shmq_close(l->l_q);
		return r;
	}
	if (!tool_pipe_name(e->e_name, pipe, sizeof(pipe), NULL))
		return -EPROTO;
	l->l_pipe = pipe;
	l->l_ctl = &c;
	r = tool_guard(look_ctl, l);
	ctl_close(&c);			/* never opened: a no-op */
	return r;
}

/*
 * Prove that the owners of segment name are all dead: true, with its
 * inode and why, or false with why not.  The segment must be the same
 * inode before and after the look.
 */
static bool
gc_prove(const char *name, bool allow_empty, struct gc_cand *g)
{
	struct tool_ent e, e2;
	struct gc_look l;

	if (tool_classify(name, &e) != 0 || e.e_kind == TOOL_K_DENIED) {
		snprintf(g->g_why, sizeof(g->g_why), e.e_kind == TOOL_K_DENIED ?
		    "permission denied" : "not a libshmq segment");
		return false;
	}
	if (e.e_kind == TOOL_K_QINIT || e.e_kind == TOOL_K_PINIT) {
		l.l_records = 1;
		l.l_alive = shmq_pid_alive(e.e_creator, e.e_creator_start);
	} else if (e.e_major != (e.e_kind == TOOL_K_QUEUE ?
	    SHMQ_LAYOUT_MAJOR : SHMPIPE_LAYOUT_MAJOR) || e.e_size !=
	    e.e_seg_size || gc_look(&e, &l) != 0) {
		snprintf(g->g_why, sizeof(g->g_why), "cannot be read, so "
		    "nothing is proven");
		return false;
	}
	if (tool_classify(name, &e2) != 0 || e2.e_ino != e.e_ino ||
	    e2.e_dev != e.e_dev || e2.e_kind != e.e_kind) {
		snprintf(g->g_why, sizeof(g->g_why), "changed while examined");
		return false;
	}
	g->g_dev = e.e_dev;
	g->g_ino = e.e_ino;
	if (l.l_alive > 0 || (l.l_records == 0 && !allow_empty)) {
		snprintf(g->g_why, sizeof(g->g_why), l.l_alive ? "%u live "
		    "owner%s" : "nobody attached", l.l_alive, l.l_alive == 1 ?
		    "" : "s");
		return false;
	}
	snprintf(g->g_why, sizeof(g->g_why), e.e_kind == TOOL_K_PIPE ?
	    "its supervisor and every process of its table are dead" :
	    e.e_kind & (TOOL_K_QINIT | TOOL_K_PINIT) ? "half created by a "
	    "process that is dead" : l.l_records ? "all %u attached "
	    "processes are dead" : "queue of a dead pipeline", l.l_records);
	return true;
}

/* Prove name dead and make it a candidate; false (why in why) if not. */
static bool
gc_add(struct gc *gc, const char *name, bool allow_empty, char *why,
    size_t len)
{
	struct gc_cand g = { .g_allow_empty = allow_empty }, *p;

	for (size_t i = 0; i < gc->g_ncands; i++)
		if (strcmp(gc->g_cands[i].g_name, name) == 0)
			return true;
	strlcpy(g.g_name, name, sizeof(g.g_name));
	if (!gc_prove(name, allow_empty, &g)) {
		strlcpy(why, g.g_why, len);
		return false;
	}
	if ((p = reallocarray(gc->g_cands, gc->g_ncands + 1,
	    sizeof(*p))) == NULL)
		err(TOOL_EX_OSERR, "reallocarray");
	gc->g_cands = p;
	gc->g_cands[gc->g_ncands++] = g;
	return true;
}

/* A dead pipeline: its queues (unless one has a live user), then it. */
static void
gc_pipeline(struct gc *gc, const struct tool_ent *e)
{
	static const char *const sfx[] = { "req", "rep" };
	char pipe[SHMPIPE_NAME_MAX], name[TOOL_NAME_LEN], why[128];
	char shown[TOOL_NAME_LEN * 3], pshown[SHMPIPE_NAME_MAX * 3];
	struct gc_cand g;
	struct tool_ent q;

	if (!tool_pipe_name(e->e_name, pipe, sizeof(pipe), NULL) ||
	    !gc_prove(e->e_name, false, &g))
		return;
	/* The queues before the control segment: a supervisor starting
	 * meanwhile under the name then finds a stale one to clear. */
	for (size_t i = 0; i < 2; i++) {
		snprintf(name, sizeof(name), "shmpipe.%s.%s", pipe, sfx[i]);
		if (tool_classify(name, &q) != -ENOENT &&
		    !gc_add(gc, name, true, why, sizeof(why)))
			printf("kept %s of dead pipeline %s: %s\n",
			    tool_safe(shown, sizeof(shown), name),
			    tool_safe(pshown, sizeof(pshown), pipe), why);
	}
	(void)gc_add(gc, e->e_name, false, why, sizeof(why));
}

static int
gc_collect(const struct tool_ent *e, void *arg)
{
	struct gc *gc = arg;
	struct tool_ent *p = reallocarray(gc->g_ents, gc->g_nents + 1,
	    sizeof(*p));

	if (p == NULL)
		return -ENOMEM;
	gc->g_ents = p;
	gc->g_ents[gc->g_nents++] = *e;
	return 0;
}

/* Prove it once more, on the same inode, and unlink it. */
static void
gc_remove(struct gc *gc, const struct gc_cand *g)
{
	struct gc_cand again = *g;
	char shown[TOOL_NAME_LEN * 3];	/* the name, printable */
	int r;

	tool_safe(shown, sizeof(shown), g->g_name);
	if (gc->g_dry) {
		printf("would remove %s: %s\n", shown, g->g_why);
		return;
	}
	if (!gc_prove(g->g_name, g->g_allow_empty, &again) ||
	    again.g_ino != g->g_ino || again.g_dev != g->g_dev) {
		printf("kept %s: %s\n", shown, again.g_why);
		return;
	}
	if ((r = shmq_unlink(g->g_name)) != 0) {
		warnx("%s: %s", shown, strerror(-r));
		if (gc->g_code == 0)
			gc->g_code = tool_exit_code(-r);
		return;
	}
	printf("removed %s: %s\n", shown, g->g_why);
}

static void
gc_run(struct gc *gc)
{
	char why[128];

	/* Pipelines first: their queues may go even with nobody attached. */
	for (size_t i = 0; i < gc->g_nents; i++)
		if (gc->g_ents[i].e_kind & (TOOL_K_PIPE | TOOL_K_PINIT))
			gc_pipeline(gc, &gc->g_ents[i]);
	for (size_t i = 0; i < gc->g_nents; i++)
		if (gc->g_ents[i].e_kind & (TOOL_K_QUEUE | TOOL_K_QINIT))
			(void)gc_add(gc, gc->g_ents[i].e_name, false, why,
			    sizeof(why));
	for (size_t i = 0; i < gc->g_ncands; i++)
		gc_remove(gc, &gc->g_cands[i]);
}

int
tool_cmd_gc(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
	};
	struct gc gc = { 0 };
	const char *pat;
	unsigned matched;
	int ch, r;

	while ((ch = getopt_long(argc, argv, ":hn", longopts, NULL)) != -1) {
		if (ch == 'h')
			return tool_help("gc");
		if (ch != 'n')
			return tool_opt_bad("gc", ch, argv, longopts);
		gc.g_dry = true;
	}
	if (argc - optind > 1)
		return tool_usage("gc", "one PATTERN at most");
	pat = NULL;
	if (optind < argc && (r = tool_pattern_arg("gc", argv[optind],
	    &pat)) != 0)
		return r;
	/* DENIED too, though gc_run passes over them: a file the pattern
	 * names is there, only not ours to prove dead. */
	r = tool_scan(pat, TOOL_K_QUEUE | TOOL_K_PIPE | TOOL_K_QINIT |
	    TOOL_K_PINIT | TOOL_K_DENIED, gc_collect, &gc, &matched);
	if (r != 0) {
		errno = -r;
		warn("%s", TOOL_SHM_DIR);
		free(gc.g_ents);
		return r == -ENOMEM ? TOOL_EX_OSERR : tool_exit_code(-r);
	}
	gc_run(&gc);
	free(gc.g_ents);
	free(gc.g_cands);
	if (pat != NULL && matched == 0) {	/* as ls and rm: a typo? */
		char shown[TOOL_NAME_LEN * 3];	/* the user's bytes */
		warnx("no segment matches %s", tool_safe(shown, sizeof(shown),
		    pat));
		return TOOL_EX_NOINPUT;
	}
	return gc.g_code;
}
