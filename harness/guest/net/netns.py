"""Network namespaces: switch a thread into one, make one (named or private to a thread).

Namespace changes are per thread (setns/unshare with CLONE_NEWNET affect only the calling
thread), so a case can make sockets in several namespaces from one process. No fork: under
TCG a fork of the test process costs seconds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from ..background import start
from ..uapi import CLONE_NEWNET, IFF_UP, SIOCGIFFLAGS, SIOCSIFFLAGS, libc, libc_check

T = TypeVar("T")

NETNS_DIR = "/run/netns"
#: the devices of the namespace sysfs was mounted in (the root one, in the guest)
SYS_NET = "/sys/class/net"
_GONE = (errno.ENOENT, errno.ENODEV)


def setns(fd: int) -> None:
    libc_check(libc.setns(fd, CLONE_NEWNET), "setns(CLONE_NEWNET)")


def unshare_netns() -> None:
    """Move the calling thread into a new, empty network namespace."""
    libc_check(libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")


#: the guest's root network namespace (PID 1's), where its NICs live; each case runs in a
#: fresh namespace of its own and enters this one only on purpose
INIT_NETNS = "/proc/1/ns/net"


@contextlib.contextmanager
def run_in_netns(name: str | None) -> Iterator[None]:
    """Switch the calling thread into network namespace `name` (``/run/netns/NAME``, or a
    path such as INIT_NETNS) for the block, and back to where it was. Sockets, netlink and
    ifindex-based BPF calls made in the block act in that namespace. `None` stays put."""
    if name is None:
        yield
        return
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(name if name.startswith("/") else os.path.join(NETNS_DIR, name),
                         os.O_RDONLY)
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(orig)
    finally:
        os.close(orig)


def in_new_netns(fn: Callable[[], T], *, lo_up: bool = True) -> T:
    """Run `fn` in a new thread that first moves itself into a fresh network namespace (lo
    up); the namespace dies with the thread unless `fn` keeps it. Exceptions are re-raised
    in the caller's thread."""
    def body() -> T:
        unshare_netns()
        if lo_up:
            set_up("lo")
        return fn()

    return start(body, "kmatrix-netns")()


def create_netns(name: str, *, lo_up: bool = True) -> None:
    """Create network namespace `name` at /run/netns/NAME (like `ip netns add`), lo up.

    A short-lived thread unshares its own network namespace and has pyroute2 bind-mount it
    (`netns.attach`); unlike `pyroute2.netns.create` this forks no child process."""
    from pyroute2 import netns

    def attach() -> None:
        netns.attach(name, f"{os.getpid()}/task/{threading.get_native_id()}")

    in_new_netns(attach, lo_up=lo_up)


def remove_netns(name: str) -> None:
    """Delete network namespace `name`; already gone is fine."""
    from pyroute2 import netns

    try:
        netns.remove(name)
    except OSError as exc:
        if exc.errno not in _GONE:
            raise


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def set_up(ifname: str) -> None:
    """ip link set IFNAME up, by ioctl (in the calling thread's namespace, no netlink)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", ifname.encode(), 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", ifname.encode(), flags | IFF_UP))


def socket_in(netns: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created in namespace `netns` (it stays there when the thread moves on)."""
    with run_in_netns(netns):
        return socket.socket(family, kind, proto)
