"""The AF_XDP VM-bypass path vs the guest stack, per kernel: frames per second and UDP
round-trip latency of one flow from a peer namespace, either to a socket in the NIC's own
namespace (the stack) or steered by XDP into an XSK, forwarded by our backend over QEMU's
stream framing to a TAP in a "vm" namespace (the bypass); harness/guest/bench/afxdp.py
measures inside the guest.

    .venv/bin/python -m benchmarks.afxdp_bench --kernel debian:6.12 [--kernel debian:7.3]

Boots each kernel itself (benchmarks.guest_driver) and runs
benchmarks/guest_afxdp_bench.py::test_afxdp_bench in it, one VM per kernel. Prints the
ratio table (bypass / stack, both measured in the same run: frame rate > 1 and latency
< 1 mean the bypass is faster) and writes results/afxdp-bench-TIMESTAMP/{afxdp_bench.json,
afxdp_bench.svg}.

The bypass forwards every frame through Python (our backend and relay), so it measures
the path's correctness cost more than AF_XDP's speed; under TCG every absolute figure is
an emulated one: read the ratios as rough relative figures only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from benchmarks.guest_driver import bench_parser, drive, run_node
from benchmarks.svg_plot import ratio_bars
from harness.guest.bench.afxdp import PATHS, SIZE
from harness.guest.bench.afxdp import ratios as path_ratios

NODE = "benchmarks/guest_afxdp_bench.py::test_afxdp_bench"
MARKER = "AFXDP_BENCH_JSON "
SERIES = ("bypass",)


def run_kernel(spec: str, out_dir: Path, duration: float, rounds: int, accel: str,
               boot_timeout: float) -> dict[str, Any]:
    # per path: a warm-up and `rounds` measurements (blast + RR), each building the path
    budget = 180 + len(PATHS) * (rounds + 1) * (2 * duration + 60)
    return run_node(spec, NODE, MARKER, out_dir, budget, accel, boot_timeout)


def ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """{"fps": bypass/stack frame rate, "latency": bypass/stack median RTT}."""
    return path_ratios(result["paths"])


def _fmt(x: float | None) -> str:
    return "     -" if x is None else f"{x:6.3f}"


def print_table(results: list[dict[str, Any]]) -> None:
    print("\nratio bypass / stack.  frame rate: >1 = bypass faster; "
          "latency (median UDP RTT): <1 = bypass faster")
    print("NOTE: TCG (emulated CPU) distorts absolute figures, and the ratios too: "
          "indicative only; the bypass forwards in Python.")
    head = (f"{'kernel':12} | {'stack fps':>10} {'stack p50 us':>12} | {'bypass fps':>10} "
            f"{'bypass p50':>10} | {'fps ratio':>9} {'lat ratio':>9}")
    print(head)
    print("-" * len(head))
    for result in results:
        rat = ratios(result)
        cells = []
        for kind in ("stack", "bypass"):
            point = result["paths"].get(kind, {})
            fps = point["blast"]["fps"] if "blast" in point else float("nan")
            p50 = point["rr"]["median_us"] if "rr" in point else float("nan")
            cells.append(f"{fps:10.0f} {p50:12.0f}" if kind == "stack"
                         else f"{fps:10.0f} {p50:10.0f}")
        print(f"{result['kernel']:12} | {cells[0]} | {cells[1]} | "
              f"{_fmt(rat['fps']):>9} {_fmt(rat['latency']):>9}")
    print("\nabsolute figures (datagrams sent/received, fps, RR median / p99 us):")
    for result in results:
        for kind in PATHS:
            point = result["paths"].get(kind, {})
            if "blast" in point and "rr" in point:
                b, r = point["blast"], point["rr"]
                print(f"  {result['kernel']:12} {kind:7} {b['sent']:8d}/{b['received']:<8d} "
                      f"{b['fps']:9.0f} fps  {r['median_us']:8.0f} / {r['p99_us']:8.0f} us "
                      f"({r['round_trips']} round trips)")
            else:
                why = point.get("skipped") or point.get("error") or "not measured"
                print(f"  {result['kernel']:12} {kind:7} {why}")


def write_svg(results: list[dict[str, Any]], path: Path) -> None:
    """Two panels (frame rate, median RTT): per kernel the bypass / stack ratio; dashed
    line at 1."""
    panels: dict[str, dict[str, dict[str, float | None]]] = {
        "frames/s bypass / stack": {}, "median UDP RTT bypass / stack": {}}
    for result in results:
        rat = ratios(result)
        for title, metric in zip(panels, ("fps", "latency"), strict=True):
            panels[title][result["kernel"]] = {"bypass": rat[metric]}
    ratio_bars(path, panels, SERIES)


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--duration", type=float, default=1.0,
                    help="seconds per measurement (blast and RR each; TCG is slow)")
    ap.add_argument("--size", type=int, default=SIZE, help="UDP payload bytes")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds per path after a warm-up, path order rotated; median kept")
    ap.add_argument("--mode", choices=("skb", "drv"), default="skb",
                    help="XDP mode of the steering program on the veth")
    args = ap.parse_args(argv)
    request = {"duration": args.duration, "paths": list(PATHS), "size": args.size,
               "rounds": args.rounds, "mode": args.mode}
    return drive("afxdp-bench", args, request,
                 lambda spec, out_dir: run_kernel(spec, out_dir, args.duration, args.rounds,
                                                 args.accel, args.boot_timeout),
                 ratios, write_svg, print_table)


if __name__ == "__main__":
    sys.exit(main())
