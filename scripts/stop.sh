#!/usr/bin/env bash
# Stops what scripts/start.sh started (workers first, then the server, which
# answers its in-flight requests before exiting).
# Usage: scripts/stop.sh [--quiet]
set -uo pipefail
cd "$(dirname "$0")/.."
run=logs/run
quiet=0; [ "${1:-}" = "--quiet" ] && quiet=1
stopped=0
for f in "$run"/worker_*.pid "$run"/server.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    stopped=$((stopped + 1))
  fi
  rm -f "$f"
done
[ $quiet -eq 1 ] || echo "stop.sh: stopped $stopped process(es)"
