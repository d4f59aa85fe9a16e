"""One case in a forked child: run it through pytest's runtest protocol, enforce its timeout,
send its reports back as plain data.

The fork isolates cases from each other and lets the agent enforce the case timeout (SIGUSR1
for Python stacks, then SIGKILL of the child's process group) while staying alive.
"""

from __future__ import annotations

import faulthandler
import gc
import io
import json
import os
import resource
import select
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from .isolation import enter_fresh_netns

if TYPE_CHECKING:
    import cProfile

TRACEBACK_SIGNAL = signal.SIGUSR1


class ReportCollector:
    """pytest plugin, registered once in the agent's session (registering a plugin costs
    milliseconds): in a case process it keeps the reports of the one item it runs, and
    with `hold` (--keep-failed) holds a failed case before its teardown: the verdict so
    far goes to the agent, the process waits with its fixtures (namespaces, BPF objects)
    in place until it is killed."""

    def __init__(self) -> None:
        self.reports: list[Any] = []
        self.hold_fd: int | None = None

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.reports.append(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(self, item: Any, nextitem: Any) -> None:
        if self.hold_fd is None or not any(r.failed for r in self.reports):
            return
        payload = {"reports": [serialize_report(r) for r in self.reports],
                   "held": os.getpid()}
        _write_all(self.hold_fd, json.dumps(payload).encode())
        os.close(self.hold_fd)
        while True:  # until the VM goes down (or someone kills us)
            signal.pause()


#: the agent registers it with its pytest session (see agent.serve)
REPORTS = ReportCollector()


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


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


#: the names in sys.modules when it last had as many (the agent's, inherited by each case)
_MODULES: frozenset[str] = frozenset()


def _modules() -> frozenset[str]:
    """sys.modules' names, as the agent knew them before the fork when it has not changed
    since: a new set in the case process would touch every name (its reference count), and
    so copy every page holding one (a copy-on-write fault each, ~35 us under TCG)."""
    global _MODULES
    if len(sys.modules) != len(_MODULES):
        _MODULES = frozenset(sys.modules)
    return _MODULES


def _child(item: Any, write_fd: int, trace_fd: int, out_fd: int, hold: bool) -> None:
    """Runs in the forked child: one collected item, its reports as JSON to write_fd."""
    os.setpgid(0, 0)  # so a timeout kills the tools the case started too
    faulthandler.register(TRACEBACK_SIGNAL, file=trace_fd, all_threads=True)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    payload: dict[str, Any]
    profiler = _profiler() if os.environ.get(PROFILE_ENV) == "1" else None
    imported_before = _modules()
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    #: monotonic clock readings (one clock for the whole guest): the case process's phases
    marks = {"child": time.monotonic()}
    try:
        if profiler is not None:
            profiler.enable()
        enter_fresh_netns()  # each case starts clean: its own network namespace, lo up
        marks["netns"] = time.monotonic()
        REPORTS.reports = []
        REPORTS.hold_fd = write_fd if hold else None
        item.ihook.pytest_runtest_protocol(item=item, nextitem=None)
        marks["protocol"] = time.monotonic()
        payload = {"reports": [serialize_report(r) for r in REPORTS.reports]}
    except BaseException as exc:  # report anything, including SystemExit
        payload = {"reports": [], "collect_errors": [f"agent child: {exc!r}"]}
    if profiler is not None:
        profiler.disable()
        payload["profile"] = profile_text(profiler)
    # what the case imported (lazily, in its fixtures or body): the agent imports it too,
    # so the next case's process inherits it instead of importing it again
    payload["imported"] = (sorted(set(sys.modules) - imported_before)
                           if len(sys.modules) != len(imported_before) else [])
    # minor page faults of the case process: after the fork, the first write to each page
    # of the agent's memory is one (copy-on-write), and under TCG each costs dearly
    payload["minflt"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    marks["sent"] = time.monotonic()
    payload["marks"] = marks
    _write_all(write_fd, json.dumps(payload).encode())
    os._exit(0)


#: set to 1 in the guest (kmatrix run --guest-profile): each case runs under cProfile and
#: its busiest functions go back with the verdict
PROFILE_ENV = "KMATRIX_GUEST_PROFILE"


def _profiler() -> cProfile.Profile:
    import cProfile  # only with --guest-profile: the agent's imports are every boot's

    return cProfile.Profile()


def profile_text(profiler: cProfile.Profile, top: int = 25) -> str:
    """The `top` functions by cumulative time, as pstats prints them."""
    import pstats

    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def run_item(item: Any, timeout: float, *, hold_on_failure: bool = False) -> dict[str, Any]:
    """Fork, run `item` in the child, enforce `timeout`; the verdict as plain data.
    `hold_on_failure`: a failed case's process is left waiting before its teardown (the
    verdict then says "held": its pid)."""
    read_fd, write_fd = os.pipe()
    # the case's output and its stacks on a timeout: memory files (no filesystem lookups)
    trace_fd = os.memfd_create("kmatrix-trace")
    out_fd = os.memfd_create("kmatrix-out")
    start = time.monotonic()
    # what the agent holds is not the child's to collect: without this, the child's first
    # garbage collection touches (and so copies) every page of the agent's objects
    gc.freeze()
    _modules()  # in the agent: see its docstring
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(item, write_fd, trace_fd, out_fd, hold_on_failure)
    os.close(write_fd)
    chunks: list[bytes] = []
    received = start  # when the verdict's first bytes came
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
            if not chunks:
                received = time.monotonic()
            chunks.append(data)
            if hold_on_failure and _held(chunks):
                os.close(read_fd)
                return {**json.loads(b"".join(chunks)), "duration": time.monotonic() - start,
                        "timed_out": False, "traceback": "", "output": _read_all(out_fd)}
    traceback = ""
    if timed_out:
        try:
            os.kill(pid, TRACEBACK_SIGNAL)
            time.sleep(1.0)
            traceback = _read_all(trace_fd)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status, usage = os.wait4(pid, 0)
    reaped = time.monotonic()
    os.close(read_fd)
    output = _read_all(out_fd)[-8000:]
    os.close(trace_fd)
    os.close(out_fd)
    result: dict[str, Any] = {"duration": time.monotonic() - start, "timed_out": timed_out,
                              "traceback": traceback, "output": output,
                              # the CPU the case process used (user + system), of its
                              # `duration`: under TCG the matrix is bound by the CPU
                              "cpu_s": usage.ru_utime + usage.ru_stime}
    if chunks and not timed_out:
        try:
            result.update(json.loads(b"".join(chunks)))
        except ValueError:
            result["collect_errors"] = ["agent: unreadable verdict from the case process"]
        else:
            result["phases"] = phases(start, result.pop("marks", {}), received, reaped)
    elif not timed_out:
        result["collect_errors"] = [f"agent: the case process {exit_text(status)} without "
                                    "sending a verdict"]
    return result


def phases(start: float, marks: dict[str, float], received: float,
           reaped: float) -> dict[str, float]:
    """Where a case process's time went, in seconds (kmatrix bench prints it): `fork` to the
    child's first instruction of ours, its fresh `netns`, pytest's runtest `protocol`, its
    `verdict` (reports, imports, faults), the `handoff` of its first bytes to the agent,
    and the `exit`: the rest of the verdict, the child's address space torn down (its
    pipe's end closes after that), reaped."""
    try:
        return {"fork": marks["child"] - start, "netns": marks["netns"] - marks["child"],
                "protocol": marks["protocol"] - marks["netns"],
                "verdict": marks["sent"] - marks["protocol"],
                "handoff": received - marks["sent"], "exit": reaped - received}
    except KeyError:  # the child failed before its marks were all taken
        return {}


def _held(chunks: list[bytes]) -> bool:
    """Whether the child's output so far is a whole verdict of a held case."""
    try:
        return "held" in json.loads(b"".join(chunks))
    except ValueError:
        return False


def _read_all(fd: int) -> str:
    """The whole content of memory file `fd`, as text."""
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0).decode(errors="replace") if size else ""


def exit_text(status: int) -> str:
    """How a process ended, from its wait status: `was killed by SIGSEGV`, `exited 3`."""
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"
