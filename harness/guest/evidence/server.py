"""The agent's `CaseEvidence`, run by a process of its own that never forks.

Why a process: the agent forks a process per case, which write-protects every page of its
memory; the first write to a page afterwards (a Python reference count going up is one) is
a page fault, and under TCG a fault costs 30-37 us (3.4 us natively). The same reads took
27.9 ms a case done in the agent and the case process right after a fork, 19.3 ms in a
process that stays put (debian:6.12 under TCG; reading one case's namespace alone: 5.2
ms; `python -m harness.guest.evidence` prints these). The server is forked once, before
the first case, and never forks again, so its pages stay writable.

    ev = EvidenceServer(CaseEvidence())   # in the agent, before any case
    ev.before()                           # right before forking a case (returns at once)
    ...                                   # the case process: wait_ready() before its setup,
                                          # snapshot_case() at its teardown
    ev.after_begin()                      # right after it ended (returns at once)
    ...                                   # the agent's own checks meanwhile
    result["evidence"] = ev.after_end()
    ev.close()

The server works while the agent does (two vCPUs): the baseline while the agent forks the
case process and that enters its namespace, the evidence while the agent checks the case
left nothing behind.

The server keeps the agent's `CaseEvidence` (the drop counter's file descriptors are
shared with the agent, whose copy stays the process's `shared()` counter for the
`stack_counters` fixture; the drops of both processes are left uncounted). The case
process asks the server to read its namespace (/proc/PID/ns/net, entered with setns) and
the named ones, and waits for the answer: its namespaces are read at the same moment as
before (the start of its teardown), by the server. The agent's requests and the cases'
go over two SOCK_SEQPACKET pairs; the evidence itself comes back through the memfd
`CaseEvidence` already has. A reply a killed case never read is recognised by its pid.

The server dies with the agent (PR_SET_PDEATHSIG); if it is gone, the agent's requests
fail with EvidenceServerError and the agent runs the remaining cases without evidence.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import socket
import sys
import traceback
from typing import Any

from ..closing import Closing
from . import case as case_mod
from .case import CaseEvidence, read_handoff, write_handoff

PR_SET_PDEATHSIG = 1
#: how long a case process waits for the server to read its namespaces
CASE_TIMEOUT_S = 60.0
#: how long the agent waits for before()/after()
AGENT_TIMEOUT_S = 120.0


class EvidenceServerError(RuntimeError):
    """The evidence server did not answer (it died, or hangs)."""


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def _reply(sock: socket.socket, data: bytes) -> None:
    """To a case process, without blocking: a reply nobody reads (its case died) must not
    stall the server; the next case process skips it."""
    try:
        sock.send(data, socket.MSG_DONTWAIT)
    except BlockingIOError:
        pass


def _serve(ev: CaseEvidence, agent: socket.socket, cases: socket.socket,
           handoff: int) -> None:
    """The server's loop. From the agent: b"before SEQ" (the baseline; the case process
    waits for b"ready SEQ"), b"after" (answered b"after" once the evidence is in the
    memfd), b"close". From a case process: b"read PID" (answered alike once its
    namespaces are read). Case requests go first, so the request of a case that has
    since been killed is answered before the next before()."""
    case_payload: dict[str, Any] | None = None
    while True:
        ready, _, _ = select.select([cases, agent], [], [])
        if cases in ready:
            request = cases.recv(64)
            if request.startswith(b"read "):
                case_payload = ev.case_payload(f"/proc/{int(request[5:])}/ns/net")
                _reply(cases, request)
        if agent in ready:
            op = agent.recv(64)
            if op in (b"", b"close"):
                return
            if op.startswith(b"before "):
                case_payload = None
                ev.before()
                _reply(cases, b"ready " + op[7:])
            elif op == b"after":
                write_handoff(handoff, json.dumps(ev.after(case_payload or {})).encode())
                case_payload = None
                agent.send(op)


class EvidenceServer(Closing):
    """`evidence` served by a forked process (see the module's docstring); the agent and
    the case processes use this object as they would use `CaseEvidence`."""

    def __init__(self, evidence: CaseEvidence) -> None:
        self.local = evidence
        #: False: the agent runs this case without evidence (kmatrix bench compares)
        self.collecting = True
        self._handoff = os.memfd_create("kmatrix-evidence-reply", os.MFD_CLOEXEC)
        agent, agent_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cases, cases_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the server
            code = 0
            try:
                agent.close()
                cases.close()
                _die_with_parent()
                _serve(evidence, agent_peer, cases_peer, self._handoff)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        agent_peer.close()
        cases_peer.close()
        self.pid = pid
        #: the number of the last before(): the case process waits for "ready SEQ"
        self._seq = 0
        self._agent: socket.socket | None = agent
        self._cases = cases
        agent.settimeout(AGENT_TIMEOUT_S)
        if evidence.drops is not None:
            evidence.drops.ignore_also(pid)
        case_mod.set_active(self)

    @property
    def drops_mode(self) -> str:
        return self.local.drops_mode

    def _send(self, op: bytes) -> None:
        if self._agent is None:
            raise EvidenceServerError("the evidence server is closed")
        try:
            self._agent.send(op)
        except OSError as exc:
            raise EvidenceServerError(f"evidence server (pid {self.pid}): {exc}") from exc

    # -- agent side
    def before(self) -> None:
        """Start the baseline and return: the server takes it while the agent forks the
        case process, which waits for it before the case's setup (`wait_ready`)."""
        self._seq += 1
        self._send(b"before %d" % self._seq)

    def after_begin(self) -> None:
        """Right after the case process ended: the server starts on the evidence while
        the agent goes on (its isolation check); `after_end()` gets it."""
        self._send(b"after")

    def after_end(self) -> dict[str, Any]:
        """The evidence `after_begin()` started on."""
        assert self._agent is not None
        try:
            answer = self._agent.recv(64)
        except OSError as exc:
            raise EvidenceServerError(f"evidence server (pid {self.pid}): {exc}") from exc
        if answer != b"after":
            raise EvidenceServerError(f"evidence server (pid {self.pid}) answered "
                                      f"{answer!r}: it died")
        return read_handoff(self._handoff)

    def after(self) -> dict[str, Any]:
        self.after_begin()
        return self.after_end()

    def close(self) -> None:
        if self._agent is not None:
            try:
                self._agent.send(b"close")
            except OSError:
                pass
            self._agent.close()
            self._agent = None
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self._cases.close()
            os.close(self._handoff)
            if case_mod.active() is self:
                case_mod.set_active(self.local)
            self.local.close()

    # -- case side (runs in the forked case process)
    def _exchange(self, request: bytes | None, answer: bytes) -> None:
        """Send `request` (if any) to the server and wait for `answer`, skipping answers
        meant for earlier case processes. Never raises: without an answer the case goes
        on (its evidence then says what is missing)."""
        try:
            self._cases.settimeout(CASE_TIMEOUT_S)
            if request is not None:
                self._cases.send(request)
            while True:
                got = self._cases.recv(64)
                if got in (answer, b""):  # ours, or the server is gone
                    return
        except OSError:
            pass

    def wait_ready(self) -> None:
        """In the case process, before the case's setup: until the baseline is taken."""
        self._exchange(None, b"ready %d" % self._seq)

    def snapshot_case(self) -> None:
        """In the case process, at its teardown: the server reads its namespaces now;
        this waits for it."""
        me = b"read %d" % os.getpid()
        self._exchange(me, me)


__all__ = ["EvidenceServer", "EvidenceServerError"]
