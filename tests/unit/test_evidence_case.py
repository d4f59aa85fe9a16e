"""CaseEvidence's bookkeeping around cases (the agent's before()/after(), the case process's
teardown snapshot handed back through the memfd, drops attributed to the case, to the
root namespace or to the previous case), with the kernel readers replaced by saved data."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.guest.evidence import case as case_mod
from harness.guest.evidence import devstats, softnet
from harness.guest.evidence import drops as drops_mod
from harness.guest.evidence.case import CaseEvidence, EvidencePlugin
from harness.guest.evidence.devstats import Device
from harness.guest.evidence.drops import DropKey, ReasonNames
from harness.guest.evidence.model import DropRecord, Evidence, render
from harness.guest.evidence.server import EvidenceServer, EvidenceServerError
from harness.guest.evidence.snapshot import NetnsId, NetnsSnapshot
from harness.guest.forked import run_forked

DATA = Path(__file__).parent / "data" / "evidence"
ROOT = NetnsId(1, 4026531840)
CASE = NetnsId(10, 4026532000)
NEXT_CASE = NetnsId(12, 4026532000)  # the inode number is reused, the cookie is not


class FakeCounter:
    """Stands in for DropCounter: drain() returns what the test queued."""

    mode = "reason"

    def __init__(self) -> None:
        self.queue: list[dict[DropKey, int]] = []
        self.names = ReasonNames({2: "SKB_DROP_REASON_NOT_SPECIFIED",
                                  3: "SKB_DROP_REASON_NO_SOCKET"}, {})

    def drain(self) -> dict[DropKey, int]:
        return self.queue.pop(0) if self.queue else {}

    def lost(self) -> int:
        return 0

    def records(self, counts: dict[DropKey, int], labels: dict[int, str]) -> list[DropRecord]:
        return drops_mod.records(counts, labels, self.names, lambda a: f"fn+{a:#x}")

    def ignore_also(self, tgid: int) -> None:
        self.ignored = tgid

    def close(self) -> None:
        pass


def texts(state: str) -> dict[str, str]:
    return {name: (DATA / f"6.18-{state}-{name}").read_text()
            for name in ("snmp", "netstat", "snmp6")}


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The kernel as the test says it is: softnet rows, the case's namespace."""
    state: dict[str, Any] = {
        "softnet": [softnet.parse((DATA / "6.1-softnet_stat").read_text())],
        "own": NetnsSnapshot("case", CASE, texts("closed-port"),
                             {"lo": Device(1, "lo", "", {"rx_packets": 2, "tx_packets": 2})}),
    }

    def read_softnet() -> dict[int, dict[str, int]]:
        rows: dict[int, dict[str, int]] = state["softnet"][0]
        if len(state["softnet"]) > 1:
            state["softnet"].pop(0)
        return rows

    def take(label: str, *, devices: bool = True) -> NetnsSnapshot:
        own: NetnsSnapshot = state["own"]
        if isinstance(own, Exception):
            raise own
        return own

    monkeypatch.setattr(case_mod, "current_id", lambda *a: ROOT)
    monkeypatch.setattr(softnet, "read", read_softnet)
    monkeypatch.setattr(devstats, "read", lambda *a: {})
    monkeypatch.setattr(case_mod, "_named_netns", lambda: [])
    monkeypatch.setattr(case_mod, "take", take)
    yield state


@pytest.fixture
def evidence(world: dict[str, Any]) -> Iterator[tuple[CaseEvidence, FakeCounter]]:
    ev = CaseEvidence(drops=False)
    fake = FakeCounter()
    ev.drops = fake  # type: ignore[assignment]
    ev.drops_mode = fake.mode
    try:
        yield ev, fake
    finally:
        ev.close()


def test_one_case(evidence: tuple[CaseEvidence, FakeCounter], world: dict[str, Any]) -> None:
    ev, fake = evidence
    fake.queue = [{DropKey(ROOT.cookie, 0x50, ROOT.inum, 2): 7},  # between cases: forgotten
                  {DropKey(CASE.cookie, 0x100, CASE.inum, 3): 1,
                   DropKey(ROOT.cookie, 0x200, ROOT.inum, 2): 1}]
    rows = world["softnet"][0]
    later = {cpu: dict(row) for cpu, row in rows.items()}
    later[1]["processed"] += 2
    world["softnet"].append(later)
    ev.before()
    ev.snapshot_case()  # in the case process, at teardown
    got = Evidence.from_dict(ev.after())
    assert got.counter("Udp.NoPorts") == 1
    assert got.device_stat("lo", "rx_packets") == 2
    assert [(d.netns, d.reason, d.count) for d in got.drops] == [
        ("root", "NOT_SPECIFIED", 1), ("case", "NO_SOCKET", 1)]
    assert got.softnet == {1: {"processed": 2}}
    assert got.previous_drops == [] and got.notes == []
    assert got.drops_mode == "reason" and got.cost_ms > 0
    text = render(got)
    assert "1 x NO_SOCKET in ns case (at fn+0x100)" in text
    assert "ns case: Ip.InReceives +2" in text and "Udp.NoPorts +1" in text


def test_late_drops_go_to_the_previous_case(evidence: tuple[CaseEvidence, FakeCounter],
                                            world: dict[str, Any]) -> None:
    ev, fake = evidence
    ev.before()
    ev.snapshot_case()
    ev.after()
    # the first case's namespace is torn down after its verdict: a drop before the next
    # case starts, another while it runs; the next case's namespace reuses the inode number
    fake.queue = [{DropKey(CASE.cookie, 0x300, CASE.inum, 2): 2},
                  {DropKey(CASE.cookie, 0x300, CASE.inum, 2): 1,
                   DropKey(NEXT_CASE.cookie, 0x100, NEXT_CASE.inum, 3): 1}]
    world["own"] = NetnsSnapshot("case", NEXT_CASE, texts("fresh"), {})
    ev.before()
    ev.snapshot_case()
    got = Evidence.from_dict(ev.after())
    assert [(d.netns, d.reason, d.count) for d in got.drops] == [("case", "NO_SOCKET", 1)]
    assert [(d.netns, d.count) for d in got.previous_drops] == [("case", 2), ("case", 1)]
    assert got.netns("case") is None  # nothing counted in the second namespace


def test_case_that_never_reached_teardown(evidence: tuple[CaseEvidence, FakeCounter]) -> None:
    ev, _ = evidence
    ev.before()
    got = Evidence.from_dict(ev.after())
    assert got.namespaces == []
    assert got.notes == ["the case's namespaces were not read (its process ended before "
                         "its teardown)"]


def test_snapshot_failure_is_a_note(evidence: tuple[CaseEvidence, FakeCounter],
                                    world: dict[str, Any]) -> None:
    ev, _ = evidence
    world["own"] = PermissionError(13, "no")
    ev.before()
    ev.snapshot_case()  # must not raise into the case
    got = Evidence.from_dict(ev.after())
    assert len(got.notes) == 1 and "PermissionError" in got.notes[0]


def test_handoff_is_cleared_by_before(evidence: tuple[CaseEvidence, FakeCounter]) -> None:
    ev, _ = evidence
    ev.before()
    ev.snapshot_case()
    ev.after()
    ev.before()  # the next case: its process dies before teardown
    assert Evidence.from_dict(ev.after()).notes[0].startswith("the case's namespaces were not")


def test_plugin_snapshots_at_teardown_start(evidence: tuple[CaseEvidence, FakeCounter],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ev, _ = evidence
    calls: list[str] = []
    monkeypatch.setattr(ev, "snapshot_case", lambda: calls.append("snapshot"))
    hook = EvidencePlugin().pytest_runtest_teardown(item=None, nextitem=None)  # type: ignore[arg-type]
    next(hook)  # up to the yield: before the fixtures are finalized
    assert calls == ["snapshot"]
    with pytest.raises(StopIteration):
        hook.send(None)


def test_close_restores_the_outer_evidence(world: dict[str, Any]) -> None:
    outer = CaseEvidence(drops=False)
    inner = CaseEvidence(drops=False)  # e.g. a case testing the machinery in the agent
    assert case_mod.active() is inner
    inner.close()
    assert case_mod.active() is outer
    outer.close()
    assert case_mod.active() is None


# --- the evidence server (the agent's way: CaseEvidence in a process of its own) ----------


@pytest.fixture
def served(evidence: tuple[CaseEvidence, FakeCounter], world: dict[str, Any],
           monkeypatch: pytest.MonkeyPatch) -> Iterator[EvidenceServer]:
    """The test's CaseEvidence run by an EvidenceServer; the server reads the case's
    namespace as the world says (take_in replaced like take)."""
    ev, _ = evidence
    monkeypatch.setattr(case_mod, "take_in", lambda path, label: world["own"])
    server = EvidenceServer(ev)
    try:
        yield server
    finally:
        server.close()


def _case_process(server: EvidenceServer, *, snapshot: bool = True) -> None:
    """A forked "case": waits for the baseline, then (or not) has its namespace read."""

    def case() -> None:
        server.wait_ready()
        if snapshot:
            server.snapshot_case()

    assert run_forked(case) == 0


def test_server_round(served: EvidenceServer) -> None:
    served.before()
    _case_process(served)
    served.after_begin()
    got = Evidence.from_dict(served.after_end())
    assert got.counter("Udp.NoPorts") == 1 and got.notes == []
    assert case_mod.active() is served
    assert served.local.drops.ignored == served.pid  # type: ignore[union-attr]


def test_server_case_without_teardown_then_next(served: EvidenceServer) -> None:
    """A case process that died before its teardown: its evidence says so; the next case's
    process skips the stale "ready" and gets its own."""
    served.before()
    _case_process(served, snapshot=False)
    assert Evidence.from_dict(served.after()).notes[0].startswith(
        "the case's namespaces were not read")
    served.before()
    _case_process(served)
    assert Evidence.from_dict(served.after()).counter("Udp.NoPorts") == 1


def test_server_gone_is_an_error(served: EvidenceServer) -> None:
    os.kill(served.pid, signal.SIGKILL)
    os.waitpid(served.pid, 0)
    with pytest.raises(EvidenceServerError):
        served.before()
        served.after()
    _case_process(served)  # a case process does not hang on a dead server
