"""The stack's own evidence (harness.guest.evidence) against real traffic: protocol counters,
device counters and drop reasons of a case's namespaces, with the values the kernel must
show for what the case did.

- a UDP datagram to a closed port: Udp.NoPorts +1 and one NO_SOCKET drop (5.17+; the
  location-only program sees the drop at __udp4_lib_rcv without a reason);
- a veth whose peer is down: the datagrams are dropped at the sender's qdisc (tx_dropped);
- a netkit primary with the blackhole policy: dropped in netkit_xmit (tx_dropped);
- the agent's flow (CaseEvidence before/after around a forked case that reports its
  namespaces at teardown) end to end.

KMATRIX_EVIDENCE_DEMO=1 adds a deliberately failing case (a blackhole where delivery is
expected) whose failure text carries the evidence that explains it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from harness.guest.evidence import devstats
from harness.guest.evidence.case import CaseEvidence
from harness.guest.evidence.drops import BARE_PROGRAM, LOCATION_PROGRAM, DropCounter
from harness.guest.evidence.fixture import StackCounters
from harness.guest.evidence.model import Evidence, render
from harness.guest.evidence.server import EvidenceServer
from harness.guest.forked import run_forked
from harness.guest.net import netkit as nk
from harness.guest.net.links import ipr, oper_state
from harness.guest.net.netns import run_in_netns, set_up, socket_in, unshare_netns
from harness.guest.net.veth import VethPair
from harness.guest.wait import unique_name, wait_until

CLOSED_PORT = 9
SENT = 3
NUD_PERMANENT = 0x80
#: what a drop counted in the case's namespace may take to be read (softirq on another CPU)
SETTLE = 2.0


def send_udp(address: str, count: int = 1, netns: str | None = None) -> None:
    with run_in_netns(netns), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(count):
            sock.sendto(b"kmatrix evidence %d" % i, (address, CLOSED_PORT))


def settled(counters: StackCounters, done: Callable[[Evidence], bool]) -> Evidence:
    """The delta once `done` holds (drops counted in softirq context may lag the send)."""
    box: dict[str, Evidence] = {}

    def check() -> bool:
        box["ev"] = counters.delta()
        return done(box["ev"])

    try:
        wait_until(check, timeout=SETTLE, what="the expected evidence")
    except Exception:
        pass  # the caller's asserts say what is missing, with the evidence
    return box["ev"]


def test_closed_udp_port_counters(stack_counters: StackCounters) -> None:
    """Udp.NoPorts +1 in the case's namespace; lo carried the datagram and the ICMP error."""
    send_udp("127.0.0.1")
    ev = settled(stack_counters, lambda e: e.counter("Udp.NoPorts") >= 1)
    text = render(ev)
    assert ev.counter("Udp.NoPorts") == 1, text
    assert ev.counter("Udp.OutDatagrams") == 1, text
    assert ev.counter("Icmp.OutDestUnreachs") == 1, text
    assert ev.device_stat("lo", "rx_packets") == 2, text  # the datagram, the ICMP error
    assert "Udp.NoPorts +1" in text


@pytest.mark.requires("drop_reason_no_socket")
def test_closed_udp_port_drop_reason(stack_counters: StackCounters) -> None:
    """One NO_SOCKET drop, in the case's namespace, at the UDP receive path."""
    send_udp("127.0.0.1")
    ev = settled(stack_counters, lambda e: e.drop_count("NO_SOCKET") >= 1)
    text = render(ev)
    assert ev.drops_mode == "reason", text
    assert ev.drop_count("NO_SOCKET", netns="case") == 1, text
    [record] = [d for d in ev.drops if d.reason == "NO_SOCKET"]
    assert "udp" in record.location, text
    assert "1 x NO_SOCKET in ns case" in text


@pytest.mark.parametrize("program", [LOCATION_PROGRAM, BARE_PROGRAM])
def test_drop_location_only_program(program: str) -> None:
    """The programs for kernels without drop reasons (< 5.17; without bpf_snprintf, < 5.13:
    named from /proc/kallsyms) see the same drop, by location."""
    with DropCounter(programs=(program,)) as counter:
        counts = StackCounters(counter=counter)
        send_udp("127.0.0.1")
        ev = settled(counts, lambda e: bool(e.drops))
    text = render(ev)
    udp = [d for d in ev.drops if "udp" in d.location and d.netns == "case"]
    assert ev.drops_mode == "location", text
    assert udp and all(d.reason is None for d in udp), text
    assert sum(d.count for d in udp) == 1, text
    assert "1 x drop in ns case (at " in text


@pytest.fixture
def peer_down(veth_pair: VethPair) -> Iterator[VethPair]:
    """veth end a here, end b in another namespace and down: a has no carrier, so its qdisc
    drops what is sent. a knows b's address permanently (no ARP) and has IPv6 off (no
    MLD/ND packets of its own)."""
    with open(f"/proc/sys/net/ipv6/conf/{veth_pair.a.name}/disable_ipv6", "w") as fh:
        fh.write("1")
    with ipr(veth_pair.b.netns) as sock:
        sock.link("set", index=veth_pair.b.ifindex, state="down")
    wait_until(lambda: oper_state(veth_pair.a.name) != "UP", timeout=5.0,
               what=f"{veth_pair.a.name} losing its carrier")
    with ipr(None) as sock:
        sock.neigh("add", dst=veth_pair.b.address, lladdr="02:00:00:00:00:02",
                   ifindex=veth_pair.a.ifindex, state=NUD_PERMANENT)
    yield veth_pair


def test_veth_peer_down_drops(peer_down: VethPair, stack_counters: StackCounters,
                              record_property: Callable[[str, object], None]) -> None:
    """Datagrams to a peer that is down: each one dropped on a's transmit path, none
    received by b. Where the drop is counted differs between kernels: newer ones count the
    qdisc's drops in the device's tx_dropped, older ones (seen on 6.1) only in the qdisc
    (and the QDISC_DROP drop reason says so): one of the two must account for every one."""
    a, b = peer_down.a, peer_down.b
    send_udp(b.address, SENT)

    def accounted(e: Evidence) -> int:
        return max(e.device_stat(a.name, "tx_dropped"), e.drop_count("QDISC_DROP", "case"))

    ev = settled(stack_counters, lambda e: accounted(e) >= SENT)
    text = render(ev)
    tx_dropped = ev.device_stat(a.name, "tx_dropped")
    assert ev.device_stat(b.name, "rx_packets", netns=str(b.netns)) == 0, text
    assert ev.counter("Udp.OutDatagrams") == SENT, text
    if stack_counters.counter is not None:
        assert ev.drop_count(netns="case") >= SENT, text
        if "QDISC_DROP" in stack_counters.counter.names.core.values():
            assert ev.drop_count("QDISC_DROP", netns="case") == SENT, text
    if tx_dropped == SENT:
        assert f"dev {a.name} " in text and f"tx_dropped +{SENT}" in text
        record_property("observed", "qdisc drops counted in the device's tx_dropped")
    else:
        assert tx_dropped == 0, text
        assert ev.drop_count("QDISC_DROP", netns="case") == SENT, text
        record_property("observed", "qdisc drops not in tx_dropped: QDISC_DROP reasons only")


def test_veth_driver_statistics(veth_pair: VethPair) -> None:
    """veth reports its XDP counters as driver statistics (ethtool -S), read with the
    device counters; peer_ifindex (not a counter) is left out."""
    devices = devstats.read()
    driver = devices[veth_pair.a.name].driver
    assert {"rx_queue_0_xdp_packets", "rx_queue_0_xdp_drops",
            "rx_queue_0_xdp_redirect"} <= driver.keys(), sorted(driver)
    assert "peer_ifindex" not in driver
    assert devices["lo"].driver == {}
    assert devices[veth_pair.a.name].kind == "veth"


NK_HOST, NK_POD = "198.19.77.1", "198.19.77.2"


@pytest.fixture
def blackhole(netns: str) -> Iterator[tuple[str, str]]:
    """A netkit pair (L3): primary here with the blackhole policy (what it transmits is
    dropped), peer in `netns`; (primary name, peer's namespace)."""
    primary, peer = unique_name("nkev"), unique_name("nkevp")
    nk.create_pair(primary, peer, peer_netns=netns, policy=nk.NetkitPolicy.DROP)
    try:
        for name, ns, address in ((primary, None, NK_HOST), (peer, netns, NK_POD)):
            with ipr(ns) as sock:
                index = sock.link_lookup(ifname=name)[0]
                sock.addr("add", index=index, address=address, prefixlen=24)
                sock.link("set", index=index, state="up")
        yield primary, netns
    finally:
        nk.delete(primary)


@pytest.mark.requires("netkit")
def test_netkit_blackhole_drops(blackhole: tuple[str, str],
                                stack_counters: StackCounters) -> None:
    """Datagrams into a blackhole netkit primary: tx_dropped on it, each one a drop in
    netkit_xmit in the case's namespace."""
    primary, _ = blackhole
    send_udp(NK_POD, SENT)
    ev = settled(stack_counters, lambda e: e.device_stat(primary, "tx_dropped") >= SENT)
    text = render(ev)
    assert ev.device_stat(primary, "tx_dropped") == SENT, text
    if stack_counters.counter is not None:
        at_netkit = [d for d in ev.drops if d.location.startswith("netkit") and
                     d.netns == "case"]
        assert sum(d.count for d in at_netkit) == SENT, text


DEMO = pytest.mark.skipif(os.environ.get("KMATRIX_EVIDENCE_DEMO") != "1",
                          reason="a deliberately failing demonstration: KMATRIX_EVIDENCE_DEMO=1")


def expect_delivery(to: str, rx_netns: str, counters: StackCounters) -> None:
    """Send one datagram to `to` (bound in `rx_netns`) and insist it arrives; the failure
    text is what the stack saw."""
    with socket_in(rx_netns, socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind((to, 4243))
        rx.settimeout(0.5)
        tx.sendto(b"expected", (to, 4243))
        try:
            got = rx.recv(64)
        except TimeoutError:
            got = b""
    assert got == b"expected", "datagram not delivered; the stack says:\n" + render(
        settled(counters, lambda e: bool(e.drops)))


@DEMO
@pytest.mark.requires("netkit")
def test_demo_netkit_blackhole_where_delivery_is_expected(
        blackhole: tuple[str, str], stack_counters: StackCounters) -> None:
    """FAILS on purpose: expects a datagram through a blackhole netkit. The failure text
    carries the drop reason and the device counters that explain it."""
    expect_delivery(NK_POD, blackhole[1], stack_counters)


@DEMO
def test_demo_veth_peer_down_where_delivery_is_expected(
        peer_down: VethPair, stack_counters: StackCounters) -> None:
    """FAILS on purpose (the same with a veth whose peer is down; runs without netkit)."""
    expect_delivery(peer_down.b.address, str(peer_down.b.netns), stack_counters)


@pytest.mark.parametrize("served", [True, False], ids=["server", "in-process"])
def test_case_evidence_flow(served: bool) -> None:
    """The agent's flow: before(), a forked case in a fresh namespace that sends to a
    closed port and has its namespace recorded at teardown, after(): the evidence names
    the case's namespace with its counters and its drop. `served`: CaseEvidence run by an
    EvidenceServer process, as the agent runs it (else in the two processes themselves)."""

    def case_process() -> None:
        unshare_netns()
        set_up("lo")
        ev.wait_ready()
        send_udp("127.0.0.1")
        time.sleep(0.05)
        ev.snapshot_case()

    local = CaseEvidence()
    ev: CaseEvidence | EvidenceServer = EvidenceServer(local) if served else local
    try:
        ev.before()
        assert run_forked(case_process) == 0
        got = Evidence.from_dict(ev.after())
    finally:
        ev.close()
        local.close()
    text = render(got)
    case = got.netns("case")
    assert case is not None, text
    assert got.counter("Udp.NoPorts") == 1, text
    assert case.device("lo") is not None, text
    if ev.drops_mode == "reason":
        assert got.drop_count("NO_SOCKET", netns="case") == 1, text
    elif ev.drops_mode == "location":
        assert got.drop_count(netns="case") >= 1, text
    assert got.cost_ms > 0
    assert Evidence.from_dict(got.as_dict()) == got
