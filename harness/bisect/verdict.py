"""A step's verdict from the runs of its case, and the exit code `git bisect run` reads.

Each run of the case ends in one `Status` (the run's results.json):

| run status | counts as |
|---|---|
| PASS | good |
| FAIL, CRASH (the guest kernel died), any other failure | bad |
| SKIP (the feature is refused where not expected) | `--skip-as`: bad (default), good, skip |
| ERROR (no boot, a probe or the harness broke) | untestable: the step is skipped |

With `--runs N` (flaky cases) `--bad-if any` (default) makes one failing run enough for
bad and needs N good runs for good: a failure that shows one time in three is still
found, and a commit is called good only when it passed every time. `--bad-if majority`
calls it bad when at least half the runs failed, good when more than half passed. A step
stops running as soon as its verdict cannot change.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ..results.model import Status
from .config import BadIf, SkipAs


class Verdict(enum.StrEnum):
    """What a step tells git."""

    GOOD = "good"
    BAD = "bad"
    SKIP = "skip"
    #: the step could not go on (a usage error, a bug, Ctrl-C): git stops the bisect
    ABORT = "abort"

    @property
    def exit_code(self) -> int:
        """`git bisect run`: 0 good, 1..127 but 125 bad, 125 skip, >= 128 abort."""
        return {Verdict.GOOD: 0, Verdict.BAD: 1, Verdict.SKIP: 125, Verdict.ABORT: 128}[self]


#: the exit code of a step interrupted by Ctrl-C/SIGTERM (git stops: >= 128)
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Decision:
    """A step's verdict so far: None while more runs are needed."""

    verdict: Verdict | None
    reason: str


def counts_as(status: Status) -> Status:
    """What a case's status is to a bisect: PASS, SKIP, ERROR and CRASH as they are; any
    other (FAIL, or a case that failed and then passed when run again) is a FAIL."""
    if status in (Status.PASS, Status.SKIP, Status.ERROR, Status.CRASH):
        return status
    return Status.FAIL


def combine(statuses: Sequence[Status]) -> Status:
    """One run's status from the statuses of the items it ran (a node id may select several
    parametrizations): a crash or failure anywhere wins, then an error; all skipped is a
    skip; otherwise it passed. No item at all is an ERROR (nothing was verified)."""
    if not statuses:
        return Status.ERROR
    seen = {counts_as(s) for s in statuses}
    for status in (Status.CRASH, Status.FAIL, Status.ERROR):
        if status in seen:
            return status
    return Status.SKIP if seen == {Status.SKIP} else Status.PASS


def decide(statuses: Sequence[Status], runs: int, bad_if: BadIf = BadIf.ANY,
           skip_as: SkipAs = SkipAs.BAD) -> Decision:
    """The verdict after the runs so far (`statuses`, in order) out of `runs`."""
    good = bad = 0
    for n, status in enumerate(statuses, 1):
        if status is Status.ERROR:
            return Decision(Verdict.SKIP, f"run {n}: error (infrastructure): untestable")
        vote = status
        if status is Status.SKIP:
            if skip_as is SkipAs.SKIP:
                return Decision(Verdict.SKIP, f"run {n}: the case skipped (--skip-as skip)")
            vote = Status.PASS if skip_as is SkipAs.GOOD else Status.FAIL
        if vote is Status.PASS:
            good += 1
        else:
            bad += 1
    summary = f"{bad} of {len(statuses)} runs failed" if bad else \
        f"{good} of {len(statuses)} runs passed"
    if bad_if is BadIf.ANY:
        if bad:
            return Decision(Verdict.BAD, summary)
        if good >= runs:
            return Decision(Verdict.GOOD, summary)
        return Decision(None, summary)
    if 2 * bad >= runs:
        return Decision(Verdict.BAD, f"{bad} of {len(statuses)} runs failed (majority of "
                                     f"{runs})")
    if 2 * good > runs:
        return Decision(Verdict.GOOD, f"{good} of {len(statuses)} runs passed (majority of "
                                      f"{runs})")
    return Decision(None, summary)
