"""kmatrix pytest plugin (registered through the `pytest11` entry point): the host side.

`--kernel SPEC` (repeatable) parametrizes every case under the case folders (ini
`kmatrix_case_dirs`, default `cases`) over the kernels, so the session holds one item per
(case, kernel) with the kernel in the id (`test_x[debian-6.12]`). Each such item is a
`GuestItem`: its body runs inside a VM booted with that kernel (one boot per kernel per
process, restarted after a crash), and its verdict, evidence and the kernel's messages come
back to the host. -k, -m, --lf, -x work on these items as usual.

The guest side is `harness.guest.plugin`, loaded by the agent; this plugin does nothing in
a guest (KMATRIX_GUEST=1).

- `options`     command-line options and ini keys
- `session`     per-run state in `config.stash`
- `pool`        the VMs of this process
- `items`       GuestItem: a host item whose body runs in the guest
- `verdict`     the guest's reports -> the host item's phases
- `recorder`    reports -> results -> junit.xml, matrix.md, ...
- `scheduling`  pytest-xdist: whole kernels per worker
- `live`        progress: a live table on a terminal (--live), plain lines otherwise
- `shards`      --shard I/N: which items a shard runs (`selection` applies it)
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Generator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from ..errors import KmatrixError
from ..guest.environment import in_guest
from ..guest.plugin import BPF_SHARED_HELP, CASE_TIMEOUT_HELP, NICS_HELP, REQUIRES_HELP
from ..targets.qemu.bytecode import allow_host_bytecode
from .items import KERNEL_FIXTURE, GuestFailure, GuestItem, guest_items
from .live import LiveProgress
from .options import add_options
from .recorder import ResultRecorder
from .selection import ShardSelection
from .session import SessionState, case_dirs, state_key


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def default_cases(config: pytest.Config, dirs: Sequence[Path]) -> list[str]:
    """What `kmatrix run` runs when given no test path: ini `kmatrix_default_cases`, else
    the case folders `dirs`."""
    defaults = [Path(p) for p in config.getini("kmatrix_default_cases")]
    return [str(d) for d in (defaults or dirs)]


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """`kmatrix run` with no test path, started outside the project: pytest looks for the
    initial conftests where it was started, meets the project's conftest.py (which names
    plugins) only while collecting the case folders, and refuses it there ("Defining
    'pytest_plugins' in a non-top-level conftest"). The case folders the run will collect
    are where the initial conftests are looked for instead (what pytest itself does when a
    path is given); which paths the run collects is still decided in pytest_configure."""
    known = early_config.known_args_namespace
    if in_guest() or not getattr(known, "cases_by_default", False) or known.file_or_dir:
        return
    known.file_or_dir = default_cases(early_config, case_dirs(early_config))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", REQUIRES_HELP)
    config.addinivalue_line("markers", CASE_TIMEOUT_HELP)
    config.addinivalue_line("markers", BPF_SHARED_HELP)
    config.addinivalue_line("markers", NICS_HELP)
    if in_guest():
        return
    progress = None
    if config.getoption("kernel") and not hasattr(config, "workerinput"):
        progress = LiveProgress(config, live=bool(config.getoption("live")))
        config.pluginmanager.register(progress, "kmatrix-progress")
    try:
        state = SessionState.from_config(config)
    except BaseException:
        if progress is not None:
            progress.close()
        raise
    if progress is not None:
        progress.start(state)
    config.stash[state_key] = state
    config.pluginmanager.register(ShardSelection(state), "kmatrix-shards")
    if state.kernels:
        allow_host_bytecode()  # the cases' rewritten modules, cached for the guest
    if (config.getoption("cases_by_default")
            and config.args_source != pytest.Config.ArgsSource.ARGS):
        # no test path was given (pytest's own parser says so): the case folders
        config.args = default_cases(config, state.case_dirs)
    interrupt_on_sigterm()
    if state.kernels and not hasattr(config, "workerinput"):
        config.pluginmanager.register(ResultRecorder(state), "kmatrix-results")
    if state.kernels and config.pluginmanager.hasplugin("xdist"):
        from .scheduling import KernelSchedulingPlugin

        config.pluginmanager.register(
            KernelSchedulingPlugin([k.label for k in state.kernels]), "kmatrix-xdist")


def interrupt_on_sigterm() -> None:
    """SIGTERM (a CI runner cancelling the job, `kill`) ends the run like Ctrl-C: VMs
    killed, partial reports written, exit status 2."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, handler)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After an interrupt, kill this process's VMs at once (no graceful shutdown)."""
    state = session.config.stash.get(state_key, None)
    if state is not None and session.exitstatus == pytest.ExitCode.INTERRUPTED:
        state.pool.close_all(graceful=False)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The expectations this run holds each kernel to (images/features.toml, the matrix's
    overrides, each kernel's version and config)."""
    state = config.stash.get(state_key, None)
    if state is None or not state.kernels or hasattr(config, "workerinput"):
        return []
    return expectation_lines(state)


def expectation_lines(state: SessionState) -> list[str]:
    from ..guest.probes import FEATURES

    lines = ["kmatrix expectations (images/features.toml; probed features):"]
    for kernel in state.kernels:
        table = state.expect.get(kernel.label, {})
        groups: dict[str, list[str]] = {}
        for feature in FEATURES:
            exp = table.get(feature)
            if exp is not None:
                groups.setdefault(exp.state, []).append(feature)
        config = "config " + (kernel.config.name if kernel.config else "unknown")
        parts = [f"{state_}: {', '.join(names)}" for state_, names in groups.items()]
        lines.append(f"  {kernel.label} ({kernel.release or 'release unknown'}, {config}): "
                     + "; ".join(parts))
    return lines


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(state_key, None)
    if state is not None:
        state.pool.close_all()


@pytest.hookimpl(trylast=True)  # after @parametrize marks: the kernel id comes last
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = metafunc.config.stash.get(state_key, None)
    if state is None or not state.kernels or not state.is_case_path(metafunc.definition.path):
        return
    labels = [k.label for k in state.kernels]
    metafunc.fixturenames.append(KERNEL_FIXTURE)
    metafunc.parametrize(KERNEL_FIXTURE, labels, ids=labels, indirect=True)


@pytest.fixture
def kmatrix_kernel(request: pytest.FixtureRequest) -> str:
    """The label of the kernel this item runs on (host side only)."""
    return str(request.param)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    state = config.stash.get(state_key, None)
    if state is not None:
        items[:] = guest_items(state, items)


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if not isinstance(item, GuestItem):
        return
    if nextitem is None or getattr(nextitem, "label", None) != item.label:
        item.note_late(item.state.pool.close(item.label))
        # the VM's final probe table (the agent probes the rest at shutdown)
        item.user_properties.append(("kmatrix_boot", json.dumps(
            item.state.pool.boot_record(item.label))))


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
