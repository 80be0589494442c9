#!/usr/bin/env bash
# monster_sampler.ko in qemu (issue 11), the setup of the `kmod` CTest
# fixture. On the host: builds the module against the installed Debian
# headers, fetches the matching Debian kernel (its uncompressed image cached
# in ${FERRY_CACHE:-~/.cache/ferry}/kmod), packs busybox, the module, the
# project's Monster test suites (tests/monster, built statically on the
# Criterion stand-in as tests/kmod/monster_*; FERRY_KMOD_CRITERION=real
# takes the Criterion binaries instead, much slower under emulation), the
# tools and the bench (as built in the build tree, with their shared
# libraries and the dynamic loader) into an initramfs, boots it under
# software emulation and collects the guest's
# "KTEST <group> <name> PASS|FAIL|SKIP" console lines into
# $B/kmod-qemu/results.txt, which tests/kmod/result.sh turns into one CTest
# result per group. Prints every result line and the timing breakdown.
# Exit: 0 the guest ran to its end (whatever its tests said), 1 it did not
# (or a build failed), 77 (CTest: skipped) a needed package is not installed
# (scripts/deps.sh installs them).
set -euo pipefail
SRC=${FERRY_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
B=${FERRY_BUILD_DIR:-$SRC/build}
CACHE=${FERRY_CACHE:-$HOME/.cache/ferry}/kmod
QEMU_TIMEOUT=${FERRY_KMOD_QEMU_TIMEOUT:-600}
W=$B/kmod-qemu
mkdir -p "$CACHE" "$W"
rm -f "$W/results.txt" "$W/skipped"

skip() { echo "SKIP: $*"; echo "$*" >"$W/skipped"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# Timing breakdown: seconds since the previous mark.
declare -a timing=()
t_last=$(date +%s.%N)
mark() {
  local now; now=$(date +%s.%N)
  timing+=("$(awk -v a="$t_last" -v b="$now" -v w="$1" 'BEGIN { printf "%s %.1f s", w, b - a }')")
  t_last=$now
}
t_start=$t_last

for t in qemu-system-x86_64 cpio dpkg-deb make xz readelf; do
  command -v $t >/dev/null || skip "$t missing (scripts/deps.sh installs it)"
done
# busybox-static's /bin/busybox: the guest's shell and utilities.
[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || skip "busybox-static missing"
hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -1)
[ -n "$hdr" ] || skip "linux-headers-amd64 missing"
ver=${hdr#/usr/src/linux-headers-}           # e.g. 6.1.0-57-amd64 (never uname -r)

# 1. The kernel matching the headers, cached once per machine: the
#    package's vmlinuz, and the vmlinux inside it (the kernel is built with
#    CONFIG_PVH, so qemu boots the uncompressed ELF directly and the guest
#    skips the xz decompression, ~8 s under emulation).
vmlinuz=$CACHE/vmlinuz-$ver
vmlinux=$CACHE/vmlinux-$ver
if [ ! -f "$vmlinuz" ]; then
  old=$CACHE/linux-image-$ver/boot/vmlinuz-$ver # the earlier cache layout
  if [ -f "$old" ]; then
    cp "$old" "$vmlinuz.tmp"
  else
    echo "kmod: fetching linux-image-$ver"
    (cd "$CACHE" && rm -f linux-image-"$ver"_*.deb &&
     apt-get -q -o APT::Sandbox::User=root download "linux-image-$ver") >"$W/apt.log" 2>&1 ||
      { cat "$W/apt.log"; fail "apt-get download linux-image-$ver"; }
    rm -rf "$W/deb" && mkdir -p "$W/deb"
    dpkg-deb --fsys-tarfile "$CACHE"/linux-image-"$ver"_*.deb |
      tar -x -C "$W/deb" "./boot/vmlinuz-$ver" || fail "no boot/vmlinuz-$ver in the package"
    mv "$W/deb/boot/vmlinuz-$ver" "$vmlinuz.tmp"
    rm -rf "$W/deb" "$CACHE"/linux-image-"$ver"_*.deb
  fi
  mv "$vmlinuz.tmp" "$vmlinuz"
fi
if [ ! -f "$vmlinux" ]; then
  # The xz payload of the bzImage, up to the end of its first stream.
  off=$(LC_ALL=C grep -obUaP '\xFD7zXZ\x00' "$vmlinuz" 2>/dev/null | head -1 | cut -d: -f1 || true)
  # (No pipes here: xz stops reading after the stream, and pipefail would
  # count tail's SIGPIPE; PVH is the ELF note XEN_ELFNOTE_PHYS32_ENTRY, 18.)
  if [ -n "$off" ] && xz -dcq --single-stream <(tail -c +$((off + 1)) "$vmlinuz") >"$vmlinux.tmp" &&
     readelf -n "$vmlinux.tmp" >"$W/notes.txt" 2>/dev/null && grep -q 'Xen.*0x00000012' "$W/notes.txt"; then
    mv "$vmlinux.tmp" "$vmlinux"
  else
    rm -f "$vmlinux.tmp"
    echo "kmod: no PVH vmlinux in $vmlinuz; booting the compressed image"
  fi
fi
kernel=$vmlinuz
[ -f "$vmlinux" ] && kernel=$vmlinux
mark "kernel image"

# 2. The module, built in a copy (no build products in the source tree)
#    and kept per content: an unchanged module is not rebuilt.
key=$(cat "$SRC"/kmod/monster_sampler/{monster_sampler.c,Makefile} \
          "$SRC/include/ferry/monster_ioctl.h" <(echo "$ver") | sha256sum | cut -c1-16)
ko=$W/monster_sampler-$key.ko
if [ ! -f "$ko" ]; then
  rm -rf "$W/src" && mkdir -p "$W/src/kmod" "$W/src/include"
  cp -r "$SRC/kmod/monster_sampler" "$W/src/kmod/"
  cp -r "$SRC/include/ferry" "$W/src/include/"
  make -C "$hdr" M="$W/src/kmod/monster_sampler" modules >"$W/kbuild.log" 2>&1 ||
    { cat "$W/kbuild.log"; fail "module build"; }
  grep -E 'warning|error' "$W/kbuild.log" | grep -v 'Skipping BTF' && fail "module build warnings"
  rm -f "$W"/monster_sampler-*.ko
  cp "$W/src/kmod/monster_sampler/monster_sampler.ko" "$ko"
  mark "module build"
else
  mark "module (unchanged, not rebuilt)"
fi

# 3. The initramfs: busybox, the module, and the build tree's Monster test
#    suites, tools and bench with every shared library they load and the
#    dynamic loader. Criterion exists only as a shared library in Debian and
#    re-executes its binary (~20 libraries) for every test, about 2 s each
#    under emulation: by default the suites are the static stand-in builds.
suites=(monster_pipe monster_wait monster_death monster_segment monster_sampler monster_kernel)
suite_dir=$B/tests/kmod
[ "${FERRY_KMOD_CRITERION:-}" = real ] && suite_dir=$B/tests
bins=()
for t in "${suites[@]}"; do bins+=("$suite_dir/$t"); done
for t in producer filter consumer coordinator monster-status bench_monster_kernel; do bins+=("$B/$t"); done
for f in "${bins[@]}"; do
  [ -x "$f" ] || fail "$f not built (build the tree first: cmake --build $B)"
done
R=$W/root
rm -rf "$R" && mkdir -p "$R"/{bin,dev,proc,sys,tmp}
cp /bin/busybox "$R/bin/busybox"
for f in "${bins[@]}"; do
  strip --strip-debug -o "$R/bin/$(basename "$f")" "$f"
done
# Shared libraries at their own paths (the loader's search path is the same).
for lib in $(ldd "${bins[@]}" 2>/dev/null | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
  mkdir -p "$R$(dirname "$lib")"
  cp -L "$lib" "$R$lib"
done
[ -e "$R/lib64/ld-linux-x86-64.so.2" ] || fail "the dynamic loader was not found by ldd"
cp "$ko" "$R/monster_sampler.ko"
[ "${FERRY_KMOD_CRITERION:-}" = real ] && touch "$R/criterion-real"
cp "$SRC/tests/kmod/init" "$R/init"
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet) >"$W/initrd.cpio"
mark "initramfs ($(du -m "$W/initrd.cpio" | cut -f1) MiB)"

# 4. Boot (software emulation: KVM is not used). No network card (no iPXE
#    option ROM), `quiet` (the serial console is slow under emulation).
log=$W/console.log
rc=0
timeout "$QEMU_TIMEOUT" qemu-system-x86_64 -kernel "$kernel" -initrd "$W/initrd.cpio" \
  -append 'console=ttyS0 panic=-1 quiet' -nographic -no-reboot -nic none \
  -m ${FERRY_KMOD_MEM:-512} -smp ${FERRY_KMOD_CPUS:-2} \
  </dev/null >"$log" 2>&1 || rc=$?
tr -d '\r' <"$log" >"$log.txt"
mark "qemu (boot, tests, poweroff)"

# 5. Results: every guest line is printed; results.txt feeds result.sh.
grep -E '^(KTEST|KBENCH|KSUITE|pipeline )' "$log.txt" || true
grep -E '^KTEST [^ ]+ [^ ]+ (PASS|FAIL|SKIP)' "$log.txt" >"$W/results.txt" || true
pass=$(grep -c ' PASS$' "$W/results.txt" || true)
failn=$(grep -c ' FAIL' "$W/results.txt" || true)
skipn=$(grep -c ' SKIP' "$W/results.txt" || true)
echo "guest: $pass passed, $failn failed, $skipn skipped"
# Guest-side breakdown from its uptime (the kernel starts at 0).
awk '/KTIME/ { sub(/.*KTIME/, "KTIME"); printf "  guest %-10s at %6.1f s uptime (%.1f s)\n", $2, $3, $3 - prev; prev = $3 }' "$log.txt"
for t in "${timing[@]}"; do echo "  host  $t"; done
awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "  total %.1f s\n", b - a }'
if ! grep -q '^KTEST_DONE' "$log.txt"; then
  echo "--- the guest did not finish (qemu exit $rc); console tail:"
  tail -40 "$log.txt"
  exit 1
fi
exit 0
