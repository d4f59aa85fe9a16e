"""The whole bisect: `git bisect start/bad/good`, `git bisect run STEP`, a confirmation of
git's answer (the first bad commit fails, its parent passes: steps run there if git never
tested them), and always `git bisect reset` back to what was checked out.

The search is git's; kmatrix only gives it a step command (`step_argv`) and reads the
result from `git bisect log` and the steps' records.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..command import format_argv
from ..errors import ExitCode, KmatrixError, UserError
from .config import STEPS_DIR, BisectConfig
from .git import Repo, bisect_session, check_bisectable, first_bad, possible_first_bad
from .records import StepRecord, load_steps, step_for
from .verdict import Verdict

#: seconds the step command gets to clean up after Ctrl-C before it is killed
STOP_GRACE = 30.0


class BisectAborted(KmatrixError):
    """A step stopped the bisect (its exit code >= 128): says which commit and why."""

    def __init__(self, message: str, code: ExitCode = ExitCode.INTERNAL_ERROR,
                 hint: str = "") -> None:
        super().__init__(message, hint)
        self.exit_code = code


@dataclass
class BisectOutcome:
    """What the bisect found."""

    #: the first bad commit git named, or None (inconclusive)
    first_bad: str | None
    #: when inconclusive: the commits it may be (skipped ones among them)
    candidates: list[str] = field(default_factory=list)
    #: the first bad commit's first parent (None for a root commit or no answer)
    parent: str | None = None
    #: `git bisect log` at the end
    log: str = ""
    #: every step, in the order they ran (bisect steps and confirmations)
    steps: list[StepRecord] = field(default_factory=list)
    #: commit -> subject, for the commits the report names
    subjects: dict[str, str] = field(default_factory=dict)
    #: seconds the whole bisect took
    seconds: float = 0.0

    def step(self, commit: str | None) -> StepRecord | None:
        return step_for(self.steps, commit) if commit else None

    @property
    def confirmed(self) -> bool:
        """git's answer holds: the first bad commit was bad, its parent good (when there
        is one) - as tested by kmatrix's steps."""
        bad, parent = self.step(self.first_bad), self.step(self.parent)
        if bad is None or bad.verdict is not Verdict.BAD:
            return False
        return self.parent is None or (parent is not None and parent.verdict is Verdict.GOOD)


def step_argv(config: BisectConfig) -> list[str]:
    """The step command git runs at each commit: this Python, this kmatrix."""
    return [sys.executable, "-m", "harness.bisect.step", str(config.path)]


def run_in_group(argv: Sequence[str], cwd: str | None = None) -> int:
    """Run `argv` (output to the terminal) in a process group of its own and return its exit
    code. Ctrl-C/SIGTERM here (KeyboardInterrupt) is passed on as SIGINT to the whole group
    (git and the step, which kills its make or `kmatrix run`); after STOP_GRACE seconds
    what is left of the group is killed. Returns only when the group is gone, so the tree
    is no longer being built or checked out when it is reset."""
    print(f"kmatrix: {format_argv(argv)}", file=sys.stderr, flush=True)
    proc = subprocess.Popen(list(argv), cwd=cwd, stdin=subprocess.DEVNULL, process_group=0)
    try:
        return proc.wait()
    except BaseException:
        _stop_group(proc)
        raise


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    pgid = proc.pid
    for sig in (signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + (STOP_GRACE if sig == signal.SIGINT else 5.0)
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(pgid):
                proc.wait()
                return
            time.sleep(0.1)
    proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_results_dir(config: BisectConfig) -> None:
    steps = config.results_dir / STEPS_DIR
    if steps.is_dir() and any(steps.iterdir()):
        raise UserError(f"{config.results_dir} already holds the steps of a bisect",
                        hint="give a new --results-dir (or leave it out: results/bisect-DATE)")


def bisect(config: BisectConfig, good: Sequence[str], bad: str, *, confirm: bool = True,
           step_command: Sequence[str] | None = None) -> BisectOutcome:
    """Bisect `config.case` over `config.tree` between `good` and `bad` (revisions).

    UserError for a tree that cannot be bisected (see git.check_bisectable) or unknown
    revisions; BisectAborted when a step stopped the bisect. The tree is back on what was
    checked out before in every case, Ctrl-C included."""
    t0 = time.monotonic()
    repo = Repo(config.tree)
    check_bisectable(repo)  # again in bisect_session; first, so that its message comes first
    bad_id = repo.commit(bad)
    good_ids = [repo.commit(rev) for rev in good]
    check_results_dir(config)
    config.save()
    argv = list(step_command) if step_command is not None else step_argv(config)
    with bisect_session(repo, good_ids, bad_id):
        log = repo.bisect_log()
        if first_bad(log) is None:  # git names the answer at once for a range of one commit
            code = run_in_group(repo.argv("bisect", "run", *argv))
            log = repo.bisect_log()
            if first_bad(log) is None and not possible_first_bad(log):
                raise _abort_error(config, code)
        outcome = BisectOutcome(first_bad(log), candidates=possible_first_bad(log))
        if outcome.first_bad is not None:
            parents = repo.parents(outcome.first_bad)
            outcome.parent = parents[0] if parents else None
            if confirm:
                _confirm(config, repo, argv,
                         [c for c in (outcome.first_bad, outcome.parent) if c])
        outcome.log = repo.bisect_log()
        named = [outcome.first_bad, outcome.parent, *outcome.candidates]
        outcome.subjects = {c: repo.subject(c) for c in named if c}
    (config.results_dir / "bisect-log.txt").write_text(outcome.log)
    outcome.steps = load_steps(config.results_dir)
    outcome.seconds = time.monotonic() - t0
    return outcome


def _confirm(config: BisectConfig, repo: Repo, argv: list[str], commits: list[str]) -> None:
    """Run the step on `commits` git did not test itself (its answer and the parent: often
    the --good or --bad revision, which git takes on trust)."""
    for commit in commits:
        if step_for(load_steps(config.results_dir), commit) is not None:
            continue
        repo.switch_to(commit)
        code = run_in_group([*argv, "--confirm"], cwd=str(config.tree))
        if code >= Verdict.ABORT.exit_code:
            raise _abort_error(config, code)


def _abort_error(config: BisectConfig, code: int) -> BisectAborted:
    """Why git stopped without an answer: the step that stopped it, if one saved why."""
    aborted = [s for s in load_steps(config.results_dir) if s.verdict is Verdict.ABORT]
    if aborted:
        last = aborted[-1]
        known = {int(c) for c in ExitCode}
        exit_code = ExitCode(last.abort_code) if last.abort_code in known \
            else ExitCode.INTERNAL_ERROR
        return BisectAborted(f"the step at {last.commit[:12]} stopped the bisect: "
                             f"{last.reason}", exit_code)
    return BisectAborted(f"git bisect run exited {code} without naming a first bad commit",
                         hint="see git's output above")
