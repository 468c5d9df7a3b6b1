/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pipeline.h - what a pipeline's parent sets up and keeps, whether its
 * stages are processes (shmpipe's supervisor) or threads (shmpipe-threaded):
 * the listening sockets or the files, the control area and the queues, a
 * copy of every client connection, and the housekeeping of both.
 */
#ifndef PIPELINE_H
#define PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "chan.h"
#include "ctl.h"
#include "options.h"
#include "shmq.h"

/* The stages the parent passes connections to. */
enum pl_to { PL_TO_REQUEST, PL_TO_REPLY, PL_TO_N };

/*
 * Connections kept for a stage that its channel had no room for yet: the
 * parent never waits on a stage, and loses nothing to one that is stopped
 * or slow.  CHAN_SYNCED goes after all of them, once the set is empty.
 */
struct pl_outbox {
	uint64_t	*ob_set;	/* connection slots to send */
	uint32_t	 ob_n;
	bool		 ob_synced;	/* CHAN_SYNCED owed */
};

struct pipeline {
	const struct options *pl_opt;
	bool		 pl_anon;	/* threads: anonymous memory, no names */
	unsigned	 pl_made;	/* segments made so far: 1 req, 2 rep */
	struct ctl	 pl_ctl;
	struct shmq	*pl_req;	/* the parent's handles */
	struct shmq	*pl_rep;
	int		 pl_listen[OPT_MAX_LISTEN];
	bool		 pl_listen_unix[OPT_MAX_LISTEN];
	int		 pl_in_fd;	/* file mode */
	int		 pl_out_fd;
	int		*pl_keep;	/* client fd per connection slot, -1 */
	uint32_t	*pl_keep_gen;
	struct pl_outbox pl_out[PL_TO_N];
};

/*
 * SIGTERM, SIGINT and SIGHUP from the pidfile on: caught (catch), then, with
 * them blocked for the signalfd, one that came meanwhile raised again
 * (handover).  A stop signal while file mode waits to open a FIFO exits.
 */
void	pipeline_signals_catch(void);
void	pipeline_signals_handover(void);

/*
 * Open the listening sockets (or the files, in file mode), create the
 * control area for nrows stage rows and the two queues (named after the
 * pipeline, or anonymous).  Exits with one line on failure, through
 * err(3): callers that hold a pidfile remove it with atexit(3).
 */
void	pipeline_open(struct pipeline *pl, const struct options *o,
	    uint32_t nrows, bool anon);

/* Leave file offsets past what was done, close everything, remove the
 * segments and Unix socket paths. */
void	pipeline_close(struct pipeline *pl);

/*
 * For a caller about to _exit(2) while stages still run on what the
 * pipeline holds (the threads of shmpipe-threaded): leave file offsets
 * past what was done and remove the segments' names and Unix socket
 * paths, but close and unmap nothing under them.
 */
void	pipeline_abandon(struct pipeline *pl);

/* --pidfile, or /run/shmpipe.NAME.pid as root, else under
 * $XDG_RUNTIME_DIR or /tmp. */
void	pipeline_pidfile_path(const struct options *o, char *buf, size_t len);

/* Exit 1: the pidfile at path is held, by pid. */
void	pipeline_pidfile_busy(const char *path, pid_t pid)
	    __attribute__((noreturn));

/* "/shmpipe.NAME.*" segments of a pipeline, removed. */
void	pipeline_unlink(const char *name);

/*
 * Pass a kept connection on to the reply stage (channel sock) without
 * waiting: a reply stage stopped or slow must not hold the caller up, and
 * must not lose the connection either.  What its channel has no room for
 * is sent by pipeline_flush(), in order, once it has.  Both return
 * whether anything went (ring the stage's doorbell then).
 */
bool	pipeline_pass(struct pipeline *pl, int sock, const struct chan_msg *m);
bool	pipeline_flush(struct pipeline *pl, enum pl_to to, int sock);

/* The request stage (channel sock) found every connection slot taken:
 * free the finished ones now, and tell it so (CHAN_SLOTS). */
void	pipeline_slots_asked(struct pipeline *pl, int sock);

/* Keep a connection the request stage accepted (fd is ours now). */
void	pipeline_keep(struct pipeline *pl, const struct chan_msg *m, int fd);

/*
 * The request stage sent connection m, but its descriptor was lost on the
 * way (no room for it here: MSG_CTRUNC).  Nobody can answer it: say so and
 * mark it ABORT, so that the request stage closes it.
 */
void	pipeline_lost_conn(struct pipeline *pl, const struct chan_msg *m);

/*
 * The request process died, and what its channel held has been taken in:
 * give up every open connection whose descriptor we do not hold (it died
 * between claiming the slot and sending it, or the descriptor was lost on
 * the way).  No process has it any more, so none would ever let go of it.
 */
void	pipeline_request_died(struct pipeline *pl);

/*
 * A stage `to` just started on channel sock: send it every kept connection
 * it is not done with (SHMPIPE_CONN_RD_DONE, RP_DONE), then CHAN_SYNCED,
 * through its outbox: what does not fit now goes with pipeline_flush().
 */
bool	pipeline_send_conns(struct pipeline *pl, enum pl_to to, int sock);

/*
 * Housekeeping, a few dozen times a second: free the connection slots both
 * stages are done with (closing our copy), close clients silent past the
 * idle timeout, and when `slab` collect slab slots reserved for requests
 * nobody will answer into them.
 */
void	pipeline_gc(struct pipeline *pl, bool slab);

/* Enter DRAINING and say so; the caller stops the request stage. */
void	pipeline_drain(struct pipeline *pl, const char *why);

/* File mode's input read to the end? */
bool	pipeline_input_done(const struct pipeline *pl);

/*
 * At the end of a drain: 0, or in file mode a nonzero exit status after
 * saying how many requests read were not written out (by the file's own
 * sequence numbers, which a crash does not skew as it may the counters).
 */
int	pipeline_file_verdict(const struct pipeline *pl);

void	pipeline_log_start(const struct pipeline *pl, const char *what);

#endif /* PIPELINE_H */
