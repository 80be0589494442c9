#!/usr/bin/env bash
# The GoLlama hub's own cost, measured against nginx in the same run.
#
# Part 1, a fast fake backend (build/fake_llama answers a fixed completion):
#   direct      wrk -> fake_llama
#   nginx       wrk -> nginx proxy_pass (keep-alive upstream) -> fake_llama
#   nginx2      wrk -> nginx -> nginx -> fake_llama (two hops, two processes, as hub -> spoke)
#   hub         wrk -> hub -> spoke -> fake_llama          (POST /v1/chat/completions)
#   throughput: wrk -c CONNECTIONS, req/s; ratio hub/nginx (target >= 0.7)
#   latency:    wrk -c 1 (one request at a time), p50/p99; added per hop =
#               (path - direct) / hops (nginx 1 hop, hub 2 hops; target <= 100 us p50)
# Part 2, the real llama-server with the bench model (ferry-gguf --shape bench):
#   build/bench_stream direct vs through hub -> spoke; tokens/s ratio (target
#   >= 0.95) and time to first token added (target <= 1 ms); BENCH_ROUNDS (5)
#   rounds alternate direct/hub to cancel drift, and the medians are compared.
#
# Every figure is the median of -r rounds (each round runs every path once,
# in turn, so drift hits them alike); each target line ends MET or NOT MET.
# Usage: bench/hub/bench_hub.sh [-d SECONDS] [-c CONNECTIONS] [-r ROUNDS] [-n] [-h]
#   -d  wrk duration per run (default 5)   -c  wrk connections (default 50)
#   -r  rounds of part 1 (default 3)       -n  skip parts 2 and 3 (no llama-server)
# Environment: FERRY_BUILD_DIR (build/), NGINX_WORKERS (1: one event loop,
#   like the hub), BENCH_LLAMA_THREADS (llama-server -t, default 1: on a
#   busy 2-core machine a second spinning thread mostly adds stalls),
#   BENCH_STREAM_REQUESTS (16), BENCH_STREAM_TOKENS (64).
# Part 3 (information, no target; needs build/tests/fake_llama_slow): part 2
#   against a FAKE llama at 5 ms per token, so the relay's own added time to
#   first token shows apart from llama.cpp's step loop.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dur=5
conns=50
with_llama=1
rounds1=3
while getopts "d:c:r:nh" o; do
  case $o in
    d) dur=$OPTARG ;; c) conns=$OPTARG ;; r) rounds1=$OPTARG ;; n) with_llama=0 ;;
    *) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
done
build=${FERRY_BUILD_DIR:-$root/build}
ngx_workers=${NGINX_WORKERS:-1}
for b in fake_llama bench_stream ferry-gguf; do
  [ -x "$build/$b" ] || { echo "bench_hub: $build/$b missing: run ./build.sh" >&2; exit 1; }
done
for c in wrk curl jq; do
  command -v "$c" >/dev/null || { echo "bench_hub: $c not installed (scripts/deps.sh)" >&2; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "bench_hub: nginx not installed (scripts/deps.sh)" >&2; exit 1; }
have_hub=0
[ -x "$build/hub" ] && [ -x "$build/spoke" ] && have_hub=1

tmp=$(mktemp -d /tmp/ferry-bench-hub.XXXXXX)
pids=()
cleanup() {
  for f in "$tmp"/ngx_*/nginx.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.2
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
die() { echo "bench_hub: $*" >&2; exit 1; }

# A free port below the kernel's ephemeral range (an outgoing connection may
# hold a port in that range, and nginx's bind() then fails).
free_port() {
  local p lo
  lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  for _ in $(seq 1 50); do
    p=$((10000 + RANDOM % (lo - 10000)))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
  done
  return 1
}

# wait_port LOGFILE PID NAME: the port from a "listening on HOST:PORT" line.
wait_port() {
  local p
  for _ in $(seq 1 600); do
    p=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$1" | head -n1)
    [ -n "$p" ] && { echo "$p"; return 0; }
    kill -0 "$2" 2>/dev/null || { cat "$1" >&2; die "$3 exited at start"; }
    sleep 0.05
  done
  die "$3 did not start"
}

# ---- the hub and its spoke (interface of build/hub and build/spoke) --------
# start_hub_chain BACKEND_URL TAG: hub + one spoke in front of BACKEND_URL;
# sets HUB_PORT once the spoke is registered and /v1/chat/completions answers.
start_hub_chain() {
  local backend=$1 tag=$2
  local secret=bench-secret-$$-$RANDOM
  "$build/hub" -port 0 -host 127.0.0.1 -no-auth -secret "$secret" >"$tmp/hub_$tag.log" 2>&1 &
  pids+=($!)
  HUB_PORT=$(wait_port "$tmp/hub_$tag.log" $! hub)
  "$build/spoke" -port 0 -host 127.0.0.1 -llama-url "$backend" \
    -hub-url "http://127.0.0.1:$HUB_PORT" -secret "$secret" >"$tmp/spoke_$tag.log" 2>&1 &
  pids+=($!)
  wait_port "$tmp/spoke_$tag.log" $! spoke >/dev/null
  for _ in $(seq 1 200); do
    curl -s --max-time 2 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
      -d '{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}' \
      "http://127.0.0.1:$HUB_PORT/v1/chat/completions" 2>/dev/null | grep -q 200 && return 0
    sleep 0.05
  done
  tail -n 20 "$tmp/hub_$tag.log" "$tmp/spoke_$tag.log" >&2
  die "hub -> spoke -> $backend does not answer"
}

# run_wrk NAME URL CONNS THREADS: prints "rps p50_us p99_us"; fails on errors.
run_wrk() {
  wrk -t"$4" -c"$3" -d"${dur}s" -s "$root/bench/hub/chat.lua" "$2" >"$tmp/wrk.out" 2>&1 || true
  local line
  line=$(grep '^RESULT ' "$tmp/wrk.out") || { cat "$tmp/wrk.out" >&2; die "wrk failed on $1"; }
  echo "  $1 (-c$3): $line" >&2
  grep -q 'statuses=200=[0-9]*$' <<<"$line" || die "$1 answered other than 200: $line"
  sed -n 's/.* rps=\([0-9.]*\) p50_us=\([0-9.]*\) p99_us=\([0-9.]*\) .*/\1 \2 \3/p' <<<"$line"
}

echo "machine: $(nproc) cpu, load $(cut -d' ' -f1-3 /proc/loadavg); wrk ${dur}s per run" >&2

# ---- part 1: fake backend ---------------------------------------------------
"$build/fake_llama" --port 0 >"$tmp/fake.log" 2>&1 &
pids+=($!)
fport=$(wait_port "$tmp/fake.log" $! fake_llama)
fake=http://127.0.0.1:$fport

# start_nginx NAME UPSTREAM_PORT: one nginx (NGINX_WORKERS processes) proxying
# everything to 127.0.0.1:UPSTREAM_PORT over keep-alive; prints its port.
start_nginx() {
  local name=$1 up=$2 port d=$tmp/ngx_$1
  port=$(free_port)
  mkdir -p "$d"
  cat >"$d/nginx.conf" <<NGX
worker_processes $ngx_workers;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $d/body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
  upstream backend { server 127.0.0.1:$up; keepalive 128; }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGX
  "$NGINX" -c "$d/nginx.conf" -p "$d" </dev/null >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do curl -s --max-time 1 -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.05; done
  curl -s --max-time 2 "http://127.0.0.1:$port/health" | grep -q ok || { cat "$d/error.log" >&2; die "nginx $name did not start"; }
  echo "$port"
}
nport=$(start_nginx one "$fport")
n2front=$(start_nginx two "$(start_nginx two_back "$fport")")

if [ $have_hub = 1 ]; then
  start_hub_chain "$fake" fake
  hub_url=http://127.0.0.1:$HUB_PORT/v1/chat/completions
else
  echo "bench_hub: build/hub or build/spoke not built: hub rows skipped" >&2
fi

# median of the arguments
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
# verdict VALUE OP TARGET: MET or NOT MET
verdict() { awk "BEGIN { exit !($1 $2 $3) }" && echo MET || echo "NOT MET"; }
names=(direct nginx nginx2)
urls=("$fake/v1/chat/completions" "http://127.0.0.1:$nport/v1/chat/completions"
      "http://127.0.0.1:$n2front/v1/chat/completions")
[ $have_hub = 1 ] && { names+=(hub); urls+=("$hub_url"); }
declare -A RPS P50 P99
for r in $(seq 1 "$rounds1"); do
  echo "== round $r/$rounds1: throughput (-c$conns), then latency (-c1) ==" >&2
  for i in "${!names[@]}"; do
    read -r x _ _ < <(run_wrk "${names[$i]}" "${urls[$i]}" "$conns" 2)
    RPS[${names[$i]}]+="$x "
  done
  for i in "${!names[@]}"; do
    read -r _ y z < <(run_wrk "${names[$i]}" "${urls[$i]}" 1 1)
    P50[${names[$i]}]+="$y "
    P99[${names[$i]}]+="$z "
  done
done
for n in "${names[@]}"; do
  # shellcheck disable=SC2086
  eval "${n}_rps=$(median ${RPS[$n]}) ${n}_p50=$(median ${P50[$n]}) ${n}_p99=$(median ${P99[$n]})"
done
d_rps=$direct_rps d_p50=$direct_p50 d_p99=$direct_p99
n_rps=$nginx_rps n_p50=$nginx_p50 n_p99=$nginx_p99
n2_rps=$nginx2_rps n2_p50=$nginx2_p50 n2_p99=$nginx2_p99

echo
echo "bench/hub part 1: fake backend, POST /v1/chat/completions ($(nproc) cpu, load $(cut -d' ' -f1-3 /proc/loadavg);" \
     "wrk -c$conns ${dur}s; latency at -c1; medians of $rounds1 rounds)"
printf '  %-28s %10s %10s %10s\n' path req/s p50_us p99_us
printf '  %-28s %10s %10s %10s\n' "direct fake_llama" "$d_rps" "$d_p50" "$d_p99"
printf '  %-28s %10s %10s %10s\n' "nginx proxy_pass (1 hop)" "$n_rps" "$n_p50" "$n_p99"
printf '  %-28s %10s %10s %10s\n' "nginx -> nginx (2 hops)" "$n2_rps" "$n2_p50" "$n2_p99"
echo "  nginx added per hop: p50 $(calc "$n_p50 - $d_p50") us, p99 $(calc "$n_p99 - $d_p99") us (1 hop);" \
     "p50 $(calc "($n2_p50 - $d_p50) / 2") us (2 hops)"
if [ $have_hub = 1 ]; then
  h_rps=$hub_rps h_p50=$hub_p50 h_p99=$hub_p99
  printf '  %-28s %10s %10s %10s\n' "hub -> spoke (2 hops)" "$h_rps" "$h_p50" "$h_p99"
  hop50=$(calc "($h_p50 - $d_p50) / 2") hop99=$(calc "($h_p99 - $d_p99) / 2")
  ratio=$(calc "$h_rps / $n_rps" 2)
  echo "  hub added latency per hop: p50 $hop50 us, p99 $hop99 us"
  echo "  TARGET hub added p50 per hop <= 100 us: $hop50 us: $(verdict "$hop50" "<=" 100)"
  echo "  TARGET ratio hub/nginx req/s >= 0.7: $ratio: $(verdict "$ratio" ">=" 0.7)" \
       "(hub vs the same two hops of nginx: $(calc "$h_rps / $n2_rps" 2))"
fi

# ---- part 2: real llama-server ---------------------------------------------
[ $with_llama = 1 ] || exit 0
llama=$("$root/scripts/llama.sh" path) || die "scripts/llama.sh failed"
"$build/ferry-gguf" --out "$tmp/bench.gguf" --shape bench 2>/dev/null
"$llama" -m "$tmp/bench.gguf" -np 4 -t "${BENCH_LLAMA_THREADS:-1}" --metrics --host 127.0.0.1 --port 0 --no-webui \
  >"$tmp/llama.log" 2>&1 &
pids+=($!)
lport=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' <(for _ in $(seq 1 600); do
  grep -m1 'listening on http' "$tmp/llama.log" && break; sleep 0.1; done))
[ -n "$lport" ] || { tail "$tmp/llama.log" >&2; die "llama-server did not start"; }
for _ in $(seq 1 600); do
  [ "$(curl -s --max-time 2 "http://127.0.0.1:$lport/health")" = '{"status":"ok"}' ] && break
  sleep 0.1
done
direct=http://127.0.0.1:$lport/v1/chat/completions
nreq=${BENCH_STREAM_REQUESTS:-16}
ntok=${BENCH_STREAM_TOKENS:-64}
stream() {  # stream NAME URL CONC -> "tok_per_s ttft_p50_ms"
  local line
  line=$("$build/bench_stream" -url "$2" -requests "$nreq" -concurrency "$3" -max-tokens "$ntok") ||
    die "bench_stream failed on $1: $line"
  echo "  $1 (-c$3): $line" >&2
  sed -n 's/.* tok_per_s=\([0-9.]*\) ttft_p50_ms=\([0-9.]*\) .*/\1 \2/p' <<<"$line"
}
"$build/bench_stream" -url "$direct" -requests 4 -concurrency 4 -max-tokens 8 >/dev/null   # warm-up
echo
echo "bench/hub part 2: llama-server, bench model ($(stat -c %s "$tmp/bench.gguf") bytes), $nreq streams x $ntok tokens"
if [ $have_hub = 1 ]; then
  start_hub_chain "http://127.0.0.1:$lport" llama
  via=http://127.0.0.1:$HUB_PORT/v1/chat/completions
fi
best() { printf '%s\n' "$@" | sort -g | tail -n1; }    # highest value
least() { printf '%s\n' "$@" | sort -g | head -n1; }  # lowest value
rounds=${BENCH_ROUNDS:-5}
for conc in 1 4; do
  dts=() dfs=() hts=() hfs=()
  for _ in $(seq 1 "$rounds"); do
    read -r t f < <(stream direct "$direct" $conc); dts+=("$t"); dfs+=("$f")
    if [ $have_hub = 1 ]; then
      read -r t f < <(stream hub "$via" $conc); hts+=("$t"); hfs+=("$f")
    fi
  done
  dt=$(median "${dts[@]}") dft=$(median "${dfs[@]}") dtb=$(best "${dts[@]}") dfb=$(least "${dfs[@]}")
  echo "  concurrency $conc: direct $dt tok/s, TTFT p50 $dft ms (medians of $rounds rounds; best $dtb tok/s, $dfb ms)"
  if [ $have_hub = 1 ]; then
    ht=$(median "${hts[@]}") hft=$(median "${hfs[@]}") htb=$(best "${hts[@]}") hfb=$(least "${hfs[@]}")
    echo "  concurrency $conc: hub    $ht tok/s, TTFT p50 $hft ms (best $htb tok/s, $hfb ms)"
    tr=$(calc "$ht / $dt" 3) ta=$(calc "$hft - $dft" 3)
    echo "  TARGET concurrency $conc: ratio hub/direct tok/s >= 0.95: $tr: $(verdict "$tr" ">=" 0.95)"
    echo "  TARGET concurrency $conc: time to first token added <= 1 ms: $ta ms: $(verdict "$ta" "<=" 1)"
    echo "  concurrency $conc: best rounds: ratio $(calc "$htb / $dtb" 3), TTFT added $(calc "$hfb - $dfb" 3) ms (the least disturbed runs on a busy machine)"
  fi
done

# ---- part 3 (information, no target): the relay alone ----------------------
# The same streams against the FAKE llama (tests/fake_llama_slow: one token
# every 5 ms per stream, no model CPU), direct vs through hub -> spoke. Its
# added time to first token is the relay's own; the difference to part 2's
# is llama.cpp's step loop and CPU contention with the model.
slow=$build/tests/fake_llama_slow
if [ $have_hub = 1 ] && [ -x "$slow" ]; then
  "$slow" --port 0 --np 4 --token-ms 5 >"$tmp/slow.log" 2>&1 &
  pids+=($!)
  sport=$(wait_port "$tmp/slow.log" $! fake_llama_slow)
  start_hub_chain "http://127.0.0.1:$sport" slow
  sdirect=http://127.0.0.1:$sport/v1/chat/completions
  svia=http://127.0.0.1:$HUB_PORT/v1/chat/completions
  echo
  # 3 rounds; at concurrency 1 only 4 streams (one stream is 64 x 5 ms), so
  # the part takes ~20 s
  echo "bench/hub part 3 (information): fake llama (5 ms per token, 4 slots), 3 rounds of 4 streams (-c1) and $nreq streams (-c4) x $ntok tokens"
  for conc in 1 4; do
    dts=() dfs=() hts=() hfs=()
    all=$nreq
    [ $conc = 1 ] && nreq=4
    for _ in 1 2 3; do
      read -r t f < <(stream direct "$sdirect" $conc); dts+=("$t"); dfs+=("$f")
      read -r t f < <(stream hub "$svia" $conc); hts+=("$t"); hfs+=("$f")
    done
    dt=$(median "${dts[@]}") dft=$(median "${dfs[@]}") ht=$(median "${hts[@]}") hft=$(median "${hfs[@]}")
    nreq=$all
    echo "  concurrency $conc: relay alone: tok/s hub/direct $(calc "$ht / $dt" 3), TTFT p50 direct $dft ms, hub $hft ms, added $(calc "$hft - $dft" 3) ms"
  done
fi
