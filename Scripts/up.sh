#!/usr/bin/env bash
# One command from a fresh checkout to a running local cluster with a mount:
# installs what is missing, builds a release binary, and runs `cairn up`.
#   Scripts/up.sh [DATADIR] [MOUNTPOINT]     (defaults: ~/cairn-data, ~/cairn)
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/install-deps.sh
export PATH="/opt/swift/usr/bin:$PATH"
swift build -c release --product cairn
data="${1:-$HOME/cairn-data}"
mnt="${2:-$HOME/cairn}"
mkdir -p "$mnt"
exec .build/release/cairn up "$data" --mount "$mnt"
