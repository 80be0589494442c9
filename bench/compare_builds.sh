#!/usr/bin/env bash
# Runs the latency and throughput benchmarks of two build trees alternately
# (A, B, A, B, ...), on both CPUs and pinned to one (taskset -c 0), and prints
# the summary lines, so that a change can be compared with its base in the
# same conditions (machine load drifts; alternating spreads it over both).
# Usage: bench/compare_builds.sh BUILD_A BUILD_B [rounds]   (default 3 rounds)
# Example: bench/compare_builds.sh /tmp/base/build build 3
set -euo pipefail
usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; }
case ${1:-} in -h|--help) usage; exit 0 ;; esac
[ $# -ge 2 ] || { usage >&2; exit 2; }
a=$1 b=$2 rounds=${3:-3}
for d in "$a" "$b"; do
  for p in bench_latency bench_throughput bench_shm_ring; do
    [ -x "$d/$p" ] || { echo "compare_builds: $d/$p not found (build it first)" >&2; exit 1; }
  done
done
for r in $(seq 1 "$rounds"); do
  for d in "$a" "$b"; do
    for pin in "" "taskset -c 0"; do
      echo "== round $r, $d, ${pin:-2 CPUs}"
      $pin "$d/bench_latency" 20000 5 | grep -E 'core-to-core round trip|floor \(|kcoro:|rendezvous round trip|^target' || true
      $pin "$d/bench_throughput" | grep -E 'throughput( \(one CPU\))?:' || true
      $pin "$d/bench_shm_ring" --seconds 1 | grep -E '^rtt_ns|^throughput|^core' || true
    done
  done
done
