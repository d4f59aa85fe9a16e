"""The stack's view of a case's own traffic, for cases to assert on: counters and drops
between two moments of the case (`StackCounters`, the `stack_counters` fixture).

    def test_closed_port(stack_counters):
        send_udp_to_closed_port()
        seen = stack_counters.delta()
        assert seen.counter("Udp.NoPorts") == 1
        assert seen.drop_count("NO_SOCKET", netns="case") == 1

Namespaces: the case's own (label "case") and every named one (/run/netns/NAME, label
NAME) present at `delta()`; one that was not there at the start counts from 0. Drops come
from the agent's counter (inherited by the case process, read without disturbing the
agent's per-case drain); outside the agent (scripts/host-pytest) the fixture attaches a
counter of its own for the case.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ..net.netns import NETNS_DIR
from . import softnet
from .case import CASE_LABEL
from .drops import DropCounter, DropKey, shared
from .model import Evidence
from .snapshot import NetnsSnapshot, delta, take, take_in


def _all() -> dict[str, NetnsSnapshot]:
    out = {CASE_LABEL: take(CASE_LABEL)}
    try:
        names = sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        names = []
    for name in names:
        try:
            out[name] = take_in(os.path.join(NETNS_DIR, name), name)
        except OSError:
            continue
    return out


class StackCounters:
    """Counters and drops from construction (or `restart()`) to `delta()`."""

    def __init__(self, *, drops: bool = True, counter: DropCounter | None = None) -> None:
        """`counter`: the drop counter to read (default: the agent's, else one of our own,
        closed by `close()`); `drops=False`: no drops at all."""
        self._own: DropCounter | None = None
        self.counter = (counter or shared()) if drops else None
        if drops and self.counter is None:
            self.counter = self._own = DropCounter()
        self.restart()

    def restart(self) -> None:
        """Start counting from now."""
        self._drops: dict[DropKey, int] = self.counter.read() if self.counter else {}
        self._softnet = softnet.read()
        self._start = _all()

    def delta(self) -> Evidence:
        """What changed since the start."""
        now = _all()
        namespaces = []
        for label, snap in now.items():
            base = self._start.get(label)
            if base is not None and base.ident != snap.ident:
                base = None
            ns = delta(base, snap)
            if not ns.empty:
                namespaces.append(ns)
        ev = Evidence(namespaces=namespaces, softnet=softnet.delta(self._softnet,
                                                                   softnet.read()))
        if self.counter is not None:
            counts = {k: v - self._drops.get(k, 0) for k, v in self.counter.read().items()
                      if v != self._drops.get(k, 0)}
            labels = {s.ident.cookie or s.ident.inum: label
                      for label, s in {**self._start, **now}.items()}
            ev.drops = self.counter.records(counts, labels)
            ev.drops_mode = self.counter.mode
        return ev

    def close(self) -> None:
        if self._own is not None:
            self._own.close()
            self._own = None


@pytest.fixture
def stack_counters() -> Iterator[StackCounters]:
    """`StackCounters` started at the case's setup: ``stack_counters.delta()`` is what the
    stack counted and dropped since (see harness.guest.evidence.fixture)."""
    counters = StackCounters()
    try:
        yield counters
    finally:
        counters.close()
