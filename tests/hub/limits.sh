#!/usr/bin/env bash
# Queue full: 503 + Retry-After at once. Deadline: 504 (queued or running),
# and a running job's llama.cpp slot is freed.
# the larger generated model: a long generation holds its slot for seconds
MODEL_SHAPE=${MODEL_SHAPE:-bench}
source "$(dirname "$0")/lib.sh"
backend_setup
start_llama 1 1
start_llama 2 1
start_hub -queue-size 2
start_spoke 1
start_spoke 2
wait_healthy 2

# two long generations take both slots, two more wait in the queue
bg=()
for i in 1 2 3 4; do
  curl -s -o /dev/null --max-time 60 -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    --data-binary "$(long_body false)" "http://127.0.0.1:$HPORT/v1/chat/completions" &
  bg+=($!)
  if [ $i = 2 ]; then poll bash -c "[ \$(curl -s -H 'Authorization: Bearer $KEY' http://127.0.0.1:$HPORT/stats | jq .jobs.running) = 2 ]" || fail "slots not taken"; fi
done
poll bash -c "[ \$(curl -s -H 'Authorization: Bearer $KEY' http://127.0.0.1:$HPORT/stats | jq .queue.length) = 2 ]" || fail "queue not filled"
code=$(req POST /chat '{"message":"one too many"}' -D "$T/head")
expect_eq "queue full: 503" "$code" 503
grep -qi '^retry-after: 1' "$T/head" || fail "503 without Retry-After"
jq -e '.error == "queue full"' "$T/body" >/dev/null || fail "503 body: $(cat "$T/body")"
ok "503 carries Retry-After and a JSON error"

# a queued job whose deadline passes: 504
code=$(req POST /chat '{"message":"x"}' -H 'X-Request-Timeout-Ms: 300')
expect_eq "queue still full: 503 again" "$code" 503
kill -9 "${bg[3]}" "${bg[2]}" 2>/dev/null || true
poll bash -c "[ \$(curl -s -H 'Authorization: Bearer $KEY' http://127.0.0.1:$HPORT/stats | jq .queue.length) = 0 ]" || fail "cancelled queued jobs stay queued"
code=$(req POST /chat '{"message":"x"}' -H 'X-Request-Timeout-Ms: 500')
expect_eq "queued past its deadline: 504" "$code" 504
jq -e '.status == 504' "$T/body" >/dev/null || fail "504 body: $(cat "$T/body")"
kill -9 "${bg[0]}" "${bg[1]}" 2>/dev/null || true
poll slots_idle 1 || fail "slot 1 not freed"
poll slots_idle 2 || fail "slot 2 not freed"

# a running job whose deadline passes: 504, and llama.cpp frees the slot
code=$(req POST /v1/chat/completions "$(long_body false)" -H 'X-Request-Timeout-Ms: 1500')
expect_eq "running past its deadline: 504" "$code" 504
poll slots_idle 1 || fail "llama 1 still busy after the deadline"
poll slots_idle 2 || fail "llama 2 still busy after the deadline"
ok "the deadline aborted the upstream request: slots idle"
expect_eq "deadline counted" "$(stats | jq .jobs.gave_up.deadline)" 2
stop_hub
check_sanitizers
echo PASS
