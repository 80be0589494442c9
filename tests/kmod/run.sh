#!/usr/bin/env bash
# monster_sampler.ko in qemu (issue 11). On the host: builds the module
# against the installed Debian headers, fetches the matching Debian kernel
# image (cached in ${FERRY_CACHE:-~/.cache/ferry}/kmod), builds guest_test
# and the Monster tools statically, packs them with busybox into an
# initramfs, boots it under software emulation and turns the guest's
# "KTEST name PASS|FAIL" console lines into the exit status.
# Exit 77 (CTest: skipped) only when a needed package is not installed
# (scripts/deps.sh installs them).
set -euo pipefail
SRC=${FERRY_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
B=${FERRY_BUILD_DIR:-$SRC/build}
CACHE=${FERRY_CACHE:-$HOME/.cache/ferry}/kmod
QEMU_TIMEOUT=${FERRY_KMOD_QEMU_TIMEOUT:-600}
W=$B/kmod-qemu
mkdir -p "$CACHE" "$W"

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

for t in qemu-system-x86_64 cpio dpkg-deb make; do
  command -v $t >/dev/null || skip "$t missing (scripts/deps.sh installs it)"
done
# busybox-static's /bin/busybox (the guest has no libc of its own).
[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || skip "busybox-static missing"
hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -1)
[ -n "$hdr" ] || skip "linux-headers-amd64 missing"
ver=${hdr#/usr/src/linux-headers-}           # e.g. 6.1.0-57-amd64 (never uname -r)

# 1. The kernel image matching the headers, cached.
img=$CACHE/linux-image-$ver
if [ ! -f "$img/boot/vmlinuz-$ver" ]; then
  echo "kmod: fetching linux-image-$ver"
  (cd "$CACHE" && rm -f linux-image-"$ver"_*.deb &&
   apt-get -q -o APT::Sandbox::User=root download "linux-image-$ver") >"$W/apt.log" 2>&1 ||
    { cat "$W/apt.log"; fail "apt-get download linux-image-$ver"; }
  rm -rf "$img.tmp" && dpkg-deb -x "$CACHE"/linux-image-"$ver"_*.deb "$img.tmp" && mv "$img.tmp" "$img"
fi
kernel=$img/boot/vmlinuz-$ver

# 2. The module, built in a copy (no build products in the source tree).
rm -rf "$W/src" && mkdir -p "$W/src/kmod" "$W/src/include"
cp -r "$SRC/kmod/monster_sampler" "$W/src/kmod/"
cp -r "$SRC/include/ferry" "$W/src/include/"
make -C "$hdr" M="$W/src/kmod/monster_sampler" modules >"$W/kbuild.log" 2>&1 ||
  { cat "$W/kbuild.log"; fail "module build"; }
grep -E 'warning|error' "$W/kbuild.log" | grep -v 'Skipping BTF' && fail "module build warnings" || true

# 3. guest_test and the tools, linked statically.
S=$W/static
# pkg-config's imported targets name the .so: point jansson at its archive.
jansson_a=$(pkg-config --variable=libdir jansson)/libjansson.a
[ -f "$jansson_a" ] || skip "$jansson_a missing (libjansson-dev)"
cmake -S "$SRC" -B "$S" -DCMAKE_BUILD_TYPE=Release -DCMAKE_EXE_LINKER_FLAGS=-static \
  -Dpkgcfg_lib_JANSSON_jansson="$jansson_a" -DFERRY_WERROR=ON >"$W/cmake.log" 2>&1 || { cat "$W/cmake.log"; fail "cmake (static)"; }
cmake --build "$S" -j2 --target kmod_guest_test producer filter consumer coordinator monster-status \
  >"$W/build.log" 2>&1 || { tail -50 "$W/build.log"; fail "static build"; }

# 4. The initramfs.
R=$W/root
rm -rf "$R" && mkdir -p "$R"/{bin,dev,proc,sys,tmp}
cp /bin/busybox "$R/bin/busybox"
cp "$S/tests/guest_test" "$R/bin/"
for t in producer filter consumer coordinator monster-status; do cp "$S/$t" "$R/bin/"; done
cp "$W/src/kmod/monster_sampler/monster_sampler.ko" "$R/"
cp "$SRC/tests/kmod/init" "$R/init"
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) >"$W/initrd.gz"

# 5. Boot (software emulation: KVM is not used).
log=$W/console.log
rc=0
timeout "$QEMU_TIMEOUT" qemu-system-x86_64 -kernel "$kernel" -initrd "$W/initrd.gz" \
  -append 'console=ttyS0 panic=-1' -nographic -no-reboot -m 512 -smp 2 \
  </dev/null >"$log" 2>&1 || rc=$?
tr -d '\r' <"$log" >"$log.txt"

grep -E '^(KTEST|KBENCH|pipeline )' "$log.txt" || true
pass=$(grep -cE '^KTEST [^ ]+ PASS$' "$log.txt" || true)
failn=$(grep -cE '^KTEST [^ ]+ FAIL' "$log.txt" || true)
if ! grep -q '^KTEST_DONE' "$log.txt"; then
  echo "--- the guest did not finish (qemu exit $rc); console tail:"
  tail -40 "$log.txt"
  failn=$((failn + 1))
fi
# The guest_test suite must have printed every one of its tests.
expected=21
if [ $((pass + failn)) -lt $expected ]; then
  echo "only $((pass + failn)) result lines, expected $expected"
  failn=$((failn + 1))
fi
echo "$pass passed, $failn failed"
[ "$failn" -eq 0 ]
