"""Reports -> the run's results (in the xdist controller, or the only process), and the
reports written at the end of the session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ..errors import ExitCode
from ..nodeid import kernel_label_of
from ..results.model import CaseResult, Status
from ..results.phases import PhaseReport, amend_late, combine
from .items import GUEST_PROPERTY
from .session import SessionState


class ResultRecorder:
    """Turns reports into the run's results (in the xdist controller, or the only process):
    the phases of each (case, kernel) are kept until its teardown report, then combined
    into one verdict (harness.results.phases)."""

    def __init__(self, state: SessionState) -> None:
        self.state = state
        #: node id -> the phases reported so far (a case is recorded at its teardown)
        self._phases: dict[str, list[PhaseReport]] = {}
        #: host seconds per node id over its phases so far: a guest item does its work in
        #: setup (boot, then the case in the guest), so the call phase alone would be ~0
        self._spent: dict[str, float] = {}
        self._props: dict[str, dict[str, object]] = {}
        #: host node id -> kernel messages that came after its verdict (not applied yet)
        self._late: dict[str, list[str]] = {}
        #: VMs kept for the user (--keep-failed), as the workers reported them
        self.kept: list[dict[str, Any]] = []

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        label = kernel_label_of(report.nodeid, [k.label for k in self.state.kernels])
        if label is None:
            return
        self._spent[report.nodeid] = self._spent.get(report.nodeid, 0.0) + report.duration
        props = dict(report.user_properties)
        self._props[report.nodeid] = props
        for key, value in report.user_properties:  # each boot of the case (--rerun-failed)
            if key == "kmatrix_boot":
                self.state.note_boot(label, json.loads(str(value)))
            elif key == "kmatrix_kept":
                self.kept.append(json.loads(str(value)))
        if "kmatrix_late" in props:
            for nodeid, lines in json.loads(str(props.pop("kmatrix_late"))).items():
                self._late.setdefault(nodeid, []).extend(lines)
        text = "" if report.passed else report.longreprtext
        if report.skipped and isinstance(report.longrepr, tuple):
            text = str(report.longrepr[2])
        self._phases.setdefault(report.nodeid, []).append(PhaseReport(
            report.when or "", report.outcome, text,
            xfail=str(getattr(report, "wasxfail", "") or ""),
            crash=report.when == "call" and props.get("kmatrix_status") == "crash"))
        if report.when == "teardown":
            self._finish(report.nodeid, label)

    def _finish(self, nodeid: str, label: str) -> None:
        verdict = combine(self._phases.pop(nodeid, []))
        props = self._props.pop(nodeid, {})
        status, message, details = verdict.status, verdict.message, verdict.details
        if "kmatrix_flaky" in props and status is Status.PASS:
            failed = json.loads(str(props["kmatrix_flaky"]))
            status = Status.FLAKY
            message = (f"flaky: failed {len(failed)} time(s), then passed on a fresh boot "
                       "of the same kernel")
            details = "\n\n".join(f"attempt {i}: {text}" for i, text in enumerate(failed, 1))
        self.state.record(CaseResult(
            nodeid, label, _feature_of(nodeid), status, message=message,
            details=details, duration=self._spent.pop(nodeid, 0.0),
            guest_duration=float(str(props.get("kmatrix_guest_s", 0) or 0)),
            observed=str(props.get(f"{GUEST_PROPERTY}observed", "")),
            output=str(props.get("kmatrix_profile", "")),
            timing=json.loads(str(props.get("kmatrix_timing", "{}"))),
            evidence=json.loads(str(props.get("kmatrix_evidence", "{}")))))
        self._apply_late()

    def _apply_late(self) -> None:
        """Late kernel messages go to their (already recorded) case."""
        for nodeid in list(self._late):
            case = self.state.results.case(nodeid)
            if case is not None:
                amend_late(case, self._late.pop(nodeid))

    def finish_pending(self) -> None:
        """Cases interrupted before their teardown report: one verdict each all the same."""
        labels = [k.label for k in self.state.kernels]
        for nodeid in list(self._phases):
            label = kernel_label_of(nodeid, labels)
            if label is not None:
                self._finish(nodeid, label)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the reports (also after an interrupt: partial results are results), and
        make a kernel that could not be booted the run's exit status (6)."""
        self.finish_pending()
        self.paths = self.state.write_reports()
        if self.state.infra_failures() and session.exitstatus in (
                pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            session.exitstatus = ExitCode.INFRA_ERROR

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int,
                                config: pytest.Config) -> None:
        tr = terminalreporter
        tr.section("kmatrix")
        for line, alarm in self.summary_lines():
            tr.write_line(line, red=alarm, bold=alarm)

    def summary_lines(self, failures: bool = False) -> list[tuple[str, bool]]:
        """The run's summary (kernels and boots, the matrix, warnings, where the reports
        are), each line with whether it is an alarm; `failures`: also each case that did
        not pass or skip, with its first line (the live view has no pytest summary)."""
        out: list[tuple[str, bool]] = []
        results = self.state.results
        for label, info in results.kernels.items():
            boots = ", ".join(f"{s:.1f}s" for s in info.boots.values()) or "none"
            out.append((f"{label}: {info.release or '?'} accel={info.accel or '?'} "
                        f"boots={len(info.boots)} ({boots})", False))
        out.append(("", False))
        paths = getattr(self, "paths", {})
        if "matrix" in paths:
            out += [(line, False) for line in paths["matrix"].read_text().splitlines()
                    if line.startswith(("| ", "|---"))]
            out.append(("", False))
        if failures:
            for case in results.cases:
                if case.status in (Status.FAIL, Status.ERROR, Status.CRASH):
                    out.append((f"{case.status.symbol.upper()} {case.nodeid}: "
                                f"{case.message}", True))
        for label, count in self.state.all_skipped().items():
            out.append((f"WARNING: every case on {label} was skipped ({count} of {count}): "
                        "nothing was verified on this kernel", True))
        for label, why in self.state.infra_failures().items():
            out.append((f"ERROR: {label}: {why.splitlines()[0]}", True))
        for kept in self.kept:
            out.append((f"KEPT: the VM of {kept['nodeid']} on {kept['label']} is still running "
                        f"(leash pid {kept['pid']}), the case held before its teardown: "
                        f"kmatrix attach {kept['socket']}  (exit its shell to stop it)", True))
        out += [(f"{name}: {path}", False) for name, path in paths.items()]
        out.append((f"console logs: {self.state.results_dir}/console-*.log", False))
        return out


def _feature_of(nodeid: str) -> str:
    module = Path(nodeid.split("::", 1)[0]).stem
    return module.removeprefix("test_")


