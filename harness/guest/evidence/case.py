"""Per-case evidence in the agent: what the stack counted and dropped while a case ran.

The agent makes one `CaseEvidence` per boot (it loads and attaches the drop counter) and,
around each forked case::

    evidence.before()                       # right before forking the case
    result = run_item(item, timeout)        # the case process: see `snapshot_case`
    result["evidence"] = evidence.after()   # right after it ended (JSON-serialisable)

Where the counters come from:

- the case's own namespace and the named ones (/run/netns/*) it made: the case process
  itself, at the start of its teardown (`EvidencePlugin`, registered in the agent's pytest
  session, runs in the forked child): fixtures have not yet removed their namespaces then,
  and after the case they are gone. Counters of namespaces created during the case start
  from 0; devices borrowed from the root namespace (the VM's NICs) from their values at
  `before()`. The child hands its deltas back through a memfd the agent made (inherited).
- drops: the drop counter (attached once), drained by the agent at `before()` and
  `after()`; named by the namespace cookies the case process reported.
- softnet_stat: the agent, at `before()` and `after()` (global: all traffic).

Limits: a namespace that died before the case's teardown began (a helper thread's private
namespace, one the test body deleted itself) has no counters, only drops (labelled
``netns:INUM``); counter changes during fixture teardown are not seen; drops in the case's
namespaces after `after()` (their asynchronous destruction) are reported with the next
case as `previous_drops`.

The evidence machinery's own activity is not counted: the drop counter ignores the agent's
process (its netlink dumps are read to the end: nothing is freed as a drop), and the agent
drains drops before it reads counters at `after()` and after at `before()`.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Generator
from typing import Any, Protocol

import pytest

from ..bpf.library import LibbpfVersionError
from ..net.netns import NETNS_DIR, SYS_NET
from . import devstats, softnet
from .drops import DropCounter, DropsUnavailable, share, shared
from .model import DropRecord, Evidence, NetnsDelta
from .snapshot import NetnsSnapshot, current_id, delta, take, take_in

#: the label of the case's own network namespace
CASE_LABEL = "case"
ROOT_LABEL = "root"


class Collector(Protocol):
    """What a case process asks of the agent's evidence: `CaseEvidence`, or the
    `EvidenceServer` that runs one."""

    collecting: bool

    def wait_ready(self) -> None: ...

    def snapshot_case(self) -> None: ...


_active: Collector | None = None


def _named_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _root_devices_beyond_lo() -> bool:
    """Whether the root namespace has a device other than lo: /sys/class/net lists the
    devices of the namespace sysfs was mounted in (the agent's, the root one) with one
    getdents, where an rtnetlink dump costs ~1 ms under TCG. Unreadable: True."""
    try:
        return any(name != "lo" for name in os.listdir(SYS_NET))
    except OSError:
        return True


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1e3


class CaseEvidence:
    """Evidence around each case (see the module's docstring). `ignore_tgid`: the process
    whose own drops are not counted (default: this one, the agent)."""

    def __init__(self, *, ignore_tgid: int | None = None, drops: bool = True) -> None:
        global _active
        t0 = time.perf_counter()
        #: what was active before (restored by close(): a case may make its own)
        self._outer = (_active, shared())
        self.root = current_id()
        self.drops: DropCounter | None = None
        self.drops_mode = "unavailable: not requested"
        if drops:
            try:
                self.drops = DropCounter(
                    ignore_tgid=os.getpid() if ignore_tgid is None else ignore_tgid)
                self.drops_mode = self.drops.mode
            except (DropsUnavailable, OSError, LibbpfVersionError) as exc:
                self.drops_mode = f"unavailable: {str(exc).splitlines()[0]}"
        share(self.drops)
        self._handoff = os.memfd_create("kmatrix-evidence", os.MFD_CLOEXEC)
        self._softnet: dict[int, dict[str, int]] = {}
        self._named: dict[str, NetnsSnapshot] = {}
        self.root_devices: dict[str, devstats.Device] = {}
        self._notes: list[str] = []
        self._cost = 0.0
        #: namespace key (cookie, or inode number without cookies) -> label, of the last case
        self._previous: dict[int, str] = {}
        self._late: list[DropRecord] = []
        #: drops the map had no room for, so far
        self._lost = 0
        #: what loading and attaching cost, milliseconds (once per boot)
        self.attach_ms = _ms(t0)
        #: False: the agent runs this case without evidence (kmatrix bench compares)
        self.collecting = True
        _active = self

    # -- agent side
    def before(self) -> None:
        """Right before forking a case: baselines, and forget drops seen since the last
        case (those in its namespaces are kept for `previous_drops`)."""
        t0 = time.perf_counter()
        self._notes = []
        self._softnet = softnet.read()
        # the baseline of devices a case may borrow from the root namespace (the VM's NICs);
        # without any but lo (a VM without NICs) there is nothing to borrow
        self.root_devices = devstats.read() if _root_devices_beyond_lo() else {}
        self._named = {}
        for name in _named_netns():
            try:
                self._named[name] = take_in(os.path.join(NETNS_DIR, name), name)
            except OSError as exc:
                self._notes.append(f"netns {name}: not read at the start ({exc})")
        write_handoff(self._handoff, b"")
        if self.drops is not None:
            leftover = self.drops.drain()
            self._late = [r for r in self.drops.records(leftover, self._previous)
                          if _key(r) in self._previous]
        self._cost = _ms(t0)

    def after(self, child: dict[str, Any] | None = None) -> dict[str, Any]:
        """Right after the case process ended: the evidence, JSON-serialisable (see
        `Evidence.as_dict`; `render()` turns it into failure-report text). `child`: the
        case's namespaces as `case_payload` made them ({}: not read), where they did not
        come through the handoff memfd (`snapshot_case`)."""
        t0 = time.perf_counter()
        counts = self.drops.drain() if self.drops is not None else {}
        after_softnet = softnet.read()
        if child is None:
            child = read_handoff(self._handoff)
        notes = list(self._notes)
        namespaces = [NetnsDelta.from_dict(n) for n in child.get("namespaces", [])]
        if not child:
            notes.append("the case's namespaces were not read (its process ended before "
                         "its teardown)")
        notes += child.get("notes", [])
        labels = {_id_key(self.root.cookie, self.root.inum): ROOT_LABEL}
        labels.update({_id_key(s.ident.cookie, s.ident.inum): name
                       for name, s in self._named.items()})
        labels.update({_id_key(n.cookie, n.inum): n.label for n in namespaces})
        previous = {k: v for k, v in self._previous.items() if k not in labels}
        records = self.drops.records(counts, {**previous, **labels}) if self.drops else []
        late = self._late + [r for r in records if _key(r) in previous]
        records = [r for r in records if _key(r) not in previous]
        lost = self.drops.lost() if self.drops is not None else 0
        if lost > self._lost:
            notes.append(f"{lost - self._lost} drops not counted: the drop map was full")
            self._lost = lost
        self._previous = {_id_key(n.cookie, n.inum): n.label for n in namespaces}
        ev = Evidence(namespaces=[n for n in namespaces if not n.empty],
                      softnet=softnet.delta(self._softnet, after_softnet), drops=records,
                      drops_mode=self.drops_mode, previous_drops=late, notes=notes)
        ev.cost_ms = self._cost + float(child.get("cost_ms", 0.0)) + _ms(t0)
        return ev.as_dict()

    def close(self) -> None:
        global _active
        if self.drops is not None:
            self.drops.close()
            self.drops = None
        if self._handoff >= 0:
            os.close(self._handoff)
            self._handoff = -1
        if _active is self:
            _active, outer_drops = self._outer
            share(outer_drops)

    # -- case side (runs in the forked case process)
    def wait_ready(self) -> None:
        """Before the case's setup: the baseline is there already (before() returned)."""

    def snapshot_case(self) -> None:
        """In the case process: the changes in its own namespace and the named ones, handed
        to the agent's `after()`. Never raises: a failure becomes a note."""
        write_handoff(self._handoff, json.dumps(self.case_payload()).encode())

    def case_payload(self, netns: str | None = None) -> dict[str, Any]:
        """The case's namespaces (`netns`: the path of its own, /proc/PID/ns/net, read by
        entering it; None: the calling thread's) and the named ones, as `after()` takes
        them. Never raises: a failure becomes a note."""
        t0 = time.perf_counter()
        payload: dict[str, Any]
        try:
            payload = {"namespaces": [n.as_dict() for n in self._case_namespaces(netns)]}
        except Exception as exc:  # evidence must not fail the case
            payload = {"namespaces": [], "notes": [
                "reading the case's namespaces failed: "
                + "".join(traceback.format_exception_only(exc)).strip()]}
        payload["cost_ms"] = _ms(t0)
        return payload

    def _case_namespaces(self, netns: str | None) -> list[NetnsDelta]:
        own = take(CASE_LABEL) if netns is None else take_in(netns, CASE_LABEL)
        out = [delta(None, own, self.root_devices)]
        seen = {own.ident}
        for name in _named_netns():
            try:
                snap = take_in(os.path.join(NETNS_DIR, name), name)
            except OSError:  # removed meanwhile
                continue
            if snap.ident in seen:
                continue
            seen.add(snap.ident)
            base = self._named.get(name)
            if base is not None and base.ident != snap.ident:
                base = None  # same name, another namespace
            out.append(delta(base, snap, self.root_devices))
        return out


def _id_key(cookie: int, inum: int) -> int:
    """How drop records and labels meet: the cookie, or the inode number where the kernel
    has no cookies."""
    return cookie or inum


def _key(record: DropRecord) -> int:
    return _id_key(record.netns_cookie, record.netns_inum)


#: the handoff memfd holds a little-endian length, then that many bytes of JSON; it is
#: never truncated, so its pages stay allocated from one case to the next
_LEN = 8


def write_handoff(fd: int, data: bytes) -> None:
    if data:
        os.pwrite(fd, data, _LEN)
    os.pwrite(fd, len(data).to_bytes(_LEN, "little"), 0)


def read_handoff(fd: int) -> dict[str, Any]:
    size = int.from_bytes(os.pread(fd, _LEN, 0).ljust(_LEN, b"\0"), "little")
    if not size:
        return {}
    try:
        data: dict[str, Any] = json.loads(os.pread(fd, size, _LEN))
    except ValueError:
        return {"notes": ["the case's evidence was unreadable"]}
    return data


def active() -> Collector | None:
    """The agent's evidence (in the agent and in the cases it forked), if any."""
    return _active


def set_active(collector: Collector | None) -> None:
    """Make `collector` what the cases' EvidencePlugin asks (the agent's EvidenceServer)."""
    global _active
    _active = collector


class EvidencePlugin:
    """pytest plugin for the agent's session (the forked case processes inherit it): before
    each case's setup, the case process waits for the baseline (`wait_ready`); at the start
    of its teardown, before fixtures remove their namespaces, its namespaces' counters are
    recorded for `CaseEvidence.after()`."""

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, Any, Any]:
        ev = active()
        if ev is not None and ev.collecting:
            ev.wait_ready()
        return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item,
                                nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
        ev = active()
        if ev is not None and ev.collecting:
            ev.snapshot_case()
        return (yield)
