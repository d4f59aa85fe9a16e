"""`kmatrix export kcidb RUN_DIR [-o FILE]`: a finished run's results in another format.

KCIDB (harness/results/writers/kcidb.py) is the one format so far. The run is read back
from its results.json; a results.json of an older kmatrix (fewer fields) or a newer one
(fields this version does not know) still loads: missing fields keep their defaults,
unknown ones are left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..results.model import CaseResult, KernelInfo, RunRecord, RunResults

#: the default results folder name of `kmatrix run` (results/<date-time>): the run's start
RUN_DIR_STAMP = "%Y%m%d-%H%M%S"


def _known(cls: type[Any], data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def load_results(run_dir: Path) -> RunResults:
    """RUN_DIR/results.json (or that file itself) as the result model, tolerantly."""
    path = run_dir / "results.json" if run_dir.is_dir() else run_dir
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read the results of a run from {path}: {exc}",
                        hint="give a results folder written by `kmatrix run`") from exc
    known: dict[str, Any] = {
        "kernels": {label: _known(KernelInfo, info)
                    for label, info in data.get("kernels", {}).items()},
        "cases": [_known(CaseResult, case) for case in data.get("cases", [])],
    }
    if data.get("run"):
        known["run"] = _known(RunRecord, data["run"])
    try:
        return RunResults.from_json(known)
    except (TypeError, KeyError, ValueError) as exc:
        raise UserError(f"{path}: not the results of a kmatrix run: {exc!r}") from exc


def run_identity(run_dir: Path) -> tuple[str, datetime]:
    """(run id, start time) of a results folder: the id is the folder's name and a hash of
    its results.json (the same run exported twice gets the same test ids, two runs never
    share them); the start is the folder's name when it is kmatrix's default
    results/<date-time>, else when results.json was last written."""
    path = run_dir / "results.json" if run_dir.is_dir() else run_dir
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    folder = path.parent.name
    try:
        start = datetime.strptime(folder, RUN_DIR_STAMP).astimezone()
    except ValueError:
        start = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return f"{folder}-{digest}", start


def _cmd_kcidb(args: argparse.Namespace) -> int:
    from ..results.writers.kcidb import ORIGIN, kcidb_report

    if args.origin is not None and not re.fullmatch(r"[a-z0-9_]+", args.origin):
        raise UserError(f"--origin {args.origin!r}: KCIDB origins are [a-z0-9_]+")
    results = load_results(args.run_dir)
    run_id, start = run_identity(args.run_dir)
    if args.start_time:
        try:
            start = datetime.fromisoformat(args.start_time)
        except ValueError as exc:
            raise UserError(f"--start-time {args.start_time!r}: {exc}",
                            hint="e.g. 2026-11-30T14:05:00+00:00") from exc
        if start.tzinfo is None:
            start = start.astimezone()
    report = kcidb_report(results, run_id=args.run_id or run_id, start_time=start,
                          origin=args.origin or ORIGIN)
    text = json.dumps(report, indent=1) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    out = args.output or (args.run_dir if args.run_dir.is_dir() else args.run_dir.parent) \
        / "kcidb.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"kmatrix: {len(report['tests'])} tests, {len(report['builds'])} builds, "
          f"{len(report['checkouts'])} checkouts -> {out}", file=sys.stderr)
    return 0


def _output(value: str) -> Path | str:
    return value if value == "-" else Path(value)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = sub.add_parser(
        "export", help="write a run's results in another format (kcidb)",
        description="Write the results of a finished run (a folder with results.json) in "
                    "another format.")
    formats = export.add_subparsers(dest="format", metavar="FORMAT", required=True)
    kcidb = formats.add_parser(
        "kcidb", help="KCIDB JSON: checkouts, builds, tests",
        description="KCIDB I/O JSON (schema 5.3) of a run: a checkout per kernel source, a "
                    "build per kernel artifact, a test per case and kernel.")
    kcidb.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                       help="results folder of a run (or its results.json)")
    kcidb.add_argument("-o", "--output", type=_output, default=None, metavar="FILE",
                       help="where to write (default RUN_DIR/kcidb.json; - for stdout)")
    kcidb.add_argument("--origin", default=None,
                       help="KCIDB origin: the submitting CI system's name (default kmatrix)")
    kcidb.add_argument("--run-id", default=None,
                       help="what makes this run's test ids unique (default: the folder "
                            "name and a hash of results.json)")
    kcidb.add_argument("--start-time", default=None, metavar="ISO8601",
                       help="the run's start (default: from the folder name "
                            "results/<YYYYmmdd-HHMMSS>, else results.json's mtime)")
    kcidb.set_defaults(handler=lambda args, rest: _cmd_kcidb(args))
