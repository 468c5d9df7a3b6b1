#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# chaos.sh - a shmpipe pipeline under load from shmpipe-bench while its
# stage processes are SIGKILLed at random intervals and others are paused
# with SIGSTOP/SIGCONT; then it is stopped with SIGTERM, and the run is
# judged: every reply right, none lost, repeated or out of order, nothing
# left in /dev/shm.
#
# Victims come from the pipeline's own process table (shmq ps -o json),
# never from a name lookup: other pipelines on the machine are not touched.
# Each kill picks a role at random among --roles, then a live process of
# that role, in any state: one still starting too (a SIGKILL is no start
# failure to the supervisor, so it is no crash loop).
#
#   scripts/chaos.sh [options]           (SHMPIPE_BUILD=build by default)
#     -t, --duration S       how long the load and the kills last (30)
#     -i, --interval MS      mean time between SIGKILLs, jittered 50-150 % (100)
#     -r, --roles LIST       processor,request,reply (all three)
#     -s, --stop-rate N      SIGSTOPs per second, each of a random stage for
#                            1..--stop-ms, then SIGCONT; 0 = none (2)
#         --stop-ms MS       longest pause (300)
#     -c, --connections N    shmpipe-bench connections (16)
#     -d, --depth D          requests in flight per connection (16)
#     -p, --processors N     processors (4)
#     -v, --verb VERB        what shmpipe-bench asks (echo); fib or sha256
#                            keep the processors busy
#         --tcp | --unix     transport (tcp)
#         --allow-drops      re-open connections the server closes and
#                            count the drops instead of failing (a reply
#                            process killed inside writev(2) on a Unix
#                            socket closes that connection; see README)
#         --seed N           for $RANDOM: the same choices of roles and
#                            pauses (their timing still varies)
#         --keep             keep the logs (printed where) even on success
#         --json             also print the figures as one JSON object
#
# Exit 0 when nothing was lost, wrong, duplicated or reordered, no
# connection dropped (unless --allow-drops) or timed out, the supervisor
# exited 0 after SIGTERM and left no segment; 1 otherwise; 2 bad usage or
# the pipeline did not start.
set -u

build=${SHMPIPE_BUILD:-build}
duration=30
interval=100
roles=processor,request,reply
stop_rate=2
stop_ms=300
conns=16
depth=16
procs=4
verb=echo
transport=tcp
allow_drops=0
keep=0
json=0
seed=$$

usage() {
	sed -n '/^#   scripts/,/^# Exit/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

num() {		# option value -> value, or usage
	[[ $2 =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "chaos: $1 '$2': expected a number" >&2; exit 2; }
	echo "$2"
}

while [ $# -gt 0 ]; do
	case $1 in
	-t|--duration) duration=$(num "$1" "${2-}"); shift ;;
	-i|--interval) interval=$(num "$1" "${2-}"); shift ;;
	-r|--roles) roles=${2-}; shift ;;
	-s|--stop-rate) stop_rate=$(num "$1" "${2-}"); shift ;;
	--stop-ms) stop_ms=$(num "$1" "${2-}"); shift ;;
	-c|--connections) conns=$(num "$1" "${2-}"); shift ;;
	-d|--depth) depth=$(num "$1" "${2-}"); shift ;;
	-p|--processors) procs=$(num "$1" "${2-}"); shift ;;
	-v|--verb) verb=${2-}; shift ;;
	--tcp) transport=tcp ;;
	--unix) transport=unix ;;
	--allow-drops) allow_drops=1 ;;
	--seed) seed=$(num "$1" "${2-}"); shift ;;
	--keep) keep=1 ;;
	--json) json=1 ;;
	-h|--help) usage ;;
	*) echo "chaos: unknown option '$1'" >&2; usage ;;
	esac
	shift
done
for r in ${roles//,/ }; do
	case $r in processor|request|reply) ;;
	*) echo "chaos: --roles: '$r' is not processor, request or reply" >&2; exit 2 ;;
	esac
done
read -r -a role_list <<<"${roles//,/ }"
[ "${#role_list[@]}" -gt 0 ] || [ "$interval" = 0 ] || { echo "chaos: --roles is empty" >&2; exit 2; }
[ "${duration%.*}" -ge 1 ] || { echo "chaos: --duration must be at least 1 s" >&2; exit 2; }
for p in shmpipe shmpipe-bench shmq; do
	[ -x "$build/$p" ] || { echo "chaos: no $build/$p; run make" >&2; exit 2; }
done
RANDOM=$seed

tmp=$(mktemp -d /tmp/chaos.XXXXXX)
name="chaos$$"
log=$tmp/shmpipe.log
spid=
bpid=
failed=0

# shellcheck disable=SC2317	# called through the trap
cleanup() {
	[ -n "$bpid" ] && kill "$bpid" 2>/dev/null
	if [ -n "$spid" ] && kill -0 "$spid" 2>/dev/null; then
		kill -CONT $(stage_pids) 2>/dev/null
		kill -TERM "$spid" 2>/dev/null
		wait "$spid" 2>/dev/null
	fi
	if [ "$keep" = 1 ] || [ "$failed" != 0 ]; then
		echo "chaos: logs kept in $tmp" >&2
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- the process table -------------------------------------------------

ps_json() {
	"$build/shmq" ps -o json "$name" 2>/dev/null
}

# "PID ROLE STATE" lines, one for each stage process alive in the table.
table() {
	ps_json | grep -o '"pid":[0-9]*,"role":"[a-z]*","index":[0-9]*,"generation":[0-9]*,"state":"[A-Z]*","alive":true' |
	    sed 's/"pid":\([0-9]*\),"role":"\([a-z]*\)".*"state":"\([A-Z]*\)".*/\1 \2 \3/'
}

stage_pids() {
	table | while read -r pid _ _; do [ "$pid" -gt 0 ] && echo "$pid"; done
}

# A random live pid of role (starting, ready or busy), else of any role in
# --roles; fails if none is.
pick() {
	local role=$1 pid r st mine=() any=() x
	while read -r pid r st; do
		[ "$pid" -gt 0 ] && { [ "$st" = STARTING ] || [ "$st" = READY ] ||
		    [ "$st" = BUSY ]; } || continue
		[[ ,$roles, == *,$r,* ]] || continue
		any+=("$pid")
		[ "$r" = "$role" ] && mine+=("$pid")
	done < <(table)
	[ "${#any[@]}" -gt 0 ] || return 1
	if [ "${#mine[@]}" -gt 0 ]; then
		x=${mine[RANDOM % ${#mine[@]}]}
	else
		x=${any[RANDOM % ${#any[@]}]}
	fi
	echo "$x"
}

# Is pid still a child of our supervisor (not a number used again)?
ours() {
	local stat rest
	{ read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
	rest=${stat##*) }		# after "pid (comm) ": "S PPID ..."
	read -r _ ppid _ <<<"$rest"
	[ "$ppid" = "$spid" ]
}

field() {	# JSON key -> its number, the first occurrence
	grep -o "\"$1\":[0-9.e+-]*" | head -1 | cut -d: -f2
}

now_us() {
	local t=${EPOCHREALTIME/./}
	echo "$t"
}

# Sleep until the time now_us() will read `until` (microseconds).
sleep_until() {
	local left=$(( $1 - $(now_us) ))
	[ "$left" -gt 0 ] || return 0
	sleep "$(printf '%d.%06d' $((left / 1000000)) $((left % 1000000)))"
}

# ---- start -------------------------------------------------------------

if [ "$transport" = tcp ]; then
	listen="tcp:127.0.0.1:0"		# a free port; the log names it
else
	listen="unix:$tmp/sock"
fi
"$build/shmpipe" --name "$name" --listen "$listen" --processors "$procs" \
    --pidfile "$tmp/pid" 2>"$log" &
spid=$!

deadline=$(( $(date +%s) + 30 ))
until table | awk '{ n++; if ($3 == "READY") r++ } END { exit !(n > 0 && n == r) }'; do
	if ! kill -0 "$spid" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; then
		echo "chaos: shmpipe did not start:" >&2; cat "$log" >&2
		failed=1; exit 2
	fi
	sleep 0.05
done
if [ "$transport" = tcp ]; then
	port=$(sed -n 's/.*listening on tcp:127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
	target=(--tcp "127.0.0.1:$port")
else
	target=(--unix "$tmp/sock")
fi
bench_args=("${target[@]}" -c "$conns" -d "$depth" -v "$verb" -t "${duration%.*}" --json -q)
[ "$allow_drops" = 1 ] && bench_args+=(--reconnect)

echo "chaos: pipeline $name ($transport, $procs processors), $verb ${conns}x$depth for ${duration%.*} s;" \
    "SIGKILL every ~$interval ms of ${roles}; $stop_rate SIGSTOP/s up to $stop_ms ms; seed $seed"

"$build/shmpipe-bench" "${bench_args[@]}" >"$tmp/bench.json" 2>"$tmp/bench.err" &
bpid=$!
end_us=$(( $(now_us) + ${duration%.*} * 1000000 ))

# ---- the chaos ---------------------------------------------------------

# SIGKILL a random up stage of a random role, every interval (jittered
# 50-150 %, kept to the schedule whatever the look-ups cost).
killer() {
	local n=0 miss=0 role pid next
	RANDOM=$((seed + 1))		# a subshell: its own sequence
	next=$(now_us)
	while :; do
		next=$(( next + (interval / 2 + RANDOM % (interval + 1)) * 1000 ))
		[ "$next" -lt "$end_us" ] || break
		sleep_until "$next"
		role=${role_list[RANDOM % ${#role_list[@]}]}
		if pid=$(pick "$role") && ours "$pid" && kill -KILL "$pid" 2>/dev/null; then
			n=$((n + 1))
			echo "$EPOCHREALTIME kill $pid" >>"$tmp/chaos.log"
		else
			miss=$((miss + 1))
		fi
	done
	echo "$n $miss" >"$tmp/kills"
}

# SIGSTOP a random stage (any role), wait, SIGCONT it.
stopper() {
	local n=0 pid gap pause next
	trap '[ -n "${pid:-}" ] && kill -CONT "$pid" 2>/dev/null; exit 0' TERM
	RANDOM=$((seed + 2))
	gap=$(awk -v r="$stop_rate" 'BEGIN { print int(1000 / r) }')
	next=$(now_us)
	while :; do
		next=$(( next + (gap / 2 + RANDOM % (gap + 1)) * 1000 ))
		[ "$next" -lt "$end_us" ] || break
		sleep_until "$next"
		pid=$(stage_pids | awk -v k=$RANDOM '{ a[NR] = $1 } END { if (NR) print a[k % NR + 1] }')
		[ -n "$pid" ] && ours "$pid" || { pid=; continue; }
		pause=$(( 1 + RANDOM % stop_ms ))
		kill -STOP "$pid" 2>/dev/null || { pid=; continue; }
		echo "$EPOCHREALTIME stop $pid ${pause}ms" >>"$tmp/chaos.log"
		sleep_until $(( $(now_us) + pause * 1000 ))
		kill -CONT "$pid" 2>/dev/null
		next=$(now_us)
		pid=
		n=$((n + 1))
	done
	echo "$n" >"$tmp/stops"
}

kpid=
stpid=
if [ "${#role_list[@]}" -gt 0 ] && [ "$interval" != 0 ]; then
	killer & kpid=$!
fi
if awk -v r="$stop_rate" 'BEGIN { exit !(r > 0) }'; then
	stopper & stpid=$!
fi
[ -n "$kpid" ] && wait "$kpid"
[ -n "$stpid" ] && wait "$stpid"

# The load drains its last replies (10 s --timeout at most per request).
wait "$bpid"
bench_rc=$?
bpid=
before=$(ps_json)

# ---- stop and judge ----------------------------------------------------

kill -TERM "$spid"
wait "$spid"
sv_rc=$?
spid=
left=$(ls /dev/shm 2>/dev/null | grep -c "^shmpipe\.$name\.")

b=$(cat "$tmp/bench.json")
get() { echo "$b" | field "$1"; }
sent=$(get sent); replies=$(get replies); ok=$(get ok); err=$(get err)
wrong=$(get wrong); ooo=$(get out_of_order); missing=$(get missing)
dup=$(get duplicated); abandoned=$(get abandoned)
dropped=$(get connections_dropped); reconnects=$(get reconnects)
timeouts=$(get timeouts); rate=$(get req_per_s); p99=$(get lat_p99_us)
latmax=$(get lat_max_us)
if [ -z "$sent" ]; then
	echo "chaos: shmpipe-bench printed no summary (exit $bench_rc):" >&2
	cat "$tmp/bench.err" >&2
	failed=1; exit 1
fi
read -r kills kill_miss <"$tmp/kills" 2>/dev/null || { kills=0; kill_miss=0; }
stops=$(cat "$tmp/stops" 2>/dev/null || echo 0)
restarts=$(echo "$before" | field restarts)
redelivered=$(echo "$before" | field redelivered)
lost=$((missing + abandoned))
deaths=$(grep -c 'killed by signal 9' "$log")
k_proc=$(grep -c 'processor [0-9]* (pid [0-9]*) killed by signal 9' "$log")
k_req=$(grep -c 'request (pid [0-9]*) killed by signal 9' "$log")
k_rep=$(grep -c 'reply (pid [0-9]*) killed by signal 9' "$log")
redeliver_lines=$(grep -c 'redelivered [0-9]* message' "$log")
dead_read=$(grep -c 'read by a dead request process taken up' "$log")
dead_sent=$(grep -c 'a dead reply process sent counted' "$log")
unix_closed=$(grep -c 'cannot say how much went out; closing it' "$log")
quarantined=$(grep -c 'quarantined request' "$log")

printf 'chaos: %s s, %s SIGKILLs (%s processor, %s request, %s reply; %s found no stage up), %s SIGSTOP/SIGCONT\n' \
    "${duration%.*}" "$kills" "$k_proc" "$k_req" "$k_rep" "$kill_miss" "$stops"
printf '  requests sent      %s\n' "$sent"
printf '  replies received   %s (%s OK, %s ERR), %s req/s, p99 %s us, max %s us\n' \
    "$replies" "$ok" "$err" "$rate" "$p99" "$latmax"
printf '  lost               %s (%s missing, %s abandoned with a dropped connection)\n' \
    "$lost" "$missing" "$abandoned"
printf '  wrong              %s\n' "$wrong"
printf '  duplicated         %s\n' "$dup"
printf '  out of order       %s\n' "$ooo"
printf '  connections        %s dropped, %s re-opened, %s timed out\n' "$dropped" "$reconnects" "$timeouts"
printf '  restarts           %s (%s deaths by SIGKILL logged)\n' "$restarts" "$deaths"
printf '  redeliveries       %s messages (%s recoveries that redelivered)\n' "$redelivered" "$redeliver_lines"
printf '  taken up           %s reads of a dead request process, %s writes of a dead reply process\n' \
    "$dead_read" "$dead_sent"
printf '  closed (unix)      %s connections a reply process died writing to\n' "$unix_closed"
printf '  quarantined        %s requests\n' "$quarantined"
printf '  shutdown           supervisor exit %s, %s segment(s) left in /dev/shm\n' "$sv_rc" "$left"

if [ "$json" = 1 ]; then
	printf '{"duration_s":%s,"interval_ms":%s,"roles":"%s","transport":"%s","kills":%s,"kill_misses":%s,' \
	    "${duration%.*}" "$interval" "$roles" "$transport" "$kills" "$kill_miss"
	printf '"kills_processor":%s,"kills_request":%s,"kills_reply":%s,"stops":%s,' \
	    "$k_proc" "$k_req" "$k_rep" "$stops"
	printf '"sent":%s,"replies":%s,"ok":%s,"err":%s,"lost":%s,"wrong":%s,"duplicated":%s,' \
	    "$sent" "$replies" "$ok" "$err" "$lost" "$wrong" "$dup"
	printf '"out_of_order":%s,"dropped":%s,"timeouts":%s,"restarts":%s,"redelivered":%s,' \
	    "$ooo" "$dropped" "$timeouts" "$restarts" "$redelivered"
	printf '"quarantined":%s,"unix_closed":%s,"supervisor_exit":%s,"segments_left":%s,"req_per_s":%s}\n' \
	    "$quarantined" "$unix_closed" "$sv_rc" "$left" "$rate"
fi

why=()
if [ "$allow_drops" = 1 ]; then
	[ "$missing" -eq 0 ] || why+=("$missing lost")
else
	[ "$lost" -eq 0 ] || why+=("$lost lost")
fi
[ "$wrong" -eq 0 ] || why+=("$wrong wrong")
[ "$dup" -eq 0 ] || why+=("$dup duplicated")
[ "$ooo" -eq 0 ] || why+=("$ooo out of order")
[ "$timeouts" -eq 0 ] || why+=("$timeouts timed out")
[ "$dropped" -eq 0 ] || [ "$allow_drops" = 1 ] || why+=("$dropped dropped")
[ "$sv_rc" -eq 0 ] || why+=("supervisor exit $sv_rc")
# Whatever its figures say, the load generator's own verdict counts too
# (a connection it could not open again, say).
[ "$bench_rc" -eq 0 ] || why+=("shmpipe-bench exit $bench_rc")
[ "$left" -eq 0 ] || why+=("$left segment(s) left")
if [ "${#why[@]}" -gt 0 ]; then
	failed=1
	echo "chaos: FAIL: ${why[*]}"
	grep -v 'started\|killed by signal 9\|redelivered\|restarting' "$log" | tail -20 >&2
	head -c 2000 "$tmp/bench.err" >&2
	exit 1
fi
echo "chaos: PASS"
exit 0
