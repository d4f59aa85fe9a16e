"""The guest agent: started by `vng --exec`, serves case runs over the control port.

1. It imports pytest and the guest library, runs the feature probes once and says "hello"
   (with the kernel release and the probe results).
2. The host answers with the node ids it will ask for on this kernel; the agent collects
   them in one pytest session (imports, assertion rewriting and collection happen once).
3. For each "run" request it forks (`case_process`): the child runs that one collected item
   through pytest's runtest protocol and sends its reports back. The kernel messages
   (/dev/kmsg) that appeared during the case go back with the verdict, so the host can
   fail a case whose kernel WARNed.

Imports nothing of the host side (the host plugin, the VM runner, kernel acquisition).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..protocol import Message
from .case_process import run_item
from .channel import Channel, find_port
from .kmsg import Kmsg


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

    from . import plugin  # noqa: F401  (imported now: its import time counts as import_s)

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
                         "-p", "harness.guest.plugin",
                         "-W", "ignore::pytest.PytestAssertRewriteWarning",
                         *msg["nodeids"]], plugins=[loop])
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
