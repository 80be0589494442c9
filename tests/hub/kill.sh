#!/usr/bin/env bash
# A spoke killed with SIGKILL under load: every request is answered 200 or a
# clear 5xx within its deadline, none hangs; jobs not yet started (and jobs
# that had not streamed a byte) go to the other spoke.
source "$(dirname "$0")/lib.sh"
backend_setup
start_llama 1
start_llama 2
start_hub -deadline-ms 30000
start_spoke 1
start_spoke 2
wait_healthy 2

if [ "$BACKEND" = real ]; then body=$(chat_body 48 "hello" '"ignore_eos":true'); else body=$(chat_body 15); fi
CURL_TIME=40 load 160 8 "$body" "$T/wave1" &
loader=$!
# kill spoke 1 once it is busy
poll bash -c "[ \$(curl -s -H 'Authorization: Bearer $KEY' http://127.0.0.1:$HPORT/stats | jq '.workers[] | select(.url == \"http://127.0.0.1:${SPORT[1]}\") | .slots_busy') -gt 0 ]" ||
  fail "spoke 1 never got a job"
kill -9 "${SPID[1]}"
ok "spoke 1 killed with jobs in flight"
wait "$loader"

n=$(wc -l <"$T/wave1")
expect_eq "every request answered (no hang, curl got a status)" "$n" 160
bad=$(awk '$1 != 200 && $1 != 502 && $1 != 503 && $1 != 504' "$T/wave1" | wc -l)
expect_eq "every answer is 200 or a clear 5xx" "$bad" 0
ok200=$(awk '$1 == 200' "$T/wave1" | wc -l)
echo "wave 1: $ok200/160 answered 200; codes: $(awk '{print $1}' "$T/wave1" | sort | uniq -c | tr '\n' ' ')"
# In-flight jobs on the dead spoke had sent no byte (not streaming): they
# are retried on spoke 2, so all of them succeed.
expect_eq "jobs of the killed spoke were retried on the other" "$ok200" 160
# The poll above saw a busy slot, but on a loaded machine the spoke's jobs can
# all finish before the kill lands; then nothing needed a retry. Say so
# instead of failing: the assertions above are what the test is about.
[ "$(stats | jq .jobs.retries)" -ge 1 ] || echo "note: no job was in flight at the kill (no retry needed)"

# after the kill: everything goes to spoke 2
: >"$T/wave2"
load 40 8 "$body" "$T/wave2"
expect_eq "after the kill: 40 more all 200" "$(awk '$1 == 200' "$T/wave2" | wc -l)" 40
stats >"$T/stats"
dead=$(jq -r ".workers[] | select(.url == \"http://127.0.0.1:${SPORT[1]}\") | .healthy" "$T/stats")
expect_eq "the killed spoke is not healthy in /stats" "$dead" false
ok "stats: $(jq -c '[.workers[] | {url, jobs_completed, jobs_failed, state}]' "$T/stats")"
stop_hub
check_sanitizers
echo PASS
