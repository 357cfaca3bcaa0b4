#!/usr/bin/python3
"""Cost against container count, one panel per operation, one line per system (and the
kernel floor measured in Cove's phase), from the JSON `cove-bench scale` writes.

usage: scripts/scale-plot.py bench/out/scale.json OUT.png
Needs matplotlib (Debian's python3-matplotlib; scripts/bench-deps.sh installs it).
"""
import json
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OPS = [
    ("attach", "Attach (connect a running container)"),
    ("detach", "Detach (disconnect)"),
    ("attach_port", "Attach with a published port\n(networking part of a start)"),
    ("detach_port", "Detach with a published port"),
    ("network_create", "Network create"),
    ("network_rm", "Network rm"),
]
FLOOR = {"attach": "Attach", "detach": "Detach", "attach_port": "AttachPort", "detach_port": "DetachPort"}
# DESIGN.md section 4: absolute targets (ms), and targets as a multiple of the floor.
TARGET_MS = {"detach": 5, "network_create": 5, "network_rm": 5, "attach_port": 5}
TARGET_X_FLOOR = {"attach": 3}
STYLE = {
    "cove": dict(color="tab:green", marker="o", linewidth=2.2),
    "docker": dict(color="tab:blue", marker="s"),
    "netavark": dict(color="tab:orange", marker="^"),
    "cni": dict(color="tab:purple", marker="v"),
}


def medians(points, key, field="ops"):
    xs, ys = [], []
    for p in points:
        for s in p[field]:
            if s["op"] == key and s["samples_ms"]:
                xs.append(p["containers"])
                ys.append(statistics.median(s["samples_ms"]))
    return xs, ys


def main():
    data = json.load(open(sys.argv[1]))
    systems = [s for s in data["systems"] if s["points"]]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, (key, title) in zip(axes.flat, OPS):
        for s in systems:
            xs, ys = medians(s["points"], key)
            if xs and all(y > 0 for y in ys):
                ax.plot(xs, ys, label=s["name"], **STYLE.get(s["name"], {}))
        if key in FLOOR:
            cove = next(s for s in systems if s["name"] == "cove")
            xs, ys = medians(cove["points"], FLOOR[key], "floor")
            if xs and all(y > 0 for y in ys):
                ax.plot(xs, ys, label="kernel floor", color="grey", linestyle="--", marker=".")
                if key in TARGET_X_FLOOR:
                    k = TARGET_X_FLOOR[key]
                    ax.plot(xs, [k * y for y in ys], label="target: %gx floor" % k, color="red",
                            linestyle=":")
        if key in TARGET_MS:
            ax.axhline(TARGET_MS[key], color="red", linestyle=":", label="target %g ms" % TARGET_MS[key])
        ax.set_title(title, fontsize=10)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("containers on the host")
        ax.set_ylabel("median ms (log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Per-operation cost against containers on one host (lower is better)")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=90)


if __name__ == "__main__":
    main()
