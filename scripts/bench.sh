#!/usr/bin/env bash
# Benchmarks against the in-process netlink floor, in a throwaway fake host.
# Usage: scripts/bench.sh [--quick] [--iterations N]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --release >&2
cargo build --locked --release -p cove-bench >&2
mkdir -p bench/out
exec scripts/fake-host.sh target/release/cove-bench --cove target/release/cove --out bench/out/attach.json "$@"
