#!/usr/bin/env bash
# Builds Ferry with CMake into build/, including the Kolosal programs
# build/server and build/worker. Installs Debian dependencies first
# (scripts/deps.sh) unless --no-deps is given.
# Usage: ./build.sh [--no-deps] [--debug] [--jobs N]
set -euo pipefail
cd "$(dirname "$0")"

deps=1
type=RelWithDebInfo
jobs=$(nproc 2>/dev/null || echo 2)
while [ $# -gt 0 ]; do
  case $1 in
    --no-deps) deps=0 ;;
    --debug) type=Debug ;;
    --jobs) jobs=$2; shift ;;
    -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

[ $deps -eq 1 ] && scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE="$type"
cmake --build build -j"$jobs"
for b in server worker; do
  [ -x "build/$b" ] || { echo "build.sh: build/$b was not produced" >&2; exit 1; }
done
echo "build.sh: built build/server and build/worker ($type)"
