#!/usr/bin/env bash
# GoLlama basics: hub + 2 spokes + 2 llama servers; /chat, /v1/chat/completions
# with and without streaming, /v1/models, /stats, /metrics, /health; API keys
# (401), the spoke secret (refused without it), bad input (4xx JSON).
source "$(dirname "$0")/lib.sh"
backend_setup
start_llama 1
start_llama 2
start_hub
start_spoke 1
start_spoke 2
wait_healthy 2

# /chat {"message"} -> {"reply"}
code=$(req POST /chat '{"message":"hello there"}')
expect_eq "/chat answers 200" "$code" 200
jq -e '.reply | type == "string"' "$T/body" >/dev/null || fail "/chat: no string reply: $(cat "$T/body")"
ok "/chat reply is a string"

# OpenAI passthrough, not streaming
code=$(req POST /v1/chat/completions "$(chat_body 8)")
expect_eq "/v1/chat/completions answers 200" "$code" 200
jq -e '.choices[0].message.content | type == "string"' "$T/body" >/dev/null ||
  fail "completion without choices[0].message.content: $(cat "$T/body")"
ok "completion has choices[0].message.content"

# streaming: server-sent events relayed, ends with [DONE]
curl -s -N -D "$T/shead" --max-time 60 -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  --data-binary "$(chat_body 12 hi '"stream":true')" "http://127.0.0.1:$HPORT/v1/chat/completions" >"$T/sse"
grep -qi '^content-type: text/event-stream' "$T/shead" || fail "stream: content type: $(cat "$T/shead")"
grep -qi '^transfer-encoding: chunked' "$T/shead" || fail "stream: not chunked"
n=$(grep -c '^data: {' "$T/sse" || true)
[ "$n" -ge 3 ] || fail "stream: only $n data events: $(cat "$T/sse")"
tail -n 3 "$T/sse" | grep -q '^data: \[DONE\]' || fail "stream does not end with [DONE]"
grep '^data: {' "$T/sse" | tail -n 1 | sed 's/^data: //' | jq -e '.choices[0].finish_reason != null' >/dev/null ||
  fail "stream: the last event has no finish_reason"
ok "stream relayed: $n events, finish_reason, [DONE]"

# a prompt over the slot's context is the request's fault: 400, not retried
big=$(head -c 6000 /dev/zero | tr '\0' 'a' | sed 's/a/word /g')
code=$(req POST /v1/chat/completions "{\"messages\":[{\"role\":\"user\",\"content\":\"$big\"}],\"max_tokens\":4}")
expect_eq "prompt over the context: 400 passed through" "$code" 400
jq -e '.error | type == "string"' "$T/body" >/dev/null || fail "400 without a JSON error"
retries=$(stats | jq .jobs.retries)
expect_eq "a 400 is not retried" "$retries" 0

code=$(req GET /v1/models)
expect_eq "/v1/models 200" "$code" 200
jq -e '.object == "list" and (.data | length) >= 1 and (.data[0].id | type == "string")' "$T/body" >/dev/null ||
  fail "/v1/models: $(cat "$T/body")"

# /stats per spoke
stats >"$T/stats"
expect_eq "/stats lists 2 spokes" "$(jq '.workers | length' "$T/stats")" 2
for f in id url jobs_completed jobs_failed avg_response_ms requests last_active healthy slots_busy slots_total; do
  jq -e ".workers[0] | has(\"$f\")" "$T/stats" >/dev/null || fail "/stats: spoke has no $f"
done
ok "/stats has every per-spoke field"
expect_eq "slots_total from llama.cpp's /slots" "$(jq '.workers[0].slots_total' "$T/stats")" 4
done_jobs=$(jq '[.workers[].jobs_completed] | add' "$T/stats")
[ "$done_jobs" -ge 3 ] || fail "/stats: $done_jobs jobs completed"

code=$(req GET /metrics)
expect_eq "/metrics 200" "$code" 200
grep -q '^gollama_jobs_completed_total [0-9]' "$T/body" || fail "/metrics: no gollama_jobs_completed_total"
grep -q '^# TYPE gollama_request_duration_seconds histogram' "$T/body" || fail "/metrics: no histogram"
grep -q '^gollama_worker_slots_total{worker="http://127.0.0.1:' "$T/body" || fail "/metrics: no per-worker series"
ok "/metrics in Prometheus text format"

# API keys
code=$(curl -s -o "$T/body" -w '%{http_code}' --max-time 10 -X POST -d '{"message":"x"}' "http://127.0.0.1:$HPORT/chat")
expect_eq "no API key: 401" "$code" 401
code=$(curl -s -o "$T/body" -w '%{http_code}' --max-time 10 -H 'Authorization: Bearer wrong' -X POST \
       -d '{"message":"x"}' "http://127.0.0.1:$HPORT/chat")
expect_eq "wrong API key: 401" "$code" 401
jq -e '.status == 401 and (.error | type == "string")' "$T/body" >/dev/null || fail "401 body is not a JSON error"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H 'Authorization: Bearer wrong' "http://127.0.0.1:$HPORT/v1/models")
expect_eq "wrong API key on /v1/models: 401" "$code" 401

# bad input: 4xx with a JSON error
code=$(req POST /chat '{"message":')
expect_eq "malformed JSON: 400" "$code" 400
jq -e '.error' "$T/body" >/dev/null || fail "400 without JSON error"
code=$(req POST /chat '{"msg":"x"}')
expect_eq "no message: 400" "$code" 400
code=$(req POST /v1/chat/completions '{"messages":"nope"}')
expect_eq "messages not an array: 400" "$code" 400
head -c 2000000 /dev/zero | tr '\0' 'a' >"$T/huge"
code=$(req POST /chat "" --data-binary @"$T/huge")
expect_eq "body over the limit: 413" "$code" 413
code=$(req GET /nothing)
expect_eq "unknown path: 404" "$code" 404

# spokes: refused without the secret
code=$(curl -s -o "$T/body" -w '%{http_code}' --max-time 10 -X POST -H 'Content-Type: application/json' \
       -d '{"url":"http://127.0.0.1:1","slots":4}' "http://127.0.0.1:$HPORT/connectWorker")
expect_eq "registration without the secret: 401" "$code" 401
code=$(curl -s -o "$T/body" -w '%{http_code}' --max-time 10 -X POST -H 'X-Spoke-Secret: wrong' \
       -d '{"url":"http://127.0.0.1:1","slots":4}' "http://127.0.0.1:$HPORT/connectWorker")
expect_eq "registration with a wrong secret: 401" "$code" 401
SECRET_SAVE=$SECRET; SECRET=not-the-secret
start_spoke 3 -llama-url "http://127.0.0.1:${LPORT[1]}"
SECRET=$SECRET_SAVE
poll grep -q 'refused us' "$T/spoke3.err" || fail "spoke with a wrong secret did not report the refusal"
expect_eq "a spoke with a wrong secret is not registered" "$(stats | jq '.workers | length')" 2
[ "$(stats | jq .spokes_refused)" -ge 3 ] || fail "spokes_refused not counted"
# and the spoke refuses /execute without the secret
code=$(curl -s -o "$T/body" -w '%{http_code}' --max-time 10 -X POST -d '{"endpoint":"/v1/chat/completions","body":{}}' \
       "http://127.0.0.1:${SPORT[1]}/execute")
expect_eq "spoke /execute without the secret: 401" "$code" 401
code=$(curl -s -o "$T/body" -w '%{http_code}' --max-time 10 -X POST -H "X-Spoke-Secret: $SECRET" \
       -d '{"endpoint":"/etc/passwd","body":{}}' "http://127.0.0.1:${SPORT[1]}/execute")
expect_eq "spoke /execute refuses an endpoint outside its list: 400" "$code" 400
code=$(curl -s -o "$T/body" -w '%{http_code}' --max-time 10 -X POST -H "X-Spoke-Secret: $SECRET" \
       -H 'X-Execute-Endpoint: /etc/passwd' -d '{}' "http://127.0.0.1:${SPORT[1]}/execute")
expect_eq "spoke /execute (header form) refuses an endpoint outside its list: 400" "$code" 400
# the spec's envelope form still works (the hub sends the header form)
code=$(curl -s -o "$T/body" -w '%{http_code}' --max-time 60 -X POST -H "X-Spoke-Secret: $SECRET" \
       -d '{"endpoint":"/v1/chat/completions","body":{"messages":[{"role":"user","content":"hi"}],"max_tokens":4}}' \
       "http://127.0.0.1:${SPORT[1]}/execute")
expect_eq "spoke /execute, envelope form: 200" "$code" 200
jq -e '.choices[0].message | has("content")' "$T/body" >/dev/null || fail "envelope form answer: $(cat "$T/body")"
code=$(curl -s -o "$T/body" -w '%{http_code}' --max-time 10 "http://127.0.0.1:${SPORT[1]}/health")
expect_eq "spoke /health 200 (llama.cpp healthy)" "$code" 200
code=$(curl -s -o "$T/body" -w '%{http_code}' --max-time 10 "http://127.0.0.1:${SPORT[1]}/connect")
expect_eq "spoke /connect registers now: 200" "$code" 200

stop_hub
check_sanitizers
echo "PASS"
