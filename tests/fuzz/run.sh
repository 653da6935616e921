#!/usr/bin/env bash
# Run every libFuzzer binary DIR/fuzz_* for SECS seconds and print one line per
# target. Each target starts from a copy of tests/fuzz/corpus/<name without
# fuzz_>/ in a temporary directory, so a run never writes into the repository
# (a target without a corpus directory starts empty), with the dictionary
# tests/fuzz/dict/<name without fuzz_>.dict if there is one. Inputs that crash or hang
# a target are kept in DIR/artifacts/<target>/. Exit status 1 if any target
# failed.
#
#   bash tests/fuzz/run.sh build/fuzz 20       # the smoke run of `make fuzz-smoke`
#   bash tests/fuzz/run.sh build/fuzz 3600     # an hour per target
set -u
dir=${1:?usage: run.sh DIR SECS}
secs=${2:?usage: run.sh DIR SECS}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

ran=0; failed=0
for bin in "$dir"/fuzz_*; do
  if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then continue; fi
  name=$(basename "$bin")
  short=${name#fuzz_}
  work="$tmp/$short"
  mkdir -p "$work/corpus" "$work/artifacts"
  seeds=0
  if [ -d "$here/corpus/$short" ]; then
    cp -R "$here/corpus/$short/." "$work/corpus/"
    seeds=$(find "$work/corpus" -type f | wc -l)
  fi
  # A target's dictionary, if it has one: tests/fuzz/dict/<name without fuzz_>.dict.
  dict=()
  if [ -f "$here/dict/$short.dict" ]; then dict=(-dict="$here/dict/$short.dict"); fi
  # -timeout: an input that takes over 10 s is a hang, and a hang is a failure.
  "$bin" -max_total_time="$secs" -timeout=10 -print_final_stats=1 "${dict[@]}" \
      -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1
  rc=$?
  ran=$((ran + 1))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  grown=$(find "$work/corpus" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    echo "fuzz: $name: ok, ${runs:-?} runs in ${secs}s, corpus $seeds -> $grown"
  else
    failed=$((failed + 1))
    keep="$dir/artifacts/$name"
    mkdir -p "$keep"
    cp -R "$work/artifacts/." "$keep/" 2>/dev/null
    tail -n 60 "$work/log" >&2
    echo "fuzz: $name: FAILED (exit $rc), inputs kept in $keep"
  fi
done
if [ "$ran" -eq 0 ]; then
  echo "fuzz: no fuzz_* targets in $dir"
fi
[ "$failed" -eq 0 ]
