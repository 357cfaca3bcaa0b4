#!/usr/bin/env bash
# Cove across hosts in one command: set up (etcd included), build, then two fake hosts and
# an etcd on a TEST-NET-3 underlay, an overlay network spanning them, a client on one host
# reaching a server on the other by name. Everything lives in namespaces the demo makes and
# removes; the real host's links, routes and firewall are untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --release >&2
cargo build --locked --release -p cove-testkit --bin cove-multihost-demo >&2
exec target/release/cove-multihost-demo "$PWD/target/release/cove"
