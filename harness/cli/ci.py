"""`kmatrix ci github|gitlab [-o FILE] [--shards N] [--matrix default|ci]`: the CI workflow
of the project's kernel matrix (harness.ci): a job per `kmatrix run --shard I/N`, the
kernel cache, the results as artifacts, and a merge job that publishes the merged report
and fails on failures. Printed on stdout unless -o is given."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_ci(args: argparse.Namespace) -> int:
    from ..ci import ci_plan, render

    text = render(args.engine, ci_plan(args.shards, args.matrix))
    if args.output is None:
        sys.stdout.write(text)
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"kmatrix: wrote {args.output}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ci = sub.add_parser(
        "ci", help="write a GitHub Actions or GitLab CI workflow for the kernel matrix",
        description="Write a CI workflow for the project's kernel matrix (images/matrix.toml): "
                    "one job per shard (`kmatrix run --shard I/N`), kernels cached across runs, "
                    "results uploaded as artifacts, then a merge job (`kmatrix merge`) that "
                    "publishes the merged report and fails on failures. GitHub: put it in "
                    ".github/workflows/; GitLab: it is a .gitlab-ci.yml.")
    ci.add_argument("engine", choices=("github", "gitlab"), help="the CI engine")
    ci.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                    help="where to write it (default: stdout)")
    ci.add_argument("--shards", type=int, default=3, metavar="N",
                    help="how many shard jobs (default %(default)s)")
    ci.add_argument("--matrix", choices=("default", "ci"), default="default",
                    help="which matrix of images/matrix.toml the shards run (as `kmatrix run "
                         "--matrix`)")
    ci.set_defaults(handler=lambda args, rest: _cmd_ci(args))
