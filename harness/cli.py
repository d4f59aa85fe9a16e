"""The `kmatrix` command: run, doctor, bench, kernels."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import KmatrixError
from .paths import PROJECT_ROOT

EXIT_USAGE = 2


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


def _anchor_paths(args: argparse.Namespace, rest: list[str], cwd: Path) -> None:
    """Kernel paths and test paths the user typed are relative to where they typed them;
    make them absolute before the CLI moves to the project root."""
    from .kernels import absolute_spec

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

    from .matrix import default_kernels

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


def _cmd_doctor(args: argparse.Namespace, rest: list[str]) -> int:
    from .doctor import run_doctor

    return run_doctor()


def _cmd_bench(args: argparse.Namespace, rest: list[str]) -> int:
    from .bench import run_boot_bench

    return run_boot_bench(args.kernel or "debian:6.12", cases=args.cases, accel=args.accel,
                          json_out=args.json, boot_timeout=args.boot_timeout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmatrix", description="Kernel x feature test matrix for the BPF/networking "
        "datapath: boots kernels in virtme-ng and runs cases/ inside them.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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

    doctor = sub.add_parser("doctor", help="list what is missing and how to fix it")
    doctor.set_defaults(handler=_cmd_doctor)

    bench = sub.add_parser("bench", help="boot benchmark: boot-to-first-case, per-case "
                           "overhead, both against a plain `vng --exec true`")
    bench.add_argument("--kernel", metavar="SPEC", help="kernel (default debian:6.12)")
    bench.add_argument("--cases", type=int, default=10, help="no-op cases to time")
    bench.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    bench.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    bench.add_argument("--boot-timeout", type=float, default=900.0,
                       help="seconds to a ready guest (default 900: loaded hosts are slow)")
    bench.set_defaults(handler=_cmd_bench)

    try:
        from .cli_kernels import add_kernels_parser
    except ImportError:
        pass
    else:
        kp = add_kernels_parser(sub)
        kp.set_defaults(handler=lambda a, r: int(a.func(a)))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if rest and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    _anchor_paths(args, rest, Path.cwd())
    os.chdir(PROJECT_ROOT)  # node ids are relative to the project root, host and guest
    try:
        return int(args.handler(args, rest))
    except KmatrixError as exc:
        print(f"kmatrix: error: {exc.describe()}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
