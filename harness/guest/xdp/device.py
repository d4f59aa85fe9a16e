"""What the AF_XDP cases set and read on a device, in the calling thread's namespace:
the XDP program the kernel reports attached (IFLA_XDP), the MTU, promiscuity, IPv6 off,
transmit checksum offload (SIOCETHTOOL), the channel count, and moving a device into
the calling *thread's* namespace and back (probes run in a helper thread of their own).

Why checksum offload matters: a stack sending over veth leaves TCP/UDP checksums for the
"hardware" to finish (CHECKSUM_PARTIAL), so the bytes an XDP program or an AF_XDP socket
sees carry only the pseudo-header sum. A frame forwarded from an XSK to another stack
(a TAP device, a VM) would then be dropped there as corrupt; a sender feeding AF_XDP
turns tx checksumming off (`set_tx_checksum(..., False)`), which also turns off TSO.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SIOCETHTOOL = 0x8946
ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM = 0x16, 0x17
ETHTOOL_GGRO, ETHTOOL_SGRO = 0x2B, 0x2C
ETHTOOL_GCHANNELS, ETHTOOL_SCHANNELS = 0x3C, 0x3D
#: IFLA_XDP_ATTACHED values (include/uapi/linux/if_link.h), and pyroute2's names of them
XDP_ATTACHED: dict[int | str | None, str] = {
    0: "none", 1: "drv", 2: "skb", 3: "hw", 4: "multi",
    None: "none", "xdp": "drv", "xdpgeneric": "skb", "xdpoffload": "hw", "xdpmulti": "multi",
}


@dataclass(frozen=True)
class XdpState:
    """What rtnetlink says is attached: mode name and program id (0: none)."""

    mode: str
    prog_id: int


def _link(ipr: Any, ifindex: int) -> Any:
    return ipr.link("get", index=ifindex)[0]


def xdp_state(ifindex: int) -> XdpState:
    """The XDP attachment of device `ifindex` as RTM_GETLINK reports it (IFLA_XDP)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        msg = _link(ipr, ifindex)
    xdp = msg.get_attr("IFLA_XDP")
    if xdp is None:
        return XdpState("none", 0)
    attached = xdp.get_attr("IFLA_XDP_ATTACHED")
    prog = int(xdp.get_attr("IFLA_XDP_PROG_ID") or 0)
    if not prog:
        for name in ("IFLA_XDP_DRV_PROG_ID", "IFLA_XDP_SKB_PROG_ID", "IFLA_XDP_HW_PROG_ID"):
            prog = prog or int(xdp.get_attr(name) or 0)
    return XdpState(XDP_ATTACHED.get(attached, str(attached)), prog)


def set_link(ifindex: int, **attrs: Any) -> None:
    """RTM_SETLINK with pyroute2 keywords (mtu=, state=, address=, flags=, ...)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("set", index=ifindex, **attrs)


def set_mtu(ifindex: int, mtu: int) -> None:
    set_link(ifindex, mtu=mtu)


def set_promisc(ifname: str, on: bool = True) -> None:
    """IFF_PROMISC on `ifname` (SIOCSIFFLAGS), so a NIC that filters by MAC (virtio-net
    with VIRTIO_NET_F_CTRL_RX) hands frames for other MACs to XDP."""
    from ..uapi import SIOCGIFFLAGS, SIOCSIFFLAGS

    iff_promisc = 0x100
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", ifname.encode(), 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        flags = flags | iff_promisc if on else flags & ~iff_promisc
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", ifname.encode(), flags))


def disable_ipv6(ifname: str) -> bool:
    """net.ipv6.conf.IFNAME.disable_ipv6=1 in the calling thread's namespace (no router
    solicitations, MLD or DAD from the device); False if the kernel has no IPv6."""
    path = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    try:
        with open(path, "w") as fh:
            fh.write("1")
    except FileNotFoundError:
        return False
    return True


def _ethtool(ifname: str, payload: bytearray) -> bytearray:
    """SIOCETHTOOL with `payload` (an ethtool command structure), returned updated."""
    buf = ctypes.create_string_buffer(bytes(payload), len(payload))
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(buf))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCETHTOOL, ifreq)
    return bytearray(buf.raw)


def tx_checksum(ifname: str) -> bool:
    """ETHTOOL_GTXCSUM: is transmit checksum offload on?"""
    out = _ethtool(ifname, bytearray(struct.pack("=II", ETHTOOL_GTXCSUM, 0)))
    return bool(struct.unpack_from("=I", out, 4)[0])


def set_tx_checksum(ifname: str, on: bool) -> bool:
    """ETHTOOL_STXCSUM; False when the driver cannot change it (EOPNOTSUPP: e.g. a NIC
    that never offered it, which is what we want anyway)."""
    try:
        _ethtool(ifname, bytearray(struct.pack("=II", ETHTOOL_STXCSUM, int(on))))
    except OSError as exc:
        if exc.errno == errno.EOPNOTSUPP:
            return False
        raise
    return True


def gro(ifname: str) -> bool:
    """ETHTOOL_GGRO: does the device merge received segments (GRO)?"""
    out = _ethtool(ifname, bytearray(struct.pack("=II", ETHTOOL_GGRO, 0)))
    return bool(struct.unpack_from("=I", out, 4)[0])


def set_gro(ifname: str, on: bool) -> None:
    """ETHTOOL_SGRO: a capture on a device without GRO sees the frames as they came."""
    _ethtool(ifname, bytearray(struct.pack("=II", ETHTOOL_SGRO, int(on))))


@dataclass(frozen=True)
class Channels:
    """struct ethtool_channels: maximum and current rx/tx/other/combined counts."""

    max_rx: int
    max_tx: int
    max_other: int
    max_combined: int
    rx: int
    tx: int
    other: int
    combined: int


def channels(ifname: str) -> Channels | None:
    """ETHTOOL_GCHANNELS; None when the driver has no channel ops."""
    try:
        out = _ethtool(ifname, bytearray(struct.pack("=9I", ETHTOOL_GCHANNELS, *[0] * 8)))
    except OSError as exc:
        if exc.errno == errno.EOPNOTSUPP:
            return None
        raise
    return Channels(*struct.unpack_from("=8I", out, 4))


def set_combined_channels(ifname: str, count: int) -> None:
    """ETHTOOL_SCHANNELS: `count` combined channels, the rest as they are."""
    cur = channels(ifname)
    if cur is None:
        raise OSError(errno.EOPNOTSUPP, f"{ifname}: no ethtool channel operations")
    _ethtool(ifname, bytearray(struct.pack("=9I", ETHTOOL_SCHANNELS, cur.max_rx, cur.max_tx,
                                           cur.max_other, cur.max_combined, cur.rx, cur.tx,
                                           cur.other, count)))


def mac_of(ifname: str) -> bytes:
    """The device's MAC address (SIOCGIFHWADDR in the calling thread's namespace; sysfs
    would show the root namespace's devices)."""
    siocgifhwaddr = 0x8927
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        res = fcntl.ioctl(s, siocgifhwaddr, struct.pack("256s", ifname.encode()))
    return res[18:24]


def free_nics(driver: str = "virtio_net") -> tuple[list[str], str]:
    """The root namespace's `driver` NICs a case or probe may borrow, and why others are
    left alone: a NIC with an IPv4 or global IPv6 address is in use (the machine's own
    link when cases run outside a kmatrix VM, e.g. scripts/host-pytest), and when the
    root namespace cannot be entered at all, none is free."""
    from pyroute2 import IPRoute

    from ..net.netns import INIT_NETNS, run_in_netns
    from ..net.nics import root_nics

    names = root_nics(driver)
    if not names:
        return [], f"no {driver} device in the root namespace"
    try:
        with run_in_netns(INIT_NETNS), IPRoute() as ipr:
            used = set()
            for msg in ipr.get_addr():
                if msg["family"] == socket.AF_INET or msg["scope"] == 0:
                    used.add(ipr.link("get", index=msg["index"])[0].get_attr("IFLA_IFNAME"))
    except OSError as exc:
        return [], (f"{driver} devices {names} are in a root namespace this process cannot "
                    f"enter ({exc.strerror}): not a kmatrix guest")
    free = [n for n in names if n not in used]
    why = f"{sorted(used & set(names))} have addresses (in use)" if used & set(names) else ""
    return free, why


@contextlib.contextmanager
def moved_here(names: list[str], source: str) -> Iterator[dict[str, int]]:
    """Move devices `names` from namespace `source` (a path such as /proc/1/ns/net) into
    the calling *thread's* namespace for the block (name -> ifindex there), and back to
    `source` after it. Unlike harness.guest.net.nics.borrowed (the process's namespace),
    this works from a thread that unshared its own namespace, as probes do."""
    from pyroute2 import IPRoute

    from ..net.netns import run_in_netns

    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    back = os.open(source, os.O_RDONLY)
    moved: list[str] = []
    try:
        with run_in_netns(source), IPRoute() as ipr:
            for name in names:
                ipr.link("set", index=ipr.link_lookup(ifname=name)[0], net_ns_fd=here)
                moved.append(name)
        with IPRoute() as ipr:
            yield {name: int(ipr.link_lookup(ifname=name)[0]) for name in names}
    finally:
        try:
            with IPRoute() as ipr:
                for name in moved:
                    found = ipr.link_lookup(ifname=name)
                    if found:
                        ipr.link("set", index=found[0], state="down")
                        ipr.link("set", index=found[0], net_ns_fd=back)
        finally:
            os.close(back)
            os.close(here)
