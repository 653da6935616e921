#!/usr/bin/env bash
# Run the benchmarks (make bench) and print a summary.
#
#   bash bench/run.sh               every benchmark: throughput, reconnect, pubsub, alarm
#   bash bench/run.sh throughput    one of them (extra arguments go to its script,
#   bash bench/run.sh reconnect       e.g. bash bench/run.sh throughput --seconds 10,
#   bash bench/run.sh pubsub          bash bench/run.sh pubsub --quick)
#   bash bench/run.sh alarm
#
# Benchmarks are not tests: they print figures next to their anchor and
# PASS/MISS next to the issue's targets, and exit 0 either way. Each one's
# full output is kept in build/bench/<name>.out. See bench/README.md.
set -u
cd "$(dirname "$0")/.."
py=/usr/bin/python3 # Debian's: pyzmq, protobuf, redis, yaml
out=build/bench
mkdir -p "$out"

all=(throughput reconnect pubsub alarm)
if [ $# -gt 0 ]; then
  case "$1" in
    throughput | reconnect | pubsub | alarm) names=("$1"); shift ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "bench: unknown benchmark \"$1\" (expected: ${all[*]})" >&2; exit 2 ;;
  esac
else
  names=("${all[@]}")
fi

bins=(scada-ioserver scada-devsim)
if [[ " ${names[*]} " == *" pubsub "* ]]; then
  bins+=(scada-resolver scada-broker scadactl)
fi
if [[ " ${names[*]} " == *" alarm "* ]]; then
  bins+=(scada-resolver scada-broker scada-alarm)
fi
for b in "${bins[@]}"; do
  if [ ! -x "build/bin/$b" ]; then
    echo "bench: build/bin/$b is missing: run make all (or make bench)" >&2
    exit 2
  fi
done
for tool in "$py" protoc redis-server; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing: run make deps" >&2; exit 2; }
done

# The anchor of the throughput benchmark: a bare blocking libmodbus loop.
if [[ " ${names[*]} " == *" throughput "* ]]; then
  if [ ! -x "$out/mbloop" ] || [ bench/mbloop.c -nt "$out/mbloop" ]; then
    # shellcheck disable=SC2046
    cc -O2 -Wall -Wextra -o "$out/mbloop" bench/mbloop.c $(pkg-config --cflags --libs libmodbus) ||
      { echo "bench: cannot build bench/mbloop.c (libmodbus-dev missing? run make deps)" >&2; exit 2; }
  fi
fi

# 1,000 device sockets in one I/O server: make sure the soft limit allows it.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

declare -A rc
for name in "${names[@]}"; do
  echo "==== bench: $name ($(date '+%Y-%m-%d %H:%M:%S'))"
  "$py" "bench/$name.py" "$@" | tee "$out/$name.out"
  rc[$name]=${PIPESTATUS[0]}
  echo
done

echo "==== bench: summary ($(date '+%Y-%m-%d %H:%M:%S'), $(nproc) cores)"
for name in "${names[@]}"; do
  if [ "${rc[$name]}" != 0 ]; then
    echo "$name: did not complete (exit ${rc[$name]}); see $out/$name.out"
    tail -n 3 "$out/$name.out" | sed 's/^/  /'
    continue
  fi
  case $name in
    throughput)
      echo "$name:"
      sed -n '/^ *I\/O server  *target/,/^$/p' "$out/$name.out" | sed '/^$/d; s/^/  /'
      grep -E '^  (CPU per transaction|CPU % at the same)' "$out/$name.out"
      grep -E '^targets:' "$out/$name.out" | sed 's/^/  /'
      ;;
    reconnect)
      if grep -q 'skipped' "$out/$name.out"; then
        echo "$name: $(grep skipped "$out/$name.out")"
      else
        echo "$name:"
        sed -n '/^silent /,/^$/p' "$out/$name.out" | sed '/^$/d; s/^/  /'
        grep -E '^target:' "$out/$name.out" | sed 's/^/  /'
      fi
      ;;
    pubsub)
      if grep -q 'skipped' "$out/$name.out"; then
        echo "$name: $(grep skipped "$out/$name.out")"
      else
        echo "$name:"
        grep -E '^(page change|baseline|idle|lost server|failover|fail-back \()' "$out/$name.out" |
          sed 's/^/  /'
        grep -E '^target:' "$out/$name.out" | sed 's/^/  /'
      fi
      ;;
    alarm)
      echo "$name:"
      grep -E '^(site:|alarm event|value update|alarm p99)' "$out/$name.out" | sed 's/^/  /'
      ;;
  esac
done
# Benchmarks are not tests: a MISS does not fail the run.
for name in "${names[@]}"; do [ "${rc[$name]}" = 0 ] || exit 1; done
exit 0
