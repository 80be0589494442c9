#!/usr/bin/env bash
# Authentication on loopback: an employer with the wrong secret is refused
# and nothing runs (the canary the script would write stays absent); its
# announces are ignored; garbage on the TCP port runs nothing and the
# employee lives on; no secret and no --insecure: both refuse to start.
# Then the right secret runs the same task (the canary appears), so the
# absent canary above means something.
source "$(dirname "$0")/lib.sh"
secret "$T/good"; secret "$T/bad"
mkdir -p "$T/tasks"
echo '{"n": 1}' > "$T/tasks/c1.json"
cat > "$T/tasks/script.py" <<PY
import sys
open("$T/canary", "w").write("ran")
open(sys.argv[2], "w").write("ok")
PY
# refusals without a secret
rc=0; "$BUILD/employee" --port 0 --broadcast none --workdir "$T/wx" 2> "$T/nosecret.err" || rc=$?
expect_eq "employee without secret" "$rc" 2
grep -q "no secret" "$T/nosecret.err" || fail "employee: no clear message"
rc=0; "$BUILD/employer" --tasks "$T/tasks" --results "$T/rx" 2> "$T/nosecret2.err" || rc=$?
expect_eq "employer without secret" "$rc" 2
chmod 644 "$T/bad"
rc=0; "$BUILD/employee" --port 0 --broadcast none --workdir "$T/wx" --secret-file "$T/bad" 2>/dev/null || rc=$?
expect_eq "employee with a world-readable secret" "$rc" 2
chmod 600 "$T/bad"

start_employee e1 - --port 0 --bind 127.0.0.1 --broadcast 127.0.0.1 --udp-port $UDP_PORT --secret-file "$T/good"
P=$(employee_port e1)
# garbage, then an HTTP request, on the employee's port
# (subshells: the employee hangs up on us and SIGPIPE must not end the test)
(printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' > /dev/tcp/127.0.0.1/$P) 2>/dev/null || true
(head -c 4096 /dev/urandom > /dev/tcp/127.0.0.1/$P) 2>/dev/null || true
# the wrong secret, by announce and by static address
rc=0
timeout 8 "$BUILD/employer" --tasks "$T/tasks" --results "$T/res_bad" --secret-file "$T/bad" \
  --udp-port $UDP_PORT --employee 127.0.0.1:$P --no-progress 2> "$T/employer_bad.err" || rc=$?
expect_eq "wrong-secret employer never finishes (killed by timeout)" "$rc" 124
[ ! -e "$T/canary" ] || fail "the script ran for a peer without the secret"
ok "canary absent"
grep -q "authentication failed" "$T/employer_bad.err" || fail "employer did not report the refusal"
ok "refusal reported"
! grep -q " ready (" "$T/employer_bad.err" || fail "an employee became ready without the secret"
[ -z "$(ls "$T/res_bad" | grep result_ || true)" ] || fail "a result appeared"
kill -0 "${EPID[e1]}" || fail "employee died"
ok "employee alive after garbage and a wrong secret"
# the right secret: found by its announce alone, runs, canary appears
rc=0
timeout 60 "$BUILD/employer" --tasks "$T/tasks" --results "$T/res" --secret-file "$T/good" \
  --udp-port $UDP_PORT --no-progress 2> "$T/employer.err" || rc=$?
expect_eq "right-secret employer" "$rc" 0
[ -e "$T/canary" ] || fail "canary absent with the right secret"
expect_eq "result" "$(cat "$T/res/result_c1.json")" ok
# protocol v3: file bytes travel in clear under their tag by default; either
# side's --encrypt-data (or FERRY_FARM_ENCRYPT_DATA=1) makes them encrypted,
# and the task still runs right
grep -q " ready (.*file data in clear)" "$T/employer.err" || fail "default mode not clear-data"
ok "default: file data authenticated, in clear"
echo '{"n": 2}' > "$T/tasks/c2.json"
rc=0
timeout 60 "$BUILD/employer" --tasks "$T/tasks" --results "$T/res" --secret-file "$T/good" \
  --udp-port $UDP_PORT --no-progress --encrypt-data 2> "$T/employer_enc.err" || rc=$?
expect_eq "employer --encrypt-data" "$rc" 0
grep -q " ready (.*file data encrypted)" "$T/employer_enc.err" || fail "--encrypt-data not agreed"
expect_eq "result with encrypted data" "$(cat "$T/res/result_c2.json")" ok
ok "--encrypt-data: file data encrypted, task done"
