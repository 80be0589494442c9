#!/usr/bin/env bash
# Kolosal benchmark: wrk against POST /process with 1, 2 and 4 workers.
# Results go to logs/<timestamp>/result.txt, with server.log and worker_N.log
# beside it (the spec's layout).
# Usage: ./benchmark.sh [-d SECONDS] [-c CONNECTIONS] [-t THREADS] [-w "1 2 4"]
#   Environment: BENCH_DURATION, BENCH_CONNECTIONS, BENCH_THREADS, BENCH_WORKERS,
#   FERRY_BUILD_DIR (default build/).
set -euo pipefail
cd "$(dirname "$0")"

dur=${BENCH_DURATION:-5}
conns=${BENCH_CONNECTIONS:-50}
threads=${BENCH_THREADS:-2}
workers=${BENCH_WORKERS:-"1 2 4"}
while getopts "d:c:t:w:h" o; do
  case $o in
    d) dur=$OPTARG ;; c) conns=$OPTARG ;; t) threads=$OPTARG ;; w) workers=$OPTARG ;;
    *) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
done
build=${FERRY_BUILD_DIR:-build}
for b in server worker; do
  [ -x "$build/$b" ] || { echo "benchmark.sh: $build/$b missing: run ./build.sh first" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "benchmark.sh: wrk not installed (scripts/deps.sh)" >&2; exit 1; }

dir=logs/$(date +%Y%m%d_%H%M%S)
mkdir -p "$dir"
result=$dir/result.txt
name=bench$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.2
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

"$build/server" --host 127.0.0.1 --port 0 --name "$name" --log "$dir/server.log" >"$dir/server.out" 2>&1 &
spid=$!
pids+=("$spid")
port=
for _ in $(seq 1 100); do
  port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$dir/server.out")
  [ -n "$port" ] && break
  kill -0 "$spid" 2>/dev/null || { cat "$dir/server.out"; exit 1; }
  sleep 0.05
done
[ -n "$port" ] || { echo "benchmark.sh: server did not start" >&2; exit 1; }
url=http://127.0.0.1:$port

live() { curl -s --max-time 5 "$url/status" | grep -o '"workers_live":[0-9]*' | cut -d: -f2; }

{
  echo "Kolosal benchmark $(date -Is)"
  echo "machine: $(nproc) cpu, $(uname -sr); wrk -t$threads -c$conns -d${dur}s -s post_test.lua $url/process"
} | tee "$result"

started=0
summary=()
for n in $workers; do
  while [ $started -lt "$n" ]; do
    started=$((started + 1))
    "$build/worker" --name "$name" >"$dir/worker_$started.log" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 1 100); do [ "$(live)" = "$n" ] && break; sleep 0.05; done
  [ "$(live)" = "$n" ] || { echo "benchmark.sh: $n workers did not attach" >&2; exit 1; }
  curl -s --max-time 5 -d '{"message":"warmup"}' "$url/process" >/dev/null
  echo "=== $n worker(s) ===" | tee -a "$result"
  wrk -t"$threads" -c"$conns" -d"${dur}s" --latency -s post_test.lua "$url/process" | tee -a "$result"
  line=$(grep '^RESULT' "$result" | tail -1)
  summary+=("$(printf '%-8s %s' "$n" "${line#RESULT }")")
done

{
  echo "=== summary ==="
  echo "workers  result"
  printf '%s\n' "${summary[@]}"
  echo "status after run:"
  curl -s --max-time 5 "$url/status"
  echo
} | tee -a "$result"
echo "benchmark.sh: results in $result"
