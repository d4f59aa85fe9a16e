"""The guest agent: started by `vng --exec`, serves case runs over the control port.

1. It imports pytest and the harness, runs the feature probes once and says "hello" (with
   the kernel release and the probe results).
2. The host answers with the node ids it will ask for on this kernel; the agent collects
   them in one pytest session (imports, assertion rewriting and collection happen once).
3. For each "run" request it forks: the child runs that one collected item through
   pytest's own runtest protocol (fixtures, markers, capture as in any pytest run) and
   sends its reports back through a pipe. The fork isolates cases from each other and lets
   the agent enforce the case timeout (SIGUSR1 for Python stacks, then SIGKILL of the
   child's process group) while staying alive. The kernel messages (/dev/kmsg) that
   appeared during the case go back with the verdict, so the host can fail a case whose
   kernel WARNed.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..protocol import PORT_NAME, LineBuffer, Message, encode

_TRACEBACK_SIGNAL = signal.SIGUSR1
#: seconds of EOF on the control port after which the host is taken to be gone
_HOST_GONE_AFTER = 10.0


def find_port(name: str = PORT_NAME) -> Path:
    for entry in Path("/sys/class/virtio-ports").glob("*"):
        try:
            if (entry / "name").read_text().strip() == name:
                return Path("/dev") / entry.name
        except OSError:
            continue
    raise RuntimeError(f"virtio-serial port {name} not found in /sys/class/virtio-ports")


class Kmsg:
    """Kernel log records that appear after the last `drain()`, read from /dev/kmsg."""

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


class Channel:
    """JSON lines over the virtio-serial control port."""

    def __init__(self, port: Path) -> None:
        self.fd = os.open(port, os.O_RDWR)
        self.buf = LineBuffer()

    def send(self, msg: Message) -> None:
        data = encode(msg)
        while data:
            n = os.write(self.fd, data)
            data = data[n:]

    def messages(self) -> Iterator[Message]:
        eof_since: float | None = None
        while True:
            data = os.read(self.fd, 65536)
            if not data:  # host side not connected (yet, or any more)
                now = time.monotonic()
                eof_since = eof_since or now
                if now - eof_since > _HOST_GONE_AFTER:
                    return
                time.sleep(0.1)
                continue
            eof_since = None
            yield from self.buf.feed(data)


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
    faulthandler.register(_TRACEBACK_SIGNAL, file=trace, all_threads=True)
    out = os.open(out_path, os.O_WRONLY | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(out, 2)
    payload: dict[str, Any]
    try:
        from _pytest.runner import runtestprotocol

        reports = runtestprotocol(item, log=False, nextitem=None)
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
            os.kill(pid, _TRACEBACK_SIGNAL)
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


class AgentLoop:
    """pytest plugin for the agent's one session: after collection, serve run requests
    instead of running the items in order."""

    def __init__(self, channel: Channel, kmsg: Kmsg, messages: Iterator[Message]) -> None:
        self.channel = channel
        self.kmsg = kmsg
        self.messages = messages
        self.items: dict[str, Any] = {}
        self.collect_errors: list[str] = []

    def pytest_collectstart(self, collector: Any) -> None:
        import pytest

        if isinstance(collector, pytest.Module):
            self.channel.send({"op": "progress", "stage": f"collecting {collector.nodeid}"})

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.collect_errors.append(f"{report.nodeid}: {report.longreprtext}")

    def pytest_collection_finish(self, session: Any) -> None:
        self.items = {item.nodeid: item for item in session.items}

    def pytest_runtestloop(self, session: Any) -> bool:
        _warm_inspect_cache()
        self.channel.send({"op": "collected", "count": len(self.items),
                           "errors": self.collect_errors})
        for msg in self.messages:
            op = msg.get("op")
            if op == "shutdown":
                break
            if op == "run":
                self.channel.send({"op": "result", "id": msg["id"], **self.run(msg)})
            elif op == "ping":
                self.channel.send({"op": "pong", "id": msg.get("id")})
        return True

    def run(self, msg: Message) -> dict[str, Any]:
        nodeid = str(msg["nodeid"])
        item = self.items.get(nodeid)
        if item is None:
            errors = "\n".join(self.collect_errors)
            return {"reports": [], "collect_errors": [
                f"{nodeid} was not collected in the guest session\n{errors}"]}
        self.kmsg.drain()
        result = run_item(item, float(msg.get("timeout", 120)))
        result["dmesg"] = self.kmsg.drain()
        return result


def _warm_inspect_cache() -> None:
    """Fill inspect's module-file cache once, before forking: pytest's failure report calls
    inspect.getmodule(), whose first call realpath()s every loaded module (thousands of 9p
    lookups, tens of seconds under TCG). Each forked case inherits the warm cache."""
    import inspect

    inspect.getmodule(_warm_inspect_cache.__code__)


def _run_probes(channel: Channel) -> dict[str, dict[str, Any]]:
    def progress(feature: str) -> None:
        channel.send({"op": "progress", "stage": f"probe {feature}"})

    try:
        from .probes import probe_all

        return {name: {"supported": r.supported, "detail": r.detail}
                for name, r in probe_all(progress).items()}
    except Exception as exc:  # a broken probe module must not take the agent down
        return {"_error": {"supported": False, "detail": f"probes failed: {exc!r}"}}


def main() -> int:
    t0 = time.monotonic()
    channel = Channel(find_port())
    channel.send({"op": "progress", "stage": "agent started"})
    os.environ["KMATRIX_GUEST"] = "1"
    import pytest

    import harness.plugin  # noqa: F401  (guest side of the plugin, with its imports)

    t_import = time.monotonic()
    probes = _run_probes(channel)
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    channel.send({"op": "hello", "release": os.uname().release, "probes": probes,
                  "uptime": uptime, "import_s": t_import - t0,
                  "probe_s": time.monotonic() - t_import, "python": sys.version.split()[0]})
    messages = channel.messages()
    for msg in messages:
        if msg.get("op") == "shutdown":
            return 0
        if msg.get("op") == "collect":
            loop = AgentLoop(channel, Kmsg(), messages)
            pytest.main(["-p", "no:cacheprovider", "-q", "--tb=long", "-o", "addopts=",
                         "-p", "no:xdist", "-W", "ignore::pytest.PytestAssertRewriteWarning",
                         *msg["nodeids"]], plugins=[loop])
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
