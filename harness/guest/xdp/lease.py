"""netkit devices for queue leasing (7.1): a single device (IFLA_NETKIT_PAIRING single) or
a pair whose peer leases, created with room for leased RX queues.

netkit has one real RX queue; NETDEV_CMD_QUEUE_CREATE adds one per lease, up to the
device's allocated count, which is IFLA_NUM_RX_QUEUES at creation (default 1: no room,
"netkit maximum queue limit reached"), as ``ip link add numrxqueues 2 nk type netkit
single`` does. harness.guest.net.netkit.create has no such keyword, so the devices are
made here with pyroute2 directly (the netkit kind plugin of that module decodes them).

    with netkit_device("nks0", rx_queues=2) as dev:
        qid = genl.queue_create(dev.index, lender_ifindex, 0)   # 1
        bring_up(lender_ifindex, dev.index)
        lender_view(lender_ifindex, 0)   # QueueLease(ifindex=dev.index, queue_id=1, ...)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from ..net import genl
from ..net import netkit as nk
from ..net.netkit import NetkitInfo, NetkitMode, NetkitPairing
from . import device


def create_netkit(name: str, *, single: bool = True, rx_queues: int = 2,
                  peer: str | None = None, mode: NetkitMode = NetkitMode.L2,
                  attrs: Mapping[str, int] | None = None) -> NetkitInfo:
    """RTM_NEWLINK kind netkit, `rx_queues` RX queues allocated (on the peer too); a
    single device (pairing single, no peer) unless `single` is False. `attrs` are extra
    `netkit_*` keywords put into IFLA_INFO_DATA as given (to see what the kernel
    refuses). Returns the primary as the kernel reports it."""
    from pyroute2 import IPRoute

    args: dict[str, Any] = {"ifname": name, "kind": nk.KIND, "netkit_mode": int(mode),
                            "num_rx_queues": rx_queues, **(attrs or {})}
    if single:
        args["netkit_pairing"] = int(NetkitPairing.SINGLE)
    if peer is not None:
        args["peer"] = {"ifname": peer, "num_rx_queues": rx_queues}
    with IPRoute() as ipr:
        ipr.link("add", **args)
        return nk.info(name, ipr=ipr)


@contextlib.contextmanager
def netkit_device(name: str, **kwargs: Any) -> Iterator[NetkitInfo]:
    """`create_netkit` for the block; deleted after it (already gone is fine: deleting
    a lender takes the netkit leasing from it along)."""
    dev = create_netkit(name, **kwargs)
    try:
        yield dev
    finally:
        nk.delete(name)



def lender_view(lender_ifindex: int, lender_queue: int) -> genl.QueueLease | None:
    """The lease as NETDEV_CMD_QUEUE_GET of the *lender's* queue reports it: the netkit
    and its queue id that lease it, None when the queue is not leased. The kernel
    reports a lease on the physical side only (netif_rx_queue_lease_get_owner, direction
    PHYS_TO_VIRT: the queue-get of the netkit's own leased queue carries no lease), and
    answers queue-get of a device that is down with ENOENT: the lender must be up
    (`bring_up`)."""
    return genl.queue_get(lender_ifindex, lender_queue).lease


def bring_up(*ifindexes: int) -> None:
    """IFF_UP on each device: queue-get answers ENOENT for a device that is down."""
    for index in ifindexes:
        device.set_link(index, state="up")
