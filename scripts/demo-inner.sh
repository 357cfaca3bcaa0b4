#!/usr/bin/env bash
# The demo itself; scripts/demo.sh runs it inside a fake host.
set -euo pipefail
cove=$PWD/target/release/cove
export COVE_HOST=unix:///run/cove/cove.sock
log=/run/cove/daemon.log
"$cove" daemon >"$log" 2>&1 &
daemon=$!
cleanup() { kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do "$cove" version >/dev/null 2>&1 && break; sleep 0.1; done
step() { printf '\n\033[1m$ cove %s\033[0m\n' "$*"; "$cove" "$@"; }

scripts/busybox-image.sh /run/cove/busybox.tar
step image import /run/cove/busybox.tar busybox
step network create --subnet 10.89.0.0/24 demo
step network ls
step run -d --name server --network demo --ip 10.89.0.10 -p 8080:8080 busybox \
    sh -c 'while true; do echo "hello from $(hostname) at 10.89.0.10" | nc -l -p 8080; done'
# The client finds the server by name through the embedded DNS (127.0.0.11).
step run --rm --name client --network demo busybox \
    sh -c 'ip -4 addr show eth0 | grep inet; grep nameserver /etc/resolv.conf; nc server 8080'
# The published port, from the (fake) host itself through 127.0.0.1: no proxy, the kernel.
step port server
printf '\n\033[1m$ nc 127.0.0.1 8080   # on the host\033[0m\n'
busybox nc 127.0.0.1 8080
step ps
step inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.MacAddress}}{{end}}' server
step rm -f server
step network rm demo
printf '\nDemo done: the daemon stops and the fake host vanishes with it.\n'
