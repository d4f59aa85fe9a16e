"""The whole matrix: wall time per kernel and per suite, and two runs compared case by case.

    python -m benchmarks.matrix_bench run [KMATRIX RUN ARGS...]   # kmatrix run, then report
    python -m benchmarks.matrix_bench report RESULTS_DIR
    python -m benchmarks.matrix_bench compare BEFORE_DIR AFTER_DIR

`run` times `kmatrix run` (README command 1 when given no arguments) end to end and prints
the report of what it wrote. `report` reads a results folder's results.json: per kernel its
boots and the host seconds of its cases (a kernel's first case includes its boot), per
suite the case count and seconds (host and in the guest). `compare` lists every (case,
kernel) whose verdict differs between two runs, the cases only one run has (both from
harness.results.diff, as `kmatrix diff`), and the time ratio per kernel and suite
(after / before).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from harness.results.diff import diff_runs
from harness.results.model import RunResults

ROOT = Path(__file__).resolve().parent.parent


def load(results_dir: Path) -> dict[str, Any]:
    return dict(json.loads((results_dir / "results.json").read_text()))


def per_kernel_and_suite(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, float]]:
    """(kernel, suite) -> {"cases", "host_s", "guest_s", "cpu_s"}: cpu_s is the guest CPU
    its case processes and the agent spent on them (0 for results without it)."""
    out: dict[tuple[str, str], dict[str, float]] = defaultdict(
        lambda: {"cases": 0.0, "host_s": 0.0, "guest_s": 0.0, "cpu_s": 0.0})
    for case in data["cases"]:
        row = out[(case["kernel"], case["feature"])]
        row["cases"] += 1
        row["host_s"] += float(case["duration"])
        row["guest_s"] += float(case["guest_duration"])
        timing = case.get("timing") or {}
        row["cpu_s"] += float(timing.get("case_cpu_s", 0.0)) + float(
            timing.get("agent_cpu_s", 0.0))
    return out


def report(data: dict[str, Any], wall: float | None = None) -> str:
    rows = per_kernel_and_suite(data)
    lines = []
    if wall is not None:
        lines.append(f"wall time of the run: {wall:.0f}s")
    lines.append(f"{'kernel':<14} {'boots':>22} {'cases':>6} {'host s':>8}")
    for label, info in data["kernels"].items():
        host = sum(r["host_s"] for (k, _), r in rows.items() if k == label)
        count = sum(int(r["cases"]) for (k, _), r in rows.items() if k == label)
        boots = ", ".join(f"{s:.0f}s" for s in info.get("boots", {}).values()) or "-"
        lines.append(f"{label:<14} {boots:>22} {count:>6} {host:>8.0f}")
    lines.append("")
    lines.append(f"{'kernel':<14} {'suite':<20} {'cases':>6} {'host s':>8} {'guest s':>8} "
                 f"{'s/case':>7} {'CPU s':>7}")
    for (label, suite), r in sorted(rows.items()):
        lines.append(f"{label:<14} {suite:<20} {int(r['cases']):>6} {r['host_s']:>8.0f} "
                     f"{r['guest_s']:>8.0f} {r['host_s'] / max(r['cases'], 1):>7.2f} "
                     f"{r['cpu_s']:>7.0f}")
    lines.append(f"{'all':<35} {sum(int(r['cases']) for r in rows.values()):>6} "
                 f"{sum(r['host_s'] for r in rows.values()):>8.0f} "
                 f"{sum(r['guest_s'] for r in rows.values()):>8.0f} {'':>7} "
                 f"{sum(r['cpu_s'] for r in rows.values()):>7.0f}")
    statuses = Counter(c["status"] for c in data["cases"])
    lines.append("")
    lines.append("verdicts: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
    return "\n".join(lines)


def only_kernels(data: dict[str, Any], labels: list[str] | None) -> dict[str, Any]:
    """`data` restricted to the kernels `labels` (all when None)."""
    if not labels:
        return data
    return {"kernels": {k: v for k, v in data["kernels"].items() if k in labels},
            "cases": [c for c in data["cases"] if c["kernel"] in labels]}


def compare(before: dict[str, Any], after: dict[str, Any]) -> str:
    d = diff_runs(RunResults.from_json(before), RunResults.from_json(after))
    changed = sorted((c.nodeid, c.transition) for c in d.changes())
    both = len(changed) + sum(k.unchanged for k in d.kernels)
    only_b = sorted(c.nodeid for k in d.kernels for c in k.removed)
    only_a = sorted(c.nodeid for k in d.kernels for c in k.added)
    kinds = Counter(kind for _, kind in changed)
    lines = [f"cases in both runs: {both}; same verdict: {both - len(changed)}; "
             f"changed: {len(changed)}"]
    lines += [f"  {n} x {kind}" for kind, n in kinds.most_common()]
    lines += [f"  {node}: {kind}" for node, kind in changed[:200]]
    if only_b:
        lines.append(f"only in the first run: {len(only_b)}")
        lines += [f"  {n}" for n in only_b[:50]]
    if only_a:
        lines.append(f"only in the second run: {len(only_a)}")
        lines += [f"  {n}" for n in only_a[:50]]
    rb, ra = per_kernel_and_suite(before), per_kernel_and_suite(after)
    lines.append("")
    lines.append(f"{'kernel':<14} {'suite':<20} {'before s':>9} {'after s':>9} {'ratio':>6} "
                 f"{'CPU before':>10} {'CPU after':>9}")

    def row(name: str, b: dict[str, float], a: dict[str, float]) -> str:
        hb, ha = b.get("host_s", 0.0), a.get("host_s", 0.0)
        ratio = f"{ha / hb:6.2f}" if hb else "     -"
        cpu = [f"{r['cpu_s']:.0f}" if r.get("cpu_s") else "-" for r in (b, a)]
        return f"{name:<35} {hb:>9.0f} {ha:>9.0f} {ratio} {cpu[0]:>10} {cpu[1]:>9}"

    for key in sorted(rb.keys() | ra.keys()):
        lines.append(row(f"{key[0]:<14} {key[1]}", rb.get(key, {}), ra.get(key, {})))
    total = {side: {k: sum(r[k] for r in rows.values()) for k in ("host_s", "cpu_s")}
             for side, rows in (("b", rb), ("a", ra))}
    lines.append(row("all", total["b"], total["a"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.matrix_bench",
                                 description=__doc__.split("\n\n")[0] if __doc__ else "")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run kmatrix run (extra arguments go to it), then report")
    r.add_argument("--results-dir", type=Path,
                   default=ROOT / "results" / f"matrix-bench-{time.strftime('%Y%m%d-%H%M%S')}")
    sub.add_parser("report").add_argument("results", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--kernel", action="append", help="compare only these kernel labels")
    args, rest = ap.parse_known_args(argv)
    if args.cmd == "report":
        print(report(load(args.results)))
        return 0
    if args.cmd == "compare":
        print(compare(only_kernels(load(args.before), args.kernel),
                      only_kernels(load(args.after), args.kernel)))
        return 0
    t0 = time.monotonic()
    argv_run = [sys.executable, "-m", "harness", "run", "--results-dir",
                str(args.results_dir), *rest]
    print("running: " + " ".join(argv_run), flush=True)
    code = subprocess.run(argv_run, cwd=ROOT, check=False).returncode
    wall = time.monotonic() - t0
    if (args.results_dir / "results.json").is_file():
        print(report(load(args.results_dir), wall))
    return code


if __name__ == "__main__":
    sys.exit(main())
