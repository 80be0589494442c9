#!/usr/bin/env bash
# A loaded llama.cpp answers /slots late (it answers it between two decode
# steps; 410 ms measured with 8 CPU hogs on 2 cores): the spoke's
# bookkeeping poll times out, and that must not withdraw the spoke. It keeps
# its last view (ready) until -slow-polls timeouts in a row; a refused or
# reset connection still counts at once.
# The fake llama's /slots is made slower than the spoke's poll timeout
# (500 ms with -slots-ms 200) while its completions stay fast. Fails on the
# old spoke: the first timed-out poll made it report llama.cpp "not ready",
# and the hub's job (-max-retries 0, one spoke) got 503.
BACKEND=fake
source "$(dirname "$0")/lib.sh"
backend_setup
start_llama 1 2 5
start_hub -max-retries 0 -deadline-ms 8000
start_spoke 1 -slow-polls 1000000   # never "not ready" from timeouts during the test
wait_healthy 1
served() { curl -s --max-time 5 "http://127.0.0.1:${LPORT[1]}/served" | jq -r ".$1"; }

code=$(CURL_TIME=20 req POST /v1/chat/completions "$(chat_body 4)")
expect_eq "a job before /slots slows down" "$code" 200
d=$(curl -s --max-time 5 -d 3000 "http://127.0.0.1:${LPORT[1]}/slots-delay" | jq -r .slots_delay_ms)
expect_eq "the fake's /slots answers 3 s late" "$d" 3000
# the spoke's polls time out (it gives up on each and polls again)
poll bash -c "[ \"\$(curl -s --max-time 5 http://127.0.0.1:${LPORT[1]}/served | jq -r .slots_abandoned)\" -ge 2 ]" ||
  fail "the spoke's /slots polls never timed out: the test proved nothing"
ok "the spoke's /slots polls timed out $(served slots_abandoned) times"
for k in 1 2 3; do
  code=$(CURL_TIME=20 req POST /v1/chat/completions "$(chat_body 4)")
  expect_eq "job $k while /slots times out (the spoke stays ready)" "$code" 200
done
expect_eq "the hub sees the spoke healthy" "$(healthy_workers)" 1
# the spoke's log must not say llama.cpp went not ready
if grep -q "not ready" "$T/spoke1.err"; then fail "the spoke reported llama.cpp not ready on a slow /slots"; fi
ok "no 'not ready' in the spoke's log"

# a refused connection still counts at once: llama gone, the spoke says so
curl -s --max-time 5 -d 0 "http://127.0.0.1:${LPORT[1]}/slots-delay" >/dev/null
kill -9 "${LPID[1]}"
poll grep -q "not ready" "$T/spoke1.err" || fail "the spoke never noticed llama.cpp gone"
ok "llama.cpp gone: not ready at once"
stop_hub
check_sanitizers
echo PASS
