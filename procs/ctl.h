/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ctl.h - the control segment of a pipeline (include/shmpipe_layout.h):
 * creating it, attaching to it with every field checked, finding its parts.
 */
#ifndef CTL_H
#define CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shmpipe_layout.h"

/* What the supervisor decides; everything else is derived. */
struct ctl_params {
	uint32_t	nprocs;
	uint32_t	max_conns;
	uint32_t	max_line;
	uint32_t	window;		/* slab slots: requests in flight */
	uint32_t	conn_window;	/* per connection, a power of two */
	uint32_t	max_deliveries;
	uint32_t	request_timeout_ms;
	uint32_t	flags;		/* SHMPIPE_CONN_FILE for file mode */
};

/*
 * The geometry of a control segment, copied out of its header once it was
 * checked (or as it was made).  The header is anyone's to scribble on
 * while it is mapped: every count, size and offset that bounds a loop or
 * places a part is taken from this copy, never read from the header again.
 */
struct ctl_geom {
	uint32_t	nprocs, max_conns, max_line, slab_slots, nverdicts;
	uint32_t	conn_window;	/* a power of two, <= slab_slots */
	uint32_t	in_size, conn_size, reply_max, slab_size;
	uint64_t	procs_off, conns_off, slab_off, verdicts_off;
};

struct ctl {
	struct shmpipe_ctl *c_hdr;
	unsigned char	*c_base;
	size_t		 c_size;
	int		 c_fd;		/* ctl_create_anon's memfd, else -1 */
	struct ctl_geom	 c_g;		/* checked once; read c_g, not c_hdr */
};

#define CTL_NVERDICTS	64

/*
 * ctl_seg_name - "/shmpipe.PIPELINE.SUFFIX" into buf.  0, or -EINVAL if
 * the pipeline name is not 1..40 characters of [A-Za-z0-9_.-], without
 * ".." and without a '.' at either end (ctl_name_ok).
 */
int	ctl_seg_name(char *buf, size_t len, const char *pipeline,
	    const char *suffix);
bool	ctl_name_ok(const char *pipeline);

/* Create /shmpipe.PIPELINE.ctl (O_EXCL) and map it.  0 or -errno. */
int	ctl_create(struct ctl *c, const char *pipeline,
	    const struct ctl_params *p);

/*
 * The same in a memfd of this process, for its threads: nothing in
 * /dev/shm, nothing left after a crash.  The memfd stays open (closed by
 * ctl_close), named "shmpipe.PIPELINE.ctl", for ctl_open_pid.
 */
int	ctl_create_anon(struct ctl *c, const char *pipeline,
	    const struct ctl_params *p);

#define CTL_OPEN_RDONLY	0x1u	/* map it read-only */
#define CTL_OPEN_ANY	0x2u	/* accept another user's, or group/other
				 * permissions (inspection tools) */

/*
 * Map an existing control segment after checking its owner and mode (ours,
 * 0600, unless CTL_OPEN_ANY), magic, version and every size and offset: 0,
 * or -ENOENT, -EACCES, -EPERM (another user's, or open to others),
 * -EAGAIN (not initialised), -EPROTO (foreign: bad magic, or not a
 * regular file; opened without blocking, so a FIFO cannot hang it),
 * -EPROTONOSUPPORT (version), -ENODATA (truncated), -EBADMSG
 * (inconsistent).
 */
int	ctl_open(struct ctl *c, const char *pipeline, unsigned flags);

/* The same checks and mapping on an open file (the caller keeps fd). */
int	ctl_open_fd(struct ctl *c, int fd, unsigned flags);

/*
 * Map the control area that process pid made with ctl_create_anon (a
 * shmpipe-threaded), through /proc/PID/fd: needs the right to read that
 * process's fds (same user, or root).  0, the errors of ctl_open, or
 * -ENOENT (pid has no such memfd: not yet, or not that pipeline), -ESRCH
 * (no process pid), -EACCES.
 */
int	ctl_open_pid(struct ctl *c, pid_t pid, const char *pipeline,
	    unsigned flags);

/* The name of the (first) pipeline whose control memfd process pid holds,
 * into name (SHMPIPE_NAME_MAX bytes): 0, or the errors of ctl_open_pid. */
int	ctl_pid_pipeline(pid_t pid, char *name);

/*
 * Is the pipeline's segment `suffix` there and not ours alone (another
 * user's, or open to group or others)?  Fills why with the owner and mode.
 */
bool	ctl_seg_foreign(const char *pipeline, const char *suffix, char *why,
	    size_t len);
void	ctl_close(struct ctl *c);

/* Reply capacity for lines of max_line bytes. */
uint32_t ctl_reply_max(uint32_t max_line);

static inline struct shmpipe_proc *
ctl_proc(const struct ctl *c, uint32_t i)
{
	return (struct shmpipe_proc *)(c->c_base + c->c_g.procs_off) + i;
}

static inline struct shmpipe_conn *
ctl_conn(const struct ctl *c, uint32_t i)
{
	return (struct shmpipe_conn *)(c->c_base + c->c_g.conns_off +
	    (size_t)i * c->c_g.conn_size);
}

static inline unsigned char *
ctl_conn_ring(struct shmpipe_conn *cn)
{
	return (unsigned char *)(cn + 1);
}

static inline struct shmpipe_slab *
ctl_slab(const struct ctl *c, uint32_t i)
{
	return (struct shmpipe_slab *)(c->c_base + c->c_g.slab_off +
	    (size_t)i * c->c_g.slab_size);
}

static inline char *
ctl_slab_data(struct shmpipe_slab *s)
{
	return (char *)(s + 1);
}

static inline struct shmpipe_verdict *
ctl_verdict(const struct ctl *c, uint32_t i)
{
	return (struct shmpipe_verdict *)(c->c_base +
	    c->c_g.verdicts_off) + i;
}

#endif /* CTL_H */
