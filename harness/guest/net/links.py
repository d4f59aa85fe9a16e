"""Network devices through rtnetlink (pyroute2), optionally in a named namespace."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from typing import Any

from ..wait import wait_until
from .netns import netns_exists, run_in_netns

_GONE = (errno.ENOENT, errno.ENODEV)


@contextlib.contextmanager
def ipr(netns: str | None = None) -> Iterator[Any]:
    """A pyroute2 IPRoute socket opened in `netns` (None: the calling thread's)."""
    from pyroute2 import IPRoute

    with run_in_netns(netns), IPRoute() as sock:
        yield sock


def ifindex(ifname: str, *, netns: str | None = None) -> int:
    """ifindex of `ifname` in `netns`; OSError ENODEV if there is none."""
    with ipr(netns) as sock:
        found = sock.link_lookup(ifname=ifname)
    if not found:
        raise OSError(errno.ENODEV, f"no device {ifname} in netns {netns or '(current)'}")
    return int(found[0])


def set_link_up(ifname: str, *, netns: str | None = None) -> None:
    with ipr(netns) as sock:
        sock.link("set", index=sock.link_lookup(ifname=ifname)[0], state="up")


def delete_link(ifname: str, *, netns: str | None = None) -> None:
    """`ip link del`; already gone (ENODEV, or its namespace is gone) is fine."""
    from pyroute2.netlink.exceptions import NetlinkError

    if netns is not None and not netns_exists(netns):
        return
    with ipr(netns) as sock:
        try:
            sock.link("del", ifname=ifname)
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise


def oper_state(ifname: str, *, netns: str | None = None) -> str:
    with ipr(netns) as sock:
        links = sock.get_links(ifname=ifname)
    return str(links[0].get("IFLA_OPERSTATE")) if links else "ABSENT"


def wait_for_oper_up(ifname: str, *, netns: str | None = None, timeout: float = 5.0) -> None:
    """Wait until the device's operstate is UP (carrier on, ready to pass packets)."""
    wait_until(lambda: oper_state(ifname, netns=netns) == "UP", timeout=timeout,
               what=f"{ifname} operstate UP in netns {netns or '(current)'}")
