#!/usr/bin/env bash
# HTTP benchmark: wrk POST /process against the Kolosal server (2 workers)
# versus nginx answering `return 200` on the same machine in the same run.
# Prints both requests/s and the ratio (target: server >= 0.5x nginx).
# Usage: bench/http/bench_http.sh [-d SECONDS] [-c CONNECTIONS] [-t THREADS]
#   Environment: BENCH_DURATION (5), BENCH_CONNECTIONS (50), BENCH_THREADS (2),
#   BENCH_WORKERS (2), NGINX_WORKERS (1: one event loop, like the server),
#   FERRY_BUILD_DIR (build/).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dur=${BENCH_DURATION:-5}
conns=${BENCH_CONNECTIONS:-50}
threads=${BENCH_THREADS:-2}
nworkers=${BENCH_WORKERS:-2}
ngx_workers=${NGINX_WORKERS:-1}
while getopts "d:c:t:h" o; do
  case $o in
    d) dur=$OPTARG ;; c) conns=$OPTARG ;; t) threads=$OPTARG ;;
    *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
done
build=${FERRY_BUILD_DIR:-$root/build}
for b in server worker; do
  [ -x "$build/$b" ] || { echo "bench_http: $build/$b missing: run ./build.sh" >&2; exit 1; }
done
for c in wrk nginx curl; do
  command -v "$c" >/dev/null || [ -x "/usr/sbin/$c" ] || { echo "bench_http: $c not installed (scripts/deps.sh)" >&2; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

tmp=$(mktemp -d /tmp/ferry-bench-http.XXXXXX)
pids=()
cleanup() {
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.2
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
  done
  return 1
}

lua=$root/post_test.lua
run_wrk() { # url -> prints requests/s
  wrk -t"$threads" -c"$conns" -d"${dur}s" -s "$lua" "$1" >"$tmp/wrk.out" 2>&1
  cat "$tmp/wrk.out" >&2
  sed -n 's/^RESULT .* rps=\([0-9.]*\) .*/\1/p' "$tmp/wrk.out"
}

# --- the Kolosal server with its workers -------------------------------------
name=benchhttp$$
"$build/server" --host 127.0.0.1 --port 0 --name "$name" --log "$tmp/server.log" >"$tmp/server.out" 2>&1 &
pids+=($!)
port=
for _ in $(seq 1 100); do
  port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$tmp/server.out")
  [ -n "$port" ] && break
  sleep 0.05
done
[ -n "$port" ] || { cat "$tmp/server.out"; echo "bench_http: server did not start" >&2; exit 1; }
for i in $(seq 1 "$nworkers"); do
  "$build/worker" --name "$name" >"$tmp/worker_$i.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 1 100); do
  live=$(curl -s --max-time 2 "http://127.0.0.1:$port/status" | grep -o '"workers_live":[0-9]*' | cut -d: -f2)
  [ "$live" = "$nworkers" ] && break
  sleep 0.05
done
body=$(curl -s --max-time 5 -d '{"message": "test"}' "http://127.0.0.1:$port/process")

# --- nginx with its own configuration -----------------------------------------
nport=$(free_port)
mkdir -p "$tmp/ngx"
cat >"$tmp/nginx.conf" <<NGX
worker_processes $ngx_workers;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/ngx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/ngx/body;
  proxy_temp_path $tmp/ngx/proxy;
  fastcgi_temp_path $tmp/ngx/fastcgi;
  uwsgi_temp_path $tmp/ngx/uwsgi;
  scgi_temp_path $tmp/ngx/scgi;
  server {
    listen 127.0.0.1:$nport;
    location / { default_type application/json; return 200 '$body'; }
  }
}
NGX
"$NGINX" -c "$tmp/nginx.conf" -p "$tmp/ngx" &
pids+=($!)
for _ in $(seq 1 100); do curl -s --max-time 1 "http://127.0.0.1:$nport/" >/dev/null && break; sleep 0.05; done
curl -s --max-time 2 -d x "http://127.0.0.1:$nport/process" | grep -q result || { cat "$tmp/ngx/error.log" >&2; echo "bench_http: nginx did not start" >&2; exit 1; }

echo "== nginx (return 200, $ngx_workers worker process) ==" >&2
ngx_rps=$(run_wrk "http://127.0.0.1:$nport/process")
echo "== Kolosal server (POST /process, $nworkers workers) ==" >&2
srv_rps=$(run_wrk "http://127.0.0.1:$port/process")

ratio=$(awk -v a="$srv_rps" -v b="$ngx_rps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }')
echo "machine: $(nproc) cpu; wrk -t$threads -c$conns -d${dur}s, POST {\"message\": \"test\"}"
echo "nginx return 200 ($ngx_workers worker):   $ngx_rps req/s"
echo "server /process ($nworkers workers): $srv_rps req/s"
echo "ratio server/nginx: $ratio (target >= 0.5)"
