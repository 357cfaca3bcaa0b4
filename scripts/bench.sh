#!/usr/bin/env bash
# Benchmarks against the kernel floor measured in the same run, in a throwaway fake host:
# attach/detach, Cove side by side with Docker, netavark and CNI at growing container counts
# (scale; Cove alone: ports), iperf3 throughput, embedded DNS queries per second, and the
# fill rate (containers started per second with K start requests in flight); `overlay`
# (only by name): two fake hosts and etcd, overlay throughput, attach and convergence, beside
# Docker 20.10's classic overlay (`dockerd --cluster-store`) on two more fake hosts of the
# same netlab (skipped, with the reason printed, without dockerd or with --peers sans docker);
# `overlay-scale` (only by name): three fake hosts x N containers on 4 overlay networks;
# `services` (only by name): Swarm services through VIPs on one fake host and on three with
# etcd (connections, throughput, task start cost, scale, failover; Docker's swarm attempt).
# Usage: scripts/bench.sh [all|attach|ports|scale|throughput|dns|fill|overlay|overlay-scale|services]
#        [--quick] [--full] [--per-host N] [--batch N] [--cycles N]
#        [--iterations N] [--port-iterations N] [--counts N,N,...] [--peer-counts N,N,...]
#        [--peer-iterations N] [--peers docker,netavark,cni] [--reps N] [--seconds S]
#        [--inflight N,N,...] [--fill-count N] [--fill-inflight N,N,...] [--fill-ports]
# `scripts/bench.sh scale` is the speed-and-scale run (about 15 minutes): Cove at 10, 300,
# 1,000 and 2,000 containers, the peers at 10 and 300.
# Results: stdout (markdown), bench/out/*.json and bench/out/report.md; a scale run also
# draws bench/out/scale.png and, for `scale` without --quick, copies the plot to
# docs/img/scale.png and its tables into docs/benchmarks.md (between the scale markers).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --release >&2
scripts/bench-deps.sh --docker >&2
cargo build --locked --release -p cove-bench >&2
mkdir -p bench/out
rm -f bench/out/scale.json
args=("$@")
which=all
quick=0
counts=0
for a in "$@"; do
    case $a in
        all|attach|ports|scale|throughput|dns|fill|overlay|overlay-scale|services) which=$a ;;
        --quick) quick=1 ;;
        --counts|--full) counts=1 ;;
    esac
done
if [ "$which" = scale ] && [ $quick = 0 ] && [ $counts = 0 ]; then
    args+=(--full --port-iterations 30)
fi
bin=${CARGO_TARGET_DIR:-target}/release
scripts/fake-host.sh "$bin/cove-bench" --cove "$bin/cove" --out bench/out "${args[@]}"
if [ -f bench/out/scale.json ]; then
    /usr/bin/python3 scripts/scale-plot.py bench/out/scale.json bench/out/scale.png
    if [ "$which" = scale ] && [ $quick = 0 ]; then
        mkdir -p docs/img
        cp bench/out/scale.png docs/img/scale.png
        /usr/bin/python3 scripts/scale-publish.py bench/out/report.md docs/benchmarks.md
        echo "==> docs/benchmarks.md and docs/img/scale.png updated" >&2
    fi
fi
