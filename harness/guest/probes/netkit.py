"""netkit (6.7): a pair created over rtnetlink and a BPF_NETKIT_PRIMARY link on it."""

from __future__ import annotations

import os

from .. import bpf as lb
from .base import Unsupported, bpf_object, kernel_says


def probe_netkit() -> str:
    from pyroute2.netlink.exceptions import NetlinkError

    from ..net.links import ipr

    with ipr() as sock:
        try:
            sock.link("add", ifname="kmxprobe0", kind="netkit")
        except NetlinkError as exc:
            raise Unsupported(
                f"RTM_NEWLINK kind netkit: {lb.errno_name(exc.code)} "
                f"({os.strerror(exc.code)})") from exc
        try:
            ifindex = sock.link_lookup(ifname="kmxprobe0")[0]
            with bpf_object("probe_tc") as obj:
                with kernel_says("bpf_link_create(BPF_NETKIT_PRIMARY)"):
                    link = lb.link_create(obj.program("probe_tc"), ifindex,
                                          lb.BPF_NETKIT_PRIMARY)
                with link:
                    link_id = link.info().id
        finally:
            sock.link("del", ifname="kmxprobe0")
    return (f"netkit pair created (RTM_NEWLINK kind netkit), "
            f"bpf_link_create(BPF_NETKIT_PRIMARY): link id {link_id}, pair deleted")
