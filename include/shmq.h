/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shmq.h - libshmq: a crash-safe, semaphore-guarded multi-producer
 * multi-consumer message queue in POSIX shared memory.
 *
 * CONCURRENCY
 *   A queue lives in one named segment (shm_open).  Any number of processes
 *   may attach to it; each shmq_open() or shmq_create() is one attachment,
 *   with its own record in the segment.  A handle (struct shmq *) is used by
 *   one thread at a time: threads that use a queue concurrently each open
 *   their own handle.  A handle does not survive fork(): in the child every
 *   call that changes the queue returns -ECHILD, shmq_wakeup() does nothing,
 *   and the child must open its own.
 *
 *   Messages are 0..msg_max bytes.  Order is FIFO per producer: the messages
 *   of one handle are taken in the order it put them, unless one is
 *   redelivered after a consumer died.  Blocking calls spin briefly, yield
 *   the CPU once, then sleep on a process-shared semaphore; a call that
 *   does not need to wait makes no system call.  Whoever publishes must see
 *   a sleeper that is about to sleep: by default a sleeper forces a barrier
 *   on every CPU (membarrier), so puts and gets cost no fence; a queue
 *   created with SHMQ_CREATE_FENCES puts a fence in every put and get
 *   instead, which is cheaper when consumers sleep often (more processes
 *   than CPUs).
 *
 * CRASH SAFETY
 *   Any attached process may die at any instruction, inside any call.  The
 *   queue never needs the dead process to finish: every slot and lease it
 *   held is tagged with its attachment, and shmq_recover(q, pid), called by
 *   whoever learns of the death (normally a supervisor after waitpid), puts
 *   the queue back in order:
 *     - a message whose put had not returned is either delivered whole or
 *       not at all; one whose put returned 0 is always delivered;
 *     - a message the dead process was taking or held under a lease is put
 *       back in front of the queue, its delivery count kept, and waiting
 *       consumers are woken;
 *     - the capacity is whole again and no process sleeps while the thing it
 *       waits for is there.
 *   Until the recovery, the others carry on; only consumers that reach a
 *   slot the dead producer was filling wait for it.  Recovery itself may be
 *   killed at any point and run again.  Callers that cannot tell which
 *   process died may call shmq_recover_dead().
 *
 * ERRORS
 *   Calls return 0 (or a count or length) on success and a negative errno
 *   value on failure.  Constructors return NULL and set errno.  The library
 *   never prints and never exits.
 */
#ifndef SHMQ_H
#define SHMQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SHMQ_VERSION_MAJOR	0
#define SHMQ_VERSION_MINOR	1
#define SHMQ_VERSION_PATCH	0
#define SHMQ_VERSION		"0.1.0"

struct shmq;

/* Segment geometry.  A zeroed field takes the default shown. */
struct shmq_config {
	uint32_t	capacity;	/* messages (1024); rounded up to 2^n */
	uint32_t	msg_max;	/* largest message, bytes (4096) */
	uint32_t	max_procs;	/* attachments at once (32), <= 256 */
	uint32_t	lease_max;	/* leases one handle may hold (4) */
	mode_t		mode;		/* segment permissions (0600) */
	uint32_t	flags;		/* SHMQ_CREATE_* */
};

#define SHMQ_CREATE_FENCES	0x1u	/* fence each op; sleeps interrupt
					 * no other CPU (see CONCURRENCY) */

/* A message taken under a lease; hand it back to shmq_ack(). */
struct shmq_lease {
	uint64_t	id;		/* opaque */
	uint32_t	deliveries;	/* 1 on first delivery, +1 per retry */
	uint32_t	len;		/* message length */
};

/* Flags for shmq_open_flags(). */
#define SHMQ_OPEN_RDONLY	0x1u	/* inspect only: map read-only, take
					 * no record; stats/procs/leases/peek.
					 * Ring slots are checked as they are
					 * read, not all at open. */
#define SHMQ_OPEN_ANY_OWNER	0x2u	/* accept a segment another user owns */
#define SHMQ_OPEN_ANY_MODE	0x4u	/* accept group/other permissions */

/*
 * shmq_create - create the segment `name` ("/name" or "name"; no other '/',
 * no "..") with O_EXCL, reserve its memory and attach to it.  cfg may be
 * NULL for defaults.  Returns a handle, or NULL with errno: EEXIST, EINVAL
 * (bad name or config), ENOSPC (no room in /dev/shm), EACCES, EMFILE,
 * ENOMEM, and the other errors of shm_open(3), posix_fallocate(3) and
 * mmap(2).
 */
struct shmq	*shmq_create(const char *name, const struct shmq_config *cfg);

/*
 * shmq_open - attach to an existing segment after validating every header
 * field.  Equivalent to shmq_open_flags(name, 0).  NULL with errno:
 *   ENOENT		no such segment
 *   EACCES		permission denied by the file mode
 *   EPERM		owned by another user, or group/other may access it
 *			(see SHMQ_OPEN_ANY_OWNER, SHMQ_OPEN_ANY_MODE)
 *   EAGAIN		exists but its creator has not finished initialising it
 *   EPROTO		not a libshmq segment (bad magic)
 *   EPROTONOSUPPORT	libshmq segment of another major layout version
 *   ENODATA		truncated: smaller than its header says
 *   EBADMSG		corrupt: absurd sizes, offsets or indices
 *   EUSERS		max_procs attachments already, none of them dead
 *   EINVAL		bad name or flags
 * and the errors of shm_open(3), fstat(2) and mmap(2) (ENFILE, ENOMEM...).
 */
struct shmq	*shmq_open(const char *name);
struct shmq	*shmq_open_flags(const char *name, unsigned flags);

/*
 * shmq_close - detach.  Leases still held are put up for redelivery, as if
 * the process had died.  In a child that inherited the handle across fork(),
 * only unmaps.  NULL is a no-op.
 */
void		 shmq_close(struct shmq *q);

/*
 * shmq_create_anon - a queue in anonymous memory (a memfd), for the threads
 * of one process: no name, nothing in /dev/shm, and the memory goes with
 * the last handle closed.  Errors as shmq_create.
 * shmq_attach - another handle on the queue q is on, with its own
 * attachment: one for each thread.  NULL with errno as shmq_open.
 */
struct shmq	*shmq_create_anon(const struct shmq_config *cfg);

/*
 * shmq_anon_room - the most bytes an anonymous segment may take: what
 * /dev/shm has free.  A named segment meets that limit; a memfd meets
 * none, and past memory the OOM killer picks some process.  Half the
 * memory where /dev/shm cannot say.  shmq_create_anon() fails with ENOSPC
 * above it; other users of memfds may ask it too.
 */
uint64_t	 shmq_anon_room(void);
struct shmq	*shmq_attach(struct shmq *q);

/* shmq_unlink - remove the name; attached processes keep working.
 * 0, or -ENOENT, -EACCES, -EINVAL. */
int		 shmq_unlink(const char *name);

/*
 * Timeouts: -1 waits for ever, 0 never waits, > 0 waits at most that many
 * milliseconds.  A call that has to wait returns -EINTR when shmq_wakeup()
 * was called, or when a signal handler runs while it sleeps (a timed wait
 * always; an untimed one only for handlers without SA_RESTART).  To be sure
 * a handler is noticed, call shmq_wakeup() from it.
 *
 * shmq_put - copy len bytes in.  0, or -EAGAIN (full, timeout 0),
 * -ETIMEDOUT, -EMSGSIZE (len > msg_max), -EINVAL, -EINTR, -EBADF (read-only
 * handle), -ECHILD (handle inherited across fork).
 */
int		 shmq_put(struct shmq *q, const void *msg, size_t len,
		    int timeout_ms);

/*
 * shmq_get - copy the next message into buf.  Returns its length, or
 * -EAGAIN (empty, timeout 0), -ETIMEDOUT, -EMSGSIZE (cap too small: the
 * message stays queued; shmq_msg_max() bytes always suffice), -EPROTO (a
 * malformed slot was dropped), -EINVAL, -EINTR, -EBADF, -ECHILD.
 * Messages waiting for redelivery come first.
 */
ssize_t		 shmq_get(struct shmq *q, void *buf, size_t cap,
		    int timeout_ms);

/*
 * shmq_put_batch - put up to n messages (msgs[i].iov_base, iov_len), in
 * order.  Waits (per timeout) only while none can be put.  Returns how many
 * were put, >= 1, or the errors of shmq_put.  A message longer than msg_max
 * stops the batch before it (-EMSGSIZE if it is the first).
 */
int		 shmq_put_batch(struct shmq *q, const struct iovec *msgs,
		    unsigned n, int timeout_ms);

/*
 * shmq_get_batch - get up to n messages; bufs[i].iov_len is the capacity of
 * bufs[i] on entry and the message length on return.  Waits only while
 * there are none.  Returns how many, >= 1, or the errors of shmq_get.
 */
int		 shmq_get_batch(struct shmq *q, struct iovec *bufs,
		    unsigned n, int timeout_ms);

/*
 * shmq_take - like shmq_get, but the message stays in the segment under a
 * lease until shmq_ack().  If this process dies first, shmq_recover() puts
 * it back in front with lease->deliveries counting the attempts.  At most
 * lease_max leases per handle: -ENOBUFS when they are all held.
 */
ssize_t		 shmq_take(struct shmq *q, void *buf, size_t cap,
		    struct shmq_lease *lease, int timeout_ms);
int		 shmq_take_batch(struct shmq *q, struct iovec *bufs,
		    struct shmq_lease *leases, unsigned n, int timeout_ms);

/*
 * shmq_ack - the message is done with; free its lease.  0, or -ESTALE (not
 * a lease this handle holds, or already acked), -EINVAL, -ECHILD.
 * shmq_release - give the message back for redelivery now (a retry).
 */
int		 shmq_ack(struct shmq *q, const struct shmq_lease *lease);
int		 shmq_release(struct shmq *q, const struct shmq_lease *lease);

/*
 * shmq_recover - process pid is dead: undo whatever it left half done on
 * this queue and redeliver what it held.  Safe to call from any attached
 * process, concurrently with all other calls, more than once, and again if
 * a previous recovery was killed.  Returns the number of messages put up
 * for redelivery (0 if pid had nothing here), or -EBUSY (pid is alive),
 * -EINVAL, -ECHILD, -EBADF.
 *
 * shmq_recover_dead - recover every attachment whose process is gone.
 * Returns the number of messages put up for redelivery, or -EINVAL,
 * -ECHILD, -EBADF, or the error of locking the recovery mutex:
 * -ETIMEDOUT (a live process has held it for 5 s: recoveries take
 * milliseconds, so it is stopped or the segment is corrupt), -EBADMSG (the
 * segment's mutex is not a robust process-shared one: corrupt),
 * -ENOTRECOVERABLE.  shmq_recover returns -EBUSY if pid is alive even
 * when it recovered other attachments on the way (their redeliveries are
 * made all the same).  shmq_close() that cannot take the mutex detaches
 * all the same, leaving its record for a later recovery.
 */
int		 shmq_recover(struct shmq *q, pid_t pid);
int		 shmq_recover_dead(struct shmq *q);

/* Statistics, read without locks and without writing to the segment.
 * shmq_stats returns 0, or -EINVAL for a NULL argument. */
struct shmq_stats {
	uint64_t	enqueued;	/* puts that completed */
	uint64_t	dequeued;	/* messages taken off the ring */
	uint64_t	redelivered;	/* put back after a death or release */
	uint64_t	put_waits;	/* a producer slept: full */
	uint64_t	get_waits;	/* a consumer slept: empty */
	uint64_t	voided;		/* unfinished puts of dead producers */
	uint64_t	recoveries;	/* attachments recovered */
	uint64_t	corrupt;	/* malformed slots dropped */
	uint32_t	capacity;
	uint32_t	msg_max;
	uint32_t	depth;		/* on the ring now, 0..capacity */
	uint32_t	high_water;	/* deepest seen (sampled), <= capacity */
	uint32_t	redeliver_pending; /* waiting to be redelivered */
	uint32_t	leases_held;
	uint32_t	procs;		/* live attachments */
	uint32_t	procs_draining;	/* dead, messages still in their area */
	int64_t		oldest_age_ms;	/* age of the next message, -1 if none */
	uint64_t	created_ns;	/* CLOCK_REALTIME */
	pid_t		creator_pid;
};
int		 shmq_stats(struct shmq *q, struct shmq_stats *st);

#define SHMQ_ROLE_PRODUCER	0x1u
#define SHMQ_ROLE_CONSUMER	0x2u
#define SHMQ_ASLEEP_GET		0x1u
#define SHMQ_ASLEEP_PUT		0x2u

/* One attachment, as seen from outside. */
struct shmq_proc_info {
	pid_t		pid;
	uint32_t	index;		/* attachment record */
	uint32_t	state;		/* SHMQ_PROC_ALIVE or SHMQ_PROC_DEAD */
	uint32_t	roles;		/* SHMQ_ROLE_* it has acted in */
	uint32_t	asleep;		/* SHMQ_ASLEEP_* */
	uint32_t	leases;		/* leases it holds */
	uint64_t	n_put, n_get, n_ack;
	uint64_t	last_op_ns;	/* CLOCK_MONOTONIC, 0 = never */
	uint64_t	start_ticks;	/* process start time, clock ticks */
};

/* One lease or pending redelivery. */
struct shmq_lease_info {
	pid_t		holder;		/* 0 if waiting for redelivery */
	uint32_t	holder_index;
	uint32_t	deliveries;
	uint32_t	len;
	uint64_t	taken_ns;	/* CLOCK_MONOTONIC of the last delivery */
};

/*
 * shmq_procs, shmq_leases - fill up to max records; return how many there
 * are in all (which may exceed max), or -EINVAL.  Read-only, lock-free
 * snapshots.
 */
int		 shmq_procs(struct shmq *q, struct shmq_proc_info *out,
		    unsigned max);
int		 shmq_leases(struct shmq *q, struct shmq_lease_info *out,
		    unsigned max);

/*
 * shmq_rates - messages per second put and taken over about the last
 * window_s seconds (1..8), from the snapshot of the indices the queue
 * records each second it is used.  *window_ms is the span actually
 * measured, 1 at least (0 if there is no history yet: rates are then 0).
 * A queue idle for longer than the window reports 0.  Read-only; no lock.
 */
int		 shmq_rates(struct shmq *q, unsigned window_s, double *put_per_s,
		    double *get_per_s, uint64_t *window_ms);

/*
 * shmq_peek - copy the k-th waiting message (0 = next) without consuming
 * it.  Returns its length, or -ENOENT (fewer than k+1 waiting), -EAGAIN
 * (it changed while being read; try again), -EMSGSIZE (cap too small),
 * -EINVAL.
 */
ssize_t		 shmq_peek(struct shmq *q, unsigned k, void *buf, size_t cap);

/*
 * shmq_pid_alive - whether process pid is running and is the process that
 * started at start_ticks (its /proc start time, as in shmq_proc_info; 0 =
 * do not check), i.e. not dead, not a zombie, not a new process that got
 * the same number.  shmq_pid_start - that start time, 0 if unknown.
 */
bool		 shmq_pid_alive(pid_t pid, uint64_t start_ticks);
uint64_t	 shmq_pid_start(pid_t pid);

uint32_t	 shmq_capacity(const struct shmq *q);
uint32_t	 shmq_msg_max(const struct shmq *q);
const char	*shmq_name(const struct shmq *q);

/*
 * shmq_wakeup - make the blocking call this handle is in, or the next one
 * that has to wait, return -EINTR at once (calls that do not wait leave it
 * pending).  Async-signal-safe: meant for a signal handler, or another
 * thread, that needs the caller to look at something else (a control
 * socket, a stop flag).  Wake-ups do not accumulate: one pending wake-up
 * interrupts one call.
 */
void		 shmq_wakeup(struct shmq *q);

/*
 * shmq_set_spin - how long a blocking call spins before it sleeps, in
 * nanoseconds (default 20000).  0 does not spin.  After spinning, a call
 * yields the CPU once (sched_yield) and looks again before it sleeps; see
 * shmq_set_yield().
 */
void		 shmq_set_spin(struct shmq *q, uint32_t spin_ns);

/*
 * shmq_set_yield - whether a blocking call yields the CPU before it sleeps
 * (default true).  The yield pays when the peer a call waits for shares
 * its CPU and answers at once (request and reply); it costs a process
 * among many on few CPUs that would rather let work pile up while it
 * sleeps and take it in batches.  Yields that keep finding nothing are
 * made rarely either way.
 */
void		 shmq_set_yield(struct shmq *q, bool yield);

#endif /* SHMQ_H */
