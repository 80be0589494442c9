#!/usr/bin/env bash
# Limits on loopback: a script over its wall time, over its memory
# (RLIMIT_AS) and over its output size fails with that reason; the other
# tasks succeed (the 20 s wall-time limit is far above their run time even on
# a loaded machine), the employer exits 1, and the employee lives on and runs
# the next batch.
source "$(dirname "$0")/lib.sh"
secret "$T/s"
mkdir -p "$T/tasks" "$T/tasks2"
for m in ok1 ok2 sleep mem big; do printf '{"mode": "%s"}\n' "$m" > "$T/tasks/$m.json"; done
cat > "$T/tasks/script.py" <<'PY'
import json, sys, time
m = json.load(open(sys.argv[1]))["mode"]
if m == "sleep":
    time.sleep(600)
if m == "mem":
    x = bytearray(1 << 30)
    x[-1] = 1
with open(sys.argv[2], "w") as f:
    f.write("x" * (5 << 20) if m == "big" else m)
PY
start_employee e1 - --port 0 --bind 127.0.0.1 --broadcast none --secret-file "$T/s" --slots 2
P=$(employee_port e1)
SP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
timeout 200 "$BUILD/employer" --tasks "$T/tasks" --results "$T/res" --secret-file "$T/s" \
  --udp-port 0 --employee 127.0.0.1:$P --task-timeout 20 --mem-limit 200 --out-limit 1 \
  --retries 1 --no-progress --status-port $SP 2> "$T/employer.err" &
EMP=$!; PIDS+=($EMP)
# while the sleeping task holds the run open: /metrics, /status, `employer status`
wait_for 60 bash -c "curl -sf http://127.0.0.1:$SP/metrics | grep -q '^ferry_farm_tasks{state=\"done\"} [12]\$'"
curl -sf "http://127.0.0.1:$SP/metrics" > "$T/metrics"
grep -q '^ferry_farm_employees 1$' "$T/metrics" || fail "metrics: $(cat "$T/metrics")"
ok "/metrics"
curl -sf "http://127.0.0.1:$SP/status" | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["counts"]["done"] >= 1, j["counts"]
assert [e["id"] for e in j["employees"]] == ["e1"], j["employees"]
assert len(j["tasks"]) == 5
' || fail "/status"
ok "/status"
"$BUILD/employer" status --results "$T/res" --status-port $SP > "$T/status_live"
grep -q "^employees: 1" "$T/status_live" || fail "status: $(cat "$T/status_live")"
grep -qE "^e1 +127.0.0.1 +$P connected" "$T/status_live" || fail "status: $(cat "$T/status_live")"
ok "employer status with the employee table"
rc=0; wait $EMP || rc=$?
expect_eq "employer exit status with failures" "$rc" 1
expect_eq "ok1" "$(cat "$T/res/result_ok1.json")" ok1
expect_eq "ok2" "$(cat "$T/res/result_ok2.json")" ok2
"$BUILD/employer" status --results "$T/res" > "$T/status"
cat "$T/status"
grep -E '^sleep.json +failed .*time limit' "$T/status" >/dev/null || fail "no time-limit failure"
ok "time limit"
grep -E '^mem.json +failed .*memory limit' "$T/status" >/dev/null || fail "no memory-limit failure"
ok "memory limit"
grep -E '^big.json +failed .*output limit' "$T/status" >/dev/null || fail "no output-limit failure"
ok "output limit"
for f in sleep mem big; do [ ! -e "$T/res/result_$f.json" ] || fail "result for failed $f"; done
kill -0 "${EPID[e1]}" || fail "employee died"
# the same employee runs the next batch
echo '{"mode": "ok3"}' > "$T/tasks2/ok3.json"
cp "$T/tasks/script.py" "$T/tasks2/"
rc=0
timeout 60 "$BUILD/employer" --tasks "$T/tasks2" --results "$T/res2" --secret-file "$T/s" \
  --udp-port 0 --employee 127.0.0.1:$P --no-progress 2> "$T/employer2.err" || rc=$?
expect_eq "next batch" "$rc" 0
expect_eq "ok3" "$(cat "$T/res2/result_ok3.json")" ok3
