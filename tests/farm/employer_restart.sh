#!/usr/bin/env bash
# kill -9 of the employer while its employees run tasks, then a restart on
# the same ledger: the employees keep running (and holding) those tasks, say
# so in their HELLO, and the new employer adopts them instead of offering
# them again. e2 is frozen (SIGSTOP) for the first 9 s of the new employer's
# life, so e1 is free long before e2 reports: an employer that re-offered
# e2's tasks would hand them to e1 and they would run twice (seen with the
# employer before adoption: that is what this test catches). Every task's script runs exactly once over both employer lives
# (the script counts its runs), every result is right, and the joblog and
# ledger agree.
source "$(dirname "$0")/lib.sh"
secret "$T/s"
make_tasks "$T/tasks" 12
export FARM_RUNS=$T/runs FARM_SLEEP=3
start_employee e1 - --port 0 --bind 127.0.0.1 --broadcast none --secret-file "$T/s"
start_employee e2 - --port 0 --bind 127.0.0.1 --broadcast none --secret-file "$T/s"
P1=$(employee_port e1); P2=$(employee_port e2)
EARGS=(--tasks "$T/tasks" --results "$T/res" --secret-file "$T/s" --udp-port 0
  --employee 127.0.0.1:$P1 --employee 127.0.0.1:$P2 --no-progress --straggler-factor 0
  --joblog "$T/joblog" --adopt-wait 120)
"$BUILD/employer" "${EARGS[@]}" 2> "$T/employer.err" &
EMP=$!; PIDS+=($EMP)
# both employees busy with 3 tasks each (6 runs started, none finished)
wait_for 120 bash -c "[ -f '$T/runs' ] && [ \$(wc -l < '$T/runs') -ge 6 ]"
kill -9 $EMP; wait $EMP 2>/dev/null || true
nres=$(count_results "$T/res")
ok "employer killed with $(wc -l < "$T/runs") runs started and $nres results stored"
[ "$nres" -lt 12 ] || fail "the run finished before the kill"
kill -STOP "${EPID[e2]}"
"$BUILD/employer" "${EARGS[@]}" 2> "$T/employer2.err" &
EMP=$!; PIDS+=($EMP)
sleep 9
kill -CONT "${EPID[e2]}"
ok "e2 frozen for the restarted employer's first 9 s"
rc=0
wait_for 200 bash -c "! kill -0 $EMP 2>/dev/null"
wait $EMP || rc=$?
expect_eq "restarted employer exit status" "$rc" 0
check_results "$T/res" 12
expect_eq "script runs over both employer lives" "$(wc -l < "$T/runs")" 12
expect_eq "tasks run more than once" "$(sort "$T/runs" | uniq -d | wc -l)" 0
grep -q "adopted, not offered again" "$T/employer2.err" || fail "no task was adopted"
ok "$(grep -c 'adopted, not offered again' "$T/employer2.err") tasks adopted after the restart"
expect_eq "ledger" "$("$BUILD/employer" status --results "$T/res" | head -1)" \
  "tasks: 0 pending, 0 assigned, 12 done, 0 failed"
expect_eq "tasks with two ok joblog lines" "$(awk '$8 == "ok"' "$T/joblog" | cut -f1 | sort | uniq -d | wc -l)" 0
