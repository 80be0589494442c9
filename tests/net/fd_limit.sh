#!/usr/bin/env bash
# Issue 6 item 9: --max-connections above the open-file limit. The server
# (under `ulimit -n 64`) warns at start and clamps the cap; connections over
# the cap get a 503 answer, never a silent close.
source "${FERRY_SOURCE_DIR:-$(dirname "$0")/../..}/tests/kolosal/lib.sh"

# Only the server runs under the low limit; this shell keeps its own.
printf '#!/bin/sh\nulimit -n 64 || exit 1\nexec "%s" "$@"\n' "$BUILD/server" >"$T/server64"
chmod +x "$T/server64"
SERVER=$T/server64

start_server --max-connections 100000
grep -q 'warning: --max-connections 100000 is more than the open-file limit (ulimit -n 64)' \
  "$T/server.err" || fail "no clamp warning: $(cat "$T/server.err")"
cap=$(sed -n 's/.*serving at most \([0-9]*\) connections.*/\1/p' "$T/server.err")
[ -n "$cap" ] && [ "$cap" -lt 64 ] || fail "clamped cap '$cap'"
ok "warning at start, cap $cap"

# Hold cap + 5 idle connections: the last ones are over the cap.
held=()
for i in $(seq 1 $((cap + 5))); do
  exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
  held+=("$fd")
done
# Every connection over the cap was answered 503 and closed by the server.
last=${held[$((cap + 4))]}
line=$(timeout 5 head -n 1 <&"$last" | tr -d '\r' || true)
expect_eq "over the cap" "$line" "HTTP/1.1 503 Service Unavailable"
code=$(curl -s --max-time 5 -o "$T/b" -w '%{http_code}' "http://127.0.0.1:$PORT/health" || true)
expect_eq "new client while full" "$code $(cat "$T/b")" '503 {"error":"too many connections","status":503}'

# Once the held connections go, the server serves again.
for fd in "${held[@]}"; do exec {fd}<&-; done
for i in $(seq 1 100); do
  code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health" || true)
  [ "$code" = 200 ] && break
  sleep 0.05
done
expect_eq "served again" "$code" 200
stop_server
