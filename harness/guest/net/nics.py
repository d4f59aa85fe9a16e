"""The VM's own NICs (virtio-net; `@pytest.mark.nics("loop")` gives two joined by a QEMU
hub: a frame sent on one arrives on the other), lent to a case.

They live in the guest's root network namespace; a case runs in a fresh namespace of its
own, so it borrows them: they move into the case's namespace for the case and back to the
root namespace after it (a physical device also returns there by itself when the namespace
holding it dies, so a killed case cannot lose them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from .links import ipr, wait_for_oper_up
from .netns import INIT_NETNS, run_in_netns

SYS_NET = "/sys/class/net"


@dataclass(frozen=True)
class Nic:
    name: str
    ifindex: int
    #: the kernel driver behind it (virtio_net)
    driver: str


def root_nics(driver: str = "virtio_net") -> list[str]:
    """Names of the root namespace's devices bound to `driver`, sorted (sysfs shows the
    root namespace's devices whatever namespace the caller is in)."""
    out = []
    for name in sorted(os.listdir(SYS_NET)):
        link = os.path.join(SYS_NET, name, "device", "driver")
        if os.path.islink(link) and os.path.basename(os.readlink(link)) == driver:
            out.append(name)
    return out


@contextlib.contextmanager
def borrowed(names: list[str], *, up: bool = True) -> Iterator[list[Nic]]:
    """Move the root namespace's devices `names` into the calling process's namespace for
    the block (up, no address), and back to the root namespace after it."""
    pid = os.getpid()
    moved: list[str] = []
    try:
        with run_in_netns(INIT_NETNS), ipr() as sock:
            for name in names:
                index = sock.link_lookup(ifname=name)[0]
                sock.link("set", index=index, net_ns_pid=pid)
                moved.append(name)
        nics = []
        with ipr() as sock:
            for name in names:
                index = int(sock.link_lookup(ifname=name)[0])
                if up:
                    sock.link("set", index=index, state="up")
                nics.append(Nic(name, index, "virtio_net"))
        if up:
            for nic in nics:
                wait_for_oper_up(nic.name, timeout=10)
        yield nics
    finally:
        with ipr() as sock:
            for name in moved:
                found = sock.link_lookup(ifname=name)
                if found:
                    sock.link("set", index=found[0], state="down")
                    sock.link("set", index=found[0], net_ns_pid=1)
