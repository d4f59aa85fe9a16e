"""veth pairs with unique names and addresses, each end optionally in a namespace."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import threading
from dataclasses import dataclass

from ..wait import unique_name
from .links import delete_link, ipr, wait_for_oper_up

#: veth addresses come from the benchmarking range (RFC 2544), one /30 per pair
TEST_NET = ipaddress.IPv4Network("198.18.0.0/15")


@dataclass(frozen=True)
class VethEnd:
    name: str
    ifindex: int
    address: str
    netns: str | None


@dataclass(frozen=True)
class VethPair:
    """Two connected veth devices, up, with addresses in one /30 of TEST_NET."""

    a: VethEnd
    b: VethEnd
    prefixlen: int = 30


_subnet_lock = threading.Lock()
_subnet_seq = itertools.count()


def _next_subnet() -> ipaddress.IPv4Network:
    """A /30 of TEST_NET, distinct per pair in this process and spread by pid across
    processes sharing the guest."""
    with _subnet_lock:
        seq = next(_subnet_seq)
    count = TEST_NET.num_addresses // 4
    index = ((os.getpid() % 512) * 64 + seq) % count
    return ipaddress.IPv4Network((int(TEST_NET.network_address) + 4 * index, 30))


def create_veth_pair(*, netns_a: str | None = None, netns_b: str | None = None,
                     prefix: str = "kv", addresses: bool = True,
                     wait_up: bool = True) -> VethPair:
    """Create a veth pair with unique names, end `a` in `netns_a` and `b` in `netns_b`
    (None: the calling thread's namespace), both up, with IPv4 addresses from one /30."""
    name_a, name_b = unique_name(prefix + "a"), unique_name(prefix + "b")
    subnet = _next_subnet()
    hosts = list(subnet.hosts())
    addr_a, addr_b = (str(hosts[0]), str(hosts[1])) if addresses else ("", "")
    with ipr(None) as sock:
        sock.link("add", ifname=name_a, kind="veth", peer={"ifname": name_b})
        try:
            for name, ns in ((name_a, netns_a), (name_b, netns_b)):
                if ns is not None:
                    sock.link("set", index=sock.link_lookup(ifname=name)[0], net_ns_fd=ns)
        except BaseException:
            with contextlib.suppress(Exception):
                sock.link("del", ifname=name_a)
            raise
    try:
        ends = []
        for name, ns, addr in ((name_a, netns_a, addr_a), (name_b, netns_b, addr_b)):
            with ipr(ns) as sock:
                idx = sock.link_lookup(ifname=name)[0]
                if addresses:
                    sock.addr("add", index=idx, address=addr, prefixlen=subnet.prefixlen)
                sock.link("set", index=idx, state="up")
            ends.append(VethEnd(name, int(idx), addr, ns))
        if wait_up:
            for end in ends:
                wait_for_oper_up(end.name, netns=end.netns)
    except BaseException:
        delete_link(name_a, netns=netns_a)
        raise
    return VethPair(ends[0], ends[1], subnet.prefixlen)
