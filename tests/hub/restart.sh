#!/usr/bin/env bash
# The hub restarted: the spokes register again on their own and requests work.
source "$(dirname "$0")/lib.sh"
backend_setup
start_llama 1
start_llama 2
start_hub
start_spoke 1
start_spoke 2
wait_healthy 2
expect_eq "/chat before the restart" "$(req POST /chat '{"message":"hi"}')" 200
kill -9 "$HPID"
wait "$HPID" 2>/dev/null || true
ok "hub killed"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$HPORT/health" || true)
expect_eq "nobody answers while the hub is down" "$code" 000
start_hub
wait_healthy 2
ok "both spokes registered again with the new hub"
expect_eq "/chat after the restart" "$(req POST /chat '{"message":"hi"}')" 200
expect_eq "/stats lists both spokes" "$(stats | jq '.workers | length')" 2
stop_hub
check_sanitizers
echo PASS
