#!/usr/bin/env bash
# The real llama.cpp server with our generated tiny model: it loads, /health
# is ok, chat completions return text, streaming has the shape the hub relays
# (a first chunk with content null, then finish_reason, timings, [DONE]),
# /slots and /metrics answer, a prompt over a slot's context is a 400, and the
# official `openai` npm client works against its /v1 endpoint.
source "$(dirname "$0")/lib.sh"

make_model "$T/tiny.gguf"
start_llama a "$T/tiny.gguf"
URL=http://127.0.0.1:$LLAMA_PORT
ok "llama-server up on port $LLAMA_PORT"

expect_eq "/health" "$(curl -s --max-time 5 -w ' %{http_code}' "$URL/health")" '{"status":"ok"} 200'

chat() {  # chat BODY: POST /v1/chat/completions, prints "<code> <body>"
  local f=$T/body.$RANDOM code
  code=$(curl -s --max-time 30 -o "$f" -w '%{http_code}' -H 'Content-Type: application/json' \
           --data-binary "$1" "$URL/v1/chat/completions" || true)
  echo "$code $(cat "$f")"
  rm -f "$f"
}

r=$(chat '{"messages":[{"role":"user","content":"Tell me a joke"}],"max_tokens":8,"ignore_eos":true}')
expect_eq "completion status" "${r%% *}" 200
b=${r#* }
jq -e '.choices[0].message.content | type == "string" and length > 0' <<<"$b" >/dev/null || fail "no text: $b"
expect_eq "completion tokens" "$(jq -r .usage.completion_tokens <<<"$b")" 8
expect_eq "finish_reason" "$(jq -r '.choices[0].finish_reason' <<<"$b")" length
expect_eq "object" "$(jq -r .object <<<"$b")" chat.completion

# Streaming: server-sent events, one JSON object per "data:" line.
curl -s -N --max-time 30 -H 'Content-Type: application/json' \
  --data-binary '{"messages":[{"role":"user","content":"hello"}],"max_tokens":6,"ignore_eos":true,"stream":true}' \
  "$URL/v1/chat/completions" >"$T/stream.txt"
grep '^data: ' "$T/stream.txt" | sed 's/^data: //' >"$T/events.txt"
n=$(wc -l <"$T/events.txt")
[ "$n" -ge 4 ] || fail "only $n events: $(cat "$T/stream.txt")"
expect_eq "last event" "$(tail -n1 "$T/events.txt")" '[DONE]'
first=$(head -n1 "$T/events.txt")
expect_eq "first chunk content" "$(jq -c '.choices[0].delta.content' <<<"$first")" null
expect_eq "first chunk role" "$(jq -r '.choices[0].delta.role' <<<"$first")" assistant
head -n -1 "$T/events.txt" | jq -e -s 'map(.object == "chat.completion.chunk") | all' >/dev/null ||
  fail "not all chunks are chat.completion.chunk"
text=$(head -n -1 "$T/events.txt" | jq -j '.choices[0].delta.content // empty')
[ -n "$text" ] || fail "stream carried no text"
head -n -1 "$T/events.txt" | jq -e -s 'map(select(.choices[0].finish_reason == "length")) | length == 1' >/dev/null ||
  fail "no single finish_reason=length chunk"
head -n -1 "$T/events.txt" | jq -e -s 'map(select(.timings.predicted_n == 6)) | length >= 1' >/dev/null ||
  fail "no timings with predicted_n 6"
ok "streaming: $n events, text, finish_reason, timings, [DONE]"

s=$(curl -s --max-time 5 "$URL/slots")
expect_eq "/slots count" "$(jq length <<<"$s")" 4
expect_eq "/slots idle" "$(jq '[.[] | select(.is_processing)] | length' <<<"$s")" 0

m=$(curl -s --max-time 5 "$URL/metrics")
grep -q '^llamacpp:tokens_predicted_total ' <<<"$m" || fail "metrics: $(head -c 300 <<<"$m")"
ok "/metrics"

# The tiny model's context is 2048 and, without -c, every slot gets all of
# it (n_ctx_slot = 2048 in the log): 2500 "▁hello" tokens do not fit.
long=$(printf 'hello %.0s' $(seq 1 2500))
r=$(chat "{\"messages\":[{\"role\":\"user\",\"content\":\"$long\"}],\"max_tokens\":4}")
expect_eq "prompt over the slot's context" "${r%% *}" 400

# The official openai client (npm) against llama-server's own /v1.
command -v node >/dev/null || fail "node is not installed (scripts/deps.sh)"
NODE_PATH=$("$SRC/scripts/npm-openai.sh") || fail "scripts/npm-openai.sh failed"
NODE_PATH=$NODE_PATH node "$SRC/tests/hub/openai_client.mjs" "$URL/v1" none >"$T/openai.log" 2>&1 ||
  fail "openai client: $(cat "$T/openai.log")"
ok "openai npm client: $(tr '\n' ';' <"$T/openai.log")"

kill -TERM "$LLAMA_PID"
wait "$LLAMA_PID" 2>/dev/null || true
ok "llama-server stopped"
