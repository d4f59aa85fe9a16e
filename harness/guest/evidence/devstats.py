"""Per-device counters of the calling thread's network namespace: rtnetlink IFLA_STATS64 of
every link (`rtnl`) plus the driver's own statistics where it has any (`ethtool`, where
the XDP counters are), and their change between two snapshots."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from . import ethtool, rtnl


@dataclass(frozen=True)
class Device:
    ifindex: int
    name: str
    kind: str
    #: IFLA_STATS64
    stats: dict[str, int]
    #: ethtool -S (driver statistics), {} where the driver has none
    driver: dict[str, int] = field(default_factory=dict)


def read(sock: socket.socket | None = None) -> dict[str, Device]:
    """Every device of the calling thread's namespace, by name. `sock`: a socket of this
    namespace for the ethtool ioctls (one is made if not given)."""
    links = rtnl.dump_links()
    own = sock is None
    if sock is None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        return {link.name: Device(link.ifindex, link.name, link.kind, link.stats,
                                  {} if link.name == "lo" else
                                  ethtool.driver_stats(sock, link.name))
                for link in links}
    finally:
        if own:
            sock.close()


def _changed(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def delta(before: Device | None, after: Device) -> tuple[dict[str, int], dict[str, int]]:
    """(IFLA_STATS64 changes, driver statistics changes) of one device; `before` None: the
    device was created since (counters from 0). A counter that went down means the device
    was re-created under the same name: it counts from 0 too."""
    if before is not None and (before.ifindex != after.ifindex or any(
            v < before.stats.get(k, 0) for k, v in after.stats.items())):
        before = None
    if before is None:
        return _changed({}, after.stats), _changed({}, after.driver)
    return _changed(before.stats, after.stats), _changed(before.driver, after.driver)
