"""`kmatrix bisect`: find the commit of a kernel tree that broke one case.

    kmatrix bisect --good v6.12 --bad HEAD --tree ~/src/linux \\
        cases/test_netkit.py::test_l2_arp_between_namespaces [--runs 3]

`git bisect run` does the search; each step builds the commit (kconfigs/, one kept O=
folder for the whole bisect, ccache), boots it and runs the case (harness.bisect).
"""

from __future__ import annotations

import argparse
import datetime
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from ..errors import ExitCode, UserError
from ..paths import PROJECT_ROOT

if TYPE_CHECKING:
    from ..bisect.config import BisectConfig


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ..bisect.config import BadIf, SkipAs

    p = sub.add_parser(
        "bisect", help="find the commit of a kernel tree that broke a case (git bisect run)",
        description="git bisect run over a kernel tree: each step builds the commit git "
        "checked out (kconfigs/, one kept O= folder, ccache) and runs the case on it; a "
        "commit whose build fails, that does not boot or where the case errors is skipped. "
        "Ends with the first bad commit, the case's failure on it, its pass on the parent "
        "and a table of the steps; the tree is reset to what was checked out.")
    p.add_argument("case", metavar="CASE_NODEID",
                   help="the case, without the kernel label: cases/test_netkit.py::test_x "
                        "(a parametrized one as cases/t.py::test_y[l2])")
    p.add_argument("--good", action="append", required=True, metavar="REV",
                   help="a revision where the case passes (repeatable)")
    p.add_argument("--bad", required=True, metavar="REV",
                   help="a revision where the case fails")
    p.add_argument("--tree", type=Path, required=True,
                   help="the kernel tree: a git checkout without uncommitted changes")
    p.add_argument("--runs", type=_positive, default=1, metavar="N",
                   help="runs of the case per step, for flaky cases (each boots the kernel; "
                        "default 1)")
    p.add_argument("--bad-if", choices=[str(b) for b in BadIf], default=str(BadIf.ANY),
                   help="with --runs N: a commit is bad if any run fails (default; good "
                        "needs N passes) or if at least half fail (majority)")
    p.add_argument("--skip-as", choices=[str(s) for s in SkipAs], default=str(SkipAs.BAD),
                   help="what a SKIP of the case (its feature refused where not expected) "
                        "makes of a commit: bad (default: the case does not pass there), "
                        "good, or skip (git bisect skip)")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="where steps/COMMIT/, summary.md and git's log go "
                        "(default results/bisect-<date-time>)")
    p.add_argument("-f", "--fragment", action="append", dest="fragments", metavar="NAME",
                   help="config fragment to merge (as `kmatrix kernels build`; default all)")
    p.add_argument("-j", "--jobs", type=int, default=None, help="make -j (default 3)")
    p.add_argument("--run-arg", action="append", default=[], metavar="ARG",
                   help="an argument for every `kmatrix run` of the case, e.g. "
                        "--run-arg=--boot-timeout=600 (repeatable)")
    p.add_argument("--no-confirm", action="store_true",
                   help="do not run the case on the first bad commit and its parent when "
                        "git did not test them itself")
    p.set_defaults(handler=_cmd_bisect)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be 1 or more")
    return value


def project_nodeid(nodeid: str, cwd: Path) -> str:
    """The case's node id relative to the project root (`kmatrix run` runs pytest there):
    its file as typed from `cwd`. UserError when the file does not exist."""
    path, sep, rest = nodeid.partition("::")
    file = Path(path).expanduser()
    file = file if file.is_absolute() else cwd / file
    if not file.is_file():
        raise UserError(f"{path}: no such case file",
                        hint="give a node id such as "
                             "cases/test_netkit.py::test_l2_arp_between_namespaces")
    file = file.resolve()
    try:
        shown = str(file.relative_to(PROJECT_ROOT))
    except ValueError:
        shown = str(file)
    return shown + sep + rest


def make_config(args: argparse.Namespace, cwd: Path) -> BisectConfig:
    """The bisect's settings from the command line (paths taken from `cwd`)."""
    from ..acquire.build import cache as kcache
    from ..acquire.build.toolchain import DEFAULT_JOBS
    from ..acquire.sources import looks_like_kernel_tree
    from ..bisect.config import BadIf, BisectConfig, SkipAs, default_objdir

    tree = (cwd / args.tree).resolve()
    if not tree.is_dir() or not looks_like_kernel_tree(tree):
        raise UserError(f"{tree} is not a kernel source tree (no Makefile/Kconfig)",
                        hint="give --tree the top of a kernel git checkout")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    results = (cwd / args.results_dir) if args.results_dir else \
        PROJECT_ROOT / "results" / f"bisect-{stamp}"
    return BisectConfig(
        tree=tree, case=project_nodeid(args.case, cwd), results_dir=results.resolve(),
        objdir=default_objdir(tree, kcache.objs_dir()), runs=args.runs,
        bad_if=BadIf(args.bad_if), skip_as=SkipAs(args.skip_as),
        fragments=tuple(args.fragments) if args.fragments else None,
        jobs=args.jobs or DEFAULT_JOBS, run_args=tuple(args.run_arg))


def check_build_inputs(config: BisectConfig) -> None:
    """Fragments and build tools, checked once before the first step (ConfigError,
    MissingToolError): they would fail every step alike."""
    from ..acquire.build.plan import plan_build
    from ..acquire.build.toolchain import check_build_tools

    plan = plan_build(str(config.tree), config.fragments)
    check_build_tools(plan.merged, plan.toolchain)


def _interrupt_on_sigterm() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, handler)


def _cmd_bisect(args: argparse.Namespace, rest: list[str]) -> int:
    from ..bisect import driver, report
    from ..bisect.git import Repo, check_bisectable

    _interrupt_on_sigterm()
    try:
        config = make_config(args, Path.cwd())
        check_bisectable(Repo(config.tree))  # cheap: before anything reads the whole tree
        check_build_inputs(config)
        outcome = driver.bisect(config, args.good, args.bad, confirm=not args.no_confirm)
    except KeyboardInterrupt:
        print(f"kmatrix: bisect interrupted; {args.tree} is back on what was checked out",
              file=sys.stderr)
        return ExitCode.INTERRUPTED
    path = report.write_summary(config, outcome)
    print("\n" + report.format_summary(config, outcome))
    print(f"kmatrix: summary in {path}", file=sys.stderr)
    if outcome.first_bad is None:
        return ExitCode.TESTS_FAILED
    return ExitCode.OK if outcome.confirmed or args.no_confirm else ExitCode.TESTS_FAILED
