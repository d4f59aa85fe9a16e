"""netkit devices (drivers/net/netkit.c), without BPF: modes, default policies, scrubbing,
headroom/tailroom, single-device mode, namespaces and teardown, shown with real packets.

Topology of most cases: two fresh namespaces, "host" holding the primary device and "pod"
holding the peer (the way Cilium uses netkit), 10.77.0.1/24 <-> 10.77.0.2/24. Traffic is
generated and observed with sockets from this process (setns per socket): raw ICMP echo,
UDP, TCP, AF_PACKET captures, plus rtnetlink state (neighbours, link stats, IFLA_*).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import itertools
import os
import secrets
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from harness.guest import netkit as nk
from harness.guest.netkit import NetkitMode, NetkitPairing, NetkitPolicy, NetkitScrub

pytestmark = pytest.mark.requires("netkit")

HOST_IP, POD_IP, UNUSED_IP = "10.77.0.1", "10.77.0.2", "10.77.0.99"
PREFIX = 24
ETH_P_ALL, ETH_P_IP, ETH_P_ARP = 0x0003, 0x0800, 0x0806
PACKET_OUTGOING = 4
IFF_NOARP = 0x80
IFF_UP = 0x1
NUD_INCOMPLETE, NUD_FAILED, NUD_NOARP = 0x01, 0x20, 0x40
NUD_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x80  # REACHABLE STALE DELAY PROBE PERMANENT
CLONE_NEWNET = 0x40000000
SO_MARK = 36
#: how long a case waits for traffic that must NOT arrive (it is local: µs when it does)
QUIET = 1.0

_libc = ctypes.CDLL(None, use_errno=True)
_seq = itertools.count()


# --- namespaces and sockets ----------------------------------------------------------------


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block with this thread in netns `name` (sockets made here stay in it)."""
    with (
        open("/proc/thread-self/ns/net", "rb") as here,
        open(f"/var/run/netns/{name}", "rb") as there,
    ):
        if _libc.setns(there.fileno(), CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(here.fileno(), CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back: {os.strerror(err)}")


def sock_in(ns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    with in_netns(ns):
        return socket.socket(family, kind, proto)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(ns: str, dst: str, count: int = 3, timeout: float = 2.0) -> int:
    """ICMP echo from netns `ns` over a raw socket; returns how many replies came back."""
    ident = secrets.randbelow(0xFFFF)
    replies = 0
    with sock_in(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        for seq in range(count):
            payload = secrets.token_bytes(16)
            head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            csum = _checksum(head + payload)
            s.sendto(struct.pack("!BBHHH", 8, 0, csum, ident, seq) + payload, (dst, 0))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    pkt, addr = s.recvfrom(2048)
                except TimeoutError:
                    break
                ihl = (pkt[0] & 0x0F) * 4
                typ, _code, _c, rid, rseq = struct.unpack_from("!BBHHH", pkt, ihl)
                if addr[0] == dst and typ == 0 and (rid, rseq) == (ident, seq):
                    if pkt[ihl + 8 :] == payload:
                        replies += 1
                    break
    return replies


def udp_probe(
    src_ns: str,
    dst_ns: str,
    dst_ip: str,
    *,
    count: int = 5,
    mark: int | None = None,
    wait: float = QUIET,
) -> int:
    """Send `count` UDP datagrams src_ns -> dst_ip (listening in dst_ns); count arrivals."""
    token = secrets.token_bytes(8)
    with (
        sock_in(dst_ns, socket.AF_INET, socket.SOCK_DGRAM) as rx,
        sock_in(src_ns, socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind((dst_ip, 0))
        port = rx.getsockname()[1]
        if mark is not None:
            tx.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
        for i in range(count):
            tx.sendto(token + bytes([i]), (dst_ip, port))
        got: set[int] = set()
        deadline = time.monotonic() + wait
        while len(got) < count and (left := deadline - time.monotonic()) > 0:
            rx.settimeout(left)
            try:
                data = rx.recv(64)
            except TimeoutError:
                break
            if data[:8] == token:
                got.add(data[8])
        return len(got)


def tcp_exchange(client_ns: str, server_ns: str, server_ip: str, timeout: float = 3.0) -> bool:
    """TCP connect + request/response across the pair. False if the handshake times out."""
    payload = secrets.token_bytes(3000)  # more than one segment each way
    with sock_in(server_ns, socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind((server_ip, 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        with sock_in(client_ns, socket.AF_INET, socket.SOCK_STREAM) as cli:
            cli.settimeout(timeout)
            try:
                cli.connect((server_ip, port))
            except (TimeoutError, ConnectionRefusedError, OSError):
                return False
            srv.settimeout(timeout)
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(timeout)
                cli.sendall(payload)
                received = b""
                while len(received) < len(payload):
                    chunk = conn.recv(65536)
                    assert chunk, "server side: connection closed early"
                    received += chunk
                assert received == payload
                conn.sendall(payload[::-1])
                echoed = b""
                while len(echoed) < len(payload):
                    chunk = cli.recv(65536)
                    assert chunk, "client side: connection closed early"
                    echoed += chunk
                assert echoed == payload[::-1]
    return True


class Capture:
    """AF_PACKET capture of every frame on one device, set up before the traffic."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.frames: list[tuple[int, bytes]] = []

    def drain(self, wait: float = QUIET) -> list[tuple[int, bytes]]:
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                break
            self.frames.append((addr[2], data))
        return self.frames

    def ethertype(self, etype: int, incoming_only: bool = True) -> list[bytes]:
        return [
            f
            for pkttype, f in self.frames
            if len(f) >= 14
            and struct.unpack_from("!H", f, 12)[0] == etype
            and not (incoming_only and pkttype == PACKET_OUTGOING)
        ]


@contextlib.contextmanager
def capture(ns: str, ifname: str) -> Iterator[Capture]:
    with sock_in(ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s:
        s.bind((ifname, ETH_P_ALL))
        yield Capture(s)


def arp_requests_for(frames: list[bytes], target_ip: str) -> list[bytes]:
    want = socket.inet_aton(target_ip)
    return [f for f in frames if struct.unpack_from("!H", f, 20)[0] == 1 and f[38:42] == want]


def udp_to(frames: list[bytes], dst_ip: str) -> list[bytes]:
    want = socket.inet_aton(dst_ip)
    return [f for f in frames if f[14 + 9] == socket.IPPROTO_UDP and f[14 + 16 : 14 + 20] == want]


# --- rtnetlink helpers ---------------------------------------------------------------------


@contextlib.contextmanager
def rtnl(ns: str) -> Iterator[Any]:
    with IPRoute(netns=ns, flags=0) as ipr:
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
        name = f"kmx-nk{os.getpid()}-{next(_seq)}-{tag}"
        netns.create(name)
        created.append(name)
        with in_netns(name):  # no IPv6 chatter (DAD, MLD, RS) in captures and counters
            for conf in ("all", "default"):
                with open(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6", "w") as f:
                    f.write("1")
        with rtnl(name) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        return name

    yield make
    for name in reversed(created):
        with contextlib.suppress(FileNotFoundError):
            netns.remove(name)


@dataclasses.dataclass
class Topo:
    host: str
    pod: str
    primary: str
    peer: str

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

    Keyword arguments go to nk.create (mode, policy, scrub ...). Teardown deletes the pair
    (tolerating a case that deleted it already), then the namespaces.
    """
    made: list[Topo] = []

    def make(*, addresses: bool = True, up: bool = True, **kwargs: Any) -> Topo:
        n = next(_seq)
        host, pod = make_netns("host"), make_netns("pod")
        topo = Topo(host=host, pod=pod, primary=f"nkh{n}", peer=f"nkp{n}")
        nk.create_pair(topo.primary, topo.peer, netns=host, peer_netns=pod, **kwargs)
        made.append(topo)
        _configure(host, topo.primary, HOST_IP if addresses else None, up)
        _configure(pod, topo.peer, POD_IP if addresses else None, up)
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
    for kwargs in ({"address": "02:00:00:00:00:42"}, {"peer_address": "02:00:00:00:00:43"}):
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
        with sock_in(topo.host, socket.AF_INET, socket.SOCK_DGRAM) as tx:
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
    with sock_in(topo.host, socket.AF_INET, socket.SOCK_DGRAM) as tx:
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
    make_topo: Callable[..., Topo], scrub: NetkitScrub, peer_scrub: NetkitScrub
) -> None:
    """IFLA_NETKIT_SCRUB (of the transmitting device): DEFAULT zeroes skb->mark when the
    packet changes namespace, NONE keeps it. Observed with a fwmark rule on the receiver."""
    topo = make_topo(scrub=scrub, peer_scrub=peer_scrub)
    prim = topo.primary_info()
    if "IFLA_NETKIT_SCRUB" not in prim.present:
        pytest.skip(f"kernel reports no IFLA_NETKIT_SCRUB (sent: {sorted(prim.present)})")
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


def test_headroom_tailroom(make_netns: Callable[[str], str]) -> None:
    host, pod = make_netns("host"), make_netns("pod")
    prim, peer = nk.create_pair(
        "nkhr0", "nkhr1", netns=host, peer_netns=pod, headroom=96, tailroom=48
    )
    try:
        if "IFLA_NETKIT_HEADROOM" not in prim.present:
            pytest.skip(
                "kernel accepted IFLA_NETKIT_HEADROOM/TAILROOM but ignores them (above its "
                f"IFLA_NETKIT_MAX): dump has only {sorted(prim.present)}"
            )
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


def test_single_device_mode(make_netns: Callable[[str], str]) -> None:
    ns = make_netns("single")
    with rtnl(ns) as ipr:
        before = {int(m["index"]) for m in ipr.link("dump")}
    dev = nk.create("nks0", pairing=NetkitPairing.SINGLE, netns=ns)
    try:
        if "IFLA_NETKIT_PAIRING" not in dev.present:
            with rtnl(ns) as ipr:
                extra = sorted(m.get_attr("IFLA_IFNAME") for m in ipr.link("dump"))
            pytest.skip(
                "kernel ignores IFLA_NETKIT_PAIRING (above its IFLA_NETKIT_MAX): it made a "
                f"pair instead, devices now {extra}, dump has only {sorted(dev.present)}"
            )
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
        with sock_in(ns, socket.AF_INET, socket.SOCK_DGRAM) as tx:
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
        netns.remove(topo.pod)
    deadline = time.monotonic() + 10
    while True:  # namespace cleanup runs from a workqueue: give it a moment
        with rtnl(topo.host) as ipr:
            gone = not ipr.link_lookup(ifname=topo.primary)
        if gone or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert gone, f"{topo.primary} survived deleting the {how}"
    if how != "peer-netns":
        with rtnl(topo.pod) as ipr:
            assert not ipr.link_lookup(ifname=topo.peer)
    assert nk.delete(topo.primary, netns=topo.host) is False  # already gone: tolerated
    with pytest.raises(NetlinkError) as exc:
        nk.delete(topo.primary, netns=topo.host, missing_ok=False)
    assert exc.value.code == errno.ENODEV
