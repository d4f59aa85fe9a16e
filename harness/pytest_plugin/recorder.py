"""Reports -> the run's results (in the xdist controller, or the only process), and the
reports written at the end of the session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ..nodeid import kernel_label_of
from ..results.model import CaseResult, Status
from .items import GUEST_PROPERTY
from .session import SessionState


class ResultRecorder:
    """Turns reports into the run's results (in the xdist controller, or the only process)
    and writes JUnit, JSON and the Markdown matrix at the end."""

    def __init__(self, state: SessionState) -> None:
        self.state = state
        #: host seconds per node id over its phases so far: a guest item does its work in
        #: setup (boot, then the case in the guest), so the call phase alone would be ~0
        self._spent: dict[str, float] = {}

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        label = kernel_label_of(report.nodeid, [k.label for k in self.state.kernels])
        if label is None:
            return
        spent = self._spent[report.nodeid] = self._spent.get(report.nodeid, 0.0) + (
            report.duration)
        props = dict(report.user_properties)
        if "kmatrix_boot" in props:
            self.state.note_boot(label, json.loads(str(props["kmatrix_boot"])))
        status: Status | None = None
        if report.when == "setup" and report.failed:
            status = Status.ERROR
        elif report.when == "setup" and report.skipped:
            status = Status.SKIP
        elif report.when == "call":
            status = (Status.PASS if report.passed
                      else Status.SKIP if report.skipped else Status.FAIL)
            if status is Status.FAIL and props.get("kmatrix_status") == "crash":
                status = Status.CRASH
        elif report.when == "teardown" and report.failed:
            status = Status.ERROR
        if status is None:
            return
        text = "" if report.passed else report.longreprtext
        message = text
        if report.skipped and isinstance(report.longrepr, tuple):
            message = str(report.longrepr[2])
        elif report.skipped and hasattr(report, "wasxfail"):
            message = f"xfail: {report.wasxfail}"
        first = message.strip().splitlines()[0] if message.strip() else ""
        self.state.record(CaseResult(
            report.nodeid, label, _feature_of(report.nodeid), status, message=first,
            details=text, duration=spent,
            guest_duration=float(str(props.get("kmatrix_guest_s", 0) or 0)),
            observed=str(props.get(f"{GUEST_PROPERTY}observed", ""))))

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int,
                                config: pytest.Config) -> None:
        paths = self.state.write_reports()
        tr = terminalreporter
        tr.section("kmatrix")
        for label, info in self.state.results.kernels.items():
            boots = ", ".join(f"{s:.1f}s" for s in info.boots.values()) or "none"
            tr.write_line(f"{label}: {info.release or '?'} accel={info.accel or '?'} "
                          f"boots={len(info.boots)} ({boots})")
        tr.write_line("")
        for line in paths["matrix"].read_text().splitlines():
            if line.startswith(("| ", "|---")):
                tr.write_line(line)
        tr.write_line("")
        for name, path in paths.items():
            tr.write_line(f"{name}: {path}")
        tr.write_line(f"console logs: {self.state.results_dir}/console-*.log")


def _feature_of(nodeid: str) -> str:
    module = Path(nodeid.split("::", 1)[0]).stem
    return module.removeprefix("test_")


