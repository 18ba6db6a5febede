#!/usr/bin/env python3
"""Draws the scale curve (loadtest/scripts/scale-curve.sh) as a PNG: gateway CPU per delivery
and p99 latency against subscribers, one line per node count.

    loadtest/scripts/plot-scale-curve.py CSV PNG [MSG_PER_S]

Needs matplotlib; without it, the script makes a virtual environment for itself
($PLOT_VENV, default /var/tmp/hubgate-plot-venv), installs matplotlib from PyPI there and
runs again inside it.
"""
import csv
import os
import subprocess
import sys


def ensure_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        venv = os.environ.get("PLOT_VENV", "/var/tmp/hubgate-plot-venv")
        python = os.path.join(venv, "bin", "python")
        if os.path.abspath(sys.executable) == os.path.abspath(python):
            sys.exit("matplotlib did not install into " + venv)
        if not os.path.exists(python):
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "matplotlib"], check=True)
        os.execv(python, [python, *sys.argv])


def main(csv_path, png_path, rate=None):
    ensure_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    by_nodes = {}
    for row in rows:
        by_nodes.setdefault(int(row["nodes"]), []).append(row)
    figure, (cpu, p99) = plt.subplots(1, 2, figsize=(10, 4))
    for nodes, points in sorted(by_nodes.items()):
        points.sort(key=lambda row: int(row["subscribers"]))
        subscribers = [int(row["subscribers"]) for row in points]
        label = f"{nodes} node" + ("s" if nodes > 1 else "")
        cpu.plot(subscribers, [float(row["us_per_delivery"]) for row in points], marker="o", label=label)
        p99.plot(subscribers, [float(row["p99_ms"]) for row in points], marker="o", label=label)
    cpu.set(title="Gateway CPU per delivery", xlabel="subscribers", ylabel="µs per delivery")
    p99.set(title="Delivery latency p99", xlabel="subscribers", ylabel="ms")
    for axis in (cpu, p99):
        axis.grid(True, alpha=0.3)
        axis.legend()
        axis.set_ylim(bottom=0)
    at = f", {rate} msg/s" if rate else ""
    figure.suptitle(f"hubgate SendToAll broadcast{at}, 64-byte payloads, one Redis")
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    print("plot:", png_path, file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(*sys.argv[1:])
