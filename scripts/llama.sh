#!/usr/bin/env bash
# Builds llama.cpp's llama-server once per machine, from the source that the npm
# package node-llama-cpp ships (package/llama/gitRelease.bundle, a git bundle of
# llama.cpp), into a cache directory outside any checkout:
#   ${FERRY_CACHE:-$HOME/.cache/ferry}/llama-<commit>/bin/llama-server
#
# Usage: scripts/llama.sh build   build if not built yet
#        scripts/llama.sh path    print the absolute path of llama-server
#                                 (building first if needed)
# Progress goes to stderr; `path` prints only the path on stdout.
# Safe when several runs race: one builds under a lock, the others wait for it.
# Environment: FERRY_CACHE (cache root), FERRY_LLAMA_JOBS (default 2),
#              FERRY_LLAMA_NICE (default 15).
set -euo pipefail

NPM_PKG=node-llama-cpp
NPM_VERSION=3.22.1
COMMIT=de3ff81     # llama.cpp commit in that bundle (release 0.5.0 of node-llama-cpp's tree)

CACHE=${FERRY_CACHE:-$HOME/.cache/ferry}
DIR=$CACHE/llama-$COMMIT
BIN=$DIR/bin/llama-server
JOBS=${FERRY_LLAMA_JOBS:-2}
NICE=${FERRY_LLAMA_NICE:-15}

log() { echo "llama.sh: $*" >&2; }
die() { echo "llama.sh: error: $*" >&2; exit 1; }

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
}

# A build counts only when the stamp exists: it is written last, after the
# binary has been copied, so an interrupted build is redone, never half used.
built() { [ -x "$BIN" ] && [ -f "$DIR/.built" ]; }

do_build() {
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  if ! flock -n 9; then
    log "another build holds $DIR/.lock; waiting"
    flock 9
  fi
  if built; then return 0; fi
  command -v npm >/dev/null || die "npm not found (needed to fetch $NPM_PKG)"
  command -v cmake >/dev/null || die "cmake not found (run scripts/deps.sh)"
  local t0 work
  t0=$(date +%s)
  work=$DIR/work
  rm -rf "$work"
  mkdir -p "$work"

  log "fetching $NPM_PKG@$NPM_VERSION with npm pack"
  (cd "$work" && npm pack --silent "$NPM_PKG@$NPM_VERSION" >npm-pack.out 2>&1) ||
    { cat "$work/npm-pack.out" >&2; die "npm pack failed"; }
  local tgz
  tgz=$(ls "$work"/*.tgz 2>/dev/null | head -n1)
  [ -n "$tgz" ] || die "npm pack produced no tarball"
  tar -xzf "$tgz" -C "$work" package/llama/gitRelease.bundle ||
    die "the tarball has no package/llama/gitRelease.bundle"

  log "cloning the bundle"
  git -c advice.detachedHead=false clone --quiet "$work/package/llama/gitRelease.bundle" "$work/src" >&2
  local head
  head=$(git -C "$work/src" rev-parse HEAD)
  case $head in
    "$COMMIT"*) ;;
    *) die "bundle HEAD is $head, expected $COMMIT" ;;
  esac

  # LLAMA_CURL exists only in some llama.cpp versions: pass it only if known,
  # so CMake does not warn about an unused variable.
  local extra=()
  if grep -q 'LLAMA_CURL' "$work/src/CMakeLists.txt"; then extra+=(-DLLAMA_CURL=OFF); fi

  log "configuring (Release, llama-server only)"
  nice -n "$NICE" cmake -S "$work/src" -B "$work/build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
    -DGGML_NATIVE=OFF "${extra[@]}" >"$work/configure.log" 2>&1 ||
    { tail -n 40 "$work/configure.log" >&2; die "cmake configure failed (log: $work/configure.log)"; }

  log "building llama-server with -j$JOBS under nice $NICE (10-20 minutes on 2 cores)"
  nice -n "$NICE" cmake --build "$work/build" --target llama-server -j"$JOBS" \
    >"$work/build.log" 2>&1 ||
    { tail -n 40 "$work/build.log" >&2; die "build failed (log: $work/build.log)"; }

  local out
  out=$(find "$work/build" -type f -name llama-server -perm -u+x | head -n1)
  [ -n "$out" ] || die "build finished but no llama-server binary was found"
  mkdir -p "$DIR/bin"
  cp "$out" "$BIN.tmp" && mv -f "$BIN.tmp" "$BIN"
  "$BIN" --version >/dev/null 2>&1 || die "$BIN does not run"
  echo "$head" >"$DIR/commit"
  echo "$(( $(date +%s) - t0 ))" >"$DIR/build-seconds"
  touch "$DIR/.built"
  log "built $BIN in $(cat "$DIR/build-seconds") s"
  # The sources and objects are only needed for the build; keep the cache small.
  if [ "${FERRY_LLAMA_KEEP_WORK:-0}" != 1 ]; then rm -rf "$work"; fi
}

case ${1:-} in
  build) built || do_build ;;
  path)  built || do_build; echo "$BIN" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
