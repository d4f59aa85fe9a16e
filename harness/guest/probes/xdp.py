"""AF_XDP (4.18): an XSK bound in copy mode on a veth queue receives a real frame that an
XDP program redirected to it through an XSKMAP. On the VM's virtio-net NICs: native XDP
(`xdp_native_virtio`) and zero-copy AF_XDP (`af_xdp_zc`, 6.13); without NICs both say so.
netkit in single-device mode (`netkit_single`, 7.1) and leasing a netdevsim RX queue to
it (`queue_lease`, 7.1; without netdevsim the probe says that is what is missing)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
from collections.abc import Iterator

from .. import bpf as lb
from .. import xdp
from ..net.netns import set_up
from ..net.packets import ETH_P_ALL, udp_frame
from ..uapi import AF_XDP
from ..wait import unique_name
from .base import Unsupported, bpf_object, kernel_says

PORT = 4791
SIOCGIFHWADDR = 0x8927


def _mac(ifname: str) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        res = fcntl.ioctl(s, SIOCGIFHWADDR, struct.pack("256s", ifname.encode()))
    return res[18:24]


def probe_af_xdp() -> str:
    with kernel_says("socket(AF_XDP, SOCK_RAW)"):
        socket.socket(AF_XDP, socket.SOCK_RAW, 0).close()
    from ..net.links import ipr

    rx, tx = unique_name("kxa"), unique_name("kxb")
    with ipr() as sock, contextlib.ExitStack() as stack:
        sock.link("add", ifname=rx, kind="veth", peer={"ifname": tx})
        stack.callback(lambda: sock.link("del", ifname=rx))
        for name in (rx, tx):
            set_up(name)
        ifindex = socket.if_nametoindex(rx)
        obj = stack.enter_context(bpf_object("xsk_redirect"))
        obj.map("cfg").update(0, PORT)
        umem = stack.enter_context(xdp.Umem(xdp.UmemConfig(
            frame_count=64, frame_size=4096, fill_size=32, completion_size=32)))
        with kernel_says(f"bind(AF_XDP, {rx} queue 0, XDP_COPY)"):
            xsk = stack.enter_context(xdp.XskSocket(umem, ifindex, 0, xdp.XskConfig(
                rx_size=32, tx_size=32, bind_flags=xdp.XDP_COPY)))
        stack.enter_context(xdp.attach_xdp(obj.program("xsk_redirect"), ifindex,
                                           xdp.XdpMode.SKB))
        xdp.register_xsk(obj.map("xsks"), 0, xsk)
        xsk.fill()
        frame = udp_frame(_mac(rx), _mac(tx), "198.18.0.2", "198.18.0.1", 5000, PORT,
                          b"kmatrix af_xdp probe")
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as raw:
            raw.bind((tx, 0))
            raw.send(frame)
        try:
            got = xsk.wait_receive(1, timeout=10)
        except TimeoutError as exc:
            raise Unsupported(f"XSK bound on {rx} queue 0 (copy mode), but the frame "
                              f"redirected to it never arrived: {exc}") from exc
        if got[0].data != frame:
            raise Unsupported(f"XSK received {len(got[0].data)} bytes that differ from the "
                              f"{len(frame)}-byte frame sent")
        return (f"XSK bound on a veth queue 0 in copy mode (fd {xsk.fileno()}), XDP program "
                f"(SKB mode) redirected a {len(frame)}-byte frame to it through an XSKMAP, "
                f"received byte for byte; zerocopy={xsk.options().zerocopy}")


# --- the VM's virtio-net NICs: native XDP and zero-copy AF_XDP -----------------------------

#: the probes' answer in a VM without NICs (most runs: only suites marked
#: @pytest.mark.nics("loop") boot their kernel with two)
NO_NICS = ("this VM has no virtio-net NIC (a kernel's VM gets two, joined by a QEMU hub, "
           "when one of its cases is marked @pytest.mark.nics('loop')); the feature is the "
           "NIC driver's, so there is nothing to try")


@contextlib.contextmanager
def _virtio_nics() -> Iterator[list[tuple[str, int]]]:
    """The VM's virtio-net NICs (at most two), moved into the probe thread's namespace,
    up, a single channel each where they have more; back in the root namespace after."""
    from ..net.links import wait_for_oper_up
    from ..net.netns import INIT_NETNS
    from ..net.nics import root_nics
    from ..xdp import device

    names, why = device.free_nics()
    names = names[:2]
    if not names:
        raise Unsupported(f"no virtio-net NIC this probe may borrow: {why}" if root_nics()
                          else NO_NICS)
    with device.moved_here(names, INIT_NETNS) as indexes, contextlib.ExitStack() as undo:
        for name in names:
            chans = device.channels(name)
            if chans is not None and chans.combined > 1:
                device.set_combined_channels(name, 1)
                undo.callback(device.set_combined_channels, name, chans.combined)
            set_up(name)
            wait_for_oper_up(name, timeout=10)
        yield [(name, indexes[name]) for name in names]


def _nic_frame(src: str, dst: str, what: str) -> bytes:
    return udp_frame(_mac(dst), _mac(src), "198.18.201.2", "198.18.201.1", 5000, PORT,
                     f"kmatrix {what} probe".encode())


def _send_raw(ifname: str, frame: bytes) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as raw:
        raw.bind((ifname, 0))
        raw.send(frame)


def probe_xdp_native_virtio() -> str:
    """Native (driver-mode) XDP on a virtio-net NIC: the attach is accepted, rtnetlink
    reports it in DRV mode, and (with a second NIC on the hub) the program sees a frame
    sent to the first one."""
    from ..wait import wait_until
    from ..xdp import device

    with _virtio_nics() as nics, bpf_object("xsk_redirect") as obj:
        nic, ifindex = nics[0]
        obj.map("cfg").update(0, PORT)
        with kernel_says(f"bpf_link_create(BPF_XDP, {nic} (virtio_net), XDP_FLAGS_DRV_MODE)"):
            link = xdp.attach_xdp(obj.program("xsk_redirect"), ifindex, xdp.XdpMode.DRV)
        with link:
            state = device.xdp_state(ifindex)
            if state.mode != "drv":
                raise Unsupported(f"XDP link on {nic} accepted, but rtnetlink reports "
                                  f"mode {state.mode!r} (prog id {state.prog_id})")
            if len(nics) < 2:
                return (f"native XDP attached to {nic} (virtio_net, prog id "
                        f"{state.prog_id}); one NIC, no frame sent")
            other = nics[1][0]
            _send_raw(other, _nic_frame(other, nic, "xdp_native_virtio"))

            def seen() -> int:
                return sum(obj.map("seen").lookup_int(q) for q in range(8))

            try:
                wait_until(seen, timeout=10, what=f"the frame from {other} at {nic}'s program")
            except TimeoutError as exc:
                raise Unsupported(f"native XDP attached to {nic}, but the program never ran "
                                  f"on the frame sent from {other}: {exc}") from exc
            return (f"native XDP attached to {nic} (virtio_net, DRV mode, prog id "
                    f"{state.prog_id}); it ran on a frame sent from {other} over the hub")


def probe_af_xdp_zc() -> str:
    """An XSK bound with XDP_ZEROCOPY to queue 0 of a virtio-net NIC, reported zero-copy
    by XDP_OPTIONS, receiving (through a native XDP redirect) a frame sent from the second
    NIC byte for byte."""
    with _virtio_nics() as nics, contextlib.ExitStack() as stack:
        nic, ifindex = nics[0]
        umem = stack.enter_context(xdp.Umem(xdp.UmemConfig(
            frame_count=64, frame_size=4096, fill_size=32, completion_size=32)))
        with kernel_says(f"bind(AF_XDP, {nic} (virtio_net) queue 0, XDP_ZEROCOPY)"):
            xsk = stack.enter_context(xdp.XskSocket(umem, ifindex, 0, xdp.XskConfig(
                rx_size=32, tx_size=32, bind_flags=xdp.XDP_ZEROCOPY)))
        if not xsk.options().zerocopy:
            raise Unsupported(f"bind(XDP_ZEROCOPY) on {nic} succeeded but XDP_OPTIONS does "
                              "not report zero-copy")
        if len(nics) < 2:
            return f"XSK bound zero-copy on {nic} (virtio_net) queue 0; one NIC, no frame sent"
        obj = stack.enter_context(bpf_object("xsk_redirect"))
        obj.map("cfg").update(0, PORT)
        stack.enter_context(xdp.attach_xdp(obj.program("xsk_redirect"), ifindex,
                                           xdp.XdpMode.DRV))
        xdp.register_xsk(obj.map("xsks"), 0, xsk)
        xsk.fill()
        other = nics[1][0]
        frame = _nic_frame(other, nic, "af_xdp_zc")
        _send_raw(other, frame)
        try:
            got = xsk.wait_receive(1, timeout=10)
        except TimeoutError as exc:
            raise Unsupported(f"XSK bound zero-copy on {nic} queue 0, but the frame sent from "
                              f"{other} never arrived: {exc}") from exc
        if got[0].data != frame:
            raise Unsupported(f"zero-copy XSK on {nic} received {len(got[0].data)} bytes "
                              f"that differ from the {len(frame)}-byte frame sent")
        return (f"XSK bound zero-copy (XDP_OPTIONS_ZEROCOPY) on {nic} (virtio_net) queue 0, "
                f"native XDP redirected a {len(frame)}-byte frame from {other} to it, "
                "received byte for byte")


# --- netkit single device and queue leasing (7.1) -------------------------------------------


def probe_netkit_single() -> str:
    """A netkit created with IFLA_NETKIT_PAIRING single: the kernel reports the attribute
    back as single, the device has no peer, and no second netkit appeared."""
    from pyroute2.netlink.exceptions import NetlinkError

    from ..net import netkit as nk
    from ..xdp.lease import create_netkit

    name = unique_name("kxs")
    try:
        dev = create_netkit(name, single=True, rx_queues=2)
    except NetlinkError as exc:
        raise Unsupported(f"RTM_NEWLINK kind netkit, IFLA_NETKIT_PAIRING single, "
                          f"numrxqueues 2: {lb.errno_name(exc.code)} "
                          f"({os.strerror(exc.code)})") from exc
    try:
        others = [d.ifname for d in nk.dump() if d.ifname != name]
        if "IFLA_NETKIT_PAIRING" not in dev.present:
            raise Unsupported(f"the kernel ignores IFLA_NETKIT_PAIRING (above its "
                              f"IFLA_NETKIT_MAX): it made a pair ({name} + {others}) and "
                              f"reports only {sorted(dev.present)}")
        if dev.pairing is not nk.NetkitPairing.SINGLE or dev.link or others:
            raise Unsupported(f"asked for a single netkit, got pairing {dev.pairing}, "
                              f"peer ifindex {dev.link}, other netkits {others}")
        return (f"single netkit {name} (ifindex {dev.index}): IFLA_NETKIT_PAIRING single "
                "reported back, no peer")
    finally:
        nk.delete(name)


def probe_queue_lease() -> str:
    """NETDEV_CMD_QUEUE_CREATE on a single netkit leasing RX queue 0 of a netdevsim
    device: a queue id comes back and NETDEV_CMD_QUEUE_GET of the lender's queue (both
    devices up) shows the lease to that netkit queue. Without
    netdevsim (CONFIG_NETDEVSIM) there is no lender: unsupported, saying so."""
    from ..net import genl
    from ..xdp import netdevsim
    from ..xdp.lease import bring_up, lender_view, netkit_device

    with kernel_says("CTRL_CMD_GETFAMILY netdev"):
        fam = genl.netdev_family()
    if genl.NETDEV_CMD_QUEUE_CREATE not in fam.ops:
        raise Unsupported(f"genl family netdev (id {fam.id}) has no queue-create op "
                          f"(NETDEV_CMD_QUEUE_CREATE={genl.NETDEV_CMD_QUEUE_CREATE}); ops "
                          f"{sorted(fam.ops)}")
    reason = netdevsim.unavailable()
    if reason is not None:
        raise Unsupported(f"no lender: {reason}")
    name = unique_name("kxq")
    with netdevsim.Netdevsim(ports=1, queues=2) as nsim:
        lender = nsim.ports[0]
        with netkit_device(name, rx_queues=2) as dev:
            with kernel_says(f"queue-create on single netkit {name}, lease {lender.ifname} "
                             "(netdevsim) rx queue 0"):
                qid = genl.queue_create(dev.index, lender.ifindex, 0)
            bring_up(lender.ifindex, dev.index)
            with kernel_says(f"queue-get {lender.ifname} (netdevsim) rx queue 0"):
                lease = lender_view(lender.ifindex, 0)
            if lease is None or (lease.ifindex, lease.queue_id) != (dev.index, qid):
                raise Unsupported(f"queue-create gave queue {qid} on {name} (ifindex "
                                  f"{dev.index}), but queue-get of {lender.ifname} queue 0 "
                                  f"reports lease {lease}")
    return (f"single netkit leased rx queue 0 of netdevsim {lender.ifname}: queue-create "
            f"gave queue {qid}, queue-get of the lender's queue shows the lease (ifindex "
            f"{lease.ifindex}, queue {lease.queue_id})")


__all__ = ["NO_NICS", "lb", "probe_af_xdp", "probe_af_xdp_zc", "probe_netkit_single",
           "probe_queue_lease", "probe_xdp_native_virtio"]
