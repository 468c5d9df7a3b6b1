/* SPDX-License-Identifier: BSD-2-Clause */
/* loadgen_stats.c - the latency histogram and verdict counters of
 * shmpipe-bench. */
#include <string.h>

#include "loadgen_stats.h"

#define SUB_BITS	LOADGEN_HIST_SUB_BITS
#define SUB		LOADGEN_HIST_SUB

void
loadgen_hist_init(struct loadgen_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->lh_min = UINT64_MAX;
}

/*
 * Values below 2*SUB are their own bucket.  Above, a value whose top bit is
 * e keeps its SUB_BITS + 1 top bits: the group is e - SUB_BITS, the bucket
 * within it the bits below the top one.
 */
unsigned
loadgen_hist_index(uint64_t v)
{
	unsigned e, shift;

	if (v < 2 * SUB)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);
	shift = e - SUB_BITS;
	return shift * SUB + (unsigned)(v >> shift);
}

uint64_t
loadgen_hist_lowest(unsigned i)
{
	unsigned shift;

	if (i < 2 * SUB)
		return i;
	shift = i / SUB - 1;
	return (uint64_t)(SUB + i % SUB) << shift;
}

uint64_t
loadgen_hist_highest(unsigned i)
{
	unsigned shift;

	if (i < 2 * SUB)
		return i;
	shift = i / SUB - 1;
	return loadgen_hist_lowest(i) + (((uint64_t)1 << shift) - 1);
}

void
loadgen_hist_record(struct loadgen_hist *h, uint64_t v)
{
	h->lh_bucket[loadgen_hist_index(v)]++;
	h->lh_count++;
	h->lh_sum += v;
	if (v < h->lh_min)
		h->lh_min = v;
	if (v > h->lh_max)
		h->lh_max = v;
}

void
loadgen_hist_merge(struct loadgen_hist *dst, const struct loadgen_hist *src)
{
	for (unsigned i = 0; i < LOADGEN_HIST_BUCKETS; i++)
		dst->lh_bucket[i] += src->lh_bucket[i];
	dst->lh_count += src->lh_count;
	dst->lh_sum += src->lh_sum;
	if (src->lh_min < dst->lh_min)
		dst->lh_min = src->lh_min;
	if (src->lh_max > dst->lh_max)
		dst->lh_max = src->lh_max;
}

uint64_t
loadgen_hist_percentile(const struct loadgen_hist *h, unsigned permille)
{
	uint64_t rank, seen = 0;

	if (h->lh_count == 0)
		return 0;
	/* The rank of the value asked for, 1..count: whole numbers, as
	 * 99.9 / 100 * 1000 is 999.0000000000001 in doubles, a rank too
	 * many. */
	rank = ((uint64_t)permille * h->lh_count + 999) / 1000;
	if (rank < 1)
		rank = 1;
	if (rank > h->lh_count)
		rank = h->lh_count;
	for (unsigned i = 0; i < LOADGEN_HIST_BUCKETS; i++) {
		seen += h->lh_bucket[i];
		if (seen >= rank) {
			uint64_t v = loadgen_hist_highest(i);
			return v < h->lh_max ? v : h->lh_max;
		}
	}
	return h->lh_max;
}

double
loadgen_hist_mean(const struct loadgen_hist *h)
{
	return h->lh_count == 0 ? 0.0 : (double)h->lh_sum / (double)h->lh_count;
}

void
loadgen_result_merge(struct loadgen_result *dst,
    const struct loadgen_result *src)
{
	dst->lr_sent += src->lr_sent;
	dst->lr_replies += src->lr_replies;
	dst->lr_ok += src->lr_ok;
	dst->lr_err += src->lr_err;
	dst->lr_wrong += src->lr_wrong;
	dst->lr_out_of_order += src->lr_out_of_order;
	dst->lr_missing += src->lr_missing;
	dst->lr_duplicated += src->lr_duplicated;
	dst->lr_abandoned += src->lr_abandoned;
	dst->lr_dropped += src->lr_dropped;
	dst->lr_reconnects += src->lr_reconnects;
	dst->lr_reconnect_failed += src->lr_reconnect_failed;
	dst->lr_timeouts += src->lr_timeouts;
}

bool
loadgen_result_passed(const struct loadgen_result *r, bool reconnect)
{
	if (r->lr_wrong != 0 || r->lr_out_of_order != 0 ||
	    r->lr_missing != 0 || r->lr_duplicated != 0 ||
	    r->lr_timeouts != 0 || r->lr_reconnect_failed != 0)
		return false;
	return reconnect || r->lr_dropped == 0;
}
