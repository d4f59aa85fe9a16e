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

from .. import kmod
from .links import ipr, wait_for_oper_up
from .netns import INIT_NETNS, SYS_NET, run_in_netns


@dataclass(frozen=True)
class Nic:
    name: str
    ifindex: int
    #: the kernel driver behind it (virtio_net)
    driver: str


VIRTIO_DEVICES = "/sys/bus/virtio/devices"
#: virtio device id of a network card
VIRTIO_ID_NET = 0x0001


def _virtio_nets() -> list[str]:
    """The VM's virtio devices that are network cards, bound to a driver or not."""
    out = []
    with contextlib.suppress(FileNotFoundError):
        for dev in sorted(os.listdir(VIRTIO_DEVICES)):
            with contextlib.suppress(OSError, ValueError), open(
                    os.path.join(VIRTIO_DEVICES, dev, "device")) as fh:
                if int(fh.read().strip(), 16) == VIRTIO_ID_NET:
                    out.append(dev)
    return out


def root_nics(driver: str = "virtio_net") -> list[str]:
    """Names of the root namespace's devices bound to `driver`, sorted (sysfs shows the
    root namespace's devices whatever namespace the caller is in). The virtio_net module
    is loaded first when the VM has virtio network cards and no driver for them."""
    if driver == "virtio_net" and _virtio_nets():
        kmod.ensure("virtio_net", lambda: all(
            os.path.exists(os.path.join(VIRTIO_DEVICES, dev, "net"))
            for dev in _virtio_nets()))
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
    # the namespace to move them to, held open: inside run_in_netns(INIT_NETNS) the calling
    # thread is in the root namespace itself (a move "to our pid" would stay there)
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    moved: list[str] = []
    try:
        with run_in_netns(INIT_NETNS), ipr() as sock:
            for name in names:
                index = sock.link_lookup(ifname=name)[0]
                sock.link("set", index=index, net_ns_fd=here)
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
        os.close(here)
        with ipr() as sock:
            for name in moved:
                found = sock.link_lookup(ifname=name)
                if found:
                    sock.link("set", index=found[0], state="down")
                    sock.link("set", index=found[0], net_ns_pid=1)
