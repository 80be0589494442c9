#!/usr/bin/env bash
# Results survive on the employee's disk: the employer dies while e1 runs 3
# tasks; e1 finishes them with nobody to send to, is then killed -9 and
# restarted on the same workdir; the restarted employer receives the 3 held
# results without running them again (the script counts its runs: 6 runs
# for 6 tasks), and every result is right.
source "$(dirname "$0")/lib.sh"
secret "$T/s"
make_tasks "$T/tasks" 6
export FARM_RUNS=$T/runs FARM_SLEEP=3
start_employee e1 - --port 0 --bind 127.0.0.1 --broadcast none --secret-file "$T/s"
P=$(employee_port e1)
EARGS=(--tasks "$T/tasks" --results "$T/res" --secret-file "$T/s" --udp-port 0
  --employee 127.0.0.1:$P --no-progress --straggler-factor 0)
"$BUILD/employer" "${EARGS[@]}" 2> "$T/employer.err" &
EMP=$!; PIDS+=($EMP)
wait_for 120 bash -c "[ -f '$T/runs' ] && [ \$(wc -l < '$T/runs') -ge 3 ]"
kill -9 $EMP; wait $EMP 2>/dev/null || true
ok "employer killed while e1 runs 3 tasks"
wait_for 120 bash -c "[ \$(ls '$T/w_e1' | grep -c '^res_.*\.json\$') -eq 3 ]"
kill -9 "${EPID[e1]}"; wait "${EPID[e1]}" 2>/dev/null || true
ok "e1 held 3 results on disk, then was killed"
mv "$T/e1.err" "$T/e1-first.err"
start_employee e1 - --port "$P" --bind 127.0.0.1 --broadcast none --secret-file "$T/s"
wait_for 20 grep -q "3 results held from before a restart" "$T/e1.err"
ok "restarted e1 found its 3 held results"
rc=0
timeout 200 "$BUILD/employer" "${EARGS[@]}" 2> "$T/employer2.err" || rc=$?
expect_eq "restarted employer" "$rc" 0
check_results "$T/res" 6
expect_eq "script runs" "$(wc -l < "$T/runs")" 6
expect_eq "distinct runs" "$(sort -u "$T/runs" | wc -l)" 6
wait_for 20 bash -c "! ls '$T/w_e1' | grep -q -E '^(res|out|in)_'"
ok "acknowledged results deleted from e1's workdir"
