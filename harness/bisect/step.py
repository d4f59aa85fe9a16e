"""One bisect step, the command `git bisect run` runs at each commit it checks out:

    python -m harness.bisect.step RESULTS/bisect.json [--confirm]

builds the tree as it is (kconfigs/ fragments, the bisect's one kept O= folder, ccache,
the kernel cache), runs the case on it up to `--runs` times (each run a `kmatrix run`: a
boot and the case), saves RESULTS/steps/COMMIT/step.json and exits as git expects: 0 good,
1 bad, 125 skip (the build failed, the kernel did not boot, the case errored), >= 128 stop
the bisect (a usage error, a bug, Ctrl-C). See `verdict` for how runs become a verdict.

`build_at_head` and `run_case` are the two expensive parts; tests replace them.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType

from ..command import run
from ..errors import ExitCode, KmatrixError, MissingToolError
from ..paths import PROJECT_ROOT
from ..results.model import RunResults, Status
from .config import BisectConfig
from .records import BuildOutcome, RunOutcome, StepRecord
from .verdict import EXIT_INTERRUPTED, Verdict, combine, counts_as, decide

#: lines of a failing command's output kept in a step record
TAIL_LINES = 30


class StepAbort(KmatrixError):
    """The bisect cannot go on (whatever the commit): `kmatrix run` said the input is
    wrong, nothing was collected, or kmatrix broke."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = code


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _say(text: str) -> None:
    print(f"[bisect] {text}", file=sys.stderr, flush=True)


# --- build --------------------------------------------------------------------------------


def build_at_head(config: BisectConfig, step_dir: Path) -> BuildOutcome:
    """Build the tree as checked out, in the bisect's kept O= folder; a failed build (make,
    a requested option gone from this commit's Kconfig) is an outcome, not an error."""
    from ..acquire.build import builder

    t0 = time.monotonic()
    try:
        res = builder.build(str(config.tree), config.fragments, jobs=config.jobs,
                            objdir=config.objdir)
    except MissingToolError:
        raise  # the same at every commit: stop the bisect
    except KmatrixError as exc:
        log = config.objdir / "kmatrix-build.log"
        kept = step_dir / "build.log"
        if log.is_file():
            step_dir.mkdir(parents=True, exist_ok=True)
            kept.write_bytes(log.read_bytes())
        return BuildOutcome(ok=False, seconds=time.monotonic() - t0,
                            message=_tail(exc.describe()),
                            log=str(kept) if kept.is_file() else "")
    kernel = res.kernel()
    return BuildOutcome(ok=True, seconds=res.seconds, cached=res.cached, label=kernel.label,
                        release=kernel.release or "", log=str(res.entry.path / "build.log"))


# --- run ----------------------------------------------------------------------------------


def case_for_kernel(case: str, label: str) -> str:
    """The host node id of `case` on the kernel labelled `label`: the kernel id is the last
    id component (`t.py::test_x[l2]` -> `t.py::test_x[l2-LABEL]`); a node id without
    parameters selects its items on every kernel as it is."""
    if case.endswith("]") and "[" in case:
        return f"{case[:-1]}-{label}]"
    return case


def run_argv(config: BisectConfig, label: str, run_dir: Path) -> list[str]:
    """The `kmatrix run` of one run of the case: the tree's spec (a cache hit: the step
    built it), serial, no pytest cache, its own results folder."""
    return [sys.executable, "-m", "harness", "run", "--kernel", config.spec, "-n", "0",
            "--no-cache", f"--results-dir={run_dir}", *config.run_args,
            case_for_kernel(config.case, label)]


def outcome_of_run(exit_code: int, run_dir: Path, seconds: float, output: str) -> RunOutcome:
    """A run's outcome from its results.json (the verdicts), or from its exit code when
    it wrote none. StepAbort for exit codes that no commit can change."""
    if exit_code == ExitCode.INTERRUPTED:
        raise KeyboardInterrupt("kmatrix run was interrupted")
    if exit_code in (ExitCode.USAGE_ERROR, ExitCode.NO_TESTS_COLLECTED,
                     ExitCode.INTERNAL_ERROR):
        what = {ExitCode.USAGE_ERROR: "a usage error",
                ExitCode.NO_TESTS_COLLECTED: "no case collected (check the node id)",
                ExitCode.INTERNAL_ERROR: "an internal error"}[ExitCode(exit_code)]
        raise StepAbort(f"kmatrix run exited {exit_code}: {what}\n{_tail(output)}",
                        ExitCode(exit_code))
    path = run_dir / "results.json"
    try:
        results = RunResults.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return RunOutcome(Status.ERROR, seconds,
                          message=f"kmatrix run exited {exit_code} without results.json",
                          details=_tail(output), exit_code=exit_code, results_dir=str(run_dir))
    status = combine([c.status for c in results.cases])
    shown = next((c for c in results.cases if counts_as(c.status) is status), None)
    boot = sum(sum(k.boots.values()) for k in results.kernels.values())
    boot_error = "; ".join(k.boot_error for k in results.kernels.values() if k.boot_error)
    message = shown.message if shown else (boot_error or "no case result recorded")
    details = shown.details if shown else _tail(output)
    return RunOutcome(status, seconds, message=message, details=details, exit_code=exit_code,
                      boot_seconds=round(boot, 1), results_dir=str(run_dir))


def run_case(config: BisectConfig, build: BuildOutcome, run_dir: Path) -> RunOutcome:
    """One `kmatrix run` of the case (a boot and the case); its output in RUN_DIR.log."""
    argv = run_argv(config, build.label, run_dir)
    t0 = time.monotonic()
    proc = run(argv, cwd=PROJECT_ROOT, check=False)
    seconds = time.monotonic() - t0
    run_dir.with_suffix(".log").write_text(f"$ {' '.join(argv)}\n{proc.stdout}")
    return outcome_of_run(proc.returncode, run_dir, seconds, proc.stdout or "")


# --- the step -----------------------------------------------------------------------------


def execute(config: BisectConfig, phase: str = "bisect") -> StepRecord:
    """Build the commit checked out in the tree, run the case, save and return the step."""
    from .git import Repo

    repo = Repo(config.tree)
    commit = repo.head()
    subject = repo.subject(commit)
    step_dir = config.step_dir(commit)
    step_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    _say(f"{commit[:12]} {subject!r}: building ({phase})")
    build = build_at_head(config, step_dir)
    runs: list[RunOutcome] = []
    if not build.ok:
        verdict, reason = Verdict.SKIP, "the build failed"
        _say(f"{commit[:12]}: build failed after {build.seconds:.0f}s -> skip\n"
             f"{_tail(build.message, 8)}")
    else:
        how = "cache hit" if build.cached else "built"
        _say(f"{commit[:12]}: {how} in {build.seconds:.0f}s ({build.release})")
        decision = decide([], config.runs, config.bad_if, config.skip_as)
        for n in range(1, config.runs + 1):
            outcome = run_case(config, build, step_dir / f"run-{n}")
            runs.append(outcome)
            _say(f"{commit[:12]}: run {n}/{config.runs}: {outcome.status.symbol} in "
                 f"{outcome.seconds:.0f}s" + (f": {outcome.message}" if outcome.message
                                              and outcome.status is not Status.PASS else ""))
            decision = decide([r.status for r in runs], config.runs, config.bad_if,
                              config.skip_as)
            if decision.verdict is not None:
                break
        assert decision.verdict is not None  # `runs` votes always decide
        verdict, reason = decision.verdict, decision.reason
    record = StepRecord(commit, subject, verdict, reason, phase, build, runs, started,
                        time.time())
    record.save(step_dir)
    _say(f"{commit[:12]}: {verdict} ({reason})")
    return record


def _abort(config: BisectConfig | None, phase: str, message: str, code: ExitCode) -> int:
    """Save an abort record (the driver reports it) and exit so that git stops."""
    print(f"kmatrix bisect step: {message}", file=sys.stderr, flush=True)
    if config is not None:
        try:
            from .git import Repo

            commit = Repo(config.tree).head()
            StepRecord(commit, "", Verdict.ABORT, message, phase, started=time.time(),
                       finished=time.time(), abort_code=int(code)).save(
                config.step_dir(commit))
        except (KmatrixError, OSError):
            pass
    return EXIT_INTERRUPTED if code is ExitCode.INTERRUPTED else Verdict.ABORT.exit_code


def _interrupt_on_sigterm() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.bisect.step",
        description="One kmatrix bisect step at the tree's HEAD (run by `git bisect run`).")
    parser.add_argument("config", type=Path, help="the bisect's RESULTS/bisect.json")
    parser.add_argument("--confirm", action="store_true",
                        help="a confirmation step of kmatrix bisect, not one git chose")
    args = parser.parse_args(argv)
    phase = "confirm" if args.confirm else "bisect"
    _interrupt_on_sigterm()
    config: BisectConfig | None = None
    try:
        config = BisectConfig.load(args.config)
        return execute(config, phase).exit_code
    except KeyboardInterrupt:
        return _abort(config, phase, "interrupted", ExitCode.INTERRUPTED)
    except KmatrixError as exc:
        return _abort(config, phase, exc.describe(), exc.exit_code)
    except Exception:
        return _abort(config, phase, traceback.format_exc(), ExitCode.INTERNAL_ERROR)


if __name__ == "__main__":
    sys.exit(main())
