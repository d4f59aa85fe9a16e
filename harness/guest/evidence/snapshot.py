"""One network namespace's counters at one moment (protocol counters and devices), with
the namespace's identity (cookie and inode number: what the drop counter records), and the
change between two of them.

A snapshot is taken in the calling thread's namespace (`take`), or in another one that the
thread enters and leaves with setns (`take_in`: no thread nor process is started; this runs
before and after every case).
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass

from ..net.netns import run_in_netns
from . import devstats, snmp
from .model import DeviceDelta, NetnsDelta

#: getsockopt(SOL_SOCKET, SO_NETNS_COOKIE): the socket's namespace's cookie (5.14+)
SO_NETNS_COOKIE = 71


@dataclass(frozen=True)
class NetnsId:
    """What identifies a namespace: its cookie (0 where the kernel has none) and the inode
    number of /proc/PID/ns/net."""

    cookie: int
    inum: int


@dataclass(frozen=True)
class NetnsSnapshot:
    label: str
    ident: NetnsId
    #: the texts of /proc/net/{snmp,netstat,snmp6}
    counters: snmp.Texts
    devices: dict[str, devstats.Device]


def netns_cookie(sock: socket.socket) -> int:
    """The cookie of `sock`'s namespace; 0 where SO_NETNS_COOKIE is unknown (< 5.14)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)
    except OSError as exc:
        if exc.errno in (errno.ENOPROTOOPT, errno.EINVAL):
            return 0
        raise
    return int.from_bytes(raw, "little")


def current_id(sock: socket.socket | None = None) -> NetnsId:
    """The calling thread's namespace."""
    inum = os.stat("/proc/thread-self/ns/net").st_ino
    if sock is not None:
        return NetnsId(netns_cookie(sock), inum)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as own:
        return NetnsId(netns_cookie(own), inum)


def take(label: str, *, devices: bool = True) -> NetnsSnapshot:
    """The calling thread's namespace, now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        return NetnsSnapshot(label, current_id(sock), snmp.read(),
                             devstats.read(sock) if devices else {})


def take_in(path: str, label: str) -> NetnsSnapshot:
    """Namespace `path` (/run/netns/NAME, /proc/PID/ns/net), now: the calling thread enters
    it and comes back."""
    with run_in_netns(path):
        return take(label)


def delta(before: NetnsSnapshot | None, after: NetnsSnapshot,
          baseline_devices: dict[str, devstats.Device] | None = None) -> NetnsDelta:
    """What changed in one namespace. `before` None: the namespace was created since (its
    counters started at 0). `baseline_devices`: earlier values of devices that may have
    moved into it since (the VM's NICs a case borrows from the root namespace)."""
    counters = snmp.delta(before.counters if before else None, after.counters)
    devices: list[DeviceDelta] = []
    for name, dev in sorted(after.devices.items()):
        base = before.devices.get(name) if before else None
        if base is None and baseline_devices and name != "lo":
            base = baseline_devices.get(name)
        stats, driver = devstats.delta(base, dev)
        if stats or driver:
            devices.append(DeviceDelta(name, dev.kind, stats, driver))
    return NetnsDelta(after.label, after.ident.cookie, after.ident.inum, counters, devices)
