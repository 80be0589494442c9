#!/usr/bin/env bash
# Clear startup errors: port in use, segment owned by a live server, bad flags; --help.
source "$(dirname "$0")/lib.sh"

"$SERVER" --help | grep -q -- '--deadline-ms' || fail "--help lacks --deadline-ms"
ok "--help"
rc=0; "$SERVER" --port nope 2>"$T/e" || rc=$?
expect_eq "bad flag exit" "$rc" 2
grep -q 'port must be a number' "$T/e" || fail "bad flag message: $(cat "$T/e")"
rc=0; FERRY_RING_SLOTS=3 "$SERVER" 2>"$T/e" || rc=$?
expect_eq "bad env exit" "$rc" 2
grep -q 'power of two' "$T/e" || fail "bad env message: $(cat "$T/e")"

start_server
rc=0; timeout 10 "$SERVER" --port 0 --name "$NAME" 2>"$T/e" || rc=$?
expect_eq "second server on the same name" "$rc" 1
grep -q 'already owns the shared-memory segment' "$T/e" || fail "EEXIST message: $(cat "$T/e")"
ok "segment owned message"
rc=0; timeout 10 "$SERVER" --host 127.0.0.1 --port "$PORT" --name "${NAME}b" 2>"$T/e" || rc=$?
expect_eq "port in use exit" "$rc" 1
grep -q 'already in use' "$T/e" || fail "port message: $(cat "$T/e")"
ok "port in use message"
# The server still answers.
curl -sf --max-time 5 "http://127.0.0.1:$PORT/health" >/dev/null || fail "server gone"
ok "first server unaffected"
stop_server
