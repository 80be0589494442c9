#!/usr/bin/env bash
# Installs dependencies, builds, and starts the Kolosal face of Ferry in the
# background: build/server on port 8000 plus N build/worker processes.
# Returns once the server answers /health and every worker has attached.
# Logs and pid files: logs/run/. Stop with scripts/stop.sh.
# Usage: scripts/start.sh [--workers N] [--port P] [--host H] [--api-key-file F] [--no-build]
# The server binds 127.0.0.1 unless --host (or FERRY_HOST) says otherwise; an
# API key (--api-key-file, FERRY_API_KEY_FILE or FERRY_API_KEY) protects
# /process and /status. Workers find the server by FERRY_NAME (default kolosal).
set -euo pipefail
cd "$(dirname "$0")/.."

workers=${FERRY_WORKERS:-2}
port=${FERRY_PORT:-8000}
host=${FERRY_HOST:-127.0.0.1}
keyfile=${FERRY_API_KEY_FILE:-}
build=1
while [ $# -gt 0 ]; do
  case $1 in
    --workers) workers=$2; shift ;;
    --port) port=$2; shift ;;
    --host) host=$2; shift ;;
    --api-key-file) keyfile=$2; shift ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
srv_args=(--port "$port" --host "$host")
[ -n "$keyfile" ] && srv_args+=(--api-key-file "$keyfile")
setsid build/server "${srv_args[@]}" --log "$run/server.log" >"$run/server.out" 2>&1 < /dev/null &
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
# /status needs the API key if one is set; it goes to curl through a pipe,
# never on a command line.
key=${FERRY_API_KEY:-}
[ -n "$keyfile" ] && key=$(head -n 1 "$keyfile")
for _ in $(seq 1 100); do
  live=$(printf 'Authorization: Bearer %s\n' "$key" | curl -fsS -H @- "http://127.0.0.1:$port/status" 2>/dev/null | sed -n 's/.*"workers_live": *\([0-9]*\).*/\1/p')
  [ "${live:-0}" -ge "$workers" ] && break
  sleep 0.1
done
echo "Ferry is up: server on :$port with ${live:-0} worker(s); logs in $run/"
auth=""; [ -n "$key" ] && auth=" -H 'Authorization: Bearer <key>'"
echo "  curl$auth -X POST -d '{\"message\": \"test\"}' http://localhost:$port/process"
echo "  curl$auth http://localhost:$port/status      # stop: scripts/stop.sh"
