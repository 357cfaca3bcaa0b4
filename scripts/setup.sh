#!/usr/bin/env bash
# Install what Cove needs on a fresh Debian machine (root) and build it.
# Usage: scripts/setup.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in nft:nftables ip:iproute2 runc:runc nsenter:util-linux pgrep:procps; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx nc || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

profile=()
[ "${1:-}" = "--release" ] && profile=(--release)
echo "==> building cove ${profile[*]}"
cargo build --locked "${profile[@]}" -p cove
