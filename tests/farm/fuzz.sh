#!/usr/bin/env bash
# Builds the frame decoder's libFuzzer target with clang (Debian's clang +
# libclang-rt) and runs it for FUZZ_SECONDS (default 20). Exit 77 (skipped)
# when clang cannot build a libFuzzer binary here.
set -euo pipefail
SRC=${FERRY_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${FERRY_BUILD_DIR:-$SRC/build}
SECS=${FUZZ_SECONDS:-20}
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null || { echo "skip: $CC not installed (scripts/deps.sh installs it)"; exit 77; }
OUT=$BUILD/tests/fuzz_frame
mkdir -p "$BUILD/tests" "$BUILD/tests/fuzz_frame_corpus"
# shellcheck disable=SC2046
$CC -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I"$SRC/include" "$SRC/tests/farm/fuzz_frame.c" "$SRC/src/farm/frame.c" "$SRC/src/farm/auth.c" \
  $(pkg-config --cflags --libs libsodium libuv) -o "$OUT"
# Seeds: a valid clear handshake frame and a sealed-type header.
printf 'FM\002\001\000\000\000\000\000\000\000\000\000\000\000\041%033d' 0 > "$BUILD/tests/fuzz_frame_corpus/seed_auth1"
printf 'FM\002\022\000\001\000\000\000\000\000\000\000\000\000\021x%017d' 0 > "$BUILD/tests/fuzz_frame_corpus/seed_task"
cd "$BUILD/tests"
"$OUT" -max_total_time="$SECS" -rss_limit_mb=512 -timeout=10 -print_final_stats=1 \
  fuzz_frame_corpus 2>&1 | tail -n 15
echo "fuzz: ${SECS}s without a crash"
