#!/usr/bin/env bash
# Run a command as if on a fresh host: its own network and mount namespaces, with /sys
# remounted for the new netns and the cgroup v1 mounts bound back (runc needs them).
# Nothing it creates (links, routes, nftables, mounts) touches the real host, and every
# process left in its network namespace when COMMAND ends is killed with its children.
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

# Whatever COMMAND leaves running (a daemon killed or never stopped, its container
# shims and the containers under them) goes with the fake host: nothing it started may
# outlive it on the real host.
kill_tree() {
    local child
    for child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$child"; done
    kill -9 "$1" 2>/dev/null || true
}
cleanup() {
    local me pid p keep=" $$ "
    me=$(readlink /proc/$$/ns/net)
    # This script and its ancestors (unshare shares the namespace) stay.
    p=$$
    while p=$(awk '/^PPid:/ {print $2}' "/proc/$p/status" 2>/dev/null) && [ "${p:-0}" -gt 1 ]; do
        keep="$keep$p "
    done
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        case "$keep" in *" $pid "*) continue ;; esac
        [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$me" ] && kill_tree "$pid"
    done
}
status=0
# The command's status is the script's, whatever the clean-up's last test returned.
trap 'cleanup || true; exit $status' EXIT
"$@" || status=$?
