"""The bypass steering program (bpf/afxdp_bypass.bpf.c) from Python: load it, say which
flow it steers (by the VM's MAC, or by a 5-tuple), attach it, read its counters.

    with Steering.load() as steer:
        steer.configure(SteerConf(vm_mac=mac, vm_ip="10.200.0.3"))
        with steer.attach(ifindex, XdpMode.SKB):
            register_xsk(steer.xskmap, 0, xsk)
            ...
            counts = steer.counts()      # Counts(seen=..., steered=..., passed=...)
"""

from __future__ import annotations

import ctypes
import socket
from dataclasses import dataclass, fields
from typing import Self

from .. import bpf as lb
from ..closing import Closing
from .attach import XdpMode, attach_xdp

OBJECT = "afxdp_bypass"
PROGRAM = "bypass_steer"


class BypassConf(ctypes.Structure):
    """struct bypass_conf of bpf/afxdp_bypass.bpf.c (addresses in network order)."""

    _fields_ = [("vm_mac", ctypes.c_uint8 * 6), ("tuple", ctypes.c_uint8),
                ("proto", ctypes.c_uint8), ("vm_ip", ctypes.c_uint32),
                ("saddr", ctypes.c_uint32), ("daddr", ctypes.c_uint32),
                ("sport", ctypes.c_uint16), ("dport", ctypes.c_uint16)]


@dataclass(frozen=True)
class SteerConf:
    """What to steer: frames to `vm_mac` and ARP about `vm_ip`; with `tuple` set, IPv4
    frames of that (proto, saddr, daddr, sport, dport) instead of everything to the MAC."""

    vm_mac: bytes
    vm_ip: str | None = None
    tuple: tuple[int, str, str, int, int] | None = None

    def encode(self) -> bytes:
        if len(self.vm_mac) != 6:
            raise ValueError(f"vm_mac must be 6 bytes, not {len(self.vm_mac)}")

        def ip(text: str | None) -> int:
            return int.from_bytes(socket.inet_aton(text), "little") if text else 0

        def port(value: int) -> int:
            return int.from_bytes(value.to_bytes(2, "big"), "little")

        conf = BypassConf()
        conf.vm_mac[:] = list(self.vm_mac)
        conf.vm_ip = ip(self.vm_ip)
        if self.tuple is not None:
            proto, saddr, daddr, sport, dport = self.tuple
            conf.tuple, conf.proto = 1, proto
            conf.saddr, conf.daddr = ip(saddr), ip(daddr)
            conf.sport, conf.dport = port(sport), port(dport)
        return bytes(conf)


@dataclass(frozen=True)
class Counts:
    """The program's counters (bpf/afxdp_bypass.bpf.c, enum C_*), in that order."""

    seen: int
    steered: int
    passed: int
    no_socket: int
    seen_bytes: int
    steered_bytes: int
    passed_bytes: int
    arp_steered: int

    def minus(self, before: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) - getattr(before, f.name) for f in fields(self)))

    @property
    def balanced(self) -> bool:
        """Every frame is accounted for: seen == steered + passed + no_socket."""
        return self.seen == self.steered + self.passed + self.no_socket


class Steering(Closing):
    """The loaded steering object: its program, XSKMAP and counters."""

    def __init__(self, obj: lb.BpfObject) -> None:
        self.obj = obj

    @classmethod
    def load(cls) -> Self:
        return cls(lb.BpfObject(lb.object_path(OBJECT)))

    @property
    def program(self) -> lb.Program:
        return self.obj.program(PROGRAM)

    @property
    def xskmap(self) -> lb.Map:
        return self.obj.map("xsks")

    def configure(self, conf: SteerConf) -> None:
        self.obj.map("conf").update(0, conf.encode())

    def attach(self, ifindex: int, mode: XdpMode) -> lb.Link:
        """The program on device `ifindex` in `mode` (a BPF link: closing detaches)."""
        return attach_xdp(self.program, ifindex, mode)

    def counts(self) -> Counts:
        table = self.obj.map("counts")
        return Counts(*(table.lookup_int(i) for i in range(len(fields(Counts)))))

    def close(self) -> None:
        self.obj.close()

