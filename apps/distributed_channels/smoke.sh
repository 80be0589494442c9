#!/bin/sh
# distributed_channels smoke test: the example runs its three processes to
# "Example Complete", delivers every message in order, and --debug turns on
# the prefixed debug log on stderr (quiet without it).
set -eu
B=${FERRY_BUILD_DIR:?run from ctest (FERRY_BUILD_DIR unset)}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

"$B/distributed_channels" --help >/dev/null
if "$B/distributed_channels" --messages x >/dev/null 2>&1; then echo "bad --messages accepted"; exit 1; fi

"$B/distributed_channels" --socket "$T/q.sock" >"$T/out" 2>"$T/err" || { cat "$T/out" "$T/err"; exit 1; }
tail -n 1 "$T/out" | grep -qx 'Example Complete' || { echo "no 'Example Complete'"; cat "$T/out"; exit 1; }
[ "$(grep -c '^consumer: got ' "$T/out")" -eq 10 ] || { echo "consumer did not get 10 messages"; cat "$T/out"; exit 1; }
if grep -q '^kcoro\[' "$T/err"; then echo "debug log without --debug"; cat "$T/err"; exit 1; fi

"$B/distributed_channels" --debug --messages 25 --socket "$T/d.sock" >"$T/out" 2>"$T/err" || { cat "$T/out" "$T/err"; exit 1; }
tail -n 1 "$T/out" | grep -qx 'Example Complete' || { echo "no 'Example Complete' with --debug"; exit 1; }
[ "$(grep -c '^consumer: got ' "$T/out")" -eq 25 ] || { echo "consumer did not get 25 messages"; exit 1; }
grep -q '^kcoro\[[0-9]*\]: ipc server: ' "$T/err" || { echo "no server debug log with --debug"; cat "$T/err"; exit 1; }
grep -q '^kcoro\[[0-9]*\]: ipc client: ' "$T/err" || { echo "no client debug log with --debug"; cat "$T/err"; exit 1; }
[ ! -e "$T/d.sock" ] || { echo "socket file left behind"; exit 1; }
echo "distributed_channels smoke: ok"
