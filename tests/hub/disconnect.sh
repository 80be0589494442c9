#!/usr/bin/env bash
# A client that disconnects cancels its job and the upstream request is
# aborted, so the llama server frees the slot (its own /slots says so):
# mid-stream and while waiting for a whole answer.
# the larger generated model: a long generation holds its slot for seconds
MODEL_SHAPE=${MODEL_SHAPE:-bench}
source "$(dirname "$0")/lib.sh"
backend_setup
start_llama 1
start_llama 2
start_hub
start_spoke 1
start_spoke 2
wait_healthy 2

for mode in true false; do
  curl -s -N --max-time 60 -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    --data-binary "$(long_body $mode)" "http://127.0.0.1:$HPORT/v1/chat/completions" >"$T/out" &
  client=$!
  poll busy_llama || fail "the request never reached a llama server"
  L=$(busy_llama)
  [ "$mode" = false ] || poll grep -q '^data: {' "$T/out" || fail "no stream data before the disconnect"
  kill -9 "$client"   # the client goes away mid-generation
  wait "$client" 2>/dev/null || true
  poll slots_idle "$L" || fail "stream=$mode: llama server $L still busy after its client left (/slots)"
  ok "stream=$mode: client gone, llama server $L freed its slot"
done
poll bash -c "[ \$(curl -s -H 'Authorization: Bearer $KEY' http://127.0.0.1:$HPORT/stats | jq .jobs.cancelled) -ge 2 ]" ||
  fail "/stats does not count the cancelled jobs"
expect_eq "no job left running" "$(stats | jq .jobs.running)" 0
expect_eq "the hub still works" "$(req POST /chat '{"message":"hi"}')" 200
stop_hub
check_sanitizers
echo PASS
