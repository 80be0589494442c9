#!/usr/bin/env bash
# Installs every Debian package Ferry needs to build, test and benchmark.
# Idempotent: packages already present are not reinstalled; apt-get update runs
# only when something is missing.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  libuv1-dev libhttp-parser-dev libcurl4-openssl-dev libjansson-dev libsqlite3-dev
  libcriterion-dev libsodium-dev
  curl wrk nginx-light golang-go procps psmisc jq
  iproute2 clang libclang-rt-dev iperf3 parallel python3
  linux-headers-amd64 qemu-system-x86 busybox-static cpio xz-utils
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
)
# Node.js + npm fetch llama.cpp's source (scripts/llama.sh) and the openai
# client (scripts/npm-openai.sh); a Node installed another way is fine.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  PKGS+=(nodejs npm)
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# nginx is only a benchmark baseline: never leave the distro's default site running.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true; fi
echo "deps: done"
