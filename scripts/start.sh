#!/usr/bin/env bash
# Installs dependencies, builds, and starts the Kolosal face of Ferry in the
# background: build/server on port 8000 plus N build/worker processes.
# Returns once the server answers /health and every worker has attached.
# Logs and pid files: logs/run/. Stop with scripts/stop.sh.
# Usage: scripts/start.sh [--workers N] [--port P] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

workers=${FERRY_WORKERS:-2}
port=${FERRY_PORT:-8000}
build=1
while [ $# -gt 0 ]; do
  case $1 in
    --workers) workers=$2; shift ;;
    --port) port=$2; shift ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "start.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
case $workers in ''|*[!0-9]*) echo "start.sh: --workers needs a number" >&2; exit 2 ;; esac

[ $build -eq 1 ] && ./build.sh
run=logs/run
mkdir -p "$run"
scripts/stop.sh --quiet || true

# setsid: the services outlive this script and its terminal.
setsid build/server --port "$port" --log "$run/server.log" >"$run/server.out" 2>&1 < /dev/null &
echo $! > "$run/server.pid"
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  if ! kill -0 "$(cat "$run/server.pid")" 2>/dev/null; then
    echo "start.sh: server exited:" >&2; cat "$run/server.out" >&2; exit 1
  fi
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/health" >/dev/null || { echo "start.sh: server not answering on port $port" >&2; exit 1; }

for i in $(seq 1 "$workers"); do
  setsid build/worker --log "$run/worker_$i.log" >"$run/worker_$i.out" 2>&1 < /dev/null &
  echo $! > "$run/worker_$i.pid"
done
for _ in $(seq 1 100); do
  live=$(curl -fsS "http://127.0.0.1:$port/status" 2>/dev/null | sed -n 's/.*"workers_live": *\([0-9]*\).*/\1/p')
  [ "${live:-0}" -ge "$workers" ] && break
  sleep 0.1
done
echo "Ferry is up: server on :$port with ${live:-0} worker(s); logs in $run/"
echo "  curl -X POST -d '{\"message\": \"test\"}' http://localhost:$port/process"
echo "  curl http://localhost:$port/status      # stop: scripts/stop.sh"
