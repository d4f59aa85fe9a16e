"""Finding network namespaces (harness.guest.net.allns, no kernel): deduplication by nsfs
inode with the most stable way in first, nsfs bind mounts from mountinfo, and falling back
over the paths of a namespace when one has gone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.guest.net.allns import (
    Netns,
    NetnsCandidate,
    NetnsGone,
    dedup,
    nsfs_mounts,
    open_netns,
)


def cand(inode: int, path: str, source: str, dev: int = 4) -> NetnsCandidate:
    return NetnsCandidate(dev, inode, path, source)


def test_one_entry_per_namespace_best_path_first() -> None:
    found = dedup([
        cand(10, "/proc/7/task/7/ns/net", "task"),
        cand(11, "/proc/8/task/8/ns/net", "task"),
        cand(10, "/proc/9/fd/3", "fd"),
        cand(10, "/run/netns/blue", "named"),
        cand(10, "/proc/7/task/12/ns/net", "task"),
        cand(11, "/srv/ns/green", "mount"),
        cand(10, "/run/netns/blue", "named"),  # named: both from /run/netns and mountinfo
    ])
    assert [ns.inode for ns in found] == [10, 11]  # order of first appearance
    blue, green = found
    assert blue.path == "/run/netns/blue"
    assert blue.sources == ("named", "fd", "task")
    assert blue.paths == ("/run/netns/blue", "/proc/9/fd/3", "/proc/7/task/7/ns/net",
                          "/proc/7/task/12/ns/net")
    assert green.path == "/srv/ns/green" and green.sources == ("mount", "task")


def test_same_inode_on_another_device_is_another_namespace() -> None:
    found = dedup([cand(10, "/a", "task", dev=4), cand(10, "/b", "task", dev=5)])
    assert len(found) == 2


def test_unknown_source_is_a_bug() -> None:
    with pytest.raises(ValueError, match="socket"):
        dedup([cand(10, "/x", "socket")])


MOUNTINFO = r"""22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
586 27 0:4 net:[4026532302] /run/netns/blue rw shared:310 - nsfs nsfs rw
587 27 0:4 net:[4026532400] /srv/my\040ns/green rw - nsfs nsfs rw
588 27 0:4 mnt:[4026532500] /srv/mnt-ns rw - nsfs nsfs rw
589 27 0:4 net:[4026532600] /odd rw shared:1 master:2 - nsfs nsfs rw
bad line without separator
"""


def test_nsfs_mounts_of_network_namespaces() -> None:
    assert nsfs_mounts(MOUNTINFO) == [("/run/netns/blue", 4026532302),
                                      ("/srv/my ns/green", 4026532400),
                                      ("/odd", 4026532600)]


def _file(path: Path) -> tuple[int, int]:
    path.touch()
    st = os.stat(path)
    return st.st_dev, st.st_ino


def test_open_falls_back_to_a_path_that_still_leads_there(tmp_path: Path) -> None:
    """Regular files stand in for nsfs files: identity is (st_dev, st_ino)."""
    dev, ino = _file(tmp_path / "ns")
    other = tmp_path / "other"
    other.touch()
    ns = Netns(dev, ino, str(tmp_path / "gone"), ("task", "fd"),
               (str(tmp_path / "gone"), str(other), str(tmp_path / "ns")))
    fd = open_netns(ns)
    try:
        assert os.fstat(fd).st_ino == ino
    finally:
        os.close(fd)


def test_gone_when_no_path_leads_there(tmp_path: Path) -> None:
    dev, ino = _file(tmp_path / "ns")
    other = tmp_path / "other"
    other.touch()
    ns = Netns(dev, ino + 1_000_000, str(tmp_path / "gone"), ("task",),
               (str(tmp_path / "gone"), str(other)))
    with pytest.raises(NetnsGone) as info:
        open_netns(ns)
    assert "No such file" in str(info.value) and "now leads to" in str(info.value)
