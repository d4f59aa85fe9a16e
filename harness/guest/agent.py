"""The guest agent: started by `vng --exec`, serves case runs over the control port.

It pre-imports pytest and the harness, runs the feature probes once, says "ready", then for
each request forks a child that runs one pytest node id in-process. The child's verdict
comes back through a pipe; the agent enforces the case timeout (SIGUSR1 for a traceback,
then SIGKILL of the child's process group) and attaches the kernel messages (/dev/kmsg)
that appeared during the case, so the host can fail a case whose kernel WARNed.
"""

from __future__ import annotations

import faulthandler
import json
import os
import select
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..protocol import PORT_NAME, LineBuffer, Message, encode

_TRACEBACK_SIGNAL = signal.SIGUSR1


def find_port(name: str = PORT_NAME) -> Path:
    for entry in Path("/sys/class/virtio-ports").glob("*"):
        try:
            if (entry / "name").read_text().strip() == name:
                return Path("/dev") / entry.name
        except OSError:
            continue
    raise RuntimeError(f"virtio-serial port {name} not found in /sys/class/virtio-ports")


class Kmsg:
    """Kernel log records that appear after `mark()`, read from /dev/kmsg."""

    def __init__(self) -> None:
        self._fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self._fd, 0, os.SEEK_END)

    def drain(self) -> list[str]:
        from ..console import kmsg_message

        out: list[str] = []
        while True:
            try:
                rec = os.read(self._fd, 8192)
            except BlockingIOError:
                return out
            except BrokenPipeError:  # records overwritten while we were away; go on
                continue
            if not rec:
                return out
            out.append(kmsg_message(rec.decode(errors="replace")))


class Collector:
    """A pytest plugin object that keeps every report of the run as plain data."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.collect_errors: list[str] = []

    def pytest_runtest_logreport(self, report: Any) -> None:
        reason = ""
        if report.skipped and isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2])
        self.reports.append({
            "when": report.when,
            "outcome": report.outcome,
            "longrepr": "" if report.passed else (reason or report.longreprtext),
            "duration": report.duration,
            "sections": [[k, v] for k, v in report.sections],
        })

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.collect_errors.append(report.longreprtext)


def _child(nodeid: str, write_fd: int, trace_path: str, out_path: str) -> None:
    """Runs in the forked child: one pytest node, verdict as JSON to write_fd."""
    os.setpgid(0, 0)  # so a timeout kills the tools the case started too
    trace = open(trace_path, "w")  # noqa: SIM115 - lives until _exit
    faulthandler.register(_TRACEBACK_SIGNAL, file=trace, all_threads=True)
    out = os.open(out_path, os.O_WRONLY | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(out, 2)
    payload: dict[str, Any]
    try:
        import pytest

        collector = Collector()
        code = pytest.main(
            ["-p", "no:cacheprovider", "-q", "--tb=long", "-o", "addopts=",
             "-p", "no:xdist", nodeid],
            plugins=[collector],
        )
        payload = {"exit": int(code), "reports": collector.reports,
                   "collect_errors": collector.collect_errors}
    except BaseException as exc:  # report anything, including SystemExit from pytest
        payload = {"exit": -1, "reports": [], "collect_errors": [f"agent child: {exc!r}"]}
    data = json.dumps(payload).encode()
    while data:
        n = os.write(write_fd, data)
        data = data[n:]
    os._exit(0)


def run_case(nodeid: str, timeout: float) -> dict[str, Any]:
    read_fd, write_fd = os.pipe()
    trace = tempfile.NamedTemporaryFile(prefix="kmatrix-trace-", delete=False)  # noqa: SIM115
    trace.close()
    output = tempfile.NamedTemporaryFile(prefix="kmatrix-out-", delete=False)  # noqa: SIM115
    output.close()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(nodeid, write_fd, trace.name, output.name)
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
            os.kill(pid, _TRACEBACK_SIGNAL)
            time.sleep(1.0)
            traceback = Path(trace.name).read_text(errors="replace")
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.waitpid(pid, 0)
    os.close(read_fd)
    os.unlink(trace.name)
    # pytest's own terminal output: only interesting when the run produced no verdict
    session_output = Path(output.name).read_text(errors="replace")[-8000:]
    os.unlink(output.name)
    result: dict[str, Any] = {"duration": time.monotonic() - start, "timed_out": timed_out,
                              "traceback": traceback, "output": session_output}
    if chunks and not timed_out:
        try:
            result.update(json.loads(b"".join(chunks)))
        except ValueError:
            result["collect_errors"] = ["agent: unreadable verdict from the case process"]
    elif not timed_out:
        result["collect_errors"] = ["agent: the case process died without a verdict"]
    return result


class Agent:
    def __init__(self, port: Path) -> None:
        self.fd = os.open(port, os.O_RDWR)
        self.buf = LineBuffer()

    def send(self, msg: Message) -> None:
        data = encode(msg)
        while data:
            n = os.write(self.fd, data)
            data = data[n:]

    def messages(self) -> Any:
        while True:
            data = os.read(self.fd, 65536)
            if not data:
                time.sleep(0.05)  # host side not connected yet / closed
                continue
            yield from self.buf.feed(data)


def _prewarm() -> None:
    """Import what every case needs once, so each forked case starts warm."""
    import importlib

    for name in ("pytest", "harness.plugin", "harness.guest.fixtures", "pyroute2"):
        try:
            importlib.import_module(name)
        except ImportError as exc:  # the case that needs it will report the error itself
            print(f"kmatrix agent: prewarm {name}: {exc}", file=sys.stderr)


def _run_probes() -> dict[str, dict[str, Any]]:
    try:
        from .probes import probe_all

        return {name: {"supported": r.supported, "detail": r.detail}
                for name, r in probe_all().items()}
    except Exception as exc:  # a broken probe module must not take the agent down
        return {"_error": {"supported": False, "detail": f"probes failed: {exc!r}"}}


def main() -> int:
    t0 = time.monotonic()
    agent = Agent(find_port())
    os.environ["KMATRIX_GUEST"] = "1"
    _prewarm()
    t_import = time.monotonic()
    probes = _run_probes()
    kmsg = Kmsg()
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    agent.send({"op": "ready", "release": os.uname().release, "probes": probes,
                "uptime": uptime, "import_s": t_import - t0,
                "probe_s": time.monotonic() - t_import, "python": sys.version.split()[0]})
    for msg in agent.messages():
        op = msg.get("op")
        if op == "shutdown":
            agent.send({"op": "bye"})
            return 0
        if op == "run":
            kmsg.drain()
            result = run_case(msg["nodeid"], float(msg.get("timeout", 120)))
            result["dmesg"] = kmsg.drain()
            agent.send({"op": "result", "id": msg["id"], **result})
        elif op == "ping":
            agent.send({"op": "pong", "id": msg.get("id")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
