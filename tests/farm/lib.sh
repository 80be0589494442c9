# Shared helpers for the farm integration tests (sourced, bash).
# Every process started here is killed, and every network namespace made
# here is deleted, by the EXIT trap, even on failure. Traffic goes only to
# loopback or to the namespaces' own addresses (10.77.0.0/24 on a bridge
# inside a namespace of its own).
set -euo pipefail

SRC=${FERRY_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${FERRY_BUILD_DIR:-$SRC/build}
T=$(mktemp -d /tmp/farm-test.XXXXXX)
chmod 700 "$T"
PIDS=()
NETNS=()
NS_TAG=ff$$
UDP_PORT=$((20000 + $$ % 20000))

cleanup() {
  local rc=$?
  exec 2>/dev/null
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in "${NETNS[@]}"; do ip netns pids "$n" 2>/dev/null | xargs -r kill -9; ip netns del "$n" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then
    for f in "$T"/*.err "$T"/*.log "$T"/joblog; do [ -s "$f" ] && { echo "---- $f ----"; tail -n 30 "$f"; }; done
  fi
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; ok "$1"; }

# wait_for SECONDS CMD...: polls CMD every 0.1 s; fails the test after SECONDS.
wait_for() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@"; do
    [ $SECONDS -lt $end ] || fail "timed out after ${secs}s waiting for: $*"
    sleep 0.1
  done
}

secret() {  # secret FILE: a fresh random secret, mode 0600
  head -c 32 /dev/urandom | base64 > "$1"
  chmod 600 "$1"
}

# make_tasks DIR N: N chunks {"n": i} and a script.py that writes {"sq": n*n},
# appends the chunk's n to $FARM_RUNS (one line per run) and sleeps
# $FARM_SLEEP seconds (default 0).
make_tasks() {
  local dir=$1 n=$2
  mkdir -p "$dir"
  for i in $(seq 1 "$n"); do printf '{"n": %d}\n' "$i" > "$dir/c$i.json"; done
  cat > "$dir/script.py" <<'PY'
import json, os, sys, time
d = json.load(open(sys.argv[1]))
runs = os.environ.get("FARM_RUNS")
if runs:
    with open(runs, "a") as f:
        f.write("%d\n" % d["n"])
time.sleep(float(os.environ.get("FARM_SLEEP", "0")))
with open(sys.argv[2], "w") as f:
    f.write(json.dumps({"sq": d["n"] * d["n"]}))
PY
}

# check_results DIR N: every result_c<i>.json present and right.
check_results() {
  local dir=$1 n=$2 i
  for i in $(seq 1 "$n"); do
    [ -f "$dir/result_c$i.json" ] || fail "result_c$i.json missing"
    local want="{\"sq\": $((i * i))}"
    [ "$(cat "$dir/result_c$i.json")" = "$want" ] || fail "result_c$i.json: $(cat "$dir/result_c$i.json")"
  done
  expect_eq "result files" "$(ls "$dir" | grep -c '^result_')" "$n"
}

count_results() { ls "$1" 2>/dev/null | grep -c '^result_' || true; }

need_root_netns() {
  if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
    echo "skip: network namespaces need root and iproute2"; exit 77
  fi
  ip netns add "${NS_TAG}br" 2>/dev/null || { echo "skip: ip netns unavailable"; exit 77; }
  NETNS+=("${NS_TAG}br")
  ip -n "${NS_TAG}br" link set lo up
  ip -n "${NS_TAG}br" link add br0 type bridge
  ip -n "${NS_TAG}br" link set br0 up
}

# host I: namespace ${NS_TAG}h<I> with eth0 = 10.77.0.<10+I>/24 on the bridge.
host() {
  local i=$1 ns=${NS_TAG}h$1 v=${NS_TAG}v$1
  ip netns add "$ns"
  NETNS+=("$ns")
  ip link add name "$v" type veth peer name eth0 netns "$ns"
  ip link set "$v" netns "${NS_TAG}br"
  ip -n "${NS_TAG}br" link set "$v" master br0 up
  ip -n "$ns" addr add "10.77.0.$((10 + i))/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
}
ns_ip() { echo "10.77.0.$((10 + $1))"; }
in_ns() { local i=$1; shift; ip netns exec "${NS_TAG}h$i" "$@"; }

# start_employee NAME HOST_INDEX|- ARGS...: in namespace HOST_INDEX (or on
# loopback with -), pid in EPID[NAME].
declare -A EPID
start_employee() {
  local name=$1 h=$2; shift 2
  if [ "$h" = - ]; then
    "$BUILD/employee" --id "$name" --workdir "$T/w_$name" "$@" > "$T/$name.log" 2> "$T/$name.err" &
  else
    # no shell function here: $! must be the employee itself (ip netns exec execs it)
    ip netns exec "${NS_TAG}h$h" "$BUILD/employee" --id "$name" --workdir "$T/w_$name" "$@" > "$T/$name.log" 2> "$T/$name.err" &
  fi
  EPID[$name]=$!
  PIDS+=($!)
}

# The TCP port an employee started with --port 0 listens on.
employee_port() {
  wait_for 20 grep -q ' port ' "$T/$1.log"
  awk '{print $4}' "$T/$1.log"
}
