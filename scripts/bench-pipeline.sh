#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# bench-pipeline.sh - how fast the shmpipe pipeline is, against what a
# single-process event-loop server reaches on the same machine in the same
# run: echo over loopback TCP with 50 connections, unpipelined and at depth
# 16 (shmpipe-bench, every reply checked) next to redis-server with
# redis-benchmark -t ping_inline; and file mode over 2 M lines.
# Each round runs shmpipe and then redis for about as long, so that both
# see the same machine: this one is shared, and its speed moves by tens of
# per cent within a minute.  The ratio is therefore taken round by round,
# and the median of those ratios is reported beside the median rates.  The
# targets are judged on shmpipe-bench's default echo of 64 bytes; a PING
# carries none, so depth 16 is also measured with the smallest request
# shmpipe-bench can check (-s 0: its CONN:SEQ: tag alone), for reference.
#
#   SHMPIPE_BUILD=build scripts/bench-pipeline.sh
#   BENCH_ROUNDS=5 BENCH_SECONDS=4      (defaults)
#   BENCH_STRICT=1                      exit 1 if a target is missed
set -u

build=${SHMPIPE_BUILD:-build}
rounds=${BENCH_ROUNDS:-5}
secs=${BENCH_SECONDS:-4}
tmp=$(mktemp -d /tmp/bench-pipeline.XXXXXX)
name="bp$$"
port=$((20000 + $$ % 20000))
rport=$((port + 1))
missed=0

# shellcheck disable=SC2317	# called through the trap
cleanup() {
	[ -n "${spid:-}" ] && kill -TERM "$spid" 2>/dev/null && wait "$spid"
	[ -n "${rpid:-}" ] && kill "$rpid" 2>/dev/null && wait "$rpid"
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

for p in shmpipe shmpipe-bench; do
	[ -x "$build/$p" ] || { echo "bench-pipeline: no $build/$p; run make" >&2; exit 1; }
done

# redis for the baseline: install it if we may, else go without.
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "installing redis-server and redis-tools for the baseline"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		    redis-server redis-tools >/dev/null 2>&1
	fi
fi
have_redis=0 no_redis="redis-server or redis-benchmark not installed"
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null && have_redis=1

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
field() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A port nobody listens on, from $1 up: a server left over from another
# run would otherwise answer in place of the one started here.
free_port() {
	local p=$1
	while answers "$p"; do p=$((p + 2)); done
	echo "$p"
}
# Until port $1 answers; false as soon as process $2 is gone (say, it
# could not bind), or after 5 s.
wait_port() {
	for _ in $(seq 1 250); do
		kill -0 "$2" 2>/dev/null || return 1
		answers "$1" && return 0
		sleep 0.02
	done
	return 1
}

port=$(free_port "$port")
"$build/shmpipe" --name "$name" --listen "tcp:127.0.0.1:$port" \
    --pidfile "$tmp/pid" --quiet 2>"$tmp/log" &
spid=$!
wait_port "$port" "$spid" || { echo "shmpipe did not start:" >&2; cat "$tmp/log" >&2; exit 1; }
if [ "$have_redis" = 1 ]; then
	rport=$(free_port "$rport")
	redis-server --port "$rport" --save '' --appendonly no \
	    --bind 127.0.0.1 >"$tmp/redis.log" 2>&1 &
	rpid=$!
	if ! wait_port "$rport" "$rpid"; then
		no_redis="redis-server did not start on port $rport: $(tail -n 1 "$tmp/redis.log")"
		have_redis=0
	fi
fi

shmpipe_rate() {	# depth [payload bytes] -> req/s, or FAIL
	local out
	out=$("$build/shmpipe-bench" --tcp "127.0.0.1:$port" -c 50 -d "$1" \
	    -s "${2:-64}" -t "$secs" --json -q) || { echo FAIL; return; }
	echo "$out" | field req_per_s
}

# redis-benchmark counts requests, not seconds: ask for as many as the
# last round's rate gives in $secs, so that both servers run as long.
redis_rate() {		# depth -> req/s
	local n last
	last=$(tail -n 1 "$tmp/r$1" 2>/dev/null)
	n=$(awk -v r="${last:-0}" -v d="$1" -v s="$secs" 'BEGIN {
		if (r <= 0) r = d == 1 ? 80000 : 1000000
		printf "%d", r * s }')
	redis-benchmark -p "$rport" -t ping_inline -c 50 -P "$1" -n "$n" -q 2>/dev/null |
	    tr '\r' '\n' | sed -n 's/.*PING_INLINE: \([0-9.]*\) requests per second.*/\1/p' | tail -1
}

echo "shmpipe pipeline: echo over loopback TCP, 50 connections, ${secs} s per run, median of $rounds rounds"
: >"$tmp/s1"; : >"$tmp/s16"; : >"$tmp/s16t"; : >"$tmp/r1"; : >"$tmp/r16"
: >"$tmp/x1"; : >"$tmp/x16"; : >"$tmp/x16t"
for _ in $(seq 1 "$rounds"); do
	for d in 1 16 16t; do		# 16t: depth 16, the tag alone
		case $d in
		16t)	r=$(shmpipe_rate 16 0) ;;
		*)	r=$(shmpipe_rate "$d") ;;
		esac
		if [ "$r" = FAIL ]; then
			echo "shmpipe-bench reported wrong or missing replies" >&2
			exit 1
		fi
		echo "$r" >>"$tmp/s$d"
		[ "$have_redis" = 1 ] || continue
		# 16t is paired with the redis run of depth 16 next to it.
		[ "$d" != 16t ] && redis_rate "$d" >>"$tmp/r$d"
		tail -n 1 "$tmp/r${d%t}" | awk -v s="$r" '$1 > 0 { print s / $1 }' >>"$tmp/x$d"
	done
done

report() {		# label run redis-run [target]
	local s r
	s=$(median <"$tmp/s$2")
	if [ -n "${4:-}" ]; then
		printf '  %-34s %10.0f req/s  (target >= %s)' "$1" "$s" "$4"
		if awk -v a="$s" -v b="$4" 'BEGIN { exit !(a >= b) }'; then
			printf ' met'
		else
			printf ' MISSED'; missed=1
		fi
	else
		printf '  %-34s %10.0f req/s  (for reference)' "$1" "$s"
	fi
	if [ "$have_redis" = 1 ] && [ -s "$tmp/x$2" ]; then
		r=$(median <"$tmp/r$3")
		printf '; redis %10.0f req/s; shmpipe/redis %.2fx (rounds %s)' \
		    "$r" "$(median <"$tmp/x$2")" \
		    "$(sort -g "$tmp/x$2" | awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), $1 }')"
	fi
	printf '\n'
}
report "unpipelined (depth 1)" 1 1 120000
report "pipelined (depth 16)" 16 16 1000000
report "depth 16, echo of the tag alone" 16t 16
[ "$have_redis" = 1 ] || echo "  (no redis baseline: $no_redis)"

# File mode: 2 M lines of echo through the whole pipeline, out to a file.
awk 'BEGIN { for (i = 0; i < 2000000; i++) printf "echo line %d\n", i }' >"$tmp/in"
: >"$tmp/fm"
for _ in $(seq 1 "$rounds"); do
	t0=$(date +%s.%N)
	"$build/shmpipe" --name "${name}f" --pidfile "$tmp/fpid" --quiet \
	    --input "$tmp/in" --output "$tmp/out" 2>/dev/null || { echo "file mode failed" >&2; exit 1; }
	t1=$(date +%s.%N)
	[ "$(wc -l <"$tmp/out")" = 2000000 ] || { echo "file mode: wrong line count" >&2; exit 1; }
	awk -v a="$t0" -v b="$t1" 'BEGIN { print 2000000 / (b - a) }' >>"$tmp/fm"
done
fm=$(median <"$tmp/fm")
printf '  %-34s %10.0f lines/s (target >= 2000000, start-up included)' "file mode, 2 M lines of echo" "$fm"
if awk -v a="$fm" 'BEGIN { exit !(a >= 2000000) }'; then echo ' met'; else echo ' MISSED'; missed=1; fi

[ "${BENCH_STRICT:-0}" = 1 ] && exit "$missed"
exit 0
