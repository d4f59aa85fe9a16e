"""What each bisect step saved (RESULTS/steps/COMMIT/step.json): the build, every run of
the case, the verdict. The report reads them back: the failure on the first bad commit and
the pass on its parent come from here, not from running anything again."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..results.model import Status
from .config import STEPS_DIR
from .verdict import Verdict

STEP_FILE = "step.json"


@dataclass(frozen=True)
class BuildOutcome:
    """The kernel built (or found in the cache) for one commit."""

    ok: bool
    #: wall-clock seconds of the build call (a cache hit: about a second)
    seconds: float
    #: True when no compiler ran (the same commit and config were built before)
    cached: bool = False
    #: the kernel's label in node ids and reports, and its `uname -r`
    label: str = ""
    release: str = ""
    #: why the build failed (the end of make's output), "" when it worked
    message: str = ""
    #: the full build log
    log: str = ""


@dataclass(frozen=True)
class RunOutcome:
    """One `kmatrix run` of the case on that kernel."""

    status: Status
    #: wall-clock seconds of the whole run: boot, probes, the case, shutdown
    seconds: float
    #: the case's one-line message and its failure text (traceback, assertion, dmesg)
    message: str = ""
    details: str = ""
    #: `kmatrix run`'s exit code (0, 1, 6 ...)
    exit_code: int = 0
    #: host seconds from VM start to a ready agent (0.0 when unknown)
    boot_seconds: float = 0.0
    #: the run's results folder (results.json, junit.xml, console log)
    results_dir: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.symbol}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunOutcome:
        by_name = {s.symbol: s for s in Status}
        return cls(**{**data, "status": by_name[data["status"]]})


@dataclass(frozen=True)
class StepRecord:
    """One step: the commit, its build, its runs, its verdict."""

    commit: str
    subject: str
    verdict: Verdict
    reason: str
    #: "bisect" (git bisect run chose it) or "confirm" (kmatrix checked the answer)
    phase: str = "bisect"
    build: BuildOutcome | None = None
    runs: list[RunOutcome] = field(default_factory=list)
    #: epoch seconds
    started: float = 0.0
    finished: float = 0.0
    #: for an abort: the kmatrix exit code it stands for (4 usage, 3 bug, 2 interrupted)
    abort_code: int = 0

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code

    @property
    def build_seconds(self) -> float:
        return self.build.seconds if self.build else 0.0

    @property
    def run_seconds(self) -> float:
        return sum(r.seconds for r in self.runs)

    def failing_run(self) -> RunOutcome | None:
        """The first run whose case failed or crashed (else one that skipped or errored)."""
        for wanted in ((Status.FAIL, Status.CRASH), (Status.SKIP, Status.ERROR)):
            for run in self.runs:
                if run.status in wanted:
                    return run
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit, "subject": self.subject, "verdict": str(self.verdict),
            "reason": self.reason, "phase": self.phase,
            "build": asdict(self.build) if self.build else None,
            "runs": [r.to_json() for r in self.runs],
            "started": self.started, "finished": self.finished,
            "abort_code": self.abort_code,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepRecord:
        build = data.get("build")
        return cls(
            commit=data["commit"], subject=data.get("subject", ""),
            verdict=Verdict(data["verdict"]), reason=data.get("reason", ""),
            phase=data.get("phase", "bisect"),
            build=BuildOutcome(**build) if build else None,
            runs=[RunOutcome.from_json(r) for r in data.get("runs", [])],
            started=float(data.get("started", 0.0)), finished=float(data.get("finished", 0.0)),
            abort_code=int(data.get("abort_code", 0)))

    def save(self, step_dir: Path) -> Path:
        step_dir.mkdir(parents=True, exist_ok=True)
        path = step_dir / STEP_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)
        return path


def load_steps(results_dir: Path) -> list[StepRecord]:
    """Every step saved under `results_dir`, in the order they ran."""
    root = results_dir / STEPS_DIR
    if not root.is_dir():
        return []
    steps = []
    for path in sorted(root.glob(f"*/{STEP_FILE}")):
        try:
            steps.append(StepRecord.from_json(json.loads(path.read_text())))
        except (OSError, ValueError, KeyError):
            continue
    return sorted(steps, key=lambda s: s.started)


def step_for(steps: list[StepRecord], commit: str) -> StepRecord | None:
    """The last step that ran on `commit` (a full or abbreviated id)."""
    found = [s for s in steps if s.commit.startswith(commit) or commit.startswith(s.commit)]
    return found[-1] if found else None
