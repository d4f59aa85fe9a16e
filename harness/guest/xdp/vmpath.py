"""The whole VM-bypass path as one context manager, on a NIC and a peer that already sit
in their namespaces (a veth pair made there, or the VM's virtio-net NICs moved there):

    peer ns: PEER dev (peer_ip) --wire--> nic ns: NIC dev (nic_ip), XDP steering
                                              |steered: frames to the VM's MAC, ARP for vm_ip
                                              v
                                 XSK --XskBackend--unix socket (stream framing)--TapRelay
                                                                                   |
                                                         vm ns: TAP (vm_ip, vm MAC) <-

    with BypassPath(BypassSpec(nic_ns, "kxa1", peer_ns, "kxb1", vm_ns)) as path:
        ping(peer_ns, path.spec.addrs.vm_ip)     # answered by the vm namespace's stack
        path.counts()                            # the steering program's counters

Device set-up for exact frames: IPv6 off on the NIC, the peer and the TAP (no router
solicitations, MLD or DAD), transmit checksum offload off on the peer (its stack then
sends complete checksums: a frame forwarded to the TAP must verify there), the NIC
promiscuous (a NIC filtering by MAC, virtio-net, would drop frames for the VM's MAC).
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass, field

from ..closing import Closing
from ..net.links import oper_state
from ..net.netns import run_in_netns
from ..wait import wait_until
from . import device
from .attach import XdpMode, register_xsk
from .bypass import TapRelay, XskBackend, open_tap, socket_path
from .frames import mac_bytes
from .steer import Counts, SteerConf, Steering
from .uapi import BindFlag
from .umem import Umem, UmemConfig
from .xsk import XskConfig, XskSocket

VM_MAC = "02:6b:6d:78:00:03"


@dataclass(frozen=True)
class Addrs:
    """The addresses of the path (one IPv4 /24 shared by peer, NIC and VM)."""

    nic_ip: str = "10.200.0.1"
    peer_ip: str = "10.200.0.2"
    vm_ip: str = "10.200.0.3"
    prefix: int = 24
    vm_mac: str = VM_MAC


@dataclass(frozen=True)
class BypassSpec:
    """Where the path runs and how: the NIC's and the peer's namespace and device, the
    VM's namespace, the XDP mode, the XSK's bind flags (copy mode unless told), a
    5-tuple to steer instead of the
    VM's MAC (SteerConf.tuple), and whether the forwarders keep every frame."""

    nic_ns: str
    nic: str
    peer_ns: str
    peer: str
    vm_ns: str
    mode: XdpMode = XdpMode.SKB
    #: copy mode by default: the same path on every NIC (zero-copy is tested on its own)
    bind_flags: int = BindFlag.COPY
    tuple: tuple[int, str, str, int, int] | None = None
    record: bool = True
    addrs: Addrs = field(default_factory=Addrs)
    tap: str = "kxtap0"
    umem: UmemConfig = field(default_factory=lambda: UmemConfig(
        frame_count=1024, frame_size=4096, fill_size=512, completion_size=512))


def configure(netns: str, ifname: str, ip: str | None, prefix: int, *,
              mac: str | None = None) -> int:
    """In `netns`: IPv6 off, optionally a MAC and an IPv4 address, link up (operstate UP,
    or UNKNOWN for a TAP, which never reports carrier changes); the ifindex."""
    from pyroute2 import IPRoute

    with run_in_netns(netns):
        device.disable_ipv6(ifname)
        with IPRoute() as ipr:
            index = int(ipr.link_lookup(ifname=ifname)[0])
            if mac is not None:
                ipr.link("set", index=index, address=mac)
            if ip is not None:
                ipr.addr("add", index=index, address=ip, prefixlen=prefix)
            ipr.link("set", index=index, state="up")
    wait_until(lambda: oper_state(ifname, netns=netns) in ("UP", "UNKNOWN"), timeout=10,
               what=f"{ifname} operstate UP (or UNKNOWN: a TAP) in netns {netns}")
    return index


def _restore_offloads(netns: str, ifname: str, tx_checksum: bool, gro: bool) -> None:
    with run_in_netns(netns):
        device.set_tx_checksum(ifname, tx_checksum)
        device.set_gro(ifname, gro)


class BypassPath(Closing):
    """The set-up path (see the module doc); everything is undone on exit, in reverse."""

    def __init__(self, spec: BypassSpec) -> None:
        self.spec = spec
        addrs = spec.addrs
        with ExitStack() as stack:
            self.peer_index = configure(spec.peer_ns, spec.peer, addrs.peer_ip, addrs.prefix)
            with run_in_netns(spec.peer_ns):
                # frames as they are on the wire: checksums filled in by the peer's stack,
                # no GRO merging what the peer receives (its capture compares frames);
                # both restored after (a VM's NIC is lent again to the next case)
                csum, merge = device.tx_checksum(spec.peer), device.gro(spec.peer)
                device.set_tx_checksum(spec.peer, False)
                device.set_gro(spec.peer, False)
            stack.callback(_restore_offloads, spec.peer_ns, spec.peer, csum, merge)
            self.nic_index = configure(spec.nic_ns, spec.nic, addrs.nic_ip, addrs.prefix)
            with run_in_netns(spec.nic_ns):
                device.set_promisc(spec.nic, True)
            self.tap_fd = open_tap(spec.tap, spec.vm_ns)
            stack.callback(os.close, self.tap_fd)
            self.tap_index = configure(spec.vm_ns, spec.tap, addrs.vm_ip, addrs.prefix,
                                       mac=addrs.vm_mac)
            self.steering = stack.enter_context(Steering.load())
            self.steering.configure(SteerConf(mac_bytes(addrs.vm_mac), addrs.vm_ip,
                                              spec.tuple))
            with run_in_netns(spec.nic_ns):
                self.umem = stack.enter_context(Umem(spec.umem))
                self.xsk = stack.enter_context(XskSocket(self.umem, self.nic_index, 0,
                                                         XskConfig(rx_size=512, tx_size=512,
                                                                   bind_flags=spec.bind_flags)))
                self.link = stack.enter_context(self.steering.attach(self.nic_index,
                                                                     spec.mode))
            register_xsk(self.steering.xskmap, 0, self.xsk)
            self.xsk.fill()
            path = stack.enter_context(socket_path("kmx-bypass-"))
            self.backend = stack.enter_context(XskBackend(self.xsk, path, record=spec.record))
            self.relay = stack.enter_context(TapRelay(self.tap_fd, path, record=spec.record))
            self._stack = stack.pop_all()

    def counts(self) -> Counts:
        return self.steering.counts()

    def check(self) -> None:
        """Raise if a forwarding thread died."""
        self.backend.check()
        self.relay.check()

    def settled(self) -> bool:
        """Every frame the backend took from the XSK reached the TAP (or was dropped by
        it), every frame read from the TAP went out through the tx ring and completed."""
        self.check()
        b, r = self.backend, self.relay
        return (r.to_vm.frames + r.tap_drops == b.to_vm.frames
                and b.from_vm.frames == r.from_vm.frames
                and b.tx_completed == b.from_vm.frames)

    def close(self) -> None:
        self._stack.close()

