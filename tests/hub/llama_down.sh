#!/usr/bin/env bash
# A llama server stopped behind a live spoke: a stream it was serving ends
# with an error event (bytes had gone out: no retry), new requests go to the
# other spoke, the spoke is reported unhealthy, and comes back when its llama
# server does.
# the larger generated model: a long generation holds its slot for seconds
MODEL_SHAPE=${MODEL_SHAPE:-bench}
source "$(dirname "$0")/lib.sh"
backend_setup
start_llama 1
start_llama 2
start_hub -deadline-ms 60000
start_spoke 1
start_spoke 2
wait_healthy 2

curl -s -N --max-time 60 -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  --data-binary "$(long_body true)" "http://127.0.0.1:$HPORT/v1/chat/completions" >"$T/sse" &
streamer=$!
poll busy_llama || fail "the stream never reached a llama server"
L=$(busy_llama)
poll grep -q '^data: {' "$T/sse" || fail "no stream data"
kill -9 "${LPID[$L]}"
ok "llama server $L (serving the stream) killed"
for _ in $(seq 1 300); do kill -0 "$streamer" 2>/dev/null || break; sleep 0.1; done
kill -0 "$streamer" 2>/dev/null && fail "the client's stream hangs after its llama server died"
grep -q '^data: {"error"' "$T/sse" || fail "the broken stream did not end with an error event: $(tail -c 300 "$T/sse")"
ok "the stream ended with an error event"

: >"$T/w"
load 20 4 "$(chat_body 8)" "$T/w"
expect_eq "20 requests with a dead llama behind spoke $L: all 200" "$(awk '$1 == 200' "$T/w" | wc -l)" 20

not_healthy() { [ "$(stats | jq -r ".workers[] | select(.url == \"http://127.0.0.1:${SPORT[$L]}\") | .healthy")" = false ]; }
poll not_healthy || fail "spoke $L still healthy in /stats"
ok "spoke $L reported unhealthy"
code=$(curl -s -o "$T/body" -w '%{http_code}' --max-time 10 "http://127.0.0.1:${SPORT[$L]}/health")
expect_eq "spoke /health reports llama.cpp down: 503" "$code" 503

# the llama server comes back on its port: the spoke is healthy again
port=${LPORT[$L]}
if [ "$BACKEND" = real ]; then
  "$LLAMA_SERVER" -m "$T/model.gguf" --host 127.0.0.1 --port "$port" -np 4 -t 1 --metrics -c $((4 * CTX_PER_SLOT)) >>"$T/llama$L.log" 2>&1 &
else
  "$BUILD/tests/fake_llama_slow" --port "$port" --np 4 >>"$T/llama$L.log" 2>&1 &
fi
PIDS+=($!)
wait_healthy 2
ok "spoke $L healthy again once llama.cpp is back"
stop_hub
check_sanitizers
echo PASS
