#!/usr/bin/env bash
# The hub routes by llama.cpp's real free slots: a slot taken by a client
# talking to llama.cpp directly (not through the hub) is reported by the
# spoke ("busy_other", from llama.cpp's /slots) and the hub sends its jobs to
# the other spoke instead of queueing them inside the busy llama server.
# Fails on the code before busy_other: least-loaded counted only the hub's
# own jobs, so some /chat went to spoke 1 and waited behind the long
# generation (past CURL_TIME).
# The direct client's generation has no end (max_tokens -1, end-of-sequence
# ignored, llama.cpp's context shift on): it holds the slot until the test
# kills the client, however slow the machine. (A generation of 1848 tokens,
# ~10 s under load, could end while the /chat requests ran; the hub then
# rightly showed the slot free and the test failed with "busy with others:
# got '0'".)
MODEL_SHAPE=${MODEL_SHAPE:-bench}   # slower tokens: the endless stream writes less
source "$(dirname "$0")/lib.sh"
backend_setup
LLAMA_EXTRA=--context-shift start_llama 1 1   # one slot each
start_llama 2 1
start_hub
start_spoke 1
start_spoke 2
wait_healthy 2
U1="http://127.0.0.1:${SPORT[1]}" U2="http://127.0.0.1:${SPORT[2]}"
wstat() { stats | jq -r --arg u "$1" ".workers[] | select(.url == \$u) | .$2"; }

# someone else takes llama server 1's only slot, directly
curl -s -N --max-time 250 -H 'Content-Type: application/json' \
  --data-binary "$(chat_body -1 "tell me a long story" '"ignore_eos":true,"stream":true')" \
  "http://127.0.0.1:${LPORT[1]}/v1/chat/completions" >"$T/direct" &
direct=$!
PIDS+=("$direct")
poll grep -q '^data: {' "$T/direct" || fail "the direct stream to llama server 1 never started"
expect_eq "llama server 1's slot is busy (its /slots)" "$(slots_busy 1)" 1
# the spoke polls /slots and tells the hub
poll bash -c "[ \"\$(curl -s -H 'Authorization: Bearer $KEY' http://127.0.0.1:$HPORT/stats | jq -r --arg u '$U1' '.workers[] | select(.url == \$u) | .slots_busy_other')\" = 1 ]" ||
  fail "the hub never learnt that spoke 1's slot is busy with another client"

N=4
for k in $(seq 1 $N); do
  code=$(CURL_TIME=20 req POST /chat '{"message":"hi"}')
  expect_eq "/chat $k answered" "$code" 200
done
expect_eq "spoke 2 ran every /chat" "$(wstat "$U2" jobs_completed)" $N
expect_eq "spoke 1 (its slot taken by someone else) got none" "$(wstat "$U1" requests)" 0
kill -0 "$direct" 2>/dev/null || fail "the direct stream ended early: the test proved nothing"
expect_eq "llama server 1 still busy with the direct client" "$(slots_busy 1)" 1
expect_eq "the hub shows spoke 1's slot busy with others" "$(wstat "$U1" slots_busy_other)" 1

# the slot frees: spoke 1 takes jobs again
kill -9 "$direct"
wait "$direct" 2>/dev/null || true
poll slots_idle 1 || fail "llama server 1 did not free its slot"
poll bash -c "[ \"\$(curl -s -H 'Authorization: Bearer $KEY' http://127.0.0.1:$HPORT/stats | jq -r --arg u '$U1' '.workers[] | select(.url == \$u) | .slots_busy_other')\" = 0 ]" ||
  fail "the hub still counts spoke 1's slot as busy"
ok "spoke 1's slot free again in the hub's view"
stop_hub
check_sanitizers
echo PASS
