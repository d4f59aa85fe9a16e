"""`kmatrix run`: the suite over a kernel matrix, through pytest."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..paths import PROJECT_ROOT

#: options (ours and pytest's usual ones) whose value is the next argument
_VALUE_OPTIONS = frozenset({
    "-k", "-m", "-p", "-o", "-n", "--tb", "--maxfail", "--junitxml", "--junit-xml",
    "--rootdir", "--confcutdir", "--deselect", "--ignore", "--results-dir", "--accel",
    "--boot-timeout", "--case-timeout", "--watchdog-grace", "--vm-cpus", "--vm-memory",
    "--dist", "--basetemp", "-W",
})


def _positional_args(args: list[str]) -> list[str]:
    """The test paths/node ids among pytest arguments (values of options excluded)."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def anchor_paths(args: argparse.Namespace, rest: list[str], cwd: Path) -> None:
    """Kernel paths and test paths the user typed are relative to where they typed them;
    make them absolute before the CLI moves to the project root."""
    from ..acquire.spec import absolute_spec

    for attr in ("kernel", "specs", "target"):
        value = getattr(args, attr, None)
        if isinstance(value, list):
            setattr(args, attr, [absolute_spec(v, cwd) for v in value])
        elif isinstance(value, str):
            setattr(args, attr, absolute_spec(value, cwd))
    if isinstance(getattr(args, "tree", None), Path):
        args.tree = cwd / args.tree
    if cwd.resolve() == PROJECT_ROOT.resolve():
        return
    positional = set(_positional_args(rest))
    for i, arg in enumerate(rest):
        if arg in positional and not os.path.isabs(arg):
            path = cwd / arg.split("::", 1)[0]
            if path.exists():
                rest[i] = str(cwd / arg)


def _cmd_run(args: argparse.Namespace, rest: list[str]) -> int:
    import pytest

    from ..matrix.kernels import default_kernels

    kernels = args.kernel or default_kernels(args.matrix)
    argv: list[str] = []
    for spec in kernels:
        argv += ["--kernel", spec]
    if args.jobs:
        argv += ["-n", str(args.jobs)]
    if not _positional_args(rest):
        rest = [*rest, "cases"]
    argv += ["-p", "no:cacheprovider"] if args.no_cache else []
    argv += rest
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
    run.add_argument("-n", "--jobs", type=int, default=0,
                     help="pytest-xdist workers; each boots its kernels once")
    run.add_argument("--no-cache", action="store_true", help="disable pytest's cache (--lf)")
    run.set_defaults(handler=_cmd_run)
