"""kmatrix pytest plugin (registered through the `pytest11` entry point).

Two roles, chosen by the environment:

- **host** (default): `--kernel SPEC` (repeatable) parametrizes every case under the case
  folders (ini `kmatrix_case_dirs`, default `cases`) over the kernels, so the session holds
  one item per (case, kernel) with the kernel in the id (`test_x[debian-6.12]`). Each such
  item is a `GuestItem`: its body runs inside a VM booted with that kernel (one boot per
  kernel per process, restarted after a crash), and its verdict, evidence and the kernel's
  messages come back to the host. -k, -m, --lf, -x work on these items as usual.
- **guest** (KMATRIX_GUEST=1, set by the guest agent): `requires` markers become skips with
  the probe's evidence; nothing else changes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from .errors import BootError, KmatrixError, VMLostError
from .guest.markers import REQUIRES_HELP, skip_unsupported
from .results import CaseResult, Status
from .session import SessionState, kernel_label_of, state_key
from .verdict import Phases, guest_properties, interpret

KERNEL_FIXTURE = "kmatrix_kernel"
DEFAULT_CASE_TIMEOUT = 180.0
#: prefix of the host item's user properties that carry a guest case's record_property
GUEST_PROPERTY = "guest."


def in_guest() -> bool:
    return os.environ.get("KMATRIX_GUEST") == "1"


# -- options and configuration -----------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kmatrix", "kmatrix: run cases inside booted kernels")
    group.addoption("--kernel", action="append", default=[], metavar="SPEC",
                    help="kernel to boot (repeatable): debian:X.Y, debian-source:X.Y, host, "
                         "a kernel image, a kernel tree or tarball")
    group.addoption("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                    help="QEMU accelerator; auto uses KVM only where it boots a kernel")
    group.addoption("--vm-cpus", type=int, default=None,
                    help="guest CPUs (default: 2, fewer when parallel VMs would outnumber "
                         "the host's cores: oversubscribed TCG vCPUs slow boots 5x)")
    group.addoption("--vm-memory", default="2G", help="guest memory (default 2G)")
    group.addoption("--boot-timeout", type=float, default=300.0,
                    help="seconds a boot may go without a sign of progress (kernel console "
                         "output before the agent starts, then the agent's progress "
                         "messages); a boot never takes more than 3x this (default 300)")
    group.addoption("--case-timeout", type=float, default=DEFAULT_CASE_TIMEOUT,
                    help="per-case timeout in the guest, seconds (default 180); a case may "
                         "set its own with @pytest.mark.case_timeout(N)")
    group.addoption("--watchdog-grace", type=float, default=60.0,
                    help="host watchdog: seconds past a case's timeout before the guest "
                         "counts as hung and the VM is restarted (default 60)")
    group.addoption("--results-dir", default=None,
                    help="where console logs, JUnit XML and the matrix go "
                         "(default results/<date-time>)")
    parser.addini("kmatrix_case_dirs", type="paths", default=[],
                  help="folders whose tests run inside the guest (default: cases)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", REQUIRES_HELP)
    config.addinivalue_line("markers", "case_timeout(seconds): per-case guest timeout")
    if in_guest():
        return
    state = SessionState.from_config(config)
    config.stash[state_key] = state
    if state.kernels and not hasattr(config, "workerinput"):
        config.pluginmanager.register(ResultRecorder(state), "kmatrix-results")
    if state.kernels and config.pluginmanager.hasplugin("xdist"):
        from .xdist_sched import KernelSchedulingPlugin

        config.pluginmanager.register(KernelSchedulingPlugin(), "kmatrix-xdist")


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(state_key, None)
    if state is not None:
        state.pool.close_all()


# -- collection ------------------------------------------------------------------------
def _is_case(config: pytest.Config, path: Path) -> bool:
    state = config.stash.get(state_key, None)
    return state is not None and state.is_case_path(path)


@pytest.hookimpl(trylast=True)  # after @parametrize marks: the kernel id comes last
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if in_guest() or not _is_case(metafunc.config, metafunc.definition.path):
        return
    state = metafunc.config.stash[state_key]
    if not state.kernels:
        return
    labels = [k.label for k in state.kernels]
    metafunc.fixturenames.append(KERNEL_FIXTURE)
    metafunc.parametrize(KERNEL_FIXTURE, labels, ids=labels, indirect=True)


@pytest.fixture
def kmatrix_kernel(request: pytest.FixtureRequest) -> str:
    """The label of the kernel this item runs on (host side only)."""
    return str(request.param)


def guest_name(name: str, label: str) -> str:
    """`test_x[a-debian-6.12]` -> `test_x[a]`; `test_x[debian-6.12]` -> `test_x`."""
    if name.endswith(f"[{label}]"):
        return name[: -len(label) - 2]
    if name.endswith(f"-{label}]"):
        return name[: -len(label) - 2] + "]"
    raise ValueError(f"{name}: kernel id {label} is not the last id component")


class GuestFailure(Exception):
    """A failure whose text came from the guest (or from the host's evidence of a crash)."""

    def __init__(self, text: str, status: Status = Status.FAIL) -> None:
        super().__init__(text)
        self.text = text
        self.status = status


class GuestItem(pytest.Item):
    """One (case, kernel) pair; its body runs in the guest booted with that kernel."""

    def __init__(self, *, label: str, guest_nodeid: str, timeout: float,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.label = label
        self.guest_nodeid = guest_nodeid
        self.timeout = timeout
        self._phases = Phases()
        self._crash: GuestFailure | None = None

    @property
    def state(self) -> SessionState:
        return self.config.stash[state_key]

    def setup(self) -> None:
        try:
            vm = self.state.pool.get(self.label)
        except BootError:  # reported as ERROR (infrastructure), with the boot's evidence
            self.user_properties.append(("kmatrix_boot", json.dumps(
                self.state.pool.boot_record(self.label))))
            raise
        self.user_properties.append(("kmatrix_boot", json.dumps(self.state.pool.boot_record(
            self.label))))
        try:
            verdict = vm.run_case(self.guest_nodeid, self.timeout)
        except VMLostError as exc:
            self.user_properties.append(("kmatrix_status", "crash"))
            self._crash = GuestFailure(_crash_text(exc, vm.console_log), Status.CRASH)
            return
        self.user_properties.append(("kmatrix_guest_s", f"{verdict.get('duration', 0):.3f}"))
        self.user_properties += [(f"{GUEST_PROPERTY}{k}", v)
                                 for k, v in guest_properties(verdict).items()]
        self._phases = interpret(verdict, self.guest_nodeid, self.timeout)
        if self._phases.setup_error is not None:
            raise GuestFailure(self._phases.setup_error, Status.ERROR)
        if self._phases.setup_skip is not None:
            pytest.skip(self._phases.setup_skip)

    def runtest(self) -> None:
        if self._crash is not None:
            raise self._crash
        if self._phases.call_error is not None:
            raise GuestFailure(self._phases.call_error)
        if self._phases.call_skip is not None:
            pytest.skip(self._phases.call_skip)
        if self._phases.xfail is not None:
            pytest.xfail(self._phases.xfail)

    def teardown(self) -> None:
        phases, self._phases = self._phases, Phases()
        self._crash = None
        if phases.teardown_error is not None:
            raise GuestFailure(phases.teardown_error, Status.ERROR)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, GuestFailure):
            return f"[{self.label}] {excinfo.value.text}"
        if isinstance(excinfo.value, KmatrixError):
            err = excinfo.value
            tail = getattr(err, "console_tail", "")
            return f"[{self.label}] {err.describe()}" + (
                f"\n--- console tail ---\n{tail}" if tail else "")
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.name} (in guest {self.label})"


def _crash_text(exc: VMLostError, console_log: Path) -> str:
    parts = [str(exc)]
    if exc.panic:
        parts.append(f"--- kernel report ---\n{exc.panic}")
    parts.append(f"--- console tail ({console_log}) ---\n{exc.console_tail}")
    parts.append("the VM was stopped; the next case on this kernel boots a new one")
    return "\n".join(parts)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    if in_guest():
        return
    state = config.stash.get(state_key, None)
    if state is None:
        return
    out: list[pytest.Item] = []
    for item in items:
        if not isinstance(item, pytest.Function) or not state.is_case_path(item.path):
            out.append(item)
            continue
        if not state.kernels:
            item.add_marker(pytest.mark.skip(
                reason="guest case: give --kernel SPEC (or use `kmatrix run`) to run it"))
            out.append(item)
            continue
        label = str(item.callspec.params[KERNEL_FIXTURE])
        assert item.parent is not None
        mark = item.get_closest_marker("case_timeout")
        timeout = float(mark.args[0]) if mark else state.case_timeout
        guest_id = f"{item.nodeid.rsplit('::', 1)[0]}::{guest_name(item.name, label)}"
        gi = GuestItem.from_parent(item.parent, name=item.name, label=label,
                                   guest_nodeid=guest_id, timeout=timeout)
        gi.own_markers = list(item.own_markers)
        gi.keywords.update(item.keywords)
        gi.extra_keyword_matches.update(item.extra_keyword_matches)
        out.append(gi)
        state.pool.nodeids.setdefault(label, []).append(guest_id)
    # kernel by kernel: one boot per kernel serves all of its cases
    order = {k.label: i for i, k in enumerate(state.kernels)}
    out.sort(key=lambda it: order.get(getattr(it, "label", ""), -1))
    items[:] = out


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if not isinstance(item, GuestItem):
        return
    if nextitem is None or getattr(nextitem, "label", None) != item.label:
        item.state.pool.close(item.label)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Setup and teardown errors of a guest item get the same short text as its call phase
    (pytest would print the host's traceback through the runner for them)."""
    report = yield
    if (isinstance(item, GuestItem) and call.excinfo is not None and call.when != "call"
            and isinstance(call.excinfo.value, GuestFailure | KmatrixError)):
        report.longrepr = item.repr_failure(call.excinfo)
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if in_guest():
        skip_unsupported(item)


# -- results -------------------------------------------------------------------------------
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


