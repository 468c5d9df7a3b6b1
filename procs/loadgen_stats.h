/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * loadgen_stats.h - what shmpipe-bench counts: a log-bucketed latency
 * histogram (HDR style: constant relative precision, fixed memory, O(1)
 * record) and the verdict counters of a run.
 *
 * Nothing here allocates, prints or takes a lock: each worker thread keeps
 * its own histogram and counters, and the main thread merges them after
 * the workers have been joined.
 */
#ifndef LOADGEN_STATS_H
#define LOADGEN_STATS_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Each power-of-two range of values is cut into 2^LOADGEN_HIST_SUB_BITS
 * equal buckets, so a value is known to within 1/128 (0.8 %) of itself;
 * values below 2^(LOADGEN_HIST_SUB_BITS + 1) are exact.  Every uint64_t
 * value has a bucket.
 */
#define LOADGEN_HIST_SUB_BITS	7
#define LOADGEN_HIST_SUB	(1u << LOADGEN_HIST_SUB_BITS)
#define LOADGEN_HIST_BUCKETS	((65 - LOADGEN_HIST_SUB_BITS) * LOADGEN_HIST_SUB)

struct loadgen_hist {
	uint64_t	lh_count;
	uint64_t	lh_min;		/* UINT64_MAX while empty */
	uint64_t	lh_max;
	uint64_t	lh_sum;		/* for the mean; wraps after 2^64 */
	uint64_t	lh_bucket[LOADGEN_HIST_BUCKETS];
};

/* Empty h. */
void		loadgen_hist_init(struct loadgen_hist *h);

/* Count one value v. */
void		loadgen_hist_record(struct loadgen_hist *h, uint64_t v);

/* Add every value counted in src to dst. */
void		loadgen_hist_merge(struct loadgen_hist *dst,
		    const struct loadgen_hist *src);

/*
 * The value below or at which permille per mille (0..1000: 999 is p99.9)
 * of the values lie: the highest value of the bucket that holds that
 * rank, but never above the largest value recorded.  0 for an empty
 * histogram.
 */
uint64_t	loadgen_hist_percentile(const struct loadgen_hist *h,
		    unsigned permille);

/* The mean of the values, 0 for an empty histogram. */
double		loadgen_hist_mean(const struct loadgen_hist *h);

/* The bucket of v, and the lowest and highest value of bucket i. */
unsigned	loadgen_hist_index(uint64_t v);
uint64_t	loadgen_hist_lowest(unsigned i);
uint64_t	loadgen_hist_highest(unsigned i);

/*
 * The verdict of a run.  Every request sent ends up in exactly one of ok,
 * err, wrong, out_of_order, missing and abandoned; every reply received in
 * one of ok, err, wrong, out_of_order and duplicated.
 */
struct loadgen_result {
	uint64_t	lr_sent;		/* requests written */
	uint64_t	lr_replies;		/* reply lines read */
	uint64_t	lr_ok;			/* OK, in order, as expected */
	uint64_t	lr_err;			/* ERR, in order, as expected */
	uint64_t	lr_wrong;		/* in its place, wrong content */
	uint64_t	lr_out_of_order;	/* right, but after later ones */
	uint64_t	lr_missing;		/* never answered */
	uint64_t	lr_duplicated;		/* answered twice, or extra */
	uint64_t	lr_abandoned;		/* lost with a dropped
						 * connection (--reconnect) */
	uint64_t	lr_dropped;		/* connections the server closed */
	uint64_t	lr_reconnects;		/* connections opened again */
	uint64_t	lr_reconnect_failed;	/* could not be opened again */
	uint64_t	lr_timeouts;		/* connections that timed out */
};

/* Add the counters of src to dst. */
void		loadgen_result_merge(struct loadgen_result *dst,
		    const struct loadgen_result *src);

/*
 * Whether the run was correct: no reply wrong, out of order, missing or
 * duplicated, no connection dropped unless reconnect (re-opening dropped
 * connections was asked for), and every dropped one opened again.
 */
bool		loadgen_result_passed(const struct loadgen_result *r,
		    bool reconnect);

#endif /* LOADGEN_STATS_H */
