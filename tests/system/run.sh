#!/usr/bin/env bash
# Run the system tests (pytest on Debian's python3) against the built binaries.
# FILTER (optional) is passed to pytest -k.
set -u
cd "$(dirname "$0")/../.."
args=(-q -rs --tb=short --timeout=300 tests/system)
if [ -n "${1:-}" ]; then args+=(-k "$1"); fi
exec /usr/bin/python3 -m pytest -p no:cacheprovider "${args[@]}"
