#!/usr/bin/env bash
# Bodies at the size limit: a request the server accepts (body <= --payload-max)
# is answered 200 even though the worker's reply envelope ({"result":...,
# "worker":PID}) is larger than the request; one byte more is 413 (issue 6,
# item 11). A result that really is too large is a clear 502.
source "$(dirname "$0")/lib.sh"
HANDLER=$BUILD/tests/libkolosal_test_handler.so
[ -f "$HANDLER" ] || fail "missing $HANDLER"

# body_of N: a {"message":"aaa..."} body of exactly N bytes.
body_of() { printf '{"message":"%s"}' "$(head -c $(($1 - 14)) /dev/zero | tr '\0' 'a')"; }

start_server --payload-max 1024 --deadline-ms 5000
start_worker 1
wait_field workers_live 1
b=$(body_of 1024); [ ${#b} -eq 1024 ] || fail "body is ${#b} bytes"
want="200 {\"result\":\"$(head -c 1010 /dev/zero | tr '\0' 'a')\"}"
expect_eq "1024-byte body at --payload-max 1024" "$(post "$b" | sed 's/,"worker":[0-9]*//')" "$want"
expect_eq "1023-byte body" "$(post "$(body_of 1023)" | cut -c1-3)" "200"
expect_eq "1025-byte body" "$(post "$(body_of 1025)")" '413 {"error":"request body too large","status":413}'

# The example plugin wraps the result in a longer envelope still.
kill -9 "$WORKER_PID"; wait_field workers_live 0
"$WORKER" --name "$NAME" --handler "$BUILD/libferry_example_handler.so" >>"$T/worker_2.log" 2>&1 & PIDS+=($!)
wait_field workers_live 1
want="200 {\"result\":\"$(head -c 1010 /dev/zero | tr '\0' 'A')\",\"handler\":\"example\"}"
expect_eq "1024-byte body, example plugin" "$(post "$(body_of 1024)")" "$want"
stop_server

# A handler whose result exceeds the limit however much room there is: a
# 502 that says so, naming the limit.
start_server --payload-max 1024 --deadline-ms 5000
"$WORKER" --name "$NAME" --handler "$HANDLER" >>"$T/worker_3.log" 2>&1 & PIDS+=($!)
wait_field workers_live 1
r=$(post '{"message":"big"}')
case "$r" in '502 {"error":"worker result larger than the reply limit ('*' bytes)","status":502}') ok "too-large result: $r";;
  *) fail "too-large result: $r";; esac
stop_server
