#!/usr/bin/env bash
# Cove's main job in one command: set up, start the daemon, create a network, run two
# containers on it and show them talking. Runs inside a throwaway fake host (its own
# network and mount namespaces), so the real host's links, routes and firewall are untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --release >&2
exec scripts/fake-host.sh scripts/demo-inner.sh
