"""The exactly-once rule of batched socket iteration (harness.guest.probes.sockiter.BatchRun),
on the skips and repeats older kernels produce (no kernel)."""

from __future__ import annotations

from harness.guest.probes.sockiter import BatchRun


def test_exactly_once() -> None:
    assert BatchRun([1, 2, 3, 4], [1, 2, 3], after=[4]).problems() == []


def test_removed_seen_socket_then_a_skip() -> None:
    """Offset resume: a seen socket closed, the iterator skips the last unseen one."""
    run = BatchRun([1, 2, 3, 4], [1, 2, 3], removed=[1], after=[])
    assert run.problems() == ["1 socket(s) never seen"]


def test_added_at_the_head_then_repeats() -> None:
    """Offset resume: four sockets added at the bucket's head push the seen ones back."""
    run = BatchRun([4, 3, 2, 1], [4, 3, 2], added=[8, 7, 6, 5], after=[5, 4, 3, 2, 1])
    assert run.problems() == ["3 socket(s) seen twice or more"]


def test_removed_sockets_need_not_be_seen_but_not_after_removal() -> None:
    assert BatchRun([1, 2, 3], [1], removed=[2, 3], after=[]).problems() == []
    assert BatchRun([1, 2, 3], [1], removed=[2], after=[2, 3]).problems() == [
        "1 socket(s) seen after being removed"]


def test_added_sockets_may_or_may_not_be_seen() -> None:
    assert BatchRun([1, 2], [1], added=[3, 4], after=[2, 4]).problems() == []


def test_a_socket_nobody_made() -> None:
    assert BatchRun([1, 2], [1], after=[2, 99]).problems() == [
        "1 socket(s) not made by the test"]
