#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# compare.sh - shmpipe (its stages as processes) against shmpipe-threaded
# (the same stages as threads of one process), under the same loads of
# shmpipe-bench over loopback TCP, every reply checked: req/s, p50 and p99
# latency, the memory of all the pipeline's processes, CPU seconds per
# 100 k requests, and the processes/threads throughput ratio on each row.
# Then the faults: a "crash" request under load, to each build.
#
# Writes, under the output directory (default $SHMPIPE_BUILD/compare):
#   compare.csv   one line per load and build
#   compare.txt   the table as printed
#   compare.png   throughput and p99 against connections (gnuplot)
#   faults.txt    what the clients saw of the crash
#
#   SHMPIPE_BUILD=build scripts/compare.sh [--quick] [--seconds N]
#       [--rounds N] [--out DIR]
#
# Each load gets a fresh server of each build, warmed up; then `rounds`
# runs of each, the builds taking turns (so that drift and whatever else
# the machine runs hit both alike), and the medians are reported.
# Memory is the sum over the pipeline's processes (the one started and
# its children) of VmRSS -- a shared page counted once per mapping of it,
# so the queues count once per stage that maps them, and once per thread's
# queue handle in the threaded build -- and of Pss from smaps_rollup,
# shared pages split among their mappers: what the pipeline really costs.
# CPU is utime+stime of the same processes (all threads) over the
# measured runs; shmpipe-bench's own is not counted.
set -u

usage() {
	cat <<'EOF'
usage: scripts/compare.sh [--quick] [--seconds N] [--rounds N] [--out DIR]
       [--verbs LIST] [--connections LIST] [--depths LIST] [--processors LIST]
       [--no-faults]
  (default: echo, sha256, fib and sleep at 1, 16 and 64 connections, depth
  1 and 16, 1, 2 and 4 processors; 3 rounds of 1 s: about 10 minutes)
  --quick       echo and fib, 2 processors only, 1 round (under a minute)
  --seconds N   how long each run is (default 1)
  --rounds N    runs of each load on each build (default 3, --quick 1)
  --verbs "V ..." --connections "N ..." --depths "D ..." --processors "P ..."
                only these loads (quoted lists)
  --no-faults   skip the crash under load
  --out DIR     where the CSV, table and plot go ($SHMPIPE_BUILD/compare)
EOF
}

build=${SHMPIPE_BUILD:-build}
out=
quick=0
secs=
rounds=
o_verbs='' o_conns='' o_depths='' o_procs='' no_faults=0
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--seconds) secs=${2:-}; shift ;;
	--rounds) rounds=${2:-}; shift ;;
	--verbs) o_verbs=${2:-}; shift ;;
	--connections) o_conns=${2:-}; shift ;;
	--depths) o_depths=${2:-}; shift ;;
	--processors) o_procs=${2:-}; shift ;;
	--no-faults) no_faults=1 ;;
	--out) out=${2:-}; shift ;;
	-h|--help) usage; exit 0 ;;
	*) usage >&2; exit 64 ;;
	esac
	shift
done
out=${out:-$build/compare}
if [ "$quick" = 1 ]; then
	verbs="echo fib"; conns_list="1 16 64"; depths="1 16"; procs_list="2"
	secs=${secs:-1}; rounds=${rounds:-1}
else
	verbs="echo sha256 fib sleep"; conns_list="1 16 64"; depths="1 16"
	procs_list="1 2 4"; secs=${secs:-1}; rounds=${rounds:-3}
fi
verbs=${o_verbs:-$verbs}; conns_list=${o_conns:-$conns_list}
depths=${o_depths:-$depths}; procs_list=${o_procs:-$procs_list}
case $secs$rounds in ''|*[!0-9]*) usage >&2; exit 64 ;; esac

for p in shmpipe shmpipe-threaded shmpipe-bench shmq; do
	[ -x "$build/$p" ] || { echo "compare: no $build/$p; run make" >&2; exit 1; }
done
mkdir -p "$out" || exit 1
tmp=$(mktemp -d /tmp/compare.XXXXXX) || exit 1
hz=$(getconf CLK_TCK)
declare -A bin=([processes]=shmpipe [threads]=shmpipe-threaded)
declare -A pid=() target=()
bench_pid=

# shellcheck disable=SC2317	# called through the trap
cleanup() {
	local b
	[ -n "$bench_pid" ] && kill "$bench_pid" 2>/dev/null
	for b in "${!pid[@]}"; do
		[ -n "${pid[$b]}" ] && kill -TERM "${pid[$b]}" 2>/dev/null &&
		    wait "${pid[$b]}" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nobody listens on (the server's own bind is the final word).
pick_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 30000))
		[ "$p" = "${1:-}" ] && continue
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
	echo "compare: no free port" >&2
	exit 1
}
target[processes]=127.0.0.1:$(pick_port)
target[threads]=127.0.0.1:$(pick_port "${target[processes]#*:}")

bench() {	# build, then shmpipe-bench's flags
	local b=$1
	shift
	"$build/shmpipe-bench" --tcp "${target[$b]}" "$@"
}

# Until build b's server answers a request: a real reply, not a nap.
wait_ready() {
	for _ in $(seq 1 2000); do
		kill -0 "${pid[$1]}" 2>/dev/null || return 1
		bench "$1" -c 1 -n 1 -q --timeout 2000 >/dev/null 2>&1 && return 0
		sleep 0.005
	done
	return 1
}

# srv_start BUILD PROCESSORS [FLAG...]: start it, wait until it serves.
srv_start() {
	local b=$1 procs=$2
	shift 2
	"$build/${bin[$b]}" --name "cmp$$$b" --listen "tcp:${target[$b]}" \
	    --pidfile "$tmp/$b.pid" --processors "$procs" --quiet "$@" \
	    2>>"$tmp/$b.log" &
	pid[$b]=$!
	if ! wait_ready "$b"; then
		echo "compare: ${bin[$b]} did not start; its log:" >&2
		tail -5 "$tmp/$b.log" >&2
		exit 1
	fi
}

srv_stop() {
	kill -TERM "${pid[$1]}" 2>/dev/null
	wait "${pid[$1]}" 2>/dev/null
	pid[$1]=
}

# The pipeline's processes: the one we started and its children.
pids_of() {
	echo "$1"
	# cat, not awk over the files: one that ends meanwhile stops mawk.
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v p="$1" '{ s = $0;
	    sub(/.*\) /, "", s); split(s, f, " "); if (f[2] == p) print $1 }'
}

# Clock ticks of user and system time of these processes, all threads.
cpu_ticks() {
	local p t=0 s f
	for p in "$@"; do
		s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		read -r -a f <<<"${s##*) }"
		t=$((t + f[11] + f[12]))
	done
	echo "$t"
}

# "VmRSS-sum Pss-sum" in KiB of these processes.
mem_kib() {
	local p rss=0 pss=0 v
	for p in "$@"; do
		v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
		rss=$((rss + ${v:-0}))
		v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null)
		pss=$((pss + ${v:-0}))
	done
	echo "$rss $pss"
}

field() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p" <<<"$2"; }

verb_args() {
	case $1 in
	echo) echo "-v echo -s 64" ;;
	sha256) echo "-v sha256 -s 1024" ;;
	fib) echo "-v fib" ;;		# fib 0..20, varying
	sleep) echo "-v sleep -a 1" ;;	# 1 ms
	esac
}

# One measured run of a load on build b: "req/s p50 p99 ticks replies".
run_once() {	# build verb conns depth
	local b=$1 v=$2 c=$3 d=$4 json t0 t1 pids
	mapfile -t pids < <(pids_of "${pid[$b]}")
	t0=$(cpu_ticks "${pids[@]}")
	# shellcheck disable=SC2046	# the verb's flags, split on purpose
	json=$(bench "$b" -c "$c" -d "$d" -t "$secs" $(verb_args "$v") --json -q)
	t1=$(cpu_ticks "${pids[@]}")
	if ! grep -q '"passed":true' <<<"$json"; then
		echo "compare: $b $v -c $c -d $d: shmpipe-bench failed: $json" >&2
		exit 1
	fi
	echo "$(field req_per_s "$json") $(field lat_p50_us "$json")" \
	    "$(field lat_p99_us "$json") $((t1 - t0)) $(field replies "$json")"
}

csv=$out/compare.csv
echo "build,verb,connections,depth,processors,seconds,rounds,req_per_s,req_per_s_min,req_per_s_max,p50_us,p99_us,rss_kib,pss_kib,cpu_s,cpu_s_per_100k,replies" >"$csv"

# The CSV line of build b from its rounds (one "run_once" line each):
# medians of rate and latencies, CPU over all rounds, memory at the end.
summarize() {	# build verb conns depth procs
	local b=$1 mem pids
	mapfile -t pids < <(pids_of "${pid[$b]}")
	mem=$(mem_kib "${pids[@]}")
	sort -g "$tmp/runs.$b" | awk -v b="$b" -v v="$2" -v c="$3" -v d="$4" \
	    -v n="$5" -v s="$secs" -v m="$mem" -v hz="$hz" '
	function median(a, k) {
	    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
	{ r[NR] = $1; p50[NR] = $2; p99[NR] = $3; t += $4; rep += $5 }
	END {
		# r[] is sorted (sort -g by rate); latencies need their own sort.
		for (i = 1; i <= NR; i++) for (j = i + 1; j <= NR; j++) {
			if (p50[j] < p50[i]) { x = p50[i]; p50[i] = p50[j]; p50[j] = x }
			if (p99[j] < p99[i]) { x = p99[i]; p99[i] = p99[j]; p99[j] = x }
		}
		split(m, k, " "); cpu = t / hz
		printf "%s,%s,%d,%d,%d,%d,%d,%.0f,%.0f,%.0f,%.1f,%.1f,%d,%d,%.2f,%.3f,%d\n",
		    b, v, c, d, n, s, NR, median(r, NR), r[1], r[NR],
		    median(p50, NR), median(p99, NR), k[1], k[2], cpu,
		    (rep > 0 ? cpu * 100000 / rep : 0), rep
	}' >>"$csv"
}

# One load on both builds: fresh servers, warmed up, then `rounds` runs
# each, the builds taking turns (drift and neighbours hit both alike).
run_load() {	# verb conns depth procs
	local v=$1 c=$2 d=$3 n=$4 b r
	for b in processes threads; do
		srv_start "$b" "$n"
		# Warm up every connection's path and the pages the load uses.
		bench "$b" -c "$c" -d "$d" -n $((c * d * 4)) -q >/dev/null 2>&1
		: >"$tmp/runs.$b"
	done
	for r in $(seq 1 "$rounds"); do
		if [ $(((r + nrun) % 2)) = 1 ]; then
			run_once processes "$v" "$c" "$d" >>"$tmp/runs.processes"
			run_once threads "$v" "$c" "$d" >>"$tmp/runs.threads"
		else
			run_once threads "$v" "$c" "$d" >>"$tmp/runs.threads"
			run_once processes "$v" "$c" "$d" >>"$tmp/runs.processes"
		fi
	done
	for b in processes threads; do
		summarize "$b" "$v" "$c" "$d" "$n"
		srv_stop "$b"
	done
}

nloads=$(( $(wc -w <<<"$procs_list") * $(wc -w <<<"$verbs") *
    $(wc -w <<<"$conns_list") * $(wc -w <<<"$depths") ))
echo "compare: $nloads loads x 2 builds x $rounds round(s) of ${secs} s, over loopback TCP;" \
    "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

nrun=0
for n in $procs_list; do
	for v in $verbs; do
		for c in $conns_list; do
			for d in $depths; do
				nrun=$((nrun + 1))
				[ -t 1 ] && printf '\r  %d/%d: %s -c %d -d %d, %d processor(s)   ' \
				    "$nrun" "$nloads" "$v" "$c" "$d" "$n"
				run_load "$v" "$c" "$d" "$n"
			done
		done
	done
done
[ -t 1 ] && printf '\r%60s\r' ''

# ---- faults -----------------------------------------------------------------

# A load of echo, 16 connections 8 deep, re-opening dropped connections,
# with "crash" as request K of connection 0: what its clients see.
if [ "$quick" = 1 ]; then fault_n=80000; fault_k=1500; else fault_n=320000; fault_k=5000; fi
fault_load() {	# build
	bench "$1" -c 16 -d 8 -n "$fault_n" --crash-at "$fault_k" --reconnect \
	    --json -q 2>/dev/null
}

# "ok N, ERR N, ..." of a run's summary.
fault_seen() {
	local j=$1
	printf 'answered OK %s, ERR %s, wrong %s, lost in flight %s, connections dropped %s, reconnects %s, p99 %s us, slowest reply %s ms' \
	    "$(field ok "$j")" "$(field err "$j")" "$(field wrong "$j")" \
	    "$(( $(field missing "$j") + $(field abandoned "$j") ))" \
	    "$(field connections_dropped "$j")" "$(field reconnects "$j")" \
	    "$(field lat_p99_us "$j")" \
	    "$(awk -v u="$(field lat_max_us "$j")" 'BEGIN { printf "%.1f", u / 1000 }')"
}

faults() {
	local j st t_dead t_up ended restarts

	echo "Faults: \"crash\" as request $fault_k of connection 0 of a load of $fault_n echo requests,"
	echo "16 connections 8 deep, clients re-opening dropped connections (--reconnect); 2 processors."
	srv_start processes 2 --enable-crash
	j=$(fault_load processes)
	# The pipeline's "restarts" comes before its processes' own.
	restarts=$("$build/shmq" ps -o json "cmp$$processes" 2>/dev/null |
	    grep -o '"restarts":[0-9]*' | head -1 | cut -d: -f2)
	kill -0 "${pid[processes]}" 2>/dev/null && st="still serving" || st="GONE"
	srv_stop processes
	echo "  shmpipe (processes): $(fault_seen "$j")."
	echo "    The supervisor restarted a processor ${restarts:-?} time(s) (the request is tried"
	echo "    --max-deliveries times, then answered ERR); the pipeline was $st."

	srv_start threads 2 --enable-crash
	fault_load threads >"$tmp/fault.json" &
	bench_pid=$!
	# (Quiet: bash would say "Segmentation fault" on reaping it.)
	wait -n -p ended "${pid[threads]}" "$bench_pid" 2>/dev/null
	st=$?
	if [ "${ended:-}" != "${pid[threads]}" ]; then
		echo "  shmpipe-threaded: survived the crash request?!"
		wait "$bench_pid"
		bench_pid=
		srv_stop threads
		return
	fi
	t_dead=$EPOCHREALTIME
	# Restart it at once, as a service manager would (Restart=always).
	srv_start threads 2 --enable-crash
	t_up=$EPOCHREALTIME
	wait "$bench_pid"
	bench_pid=
	j=$(cat "$tmp/fault.json")
	srv_stop threads
	echo "  shmpipe-threaded: the whole process died (exit status $st: $( [ "$st" -gt 128 ] &&
	    kill -l $((st - 128)) ));"
	echo "    $(fault_seen "$j")."
	awk -v a="$t_dead" -v b="$t_up" 'BEGIN { printf "    No service for %.0f ms: from its death until a new one, started at once\n", (b - a) * 1000 }'
	echo "    by this script as a service manager would, answered (connections refused meanwhile;"
	echo "    with nobody to restart it, refused for good)."
}
if [ "$no_faults" = 0 ]; then
	faults | tee "$out/faults.txt"
	echo
fi

# ---- the table --------------------------------------------------------------

table() {
	awk -F, 'NR > 1 {
		k = $2 FS $3 FS $4 FS $5
		if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
		b = $1 == "processes" ? "p" : "t"
		rate[k, b] = $8; best[k, b] = $10; p50[k, b] = $11; p99[k, b] = $12
		sp = $8 > 0 ? ($10 - $9) / $8 * 100 : 0
		if (sp > spread[k]) spread[k] = sp
		rss[k, b] = $13 / 1024; pss[k, b] = $14 / 1024; cpu[k, b] = $16
		rounds = $7
	}
	END {
		printf "%-6s %4s %5s %5s | %10s %10s %5s %5s %6s | %13s | %15s | %11s | %11s | %11s\n",
		    "verb", "conn", "depth", "procs", "proc req/s", "thr req/s",
		    "p/t", "best", "spread", "p50 us p / t", "p99 us p / t",
		    "RSS MiB p/t", "PSS MiB p/t", "CPU s/100k"
		short = 0
		for (i = 1; i <= nk; i++) {
			k = order[i]; split(k, f, FS)
			r = rate[k, "t"] > 0 ? rate[k, "p"] / rate[k, "t"] : 0
			rb = best[k, "t"] > 0 ? best[k, "p"] / best[k, "t"] : 0
			if (r < 0.9) short++
			printf "%-6s %4d %5d %5d | %10.0f %10.0f %5.2f%s %5.2f %5.0f%% | %6.0f/%-6.0f | %7.0f/%-7.0f | %5.1f/%-5.1f | %5.1f/%-5.1f | %5.2f/%-5.2f\n",
			    f[1], f[2], f[3], f[4], rate[k, "p"], rate[k, "t"], r,
			    r < 0.9 ? "*" : " ", rb, spread[k], p50[k, "p"], p50[k, "t"],
			    p99[k, "p"], p99[k, "t"], rss[k, "p"], rss[k, "t"],
			    pss[k, "p"], pss[k, "t"], cpu[k, "p"], cpu[k, "t"]
		}
		printf "\nreq/s, p50, p99: medians of %d round(s); p/t: processes req/s over threads req/s, * below 0.9\n", rounds
		printf "(%d of %d rows); best: the same ratio of the fastest rounds; spread: (max - min) / median\n", short, nk
		printf "of req/s over the rounds, the larger of the two builds'"'"'.\n"
		printf "RSS: sum of VmRSS (a shared page once per mapping); PSS: sum of Pss (shared pages split).\n"
		printf "CPU: user+system seconds of the pipeline'"'"'s processes per 100k requests answered.\n"
	}' "$csv"
}
table | tee "$out/compare.txt"

# ---- the plot ---------------------------------------------------------------

# gnuplot: install it if we may, else say why there is no plot.
if ! command -v gnuplot >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "installing gnuplot-nox for the plot"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox \
		    >/dev/null 2>&1
	fi
fi
plot() {
	local pp nv col v d b term sep rgb
	# The plot shows one processor count: 2 if measured, else the first.
	pp=$(tr ' ' '\n' <<<"$procs_list" | grep -qx 2 && echo 2 ||
	    echo "${procs_list%% *}")
	nv=$(wc -w <<<"$verbs")
	for v in $verbs; do
		for d in $depths; do
			for b in processes threads; do
				awk -F, -v b="$b" -v v="$v" -v d="$d" -v n="$pp" \
				    '$1 == b && $2 == v && $4 == d && $5 == n {
				    print $3, $8, $12 }' "$csv" >"$tmp/$b-$v-$d.dat"
			done
		done
	done
	term=png
	gnuplot -e 'set terminal pngcairo' >/dev/null 2>&1 && term=pngcairo
	{
		echo "set terminal $term size $((nv * 420)),720 noenhanced"
		echo "set output '$out/compare.png'"
		echo "set multiplot layout 2,$nv title 'shmpipe: processes (solid) against threads (dashed), $pp processors, loopback TCP, median of $rounds x ${secs} s'"
		echo "set logscale x 2; set xtics (1, 16, 64); set xrange [0.8:80]"
		echo "set key top left Left reverse samplen 2 spacing 0.9; set grid; set xlabel 'connections'"
		for col in 2 3; do
			for v in $verbs; do
				if [ "$col" = 2 ]; then
					echo "set title '$v: throughput'; set ylabel 'req/s'; set logscale y"
				else
					echo "set title '$v: p99 latency'; set ylabel 'us'; set logscale y"
				fi
				printf "plot "
				sep=""
				for d in $depths; do
					rgb=$([ "$d" = 1 ] && echo '#1f77b4' || echo '#d62728')
					printf "%s'%s' using 1:%s with linespoints lw 2 pt 7 lc rgb '%s' dt 1 title 'processes, depth %s', " \
					    "$sep" "$tmp/processes-$v-$d.dat" "$col" "$rgb" "$d"
					printf "'%s' using 1:%s with linespoints lw 2 pt 6 lc rgb '%s' dt 2 title 'threads, depth %s'" \
					    "$tmp/threads-$v-$d.dat" "$col" "$rgb" "$d"
					sep=", "
				done
				echo
			done
		done
		echo "unset multiplot"
	} >"$tmp/plot.gp"
	gnuplot "$tmp/plot.gp" 2>"$tmp/gnuplot.err"
}
if command -v gnuplot >/dev/null; then
	if plot && [ -s "$out/compare.png" ]; then
		echo "plot: $out/compare.png"
	else
		echo "compare: gnuplot failed; no plot:" >&2
		cat "$tmp/gnuplot.err" >&2
	fi
else
	echo "compare: no gnuplot (apt-get install gnuplot-nox, as root); no plot"
fi
echo "figures: $csv, $out/compare.txt"
