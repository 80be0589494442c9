#!/usr/bin/env bash
# build/loadtest against a real local HTTP server (the Kolosal server and two
# workers: POST /process {"message": ...} answers 200): counts, percentiles,
# failure reasons and exit status.
source "$(dirname "$0")/../kolosal/lib.sh"
LOADTEST=$BUILD/loadtest

start_server --deadline-ms 10000
start_worker 1; start_worker 2
wait_field workers_live 2

out=$("$LOADTEST" -requests 200 -concurrency 20 -message "hello ferry" -quiet \
        -url "http://127.0.0.1:$PORT/process") || fail "loadtest exited $? on a healthy server: $out"
grep -q '^Successful: *200 (100.0%)' <<<"$out" || fail "successes: $out"
grep -q '^Failed: *0 ' <<<"$out" || fail "failures: $out"
for f in Min: Avg: Max: P50: P95: P99:; do
  grep -qE "^  $f +[0-9]+\.[0-9]+ ms$" <<<"$out" || fail "no $f line: $out"
done
grep -qE '^Requests/sec: +[0-9]+\.[0-9]+$' <<<"$out" || fail "no req/s: $out"
[ "$(status_field completed)" -ge 200 ] || fail "server completed fewer than 200"
ok "200 requests, 20 in flight"

# --body and two-dash flags, one request.
out=$("$LOADTEST" --requests=1 --concurrency=1 -quiet --body '{"message":"x"}' \
        --url "http://127.0.0.1:$PORT/process") || fail "--body: $out"
ok "--body"

# Every failure is counted with its reason, and the exit status says so.
rc=0; out=$("$LOADTEST" -requests 10 -concurrency 3 -quiet -url "http://127.0.0.1:$PORT/nope") || rc=$?
expect_eq "exit status with failures" "$rc" 1
grep -qE '^  HTTP 404 +10$' <<<"$out" || fail "404 reason: $out"
grep -q '^First failure: *HTTP 404: {"error":"not found"' <<<"$out" || fail "first failure body: $out"

# Nobody listening: connection errors, not a hang.
stop_server
rc=0; out=$("$LOADTEST" -requests 4 -concurrency 2 -quiet -timeout 5 -url "http://127.0.0.1:$PORT/process") || rc=$?
expect_eq "exit status, server gone" "$rc" 1
grep -q '^Failed: *4 ' <<<"$out" || fail "connection failures: $out"

# Usage.
"$LOADTEST" -help | grep -q '^usage: loadtest' || fail "-help"
rc=0; "$LOADTEST" -requests 0 2>/dev/null || rc=$?; expect_eq "-requests 0 refused" "$rc" 2
rc=0; "$LOADTEST" -body '{bad' 2>/dev/null || rc=$?; expect_eq "bad -body refused" "$rc" 2
rc=0; "$LOADTEST" -frobnicate 1 2>/dev/null || rc=$?; expect_eq "unknown flag refused" "$rc" 2
