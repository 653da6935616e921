#!/usr/bin/env bash
# Run the system tests (pytest on Debian's python3) against the built binaries.
# FILTER (optional) is passed to pytest -k.
set -u
cd "$(dirname "$0")/../.."
args=(-q -rs --tb=short --timeout=300 tests/system)
# Under ASan (BUILD=build/asan) freed memory waits in a quarantine of 256 MB
# before it is reused, which looks like growth to the tests that bound a
# process's memory; a small quarantine keeps those tests meaningful. UBSan
# reports stop the process, so a report fails the test that caused it.
export ASAN_OPTIONS="quarantine_size_mb=16:detect_leaks=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
if [ -n "${1:-}" ]; then args+=(-k "$1"); fi
exec /usr/bin/python3 -m pytest -p no:cacheprovider "${args[@]}"
