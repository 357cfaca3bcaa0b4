#!/usr/bin/env bash
# Run a command as if on a fresh host: its own network and mount namespaces, with /sys
# remounted for the new netns and the cgroup v1 mounts bound back (runc needs them).
# Nothing it creates (links, routes, nftables, mounts) touches the real host.
# Usage: scripts/fake-host.sh COMMAND...
set -euo pipefail
if [ "${COVE_IN_FAKE_HOST:-}" != 1 ]; then
    export COVE_IN_FAKE_HOST=1
    exec unshare --net --mount --propagation private --fork "$0" "$@"
fi
ip link set lo up
aside=$(mktemp -d)
mount --rbind /sys/fs/cgroup "$aside"
mount -t sysfs sysfs /sys
mount --rbind "$aside" /sys/fs/cgroup
umount -l "$aside" 2>/dev/null || true
rmdir "$aside" 2>/dev/null || true
mkdir -p /run/cove /var/lib/cove
mount -t tmpfs -o mode=0755 cove-run /run/cove
mount -t tmpfs -o mode=0700 cove-data /var/lib/cove
exec "$@"
