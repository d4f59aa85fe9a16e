"""What the pool needs of a place where cases run: a booted VM (`qemu.vm.GuestVM`) or a
machine reached over SSH (`ssh.target.SshTarget`). Both speak harness.protocol to the same
guest agent; the pool, the items and the reports see only this interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import VMLostError
from ..protocol import Message

if TYPE_CHECKING:
    from .session import BootInfo


class Target(Protocol):
    """A kernel with the guest agent waiting for cases, started by `start()`."""

    #: True from a successful start until a loss or `close()`
    alive: bool
    #: what the target's side said besides the protocol (VM: kernel console and the agent's
    #: stderr; SSH: the agent's stderr), kept whatever happens
    console_log: Path
    #: the agent's hello (release, probes, times); None before `start()` succeeded
    info: BootInfo | None
    #: errors of the agent's collection (node ids it could not collect)
    collect_errors: list[str]

    def start(self) -> None:
        """Make the agent ready (boot, or connect and start it); BootError if it cannot."""

    def run_case(self, nodeid: str, timeout: float, *, evidence: bool = True) -> Message:
        """The agent's verdict on one guest node id; VMLostError when the target stops
        answering (it is then no longer `alive`)."""

    def take_late(self) -> dict[str, list[str]]:
        """Kernel messages that came after their case's verdict (guest node id -> lines),
        each handed out once."""

    def close(self, *, graceful: bool = True) -> None:
        """Stop the agent (graceful: ask it to finish, else at once); always cleans up."""


class TargetLostError(VMLostError):
    """A target that cannot be restarted by kmatrix (a machine reached over SSH) stopped
    answering: its running case fails with this, its remaining cases error at once."""

    #: what happens next, for the case's report
    after = ("the target is marked lost: kmatrix cannot reboot it, so its remaining cases "
             "error at once; the rest of the matrix goes on")
