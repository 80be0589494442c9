#!/usr/bin/env bash
# SIGTERM with requests in flight: they are answered (their result, or 503
# "server shutting down" once the grace period ends), then the server exits 0
# and removes its segment.
source "$(dirname "$0")/lib.sh"

# Phase A: no worker, short grace: in-flight requests get 503.
start_server --deadline-ms 30000 --shutdown-ms 300
for i in 1 2 3; do (post '{"message":"a"}' >"$T/a.$i") & PIDS+=($!); done
wait_field in_flight 3
kill -TERM "$SERVER_PID"
rc=0; wait "$SERVER_PID" || rc=$?
expect_eq "server exit code" "$rc" 0
sleep 0.1
for i in 1 2 3; do
  for _ in $(seq 1 100); do [ -s "$T/a.$i" ] && break; sleep 0.05; done
  expect_eq "in-flight $i" "$(cat "$T/a.$i")" '503 {"error":"server shutting down","status":503}'
done
[ ! -e "/dev/shm/ferry-$(id -u)-$NAME" ] || fail "segment left behind"
ok "segment removed"

# Phase B: long grace; a worker arriving during it answers the requests.
start_server --deadline-ms 30000 --shutdown-ms 8000
for i in 1 2 3; do (post "{\"message\":\"b$i\"}" >"$T/b.$i") & PIDS+=($!); done
wait_field in_flight 3
kill -TERM "$SERVER_PID"
sleep 0.1
start_worker 1
rc=0; wait "$SERVER_PID" || rc=$?
expect_eq "server exit code" "$rc" 0
for i in 1 2 3; do
  for _ in $(seq 1 100); do [ -s "$T/b.$i" ] && break; sleep 0.05; done
  expect_eq "in-flight result $i" "$(sed 's/,"worker":[0-9]*//' "$T/b.$i")" "200 {\"result\":\"${i}b\"}"
done
grep -q 'event shutdown signal=15' "$T/server.log" || fail "no shutdown event logged"
ok "shutdown logged"
