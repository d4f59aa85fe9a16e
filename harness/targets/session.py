"""What the host keeps of one guest agent, whatever carries its messages (a VM's
virtio-serial port, an SSH channel): the boot's facts, the kernel messages that come after
their case's verdict, the probe results that come between verdicts, the wait for a verdict,
and the target's console log."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocol import Message

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

    def _recv(self, deadline: float) -> Message:
        raise NotImplementedError

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
