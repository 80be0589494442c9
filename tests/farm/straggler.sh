#!/usr/bin/env bash
# Fast abort of stragglers on loopback: employee e1 hangs on every task
# (FARM_HANG in its environment), e2 is quick. Once the queue is empty and 3
# runs have finished, each task stuck on e1 beyond 2x the median gets a
# speculative copy on the idle e2; the first result wins and e1's copy is
# cancelled. Without fast abort this run would wait for the 1-hour task
# timeout (and the test would time out).
source "$(dirname "$0")/lib.sh"
secret "$T/s"
make_tasks "$T/tasks" 12
cat > "$T/tasks/script.py" <<'PY'
import json, os, sys, time
d = json.load(open(sys.argv[1]))
if os.environ.get("FARM_HANG"):
    time.sleep(3600)
with open(sys.argv[2], "w") as f:
    f.write(json.dumps({"sq": d["n"] * d["n"]}))
PY
FARM_HANG=1 start_employee e1 - --port 0 --bind 127.0.0.1 --broadcast none --secret-file "$T/s"
start_employee e2 - --port 0 --bind 127.0.0.1 --broadcast none --secret-file "$T/s"
P1=$(employee_port e1); P2=$(employee_port e2)
rc=0
timeout 300 "$BUILD/employer" --tasks "$T/tasks" --results "$T/res" --secret-file "$T/s" \
  --udp-port 0 --employee 127.0.0.1:$P1 --employee 127.0.0.1:$P2 --straggler-factor 2 \
  --joblog "$T/joblog" --no-progress 2> "$T/employer.err" || rc=$?
expect_eq "employer exit status" "$rc" 0
check_results "$T/res" 12
n=$(grep -c "speculative copy on e2" "$T/employer.err")
[ "$n" -ge 1 ] || fail "no speculative copy"
ok "$n speculative copies"
wait_for 30 grep -q "cancelled" "$T/e1.err"
ok "e1's straggling copy cancelled"
expect_eq "tasks with two ok joblog lines" "$(awk '$8 == "ok"' "$T/joblog" | cut -f1 | sort | uniq -d | wc -l)" 0
