#!/usr/bin/env bash
# The spec's four-terminal example as four processes: producer -> pipe 0 ->
# filter -> pipe 1 -> consumer, and a coordinator on shard 0. Checks the
# summary lines and that the numbers add up (written = read by the filter,
# the filter's written = the consumer's read), the coordinator's count, the
# monster-status line formats (text and JSON) and the coordination log.
set -euo pipefail
B=${FERRY_BUILD_DIR:?set by ctest}
export FERRY_MONSTER_NAME=pipe$$
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  "$B/monster-status" reset || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$tmp"/*.out "$tmp"/*.err; do echo "--- $f"; cat "$f"; done >&2; exit 1; }

N=1000
# Every app waits (up to 30 s) to be coordinated before it starts; the
# coordinator waits until the 3 apps are ready, so the round counts 3.
# Keep every sample (--keep-idle) in one run to check the sums exactly, then
# the default filter (drops idle samples) in a second run.
run() {
  local filter_args=$1 tag=$2
  "$B/consumer" --ring 1 --wait-coord 30000 --top 3 >"$tmp/consumer$tag.out" 2>"$tmp/consumer$tag.err" & pids+=($!)
  local cpid=$!
  "$B/filter" --in-ring 0 --out-ring 1 $filter_args --wait-coord 30000 >"$tmp/filter$tag.out" 2>"$tmp/filter$tag.err" & pids+=($!)
  local fpid=$!
  "$B/producer" --ring 0 --count $N --rate 50 --wait-coord 30000 >"$tmp/producer$tag.out" 2>"$tmp/producer$tag.err" & pids+=($!)
  local ppid=$!
  timeout 60 "$B/coordinator" --shard 0 --interval 100 --apps 3 --count 1 >"$tmp/coordinator$tag.out" 2>"$tmp/coordinator$tag.err" \
    || fail "coordinator"
  for p in $ppid $fpid $cpid; do timeout 60 tail --pid=$p -f /dev/null || fail "process $p did not end"; wait $p || fail "process $p failed"; done
}

check_numbers() {
  local tag=$1
  local P F C K
  P=$(grep -E '^Producer: Wrote [0-9]+ samples to ring 0$' "$tmp/producer$tag.out") || fail "producer line"
  F=$(grep -E '^Filter: Read [0-9]+ samples, wrote [0-9]+ to ring 1$' "$tmp/filter$tag.out") || fail "filter line"
  C=$(grep -E '^Consumer: Read [0-9]+ samples, processed [0-9]+$' "$tmp/consumer$tag.out") || fail "consumer line"
  K=$(grep -E '^Coordinator: Coordinated [0-9]+ apps on shard 0$' "$tmp/coordinator$tag.out") || fail "coordinator line"
  local wrote fread fwrote cread cproc capps
  wrote=$(echo "$P" | awk '{print $3}')
  fread=$(echo "$F" | awk '{print $3}')
  fwrote=$(echo "$F" | awk '{print $6}')
  cread=$(echo "$C" | awk '{print $3}')
  cproc=$(echo "$C" | awk '{print $6}')
  capps=$(echo "$K" | awk '{print $3}')
  echo "run$tag: $P | $F | $C | $K"
  [ "$wrote" -eq $N ] || fail "producer wrote $wrote, expected $N"
  [ "$fread" -eq "$wrote" ] || fail "filter read $fread, producer wrote $wrote"
  [ "$cread" -eq "$fwrote" ] || fail "consumer read $cread, filter wrote $fwrote"
  [ "$cproc" -eq "$cread" ] || fail "consumer processed $cproc of $cread"
  [ "$capps" -eq 3 ] || fail "coordinator coordinated $capps apps, expected 3"
  echo "$fwrote"
}

run --keep-idle A
kept=$(check_numbers A | tail -1)
[ "$kept" -eq $N ] || fail "--keep-idle filter wrote $kept of $N"
grep -qE '^Top [1-3] processes by CPU:$' "$tmp/consumerA.out" || fail "consumer's top list"
run "" B
kept=$(check_numbers B | tail -1)
# Every scan of /proc has idle threads (this shell, sleeping daemons): the
# default filter must drop some of the N samples.
[ "$kept" -lt $N ] || fail "default filter dropped no idle sample ($kept of $N kept)"

# Status views: exact line formats.
"$B/monster-status" pipes >"$tmp/pipes.out"
[ "$(wc -l <"$tmp/pipes.out")" -eq 15 ] || fail "15 pipe lines"
grep -qE '^Pipe 0: producer=0, consumer=0, readers=0, writers=0, closed=1$' "$tmp/pipes.out" || fail "pipe 0 line"
grep -qE '^Pipe 14: producer=0, consumer=0, readers=0, writers=0, closed=0$' "$tmp/pipes.out" || fail "pipe 14 line"
"$B/monster-status" --json pipes | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert len(d["pipes"]) == 15 and d["pipes"][0]["prime"] == 2 and d["pipes"][14]["prime"] == 71, d
' || fail "pipes --json"

# A live wait state and a live pipe end, seen by the status views.
"$B/consumer" --ring 5 --shard 9 >"$tmp/c5.out" 2>&1 & pids+=($!)
c5=$!
for _ in $(seq 100); do
  "$B/monster-status" wait_states | grep -q "pid=$c5" && break
  sleep 0.1
done
"$B/monster-status" wait_states >"$tmp/waits.out"
grep -qE "^Wait [0-9]+: pid=$c5, shard=9, sequence=[0-9]+, ready=1\$" "$tmp/waits.out" || fail "wait line"
"$B/monster-status" pipes | grep -qE "^Pipe 5: producer=0, consumer=$c5, readers=1, writers=0, closed=0\$" || fail "pipe 5 line"
"$B/monster-status" --json wait_states | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert any(w["shard"] == 9 and w["ready"] == 1 for w in d["wait_states"]), d
' || fail "wait_states --json"
"$B/monster-status" --watch --interval 50 --count 3 --json pipes >"$tmp/watch.out"
[ "$(wc -l <"$tmp/watch.out")" -eq 3 ] || fail "--watch --count 3 gives 3 documents"
kill -INT $c5
wait $c5 || fail "consumer ends cleanly on SIGINT"
grep -qE '^Consumer: Read 0 samples, processed 0$' "$tmp/c5.out" || fail "interrupted consumer summary"
# Killed apps: reclaimed by pid.
"$B/consumer" --ring 6 --shard 9 >/dev/null 2>&1 & pids+=($!)
k=$!
for _ in $(seq 100); do "$B/monster-status" pipes | grep -q "consumer=$k" && break; sleep 0.1; done
kill -9 $k; wait $k 2>/dev/null || true
"$B/monster-status" pipes | grep -qE '^Pipe 6: producer=0, consumer=0, readers=0, writers=0, closed=1$' || fail "killed consumer reclaimed"
"$B/monster-status" wait_states | grep -q "pid=$k" && fail "killed app's wait state reclaimed"

# The coordination log, like dmesg.
"$B/monster-status" log >"$tmp/log.out"
grep -qE '^\[ *[0-9]+\.[0-9]{6}\] Coordinated 3 apps on shard 0$' "$tmp/log.out" || fail "log line"
# --duration ends a run that would block forever (no consumer on ring 7);
# every tool answers --help; bad ids are refused.
timeout 30 "$B/producer" --ring 7 --shard -1 --duration 0.3 >"$tmp/dur.out" || fail "--duration run"
grep -qE '^Producer: Wrote 0 samples to ring 7$' "$tmp/dur.out" || fail "--duration summary"
for t in producer filter consumer coordinator monster-status; do
  "$B/$t" --help | grep -q usage || fail "$t --help"
done
"$B/producer" --ring 15 2>/dev/null && fail "ring 15 accepted"
"$B/coordinator" --shard 256 2>/dev/null && fail "shard 256 accepted"
echo "pipeline OK"
