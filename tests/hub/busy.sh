#!/usr/bin/env bash
# A spoke that answers "no free slot" (503 {"busy": true}) does not cost the
# job a retry: the hub puts it back at the head of its line and sends it
# again once the spoke has room, within the job's deadline.
#
# Deterministic set-up: TWO hubs share one spoke in front of a one-slot
# llama. Hub A's long job takes the slot; hub B cannot know (the slot is the
# spoke's own request, not someone else's on llama.cpp), so its job gets
# the spoke's busy 503. Hub B has no other spoke and -max-retries 0: the old
# code answered 503 at once (retry spent, no other spoke: no_worker); now
# the job waits and is answered 200 when hub A's job ends.
source "$(dirname "$0")/lib.sh"
backend_setup
start_llama 1 1 20        # one slot; the fake: 20 ms per token
start_hub
start_spoke 1
wait_healthy 1
SURL="http://127.0.0.1:${SPORT[1]}"

# hub B: same secret, the spoke registered by hand (the spoke itself only
# knows hub A)
BPORT=$(free_port)
"$BUILD/hub" -port "$BPORT" -host 127.0.0.1 -api-keys "$T/keys" -secret "$SECRET" -health-ms 200 \
  -max-retries 0 -deadline-ms 60000 >"$T/hubB.out" 2>>"$T/hubB.err" &
PIDS+=("$!")
wait_listening "$T/hubB.out" "$!" >/dev/null || fail "hub B did not start"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "X-Spoke-Secret: $SECRET" \
  -H 'Content-Type: application/json' -d "{\"url\":\"$SURL\",\"slots\":1,\"ready\":true}" \
  "http://127.0.0.1:$BPORT/connectWorker")
expect_eq "the spoke registered with hub B" "$code" 200

# hub A's long job holds the llama slot (through the spoke)
if [ "$BACKEND" = real ]; then long=$(chat_body 600 "tell me a long story" '"ignore_eos":true'); else long=$(chat_body 100); fi
CURL_TIME=120 req POST /v1/chat/completions "$long" >"$T/longcode" &
lpid=$!
poll bash -c "[ \"\$(curl -s -H 'Authorization: Bearer $KEY' http://127.0.0.1:$HPORT/stats | jq '.workers[0].slots_busy')\" = 1 ]" ||
  fail "hub A's job never started"

# hub B's job: the spoke refuses it (busy) until hub A's job ends
code=$(curl -s -o "$T/bbody" -w '%{http_code}' --max-time 100 -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' --data-binary "$(chat_body 4)" "http://127.0.0.1:$BPORT/v1/chat/completions")
wait "$lpid"
expect_eq "hub A's long job answered" "$(cat "$T/longcode")" 200
expect_eq "hub B's job answered 200 once the slot freed (the busy answers spent no retry)" "$code" 200
sb=$(curl -s --max-time 5 -H "Authorization: Bearer $KEY" "http://127.0.0.1:$BPORT/stats")
rq=$(jq .jobs.requeued_busy <<<"$sb")
[ "$rq" -ge 1 ] 2>/dev/null || fail "hub B never met a busy answer (requeued_busy=$rq): the test proved nothing"
ok "hub B requeued its job $rq times on busy answers"
expect_eq "no retry spent" "$(jq .jobs.retries <<<"$sb")" 0
expect_eq "the spoke is not blamed" "$(jq '.workers[0].consecutive_failures' <<<"$sb")" 0
stop_hub
check_sanitizers
echo PASS
