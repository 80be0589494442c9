#!/usr/bin/env bash
# One CTest result per group of guest tests (tests/kmod/CMakeLists.txt): reads
# the "KTEST <group> <name> PASS|FAIL|SKIP [why]" lines that run.sh (the
# fixture's setup) collected from the qemu console into results.txt.
#   result.sh GROUP              every test of the Criterion binary
#                                tests/GROUP (its --list) must have a line
#   result.sh GROUP NAME...      each NAME must have a line
# Fails on any FAIL line and on any test without a line; a SKIP line passes
# (it says why). Exit 77 (skipped) when run.sh was skipped.
set -euo pipefail
B=${FERRY_BUILD_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build}
W=$B/kmod-qemu
group=$1; shift
[ -f "$W/skipped" ] && { echo "SKIP: kmod_qemu was skipped: $(cat "$W/skipped")"; exit 77; }
[ -f "$W/results.txt" ] || { echo "no $W/results.txt: kmod_qemu did not run to the end"; exit 1; }
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  bin=$B/tests/$group
  [ -x "$bin" ] || { echo "$bin not built"; exit 1; }
  # Criterion's --list: "suite: N tests", then "├── name" per test.
  mapfile -t names < <("$bin" --list | awk '/^[^ ]+: [0-9]+ tests?$/ { s = $1; sub(/:$/, "", s) }
                                           /── / { print s "::" $NF }')
fi
[ ${#names[@]} -gt 0 ] || { echo "no tests to look for in group $group"; exit 1; }
bad=0
for n in "${names[@]}"; do
  line=$(grep -F "KTEST $group $n " "$W/results.txt" | head -1 || true)
  if [ -z "$line" ]; then
    echo "MISSING $group $n (no result line from the guest)"
    bad=1
  else
    echo "$line"
    case $line in *" FAIL"*) bad=1 ;; esac
  fi
done
# Lines for tests this host does not know of are failures too.
grep -F "KTEST $group " "$W/results.txt" | grep ' FAIL' >/dev/null && bad=1
exit $bad
