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
# Docker's clients for the compatibility tests: docker-compose 1.29 (Debian's, on the system
# python3) and a venv for the Python SDK. The docker CLI comes with the machine; when it
# does not, Debian's docker.io brings it (its dockerd is never started: see below).
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
docker_pkg=()
command -v docker >/dev/null 2>&1 || docker_pkg=(docker.io)
if [ ${#need[@]} -gt 0 ] || [ ${#docker_pkg[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${need[*]} ${docker_pkg[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    [ ${#need[@]} -eq 0 ] || apt-get install -y -qq "${need[@]}" >/dev/null
    if [ ${#docker_pkg[@]} -gt 0 ]; then
        # Only the CLI is wanted: forbid starting services while the package installs.
        policy=/usr/sbin/policy-rc.d
        had_policy=0
        [ -e "$policy" ] && had_policy=1
        [ $had_policy = 1 ] || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; }
        apt-get install -y -qq --no-install-recommends "${docker_pkg[@]}" >/dev/null
        [ $had_policy = 1 ] || rm -f "$policy"
    fi
fi
venv=${COVE_VENV:-/opt/cove-venv}
if ! "$venv/bin/python" -c 'import docker' >/dev/null 2>&1; then
    echo "==> creating $venv with the Python docker SDK"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'docker==7.*'
fi

profile=()
[ "${1:-}" = "--release" ] && profile=(--release)
echo "==> building cove ${profile[*]}"
cargo build --locked "${profile[@]}" -p cove
