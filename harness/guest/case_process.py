"""One case in a forked child: run it through pytest's runtest protocol, enforce its timeout,
send its reports back as plain data.

The fork isolates cases from each other and lets the agent enforce the case timeout (SIGUSR1
for Python stacks, then SIGKILL of the child's process group) while staying alive.
"""

from __future__ import annotations

import faulthandler
import json
import os
import select
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

TRACEBACK_SIGNAL = signal.SIGUSR1


class _ReportCollector:
    """pytest plugin for the child: keeps the reports of the one item it runs."""

    def __init__(self, reports: list[Any]) -> None:
        self.reports = reports

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.reports.append(report)


def serialize_report(report: Any) -> dict[str, Any]:
    reason = ""
    if report.skipped and isinstance(report.longrepr, tuple):
        # pytest's "Skipped: " prefix is added again by the host's pytest.skip
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
    out: dict[str, Any] = {
        "when": report.when,
        "outcome": report.outcome,
        "longrepr": "" if report.passed else (reason or report.longreprtext),
        "duration": report.duration,
        "sections": [[k, v] for k, v in report.sections],
        # what the case recorded with pytest's record_property (e.g. "observed")
        "user_properties": [[str(k), str(v)] for k, v in report.user_properties],
    }
    if report.skipped and hasattr(report, "wasxfail"):  # pytest.xfail() / an xfail marker
        out["wasxfail"] = str(report.wasxfail)
    return out


def _child(item: Any, write_fd: int, trace_path: str, out_path: str) -> None:
    """Runs in the forked child: one collected item, its reports as JSON to write_fd."""
    os.setpgid(0, 0)  # so a timeout kills the tools the case started too
    trace = open(trace_path, "w")  # noqa: SIM115 - lives until _exit
    faulthandler.register(TRACEBACK_SIGNAL, file=trace, all_threads=True)
    out = os.open(out_path, os.O_WRONLY | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(out, 2)
    payload: dict[str, Any]
    try:
        reports: list[Any] = []
        collector = _ReportCollector(reports)
        item.config.pluginmanager.register(collector, "kmatrix-case-reports")
        item.ihook.pytest_runtest_protocol(item=item, nextitem=None)
        payload = {"reports": [serialize_report(r) for r in reports]}
    except BaseException as exc:  # report anything, including SystemExit
        payload = {"reports": [], "collect_errors": [f"agent child: {exc!r}"]}
    data = json.dumps(payload).encode()
    while data:
        n = os.write(write_fd, data)
        data = data[n:]
    os._exit(0)


def run_item(item: Any, timeout: float) -> dict[str, Any]:
    """Fork, run `item` in the child, enforce `timeout`; the verdict as plain data."""
    read_fd, write_fd = os.pipe()
    files = []
    for prefix in ("kmatrix-trace-", "kmatrix-out-"):
        f = tempfile.NamedTemporaryFile(prefix=prefix, delete=False)  # noqa: SIM115
        f.close()
        files.append(f.name)
    trace_path, out_path = files
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(item, write_fd, trace_path, out_path)
    os.close(write_fd)
    chunks: list[bytes] = []
    timed_out = False
    deadline = start + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([read_fd], [], [], min(left, 1.0))
        if ready:
            data = os.read(read_fd, 65536)
            if not data:
                break
            chunks.append(data)
    traceback = ""
    if timed_out:
        try:
            os.kill(pid, TRACEBACK_SIGNAL)
            time.sleep(1.0)
            traceback = Path(trace_path).read_text(errors="replace")
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.waitpid(pid, 0)
    os.close(read_fd)
    output = Path(out_path).read_text(errors="replace")[-8000:]
    for path in files:
        os.unlink(path)
    result: dict[str, Any] = {"duration": time.monotonic() - start, "timed_out": timed_out,
                              "traceback": traceback, "output": output}
    if chunks and not timed_out:
        try:
            result.update(json.loads(b"".join(chunks)))
        except ValueError:
            result["collect_errors"] = ["agent: unreadable verdict from the case process"]
    elif not timed_out:
        result["collect_errors"] = ["agent: the case process died without a verdict"]
    return result
