#!/usr/bin/env bash
# One environment variable for one setting: the segment name is FERRY_NAME
# for the server and the worker alike; the worker's old FERRY_SHM_NAME still
# works but warns that it is deprecated (issue 6, item 16).
source "$(dirname "$0")/lib.sh"

"$WORKER" --help | grep -q 'FERRY_NAME' || fail "worker --help does not name FERRY_NAME"
"$SERVER" --help | grep -q 'FERRY_NAME' || fail "server --help does not name FERRY_NAME"
ok "--help names FERRY_NAME"

# Server and worker both take the name from FERRY_NAME (no --name anywhere).
FERRY_NAME=$NAME launch_server --host 127.0.0.1
(unset FERRY_SHM_NAME; FERRY_NAME=$NAME exec "$WORKER" >>"$T/worker_1.log" 2>&1) & PIDS+=($!)
wait_field workers_live 1
expect_eq "worker named by FERRY_NAME" "$(post '{"message":"ab"}' | sed 's/,"worker":[0-9]*//')" '200 {"result":"ba"}'
grep -q deprecated "$T/worker_1.log" && fail "FERRY_NAME must not warn: $(cat "$T/worker_1.log")"
ok "no warning for FERRY_NAME"

# The old variable still attaches, with a deprecation warning on stderr.
(unset FERRY_NAME; FERRY_SHM_NAME=$NAME exec "$WORKER" >"$T/worker_2.out" 2>"$T/worker_2.log") & PIDS+=($!)
wait_field workers_live 2
grep -q 'FERRY_SHM_NAME is deprecated.*FERRY_NAME' "$T/worker_2.log" || fail "no deprecation warning: $(cat "$T/worker_2.log")"
ok "FERRY_SHM_NAME accepted with a deprecation warning"

# Both set and different: FERRY_NAME wins and the worker says it ignores the other.
(FERRY_NAME=$NAME FERRY_SHM_NAME=other$NAME exec "$WORKER" >"$T/worker_3.out" 2>"$T/worker_3.log") & PIDS+=($!)
wait_field workers_live 3
grep -q 'FERRY_SHM_NAME.*ignored' "$T/worker_3.log" || fail "no 'ignored' warning: $(cat "$T/worker_3.log")"
ok "FERRY_NAME wins over FERRY_SHM_NAME"

# --name beats both.
(FERRY_NAME=nope$NAME exec "$WORKER" --name "$NAME" >>"$T/worker_4.log" 2>&1) & PIDS+=($!)
wait_field workers_live 4
ok "--name overrides FERRY_NAME"
stop_server
