#!/usr/bin/env bash
# kill -9 on both sides, on namespaces discovering by broadcast:
#  1. an employee dies mid-task: its tasks finish elsewhere, exactly one
#     result (and one "ok" joblog line) per task;
#  2. the employer dies mid-run and restarts on the same ledger: tasks that
#     were finished before the kill are not run again (the script counts its
#     runs), every result present and right.
source "$(dirname "$0")/lib.sh"
need_root_netns
for i in 0 1 2 3; do host $i; done
secret "$T/secret"
make_tasks "$T/tasks" 50
export FARM_RUNS=$T/runs FARM_SLEEP=0.3
for i in 1 2 3; do
  start_employee "e$i" $i --secret-file "$T/secret" --broadcast 10.77.0.255 --udp-port $UDP_PORT
done
EARGS=(--tasks "$T/tasks" --results "$T/res" --secret-file "$T/secret" --udp-port $UDP_PORT
  --joblog "$T/joblog" --no-progress --straggler-factor 0)

# --- 1: employee e1 dies while it runs tasks
ip netns exec "${NS_TAG}h0" "$BUILD/employer" "${EARGS[@]}" 2> "$T/employer.err" &
EMP=$!; PIDS+=($EMP)
wait_for 120 bash -c "[ \$(ls '$T/res' 2>/dev/null | grep -c '^result_') -ge 5 ]"
wait_for 60 bash -c "ls '$T/w_e1' | grep -q '^in_'"   # e1 holds a chunk right now
kill -9 "${EPID[e1]}"
ok "killed employee e1 mid-task"
wait_for 30 grep -q "employee e1 lost" "$T/employer.err"
ok "employer saw e1's loss"

# --- 2: the employer dies mid-run, then restarts
wait_for 120 bash -c "[ \$(ls '$T/res' | grep -c '^result_') -ge 20 ]"
kill -9 $EMP
wait $EMP 2>/dev/null || true
ls "$T/res" | grep '^result_' | sed 's/^result_c//; s/\.json$//' | sort -n > "$T/before"
nbefore=$(wc -l < "$T/before")
ok "killed the employer with $nbefore results stored"
[ "$nbefore" -lt 50 ] || fail "the run finished before the kill"
rc=0
in_ns 0 timeout 200 "$BUILD/employer" "${EARGS[@]}" 2> "$T/employer2.err" || rc=$?
expect_eq "restarted employer exit status" "$rc" 0
check_results "$T/res" 50
# finished before the kill => run once over both employer lives (a task
# that was on e1 when it died legitimately ran a second time elsewhere)
while read -r n; do
  c=$(grep -cx "$n" "$T/runs")
  [ "$c" -eq 1 ] && continue
  if [ "$c" -eq 2 ] && grep -q "^c$n.json	e1	.*	lost\$" "$T/joblog"; then continue; fi
  fail "task c$n finished before the employer's kill but ran $c times"
done < "$T/before"
ok "tasks finished before the employer's kill were not run again"
expect_eq "ledger" "$("$BUILD/employer" status --results "$T/res" | head -1)" \
  "tasks: 0 pending, 0 assigned, 50 done, 0 failed"
expect_eq "tasks with two ok joblog lines" "$(awk '$8 == "ok"' "$T/joblog" | cut -f1 | sort | uniq -d | wc -l)" 0
grep -q "	e1	.*	lost\$" "$T/joblog" || fail "no task of e1 failed over"
ok "e1's tasks failed over"
