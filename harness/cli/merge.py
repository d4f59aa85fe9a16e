"""`kmatrix merge DIR... [-o OUT]`: the results folders of a sharded run's shards -> one
results folder, as the unsharded run would have written it (harness.results.merge).

Exits like the unsharded run would have (0, 1 failing cases, 5 nothing ran, 6 a kernel did
not boot), so a CI merge job can fail on the suite's failures; 4 when it refuses the shards
(different runs, a shard twice, overlapping or missing shards), naming them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..paths import PROJECT_ROOT


def _cmd_merge(args: argparse.Namespace, rest: list[str]) -> int:
    from ..results.merge import exit_code, load_shard, merge

    dirs: list[Path] = args.dirs
    out: Path | None = args.output
    if out is None:
        run = load_shard(dirs[0]).run
        out = PROJECT_ROOT / "results" / f"merged-{run.id}"
    merged, paths = merge(dirs, out)
    for warning in merged.warnings:
        print(f"kmatrix: warning: {warning}", file=sys.stderr)
    results = merged.results
    counts = results.counts()
    print(f"kmatrix: merged {len(dirs)} shard(s) of run {results.run.id if results.run else '?'}"
          f": {len(results.cases)} cases ("
          + ", ".join(f"{n} {s.symbol}" for s, n in sorted(counts.items())) + ")")
    for name, path in paths.items():
        print(f"{name}: {path}")
    return int(exit_code(results))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "merge", help="merge the results folders of `kmatrix run --shard I/N` into one",
        description="Merge the shards' results folders of one sharded run into one results "
        "folder (junit.xml, matrix.md, results.json, observed.md, console logs) as the "
        "unsharded run would have written it. Refuses (exit 4) shards of different runs, a "
        "shard given twice, overlapping shards and a missing shard; otherwise exits as the "
        "unsharded run would have (0, 1 on failing cases, 6 when a kernel did not boot).")
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                   help="a shard's results folder (every shard of the run, each once)")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="OUT",
                   help="the merged results folder (default results/merged-<run id>)")
    p.set_defaults(handler=_cmd_merge)
