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
import textwrap
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
    targets: list[str] = getattr(args, "target", None) or []
    for url in targets:  # SSH targets: columns too (harness.targets.ssh)
        argv += ["--target", url]
    jobs = auto_jobs(len(kernels) + len(targets)) if args.jobs is None else args.jobs
    if jobs:
        argv += ["-n", str(jobs)]
    if args.no_cache:
        argv += ["-p", "no:cacheprovider"]
    if wants_live(args, rest):  # the live table replaces pytest's progress output
        argv += ["--live", "-p", "no:terminal"]
    return argv + rest


#: pytest options that ask for pytest's own output
_VERBOSITY = ("-v", "-vv", "-q", "-qq", "--verbose", "--quiet", "-s", "--collect-only",
              "--co", "--pdb", "--help", "-h")


def wants_live(args: argparse.Namespace, rest: list[str],
               isatty: bool | None = None) -> bool:
    """The live table on a terminal, unless the user asked for pytest's output (-v, -q,
    -s, ...) or turned it off (--no-live), or a CI runner is the terminal (CI=...)."""
    if args.no_live or os.environ.get("CI"):
        return False
    if any(arg in _VERBOSITY or arg.startswith(("-v", "-q")) for arg in rest):
        return False
    return sys.stdout.isatty() if isatty is None else isatty


def auto_jobs(kernels: int, cores: int | None = None) -> int:
    """xdist workers when -n is not given: one VM per core and one more, while there are
    kernels for them (1 vCPU each), none (a plain serial run) for a single kernel. Measured
    here on 2 cores: two 1-vCPU VMs side by side beat one 2-vCPU VM after another; and as
    the cases wait a good part of their time (for what must not arrive, for timeouts the
    kernel must keep), a third VM uses the core the other two leave idle: README command 1
    in 791 s with three against 881 s with two, the same verdicts (CPU 178% against 155%)."""
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return min(kernels, cores + 1) if kernels > 1 and cores > 1 else 0


def kernel_specs(args: argparse.Namespace) -> list[str]:
    """The kernels to boot: --kernel, else (with no --target either: a run of only SSH
    targets boots nothing) the default matrix."""
    from ..matrix.kernels import default_kernels

    if args.kernel or getattr(args, "target", None):
        return list(args.kernel or [])
    return default_kernels(args.matrix)


def _cmd_run(args: argparse.Namespace, rest: list[str]) -> int:
    import pytest

    argv = pytest_argv(args, rest, kernel_specs(args))
    print("kmatrix: pytest " + " ".join(argv), file=sys.stderr)
    return int(pytest.main(argv))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "run", help="run the suite over a kernel matrix (extra arguments go to pytest)",
        description="Run cases/ (or the given paths) on each --kernel and --target; "
        "without either, on the default matrix of images/matrix.toml. Unknown arguments go "
        "to pytest (-k, -m, -x, --lf, paths ...).")
    run.add_argument("--kernel", action="append", metavar="SPEC",
                     help="debian:X.Y, debian-source:X.Y, host, PATH (repeatable)")
    run.add_argument("--target", action="append", metavar="ssh://[USER@]HOST[:PORT]",
                     help="a machine reached over SSH, one more column (repeatable); with "
                          "no --kernel, the run has only the targets (see --accept-host-key, "
                          "--target-python, --target-cache, --ssh-config below)")
    run.add_argument("--matrix", choices=("default", "ci"), default="default",
                     help="which matrix of images/matrix.toml when no --kernel is given")
    run.add_argument("-n", "--jobs", type=int, default=None,
                     help="pytest-xdist workers, each booting the kernels it runs (default: "
                          "one per core and one more, for two kernels or more, 1 vCPU per "
                          "VM; 0: serial)")
    run.add_argument("--no-cache", action="store_true", help="disable pytest's cache (--lf)")
    run.add_argument("--no-live", action="store_true",
                     help="pytest's own progress output on a terminal, not the live table")
    run.epilog = options_help()
    run.formatter_class = argparse.RawDescriptionHelpFormatter
    run.set_defaults(handler=_cmd_run)


def options_help() -> str:
    """kmatrix's run options (those of the pytest plugin), for `kmatrix run --help`: they
    are defined once, in harness.pytest_plugin.options, and given to pytest unchanged."""
    from ..pytest_plugin.options import describe_options

    lines = ["kmatrix options (passed to pytest; `pytest --help` lists pytest's own):"]
    for flags, help_text in describe_options():
        lines.append(f"  {flags}")
        lines += [f"        {chunk}" for chunk in textwrap.wrap(help_text, 72)]
    return "\n".join(lines)
