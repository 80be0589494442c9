#!/usr/bin/env bash
# Farm benchmark, two parts, each against a baseline measured in the same run:
#  1. N tiny tasks (default 10000; a shell script that echoes its chunk)
#     through employer + two local employees (loopback, durable ledger, 3
#     slots each), against GNU parallel running the same script locally with
#     the same concurrency (6 jobs): tasks/s and the ratio.
#  2. one 1 GiB chunk employer -> employee on loopback (protocol v3: DATA
#     frames tagged, metadata sealed; written to the employee's disk), against
#     iperf3 on loopback: rate and ratio of
#     the transfer, and (for information) of the whole employer run, which
#     also hashes the new chunk once when it scans it. Then, as a floor, what
#     the employee's disk takes in the same run: 1 GiB written to a new file
#     in the same file system with O_DIRECT (the employee's way) and through
#     the page cache (measured after the transfer: the freed pages would
#     make the transfer's cheaper), since iperf3 writes no file.
# Usage: bench/farm/bench_farm.sh [BUILD_DIR]
#   env BENCH_TASKS (default 10000), BENCH_GIB (default 1),
#       BENCH_PART (tasks, transfer or all; default all)
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-${FERRY_BUILD_DIR:-$SRC/build}}
N=${BENCH_TASKS:-10000}
GIB=${BENCH_GIB:-1}
PART=${BENCH_PART:-all}
for c in parallel iperf3; do command -v $c >/dev/null || { echo "need $c (scripts/deps.sh)"; exit 2; }; done
T=$(mktemp -d /tmp/farm-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }
verdict() { python3 -c "print('MET' if $1 >= 0.5 else 'NOT MET')"; }

head -c 32 /dev/urandom | base64 > "$T/secret"; chmod 600 "$T/secret"
mkdir -p "$T/tasks" "$T/par"
[ "$PART" = transfer ] || for i in $(seq -w 1 "$N"); do echo "{\"i\": $i}" > "$T/tasks/t$i.json"; done
printf '#!/bin/sh\necho "$(cat "$1")" > "$2"\n' > "$T/echo.sh"; chmod +x "$T/echo.sh"

# not in a $(...) subshell: PIDS must reach the EXIT trap (the employees
# of earlier versions of this script outlived it)
start_employee() {
  "$BUILD/employee" --id "$1" --port 0 --bind 127.0.0.1 --broadcast none --workdir "$T/w_$1" \
    --secret-file "$T/secret" > "$T/$1.log" 2> "$T/$1.err" &
  PIDS+=($!)
}
employee_port() {
  for _ in $(seq 100); do grep -q ' port ' "$T/$1.log" 2>/dev/null && break; sleep 0.1; done
  awk '{print $4}' "$T/$1.log"
}
start_employee e1; start_employee e2
P1=$(employee_port e1); P2=$(employee_port e2)

if [ "$PART" != transfer ]; then
echo "== $N tiny tasks ($(uptime | sed 's/.*load/load/')) =="
t0=$(now)
ls "$T/tasks" | parallel -j 6 "$T/echo.sh" "$T/tasks/{}" "$T/par/{}.out"
t1=$(now)
par_rate=$(calc "round($N / ($t1 - $t0), 1)")
echo "GNU parallel -j 6 (local):          $par_rate tasks/s"
t0=$(now)
"$BUILD/employer" --tasks "$T/tasks" --results "$T/res" --script "$T/echo.sh" --secret-file "$T/secret" \
  --udp-port 0 --employee 127.0.0.1:$P1 --employee 127.0.0.1:$P2 --no-progress --quiet
t1=$(now)
farm_rate=$(calc "round($N / ($t1 - $t0), 1)")
got=$(ls "$T/res" | grep -c '^result_')
[ "$got" -eq "$N" ] || { echo "only $got results"; exit 1; }
echo "employer + 2 employees (loopback):  $farm_rate tasks/s"
r=$(calc "round($farm_rate / $par_rate, 2)")
echo "RATIO tiny tasks farm/parallel: $r (target >= 0.5: $(verdict "$r"))"
fi
[ "$PART" = tasks ] && exit 0

echo "== ${GIB} GiB transfer =="
rm -rf "$T/tasks" "$T/res" "$T/par"; mkdir -p "$T/big"
head -c $((GIB << 30)) /dev/urandom > "$T/big/big.json"
printf '#!/bin/sh\n: > "$2"\n' > "$T/nop.sh"; chmod +x "$T/nop.sh"
# the same iperf3 run as before; retried on another port when the server was
# not up yet or the port was taken (other users of the box run iperf3 too)
ib=""
for try in 1 2 3 4 5; do
  IP=$((40000 + ($$ * 7 + try * 131) % 20000))
  iperf3 -s -1 -p $IP > /dev/null 2>&1 &
  IPID=$!; PIDS+=($IPID)
  sleep 0.5
  ib=$(iperf3 -c 127.0.0.1 -p $IP -n ${GIB}G -J 2>/dev/null | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])
except Exception: pass' || true)
  [ -n "$ib" ] && break
  kill $IPID 2>/dev/null || true
  echo "iperf3 failed on port $IP (try $try), again"
done
[ -n "$ib" ] || { echo "iperf3 failed 5 times"; exit 1; }
iperf_mb=$(calc "round($ib / 8 / 1e6, 1)")
echo "iperf3 loopback:                    $iperf_mb MB/s"
t0=$(now)
"$BUILD/employer" --tasks "$T/big" --results "$T/res" --script "$T/nop.sh" --secret-file "$T/secret" \
  --udp-port 0 --employee 127.0.0.1:$P1 --no-progress 2> "$T/big.err"
t1=$(now)
# the transfer itself: the employer's "chunk sent" line (first DATA frame to
# the last one handed to the socket: read, tag, send; the employee checks
# and writes as it goes)
line=$(grep 'chunk sent' "$T/big.err" || true)
[ -n "$line" ] || { cat "$T/big.err"; echo "no transfer line"; exit 1; }
xfer_ms=$(echo "$line" | sed 's/.* in \([0-9]*\) ms.*/\1/')
xfer_mb=$(calc "round(($GIB << 30) / ($xfer_ms / 1000) / 1e6, 1)")
run_mb=$(calc "round(($GIB << 30) / ($t1 - $t0) / 1e6, 1)")
echo "employer -> employee transfer (read, tag, send; check, write): $xfer_mb MB/s"
echo "whole employer run (+ scan-time BLAKE2b, ledger, script, result): $run_mb MB/s"
r=$(calc "round($xfer_mb / $iperf_mb, 2)")
echo "RATIO 1 GiB transfer farm/iperf3: $r (target >= 0.5: $(verdict "$r"))"
echo "ratio whole run/iperf3: $(calc "round($run_mb / $iperf_mb, 2)") (for information)"
# the floor: the receiver must put every byte into a new file; iperf3 does
# not. dd from /dev/zero, 1 MiB writes, into the employee's file system.
floor() {
  local t0 t1
  t0=$(now)
  dd if=/dev/zero of="$T/w_e1/floor" bs=1M count=$((GIB << 10)) "$@" status=none
  t1=$(now)
  rm -f "$T/w_e1/floor"
  calc "round(($GIB << 30) / ($t1 - $t0) / 1e6, 1)"
}
dio_mb=$(floor oflag=direct 2>/dev/null || echo 0)
pc_mb=$(floor)
echo "floor, ${GIB} GiB into a new file on the employee's disk: O_DIRECT $dio_mb MB/s" \
  "($(calc "round($dio_mb / $iperf_mb, 2)")x iperf3), page cache $pc_mb MB/s" \
  "($(calc "round($pc_mb / $iperf_mb, 2)")x iperf3, fresh pages, not yet on disk)"
echo "transfer / O_DIRECT floor: $(calc "round($xfer_mb / max($dio_mb, 0.1), 2)") (1.0: the transfer runs at the disk's speed)"
echo "load: $(uptime | sed 's/.*load/load/')"
