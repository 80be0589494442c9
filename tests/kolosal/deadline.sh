#!/usr/bin/env bash
# No worker: 504 after the deadline. Tiny ring, no worker: 503 + Retry-After
# at once when the ring is full (both texts say that no worker is attached).
source "$(dirname "$0")/lib.sh"

start_server --deadline-ms 300 --ring-slots 2
expect_eq "504 without workers" "$(post '{"message":"x"}')" '504 {"error":"no worker answered within 300 ms (no worker attached)","status":504}'
kill "$SERVER_PID"; wait "$SERVER_PID" || true

start_server --deadline-ms 20000 --ring-slots 2 --shutdown-ms 200
# Two requests fill the two slots (nobody takes them) ...
for i in 1 2; do (post '{"message":"fill"}' >"$T/fill.$i") & PIDS+=($!); done
wait_field in_flight 2
# ... so the third is refused at once.
code=$(curl -s --max-time 5 -D "$T/hdr" -o "$T/b" -w '%{http_code}' -d '{"message":"x"}' "http://127.0.0.1:$PORT/process")
expect_eq "503 when full" "$code $(cat "$T/b")" '503 {"error":"no worker attached: every ring slot holds a request waiting for one, retry later","status":503}'
grep -qi '^Retry-After: 1' "$T/hdr" || fail "no Retry-After: $(cat "$T/hdr")"
ok "Retry-After"
stop_server
