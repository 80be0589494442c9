#!/usr/bin/env bash
# A worker whose server crashes exits non-zero (3) so a supervisor restarts
# it; one whose server stops cleanly exits 0. With --reconnect it waits for a
# server (at start too) and attaches again: kill -9 the server, start a new
# one with the same name, the same worker serves it (issue 6, item 14).
source "$(dirname "$0")/lib.sh"

# worker_exit PID: waits (10 s at most) for a worker we started; its exit
# status goes to WEXIT (not a subshell: only this shell can wait for it).
worker_exit() {
  local i
  for i in $(seq 1 200); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$1" 2>/dev/null && fail "worker $1 still running"
  WEXIT=0; wait "$1" || WEXIT=$?
}

"$WORKER" --help | grep -q -- '--reconnect' || fail "worker --help lacks --reconnect"
ok "--help"

# Without --reconnect: a crashed server is a failure ...
start_server
start_worker 1; W1=$WORKER_PID
wait_field workers_live 1
kill -9 "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
worker_exit "$W1"; expect_eq "exit status after a server crash" "$WEXIT" 3
grep -q 'stop reason=server-died' "$T/worker_1.log" || fail "log: $(cat "$T/worker_1.log")"
ok "server-died logged"

# ... a clean stop is not.
start_server
start_worker 2; W2=$WORKER_PID
wait_field workers_live 1
stop_server
worker_exit "$W2"; expect_eq "exit status after a clean server stop" "$WEXIT" 0
grep -q 'stop reason=server-closed' "$T/worker_2.log" || fail "log: $(cat "$T/worker_2.log")"
ok "server-closed logged"

# --reconnect: started before any server exists, it waits for one.
"$WORKER" --name "$NAME" --reconnect >>"$T/worker_3.log" 2>&1 & R=$!; PIDS+=("$R")
for _ in $(seq 1 100); do grep -q 'waiting for the server' "$T/worker_3.log" && break; sleep 0.05; done
grep -q 'waiting for the server' "$T/worker_3.log" || fail "log: $(cat "$T/worker_3.log")"
kill -0 "$R" || fail "--reconnect worker exited without a server"
ok "waits for a server at start"
start_server
wait_field workers_live 1
expect_eq "served by the waiting worker" "$(post '{"message":"one"}')" "200 {\"result\":\"eno\",\"worker\":$R}"

# The server crashes; a new one with the same name gets the same worker.
kill -9 "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
start_server
wait_field workers_live 1
expect_eq "same worker after a server crash" "$(post '{"message":"two"}')" "200 {\"result\":\"owt\",\"worker\":$R}"

# A clean stop and a new server: attached again too.
stop_server
start_server
wait_field workers_live 1
expect_eq "same worker after a clean restart" "$(post '{"message":"three"}')" "200 {\"result\":\"eerht\",\"worker\":$R}"
[ "$(grep -c 'attach name=' "$T/worker_3.log")" -eq 3 ] || fail "want 3 attaches: $(cat "$T/worker_3.log")"
ok "three attaches logged"

# SIGTERM still stops it, with status 0, also while it waits for a server.
stop_server
for _ in $(seq 1 200); do [ "$(grep -c 'waiting for the server' "$T/worker_3.log")" -ge 2 ] && break; sleep 0.05; done
kill -TERM "$R"
worker_exit "$R"; expect_eq "SIGTERM while waiting" "$WEXIT" 0
