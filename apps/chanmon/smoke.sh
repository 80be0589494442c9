#!/bin/sh
# chanmon smoke test: runs chanmon headless on every channel kind, copy and
# zdesc, and checks its NDJSON output. No timing thresholds.
set -eu
B=${FERRY_BUILD_DIR:?run from ctest (FERRY_BUILD_DIR unset)}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

run() {
    echo "== chanmon $*"
    if ! "$B/chanmon" --headless --duration 1 --interval 200 "$@" >"$T/out" 2>"$T/err"; then
        echo "chanmon $* failed:"; cat "$T/err"; exit 1
    fi
    cat "$T/err"
    "$B/tests/chanmon_ndjson_check" <"$T/out" || { head -n 5 "$T/out"; exit 1; }
}

run --kind buffered
run --kind rendezvous --producers 2 --consumers 2
run --kind unlimited --capacity 16
run --kind conflated
run --kind buffered --zdesc --size 4096 --channels 2
run --kind conflated --zdesc --size 1024 --producers 2

"$B/chanmon" --help >/dev/null
if "$B/chanmon" --kind bogus >/dev/null 2>&1; then echo "bad --kind accepted"; exit 1; fi
# The terminal view, briefly, to exercise it too.
"$B/chanmon" --duration 0.3 --interval 100 >/dev/null
echo "chanmon smoke: ok"
