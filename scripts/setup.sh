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
# etcd-client (the crate) compiles etcd's protobufs at build time: it needs protoc.
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
# The TLS etcd of the mutual-TLS tests gets its certificates from the openssl CLI.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The encrypted overlay's interop tests and bench: an independent WireGuard implementation
# (wireguard-go) and `wg`. Without recommends: wireguard-tools recommends a kernel image
# (for the module this machine kind cannot load).
lean_pkg=()
command -v wireguard-go >/dev/null 2>&1 || lean_pkg+=(wireguard-go)
command -v wg >/dev/null 2>&1 || lean_pkg+=(wireguard-tools)
# Packages whose scripts would start a service on the real host (dockerd, etcd): installed
# with services forbidden; tests run their daemons only inside namespaces they make.
service_pkg=()
command -v docker >/dev/null 2>&1 || service_pkg+=(docker.io)
# The multi-host tests' cluster store (cove_testkit::Etcd) and its CLI (ETCDCTL_API=3).
[ -x /usr/bin/etcd ] || service_pkg+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || service_pkg+=(etcd-client)
# The metrics tests: promtool checks the exposition, and a real Prometheus server (run only
# inside a fake host) scrapes the daemon.
command -v promtool >/dev/null 2>&1 || service_pkg+=(prometheus)
if [ ${#need[@]} -gt 0 ] || [ ${#lean_pkg[@]} -gt 0 ] || [ ${#service_pkg[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${need[*]} ${lean_pkg[*]} ${service_pkg[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    [ ${#need[@]} -eq 0 ] || apt-get install -y -qq "${need[@]}" >/dev/null
    [ ${#lean_pkg[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${lean_pkg[@]}" >/dev/null
    if [ ${#service_pkg[@]} -gt 0 ]; then
        # Only the binaries are wanted: forbid starting services while the packages install.
        policy=/usr/sbin/policy-rc.d
        had_policy=0
        [ -e "$policy" ] && had_policy=1
        [ $had_policy = 1 ] || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; }
        apt-get install -y -qq --no-install-recommends "${service_pkg[@]}" >/dev/null
        [ $had_policy = 1 ] || rm -f "$policy"
    fi
fi
# An etcd or a Prometheus on the real host would listen on the host's addresses: none may run
# there. Only the host's network namespace is checked; those in test namespaces are the tests'.
host_net=$(readlink /proc/self/ns/net)
for name in etcd prometheus; do
    for pid in $(pgrep -x "$name" || true); do
        if [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$host_net" ]; then
            echo "==> WARNING: $name (pid $pid) runs in the host's network namespace; killing it" >&2
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
done
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
