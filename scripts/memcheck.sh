#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# memcheck.sh - a short shmpipe pipeline under valgrind's memcheck, every
# process of it (the supervisor, each stage, each restarted stage): load
# from shmpipe-bench, a processor SIGKILLed and replaced, more load, a
# reply process killed and replaced, then SIGTERM and the drain.  Every
# process that ended by itself must report no error and no definite or
# indirect leak; the load must be answered right; nothing may be left in
# /dev/shm.  shmpipe-bench runs under valgrind too.
#
#   SHMPIPE_BUILD=build scripts/memcheck.sh     (make memcheck)
#   MEMCHECK_KEEP=1 ...                         keep valgrind's logs
set -u

build=${SHMPIPE_BUILD:-build}
tmp=$(mktemp -d /tmp/memcheck.XXXXXX)
name="memcheck$$"
spid=
failed=0
vg=(valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect
    --show-leak-kinds=definite,indirect --error-exitcode=1 --trace-children=yes
    --child-silent-after-fork=no --log-file="$tmp/vg.%p")

# valgrind: install it if we may (as bench-pipeline.sh does redis).
if ! command -v valgrind >/dev/null && [ "$(id -u)" = 0 ] &&
    command -v apt-get >/dev/null; then
	echo "installing valgrind"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null 2>&1 ||
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq valgrind >/dev/null 2>&1; }
fi
command -v valgrind >/dev/null || { echo "memcheck: valgrind is not installed; run: sudo apt-get install valgrind" >&2; exit 2; }
for p in shmpipe shmpipe-bench shmq; do
	[ -x "$build/$p" ] || { echo "memcheck: no $build/$p; run make" >&2; exit 2; }
done

# shellcheck disable=SC2317	# called through the trap
cleanup() {
	if [ -n "$spid" ] && kill -0 "$spid" 2>/dev/null; then
		kill -KILL "$spid" 2>/dev/null
		wait "$spid" 2>/dev/null
	fi
	if [ "$failed" != 0 ] || [ -n "${MEMCHECK_KEEP:-}" ]; then
		echo "memcheck: logs kept in $tmp" >&2
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
	echo "memcheck: $*" >&2
	failed=1
	exit 1
}

table() {	# "PID ROLE STATE" of each stage alive
	"$build/shmq" ps -o json "$name" 2>/dev/null |
	    grep -o '"pid":[0-9]*,"role":"[a-z]*","index":[0-9]*,"generation":[0-9]*,"state":"[A-Z]*","alive":true' |
	    sed 's/"pid":\([0-9]*\),"role":"\([a-z]*\)".*"state":"\([A-Z]*\)".*/\1 \2 \3/'
}

# Wait until every stage is READY and, if given, pid is no longer there.
wait_ready() {
	local gone=${1:-} deadline=$(( $(date +%s) + 120 ))
	until table | awk -v g="$gone" '{ n++; if ($3 == "READY") r++; if ($1 == g) bad = 1 }
	    END { exit !(n == 4 && n == r && !bad) }'; do
		kill -0 "$spid" 2>/dev/null || fail "shmpipe ended: $(tail -5 "$tmp/log")"
		[ "$(date +%s)" -lt "$deadline" ] || fail "stages not ready in 120 s"
		sleep 0.2
	done
}

pid_of() {	# role -> pid
	table | awk -v r="$1" '$2 == r { print $1; exit }'
}

bench() {	# requests
	"${vg[@]}" "$build/shmpipe-bench" --unix "$tmp/sock" -c 4 -d 8 -n "$1" \
	    --timeout 60000 --json -q >>"$tmp/bench.json" 2>>"$tmp/bench.err" ||
	    fail "shmpipe-bench: $(tail -1 "$tmp/bench.json") $(cat "$tmp/bench.err")"
}

"${vg[@]}" "$build/shmpipe" --name "$name" --listen "unix:$tmp/sock" \
    --processors 2 --pidfile "$tmp/pid" 2>"$tmp/log" &
spid=$!
wait_ready
echo "memcheck: pipeline $name under valgrind; load, a processor killed, load, the reply process killed, load, drain"
bench 2000
victim=$(pid_of processor)
kill -KILL "$victim"
wait_ready "$victim"
bench 2000
victim=$(pid_of reply)
kill -KILL "$victim"
wait_ready "$victim"
bench 2000
kill -TERM "$spid"
wait "$spid"
rc=$?
spid=
[ "$rc" = 0 ] || fail "shmpipe exited $rc under valgrind: $(tail -5 "$tmp/log")"
left=$(ls /dev/shm 2>/dev/null | grep -c "^shmpipe\.$name\.")
[ "$left" = 0 ] || fail "$left segment(s) left in /dev/shm"

# Each process's report; one killed on purpose has none (it never exited).
reports=0
killed=0
for f in "$tmp"/vg.*; do
	if ! grep -q 'ERROR SUMMARY' "$f"; then
		killed=$((killed + 1))
		continue
	fi
	reports=$((reports + 1))
	if ! grep -q 'ERROR SUMMARY: 0 errors' "$f"; then
		echo "memcheck: $f:" >&2
		cat "$f" >&2
		failed=1
	fi
done
[ "$failed" = 0 ] || fail "valgrind reported errors or leaks (above)"
[ "$killed" = 2 ] || fail "$killed processes without a report, expected the 2 killed"
echo "memcheck: $reports processes checked (the supervisor, the stages and their successors, 3 benches): no error, no leak"
