#!/usr/bin/env bash
# Kolosal end to end: server + two workers; good, malformed, oversized and
# invalid requests; /health and /status.
source "$(dirname "$0")/lib.sh"

start_server --payload-max 1024 --deadline-ms 5000
start_worker 1; start_worker 2
wait_field workers_live 2

expect_eq "process" "$(post '{"message":"test"}' | sed 's/,"worker":[0-9]*//')" '200 {"result":"tset"}'
expect_eq "process utf8" "$(post '{"message":"abc def"}' | sed 's/,"worker":[0-9]*//')" '200 {"result":"fed cba"}'

h=$(curl -s --max-time 5 -w ' %{http_code}' "http://127.0.0.1:$PORT/health")
case "$h" in '{"status":"ok",'*' 200') ok "health";; *) fail "health: $h";; esac

s=$(curl -s --max-time 5 "http://127.0.0.1:$PORT/status")
for f in queue_depth in_flight submitted completed workers_live workers pid state tasks_done; do
  grep -q "\"$f\"" <<<"$s" || fail "status lacks $f: $s"
done
ok "status fields"
[ "$(status_field completed)" -ge 2 ] || fail "completed < 2"

expect_eq "invalid JSON" "$(post '{"message": tes' | cut -c1-41)" '400 {"error":"invalid JSON: line 1 column'
expect_eq "not an object" "$(post '[1,2]')" '400 {"error":"body must be a JSON object","status":400}'
expect_eq "empty body" "$(post '')" '400 {"error":"empty body: expected a JSON object","status":400}'

big=$(head -c 2000 /dev/zero | tr '\0' 'a')
expect_eq "oversized" "$(post "{\"message\":\"$big\"}")" '413 {"error":"request body too large","status":413}'

r=$(raw 'BROKEN\r\n\r\n')
grep -q '^HTTP/1.1 400 ' <<<"$r" || fail "malformed: $r"
grep -q '{"error":"malformed HTTP request","status":400}' <<<"$r" || fail "malformed body: $r"
ok "malformed HTTP"

c=$(curl -s --max-time 5 -w ' %{http_code}' "http://127.0.0.1:$PORT/nope")
expect_eq "404" "$c" '{"error":"not found","status":404} 404'
c=$(curl -s --max-time 5 -w ' %{http_code}' "http://127.0.0.1:$PORT/process")
expect_eq "405" "$c" '{"error":"method not allowed","status":405} 405'

# Input the worker rejects (no "message"): 422 with the worker's reason.
r=$(post '{"nomessage":1}')
case "$r" in '422 {"error":'*'"status":422}') ok "worker rejects: $r";; *) fail "worker reject: $r";; esac

# Keep-alive: two requests on one connection (curl reuses it).
n=$(curl -s --max-time 5 -o /dev/null -w '%{num_connects}\n' -d '{"message":"a"}' "http://127.0.0.1:$PORT/process" \
      --next -s --max-time 5 -o /dev/null -w '%{num_connects}\n' -d '{"message":"b"}' "http://127.0.0.1:$PORT/process" \
      | awk '{s+=$1} END {print s}')
expect_eq "keep-alive connects" "$n" 1

# The log is flushed every 500 ms.
for _ in $(seq 1 100); do grep -q 'req POST /process 200' "$T/server.log" && break; sleep 0.05; done
grep -q 'req POST /process 200' "$T/server.log" || fail "no request line in the log"
ok "log lines"
stop_server
