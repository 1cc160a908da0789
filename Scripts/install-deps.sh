#!/usr/bin/env bash
# Installs what Cairn needs on Debian 12 (as root): the C libraries it links, FUSE, and the
# tools the tests use. Swift 6 itself must already be installed (swift.org toolchain on PATH).
set -euo pipefail
need=()
for pkg in libsqlite3-dev libcurl4-openssl-dev libfuse3-dev fuse3 pkg-config rsync attr python3 python3-pip; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v swift >/dev/null 2>&1; then
  for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do [ -x "$d/swift" ] && export PATH="$d:$PATH"; done
fi
command -v swift >/dev/null 2>&1 || { echo "Swift 6 is not installed: get the toolchain from swift.org and put it on PATH" >&2; exit 1; }
# The MogileFS client the compatibility test drives.
python3 -c 'import pymogilefs' 2>/dev/null || python3 -m pip install -q pymogilefs 2>/dev/null \
  || python3 -m pip install -q --break-system-packages pymogilefs
