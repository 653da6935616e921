#!/usr/bin/env bash
# Make the base image debian:bookworm-slim locally when no registry can be
# reached: a minimal Debian 12 made by debootstrap from the host's own apt
# mirror, imported into docker under the name the Dockerfile asks for.
# Nothing is done when the image is already present.
set -euo pipefail
name=${1:-debian:bookworm-slim}
if docker image inspect "$name" >/dev/null 2>&1; then
  echo "base-image: $name present"
  exit 0
fi
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | grep -v '^[[:space:]]*#' \
           | grep -Eo 'https?://[^ ]+/debian/?' | grep -v security | head -n 1 || true)
mirror=${mirror:-http://deb.debian.org/debian}
dir=$(mktemp -d /var/tmp/bookworm-base.XXXXXX)
trap 'rm -rf "$dir"' EXIT
echo "base-image: debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$dir.log" 2>&1 \
  || { tail -n 20 "$dir.log" >&2; exit 1; }
rm -f "$dir.log"
# The image uses the same apt sources and apt settings as this host, so a
# Dockerfile's apt-get works wherever the host's does.
if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null || compgen -G "/etc/apt/sources.list.d/*.list" >/dev/null; then
  rm -f "$dir/etc/apt/sources.list"
  cp /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list "$dir/etc/apt/sources.list.d/" 2>/dev/null || true
fi
if grep -qv '^[[:space:]]*\(#\|$\)' /etc/apt/sources.list 2>/dev/null; then
  cp /etc/apt/sources.list "$dir/etc/apt/sources.list"
fi
for f in /etc/apt/apt.conf.d/99*; do [ -f "$f" ] && cp "$f" "$dir/etc/apt/apt.conf.d/"; done
# As the slim image: no apt caches, no documentation.
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/*
tar -C "$dir" -c . | docker import -c 'CMD ["bash"]' - "$name" >/dev/null
echo "base-image: imported $name ($(docker image inspect -f '{{.Size}}' "$name") bytes)"
