# Shared helpers for the GoLlama hub/spoke integration tests (sourced, bash).
#
# BACKEND=real (default): the real llama-server (scripts/llama.sh builds it
# once per machine into ~/.cache/ferry) with a tiny generated GGUF model
# (build/ferry-gguf). BACKEND=fake: tests/fake_llama_slow, a FAKE llama.cpp
# whose token pace the test sets (-token-ms).
# Every process started here is killed by the EXIT trap, even on failure.
set -euo pipefail

SRC=${FERRY_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${FERRY_BUILD_DIR:-$SRC/build}
BACKEND=${BACKEND:-real}
T=$(mktemp -d /tmp/hub-test.XXXXXX)
SECRET=spoke-secret-$$-$RANDOM
CTX_PER_SLOT=${CTX_PER_SLOT:-2048}   # the generated models' training context
MODEL_SHAPE=${MODEL_SHAPE:-tiny}     # bench: ~10x slower tokens, for tests that hold a slot
KEY=test-key-$$-$RANDOM
PIDS=()
declare -A LPID LPORT SPID SPORT   # per index: llama pid/port, spoke pid/port
HPID= HPORT=

cleanup() {
  local rc=$?
  exec 2>/dev/null
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ $rc -ne 0 ]; then
    for f in "$T"/*.err "$T"/*.log; do [ -s "$f" ] && { echo "---- $f ----"; tail -n 25 "$f"; }; done
  fi
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; ok "$1"; }

# A free TCP port on 127.0.0.1 (nobody accepts on it right now), below the
# kernel's ephemeral range so no outgoing connection holds it.
free_port() {
  local p lo
  lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  for _ in $(seq 1 100); do
    p=$((10000 + RANDOM % (lo - 10000)))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
  done
  fail "no free port found"
}

# wait_listening FILE PID: the port from "listening on HOST:PORT" in FILE.
wait_listening() {
  local f=$1 pid=$2 port
  for _ in $(seq 1 400); do
    port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$f" 2>/dev/null || true)
    [ -n "$port" ] && { echo "$port"; return 0; }
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# poll CMD...: runs CMD every 0.1 s until it succeeds; 30 s at most.
poll() {
  for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

backend_setup() {
  if [ "$BACKEND" = real ]; then
    LLAMA_SERVER=$("$SRC/scripts/llama.sh" path) || fail "scripts/llama.sh could not provide llama-server"
    [ -x "$BUILD/ferry-gguf" ] || fail "build/ferry-gguf missing"
    "$BUILD/ferry-gguf" --out "$T/model.gguf" --seed 7 --shape "$MODEL_SHAPE" >/dev/null || fail "ferry-gguf failed"
  else
    [ -x "$BUILD/tests/fake_llama_slow" ] || fail "build/tests/fake_llama_slow missing"
  fi
}

# start_llama I [NP] [TOKEN_MS(fake only)]: llama server number I.
start_llama() {
  local i=$1 np=${2:-4} tms=${3:-20} port try
  for try in 1 2 3 4 5; do
  port=$(free_port)
  if [ "$BACKEND" = real ]; then
    # a large context per slot, so a long generation can hold a slot for a while
    # LLAMA_EXTRA: more flags (words) for this server
    # shellcheck disable=SC2086
    "$LLAMA_SERVER" -m "$T/model.gguf" --host 127.0.0.1 --port "$port" -np "$np" -t 1 --metrics \
      -c $((np * CTX_PER_SLOT)) ${LLAMA_EXTRA:-} >"$T/llama$i.log" 2>&1 &
  else
    "$BUILD/tests/fake_llama_slow" --port "$port" --np "$np" --token-ms "$tms" >"$T/llama$i.log" 2>&1 &
  fi
  LPID[$i]=$!
  PIDS+=("${LPID[$i]}")
  LPORT[$i]=$port
  # healthy, or it died (port taken after all: another try)
  for _ in $(seq 1 600); do
    curl -sf --max-time 1 "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    kill -0 "${LPID[$i]}" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "${LPID[$i]}" 2>/dev/null && fail "llama $i did not become healthy"
  done
  fail "llama $i could not start (see its log)"
}

# start_hub [flags...]: hub on $HPORT (picked once, reused by restarts).
start_hub() {
  [ -n "$HPORT" ] || HPORT=$(free_port)
  echo "$KEY" >"$T/keys"
  "$BUILD/hub" -port "$HPORT" -host 127.0.0.1 -api-keys "$T/keys" -secret "$SECRET" \
    -health-ms 200 -cooldown-ms 500 "$@" >"$T/hub.out" 2>>"$T/hub.err" &
  HPID=$!
  PIDS+=("$HPID")
  wait_listening "$T/hub.out" "$HPID" >/dev/null || { cat "$T/hub.err"; fail "hub did not start"; }
}

# start_spoke I [flags...]: spoke I in front of llama I.
start_spoke() {
  local i=$1; shift
  "$BUILD/spoke" -port 0 -host 127.0.0.1 -llama-url "http://127.0.0.1:${LPORT[$i]:-1}" \
    -hub-url "http://127.0.0.1:$HPORT" -secret "$SECRET" -register-ms 300 -slots-ms 200 "$@" \
    >"$T/spoke$i.out" 2>>"$T/spoke$i.err" &
  SPID[$i]=$!
  PIDS+=("${SPID[$i]}")
  SPORT[$i]=$(wait_listening "$T/spoke$i.out" "${SPID[$i]}") || { cat "$T/spoke$i.err"; fail "spoke $i did not start"; }
}

# hub_field JQPATH: a value from GET /stats.
stats() { curl -s --max-time 5 -H "Authorization: Bearer $KEY" "http://127.0.0.1:$HPORT/stats"; }
healthy_workers() { curl -s --max-time 5 "http://127.0.0.1:$HPORT/health" | jq -r .healthy; }
has_healthy() { [ "$(healthy_workers)" = "$1" ]; }
wait_healthy() { poll has_healthy "$1" || fail "hub: wanted $1 healthy spokes, have $(healthy_workers)"; }

# req METHOD PATH [BODY] [curl args...]: prints "<code>" and leaves the body in $T/body.
req() {
  local m=$1 p=$2 b=${3:-}; shift 3 || shift $#
  local args=(-s -o "$T/body" -w '%{http_code}' --max-time "${CURL_TIME:-60}" -X "$m"
              -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json')
  [ -n "$b" ] && args+=(--data-binary "$b")
  curl "${args[@]}" "$@" "http://127.0.0.1:$HPORT$p" || true
}

chat_body() { echo "{\"messages\":[{\"role\":\"user\",\"content\":\"${2:-hello}\"}],\"max_tokens\":${1:-8}${3:+,$3}}"; }

# slots_busy I: llama server I's slots processing now (its own /slots).
slots_busy() { curl -s --max-time 5 "http://127.0.0.1:${LPORT[$1]}/slots" | jq '[.[] | select(.is_processing)] | length'; }
slots_idle() { [ "$(slots_busy "$1")" = 0 ]; }

# The hub, spokes and fake servers must not leave sanitizer reports.
check_sanitizers() {
  if grep -lE 'AddressSanitizer|LeakSanitizer|runtime error|ThreadSanitizer' "$T"/*.err 2>/dev/null; then
    fail "sanitizer report (see above)"
  fi
}

# stop_hub: SIGTERM; must exit 0.
stop_hub() {
  kill -TERM "$HPID"
  local rc=0
  wait "$HPID" || rc=$?
  expect_eq "hub exits cleanly on SIGTERM" "$rc" 0
}

# A generation that holds a slot for a while (seconds): the fake paces its
# tokens; the real server is told to ignore end-of-sequence.
long_body() {  # [stream true|false]
  local st=${1:-false}
  if [ "$BACKEND" = real ]; then
    chat_body $((CTX_PER_SLOT - 200)) "tell me a long story" "\"ignore_eos\":true,\"stream\":$st"
  else
    chat_body 1500 "tell me a long story" "\"stream\":$st"
  fi
}

# busy_llama: the index of a llama server with a busy slot (none: fails).
busy_llama() {
  local i
  for i in "${!LPORT[@]}"; do
    [ "$(slots_busy "$i" 2>/dev/null || echo 0)" -gt 0 ] 2>/dev/null && { echo "$i"; return 0; }
  done
  return 1
}

# load N CONC BODY OUT: N requests, CONC at a time; one "<code> <seconds>" line each.
load() {
  seq 1 "$1" | xargs -P "$2" -I{} curl -s -o /dev/null -w '%{http_code} %{time_total}\n' \
    --max-time "${CURL_TIME:-60}" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    --data-binary "$3" "http://127.0.0.1:$HPORT/v1/chat/completions" >>"$4" || true
}
