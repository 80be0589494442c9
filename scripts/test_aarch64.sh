#!/usr/bin/env bash
# Cross-builds kcoro and its coroutine and channel tests for aarch64 with
# Debian's gcc-aarch64-linux-gnu and runs them under qemu-aarch64 (qemu-user),
# so the aarch64 context switch is tested on an x86-64 machine. Criterion is
# not installed for arm64: the tests build against the stand-in header of
# tests/support/tsan_criterion (each test still forked, with a timeout).
# Usage: scripts/test_aarch64.sh [build-dir]   (default build-test/aarch64)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-test/aarch64}
CC=aarch64-linux-gnu-gcc
QEMU=qemu-aarch64
for t in $CC $QEMU; do
  command -v $t >/dev/null || { echo "test_aarch64: $t missing (scripts/deps.sh installs it)" >&2; exit 1; }
done
mkdir -p "$out"
cflags=(-std=gnu17 -O2 -g -Wall -Wextra -Wshadow -Wno-unused-parameter -Werror -pthread -Iinclude)
tflags=(-D_GNU_SOURCE -Itests/kcoro -Itests/support/tsan_criterion)
# The library, as CMake builds it (its sources define _GNU_SOURCE themselves).
objs=()
for f in src/kcoro/*.c src/kcoro/kc_ctx_aarch64.S src/kcoro/kc_ctx_x86_64.S; do
  o="$out/$(basename "$f").o"
  $CC "${cflags[@]}" -c -o "$o" "$f"
  objs+=("$o")
done
rm -f "$out/libkcoro.a"
aarch64-linux-gnu-ar rcs "$out/libkcoro.a" "${objs[@]}"
tests=(test_coro test_handoff test_chan_basic test_chan_kinds test_select test_close test_timeout
       test_cancel_recv test_stress_pc)
coro_tests=(test_chan_kinds test_select test_close test_stress_pc)
build() { # name source extra-flags...
  local name=$1 src=$2; shift 2
  $CC "${cflags[@]}" "${tflags[@]}" "$@" -o "$out/$name" "$src" "$out/libkcoro.a" -lm
}
for t in "${tests[@]}"; do build "$t" "tests/kcoro/$t.c"; done
for t in "${coro_tests[@]}"; do build "${t}_coro" "tests/kcoro/$t.c" -DKT_CORO=1; done
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu KCORO_UNDER_QEMU=1
fail=0; pass=0
for b in "${tests[@]}" "${coro_tests[@]/%/_coro}"; do
  if timeout 600 $QEMU "$out/$b" --timeout 300 >"$out/$b.log" 2>&1; then
    echo "aarch64 $b: Passed"; pass=$((pass + 1))
  else
    echo "aarch64 $b: FAILED"; tail -20 "$out/$b.log"; fail=$((fail + 1))
  fi
done
echo "aarch64: $pass passed, $fail failed"
[ $fail -eq 0 ]
