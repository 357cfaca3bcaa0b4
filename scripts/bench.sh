#!/usr/bin/env bash
# Benchmarks against the kernel floor measured in the same run, in a throwaway fake host:
# attach/detach, published-port attach at 10 and 300 containers, iperf3 throughput, and
# embedded DNS queries per second from inside a container.
# Usage: scripts/bench.sh [all|attach|ports|throughput|dns] [--quick] [--full] [--iterations N]
#        [--port-iterations N] [--counts N,N,...] [--reps N] [--seconds S] [--inflight N,N,...]
# Results: stdout (markdown), bench/out/{attach,ports,throughput,dns}.json and
# bench/out/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --release >&2
# What only the benches need (setup.sh does not install them): iperf3 for throughput, and
# aardvark-dns as the DNS bench's peer (dockerd, the other one, comes with docker.io).
need=()
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
[ -x /usr/lib/podman/aardvark-dns ] || [ -x /usr/libexec/podman/aardvark-dns ] || need+=(aardvark-dns)
if [ ${#need[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --locked --release -p cove-bench >&2
mkdir -p bench/out
exec scripts/fake-host.sh target/release/cove-bench --cove target/release/cove --out bench/out "$@"
