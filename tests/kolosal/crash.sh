#!/usr/bin/env bash
# A request that kills every worker that takes it: after --max-attempts
# deaths the client gets 502 with a clear error; the server and a fresh
# worker go on serving.
source "$(dirname "$0")/lib.sh"
HANDLER=$BUILD/tests/libkolosal_test_handler.so
[ -f "$HANDLER" ] || fail "missing $HANDLER"

start_server --max-attempts 2 --heartbeat-ms 100 --deadline-ms 20000
"$WORKER" --name "$NAME" --handler "$HANDLER" >>"$T/worker_1.log" 2>&1 & PIDS+=($!)
"$WORKER" --name "$NAME" --handler "$HANDLER" >>"$T/worker_2.log" 2>&1 & PIDS+=($!)
wait_field workers_live 2
expect_eq "ordinary request" "$(post '{"message":"hi"}')" '200 {"result":"hi"}'

r=$(post '{"message":"crash"}')
expect_eq "attempts exhausted" "$r" '502 {"error":"worker died while processing the request (2 attempts); not retried","status":502}'
wait_field workers_live 0

start_worker 3
wait_field workers_live 1
expect_eq "fresh worker serves" "$(post '{"message":"abc"}' | sed 's/,"worker":[0-9]*//')" '200 {"result":"cba"}'

# Shutdown with a slow request in flight: it gets its result, not an error.
"$WORKER" --name "$NAME" --handler "$HANDLER" >>"$T/worker_4.log" 2>&1 & PIDS+=($!)
wait_field workers_live 2
kill -9 "$WORKER_PID"          # leave only the slow-capable worker
wait_field workers_live 1
(post '{"message":"slow"}' >"$T/slow") & PIDS+=($!)
wait_field in_flight 1
stop_server
for _ in $(seq 1 100); do [ -s "$T/slow" ] && break; sleep 0.05; done
expect_eq "in-flight result at shutdown" "$(cat "$T/slow")" '200 {"result":"slow"}'
