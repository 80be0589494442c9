# Helpers for tests that run the real llama.cpp server (sourced, bash).
# Every process started here is killed by the EXIT trap, even on failure.
#   LLAMA_BIN        llama-server (built once per machine by scripts/llama.sh)
#   make_model FILE [tiny|bench] [SEED]   writes a generated GGUF model
#   start_llama NAME MODEL [llama-server flags...]
#                    starts llama-server on a free port (-np 4 -t 1 --metrics),
#                    waits until /health is ok; sets LLAMA_PORT and LLAMA_PID
#                    and records them as LLAMA_PORTS[NAME], LLAMA_PIDS[NAME]
set -euo pipefail

SRC=${FERRY_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${FERRY_BUILD_DIR:-$SRC/build}
T=$(mktemp -d /tmp/ferry-llama-test.XXXXXX)
PIDS=()
declare -A LLAMA_PORTS=() LLAMA_PIDS=()

llama_cleanup() {
  local rc=$?
  exec 2>/dev/null
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ $rc -ne 0 ]; then
    for f in "$T"/*.log; do [ -f "$f" ] && { echo "---- $f ----"; tail -n 25 "$f"; }; done
  fi
  rm -rf "$T"
  exit $rc
}
trap llama_cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; ok "$1"; }

# The build normally happened already (scripts/test.sh runs `llama.sh build`
# before CTest); if not, this builds it, which takes 10-20 minutes.
LLAMA_BIN=$("$SRC/scripts/llama.sh" path) || fail "scripts/llama.sh could not provide llama-server"

make_model() {
  "$BUILD/ferry-gguf" --out "$1" --shape "${2:-tiny}" --seed "${3:-1}" 2>/dev/null || fail "ferry-gguf failed"
}

start_llama() {
  local name=$1 model=$2; shift 2
  local log=$T/llama_$name.log
  "$LLAMA_BIN" -m "$model" -np 4 -t 1 --metrics --host 127.0.0.1 --port 0 --no-webui "$@" >"$log" 2>&1 &
  LLAMA_PID=$!
  PIDS+=("$LLAMA_PID")
  LLAMA_PORT=
  local i
  for i in $(seq 1 600); do
    [ -z "$LLAMA_PORT" ] && LLAMA_PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n1)
    if [ -n "$LLAMA_PORT" ] &&
       [ "$(curl -s --max-time 2 "http://127.0.0.1:$LLAMA_PORT/health" 2>/dev/null)" = '{"status":"ok"}' ]; then
      LLAMA_PORTS[$name]=$LLAMA_PORT
      LLAMA_PIDS[$name]=$LLAMA_PID
      return 0
    fi
    kill -0 "$LLAMA_PID" 2>/dev/null || fail "llama-server $name exited at start"
    sleep 0.1
  done
  fail "llama-server $name not healthy after 60 s"
}
