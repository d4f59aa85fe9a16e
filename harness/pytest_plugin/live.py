"""Progress of a run (the controller's view): per kernel, its stage and its cases done out
of its total with their outcomes, and an ETA (harness/progress.py).

- `--live` (what `kmatrix run` asks for on a terminal): a live table drawn with rich, in
  place of pytest's own progress output (kmatrix run turns pytest's terminal reporter off);
  at the end, the summary with every case that failed, errored or crashed;
- otherwise (CI logs, plain pytest): a plain line per kernel through pytest's terminal
  reporter when something changed, at most every `--progress-every` seconds.

Boot stages come from the VMs this process boots (a run without xdist); with xdist, the
workers boot, and a kernel shows "running" from its first verdict on.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from ..nodeid import kernel_label_of
from ..progress import RunProgress, expected_durations, render_table, showing
from .session import SessionState

#: seconds between plain progress lines (CI logs)
DEFAULT_EVERY = 60.0


def earlier_durations(config: pytest.Config, results_dir: Path) -> dict[str, float]:
    """Durations an earlier run recorded: --durations-from, else the newest results folder
    beside this run's that has a results.json."""
    given = config.getoption("durations_from", None)
    candidates = [Path(given)] if given else sorted(
        (p for p in results_dir.parent.glob("*") if p != results_dir and p.is_dir()),
        key=lambda p: p.stat().st_mtime, reverse=True)
    for folder in candidates:
        path = folder / "results.json" if folder.is_dir() else folder
        try:
            return expected_durations(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return {}


class LiveProgress:
    """Registered on the controller (or the only process) of a run with kernels."""

    def __init__(self, config: pytest.Config, live: bool) -> None:
        """Made before the kernels are acquired (their downloads and builds show)."""
        self.config = config
        self.state: SessionState | None = None
        self.live = live
        workers = getattr(config.option, "numprocesses", None) or 1
        self.progress = RunProgress(workers=int(workers) if isinstance(workers, int) else 1)
        self.every = float(config.getoption("progress_every"))
        self._last_line = 0.0
        self._stack = ExitStack()
        self._live: Any = None
        self._stack.enter_context(showing(self.progress))
        if live:
            from rich.console import Console
            from rich.live import Live

            self.console = Console(file=sys.stdout)
            self._live = self._stack.enter_context(Live(
                render_table(self.progress), console=self.console, refresh_per_second=2,
                transient=False, redirect_stdout=True, redirect_stderr=True))
            self.progress.on_change = self._redraw
            # the boot's log lines would tear the live view: its stages are in the table
            self._quiet = [logging.getLogger(n) for n in ("kmatrix.vm", "kmatrix")]
            self._levels = [lg.level for lg in self._quiet]
            for lg in self._quiet:
                lg.setLevel(logging.WARNING)

    def start(self, state: SessionState) -> None:
        """The kernels are known (after SessionState.from_config)."""
        self.state = state
        self.progress.expected = earlier_durations(self.config, state.results_dir)
        for kernel in state.kernels:
            self.progress.kernel(kernel.label)
        self._redraw()

    def close(self) -> None:
        """Stop the live view (idempotent); the loggers get their levels back."""
        self._stack.close()
        if self.live:
            for lg, level in zip(self._quiet, self._levels, strict=True):
                lg.setLevel(level)

    def _redraw(self) -> None:
        if self._live is not None:
            self._live.update(render_table(self.progress))

    def _lines(self, terminal: Any, force: bool = False) -> None:
        if self.live or terminal is None:
            return
        now = time.monotonic()
        if force or now - self._last_line >= self.every:
            self._last_line = now
            terminal.write_line("")
            for line in self.progress.lines():
                terminal.write_line(line)

    # -- hooks ---------------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._collected([item.nodeid for item in session.items])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if not any(k.total for k in self.progress.kernels.values()):
            self._collected(ids)

    def _collected(self, nodeids: list[str]) -> None:
        if self.state is None:
            return
        labels = [k.label for k in self.state.kernels]
        by_label: dict[str, list[str]] = {label: [] for label in labels}
        for nodeid in nodeids:
            label = kernel_label_of(nodeid, labels)
            if label is not None:
                by_label[label].append(nodeid)
        for label, ids in by_label.items():
            self.progress.collected(label, ids)

    @pytest.hookimpl(trylast=True)  # after the recorder has its verdict
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown" or self.state is None:
            return
        case = self.state.results.case(report.nodeid)
        if case is None:
            return
        self.progress.case_done(case.kernel, case.nodeid, case.status.symbol, case.duration)
        self._lines(self.config.pluginmanager.get_plugin("terminalreporter"))

    def pytest_sessionfinish(self) -> None:
        self._lines(self.config.pluginmanager.get_plugin("terminalreporter"), force=True)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.close()
        if not self.live:
            return
        recorder = config.pluginmanager.get_plugin("kmatrix-results")
        if recorder is not None:  # pytest's own summary is off in live mode
            for line, alarm in recorder.summary_lines(failures=True):
                self.console.print(line, style="bold red" if alarm else None,
                                   markup=False, highlight=False)
