"""Where a run is: per kernel, the stage it reached (downloading, building, booting,
running), its cases done out of its total with their outcomes, and an ETA.

`RunProgress` is the model (pure; unit-tested); `render_table` draws it with rich (a live
view on a terminal), `RunProgress.lines` as plain lines (CI logs). Code that acquires or
boots kernels reports through `report_stage`, which goes to the run's progress when one is
active (`active`), and nowhere otherwise.

The ETA: the durations an earlier run recorded for the same node ids (results.json), and
for cases it did not have, the mean of this run's cases of that kernel so far (before
any: of that kernel's recorded ones); the kernels' remaining seconds are divided among
the workers running them.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

#: outcome words, in the order they are shown
OUTCOMES = ("pass", "fail", "skip", "error", "crash")


@dataclass
class KernelProgress:
    label: str
    total: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    stage: str = "waiting"
    #: host seconds of the cases done so far, but the first (it carries the boot)
    spent: float = 0.0
    #: expected seconds of the cases not done yet, where an earlier run knew them
    known_left: float = 0.0
    #: how many of the cases not done yet have no recorded duration
    unknown_left: int = 0
    #: mean recorded duration of this kernel's cases (None: none was recorded)
    known_mean: float | None = None

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def left_seconds(self) -> float | None:
        """Expected seconds to finish; None when nothing is known to estimate from."""
        if self.done >= self.total:
            return 0.0
        per_case = self.spent / (self.done - 1) if self.done > 1 else self.known_mean
        if self.unknown_left and per_case is None:
            return None
        return self.known_left + self.unknown_left * (per_case or 0.0)


@dataclass
class RunProgress:
    """The progress of one run (the controller's view)."""

    workers: int = 1
    #: node id -> seconds an earlier run took for it
    expected: Mapping[str, float] = field(default_factory=dict)
    kernels: dict[str, KernelProgress] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    #: what is being fetched or built before the kernels can boot, by kernel spec
    acquiring: dict[str, str] = field(default_factory=dict)
    _pending: dict[str, set[str]] = field(default_factory=dict)
    #: called after every change (the live view redraws)
    on_change: Callable[[], None] | None = None

    def kernel(self, label: str) -> KernelProgress:
        if label not in self.kernels:
            self.kernels[label] = KernelProgress(label)
        return self.kernels[label]

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def collected(self, label: str, nodeids: list[str]) -> None:
        """The cases `label` will run (their node ids as the host names them)."""
        k = self.kernel(label)
        k.total = len(nodeids)
        self._pending[label] = set(nodeids)
        known = [self.expected[n] for n in nodeids if n in self.expected]
        k.known_left = sum(known)
        k.known_mean = sum(known) / len(known) if known else None
        k.unknown_left = len(nodeids) - len(known)
        self._changed()

    def stage(self, label: str, stage: str) -> None:
        self.kernel(label).stage = stage
        self._changed()

    def acquire(self, spec: str, what: str) -> None:
        """A kernel being fetched or built ("" when it is ready)."""
        if what:
            self.acquiring[spec] = what
        else:
            self.acquiring.pop(spec, None)
        self._changed()

    def case_done(self, label: str, nodeid: str, outcome: str, seconds: float) -> None:
        k = self.kernel(label)
        if k.done:  # a kernel's first case also waited for its boot
            k.spent += seconds
        k.counts[outcome] += 1
        pending = self._pending.get(label)
        if pending is not None and nodeid in pending:
            pending.discard(nodeid)
            if nodeid in self.expected:
                k.known_left = max(0.0, k.known_left - self.expected[nodeid])
            else:
                k.unknown_left = max(0, k.unknown_left - 1)
        if k.done >= k.total > 0:
            k.stage = "done"
        elif k.stage in ("waiting", "booting") or k.stage.startswith("booting"):
            k.stage = "running"
        self._changed()

    def eta(self) -> float | None:
        """Seconds until the run ends, if anything is known to estimate from."""
        lefts = [k.left_seconds() for k in self.kernels.values()]
        if not lefts or any(left is None for left in lefts):
            return None
        return sum(left for left in lefts if left is not None) / max(1, self.workers)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def lines(self) -> list[str]:
        """The plain view: one line per kernel, then the run's."""
        out = [f"kmatrix: {spec}: {what}" for spec, what in self.acquiring.items()]
        for k in self.kernels.values():
            counts = ", ".join(f"{k.counts[o]} {o}" for o in OUTCOMES if k.counts[o])
            out.append(f"kmatrix: [{k.label}] {k.stage}: {k.done}/{k.total} cases"
                       + (f" ({counts})" if counts else ""))
        eta = self.eta()
        out.append(f"kmatrix: {format_seconds(self.elapsed())} elapsed"
                   + (f", about {format_seconds(eta)} left" if eta is not None else ""))
        return out


def format_seconds(seconds: float) -> str:
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def expected_durations(results_json: Any) -> dict[str, float]:
    """node id -> host seconds, from an earlier run's results.json (parsed JSON)."""
    out: dict[str, float] = {}
    for case in results_json.get("cases", []) if isinstance(results_json, dict) else []:
        try:
            out[str(case["nodeid"])] = float(case.get("duration", 0.0))
        except (KeyError, TypeError, ValueError):
            continue
    if out:  # a boot's seconds land on a kernel's first case: not what a case costs
        typical = statistics.median(out.values())
        out = {k: min(v, 20 * typical) if typical > 0 else v for k, v in out.items()}
    return out


def render_table(progress: RunProgress) -> Table:
    """The live view: a table of the kernels, a caption with the run's time and ETA."""
    from rich.table import Table

    eta = progress.eta()
    caption = f"{format_seconds(progress.elapsed())} elapsed" + (
        f", about {format_seconds(eta)} left" if eta is not None else "")
    table = Table(title="kmatrix", caption=caption, expand=False)
    table.add_column("kernel")
    table.add_column("stage")
    table.add_column("cases", justify="right")
    styles = {"pass": "green", "fail": "red", "skip": "yellow", "error": "magenta",
              "crash": "bold red"}
    for outcome in OUTCOMES:
        table.add_column(outcome, justify="right", style=styles[outcome])
    for spec, what in progress.acquiring.items():
        table.add_row(spec, what, "", *["" for _ in OUTCOMES])
    for k in progress.kernels.values():
        table.add_row(k.label, k.stage, f"{k.done}/{k.total}",
                      *[str(k.counts[o]) if k.counts[o] else "" for o in OUTCOMES])
    return table


#: the run's progress while one is being shown (None: reports go nowhere)
_active: RunProgress | None = None


@contextlib.contextmanager
def showing(progress: RunProgress) -> Iterator[RunProgress]:
    """Make `progress` the one `report_stage` and `report_acquire` report to."""
    global _active
    outer, _active = _active, progress
    try:
        yield progress
    finally:
        _active = outer


def active() -> RunProgress | None:
    return _active


def report_stage(label: str, stage: str) -> None:
    """A kernel's stage (a boot's progress: "booting: agent started")."""
    if _active is not None:
        _active.stage(label, stage)


def report_acquire(spec: str, what: str) -> None:
    """A kernel being fetched or built ("downloading linux-image-6.12: 45% at 12 MB/s",
    "building: 1234 objects"); "" when it is ready."""
    if _active is not None:
        _active.acquire(spec, what)
