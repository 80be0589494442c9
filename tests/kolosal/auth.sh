#!/usr/bin/env bash
# The server binds 127.0.0.1 unless told otherwise, and with an API key
# (FERRY_API_KEY or --api-key-file) /process and /status need
# "Authorization: Bearer <key>": 401 with a JSON error and WWW-Authenticate
# otherwise; /health stays open (issue 6, item 15).
source "$(dirname "$0")/lib.sh"
KEY=k3y-$$-0123456789abcdefXYZ

# listen_addr: the local address of our listening socket, from /proc (hex).
listen_addr() {
  local hp; hp=$(printf '%04X' "$PORT")
  awk -v hp="$hp" '$4 == "0A" { split($2, a, ":"); if (a[2] == hp) print a[1] }' /proc/net/tcp /proc/net/tcp6
}

# req METHOD PATH [curl args...]: prints "<code> <body>"; headers go to $T/hdr.
req() {
  local m=$1 p=$2; shift 2
  local code
  code=$(curl -s --max-time 5 -D "$T/hdr" -o "$T/rbody" -w '%{http_code}' -X "$m" "$@" "http://127.0.0.1:$PORT$p" || true)
  echo "$code $(cat "$T/rbody" 2>/dev/null)"
}

# Default: loopback only.
unset FERRY_HOST FERRY_API_KEY FERRY_API_KEY_FILE
launch_server --name "$NAME" --deadline-ms 200
expect_eq "default bind address" "$(listen_addr)" 0100007F
grep -q "^listening on 127.0.0.1:$PORT$" "$T/server.out" || fail "stdout: $(cat "$T/server.out")"
ok "default host printed"
expect_eq "no key: /process open" "$(req POST /process -d '{"message":"x"}' | cut -c1-3)" 504
stop_server

# --host 0.0.0.0 exposes it, with a warning when no key is set.
launch_server --name "$NAME" --host 0.0.0.0 --deadline-ms 200
expect_eq "--host 0.0.0.0" "$(listen_addr)" 00000000
grep -q 'without an API key' "$T/server.err" || fail "no warning: $(cat "$T/server.err")"
ok "warning for an exposed server without a key"
stop_server

# FERRY_API_KEY.
FERRY_API_KEY=$KEY start_server --deadline-ms 5000
start_worker 1
wait_field_auth() {
  for _ in $(seq 1 200); do
    v=$(curl -s --max-time 5 -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/status" \
        | grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2 || true)
    [ "$v" = "$2" ] && return 0; sleep 0.05
  done
  fail "/status $1 stayed '$v', wanted $2"
}
wait_field_auth workers_live 1
missing='401 {"error":"missing API key: send Authorization: Bearer <key>","status":401}'
invalid='401 {"error":"invalid API key","status":401}'
expect_eq "no Authorization" "$(req POST /process -d '{"message":"x"}')" "$missing"
grep -qi '^WWW-Authenticate: Bearer' "$T/hdr" || fail "no WWW-Authenticate: $(cat "$T/hdr")"
grep -qi '^Content-Type: application/json' "$T/hdr" || fail "401 is not JSON: $(cat "$T/hdr")"
ok "WWW-Authenticate: Bearer"
expect_eq "wrong key" "$(req POST /process -H 'Authorization: Bearer nope' -d '{"message":"x"}')" "$invalid"
grep -qi '^WWW-Authenticate: Bearer.*invalid_token' "$T/hdr" || fail "no invalid_token: $(cat "$T/hdr")"
ok "invalid_token"
expect_eq "key prefix" "$(req POST /process -H "Authorization: Bearer ${KEY%?}" -d '{}')" "$invalid"
expect_eq "key plus a byte" "$(req POST /process -H "Authorization: Bearer ${KEY}x" -d '{}')" "$invalid"
expect_eq "other scheme" "$(req POST /process -H "Authorization: Basic $KEY" -d '{}')" "$missing"
expect_eq "right key" "$(req POST /process -H "Authorization: Bearer $KEY" -d '{"message":"ab"}' | sed 's/,"worker":[0-9]*//')" '200 {"result":"ba"}'
expect_eq "scheme is case-insensitive" "$(req POST /process -H "Authorization: bearer $KEY" -d '{"message":"ab"}' | cut -c1-3)" 200
expect_eq "bad JSON needs the key first" "$(req POST /process -d 'nope')" "$missing"
expect_eq "/status without key" "$(req GET /status)" "$missing"
expect_eq "/status with key" "$(req GET /status -H "Authorization: Bearer $KEY" | cut -c1-3)" 200
expect_eq "/health open" "$(req GET /health | cut -c1-3)" 200
stop_server

# --api-key-file wins over FERRY_API_KEY; the trailing newline is not part of the key.
printf '%s\n' "$KEY" >"$T/key"; chmod 600 "$T/key"
FERRY_API_KEY=other-key-0123456789 start_server --api-key-file "$T/key" --deadline-ms 5000
start_worker 2
expect_eq "file key" "$(req GET /status -H "Authorization: Bearer $KEY" | cut -c1-3)" 200
expect_eq "env key ignored" "$(req GET /status -H 'Authorization: Bearer other-key-0123456789')" "$invalid"
stop_server

# Bad keys stop the server at start with a reason (exit 2).
rc=0; "$SERVER" --port 0 --name "$NAME" --api-key-file "$T/none" 2>"$T/e" || rc=$?
expect_eq "missing key file exit" "$rc" 2
grep -q "cannot read API key file" "$T/e" || fail "message: $(cat "$T/e")"
rc=0; FERRY_API_KEY=short "$SERVER" --port 0 --name "$NAME" 2>"$T/e" || rc=$?
expect_eq "short key exit" "$rc" 2
grep -q "at least 16" "$T/e" || fail "message: $(cat "$T/e")"
"$SERVER" --help | grep -q -- '--api-key-file' || fail "--help lacks --api-key-file"
"$SERVER" --help | grep -q 'FERRY_API_KEY\b' || fail "--help lacks FERRY_API_KEY"
ok "--help"
