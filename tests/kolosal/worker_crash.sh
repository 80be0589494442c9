#!/usr/bin/env bash
# SIGKILL a worker under load: every request gets its answer or a clear JSON
# error and none hangs; a restarted worker serves again.
source "$(dirname "$0")/lib.sh"

N=${KOLOSAL_CRASH_REQUESTS:-200}
start_server --heartbeat-ms 100 --deadline-ms 10000
start_worker 1; W1=$WORKER_PID
start_worker 2; W2=$WORKER_PID
wait_field workers_live 2

# N requests, 16 at a time; each writes "<code> <body>" to its own file.
mkdir -p "$T/out"
export PORT T
seq 1 "$N" | xargs -P 16 -I{} sh -c \
  'curl -s --max-time 20 -o "$T/out/{}.body" -w "%{http_code}" -d "{\"message\":\"m{}\"}" \
     "http://127.0.0.1:$PORT/process" >"$T/out/{}.code" 2>/dev/null || true' &
LOAD=$!
PIDS+=("$LOAD")
# Kill worker 1 once it has done some of the work.
for i in $(seq 1 200); do
  [ "$(ls "$T/out" | grep -c code || true)" -ge $((N / 4)) ] && break
  sleep 0.02
done
kill -9 "$W1"
ok "killed worker $W1"
wait "$LOAD"

good=0; err=0
for i in $(seq 1 "$N"); do
  code=$(cat "$T/out/$i.code" 2>/dev/null || echo none)
  body=$(cat "$T/out/$i.body" 2>/dev/null || true)
  want="{\"result\":\"$(echo "m$i" | rev)\""
  case "$code" in
    200) [[ "$body" == "$want"* ]] || fail "request $i: 200 with wrong body $body"; good=$((good + 1)) ;;
    502|503|504) [[ "$body" == '{"error":"'*"\"status\":$code}" ]] || fail "request $i: $code body $body"; err=$((err + 1)) ;;
    *) fail "request $i: code '$code' (hung or dropped) body '$body'" ;;
  esac
done
echo "answers: $good ok, $err clear errors, of $N"
[ $((good + err)) -eq "$N" ] || fail "missing answers"
ok "every request answered"
echo "requeued after the kill: $(status_field requeued)"

# The dead worker is reaped; a new one attaches and serves alone.
wait_field workers_live 1
kill -9 "$W2"
wait_field workers_live 0
start_worker 3; W3=$WORKER_PID
wait_field workers_live 1
for i in 1 2 3; do
  expect_eq "restarted worker $i" "$(post "{\"message\":\"r$i\"}")" "200 {\"result\":\"${i}r\",\"worker\":$W3}"
done
stop_server
