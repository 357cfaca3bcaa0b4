#!/usr/bin/env bash
# Install what only the benchmarks need (scripts/setup.sh installs Cove's own needs):
# iperf3 (throughput), aardvark-dns (the DNS bench's peer), netavark and the CNI reference
# plugins (the scale bench's peers), matplotlib (its plot), and with --docker Debian's
# docker.io for a private dockerd peer (its service is never started on the host).
# Usage: scripts/bench-deps.sh [--docker]
set -euo pipefail
need=()
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
[ -x /usr/lib/podman/aardvark-dns ] || need+=(aardvark-dns)
[ -x /usr/lib/podman/netavark ] || need+=(netavark)
[ -x /usr/lib/cni/portmap ] || need+=(containernetworking-plugins)
/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1 || need+=(python3-matplotlib)
docker=0
[ "${1:-}" = "--docker" ] && ! command -v dockerd >/dev/null 2>&1 && docker=1
[ ${#need[@]} -gt 0 ] || [ $docker = 1 ] || exit 0
echo "==> installing Debian packages: ${need[*]} $([ $docker = 1 ] && echo docker.io)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
[ ${#need[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
if [ $docker = 1 ]; then
    # Forbid starting services while the package installs: dockerd must never run on the
    # real host (the bench starts a private one inside its fake host).
    policy=/usr/sbin/policy-rc.d
    had_policy=0
    [ -e "$policy" ] && had_policy=1
    [ $had_policy = 1 ] || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; }
    apt-get install -y -qq --no-install-recommends docker.io >/dev/null
    [ $had_policy = 1 ] || rm -f "$policy"
fi
