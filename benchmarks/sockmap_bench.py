"""Sockmap redirect vs plain TCP over loopback, per kernel: throughput and request/response
latency for sk_msg-to-ingress and sk_skb-to-ingress redirects (harness/bench_sockmap.py
measures inside the guest).

    .venv/bin/python -m benchmarks.sockmap_bench --kernel debian:6.12 --kernel debian:7.3

Boots each kernel itself (harness.kernels.resolve + harness.accel.choose + harness.vm.GuestVM)
and runs benchmarks/guest_sockmap_bench.py::test_sockmap_bench in it, one VM at a time. Prints
the ratio table (redirect / TCP: throughput > 1 and latency < 1 mean the redirect wins) and
writes results/sockmap-bench-TIMESTAMP/{sockmap_bench.json, sockmap_bench.svg}. The plot is
drawn by the small SVG writer below (no matplotlib: it is not installed and not needed).

Under TCG every absolute number is an emulated one; the ratios are what to read.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.guest_driver import run_kernels, run_node
from harness.bench_sockmap import PATHS, SIZES
from harness.bpfobj import cache_root, object_path

NODE = "benchmarks/guest_sockmap_bench.py::test_sockmap_bench"
MARKER = "SOCKMAP_BENCH_JSON "
REDIRECTS = tuple(p for p in PATHS if p != "tcp")


def run_kernel(spec: str, out_dir: Path, sizes: list[int], duration: float,
               accel: str, boot_timeout: float) -> dict[str, Any]:
    budget = 120 + len(PATHS) * len(sizes) * (2 * duration + 20)
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


def _human(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


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
            line = f"{result['kernel']:10} {_human(size):>8} | {mbs:9.1f} {rtt:10.0f} |"
            for path in REDIRECTS:
                point = rat[path].get(key, {})
                line += f" {_fmt(point.get('throughput')):>16} {_fmt(point.get('latency')):>16} |"
            print(line)
        errors = {f"{p}/{s}": v["error"] for p, per in result["paths"].items()
                  for s, v in per.items() if "error" in v}
        for where, err in errors.items():
            print(f"  {result['kernel']} {where}: {err}")


# --------------------------------------------------------------------------- SVG

_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def write_svg(results: list[dict[str, Any]], path: Path) -> None:
    """Two panels (throughput ratio, latency ratio) vs message size (log x, log y), one
    line per kernel x redirect path, a dashed line at 1 (= TCP)."""
    w, h, pad, gap = 460, 320, 55, 40
    width = 2 * w + gap + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + 90}" '
             'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{h + 90}" fill="white"/>']
    series: list[tuple[str, str, list[tuple[int, float]], list[tuple[int, float]]]] = []
    for i, result in enumerate(results):
        rat = ratios(result)
        for j, rpath in enumerate(REDIRECTS):
            colour = _COLOURS[(2 * i + j) % len(_COLOURS)]
            thr = [(int(s), v["throughput"]) for s, v in rat[rpath].items()
                   if v["throughput"]]
            lat = [(int(s), v["latency"]) for s, v in rat[rpath].items() if v["latency"]]
            series.append((f"{result['kernel']} {rpath}", colour,
                           [(s, float(v)) for s, v in thr], [(s, float(v)) for s, v in lat]))
    sizes = sorted({int(s) for r in results for s in r["sizes"]}) or [64, 262144]
    x0, x1 = math.log2(sizes[0]), math.log2(sizes[-1])
    for panel, (title, idx) in enumerate((("throughput redirect / TCP", 2),
                                          ("median RTT redirect / TCP", 3))):
        ox = 10 + panel * (w + gap)
        values = [v for s in series for _, v in (s[2] if idx == 2 else s[3])] + [1.0]
        lo = min(values) / 1.3
        hi = max(values) * 1.3
        y0, y1 = math.log10(lo), math.log10(hi)

        def px(size: float, ox: int = ox) -> float:
            return ox + pad + (math.log2(size) - x0) / max(x1 - x0, 1e-9) * (w - pad - 10)

        def py(v: float, y0: float = y0, y1: float = y1) -> float:
            return 20 + (1 - (math.log10(v) - y0) / max(y1 - y0, 1e-9)) * (h - 50)

        parts.append(f'<text x="{ox + w / 2}" y="14" text-anchor="middle" '
                     f'font-weight="bold">{title}</text>')
        parts.append(f'<rect x="{ox + pad}" y="20" width="{w - pad - 10}" height="{h - 50}" '
                     'fill="none" stroke="#444"/>')
        for size in sizes:
            parts.append(f'<text x="{px(size):.1f}" y="{h - 15}" text-anchor="middle">'
                         f'{_human(size)}</text>')
        for tick in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50):
            if lo <= tick <= hi:
                parts.append(f'<text x="{ox + pad - 5}" y="{py(tick) + 4:.1f}" '
                             f'text-anchor="end">{tick:g}</text>')
                parts.append(f'<line x1="{ox + pad}" x2="{ox + w - 10}" y1="{py(tick):.1f}" '
                             f'y2="{py(tick):.1f}" stroke="#ddd"/>')
        parts.append(f'<line x1="{ox + pad}" x2="{ox + w - 10}" y1="{py(1):.1f}" '
                     f'y2="{py(1):.1f}" stroke="#000" stroke-dasharray="4 3"/>')
        for _label, colour, thr_pts, lat_pts in series:
            points = thr_pts if idx == 2 else lat_pts
            if not points:
                continue
            coords = " ".join(f"{px(s):.1f},{py(v):.1f}" for s, v in sorted(points))
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" '
                         'stroke-width="2"/>')
            for s, v in points:
                parts.append(f'<circle cx="{px(s):.1f}" cy="{py(v):.1f}" r="3" '
                             f'fill="{colour}"/>')
    for k, (label, colour, _thr, _lat) in enumerate(series):
        x = 20 + (k % 3) * 300
        y = h + 20 + (k // 3) * 16
        parts.append(f'<rect x="{x}" y="{y - 9}" width="12" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 18}" y="{y}">{label}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernel", action="append", required=True,
                    help="kernel spec (debian:6.12, an image path, ...); repeat for more")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)),
                    help="message sizes in bytes, comma separated")
    ap.add_argument("--duration", type=float, default=1.0,
                    help="seconds per measurement point (TCG is slow: keep it short)")
    ap.add_argument("--accel", default="auto")
    ap.add_argument("--boot-timeout", type=float, default=900.0,
                    help="seconds to wait for the guest agent (a loaded host boots slowly)")
    ap.add_argument("--out", type=Path, default=None, help="output folder")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    out_dir = args.out or Path("results") / f"sockmap-bench-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    object_path("sockmap_bench")  # built on the host: the guest only reads the cache
    request = cache_root() / "sockmap-bench" / "request.json"
    request.parent.mkdir(parents=True, exist_ok=True)
    request.write_text(json.dumps({"sizes": sizes, "duration": args.duration,
                                   "paths": list(PATHS)}))
    results, failed = run_kernels(
        args.kernel, lambda spec: run_kernel(spec, out_dir, sizes, args.duration, args.accel,
                                      args.boot_timeout))
    if not results:
        return 1
    for result in results:
        result["ratios"] = ratios(result)
    (out_dir / "sockmap_bench.json").write_text(json.dumps(results, indent=1))
    write_svg(results, out_dir / "sockmap_bench.svg")
    print_table(results)
    print(f"\nwrote {out_dir / 'sockmap_bench.json'} and {out_dir / 'sockmap_bench.svg'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
