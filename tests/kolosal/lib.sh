# Shared helpers for the Kolosal integration tests (sourced, bash).
# Every process started here is killed by the EXIT trap, even on failure.
set -euo pipefail

BUILD=${FERRY_BUILD_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build}
SERVER=$BUILD/server
WORKER=$BUILD/worker
T=$(mktemp -d /tmp/kolosal-test.XXXXXX)
NAME=kt$$x$RANDOM           # unique shm name per run
PIDS=()                      # every background process we started
SERVER_PID=
PORT=

cleanup() {
  local rc=$?
  exec 2>/dev/null   # no "Killed" notices for the processes we end
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ $rc -ne 0 ]; then
    echo "---- server log ----"; tail -n 40 "$T/server.log" 2>/dev/null || true
    for f in "$T"/worker_*.log; do [ -f "$f" ] && { echo "---- $f ----"; tail -n 10 "$f"; }; done
  fi
  rm -rf "$T"
  rm -f "/dev/shm/ferry-$(id -u)-$NAME"
  exit $rc
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# start_server [extra flags...]: --port 0, our name, log in $T; sets PORT, SERVER_PID.
start_server() { launch_server --host 127.0.0.1 --name "$NAME" "$@"; }

# launch_server [flags...]: the server with only --port 0 and the log in $T
# added (name and host from the flags or the environment).
launch_server() {
  "$SERVER" --port 0 --log "$T/server.log" "$@" >"$T/server.out" 2>"$T/server.err" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  local i
  for i in $(seq 1 200); do
    PORT=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$T/server.out" 2>/dev/null || true)
    [ -n "$PORT" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$T/server.err"; fail "server exited at start"; }
    sleep 0.05
  done
  fail "server did not start"
}

# start_worker N: starts worker number N; its pid goes to WORKER_PID.
start_worker() {
  "$WORKER" --name "$NAME" >>"$T/worker_$1.log" 2>&1 &
  WORKER_PID=$!
  PIDS+=("$WORKER_PID")
}

# status_field NAME: a number from GET /status.
status_field() {
  curl -s --max-time 5 "http://127.0.0.1:$PORT/status" | grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2
}

# wait_field NAME VALUE: polls /status until NAME == VALUE (10 s at most).
wait_field() {
  local i v
  for i in $(seq 1 200); do
    v=$(status_field "$1" || true)
    [ "$v" = "$2" ] && return 0
    sleep 0.05
  done
  fail "/status $1 stayed '$v', wanted $2"
}

# post BODY: POST /process; prints "<code> <body>".
post() {
  local f="$T/body.$BASHPID.$RANDOM" code
  code=$(curl -s --max-time "${CURL_TIME:-15}" -o "$f" -w '%{http_code}' \
         -H 'Content-Type: application/json' --data-binary "$1" "http://127.0.0.1:$PORT/process" || true)
  echo "$code $(cat "$f" 2>/dev/null)"
  rm -f "$f"
}

# raw BYTES: sends raw bytes on a fresh connection, prints the response.
raw() {
  exec 3<>"/dev/tcp/127.0.0.1/$PORT"
  printf '%b' "$1" >&3
  timeout 5 cat <&3 || true
  exec 3<&- 3>&-
}

# expect_eq WHAT GOT WANT
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; ok "$1"; }

# stop_server: SIGTERM, the server must exit 0 with a clean stderr (under
# sanitizers this is where leaks and errors are reported).
stop_server() {
  kill -TERM "$SERVER_PID"
  local rc=0
  wait "$SERVER_PID" || rc=$?
  if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error' "$T/server.err"; then
    cat "$T/server.err"; fail "sanitizer report from the server"
  fi
  expect_eq "server exits cleanly" "$rc" 0
}
