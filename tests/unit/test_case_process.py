"""run_item: one case in a forked process, its verdict back as plain data.

The items are stand-ins whose "protocol" runs a body and hands the collector a report (what
pytest's runtest protocol does for a real item); the processes, pipes and the fresh network
namespace are real (unshare(CLONE_NEWNET): root only).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.guest.case_process import REPORTS, run_item

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="a case process unshares its network namespace: root")


@dataclass
class Report:
    """What serialize_report reads of a pytest TestReport."""

    when: str = "call"
    outcome: str = "passed"
    longrepr: Any = None
    longreprtext: str = ""
    duration: float = 0.0
    sections: list[tuple[str, str]] = field(default_factory=list)
    user_properties: list[tuple[str, object]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    @property
    def skipped(self) -> bool:
        return self.outcome == "skipped"

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"


class Hooks:
    def __init__(self, item: Item) -> None:
        self.item = item

    def pytest_runtest_protocol(self, item: Item, nextitem: object) -> None:
        self.item.body()
        REPORTS.pytest_runtest_logreport(Report())


class Item:
    def __init__(self, nodeid: str, body: Callable[[], None]) -> None:
        self.nodeid = nodeid
        self.body = body
        self.ihook = Hooks(self)


def netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def out(text: str) -> None:
    """To the case process's stdout (file descriptor 1: the output the agent reads back)."""
    os.write(1, text.encode())


def says(text: str) -> Callable[[], None]:
    return lambda: out(f"{text} {netns_inode()}")


def test_runs_the_item_in_a_fresh_namespace() -> None:
    result = run_item(Item("t::b", says("b")), 30)
    assert [r["outcome"] for r in result["reports"]] == ["passed"]
    name, inode = result["output"].split()
    assert name == "b"
    assert int(inode) != netns_inode()  # not the agent's namespace
    assert result["phases"]["netns"] > 0 and not result["timed_out"]
    # where its time went, in the order it went (kmatrix bench prints them)
    phases = result["phases"]
    assert list(phases) == ["fork", "netns", "protocol", "verdict", "handoff", "exit"]
    assert all(v >= 0 for v in phases.values())
    assert sum(phases.values()) <= result["duration"]


def test_what_a_case_imported_is_named_for_the_agent() -> None:
    import sys

    def imports() -> None:
        import colorsys  # noqa: F401

    assert "colorsys" not in sys.modules
    result = run_item(Item("t::imports", imports), 30)
    assert "colorsys" in result["imported"]
    assert run_item(Item("t::nothing", lambda: None), 30)["imported"] == []


def test_timeout_kills_it_with_its_stack() -> None:
    t0 = time.monotonic()
    result = run_item(Item("t::slow", lambda: time.sleep(60)), 0.5)
    assert result["timed_out"] and time.monotonic() - t0 < 10
    assert "sleep" in result["traceback"] or "test_case_process" in result["traceback"]


def test_a_case_process_that_dies_says_how() -> None:
    result = run_item(Item("t::die", lambda: os._exit(3)), 30)
    assert not result.get("reports")
    assert "exited with status 3 without sending a verdict" in result["collect_errors"][0]
