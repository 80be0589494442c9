#!/usr/bin/env bash
# The ledger across runs (loopback): a second run over the same directory runs
# nothing; a chunk whose content changed is a new task (run again, result
# replaced); a chunk only touched (same bytes, new mtime) is not; a chunk
# whose name is not a valid task id is skipped. Also checks the progress line.
source "$(dirname "$0")/lib.sh"
secret "$T/s"
make_tasks "$T/tasks" 3
echo '{"n": 9}' > "$T/tasks/bad name.json"
export FARM_RUNS=$T/runs
start_employee e1 - --port 0 --bind 127.0.0.1 --broadcast none --secret-file "$T/s"
P=$(employee_port e1)
run() {
  timeout 120 "$BUILD/employer" --tasks "$T/tasks" --results "$T/res" --secret-file "$T/s" \
    --udp-port 0 --employee 127.0.0.1:$P "$@"
}
run --progress 2> "$T/run1.err"
check_results "$T/res" 3
expect_eq "runs after the first run" "$(wc -l < "$T/runs")" 3
grep -q "skipping bad name.json" "$T/run1.err" || fail "invalid id not reported"
ok "invalid task id skipped"
grep -q "done 3  failed 0  running 0  total 3 .* tasks/s  ETA" "$T/run1.err" || fail "no progress line"
ok "progress line"
run --no-progress 2> "$T/run2.err"
expect_eq "runs after an identical second run" "$(wc -l < "$T/runs")" 3
printf '{"n": 7}\n' > "$T/tasks/c2.json"     # same size, new content
touch -d '+1 minute' "$T/tasks/c1.json"        # new mtime, same content
run --no-progress 2> "$T/run3.err"
expect_eq "runs after changing c2 and touching c1" "$(wc -l < "$T/runs")" 4
expect_eq "the extra run is c2's new content" "$(tail -1 "$T/runs")" 7
expect_eq "c2's result replaced" "$(cat "$T/res/result_c2.json")" '{"sq": 49}'
grep -q "task c2.json: chunk changed, new task" "$T/run3.err" || fail "change not logged"
! grep -q "c1.json: chunk changed" "$T/run3.err" || fail "a touched chunk became a new task"
ok "touched chunk kept its result"
# --watch: a chunk added later is picked up (written under a temp name, then renamed)
"$BUILD/employer" --tasks "$T/tasks" --results "$T/res" --secret-file "$T/s" --udp-port 0 \
  --employee 127.0.0.1:$P --no-progress --watch 2> "$T/watch.err" &
W=$!; PIDS+=($W)
sleep 1
printf '{"n": 5}\n' > "$T/tasks/.c5.tmp" && mv "$T/tasks/.c5.tmp" "$T/tasks/c5.json"
wait_for 120 test -f "$T/res/result_c5.json"
expect_eq "chunk added under --watch" "$(cat "$T/res/result_c5.json")" '{"sq": 25}'
kill -TERM $W
rc=0; wait $W || rc=$?
expect_eq "employer stopped by SIGTERM" "$rc" 130
