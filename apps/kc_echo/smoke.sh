#!/bin/bash
# kc_echo smoke test: echoes over real TCP connections, refuses clearly when
# the hard fd limit is too low for --max-conns, stops cleanly on SIGTERM.
set -euo pipefail
B=${FERRY_BUILD_DIR:?run from ctest (FERRY_BUILD_DIR unset)}
T=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT

"$B/kc_echo" --help >/dev/null
if "$B/kc_echo" --port 70000 >/dev/null 2>&1; then echo "bad --port accepted"; exit 1; fi

# Hard limit too low: a clear error, exit 1.
set +e
(ulimit -Sn 200 && ulimit -Hn 200 && "$B/kc_echo" --port 0 --max-conns 1000) >"$T/out" 2>"$T/err"
rc=$?
set -e
[ $rc -eq 1 ] || { echo "expected exit 1 with a low hard limit, got $rc"; cat "$T/err"; exit 1; }
grep -q 'hard limit' "$T/err" || { echo "no clear message:"; cat "$T/err"; exit 1; }

"$B/kc_echo" --port 0 --max-conns 100 >"$T/out" 2>"$T/err" &
pid=$!
for _ in $(seq 200); do grep -q 'listening on' "$T/out" && break; sleep 0.05; done
port=$(sed -n 's/^kc_echo: listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$T/out")
[ -n "$port" ] || { echo "kc_echo did not start"; cat "$T/out" "$T/err"; exit 1; }

# Several connections at once, each echoing its own lines.
for i in 1 2 3 4 5; do
  (
    exec 3<>/dev/tcp/127.0.0.1/"$port"
    for j in 1 2 3; do
      echo "conn $i line $j" >&3
      IFS= read -r -t 10 line <&3
      [ "$line" = "conn $i line $j" ] || { echo "conn $i: got '$line'"; exit 1; }
    done
    exec 3>&-
  ) &
done
fail=0
for job in $(jobs -p); do [ "$job" = "$pid" ] && continue; wait "$job" || fail=1; done
[ $fail -eq 0 ] || { echo "echo failed"; exit 1; }

kill -TERM "$pid"
wait "$pid" || { echo "kc_echo did not exit 0 on SIGTERM"; cat "$T/err"; exit 1; }
pid=
grep -q 'stopped by signal' "$T/err" || { echo "no stop message"; cat "$T/err"; exit 1; }
echo "kc_echo smoke: ok"
