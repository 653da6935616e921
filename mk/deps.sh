#!/usr/bin/env bash
# Install the Debian packages that building, testing and running the demo need.
# Only what is missing is installed; nothing is done when everything is present.
set -euo pipefail
pkgs=(
  build-essential pkg-config clang libclang-rt-14-dev
  libczmq-dev libzmq3-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  libmodbus-dev libhiredis-dev libyaml-dev libcmocka-dev
  redis-server redis-tools socat iproute2 iptables procps valgrind tcpdump
  python3 python3-pytest python3-pytest-timeout python3-zmq python3-protobuf python3-pymodbus python3-serial python3-serial-asyncio python3-redis python3-yaml
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packaged redis-server service is not ours: tests and `make run` start private instances.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
echo "deps: done"
