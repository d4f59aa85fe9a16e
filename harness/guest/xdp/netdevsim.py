"""netdevsim devices (drivers/net/netdevsim, CONFIG_NETDEVSIM): simulated physical NICs,
the lender the queue-leasing cases and probes borrow RX queues from (a lender must be a
device with a parent bus device and queue management ops, which netdevsim has).

    with Netdevsim(ports=2, queues=2) as nsim:
        lender = nsim.ports[0]            # Port(ifname="eth3", ifindex=7)

Created through /sys/bus/netdevsim/new_device ("ID PORTS QUEUES"), which makes the
netdevs in the writing thread's network namespace; removed through del_device on exit
(which also unregisters whatever the kernel ties to them: a netkit holding a lease). A
netdevsim netdev is a physical device to the kernel: if its namespace died first it would
move to the root namespace, so the context manager always deletes it.

The module is loaded with modprobe when the bus is missing; `unavailable()` says why
netdevsim cannot be had (the probe's evidence), None when it can.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass

from .. import kmod
from ..closing import Closing
from ..wait import wait_until

BUS = "/sys/bus/netdevsim"
_ids = itertools.count()


@dataclass(frozen=True)
class Port:
    """One netdev of a netdevsim device."""

    ifname: str
    ifindex: int


def unavailable() -> str | None:
    """Why netdevsim cannot be used in this kernel (bus absent and modprobe failed), or
    None when /sys/bus/netdevsim exists (after loading the module if needed)."""
    why = kmod.ensure("netdevsim", lambda: os.path.isdir(BUS))
    if why is None:
        return None
    return f"netdevsim missing: {BUS} absent and {why} (no CONFIG_NETDEVSIM?)"


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _ports(dev_name: str) -> list[Port]:
    """The netdevs whose parent device is `dev_name` (calling thread's namespace)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        msgs = ipr.link("dump")
    return sorted((Port(str(m.get_attr("IFLA_IFNAME")), int(m["index"])) for m in msgs
                   if m.get_attr("IFLA_PARENT_DEV_NAME") == dev_name),
                  key=lambda p: p.ifindex)


class Netdevsim(Closing):
    """A netdevsim device with `ports` netdevs of `queues` queues each, in the calling
    thread's namespace; deleted on exit."""

    def __init__(self, ports: int = 1, queues: int = 2, dev_id: int | None = None) -> None:
        reason = unavailable()
        if reason is not None:
            raise FileNotFoundError(reason)
        self.dev_id = dev_id if dev_id is not None else (
            (os.getpid() % 20000) * 50 + next(_ids) % 50 + 1000)
        self.name = f"netdevsim{self.dev_id}"
        _write(f"{BUS}/new_device", f"{self.dev_id} {ports} {queues}")
        def ready() -> list[Port]:
            found = _ports(self.name)
            return found if len(found) == ports else []

        try:
            #: the netdevs, by ifindex
            self.ports: list[Port] = wait_until(ready, timeout=30,
                                                what=f"{ports} netdev(s) of {self.name}")
        except BaseException:
            self.close()
            raise
        self.queues = queues

    def close(self) -> None:
        """del_device (already gone is fine)."""
        with contextlib.suppress(FileNotFoundError, OSError):
            if os.path.exists(f"{BUS}/devices/{self.name}"):
                _write(f"{BUS}/del_device", str(self.dev_id))

