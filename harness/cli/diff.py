"""`kmatrix diff RUN_A RUN_B`: what changed from one run's results folder to another's, as
Markdown on stdout (harness.results.diff). Exits 0 when run B has no new failure, 1 when it
has (a case failing, crashing or erroring in B that did not in A), 4 when a folder cannot
be read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ExitCode, UserError
from ..results.model import RunResults


def read_results(path: Path) -> RunResults:
    """A results folder's (or a results.json file's) RunResults; UserError otherwise."""
    file = path / "results.json" if path.is_dir() else path
    try:
        return RunResults.from_json(json.loads(file.read_text()))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{path}: not a readable results folder: {exc}",
                        hint="give two folders written by `kmatrix run` (or `kmatrix "
                             "merge`), each with its results.json") from exc


def _cmd_diff(args: argparse.Namespace, rest: list[str]) -> int:
    from ..results.diff import diff_markdown, diff_runs

    a, b = read_results(args.run_a), read_results(args.run_b)
    d = diff_runs(a, b, str(args.run_a), str(args.run_b))
    print(diff_markdown(d), end="")
    return int(ExitCode.TESTS_FAILED if d.new_failures else ExitCode.OK)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "diff", help="what changed between two runs' results (Markdown)",
        description="Compare two results folders kernel by kernel (matched by label): new "
        "failures, fixed cases, newly supported and newly unsupported features, cases added "
        "and removed. Exit status 0 when RUN_B has no new failure, 1 when it has.")
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="the earlier results folder")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="the later results folder")
    p.set_defaults(handler=_cmd_diff)
