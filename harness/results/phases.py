"""One verdict per (case, kernel) from the reports of its phases (setup, call, teardown).

Pure rules, unit-tested (tests/unit/test_phases.py):

- a setup that failed is an ERROR; one that skipped is a SKIP (or an xfail);
- a setup that passed with no call phase after it is an ERROR (the case never ran);
- a call that failed is a FAIL (a CRASH when the guest kernel died under it);
- a call that skipped is a SKIP (or an xfail), one that passed is a PASS;
- a teardown that failed after a PASS or a SKIP makes the case an ERROR, once; after a
  failure it adds its text to the failure;
- kernel messages that arrive after a case ended are its own: a WARN among them fails it
  (`amend_late`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..kernel_log import find_problems
from .model import CaseResult, Status


@dataclass(frozen=True)
class PhaseReport:
    """What one phase of a case reported."""

    #: "setup", "call" or "teardown"
    when: str
    #: "passed", "failed" or "skipped"
    outcome: str
    #: the phase's failure text or skip reason ("" when it passed)
    text: str = ""
    #: the reason of an expected failure (pytest.xfail), when it was one
    xfail: str = ""
    #: the guest kernel died during this phase
    crash: bool = False


@dataclass(frozen=True)
class Verdict:
    status: Status
    #: one line for tables
    message: str
    #: the whole text (failure, skip reason, teardown error)
    details: str


#: the line pytest-xdist puts before a worker's failure text ("[gw0] linux -- Python ...")
_XDIST_HEADER = re.compile(r"^\[gw\d+\] \S+ -- Python ")


def _first_line(text: str) -> str:
    """The first line that says something (not xdist's worker header)."""
    return next((line for line in text.strip().splitlines()
                 if line.strip() and not _XDIST_HEADER.match(line)), "")


def combine(phases: Sequence[PhaseReport]) -> Verdict:
    """The one verdict of a case from its phase reports (in any order)."""
    by_when = {p.when: p for p in phases}
    setup, call, teardown = (by_when.get(w) for w in ("setup", "call", "teardown"))
    status: Status
    text = ""
    if setup is None:
        status, text = Status.ERROR, "the case reported no setup phase (interrupted?)"
    elif setup.outcome == "failed":
        status, text = Status.ERROR, setup.text
    elif setup.outcome == "skipped":
        status = Status.SKIP
        text = f"xfail: {setup.xfail}" if setup.xfail else setup.text
    elif call is None:
        status, text = Status.ERROR, (
            "the case's setup passed but its body never ran (no call phase reported)")
    elif call.outcome == "failed":
        status, text = (Status.CRASH if call.crash else Status.FAIL), call.text
    elif call.outcome == "skipped":
        status = Status.SKIP
        text = f"xfail: {call.xfail}" if call.xfail else call.text
    else:
        status = Status.PASS
    if teardown is not None and teardown.outcome == "failed":
        teardown_text = f"error in teardown:\n{teardown.text}"
        if status in (Status.PASS, Status.SKIP):
            status, text = Status.ERROR, teardown_text
        else:
            text = f"{text}\n\n{teardown_text}"
    return Verdict(status, _first_line(text), text)


def amend_late(case: CaseResult, lines: Sequence[str]) -> None:
    """Kernel messages that came after `case` ended (its asynchronous cleanup, an RCU
    callback) belong to it: a WARN/BUG/oops among them fails a case that had passed or
    skipped; the messages go into its details either way."""
    if not lines:
        return
    problems = find_problems(lines)
    shown = "\n".join(lines[-40:])
    case.details = (case.details + "\n\n" if case.details else "") + (
        f"kernel messages after this case ended:\n{shown}")
    if problems and case.status in (Status.PASS, Status.SKIP):
        case.status = Status.FAIL
        case.message = f"the kernel reported a problem after this case ended: " \
                       f"{problems[0].headline}"
