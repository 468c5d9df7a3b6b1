#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# bench-shmq-tool.sh - how fast and how small shmq(1) is over many queues:
# creates 256 small queues, times `shmq ls` and `shmq check` over them (the
# median of several runs, fork and exec included), reads the peak resident
# size of `shmq ls`, prints the figures against the targets, and removes
# the queues.  Also shows, for scale, the cost of one queue of a pipeline's
# default size (a read-only open checks every ring slot word).
#
#   SHMPIPE_BUILD=build scripts/bench-shmq-tool.sh
#   BENCH_STRICT=1 ...   exit 1 if a target is missed
set -u

build=${SHMPIPE_BUILD:-build}
shmq=$build/shmq
queues=${BENCH_QUEUES:-256}
runs=${BENCH_RUNS:-15}
prefix="shmqbench-$$-"
ls_ms_max=20
ls_rss_kib_max=4096
check_ms_max=50
missed=0

[ -x "$shmq" ] || { echo "bench-shmq-tool: no $shmq; run make" >&2; exit 1; }

cleanup() {
	rm -f /dev/shm/"$prefix"* 2>/dev/null
}
trap cleanup EXIT INT TERM

# Milliseconds one run of the tool takes, as a script sees it.
run_ms() {
	local t0 t1
	t0=$EPOCHREALTIME
	"$shmq" "$@" >/dev/null 2>&1
	t1=$EPOCHREALTIME
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }'
}

# The median of runs timings of the tool with these arguments.
median_ms() {
	local i
	for ((i = 0; i < runs; i++)); do
		run_ms "$@"
	done | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# Peak resident size in KiB of one run, or "n/a".
peak_kib() {
	if [ -x /usr/bin/time ]; then
		/usr/bin/time -f %M "$shmq" "$@" 2>&1 >/dev/null | tail -1
	elif command -v python3 >/dev/null; then
		python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$shmq" "$@"
	else
		echo n/a
	fi
}

# "value target unit": a line with OK or MISSED.
verdict() {
	local what=$1 value=$2 max=$3 unit=$4 ok
	ok=$(awk -v v="$value" -v m="$max" 'BEGIN { print (v != "n/a" && v + 0 < m + 0) ? "ok" : "MISSED" }')
	printf '  %-34s %10s %-4s (target < %s %s) %s\n' "$what" "$value" "$unit" \
	    "$max" "$unit" "$ok"
	[ "$ok" = ok ] || missed=1
}

echo "shmq(1) over $queues small queues (capacity 16, 64-byte messages); median of $runs runs"
for ((i = 0; i < queues; i++)); do
	"$shmq" create -c 16 -m 64 "$prefix$i" || exit 1
done
for ((i = 0; i < queues; i += 4)); do
	"$shmq" put "$prefix$i" a b c || exit 1
done
"$shmq" ls "$prefix*" >/dev/null 2>&1	# warm the page cache of the tool
verdict "shmq ls, $queues queues" "$(median_ms ls "$prefix*")" $ls_ms_max ms
verdict "shmq ls -o json, $queues queues" "$(median_ms ls -o json "$prefix*")" \
    $ls_ms_max ms
verdict "shmq ls peak RSS" "$(peak_kib ls "$prefix*")" $ls_rss_kib_max KiB
verdict "shmq check, $queues queues" "$(median_ms check "$prefix*")" \
    $check_ms_max ms
cleanup

echo "for scale: one queue of a pipeline's default size (4096 x 4096 bytes)"
"$shmq" create -c 4096 -m 4096 -p 16 -l 16 "${prefix}big" || exit 1
printf '  %-34s %10s ms\n' "shmq ls, 1 big queue" "$(median_ms ls "${prefix}big")"
printf '  %-34s %10s KiB\n' "shmq ls peak RSS, 1 big queue" \
    "$(peak_kib ls "${prefix}big")"
cleanup
if [ "$missed" = 1 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then
	exit 1
fi
exit 0
