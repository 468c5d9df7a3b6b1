/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * chan.h - the control channel between the supervisor and a stage: small
 * fixed messages on a SOCK_SEQPACKET socketpair, optionally carrying a file
 * descriptor (SCM_RIGHTS).  This is how client connections move between
 * processes; requests and replies never pass here.
 */
#ifndef CHAN_H
#define CHAN_H

#include <stdint.h>

#define CHAN_CONN	1u	/* a client connection: slot, gen + its fd */
#define CHAN_SYNCED	2u	/* every open connection has been sent */
#define CHAN_SLOTS	3u	/* request stage: every connection slot is
				 * taken, free the finished ones now; the
				 * parent answers the same once it has */

struct chan_msg {
	uint32_t	cm_type;	/* CHAN_* */
	uint32_t	cm_slot;	/* connection slot */
	uint32_t	cm_gen;		/* its generation */
	uint32_t	cm_flags;
};

/*
 * A close-on-exec SOCK_SEQPACKET pair.  sv[0] (the supervisor's end) gives
 * up on a send after 2 s rather than wedge on a stuck child.  0 or -errno.
 */
int	chan_pair(int sv[2]);

/* Send m with fd attached (fd < 0: none).  0 or -errno. */
int	chan_send(int sock, const struct chan_msg *m, int fd);

/* The same, -EAGAIN at once if the receiver's side is full. */
int	chan_try_send(int sock, const struct chan_msg *m, int fd);

/*
 * Receive one message, waiting up to timeout_ms (0: not at all, -1: for
 * ever); *fd is the attached descriptor or -1.  1 if one was read, 0 at
 * end of file, -EAGAIN if none came, other -errno.
 */
int	chan_recv(int sock, struct chan_msg *m, int *fd, int timeout_ms);

#endif /* CHAN_H */
