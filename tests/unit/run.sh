#!/usr/bin/env bash
# Run the cmocka unit-test programs in DIR (optionally only those whose name
# contains FILTER) and print one summary line: "unit: N passed, N failed".
# Exit status 1 if any test failed or any program crashed.
set -u
dir=${1:?usage: run.sh DIR [FILTER]}
filter=${2:-}
passed=0; failed=0; crashed=0
for t in "$dir"/test_*; do
  [ -x "$t" ] || continue
  case "$t" in *.d) continue ;; esac
  name=$(basename "$t")
  if [ -n "$filter" ] && [[ "$name" != *"$filter"* ]]; then continue; fi
  out=$("$t" 2>&1); rc=$?
  p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
  f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
  p=${p:-0}; f=${f:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    crashed=$((crashed + 1)); f=1
  fi
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -ne 0 ]; then
    printf '%s\n' "$out"
    echo "unit: $name FAILED (exit $rc)"
  else
    echo "unit: $name: $p passed"
  fi
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
