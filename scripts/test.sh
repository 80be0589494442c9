#!/usr/bin/env bash
# Installs dependencies, builds and runs the whole test suite three times:
#   plain        every test, optimised build
#   asan         every test, AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan         the tests labelled `concurrency`, ThreadSanitizer
#   aarch64      kcoro's coroutine and channel tests cross-built for aarch64,
#                run under qemu-aarch64 (scripts/test_aarch64.sh)
# Usage: scripts/test.sh [plain|asan|tsan ...]   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
# The real llama.cpp server and the official openai npm client, used by the
# integration tests: built/installed once per machine into the cache and
# shared by every pass (a no-op once done; the first build takes 10-20 min).
scripts/llama.sh build
scripts/npm-openai.sh >/dev/null
jobs=$(nproc)
passes=("$@")
[ ${#passes[@]} -eq 0 ] && passes=(plain asan tsan aarch64)

total_pass=0; total_fail=0
run_pass() {
  local name=$1; shift
  if [ "$name" = aarch64 ]; then
    echo "=== pass: aarch64 ==="
    local out rc=0
    out=$(scripts/test_aarch64.sh build-test/aarch64 2>&1) || rc=$?
    echo "$out"
    total_pass=$((total_pass + $(echo "$out" | grep -c ': Passed$' || true)))
    total_fail=$((total_fail + $(echo "$out" | grep -c ': FAILED$' || true)))
    [ $rc -eq 0 ] || { echo "pass aarch64 FAILED"; echo "$total_pass passed, $total_fail failed"; exit 1; }
    return
  fi
  local dir=build-test/$name
  local cfg=() sel=()
  case $name in
    plain) cfg=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
    # `kmod` (the module in qemu) runs once, in the plain pass.
    asan)  cfg=(-DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=address,undefined); sel=(-LE kmod) ;;
    tsan)  cfg=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_SANITIZE=thread); sel=(-L concurrency) ;;
    *) echo "unknown pass: $name" >&2; exit 2 ;;
  esac
  echo "=== pass: $name ==="
  cmake -S . -B "$dir" -DFERRY_WERROR=ON "${cfg[@]}" >/dev/null
  cmake --build "$dir" -j"$jobs" >"$dir.build.log" 2>&1 || { cat "$dir.build.log"; exit 1; }
  local out rc=0
  out=$(cd "$dir" && ctest --output-on-failure --no-tests=error -j"$jobs" "${sel[@]}" 2>&1) || rc=$?
  echo "$out"
  local p f
  p=$(echo "$out" | grep -cE 'Test +#[0-9]+: .* Passed' || true)
  f=$(echo "$out" | grep -cE 'Test +#[0-9]+: .*(\*\*\*|Failed|Timeout|Exception)' || true)
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
  [ $rc -eq 0 ] || { echo "pass $name FAILED"; echo "$total_pass passed, $total_fail failed"; exit 1; }
}

# ASan and TSan interfere with large shared mappings and ptrace-based tools;
# keep the sanitizers' own settings explicit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

for p in "${passes[@]}"; do run_pass "$p"; done
echo "$total_pass passed, $total_fail failed"
