"""What counts as a leak between two snapshots (the cleaning itself runs in the guest)."""

from __future__ import annotations

from harness.guest.isolation import Snapshot, leaks


def test_nothing_new_is_no_leak() -> None:
    s = Snapshot(frozenset({"lo", "eth0"}), frozenset(), frozenset(), frozenset({1}))
    assert leaks(s, s) == []


def test_every_kind_of_leak_is_named() -> None:
    before = Snapshot(frozenset({"lo"}), frozenset(), frozenset(), frozenset({1}))
    after = Snapshot(frozenset({"lo", "kmx0"}), frozenset({"kmx-ns-1"}),
                     frozenset({"/sys/fs/bpf/m"}), frozenset({1}), frozenset(),
                     frozenset({9}), frozenset({"lo ingress prog 5"}))
    assert [str(leak) for leak in leaks(before, after)] == [
        "link kmx0", "netns kmx-ns-1", "pinned /sys/fs/bpf/m", "tcx lo ingress prog 5",
        "BPF link 9"]


def test_something_gone_is_no_leak() -> None:
    before = Snapshot(frozenset({"lo", "eth0"}))
    assert leaks(before, Snapshot(frozenset({"lo"}))) == []
