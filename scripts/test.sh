#!/usr/bin/env bash
# Set up and run every test: formatting, lints, unit tests and the privileged end-to-end
# tests (they run the daemon inside fake hosts made of namespaces; root required).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# cargo-deny for the license, ban and source checks (deny.toml); a 6-minute
# build on a 2-core machine, once.
if ! cargo deny --version >/dev/null 2>&1; then
    echo "==> installing cargo-deny"
    cargo install --locked cargo-deny@0.20.2
fi
export COVE_PRIVILEGED_TESTS=1
# setup.sh installed etcd: its tests must run, not skip (cove_testkit::Etcd).
export COVE_REQUIRE_ETCD=1
# ... and Prometheus (promtool and a server for the metrics tests).
export COVE_REQUIRE_PROMETHEUS=1
# ... and wireguard-go with wg (the encrypted overlay's interop test).
export COVE_REQUIRE_WIREGUARD_GO=1
cargo fmt --all --check
cargo deny check licenses bans sources
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo nextest run --locked --workspace --no-fail-fast "$@"
# Benchmarks stay out of the tests; their smoke mode checks they still run, the scale
# bench's netavark and CNI peers included (dockerd, a heavier install, only in bench.sh).
scripts/bench-deps.sh
cargo build --locked -p cove-bench
bin=${CARGO_TARGET_DIR:-target}/debug
scripts/fake-host.sh "$bin/cove-bench" --quick --cove "$bin/cove"
