"""A per-packet counter table updated by XDP in a BPF arena vs in an array map vs in a hash
map, and read from user space by mmap vs by bpf_map_lookup_elem, per kernel
(harness/guest/bench/arena.py measures inside the guest).

    .venv/bin/python -m benchmarks.arena_bench --kernel debian:6.12 --kernel debian:7.3

Boots each kernel itself (benchmarks.guest_driver: resolve, choose the accelerator, GuestVM)
and runs benchmarks/guest_arena_bench.py::test_arena_bench in it, one VM per kernel. Prints
the ratio tables (update: ns per packet of each table / the array map's, also net of what
BPF_PROG_TEST_RUN itself costs; read: ns per full-table read / the array read with
bpf_map_lookup_elem; < 1 is faster) and writes results/arena-bench-TIMESTAMP/
{arena_bench.json, arena_bench.svg} (bars per kernel, benchmarks/svg_plot.py).

A kernel without arenas reports the arena variants skipped with the probe's answer. Every
table must end exactly at the number of updates made; a kernel where one did not fails the
command (exit 1) and its row says which. Under TCG every absolute figure is an emulated one
and even the ratios are distorted: read them as rough relative figures only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from benchmarks.guest_driver import bench_parser, drive, run_node
from benchmarks.svg_plot import ratio_bars
from harness.guest.bench.arena import (
    BASE_READ,
    BASE_UPDATE,
    DEFAULT_READS,
    DEFAULT_REPEAT,
    DEFAULT_ROUNDS,
    NSLOTS,
    READS,
    UPDATES,
)

NODE = "benchmarks/guest_arena_bench.py::test_arena_bench"
MARKER = "ARENA_BENCH_JSON "
#: what is compared against the array map (update) and its lookup reader (read)
UPDATE_OTHERS = tuple(u for u in UPDATES if u not in (BASE_UPDATE, "none"))
READ_OTHERS = tuple(r for r in READS if r != BASE_READ)
LABELS = (*UPDATE_OTHERS, *READ_OTHERS)


def run_kernel(spec: str, out_dir: Path, repeat: int, reads: int, rounds: int, accel: str,
               boot_timeout: float) -> dict[str, Any]:
    # generous for TCG: ~20 us per test run, ~100 us per lookup syscall from Python
    per_round = len(UPDATES) * repeat * 20e-6 + len(READS) * reads * NSLOTS * 100e-6
    budget = 240 + (rounds + 1) * per_round
    return run_node(spec, NODE, MARKER, out_dir, budget, accel, boot_timeout)


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0 or num <= 0:
        return None
    return num / den


def ratios(result: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """{"update": {table: ns / array's}, "update_net": {table: (ns - none) / (array -
    none)}, "read": {reader: ns / array lookups'}}; None where a figure is missing or the
    net cost is not above the noise (<= 0)."""
    upd: dict[str, float | None] = result.get("update_ns", {})
    rd: dict[str, float | None] = result.get("read_ns", {})
    base, none = upd.get(BASE_UPDATE), upd.get("none")

    def net(name: str) -> float | None:
        value = upd.get(name)
        if value is None or base is None or none is None:
            return None
        return _ratio(value - none, base - none)

    return {"update": {u: _ratio(upd.get(u), base) for u in UPDATE_OTHERS},
            "update_net": {u: net(u) for u in UPDATE_OTHERS},
            "read": {r: _ratio(rd.get(r), rd.get(BASE_READ)) for r in READ_OTHERS}}


def _fmt(x: float | None, width: int = 7) -> str:
    """A ratio to 3 significant digits (reads by mmap are thousands of times faster)."""
    return f"{'-':>{width}}" if x is None else f"{x:{width}.3g}"


def _ns(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f} ns"


def table_lines(results: list[dict[str, Any]]) -> list[str]:
    """The printed report: ratio table, absolute figures, skips and failed checks."""
    lines = ["ratio table / array map (ns per packet, XDP BPF_PROG_TEST_RUN; net: minus the "
             "run's own cost) and reader / array bpf_map_lookup_elem (ns per full-table "
             "read); < 1 = faster", "NOTE: TCG (emulated CPU) distorts absolute figures "
             "and ratios: indicative only."]
    head = f"{'kernel':12} |" + "".join(f" {'upd ' + u:>10} {'net ' + u:>10} |"
                                        for u in UPDATE_OTHERS)
    head += "".join(f" {'read ' + r:>17}" for r in READ_OTHERS)
    lines += [head, "-" * len(head)]
    for result in results:
        rat = ratios(result)
        line = f"{result['kernel']:12} |" + "".join(
            f" {_fmt(rat['update'][u], 10)} {_fmt(rat['update_net'][u], 10)} |"
            for u in UPDATE_OTHERS)
        line += "".join(f" {_fmt(rat['read'][r], 17)}" for r in READ_OTHERS)
        lines.append(line)
    lines.append("\nabsolute figures (median round):")
    for result in results:
        upd, rd = result.get("update_ns", {}), result.get("read_ns", {})
        lines.append(f"  {result['kernel']:12} update " + ", ".join(
            f"{u} {_ns(upd.get(u))}" for u in UPDATES) + f"  (per run of {result.get('repeat')})")
        lines.append(f"  {result['kernel']:12} read   " + ", ".join(
            f"{r} {_ns(rd.get(r))}" for r in READS) + f"  ({NSLOTS} slots)")
        for name, why in result.get("skipped", {}).items():
            lines.append(f"  {result['kernel']:12} {name} skipped: {why.splitlines()[0]}")
        for name, problem in result.get("checks", {}).items():
            lines.append(f"  {result['kernel']:12} CHECK FAILED {name}: {problem}")
    return lines


def print_table(results: list[dict[str, Any]]) -> None:
    print("\n" + "\n".join(table_lines(results)))


def write_svg(results: list[dict[str, Any]], path: Path) -> None:
    """Three panels (update, net update, read), a group of bars per kernel, one bar per
    table or reader: its ratio to the array map; dashed line at 1."""
    panels: dict[str, dict[str, dict[str, float | None]]] = {
        "XDP update ns / array map": {}, "net update / array map": {},
        "table read / array lookups": {}}
    for result in results:
        rat = ratios(result)
        for title, key in zip(panels, ("update", "update_net", "read"), strict=True):
            panels[title][result["kernel"]] = dict(rat[key])
    ratio_bars(path, panels, LABELS)


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--repeat", type=int, default=DEFAULT_REPEAT,
                    help="BPF_PROG_TEST_RUN runs per update measurement")
    ap.add_argument("--reads", type=int, default=DEFAULT_READS,
                    help="full-table reads per read measurement")
    ap.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                    help="rounds after a warm-up, order rotated; the median is kept")
    args = ap.parse_args(argv)
    request = {"repeat": args.repeat, "reads": args.reads, "rounds": args.rounds}
    return drive("arena-bench", args, request,
                 lambda spec, out_dir: run_kernel(spec, out_dir, args.repeat, args.reads,
                                                 args.rounds, args.accel, args.boot_timeout),
                 ratios, write_svg, print_table)


if __name__ == "__main__":
    sys.exit(main())
