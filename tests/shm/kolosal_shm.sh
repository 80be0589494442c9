#!/usr/bin/env bash
# The Kolosal server and worker programs on the shm layer's hard cases
# (issue 6, items 1, 3 and 5):
#   1. /dev/shm smaller than the segment: the server refuses to start and
#      names the size and the flags (it used to start and die of SIGBUS);
#      a configuration that fits starts and serves.
#   3. a worker started right after another was SIGKILLed gets the dead
#      one's entry (it used to exit with "worker table full").
#   5. with no worker, timed-out requests do not leave the queue "full":
#      new requests queue again, /status shows nothing pending, and the
#      texts say that no worker is attached.
source "$(dirname "$0")/../kolosal/lib.sh"

# ---- 1: a small /dev/shm, in a private mount namespace ----
if [ "$(id -u)" != 0 ]; then
  echo "SKIP part 1: needs root for a private mount namespace with a small tmpfs on /dev/shm"
else
  cat >"$T/small.sh" <<'INNER'
set -euo pipefail
pids=()
# run() below is called as $(run ...), in a subshell: its server's pid can
# only come back through a file, or the server outlives the test.
trap 'for p in "${pids[@]}" $(cat "$T/small.pids" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done' EXIT
mount --make-rprivate /
mount -t tmpfs -o size=16m,mode=1777 tmpfs /dev/shm
# starts SERVER with the given flags; prints "started PORT" or "exit RC".
run() {
  "$SERVER" --port 0 --host 127.0.0.1 --name "$NAME" "$@" >"$T/small.out" 2>"$T/small.err" &
  local p=$! i port
  echo "$p" >>"$T/small.pids"
  for i in $(seq 1 400); do
    port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$T/small.out")
    [ -n "$port" ] && { echo "started $port"; return 0; }
    if ! kill -0 "$p" 2>/dev/null; then
      local rc=0; wait "$p" || rc=$?; echo "exit $rc"; return 0
    fi
    sleep 0.05
  done
  echo "hung"
}
# Defaults: 256 x 2 x 64 KiB = 32 MiB does not fit in 16 MiB.
r=$(run)
[ "$r" = "exit 1" ] || { echo "FAIL: server on a 16 MiB /dev/shm: $r"; cat "$T/small.err"; exit 1; }
for w in 'too small' 'needs 32' -- '--ring-slots' '--payload-max'; do
  [ "$w" = -- ] && continue
  grep -q -- "$w" "$T/small.err" || { echo "FAIL: message lacks '$w': $(cat "$T/small.err")"; exit 1; }
done
echo "ok: refused with: $(cat "$T/small.err")"
[ -z "$(ls /dev/shm)" ] || { echo "FAIL: left behind: $(ls /dev/shm)"; exit 1; }
# 16 x 2 x 64 KiB = 2 MiB fits, and serves.
r=$(run --ring-slots 16)
[ "${r%% *}" = started ] || { echo "FAIL: small config: $r"; cat "$T/small.err"; exit 1; }
port=${r#started }
"$WORKER" --name "$NAME" >"$T/small_worker.log" 2>&1 &
pids+=($!)
for i in $(seq 1 200); do
  out=$(curl -s --max-time 5 -d '{"message":"abc"}' "http://127.0.0.1:$port/process" || true)
  [[ "$out" == '{"result":"cba"'* ]] && break
  sleep 0.05
done
[[ "$out" == '{"result":"cba"'* ]] || { echo "FAIL: no answer in the small namespace: $out"; exit 1; }
echo "ok: a 2 MiB segment on a 16 MiB /dev/shm serves: $out"
INNER
  rc=0
  SERVER=$SERVER WORKER=$WORKER NAME=$NAME T=$T unshare -m bash "$T/small.sh" || rc=$?
  expect_eq "small /dev/shm part" "$rc" 0
  # nothing it started outlives it (a server once did: its pid was lost in a
  # subshell). $NAME is this run's own, and no other server of ours runs yet.
  left=
  for i in $(seq 1 40); do
    left=$(pgrep -f -- "--name $NAME" || true)
    [ -z "$left" ] && break
    sleep 0.05
  done
  [ -z "$left" ] || { kill -9 $left 2>/dev/null; fail "the small /dev/shm part left process(es) $left behind"; }
  ok "the small /dev/shm part left no process behind"
fi

# ---- 3: replacement right after a SIGKILL, table of two ----
start_server --max-workers 2 --heartbeat-ms 60000
start_worker 1; W1=$WORKER_PID
start_worker 2; W2=$WORKER_PID
wait_field workers_live 2
{ kill -9 "$W1"; wait "$W1"; } 2>/dev/null || true
start_worker 3; W3=$WORKER_PID
# It attaches (its log says so) or exits 1 with "table full".
for i in $(seq 1 200); do
  grep -q '] attach name=' "$T/worker_3.log" 2>/dev/null && break
  kill -0 "$W3" 2>/dev/null || { cat "$T/worker_3.log"; fail "the replacement worker exited"; }
  sleep 0.05
done
grep -q '] attach name=' "$T/worker_3.log" || fail "the replacement did not attach"
ok "replacement attached right after the SIGKILL"
wait_field workers_live 2
{ kill -9 "$W2"; wait "$W2"; } 2>/dev/null || true
# With a 60 s heartbeat only a process check finds W2 gone: the replacement
# must still answer (W2's queued share is not lost on a dead entry).
expect_eq "replacement serves" "$(post '{"message":"ab"}')" "200 {\"result\":\"ba\",\"worker\":$W3}"
stop_server

# ---- 5: no worker: cancelled requests give their slots back ----
start_server --ring-slots 2 --deadline-ms 300
for i in 1 2 3; do
  expect_eq "504 without workers ($i)" "$(post '{"message":"x"}')" \
    '504 {"error":"no worker answered within 300 ms (no worker attached)","status":504}'
done
expect_eq "nothing in flight" "$(status_field in_flight)" 0
expect_eq "nothing queued" "$(status_field queue_depth)" 0
stop_server
# Two requests that wait fill the ring; the third is told why at once.
start_server --ring-slots 2 --deadline-ms 20000 --shutdown-ms 200
for i in 1 2; do (post '{"message":"fill"}' >"$T/fill.$i") & PIDS+=($!); done
wait_field in_flight 2
expect_eq "503 names the reason" "$(post '{"message":"x"}')" \
  '503 {"error":"no worker attached: every ring slot holds a request waiting for one, retry later","status":503}'
stop_server
