#!/usr/bin/env bash
# A 1 GiB chunk streams employer -> employee over loopback and its checksum
# comes back right, while the peak RSS (VmHWM) of the employer and of the
# employee stays under 64 MiB (not checked in sanitizer builds, whose shadow
# memory is not ours). The figure is memory, not time.
source "$(dirname "$0")/lib.sh"
secret "$T/s"
mkdir -p "$T/tasks"
# 1 GiB: random head and tail around a sparse middle (cheap to make)
truncate -s 1G "$T/tasks/big.json"
head -c 1M /dev/urandom | dd of="$T/tasks/big.json" conv=notrunc status=none
head -c 1M /dev/urandom | dd of="$T/tasks/big.json" bs=1M seek=1023 conv=notrunc status=none
cat > "$T/tasks/sum.sh" <<'SH'
#!/bin/sh
sha256sum < "$1" | cut -c1-64 > "$2"
SH
chmod +x "$T/tasks/sum.sh"
want=$(sha256sum < "$T/tasks/big.json" | cut -c1-64)
start_employee e1 - --port 0 --bind 127.0.0.1 --broadcast none --secret-file "$T/s"
P=$(employee_port e1)
"$BUILD/employer" --tasks "$T/tasks" --results "$T/res" --script "$T/tasks/sum.sh" \
  --secret-file "$T/s" --udp-port 0 --employee 127.0.0.1:$P --watch --no-progress \
  2> "$T/employer.err" &
EMP=$!; PIDS+=($EMP)
t0=$(date +%s.%N)
wait_for 600 test -s "$T/res/result_big.json"
t1=$(date +%s.%N)
expect_eq "checksum of the 1 GiB chunk" "$(cat "$T/res/result_big.json")" "$want"
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
er=$(hwm $EMP); ee=$(hwm "${EPID[e1]}")
echo "peak RSS: employer ${er} KiB, employee ${ee} KiB; 1 GiB round in $(echo "$t1 - $t0" | bc) s"
if [ -n "${FERRY_SANITIZE:-}" ]; then
  ok "RSS not checked under sanitizers ($FERRY_SANITIZE)"
else
  [ "$er" -lt 65536 ] || fail "employer peak RSS ${er} KiB >= 64 MiB"
  [ "$ee" -lt 65536 ] || fail "employee peak RSS ${ee} KiB >= 64 MiB"
  ok "both peak RSS under 64 MiB"
fi
