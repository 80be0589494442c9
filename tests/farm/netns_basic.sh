#!/usr/bin/env bash
# One employer and three employees on four "hosts" (network namespaces on a
# bridge), discovering each other by UDP broadcast; 50 chunks; every result
# right, every script run once, the joblog and `employer status` complete.
source "$(dirname "$0")/lib.sh"
need_root_netns
for i in 0 1 2 3; do host $i; done
secret "$T/secret"
make_tasks "$T/tasks" 50
export FARM_RUNS=$T/runs
for i in 1 2 3; do
  start_employee "e$i" $i --secret-file "$T/secret" --broadcast 10.77.0.255 --udp-port $UDP_PORT
done
rc=0
in_ns 0 timeout 200 "$BUILD/employer" --tasks "$T/tasks" --results "$T/res" --secret-file "$T/secret" \
  --udp-port $UDP_PORT --joblog "$T/joblog" --no-progress 2> "$T/employer.err" || rc=$?
expect_eq "employer exit status" "$rc" 0
check_results "$T/res" 50
expect_eq "script runs" "$(wc -l < "$T/runs")" 50
expect_eq "distinct runs" "$(sort -u "$T/runs" | wc -l)" 50
# the work was spread: every employee ran something
for i in 1 2 3; do
  n=$(awk -v e="e$i" '$2 == e && $8 == "ok"' "$T/joblog" | wc -l)
  [ "$n" -gt 0 ] || fail "employee e$i ran nothing"
done
ok "all three employees worked"
expect_eq "joblog ok lines" "$(awk '$8 == "ok"' "$T/joblog" | wc -l)" 50
# employees were found by broadcast: the employer logged their namespace addresses
grep -q "at 10.77.0.1[123]:12345 ready" "$T/employer.err" || fail "no employee discovered on the bridge"
ok "discovered by broadcast"
"$BUILD/employer" status --results "$T/res" > "$T/status.out"
grep -q "^tasks: 0 pending, 0 assigned, 50 done, 0 failed" "$T/status.out" || fail "status: $(head -1 "$T/status.out")"
expect_eq "status rows" "$(grep -c ' done ' "$T/status.out")" 50
# the employee workdirs are private and hold nothing once results are acknowledged
for i in 1 2 3; do
  expect_eq "workdir mode e$i" "$(stat -c %a "$T/w_e$i")" 700
  wait_for 10 bash -c "! ls '$T/w_e$i' | grep -q -E '^(in|out)_'"
done
ok "acknowledged results deleted on the employees"
