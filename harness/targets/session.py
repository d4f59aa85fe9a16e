"""What the host keeps of one guest agent, whatever carries its messages (a VM's
virtio-serial port, an SSH channel): the boot's facts, the kernel messages that come after
their case's verdict, the probe results that come between verdicts, the wait for a verdict,
and the target's console log."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ..protocol import LineBuffer, Message

#: lines of console shown with a boot or crash error
CONSOLE_TAIL_LINES = 60


@dataclass
class BootInfo:
    release: str
    probes: dict[str, dict[str, Any]]
    #: what the kernel said while the probes ran
    probe_dmesg: list[str]
    #: seconds from starting vng to the agent's ready message (host clock)
    boot_s: float
    #: guest uptime at ready, import and probe times (guest clock)
    guest: dict[str, float] = field(default_factory=dict)
    #: the probes against bpftool feature probe ({"ran", "detail", "disagreements"})
    crosscheck: dict[str, Any] = field(default_factory=dict)


def boot_info(hello: dict[str, Any], known_probes: dict[str, dict[str, Any]], t0: float,
              t_hello: float, **guest: float) -> BootInfo:
    """What the agent's hello says of a boot that began at `t0` (host monotonic clock) and
    whose hello came at `t_hello`; `guest` adds a target's own figures (seconds)."""
    return BootInfo(
        release=str(hello["release"]), probes={**known_probes, **hello["probes"]},
        probe_dmesg=[str(line) for line in hello.get("probe_dmesg", [])],
        boot_s=time.monotonic() - t0,
        guest={**{k: float(hello.get(k, -1.0)) for k in (
                   "uptime", "import_s", "mount_s", "probe_s", "agent_at", "init_at",
                   "exec_at")},
               **guest, "collect_s": time.monotonic() - t_hello})


class AgentSession:
    """Shared by GuestVM and SshTarget; they provide `_recv(deadline)` (the agent's next
    message: TimeoutError, EOFError or OSError when it does not come)."""

    console_log: Path
    info: BootInfo | None
    _console_start: int

    def __init__(self) -> None:
        #: kernel messages that came after their case's verdict: guest node id -> lines
        self.late: dict[str, list[str]] = {}
        #: request id -> the guest node id it ran
        self._nodeid_of: dict[int, str] = {}
        self._buf = LineBuffer()
        self._pending: list[Message] = []
        self._next_id = 0

    # -- the agent's channel ----------------------------------------------------------------
    def _read(self, timeout: float) -> bytes | None:
        """Up to 64 KiB from the agent's channel: None when nothing came within `timeout`,
        b"" when the channel ended (OSError when it broke)."""
        raise NotImplementedError

    def _recv(self, deadline: float) -> Message:
        """The agent's next message; TimeoutError at `deadline`, EOFError when the channel
        ended."""
        while not self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            data = self._read(min(left, 1.0))
            if data is None:
                continue
            if not data:
                raise EOFError
            self._pending.extend(self._buf.feed(data))
        return self._pending.pop(0)

    def _drain_until_bye(self, deadline: float) -> None:
        """After "shutdown": keep the last late kernel messages and probes, until "bye"."""
        while True:
            msg = self._recv(deadline)
            if msg.get("op") in ("late", "probes"):
                self._note(msg)
            elif msg.get("op") == "bye":
                return

    # -- lifetime: start() brings the agent up (BootError when it does not come);
    #    close(graceful) stops it, killing what is left when not graceful --------------------
    def start(self) -> None:
        raise NotImplementedError

    def close(self, *, graceful: bool = True) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close(graceful=False)
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(graceful=et is None)

    def _await_verdict(self, req_id: int, deadline: float) -> Message:
        """The verdict of request `req_id`; what comes before it is noted."""
        while True:
            msg = self._recv(deadline)
            if msg.get("op") in ("late", "probes"):
                self._note(msg)
            elif msg.get("op") == "result" and msg.get("id") == req_id:
                return msg

    def _note(self, msg: Message) -> None:
        """What the agent says between verdicts: late kernel messages of a case, probes."""
        if msg.get("op") == "late":
            nodeid = self._nodeid_of.get(int(msg.get("id", -1)))
            if nodeid is not None:
                self.late.setdefault(nodeid, []).extend(str(m) for m in msg.get("dmesg", []))
        elif msg.get("op") == "probes" and self.info is not None:
            self.info.probes.update(msg.get("results", {}))
            self.info.probe_dmesg.extend(str(m) for m in msg.get("dmesg", []))
            self.info.guest["probe_s"] = self.info.guest.get("probe_s", 0.0) + float(
                msg.get("seconds", 0.0))
            if msg.get("crosscheck"):
                self.info.crosscheck = dict(msg["crosscheck"])

    def take_late(self) -> dict[str, list[str]]:
        """Kernel messages that arrived after their case's verdict: guest node id -> lines
        (each handed out once)."""
        late, self.late = self.late, {}
        return late

    # -- the console log ---------------------------------------------------------------------
    def console_size(self) -> int:
        try:
            return self.console_log.stat().st_size
        except OSError:
            return 0

    def console_since(self, offset: int) -> str:
        try:
            with open(self.console_log, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def console_tail(self, lines: int = CONSOLE_TAIL_LINES) -> str:
        text = self.console_since(self._console_start)
        return "\n".join(text.splitlines()[-lines:])
