"""`kmatrix run`: the suite over a kernel matrix, through pytest.

Arguments kmatrix does not know go to pytest untouched (paths, -k, -m, -x, --lf,
--durations ...). Test paths are pytest's business: with none given, pytest's own parser
says so (`config.args_source`) and the plugin runs the case folders (`--cases-by-default`).
pytest runs where `kmatrix` was started, with the project's configuration and rootdir, so
relative paths mean what the user typed and node ids stay relative to the project.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..paths import PROJECT_ROOT


def anchor_kernel_specs(args: argparse.Namespace, cwd: Path) -> None:
    """Kernel paths the user typed are relative to where they typed them: make them
    absolute, so every process (xdist workers included) reads the same kernel."""
    from ..acquire.spec import absolute_spec

    for attr in ("kernel", "specs", "target"):
        value = getattr(args, attr, None)
        if isinstance(value, list):
            setattr(args, attr, [absolute_spec(v, cwd) for v in value])
        elif isinstance(value, str):
            setattr(args, attr, absolute_spec(value, cwd))
    if isinstance(getattr(args, "tree", None), Path):
        args.tree = cwd / args.tree


def pytest_argv(args: argparse.Namespace, rest: list[str], kernels: list[str]) -> list[str]:
    """The pytest command line of `kmatrix run`."""
    argv = ["--rootdir", str(PROJECT_ROOT), "-c", str(PROJECT_ROOT / "pyproject.toml"),
            "--cases-by-default"]
    for spec in kernels:
        argv += ["--kernel", spec]
    jobs = auto_jobs(len(kernels)) if args.jobs is None else args.jobs
    if jobs:
        argv += ["-n", str(jobs)]
    if args.no_cache:
        argv += ["-p", "no:cacheprovider"]
    return argv + rest


def auto_jobs(kernels: int, cores: int | None = None) -> int:
    """xdist workers when -n is not given: one VM per core while there are kernels for
    them (1 vCPU each: measured here, two 1-vCPU VMs side by side beat one 2-vCPU VM after
    another), none (a plain serial run) for a single kernel."""
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return min(kernels, cores) if kernels > 1 and cores > 1 else 0


def _cmd_run(args: argparse.Namespace, rest: list[str]) -> int:
    import pytest

    from ..matrix.kernels import default_kernels

    argv = pytest_argv(args, rest, args.kernel or default_kernels(args.matrix))
    print("kmatrix: pytest " + " ".join(argv), file=sys.stderr)
    return int(pytest.main(argv))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "run", help="run the suite over a kernel matrix (extra arguments go to pytest)",
        description="Run cases/ (or the given paths) on each --kernel; without --kernel, "
        "on the default matrix of images/matrix.toml. Unknown arguments go to pytest "
        "(-k, -m, -x, --lf, paths ...).")
    run.add_argument("--kernel", action="append", metavar="SPEC",
                     help="debian:X.Y, debian-source:X.Y, host, PATH (repeatable)")
    run.add_argument("--matrix", choices=("default", "ci"), default="default",
                     help="which matrix of images/matrix.toml when no --kernel is given")
    run.add_argument("-n", "--jobs", type=int, default=None,
                     help="pytest-xdist workers, each booting the kernels it runs (default: "
                          "one per core for two kernels or more, 1 vCPU per VM; 0: serial)")
    run.add_argument("--no-cache", action="store_true", help="disable pytest's cache (--lf)")
    run.set_defaults(handler=_cmd_run)
