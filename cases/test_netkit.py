"""netkit devices (drivers/net/netkit.c) in the kernel under test, shown with real packets.

Without BPF: L2/L3 mode (MAC, ARP, neighbours), default policies (forward/blackhole on each
side, changed at runtime, refused values), changelink refusals, peer moved between
namespaces, carrier, scrubbing of skb->mark seen through a fwmark rule, headroom/tailroom,
single-device mode, deletion. With BPF (bpf/netkit_progs.bpf.c, modelled on the selftests'
prog_tests/tc_netkit.c): BPF_NETKIT_PRIMARY/PEER links and BPF_PROG_ATTACH, each running
only for its side; NETKIT_PASS/DROP/NEXT/REDIRECT; the policy only without programs;
BPF_F_BEFORE/AFTER ordering, revisions and link update; EACCES/ENXIO/ENODEV refusals;
skb->mark/priority and needed_headroom/tailroom as a program sees them; bpf_redirect_peer
from a host device; deletion releasing links and programs. Queue leasing (7.x) through the
netdev generic netlink family, where the kernel and the VM allow it.

Topology of most cases: two fresh namespaces, "host" holding the primary device and "pod"
holding the peer (the way Cilium uses netkit), 10.77.0.1/24 <-> 10.77.0.2/24. Traffic is
generated and observed with sockets from this process (setns per socket): raw ICMP echo,
UDP, TCP, AF_PACKET captures, plus rtnetlink state (neighbours, link stats, IFLA_*).
Where a kernel lacks an attribute (IFLA_NETKIT_SCRUB, _HEADROOM, _PAIRING: older kernels
accept and ignore attributes above their IFLA_NETKIT_MAX) the case skips with what the
kernel reported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import itertools
import os
import socket
import struct
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from harness.guest import bpf as lb
from harness.guest.bpf import counters
from harness.guest.evidence.fixture import StackCounters
from harness.guest.evidence.model import render
from harness.guest.fixtures import KernelExpectations
from harness.guest.net import genl
from harness.guest.net import netkit as nk
from harness.guest.net.netkit import NetkitMode, NetkitPairing, NetkitPolicy, NetkitScrub
from harness.guest.net.netns import (
    INIT_NETNS,
    create_netns,
    remove_netns,
    run_in_netns,
    socket_in,
)
from harness.guest.net.packets import (
    ETH_P_ARP,
    ETH_P_IP,
    QUIET,
    arp_requests_for,
    capture,
    ping,
    tcp_exchange,
    udp_probe,
    udp_to,
)
from harness.guest.wait import unique_name, wait_until
from harness.guest.xdp import netdevsim
from harness.guest.xdp.lease import create_netkit

pytestmark = pytest.mark.requires("netkit")

HOST_IP, POD_IP, UNUSED_IP = "10.77.0.1", "10.77.0.2", "10.77.0.99"
PREFIX = 24
IFF_NOARP = 0x80
IFF_UP = 0x1
NUD_INCOMPLETE, NUD_FAILED, NUD_NOARP = 0x01, 0x20, 0x40
NUD_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x80  # REACHABLE STALE DELAY PROBE PERMANENT
#: make_topo's pair n gets ifindexes INDEX_BASE + 2n (primary) and + 2n + 1 (peer)
INDEX_BASE = 1000

_seq = itertools.count()


# --- namespaces and sockets ----------------------------------------------------------------


# --- rtnetlink helpers ---------------------------------------------------------------------


@contextlib.contextmanager
def rtnl(ns: str) -> Iterator[Any]:
    """An rtnetlink socket in namespace `ns` (made by entering it: IPRoute(netns=) forks)."""
    with run_in_netns(ns), IPRoute() as ipr:
        yield ipr


def link_msg(ns: str, ifname: str) -> Any:
    with rtnl(ns) as ipr:
        return ipr.link("get", index=ipr.link_lookup(ifname=ifname)[0])[0]


def stats(ns: str, ifname: str) -> dict[str, int]:
    st = link_msg(ns, ifname).get_attr("IFLA_STATS64")
    return {k: int(st[k]) for k in ("rx_packets", "tx_packets", "tx_dropped", "rx_dropped")}


def neighbour(ns: str, ifname: str, ip: str) -> tuple[int, str | None] | None:
    """(NUD state, lladdr) of `ip` on `ifname`, or None without an entry."""
    with rtnl(ns) as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        for msg in ipr.neigh("dump", ifindex=index):
            if msg.get_attr("NDA_DST") == ip:
                return int(msg["state"]), msg.get_attr("NDA_LLADDR")
    return None


def _exists(ns: str, ifname: str) -> bool:
    with rtnl(ns) as ipr:
        return bool(ipr.link_lookup(ifname=ifname))


def ip_detail(ns: str, ifname: str) -> str:
    """`ip -d link show` text: a cross-check of our decoding, never the source of truth."""
    argv = ["ip", "-n", ns, "-d", "link", "show", "dev", ifname]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def make_netns() -> Iterator[Callable[[str], str]]:
    """Factory of fresh, uniquely named namespaces (lo up); removed at teardown."""
    created: list[str] = []

    def make(tag: str) -> str:
        name = unique_name(f"kmx-nk-{tag}-", limit=64)
        create_netns(name)
        created.append(name)
        with run_in_netns(name):  # no IPv6 chatter (DAD, MLD, RS) in captures and counters
            for conf in ("all", "default"):
                with open(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6", "w") as f:
                    f.write("1")
        return name

    yield make
    for name in reversed(created):
        remove_netns(name)


@dataclasses.dataclass
class Topo:
    host: str
    pod: str
    primary: str
    peer: str
    primary_index: int
    peer_index: int

    def primary_info(self) -> nk.NetkitInfo:
        return nk.info(self.primary, netns=self.host)

    def peer_info(self) -> nk.NetkitInfo:
        return nk.info(self.peer, netns=self.pod)


def _configure(ns: str, ifname: str, ip: str | None, up: bool) -> None:
    with rtnl(ns) as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        if ip is not None:
            ipr.addr("add", index=index, address=ip, prefixlen=PREFIX)
        if up:
            ipr.link("set", index=index, state="up")


@pytest.fixture
def make_topo(make_netns: Callable[[str], str]) -> Iterator[Callable[..., Topo]]:
    """Factory: netkit pair host/primary <-> pod/peer with addresses, both up.

    By default both namespaces are new and the addresses HOST_IP/POD_IP; `host`, `pod` and
    `ips` place a pair elsewhere (e.g. an "outside" link next to the pod's pair: netkit is
    built in, unlike veth, so these cases need no module). Other keyword arguments go to
    nk.create (mode, policy, scrub ...). Teardown deletes the pairs (tolerating a case that
    deleted one already); make_netns removes the namespaces.
    """
    made: list[Topo] = []

    def make(
        *,
        addresses: bool = True,
        up: bool = True,
        host: str | None = None,
        pod: str | None = None,
        ips: tuple[str, str] = (HOST_IP, POD_IP),
        **kwargs: Any,
    ) -> Topo:
        n = next(_seq)
        host = host or make_netns("host")
        pod = pod or make_netns("pod")
        # ifindexes of our choosing (unique per pair), so the two ends never share one (each
        # would be 2 in its fresh namespace) and a BPF program's skb->ifindex tells them apart
        prim, peer = nk.create_pair(
            f"nkh{n}",
            f"nkp{n}",
            netns=host,
            peer_netns=pod,
            index=INDEX_BASE + 2 * n,
            peer_index=INDEX_BASE + 2 * n + 1,
            **kwargs,
        )
        topo = Topo(host, pod, prim.ifname, peer.ifname, prim.index, peer.index)
        made.append(topo)
        _configure(host, topo.primary, ips[0] if addresses else None, up)
        _configure(pod, topo.peer, ips[1] if addresses else None, up)
        return topo

    yield make
    for topo in made:
        nk.delete(topo.primary, netns=topo.host)


def _errno(exc: pytest.ExceptionInfo[NetlinkError]) -> str:
    return errno.errorcode.get(exc.value.code, str(exc.value.code))


# --- cases: attributes and modes -----------------------------------------------------------


def test_defaults_as_reported(make_topo: Callable[..., Topo]) -> None:
    """No attributes given: L3, pass/pass, scrub default both ways, primary/peer roles."""
    topo = make_topo(addresses=False, up=False)
    prim, peer = topo.primary_info(), topo.peer_info()
    assert (prim.primary, peer.primary) == (True, False)
    for dev in (prim, peer):
        assert dev.mode is NetkitMode.L3
        assert dev.policy is NetkitPolicy.PASS and dev.peer_policy is NetkitPolicy.PASS
        if "IFLA_NETKIT_SCRUB" in dev.present:  # 6.7-6.10 have no scrub attribute
            assert dev.scrub is NetkitScrub.DEFAULT and dev.peer_scrub is NetkitScrub.DEFAULT
        assert dev.flags & IFF_NOARP
    # each side names the other: IFLA_LINK = peer ifindex, IFLA_LINK_NETNSID = other netns
    assert (prim.index, peer.index) == (topo.primary_index, topo.peer_index)
    assert peer.index == prim.index + 1 and prim.index >= INDEX_BASE  # as requested
    assert prim.link == peer.index and peer.link == prim.index
    assert prim.link_netnsid is not None and peer.link_netnsid is not None
    text = ip_detail(topo.host, topo.primary)
    assert "netkit mode l3 type primary policy forward peer policy forward" in text
    assert "netkit mode l3 type peer" in ip_detail(topo.pod, topo.peer)


def test_l3_mode_refuses_mac_and_is_noarp(make_topo: Callable[..., Topo]) -> None:
    topo = make_topo(mode=NetkitMode.L3, addresses=False)
    prim = topo.primary_info()
    assert prim.flags & IFF_NOARP
    assert prim.address == "00:00:00:00:00:00"
    with rtnl(topo.host) as ipr, pytest.raises(NetlinkError) as exc:
        ipr.link("set", index=prim.index, address="02:00:00:00:00:42")
    assert exc.value.code == errno.EOPNOTSUPP, _errno(exc)
    assert topo.primary_info().address == "00:00:00:00:00:00"
    # an address at creation is refused as well, for the primary and for the peer
    refused: list[dict[str, Any]] = [
        {"address": "02:00:00:00:00:42"},
        {"peer_address": "02:00:00:00:00:43"},
    ]
    for kwargs in refused:
        with pytest.raises(NetlinkError) as exc:
            nk.create_pair("nkl3x", "nkl3y", netns=topo.host, **kwargs)
        assert exc.value.code == errno.EOPNOTSUPP, _errno(exc)
        with rtnl(topo.host) as ipr:
            assert not ipr.link_lookup(ifname="nkl3x")


def _is_random_unicast(mac: str | None) -> bool:
    assert mac is not None
    first = int(mac.split(":")[0], 16)
    return mac != "00:00:00:00:00:00" and first & 0x02 == 0x02 and first & 0x01 == 0


def test_l2_mode_random_and_settable_mac(make_topo: Callable[..., Topo]) -> None:
    a = make_topo(mode=NetkitMode.L2, addresses=False, up=False)
    b = make_topo(mode=NetkitMode.L2, addresses=False, up=False)
    macs = [d.address for d in (a.primary_info(), a.peer_info(), b.primary_info())]
    assert all(_is_random_unicast(m) for m in macs), macs
    assert len(set(macs)) == 3, macs
    assert not a.primary_info().flags & IFF_NOARP and not a.peer_info().flags & IFF_NOARP
    with rtnl(a.host) as ipr:
        ipr.link("set", index=a.primary_info().index, address="02:00:00:00:00:42")
    assert a.primary_info().address == "02:00:00:00:00:42"
    # explicit addresses at creation, primary and peer
    with rtnl(a.host) as ipr:
        ipr.link(
            "add",
            ifname="nkl2x",
            kind="netkit",
            netkit_mode=NetkitMode.L2,
            address="02:00:00:00:01:01",
            peer={"ifname": "nkl2y", "address": "02:00:00:00:01:02"},
        )
    try:
        assert nk.info("nkl2x", netns=a.host).address == "02:00:00:00:01:01"
        assert nk.info("nkl2y", netns=a.host).address == "02:00:00:00:01:02"
    finally:
        nk.delete("nkl2x", netns=a.host)


def test_l2_arp_between_namespaces(make_topo: Callable[..., Topo]) -> None:
    topo = make_topo(mode=NetkitMode.L2)
    peer_mac = topo.peer_info().address
    with capture(topo.pod, topo.peer) as cap:
        assert ping(topo.host, POD_IP) == 3
        cap.drain(0.3)
    requests = arp_requests_for(cap.ethertype(ETH_P_ARP), POD_IP)
    assert requests, "no ARP request for the peer's address reached the peer"
    sender_mac = ":".join(f"{b:02x}" for b in requests[0][22:28])
    assert sender_mac == topo.primary_info().address
    entry = neighbour(topo.host, topo.primary, POD_IP)
    assert entry is not None and entry[0] & NUD_VALID, entry
    assert entry[1] == peer_mac


@pytest.mark.parametrize("mode", [NetkitMode.L2, NetkitMode.L3], ids=["l2", "l3"])
def test_unresolved_neighbour(make_topo: Callable[..., Topo], mode: NetkitMode) -> None:
    """UDP to an on-link address nobody owns: L2 asks by ARP and holds the packet; L3 has
    no ARP at all (IFF_NOARP, NUD_NOARP neighbour) and hands the packet straight over."""
    topo = make_topo(mode=mode)
    with capture(topo.pod, topo.peer) as cap:
        with socket_in(topo.host, socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.sendto(b"kmatrix", (UNUSED_IP, 9))
        cap.drain(QUIET)
    arp = arp_requests_for(cap.ethertype(ETH_P_ARP), UNUSED_IP)
    udp = udp_to(cap.ethertype(ETH_P_IP), UNUSED_IP)
    entry = neighbour(topo.host, topo.primary, UNUSED_IP)
    assert entry is not None
    if mode is NetkitMode.L2:
        assert arp, "L2: no ARP request for the unresolved address"
        assert not udp, "L2: packet left before its neighbour was resolved"
        assert entry[0] & (NUD_INCOMPLETE | NUD_FAILED), entry
    else:
        assert not cap.ethertype(ETH_P_ARP, incoming_only=False), "L3 device sent ARP"
        assert len(udp) == 1, "L3: the packet should cross without neighbour resolution"
        assert entry[0] == NUD_NOARP, entry


# --- cases: default policies ---------------------------------------------------------------


@pytest.mark.parametrize("mode", [NetkitMode.L2, NetkitMode.L3], ids=["l2", "l3"])
def test_forward_policy_passes_traffic(make_topo: Callable[..., Topo], mode: NetkitMode) -> None:
    topo = make_topo(mode=mode)
    before_p, before_q = stats(topo.host, topo.primary), stats(topo.pod, topo.peer)
    assert ping(topo.host, POD_IP) == 3
    assert ping(topo.pod, HOST_IP) == 3
    assert udp_probe(topo.host, topo.pod, POD_IP) == 5
    assert udp_probe(topo.pod, topo.host, HOST_IP) == 5
    assert tcp_exchange(topo.host, topo.pod, POD_IP)
    assert tcp_exchange(topo.pod, topo.host, HOST_IP)
    after_p, after_q = stats(topo.host, topo.primary), stats(topo.pod, topo.peer)
    sent = after_p["tx_packets"] - before_p["tx_packets"]
    assert sent >= 3 + 5 + 3  # pings, datagrams, TCP handshake at least
    assert after_q["rx_packets"] - before_q["rx_packets"] == sent
    assert after_p["tx_dropped"] == before_p["tx_dropped"]


@pytest.mark.parametrize("side", ["primary", "peer"])
def test_blackhole_policy(make_topo: Callable[..., Topo], side: str) -> None:
    """policy drop on one device: what it transmits is dropped (and counted), the other
    direction still flows; anything needing both directions (ping, TCP) fails."""
    key = "policy" if side == "primary" else "peer_policy"
    kwargs = {key: NetkitPolicy.DROP}
    topo = make_topo(**kwargs)
    prim = topo.primary_info()
    assert prim.policy is (NetkitPolicy.DROP if side == "primary" else NetkitPolicy.PASS)
    assert prim.peer_policy is (NetkitPolicy.DROP if side == "peer" else NetkitPolicy.PASS)
    assert "policy blackhole" in ip_detail(topo.host, topo.primary)
    if side == "primary":
        dropping, ns, far_ns, far_ip, near_ip = topo.primary, topo.host, topo.pod, POD_IP, HOST_IP
    else:
        dropping, ns, far_ns, far_ip, near_ip = topo.peer, topo.pod, topo.host, HOST_IP, POD_IP
    before = stats(ns, dropping)
    assert udp_probe(ns, far_ns, far_ip) == 0
    assert stats(ns, dropping)["tx_dropped"] - before["tx_dropped"] >= 5
    assert udp_probe(far_ns, ns, near_ip) == 5
    assert ping(topo.host, POD_IP, count=1, timeout=QUIET) == 0
    assert not tcp_exchange(topo.host, topo.pod, POD_IP, timeout=QUIET)


def test_policy_change_at_runtime(make_topo: Callable[..., Topo]) -> None:
    topo = make_topo()
    assert udp_probe(topo.host, topo.pod, POD_IP) == 5
    now = nk.set_policy(topo.primary, policy=NetkitPolicy.DROP, netns=topo.host)
    assert now.policy is NetkitPolicy.DROP and now.peer_policy is NetkitPolicy.PASS
    assert udp_probe(topo.host, topo.pod, POD_IP) == 0
    assert udp_probe(topo.pod, topo.host, HOST_IP) == 5
    # the peer's policy is changed through the primary too
    now = nk.set_policy(
        topo.primary, policy=NetkitPolicy.PASS, peer_policy=NetkitPolicy.DROP, netns=topo.host
    )
    assert (now.policy, now.peer_policy) == (NetkitPolicy.PASS, NetkitPolicy.DROP)
    assert topo.peer_info().policy is NetkitPolicy.DROP
    assert udp_probe(topo.host, topo.pod, POD_IP) == 5
    assert udp_probe(topo.pod, topo.host, HOST_IP) == 0
    nk.set_policy(topo.primary, peer_policy=NetkitPolicy.PASS, netns=topo.host)
    assert tcp_exchange(topo.host, topo.pod, POD_IP)


@pytest.mark.parametrize(
    "value",
    [nk.NetkitAction.REDIRECT, nk.NetkitAction.NEXT, 1, 3],
    ids=["redirect", "next", "1", "3"],
)
def test_policy_values_refused(make_topo: Callable[..., Topo], value: int) -> None:
    """Only NETKIT_PASS and NETKIT_DROP are default policies: EINVAL at create and change."""
    topo = make_topo(addresses=False, up=False)
    cases: list[dict[str, Any]] = [{"policy": value}, {"peer_policy": value}]
    for kwargs in cases:
        with pytest.raises(NetlinkError) as exc:
            nk.create_pair("nkbad0", "nkbad1", netns=topo.host, **kwargs)
        assert exc.value.code == errno.EINVAL, _errno(exc)
        with pytest.raises(NetlinkError) as exc:
            nk.set_policy(topo.primary, netns=topo.host, **kwargs)
        assert exc.value.code == errno.EINVAL, _errno(exc)
    prim = topo.primary_info()
    assert (prim.policy, prim.peer_policy) == (NetkitPolicy.PASS, NetkitPolicy.PASS)


def test_changelink_refusals(make_topo: Callable[..., Topo]) -> None:
    """netkit_change_link: only through the primary, and only the policies."""
    topo = make_topo(addresses=False, up=False)
    with pytest.raises(NetlinkError) as exc:
        nk.set_policy(topo.peer, policy=NetkitPolicy.DROP, netns=topo.pod)
    assert exc.value.code == errno.EACCES, _errno(exc)
    fixed: list[dict[str, int]] = [
        {"netkit_mode": NetkitMode.L2},
        {"netkit_scrub": NetkitScrub.NONE},
        {"netkit_peer_scrub": NetkitScrub.NONE},
    ]
    for attrs in fixed:
        with pytest.raises(NetlinkError) as exc:
            nk.change(topo.primary, netns=topo.host, **attrs)
        assert exc.value.code == errno.EACCES, (attrs, _errno(exc))
    with rtnl(topo.host) as ipr, pytest.raises(NetlinkError) as exc:
        ipr.link("set", index=topo.primary_info().index, kind="netkit", peer="nkother")
    # 6.12 answers EINVAL for IFLA_NETKIT_PEER_INFO, later kernels EACCES like the others
    assert exc.value.code in (errno.EINVAL, errno.EACCES), _errno(exc)
    prim, peer = topo.primary_info(), topo.peer_info()
    assert prim.mode is NetkitMode.L3 and peer.policy is NetkitPolicy.PASS
    if "IFLA_NETKIT_SCRUB" in prim.present:
        assert prim.scrub is NetkitScrub.DEFAULT and prim.peer_scrub is NetkitScrub.DEFAULT


# --- cases: namespaces, carrier, scrubbing -------------------------------------------------


def test_peer_moved_into_namespace(make_netns: Callable[[str], str]) -> None:
    host, pod = make_netns("host"), make_netns("pod")
    with rtnl(host) as ipr:
        ipr.link("add", ifname="nkmv0", kind="netkit", peer="nkmv1")
    try:
        assert nk.info("nkmv0", netns=host).link_netnsid is None  # same namespace
        with rtnl(host) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="nkmv1")[0], net_ns_fd=pod)
            assert not ipr.link_lookup(ifname="nkmv1")
        prim, peer = nk.info("nkmv0", netns=host), nk.info("nkmv1", netns=pod)
        assert prim.link == peer.index and prim.link_netnsid is not None
        assert peer.primary is False
        _configure(host, "nkmv0", HOST_IP, True)
        _configure(pod, "nkmv1", POD_IP, True)
        assert ping(host, POD_IP) == 3
        assert tcp_exchange(pod, host, HOST_IP)
    finally:
        nk.delete("nkmv0", netns=host)


def _carrier(ns: str, ifname: str) -> int:
    return int(link_msg(ns, ifname).get_attr("IFLA_CARRIER"))


def test_carrier_follows_both_ends(make_topo: Callable[..., Topo]) -> None:
    """netkit_open/close: carrier only while both devices are up; down peer drops."""
    topo = make_topo(up=False)
    _configure(topo.host, topo.primary, None, True)
    assert _carrier(topo.host, topo.primary) == 0
    _configure(topo.pod, topo.peer, None, True)
    assert (_carrier(topo.host, topo.primary), _carrier(topo.pod, topo.peer)) == (1, 1)
    assert udp_probe(topo.host, topo.pod, POD_IP) == 5
    with rtnl(topo.pod) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=topo.peer)[0], state="down")
    assert _carrier(topo.host, topo.primary) == 0
    # traffic toward a down peer: the primary drops it (netkit_xmit: peer not IFF_UP)
    before = stats(topo.host, topo.primary)
    with socket_in(topo.host, socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for _ in range(3):
            tx.sendto(b"x", (POD_IP, 9))
    after = stats(topo.host, topo.primary)
    assert after["tx_dropped"] - before["tx_dropped"] == 3
    assert after["tx_packets"] == before["tx_packets"]


def _mark_blackhole(ns: str, ifname: str, mark: int) -> None:
    """In `ns`, blackhole packets received on `ifname` with skb->mark == `mark` (a fib rule
    with iif + fwmark ahead of the local table): a way to see skb->mark after it crossed the
    pair. Locally sent packets (iif lo) are not affected."""
    with rtnl(ns) as ipr:
        ipr.route("add", dst="0.0.0.0/0", type="blackhole", table=4242)
        ipr.rule(
            "add", priority=100, fwmark=mark, iifname=ifname, table=4242, family=socket.AF_INET
        )
        ipr.rule("add", priority=200, table=255, family=socket.AF_INET)
        ipr.rule("del", priority=0, table=255, family=socket.AF_INET)


@pytest.mark.parametrize(
    ("scrub", "peer_scrub"),
    [(NetkitScrub.NONE, NetkitScrub.DEFAULT), (NetkitScrub.DEFAULT, NetkitScrub.NONE)],
    ids=["primary-none", "peer-none"],
)
def test_scrub_mark_across_namespaces(
    make_topo: Callable[..., Topo], scrub: NetkitScrub, peer_scrub: NetkitScrub,
    expect: KernelExpectations,
) -> None:
    """IFLA_NETKIT_SCRUB (of the transmitting device): DEFAULT zeroes skb->mark when the
    packet changes namespace, NONE keeps it. Observed with a fwmark rule on the receiver."""
    topo = make_topo(scrub=scrub, peer_scrub=peer_scrub)
    prim = topo.primary_info()
    if "IFLA_NETKIT_SCRUB" not in prim.present:
        expect.refused("netkit_scrub", "the kernel ignores IFLA_NETKIT_SCRUB (above its "
                       f"IFLA_NETKIT_MAX): dump has only {sorted(prim.present)}")
    assert (prim.scrub, prim.peer_scrub) == (scrub, peer_scrub)
    mark = 0x2A
    _mark_blackhole(topo.pod, topo.peer, mark)
    _mark_blackhole(topo.host, topo.primary, mark)
    # control: unmarked traffic is delivered both ways through the rules
    assert udp_probe(topo.host, topo.pod, POD_IP) == 5
    assert udp_probe(topo.pod, topo.host, HOST_IP) == 5
    to_pod = udp_probe(topo.host, topo.pod, POD_IP, mark=mark)
    to_host = udp_probe(topo.pod, topo.host, HOST_IP, mark=mark)
    assert to_pod == (5 if scrub is NetkitScrub.DEFAULT else 0), "host -> pod, marked"
    assert to_host == (5 if peer_scrub is NetkitScrub.DEFAULT else 0), "pod -> host, marked"


# --- cases: headroom/tailroom, single device -----------------------------------------------


def test_headroom_tailroom(make_netns: Callable[[str], str],
                           expect: KernelExpectations) -> None:
    host, pod = make_netns("host"), make_netns("pod")
    prim, peer = nk.create_pair(
        "nkhr0", "nkhr1", netns=host, peer_netns=pod, headroom=96, tailroom=48
    )
    try:
        if "IFLA_NETKIT_HEADROOM" not in prim.present:
            expect.refused("netkit_headroom", "the kernel accepted IFLA_NETKIT_HEADROOM/"
                           "TAILROOM but ignores them (above its IFLA_NETKIT_MAX): dump has "
                           f"only {sorted(prim.present)}")
        for dev in (prim, peer):
            assert (dev.headroom, dev.tailroom) == (96, 48), dev
        with pytest.raises(NetlinkError) as exc:
            nk.change("nkhr0", netns=host, netkit_headroom=128)
        assert exc.value.code == errno.EACCES, _errno(exc)
        with pytest.raises(NetlinkError) as exc:
            nk.change("nkhr0", netns=host, netkit_tailroom=128)
        assert exc.value.code == errno.EACCES, _errno(exc)
        now = nk.info("nkhr0", netns=host)
        assert (now.headroom, now.tailroom) == (96, 48)
        # without the attributes: nothing reserved
        plain, _ = nk.create_pair("nkhr2", "nkhr3", netns=host)
        assert (plain.headroom, plain.tailroom) == (0, 0)
        _configure(host, "nkhr0", HOST_IP, True)
        _configure(pod, "nkhr1", POD_IP, True)
        assert tcp_exchange(host, pod, POD_IP)
    finally:
        nk.delete("nkhr0", netns=host)
        nk.delete("nkhr2", netns=host)


def test_single_device_mode(make_netns: Callable[[str], str],
                            expect: KernelExpectations) -> None:
    ns = make_netns("single")
    with rtnl(ns) as ipr:
        before = {int(m["index"]) for m in ipr.link("dump")}
    dev = nk.create("nks0", pairing=NetkitPairing.SINGLE, netns=ns)
    try:
        if "IFLA_NETKIT_PAIRING" not in dev.present:
            with rtnl(ns) as ipr:
                extra = sorted(m.get_attr("IFLA_IFNAME") for m in ipr.link("dump"))
            expect.refused("netkit_single", "the kernel ignores IFLA_NETKIT_PAIRING (above "
                           f"its IFLA_NETKIT_MAX): it made a pair instead, devices now {extra}, "
                           f"dump has only {sorted(dev.present)}")
        assert dev.pairing is NetkitPairing.SINGLE and dev.primary
        assert dev.link == 0 and dev.peer_policy is None and dev.scrub is None
        with rtnl(ns) as ipr:
            assert {int(m["index"]) for m in ipr.link("dump")} - before == {dev.index}
        # single mode admits no peer, no scrub, no drop policy (creation) ...
        refused: list[dict[str, Any]] = [
            {"peer": "nks1"},
            {"peer_policy": NetkitPolicy.PASS},
            {"scrub": NetkitScrub.DEFAULT},
            {"policy": NetkitPolicy.DROP},
        ]
        for kwargs in refused:
            with pytest.raises(NetlinkError) as exc:
                nk.create("nks9", pairing=NetkitPairing.SINGLE, netns=ns, **kwargs)
            assert exc.value.code == errno.EOPNOTSUPP, (kwargs, _errno(exc))
        # ... nor a policy change
        with pytest.raises(NetlinkError) as exc:
            nk.set_policy("nks0", policy=NetkitPolicy.DROP, netns=ns)
        assert exc.value.code == errno.EOPNOTSUPP, _errno(exc)
        # it comes up with carrier on its own; without a program, what it sends is dropped
        _configure(ns, "nks0", HOST_IP, True)
        assert _carrier(ns, "nks0") == 1
        before_st = stats(ns, "nks0")
        with socket_in(ns, socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for _ in range(4):
                tx.sendto(b"x", (POD_IP, 9))
        after_st = stats(ns, "nks0")
        assert after_st["tx_dropped"] - before_st["tx_dropped"] == 4
        assert after_st["tx_packets"] == before_st["tx_packets"]
    finally:
        nk.delete("nks0", netns=ns)


# --- cases: deletion -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["primary", "peer", "peer-netns"])
def test_delete(make_topo: Callable[..., Topo], how: str) -> None:
    """Deleting either end, or the namespace holding the peer, removes both devices."""
    topo = make_topo(addresses=False, up=False)
    if how == "primary":
        assert nk.delete(topo.primary, netns=topo.host)
    elif how == "peer":
        assert nk.delete(topo.peer, netns=topo.pod)
    else:
        remove_netns(topo.pod)
    # namespace cleanup runs from a workqueue: give it a moment
    wait_until(
        lambda: not _exists(topo.host, topo.primary),
        timeout=10,
        what=f"{topo.primary} to go with the {how}",
    )
    if how != "peer-netns":
        with rtnl(topo.pod) as ipr:
            assert not ipr.link_lookup(ifname=topo.peer)
    assert nk.delete(topo.primary, netns=topo.host) is False  # already gone: tolerated
    with pytest.raises(NetlinkError) as exc:
        nk.delete(topo.primary, netns=topo.host, missing_ok=False)
    assert exc.value.code == errno.ENODEV


# === BPF programs on netkit ================================================================
#
# bpf/netkit_progs.bpf.c: nk1..nk6 count IPv4 UDP datagrams to TEST_PORT (hits, trace in
# run order, what they saw in obs) and return action[N]; nk_to_peer does bpf_redirect_peer.
# BPF calls that take an ifindex resolve it in the calling thread's namespace: attachments
# are made from the host namespace (through the primary), as the kernel requires.

TEST_PORT = 4243
PRIMARY, PEER = lb.BPF_NETKIT_PRIMARY, lb.BPF_NETKIT_PEER
SIDES = {"primary": PRIMARY, "peer": PEER}
Action = nk.NetkitAction
OBS = struct.Struct("=IIIIIHH")


@dataclasses.dataclass(frozen=True)
class Obs:
    """What program N recorded about the last test packet it saw (struct obs)."""

    count: int
    mark: int
    priority: int
    ifindex: int
    pkt_type: int
    headroom: int
    tailroom: int


@dataclasses.dataclass
class Progs:
    """The loaded netkit_progs object plus what a test attached with it."""

    obj: lb.BpfObject
    links: list[lb.Link] = dataclasses.field(default_factory=list)
    #: (netns, ifindex, attach type, program) attached with BPF_PROG_ATTACH
    attached: list[tuple[str, int, int, lb.Program]] = dataclasses.field(default_factory=list)

    def prog(self, n: int | str) -> lb.Program:
        return self.obj.program(n if isinstance(n, str) else f"nk{n}")

    def pid(self, n: int | str) -> int:
        return self.prog(n).id

    def set_action(self, n: int, action: int) -> None:
        self.obj.map("action").update(n, int(action))

    def redirect_to(self, ifindex: int, flags: int = 0) -> None:
        cfg = self.obj.map("cfg")
        cfg.update(1, ifindex)
        cfg.update(2, flags)

    def reset(self) -> None:
        for name in ("hits", "trace", "obs"):
            self.obj.map(name).zero()

    def hits(self) -> dict[int, int]:
        return counters.hits(self.obj.map("hits"))

    def trace(self) -> list[int]:
        return counters.trace(self.obj.map("trace"))

    def obs(self, n: int) -> Obs:
        raw = self.obj.map("obs").lookup(n)
        assert raw is not None
        return Obs(*OBS.unpack(raw))

    def link(
        self,
        n: int | str,
        topo: Topo,
        attach_type: int,
        *,
        flags: int = 0,
        relative_fd: int = 0,
        relative_id: int = 0,
        expected_revision: int = 0,
    ) -> lb.Link:
        """bpf_link_create(BPF_NETKIT_PRIMARY/PEER) through the primary, from the host ns."""
        with run_in_netns(topo.host):
            link = lb.link_create(
                self.prog(n),
                topo.primary_index,
                attach_type,
                flags=flags,
                relative_fd=relative_fd,
                relative_id=relative_id,
                expected_revision=expected_revision,
            )
        self.links.append(link)
        return link

    def attach(self, n: int | str, topo: Topo, attach_type: int, **opts: int) -> None:
        """bpf_prog_attach_opts (no link) through the primary, from the host ns."""
        with run_in_netns(topo.host):
            lb.prog_attach_opts(self.prog(n), topo.primary_index, attach_type, **opts)
        self.attached.append((topo.host, topo.primary_index, attach_type, self.prog(n)))

    def close(self) -> None:
        for link in reversed(self.links):
            link.close()
        for ns, ifindex, attach_type, prog in reversed(self.attached):
            with contextlib.suppress(OSError), run_in_netns(ns):  # device may be gone
                lb.prog_detach_opts(prog, ifindex, attach_type)


@pytest.fixture
def progs(bpf_object: Callable[..., lb.BpfObject]) -> Iterator[Progs]:
    """netkit_progs loaded (nk1 expecting BPF_NETKIT_PRIMARY, nk2 BPF_NETKIT_PEER, for
    libbpf's bpf_program__attach_netkit), reacting to UDP port TEST_PORT."""
    obj = bpf_object("netkit_progs", expected_attach_type={"nk1": PRIMARY, "nk2": PEER})
    obj.map("cfg").update(0, TEST_PORT)
    p = Progs(obj)
    try:
        yield p
    finally:
        p.close()


def query(topo: Topo, attach_type: int) -> lb.QueryResult:
    with run_in_netns(topo.host):
        return lb.prog_query(topo.primary_index, attach_type)


def _flow(topo: Topo, side: str) -> tuple[str, str, str]:
    """(sender ns, receiver ns, receiver address) for traffic that `side` transmits."""
    if side == "primary":
        return topo.host, topo.pod, POD_IP
    return topo.pod, topo.host, HOST_IP


def _dev(topo: Topo, side: str) -> tuple[str, str]:
    return (topo.host, topo.primary) if side == "primary" else (topo.pod, topo.peer)


def _oserror(exc: pytest.ExceptionInfo[OSError]) -> str:
    return errno.errorcode.get(exc.value.errno or 0, str(exc.value))


@pytest.mark.parametrize("mode", [NetkitMode.L2, NetkitMode.L3], ids=["l2", "l3"])
def test_bpf_links_run_on_their_side(
    make_topo: Callable[..., Topo], progs: Progs, mode: NetkitMode
) -> None:
    """BPF_NETKIT_PRIMARY runs for what the primary transmits (host -> pod), BPF_NETKIT_PEER
    for what the peer transmits (pod -> host); both attached through the primary's ifindex.
    The skb already belongs to the receiving device when the program runs."""
    topo = make_topo(mode=mode)
    assert query(topo, PRIMARY).count == 0 and query(topo, PEER).count == 0
    with run_in_netns(topo.host):  # libbpf's bpf_program__attach_netkit (expected types)
        l1 = progs.prog(1).attach_netkit(topo.primary_index)
        l2 = progs.prog(2).attach_netkit(topo.primary_index)
    progs.links += [l1, l2]
    for target, n, link in ((PRIMARY, 1, l1), (PEER, 2, l2)):
        q = query(topo, target)
        assert (q.count, q.revision) == (1, 2), q
        assert (q.prog_ids, q.link_ids) == ([progs.pid(n)], [link.info().id])
    i1, i2 = l1.info(), l2.info()
    assert i1.type == i2.type == lb.LinkType.NETKIT
    assert (i1.ifindex, i1.attach_type) == (topo.primary_index, PRIMARY)
    assert (i2.ifindex, i2.attach_type) == (topo.peer_index, PEER)  # sits on the peer

    progs.reset()
    assert udp_probe(topo.host, topo.pod, POD_IP, port=TEST_PORT) == 5
    assert progs.hits() == {1: 5}
    assert progs.obs(1).ifindex == topo.peer_index
    progs.reset()
    assert udp_probe(topo.pod, topo.host, HOST_IP, port=TEST_PORT) == 5
    assert progs.hits() == {2: 5}
    assert progs.obs(2).ifindex == topo.primary_index

    l1.close()
    l2.close()
    assert query(topo, PRIMARY).count == 0 and query(topo, PEER).count == 0
    progs.reset()
    assert udp_probe(topo.host, topo.pod, POD_IP, port=TEST_PORT) == 5
    assert udp_probe(topo.pod, topo.host, HOST_IP, port=TEST_PORT) == 5
    assert progs.hits() == {}


def test_bpf_prog_attach_each_side(make_topo: Callable[..., Topo], progs: Progs) -> None:
    """The same with BPF_PROG_ATTACH/DETACH (no links): query shows link id 0."""
    topo = make_topo()
    progs.attach(3, topo, PRIMARY)
    progs.attach(4, topo, PEER)
    for target, n in ((PRIMARY, 3), (PEER, 4)):
        q = query(topo, target)
        assert (q.count, q.revision, q.prog_ids, q.link_ids) == (1, 2, [progs.pid(n)], [0])
    progs.reset()
    assert udp_probe(topo.host, topo.pod, POD_IP, port=TEST_PORT) == 5
    assert udp_probe(topo.pod, topo.host, HOST_IP, port=TEST_PORT) == 5
    assert progs.hits() == {3: 5, 4: 5}
    with run_in_netns(topo.host):
        lb.prog_detach_opts(progs.prog(3), topo.primary_index, PRIMARY)
        lb.prog_detach_opts(progs.prog(4), topo.primary_index, PEER)
        with pytest.raises(OSError) as exc:  # nothing left to detach
            lb.prog_detach_opts(progs.prog(3), topo.primary_index, PRIMARY)
        assert exc.value.errno == errno.ENOENT, _oserror(exc)
    progs.attached.clear()
    assert query(topo, PRIMARY).count == 0 and query(topo, PEER).count == 0
    progs.reset()
    assert udp_probe(topo.host, topo.pod, POD_IP, port=TEST_PORT) == 5
    assert progs.hits() == {}


@pytest.mark.parametrize("code", ["pass", "drop", "next"])
@pytest.mark.parametrize("side", ["primary", "peer"])
def test_bpf_return_codes(
    make_topo: Callable[..., Topo], progs: Progs, side: str, code: str,
    stack_counters: StackCounters, record_property: Callable[[str, object], None]
) -> None:
    """Chain [nk1 -> code, nk2 -> PASS] on one side: NETKIT_PASS delivers and ends the
    chain, NETKIT_DROP drops (counted as tx_dropped of the transmitting device, and by the
    kernel's drop tracepoint) and ends it, NETKIT_NEXT runs the next program."""
    topo = make_topo()
    progs.set_action(1, {"pass": Action.PASS, "drop": Action.DROP, "next": Action.NEXT}[code])
    progs.set_action(2, Action.PASS)
    progs.link(1, topo, SIDES[side])
    progs.link(2, topo, SIDES[side])
    src, dst, dst_ip = _flow(topo, side)
    before = stats(*_dev(topo, side))
    progs.reset()
    got = udp_probe(src, dst, dst_ip, port=TEST_PORT)
    dropped = stats(*_dev(topo, side))["tx_dropped"] - before["tx_dropped"]
    if code == "pass":
        assert (got, progs.trace(), dropped) == (5, [1] * 5, 0)
    elif code == "drop":
        assert (got, progs.trace(), dropped) == (0, [1] * 5, 5)
        if stack_counters.counter is not None:  # the kernel freed them as drops
            ev = stack_counters.delta()
            assert ev.drop_count() >= 5, render(ev)
            record_property("observed", "; ".join(d.text() for d in ev.drops))
    else:
        assert (got, progs.trace(), dropped) == (5, [1, 2] * 5, 0)


def test_bpf_policy_only_without_programs(make_topo: Callable[..., Topo], progs: Progs) -> None:
    """The default policy decides only while no program is attached: with policy drop, a
    program returning NETKIT_NEXT at the end of the chain still lets the packet through
    (netkit_xmit treats a final NEXT like PASS); the other side keeps its policy."""
    topo = make_topo(policy=NetkitPolicy.DROP, peer_policy=NetkitPolicy.DROP)
    assert udp_probe(topo.host, topo.pod, POD_IP, port=TEST_PORT) == 0
    progs.set_action(1, Action.NEXT)
    link = progs.link(1, topo, PRIMARY)
    assert udp_probe(topo.host, topo.pod, POD_IP, port=TEST_PORT) == 5
    assert udp_probe(topo.host, topo.pod, POD_IP) == 5  # non-test packets: NEXT too
    assert udp_probe(topo.pod, topo.host, HOST_IP, port=TEST_PORT) == 0
    progs.set_action(1, Action.DROP)
    assert udp_probe(topo.host, topo.pod, POD_IP, port=TEST_PORT) == 0
    progs.set_action(1, Action.PASS)
    assert udp_probe(topo.host, topo.pod, POD_IP, port=TEST_PORT) == 5
    link.close()
    assert udp_probe(topo.host, topo.pod, POD_IP, port=TEST_PORT) == 0
    assert progs.hits() == {1: 15}  # NEXT, DROP, PASS rounds; non-test packets uncounted


OUT_IPS = ("10.78.0.1", "10.78.0.2")


@pytest.mark.parametrize("side", ["primary", "peer"])
def test_bpf_redirect(
    make_topo: Callable[..., Topo],
    make_netns: Callable[[str], str],
    progs: Progs,
    side: str,
) -> None:
    """NETKIT_REDIRECT (bpf_redirect's return) sends the packet out of another device
    instead of the other end. The target ifindex is looked up in the namespace of the
    skb's device, i.e. of the *receiving* end: the pod for the primary's programs, the
    host for the peer's. The other device here is a second pair's primary, so the packet
    shows up on that pair's peer in an "out" namespace."""
    topo = make_topo()
    src, dst, dst_ip = _flow(topo, side)
    out = make_topo(host=dst, pod=make_netns("out"), ips=OUT_IPS, mode=NetkitMode.L2)
    progs.set_action(1, Action.REDIRECT)
    progs.redirect_to(out.primary_index)
    progs.link(1, topo, SIDES[side])
    tx_ns, tx_dev = _dev(topo, side)
    rx_ns, rx_dev = _dev(topo, "peer" if side == "primary" else "primary")
    tx_before, rx_before = stats(tx_ns, tx_dev), stats(rx_ns, rx_dev)
    with capture(out.pod, out.peer) as cap:
        got = udp_probe(src, dst, dst_ip, port=TEST_PORT)
        cap.drain(0.3)
    frames = udp_to(cap.ethertype(ETH_P_IP), dst_ip)
    assert got == 0
    assert len(frames) == 5
    assert all(struct.unpack_from("!H", f, 14 + 20 + 2)[0] == TEST_PORT for f in frames)
    assert progs.hits() == {1: 5}
    tx_after, rx_after = stats(tx_ns, tx_dev), stats(rx_ns, rx_dev)
    assert tx_after["tx_packets"] - tx_before["tx_packets"] == 5  # counted as sent
    assert tx_after["tx_dropped"] == tx_before["tx_dropped"]
    assert rx_after["rx_packets"] == rx_before["rx_packets"]  # never reached the other end


@pytest.mark.parametrize("side", ["primary", "peer"])
def test_bpf_chain_order_and_revisions(
    make_topo: Callable[..., Topo], progs: Progs, side: str
) -> None:
    """Multi-program ordering on one side: BPF_F_BEFORE/AFTER relative to a program fd, a
    link id or nothing, links mixed with BPF_PROG_ATTACH, expected_revision, link update
    in place; the kernel's run order (trace) always equals the query order."""
    topo = make_topo()
    target = SIDES[side]
    src, dst, dst_ip = _flow(topo, side)
    for n in range(1, 7):
        progs.set_action(n, Action.NEXT)

    def run_once() -> list[int]:
        progs.reset()
        assert udp_probe(src, dst, dst_ip, count=1, port=TEST_PORT) == 1
        return progs.trace()

    def order() -> tuple[list[int], list[int], int]:
        q = query(topo, target)
        return q.prog_ids, q.link_ids, q.revision

    l1 = progs.link(1, topo, target)
    l2 = progs.link(2, topo, target, flags=lb.BPF_F_BEFORE, relative_fd=progs.prog(1).fd)
    l3 = progs.link(
        3,
        topo,
        target,
        flags=lb.BPF_F_AFTER | lb.BPF_F_LINK | lb.BPF_F_ID,
        relative_id=l1.info().id,
    )
    progs.attach(4, topo, target, flags=lb.BPF_F_BEFORE)  # no relative: goes first
    ids = {n: progs.pid(n) for n in range(1, 7)}
    lid = {1: l1.info().id, 2: l2.info().id, 3: l3.info().id}
    assert order() == ([ids[4], ids[2], ids[1], ids[3]], [0, lid[2], lid[1], lid[3]], 5)
    assert run_once() == [4, 2, 1, 3]

    with pytest.raises(OSError) as exc:
        progs.link(5, topo, target, expected_revision=4)
    assert exc.value.errno == errno.ESTALE, _oserror(exc)
    l5 = progs.link(5, topo, target, flags=lb.BPF_F_AFTER, expected_revision=5)
    assert order()[0] == [ids[4], ids[2], ids[1], ids[3], ids[5]]
    assert order()[2] == 6

    # BPF_LINK_UPDATE: nk6 takes nk1's place; a wrong old program is refused
    with pytest.raises(OSError) as exc:
        l2.update(progs.prog(6), old_prog=progs.prog(1))
    assert exc.value.errno == errno.EPERM, _oserror(exc)
    l1.update(progs.prog(6), old_prog=progs.prog(1))
    prog_ids, link_ids, _ = order()
    assert prog_ids == [ids[4], ids[2], ids[6], ids[3], ids[5]]
    assert link_ids == [0, lid[2], lid[1], lid[3], l5.info().id]
    assert run_once() == [4, 2, 6, 3, 5]

    l1.close()
    with run_in_netns(topo.host):
        lb.prog_detach_opts(progs.prog(4), topo.primary_index, target)
    progs.attached.clear()
    assert order()[0] == [ids[2], ids[3], ids[5]]
    assert run_once() == [2, 3, 5]


def _mprog_call(what: str, prog: lb.Program, ifindex: int, target: int) -> None:
    if what == "link_create":
        lb.link_create(prog, ifindex, target).close()
    elif what == "prog_attach":
        lb.prog_attach_opts(prog, ifindex, target)
        lb.prog_detach_opts(prog, ifindex, target)
    else:
        lb.prog_query(ifindex, target)


def test_bpf_refusals(make_topo: Callable[..., Topo], progs: Progs) -> None:
    """Attach and query only through the primary: the peer's ifindex gives EACCES, a
    non-netkit device ENXIO, a missing one ENODEV (netkit_dev_fetch)."""
    topo = make_topo(addresses=False)
    prog = progs.prog(1)
    cases: list[tuple[str, int, int]] = [
        (topo.pod, topo.peer_index, errno.EACCES),
        (topo.host, 1, errno.ENXIO),  # lo
        (topo.host, 31337, errno.ENODEV),
    ]
    for ns, ifindex, want in cases:
        for target in (PRIMARY, PEER):
            for what in ("link_create", "prog_attach", "prog_query"):
                with run_in_netns(ns), pytest.raises(OSError) as exc:
                    _mprog_call(what, prog, ifindex, target)
                assert exc.value.errno == want, (what, ifindex, target, _oserror(exc))
    assert query(topo, PRIMARY).count == 0 and query(topo, PEER).count == 0


@pytest.mark.parametrize("scrub", [NetkitScrub.DEFAULT, NetkitScrub.NONE], ids=["default", "none"])
def test_bpf_scrub_seen(make_topo: Callable[..., Topo], progs: Progs, scrub: NetkitScrub,
                        expect: KernelExpectations) -> None:
    """What the program sees of skb->mark and skb->priority set by the sender (SO_MARK,
    SO_PRIORITY) after crossing into the other namespace: zeroed with scrub default, kept
    with scrub none; for each side's own scrub setting."""
    topo = make_topo(scrub=scrub, peer_scrub=scrub)
    if "IFLA_NETKIT_SCRUB" not in topo.primary_info().present:
        expect.refused("netkit_scrub", "the kernel ignores IFLA_NETKIT_SCRUB")
    progs.link(1, topo, PRIMARY)
    progs.link(2, topo, PEER)
    mark, prio = 42, 0xEB9F
    assert udp_probe(topo.host, topo.pod, POD_IP, port=TEST_PORT, mark=mark, priority=prio) == 5
    assert udp_probe(topo.pod, topo.host, HOST_IP, port=TEST_PORT, mark=mark, priority=prio) == 5
    want = (mark, prio) if scrub is NetkitScrub.NONE else (0, 0)
    for n in (1, 2):
        seen = progs.obs(n)
        assert seen.count == 5
        assert (seen.mark, seen.priority) == want, (n, seen)


def test_bpf_headroom_tailroom_seen(make_topo: Callable[..., Topo], progs: Progs,
                                    expect: KernelExpectations) -> None:
    """IFLA_NETKIT_HEADROOM/TAILROOM become needed_headroom/tailroom of both devices, as a
    program reads them from skb->dev (CO-RE), like the selftest's tc8."""
    topo = make_topo(headroom=96, tailroom=48)
    if "IFLA_NETKIT_HEADROOM" not in topo.primary_info().present:
        expect.refused("netkit_headroom", "the kernel ignores IFLA_NETKIT_HEADROOM/TAILROOM "
                       "(above its IFLA_NETKIT_MAX)")
    plain = make_topo()
    progs.link(1, topo, PRIMARY)
    progs.link(2, topo, PEER)
    progs.link(3, plain, PRIMARY)
    assert udp_probe(topo.host, topo.pod, POD_IP, port=TEST_PORT) == 5
    assert udp_probe(topo.pod, topo.host, HOST_IP, port=TEST_PORT) == 5
    assert udp_probe(plain.host, plain.pod, POD_IP, port=TEST_PORT) == 5
    for n in (1, 2):
        assert (progs.obs(n).headroom, progs.obs(n).tailroom) == (96, 48), progs.obs(n)
    assert (progs.obs(3).headroom, progs.obs(3).tailroom) == (0, 0), progs.obs(3)


def test_bpf_redirect_peer_from_host_device(
    make_topo: Callable[..., Topo],
    make_netns: Callable[[str], str],
    progs: Progs,
) -> None:
    """bpf_redirect_peer from a host device's tcx ingress, given the primary's ifindex,
    puts the packet straight into the netkit peer in the pod: no forwarding in the host
    namespace, no netkit xmit (the primary's program does not run), counted as peer rx.
    The host device is the host end of an L2 netkit pair to an "out" namespace."""
    topo = make_topo()
    out = make_topo(host=topo.host, pod=make_netns("out"), ips=OUT_IPS, mode=NetkitMode.L2)
    with run_in_netns(topo.host), open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("0")
    with rtnl(out.pod) as ipr:
        ipr.route("add", dst=f"{POD_IP}/32", gateway=OUT_IPS[0])
    # control: with no program, the host namespace does not route to the pod
    assert udp_probe(out.pod, topo.pod, POD_IP, port=TEST_PORT) == 0
    progs.set_action(1, Action.PASS)
    progs.link(1, topo, PRIMARY)
    progs.redirect_to(topo.primary_index)
    with run_in_netns(topo.host):
        link = lb.link_create(progs.prog("nk_to_peer"), out.primary_index, lb.BPF_TCX_INGRESS)
    progs.links.append(link)
    prim_before, peer_before = stats(topo.host, topo.primary), stats(topo.pod, topo.peer)
    progs.reset()
    assert udp_probe(out.pod, topo.pod, POD_IP, port=TEST_PORT) == 5
    assert progs.hits() == {7: 5}
    prim_after, peer_after = stats(topo.host, topo.primary), stats(topo.pod, topo.peer)
    assert prim_after["tx_packets"] == prim_before["tx_packets"]
    assert peer_after["rx_packets"] - peer_before["rx_packets"] == 5


@pytest.mark.parametrize("how", ["delete-primary", "remove-pod-netns"])
def test_bpf_device_deletion_releases(
    make_topo: Callable[..., Topo],
    progs: Progs,
    bpf_object: Callable[..., lb.BpfObject],
    how: str,
) -> None:
    """Deleting the pair (or the namespace holding the peer) detaches everything: links
    go defunct (ifindex 0, update ENOLINK), and a program attached without a link, whose
    only holder was the device, is freed."""
    topo = make_topo()
    l1 = progs.link(1, topo, PRIMARY)
    l2 = progs.link(2, topo, PEER)
    other = bpf_object("netkit_progs")
    held = other.program("nk3")
    held_id = held.id
    with run_in_netns(topo.host):
        lb.prog_attach_opts(held, topo.primary_index, PRIMARY)
    other.close()  # from here on only the netkit device holds nk3
    assert held_id in lb.prog_ids()
    assert query(topo, PRIMARY).prog_ids == [progs.pid(1), held_id]

    if how == "delete-primary":
        assert nk.delete(topo.primary, netns=topo.host)
    else:
        remove_netns(topo.pod)
    wait_until(lambda: held_id not in lb.prog_ids(), timeout=10, what=f"prog {held_id} to be freed")
    for link in (l1, l2):
        info = link.info()  # netkit_uninit ran before the device went: no waiting needed
        assert (info.type, info.ifindex) == (lb.LinkType.NETKIT, 0), info
    with pytest.raises(OSError) as exc:
        l1.update(progs.prog(4))
    assert exc.value.errno == errno.ENOLINK, _oserror(exc)
    l2.detach()  # detaching a defunct link is a no-op, not an error


def test_bpf_single_device_refused(make_netns: Callable[[str], str], progs: Progs,
                                   expect: KernelExpectations) -> None:
    """A single netkit device (IFLA_NETKIT_PAIRING single) takes no netkit programs:
    attach and query answer EOPNOTSUPP."""
    ns = make_netns("single")
    dev = nk.create("nks0", pairing=NetkitPairing.SINGLE, netns=ns)
    try:
        if "IFLA_NETKIT_PAIRING" not in dev.present:
            expect.refused("netkit_single", "the kernel ignores IFLA_NETKIT_PAIRING (above "
                           f"its IFLA_NETKIT_MAX): dump has only {sorted(dev.present)}")
        for target in (PRIMARY, PEER):
            for what in ("link_create", "prog_attach", "prog_query"):
                with run_in_netns(ns), pytest.raises(OSError) as exc:
                    _mprog_call(what, progs.prog(1), dev.index, target)
                assert exc.value.errno == errno.EOPNOTSUPP, (what, target, _oserror(exc))
    finally:
        nk.delete("nks0", netns=ns)


# === queue leasing (NETDEV_CMD_QUEUE_CREATE, 7.x) ===========================================


def _netdev_family_or_refused(expect: KernelExpectations) -> genl.GenlFamily:
    try:
        fam = genl.netdev_family()
    except OSError as exc:
        expect.refused("netdev_queue_create", f"no netdev generic netlink family: {exc}")
    if genl.NETDEV_CMD_QUEUE_CREATE not in fam.ops:
        expect.refused("netdev_queue_create",
                       f"genl family netdev (id {fam.id}) has no queue-create op "
                       f"(NETDEV_CMD_QUEUE_CREATE={genl.NETDEV_CMD_QUEUE_CREATE}); "
                       f"ops {sorted(fam.ops)}")
    return fam


def test_queue_create_refusals(make_topo: Callable[..., Topo],
                               expect: KernelExpectations) -> None:
    """The netkit peer accepts NETDEV_CMD_QUEUE_CREATE (it has ndo_queue_create), and the
    kernel then insists on a physical lessor and on RX queues; a device without queue
    management (lo) is refused before that."""
    topo = make_topo(addresses=False)
    _netdev_family_or_refused(expect)
    with run_in_netns(topo.pod):
        with pytest.raises(genl.GenlError) as exc:
            genl.queue_create(topo.peer_index, 1, 0)  # lessor lo: virtual
        assert exc.value.errno == errno.EINVAL, exc.value
        assert "virtual device" in exc.value.extack, exc.value
        on_netkit = exc.value.extack
        with pytest.raises(genl.GenlError) as exc:
            genl.queue_create(1, 1, 0)  # lo cannot create queues at all
        assert exc.value.errno == errno.EINVAL, exc.value
        assert exc.value.extack and exc.value.extack != on_netkit, exc.value
        with pytest.raises(genl.GenlError) as exc:
            genl.queue_create(topo.peer_index, 1, 0, queue_type=genl.NETDEV_QUEUE_TYPE_TX)
        assert exc.value.errno == errno.EINVAL, exc.value
    assert not os.path.exists(f"/sys/class/net/{topo.peer}/queues/rx-1")


def test_queue_lease(make_netns: Callable[[str], str], expect: KernelExpectations) -> None:
    """Lease RX queue 0 of a netdevsim port to a netkit peer: the peer gains queue rx-1;
    deleting the pair returns the queue (it can be leased again). The lessor is a
    netdevsim device (queue management ops, a parent bus device) made next to the pair in
    the guest's init netns, where sysfs shows both, and deleted after; a kernel without
    netdevsim skips, saying so; a refusal with a lessor at hand is the kernel's answer."""
    _netdev_family_or_refused(expect)
    missing = netdevsim.unavailable()
    if missing is not None:
        pytest.skip(f"needs a lessor with queue management ops: {missing}")
    # the pair lives next to the lessor (the guest's init netns), under unique names
    names = (unique_name("nkqa"), unique_name("nkqb"))
    refused: list[str] = []
    with run_in_netns(INIT_NETNS), netdevsim.Netdevsim(ports=1, queues=2) as nsim:
        _lease_from_any(names, [(p.ifname, p.ifindex) for p in nsim.ports], refused)
    if refused:
        expect.refused("queue_lease", "netdevsim would not lease a queue: "
                       + "; ".join(refused))


def _lease_from_any(names: tuple[str, str], phys: list[tuple[str, int]],
                    refused: list[str]) -> None:
    try:
        create_netkit(names[0], single=False, peer=names[1], rx_queues=2)  # room for a lease
        peer = nk.info(names[1])
        for name, ifindex in phys:
            try:
                qid = genl.queue_create(peer.index, ifindex, 0)
            except genl.GenlError as exc:
                refused.append(f"{name}: {exc.strerror}")
                continue
            assert qid == 1
            assert os.path.exists(f"/sys/class/net/{names[1]}/queues/rx-1")
            with pytest.raises(genl.GenlError) as busy:  # one lease per queue
                genl.queue_create(peer.index, ifindex, 0)
            assert busy.value.errno == errno.EBUSY, busy.value
            nk.delete(names[0])
            create_netkit(names[0], single=False, peer=names[1], rx_queues=2)
            assert genl.queue_create(nk.info(names[1]).index, ifindex, 0) == 1  # released
            refused.clear()
            return
    finally:
        nk.delete(names[0])
