"""Sockmap redirect vs plain TCP over loopback, per kernel: throughput and request/response
latency for sk_msg-to-ingress and sk_skb-to-ingress redirects (harness/bench_sockmap.py
measures inside the guest).

    .venv/bin/python -m benchmarks.sockmap_bench --kernel debian:6.12 --kernel debian:7.3

Boots each kernel itself (benchmarks.guest_driver: resolve, choose the accelerator, GuestVM)
and runs benchmarks/guest_sockmap_bench.py::test_sockmap_bench in it, one VM at a time. Prints
the ratio table (redirect / TCP: throughput > 1 and latency < 1 mean the redirect wins) and
writes results/sockmap-bench-TIMESTAMP/{sockmap_bench.json, sockmap_bench.svg} (drawn by
benchmarks/svg_plot.py).

Under TCG every absolute number is an emulated one; the ratios are what to read.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from benchmarks.guest_driver import bench_parser, drive, run_node
from benchmarks.svg_plot import COLOURS, Series, human, ratio_lines
from harness.guest.bench.sockmap import PATHS, SIZES

NODE = "benchmarks/guest_sockmap_bench.py::test_sockmap_bench"
MARKER = "SOCKMAP_BENCH_JSON "
REDIRECTS = tuple(p for p in PATHS if p != "tcp")


def run_kernel(spec: str, out_dir: Path, sizes: list[int], duration: float,
               accel: str, boot_timeout: float) -> dict[str, Any]:
    budget = 120 + len(PATHS) * len(sizes) * (2 * duration + 40)  # + the warm-up pass
    return run_node(spec, NODE, MARKER, out_dir, budget, accel, boot_timeout)


def ratios(result: dict[str, Any]) -> dict[str, dict[str, dict[str, float | None]]]:
    """{redirect path: {size: {"throughput": r/tcp, "latency": r/tcp}}} (None if missing)."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    base = result["paths"]["tcp"]
    for path in REDIRECTS:
        per: dict[str, dict[str, float | None]] = {}
        for size, point in result["paths"].get(path, {}).items():
            ref = base.get(size, {})
            thr = lat = None
            if "throughput" in point and "throughput" in ref:
                thr = point["throughput"]["bps"] / ref["throughput"]["bps"]
            if "latency" in point and "latency" in ref:
                lat = point["latency"]["median_us"] / ref["latency"]["median_us"]
            per[size] = {"throughput": thr, "latency": lat}
        out[path] = per
    return out


def _fmt(x: float | None) -> str:
    return "   err" if x is None else f"{x:6.2f}"


def print_table(results: list[dict[str, Any]]) -> None:
    print("\nratio redirect / TCP  (throughput: >1 = redirect faster; "
          "latency (median RTT): <1 = redirect faster)")
    head = f"{'kernel':10} {'size':>8} | {'TCP MB/s':>9} {'TCP RTT us':>10} |"
    for path in REDIRECTS:
        head += f" {path + ' thr':>16} {path + ' lat':>16} |"
    print(head)
    print("-" * len(head))
    for result in results:
        rat = ratios(result)
        for size in result["sizes"]:
            key = str(size)
            tcp = result["paths"]["tcp"].get(key, {})
            mbs = tcp["throughput"]["bps"] / 1e6 if "throughput" in tcp else float("nan")
            rtt = tcp["latency"]["median_us"] if "latency" in tcp else float("nan")
            line = f"{result['kernel']:10} {human(size):>8} | {mbs:9.1f} {rtt:10.0f} |"
            for path in REDIRECTS:
                point = rat[path].get(key, {})
                line += f" {_fmt(point.get('throughput')):>16} {_fmt(point.get('latency')):>16} |"
            print(line)
        errors = {f"{p}/{s}": v["error"] for p, per in result["paths"].items()
                  for s, v in per.items() if "error" in v}
        for where, err in errors.items():
            print(f"  {result['kernel']} {where}: {err}")


# --------------------------------------------------------------------------- SVG

_TITLES = ("throughput redirect / TCP", "median RTT redirect / TCP")


def write_svg(results: list[dict[str, Any]], path: Path) -> None:
    """Two panels (throughput ratio, latency ratio) vs message size (log x, log y), one
    line per kernel x redirect path, a dashed line at 1 (= TCP)."""
    series: list[Series] = []
    for i, result in enumerate(results):
        rat = ratios(result)
        for j, rpath in enumerate(REDIRECTS):
            s = Series(f"{result['kernel']} {rpath}", COLOURS[(2 * i + j) % len(COLOURS)])
            for title, metric in zip(_TITLES, ("throughput", "latency"), strict=True):
                s.points[title] = [(int(size), float(value))
                                   for size, v in rat[rpath].items()
                                   if (value := v[metric]) is not None and value]
            series.append(s)
    sizes = sorted({int(s) for r in results for s in r["sizes"]})
    ratio_lines(path, _TITLES, series, sizes)


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)),
                    help="message sizes in bytes, comma separated")
    ap.add_argument("--duration", type=float, default=1.0,
                    help="seconds per measurement point (TCG is slow: keep it short)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    request = {"sizes": sizes, "duration": args.duration, "paths": list(PATHS)}
    return drive("sockmap-bench", args, request,
                 lambda spec, out_dir: run_kernel(spec, out_dir, sizes, args.duration, args.accel,
                                                 args.boot_timeout),
                 ratios, write_svg, print_table)


if __name__ == "__main__":
    sys.exit(main())
