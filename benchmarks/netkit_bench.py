"""netkit (L3, L2) vs veth vs loopback, per kernel: TCP stream throughput and request/response
latency between two network namespaces (harness/bench_netkit.py measures inside the guest).

    .venv/bin/python -m benchmarks.netkit_bench --kernel debian:6.12 [--kernel debian:7.3]

Boots each kernel itself (benchmarks.guest_driver: resolve, choose the accelerator, GuestVM)
and runs benchmarks/guest_netkit_bench.py::test_netkit_bench in it, one VM per kernel. Prints
the ratio table (path / host: throughput > 1 and latency < 1 mean the path beats loopback
in one namespace) and writes results/netkit-bench-TIMESTAMP/{netkit_bench.json,
netkit_bench.svg} (bars per kernel and path, drawn by benchmarks/svg_plot.py).

Under TCG every absolute number is an emulated one and even the ratios are distorted (the
emulated CPU, not the data path, dominates): read them as rough relative figures only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from benchmarks.guest_driver import bench_parser, drive, run_node
from benchmarks.svg_plot import ratio_bars
from harness.guest.bench.netkit import PATHS, RR_SIZE, WRITE_SIZE

NODE = "benchmarks/guest_netkit_bench.py::test_netkit_bench"
MARKER = "NETKIT_BENCH_JSON "
BASE = "host"
OTHERS = tuple(p for p in PATHS if p != BASE)


def run_kernel(spec: str, out_dir: Path, duration: float, rounds: int, accel: str,
               boot_timeout: float) -> dict[str, Any]:
    # per path: a warm-up and `rounds` measurements, each setting the path up (~30 s TCG)
    budget = 180 + len(PATHS) * (rounds + 1) * (2 * duration + 30)
    return run_node(spec, NODE, MARKER, out_dir, budget, accel, boot_timeout)


def ratios(result: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """{path: {"throughput": path/host, "latency": median RTT path/host}} (None if missing)."""
    base = result["paths"].get(BASE, {})
    out: dict[str, dict[str, float | None]] = {}
    for path in OTHERS:
        point = result["paths"].get(path, {})
        thr = lat = None
        if "stream" in point and "stream" in base:
            thr = point["stream"]["bps"] / base["stream"]["bps"]
        if "rr" in point and "rr" in base:
            lat = point["rr"]["median_us"] / base["rr"]["median_us"]
        out[path] = {"throughput": thr, "latency": lat}
    return out


def _fmt(x: float | None) -> str:
    return "     -" if x is None else f"{x:6.2f}"


def print_table(results: list[dict[str, Any]]) -> None:
    print("\nratio path / host (loopback in one netns).  throughput: >1 = path faster; "
          "latency (median RR RTT): <1 = path faster")
    print("NOTE: TCG (emulated CPU) distorts absolute figures, and the ratios too: "
          "indicative only.")
    rounds = {str(r.get("rounds", 1)) for r in results}
    print(f"each figure: the median of {'/'.join(sorted(rounds))} round(s) after a warm-up, "
          "path order rotated per round")
    head = f"{'kernel':12} | {'host MB/s':>9} {'host p50 us':>11} |"
    for path in OTHERS:
        head += f" {path + ' thr':>14} {path + ' lat':>14} |"
    print(head)
    print("-" * len(head))
    for result in results:
        rat = ratios(result)
        base = result["paths"].get(BASE, {})
        mbs = base["stream"]["bps"] / 1e6 if "stream" in base else float("nan")
        p50 = base["rr"]["median_us"] if "rr" in base else float("nan")
        line = f"{result['kernel']:12} | {mbs:9.1f} {p50:11.0f} |"
        for path in OTHERS:
            line += f" {_fmt(rat[path]['throughput']):>14} {_fmt(rat[path]['latency']):>14} |"
        print(line)
    print("\nabsolute figures (stream MB/s, RR median / p99 us):")
    for result in results:
        for path in PATHS:
            point = result["paths"].get(path, {})
            if "stream" in point and "rr" in point:
                print(f"  {result['kernel']:12} {path:10} {point['stream']['bps'] / 1e6:9.1f} "
                      f"MB/s  {point['rr']['median_us']:8.0f} / {point['rr']['p99_us']:8.0f} us"
                      f"  ({point['rr']['round_trips']} round trips)")
            else:
                why = point.get("skipped") or point.get("error") or "not measured"
                print(f"  {result['kernel']:12} {path:10} {why}")


def write_svg(results: list[dict[str, Any]], path: Path) -> None:
    """Two panels (stream throughput, RR median RTT), each a group of bars per kernel with
    one bar per path: its ratio to loopback in one namespace; dashed line at 1."""
    panels: dict[str, dict[str, dict[str, float | None]]] = {
        f"throughput path / host ({WRITE_SIZE // 1024} KiB writes)": {},
        "median RR RTT path / host": {}}
    for result in results:
        rat = ratios(result)
        for title, metric in zip(panels, ("throughput", "latency"), strict=True):
            panels[title][result["kernel"]] = {p: rat[p][metric] for p in OTHERS}
    ratio_bars(path, panels, OTHERS)


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--duration", type=float, default=1.0,
                    help="seconds per measurement (stream and RR each; TCG is slow)")
    ap.add_argument("--rr-size", type=int, default=RR_SIZE, help="RR message size in bytes")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds per path after a warm-up, path order rotated; median kept")
    args = ap.parse_args(argv)
    request = {"duration": args.duration, "paths": list(PATHS), "rr_size": args.rr_size,
               "rounds": args.rounds}
    return drive("netkit-bench", args, request,
                 lambda spec, out_dir: run_kernel(spec, out_dir, args.duration, args.rounds,
                                                 args.accel, args.boot_timeout),
                 ratios, write_svg, print_table)


if __name__ == "__main__":
    sys.exit(main())
