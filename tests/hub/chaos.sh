#!/usr/bin/env bash
# build/chaostest, short: spokes killed and restarted at random while /chat
# requests flow; no request may hang and every failure must carry an HTTP
# status (chaostest's exit code says so). CHAOS_DURATION overrides (e.g. 60s).
source "$(dirname "$0")/lib.sh"
backend_setup
start_llama 1
start_llama 2
start_hub -deadline-ms 20000 -default-max-tokens 8
base=$(free_port)
"$BUILD/chaostest" -duration "${CHAOS_DURATION:-12s}" -interval 100ms -chaos-interval 1s -timeout 40s \
  -url "http://127.0.0.1:$HPORT/chat" -llama-ports "${LPORT[1]},${LPORT[2]}" -base-port "$base" \
  -max-spokes 4 -max-running 3 -secret "$SECRET" -api-key "$KEY" >"$T/chaos.out" 2>"$T/chaos.err" || {
  cat "$T/chaos.out"; fail "chaostest reports hung requests or failures without a status"; }
cat "$T/chaos.out"
grep -q '^=== CHAOS TEST RESULTS ===' "$T/chaos.out" || fail "no results block"
expect_eq "no hung request" "$(sed -n 's/^Hung.*: //p' "$T/chaos.out")" 0
killed=$(sed -n 's/^Workers Killed: //p' "$T/chaos.out")
[ "$killed" -ge 2 ] || fail "only $killed spokes killed"
succ=$(sed -n 's/^Successful: \([0-9]*\).*/\1/p' "$T/chaos.out")
[ "$succ" -ge 1 ] || fail "no request succeeded"
ok "chaos: $killed spokes killed, $succ requests succeeded, none hung"
stop_hub
check_sanitizers
echo PASS
