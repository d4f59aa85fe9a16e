"""The `kmatrix` command: one module per subcommand (run, kernels, doctor, bench, merge,
diff, export, ci, bisect)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import ExitCode, KmatrixError
from . import bench, bisect, ci, diff, doctor, export, kernels, merge, run, shell


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmatrix", description="Kernel x feature test matrix for the BPF/networking "
        "datapath: boots kernels in virtme-ng and runs cases/ inside them.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run.add_parser(sub)
    doctor.add_parser(sub)
    bench.add_parser(sub)
    merge.add_parser(sub)
    diff.add_parser(sub)
    export.add_parser(sub)
    ci.add_parser(sub)
    bisect.add_parser(sub)
    shell.add_parser(sub)
    kp = kernels.add_kernels_parser(sub)
    kp.set_defaults(handler=lambda a, r: int(a.func(a)))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return ExitCode.USAGE_ERROR
    if rest and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    run.anchor_kernel_specs(args, Path.cwd())
    try:
        return int(args.handler(args, rest))
    except KmatrixError as exc:
        print(f"kmatrix: error: {exc.describe()}", file=sys.stderr)
        return int(exc.exit_code)


if __name__ == "__main__":
    sys.exit(main())
