/* SPDX-License-Identifier: BSD-2-Clause */
/* msg.h - the header of request and reply messages on a pipeline's queues:
 * which connection, which request on it, and which slab slot the reply
 * goes to.  The request line or the reply line follows, without '\n'. */
#ifndef MSG_H
#define MSG_H

#include <stdint.h>

#define MSG_TOO_LONG	0x1u	/* request: longer than --max-line */
#define MSG_CONN_DONE	0x2u	/* on the reply queue: the request stage
				 * finished this connection; look at it */

struct msg_hdr {
	uint64_t	mh_conn;	/* SHMPIPE_CONN_ID(gen, slot) */
	uint32_t	mh_seq;		/* request number on the connection */
	uint32_t	mh_slot;	/* slab slot reserved for the reply */
	uint32_t	mh_flags;	/* MSG_* */
	uint32_t	mh_pad;
};

/*
 * The room one message of up to n bytes takes in an array of them, so that
 * every header in it is aligned.
 */
#define MSG_STRIDE(n)	(((size_t)(n) + _Alignof(struct msg_hdr) - 1) & \
			 ~(size_t)(_Alignof(struct msg_hdr) - 1))

#endif /* MSG_H */
