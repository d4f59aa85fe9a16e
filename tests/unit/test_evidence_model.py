"""The evidence's typed result (JSON round trip, rendering for failure reports) and the
naming of drop records (reasons from BTF enums, locations, namespaces), without a kernel."""

from __future__ import annotations

import json

from harness.guest.evidence import kallsyms
from harness.guest.evidence.drops import NO_REASON, DropKey, ReasonNames, records
from harness.guest.evidence.model import (
    DeviceDelta,
    DropRecord,
    Evidence,
    NetnsDelta,
    render,
    render_lines,
)

#: a slice of enum skb_drop_reason as 6.18's BTF has it
CORE = {0: "SKB_NOT_DROPPED_YET", 1: "SKB_CONSUMED", 2: "SKB_DROP_REASON_NOT_SPECIFIED",
        3: "SKB_DROP_REASON_NO_SOCKET", 64: "SKB_DROP_REASON_QDISC_DROP"}
SUBSYS = {0: "SKB_DROP_REASON_SUBSYS_CORE", 1: "SKB_DROP_REASON_SUBSYS_MAC80211_UNUSABLE",
          2: "SKB_DROP_REASON_SUBSYS_OPENVSWITCH"}


def evidence() -> Evidence:
    return Evidence(
        namespaces=[
            NetnsDelta("kmx-a", 11, 4026532001, {"Udp.NoPorts": 1, "TcpExt.TCPAbortOnData": 2},
                       [DeviceDelta("veth0", "veth", {"rx_dropped": 3},
                                    {"rx_queue_0_xdp_drops": 3})]),
            NetnsDelta("case", 10, 4026532000, {}, []),
        ],
        softnet={1: {"processed": 4, "dropped": 1}},
        drops=[DropRecord("kmx-a", "TCP_INVALID_SEQUENCE", "tcp_validate_incoming+0x1b4", 3,
                          85, 11, 4026532001),
               DropRecord("case", "NO_SOCKET", "__udp4_lib_rcv+0x4bc", 1, 3, 10, 4026532000)],
        drops_mode="reason", cost_ms=1.25)


def test_render_one_line_per_kind() -> None:
    lines = render_lines(evidence())
    assert lines == [
        "drops: 3 x TCP_INVALID_SEQUENCE in ns kmx-a (at tcp_validate_incoming+0x1b4), "
        "1 x NO_SOCKET in ns case (at __udp4_lib_rcv+0x4bc)",
        "ns kmx-a: Udp.NoPorts +1, TcpExt.TCPAbortOnData +2; dev veth0 rx_dropped +3 "
        "(driver: rx_queue_0_xdp_drops +3)",
        "softnet: cpu1 processed +4, dropped +1",
    ]


def test_render_accepts_json_and_says_what_is_missing() -> None:
    ev = Evidence(drops_mode="unavailable: skb:kfree_skb: drop_reason: EINVAL",
                  notes=["the case's namespaces were not read"])
    text = render(json.loads(json.dumps(ev.as_dict())))
    assert text.splitlines() == ["drop reasons unavailable: skb:kfree_skb: drop_reason: "
                                 "EINVAL", "note: the case's namespaces were not read"]
    assert render(Evidence(drops_mode="reason")) == "drops: none"


def test_location_only_and_previous_drops() -> None:
    ev = Evidence(drops=[DropRecord("case", None, "__udp4_lib_rcv+0x4bc", 2)],
                  previous_drops=[DropRecord("netns:4026532009", None, "dev_close+0x1", 1)],
                  drops_mode="location")
    lines = render_lines(ev)
    assert lines[0] == "drops: 2 x drop in ns case (at __udp4_lib_rcv+0x4bc)"
    assert lines[-1] == ("drops after the previous case (its teardown): 1 x drop in ns "
                         "netns:4026532009 (at dev_close+0x1)")


def test_json_round_trip() -> None:
    ev = evidence()
    data = json.loads(json.dumps(ev.as_dict()))
    assert data["softnet"] == {"1": {"processed": 4, "dropped": 1}}
    assert Evidence.from_dict(data) == ev
    assert Evidence.from_dict({}) == Evidence()


def test_queries() -> None:
    ev = evidence()
    assert ev.counter("Udp.NoPorts", netns="kmx-a") == 1
    assert ev.counter("Udp.NoPorts") == 0  # nothing in the case's own namespace
    assert ev.device_stat("veth0", "rx_dropped", netns="kmx-a") == 3
    assert ev.device_stat("veth0", "rx_queue_0_xdp_drops", netns="kmx-a") == 3
    assert ev.device_stat("nope", "rx_dropped") == 0
    assert ev.drop_count() == 4
    assert ev.drop_count("NO_SOCKET", netns="case") == 1
    assert ev.drop_count(netns="kmx-a") == 3


def test_reason_names() -> None:
    names = ReasonNames(CORE, SUBSYS)
    assert names.name(3) == "NO_SOCKET"
    assert names.name(1) == "CONSUMED"
    assert names.name(NO_REASON) is None
    assert names.name(2 << 16 | 5) == "OPENVSWITCH:5"
    assert names.name(9 << 16 | 1) == "SUBSYS9:1"
    assert names.name(999) == "REASON_999"  # not in this kernel's enum


def test_drop_key_layout() -> None:
    key = DropKey(netns_cookie=754, location=0xFFFFFFFF81234567, netns_inum=4026532177,
                  reason=3)
    raw = key.pack()
    assert len(raw) == 24  # struct drop_key in bpf/drop_reasons.bpf.c
    assert DropKey.unpack(raw) == key


def test_records_are_labelled_by_cookie_then_inode() -> None:
    names = ReasonNames(CORE, SUBSYS)
    counts = {DropKey(10, 0x100, 4026532000, 3): 1,
              DropKey(0, 0x200, 4026532005, NO_REASON): 2,  # a kernel without cookies
              DropKey(99, 0x300, 4026532099, 64): 4,  # a namespace nobody named
              DropKey(0, 0x400, 0, 2): 1}  # neither socket nor device
    got = records(counts, {10: "case", 4026532005: "kmx-b"}, names, lambda a: f"f{a:#x}")
    got.sort(key=lambda r: r.location)
    assert [(r.netns, r.reason, r.location, r.count) for r in got] == [
        ("case", "NO_SOCKET", "f0x100", 1),
        ("kmx-b", None, "f0x200", 2),
        ("netns:4026532099", "QDISC_DROP", "f0x300", 4),
        ("-", "NOT_SPECIFIED", "f0x400", 1),
    ]
    assert got[1].reason_code is None and got[0].reason_code == 3


def test_kallsyms() -> None:
    table = kallsyms.Symbols("ffffffff81000000 T _stext\n"
                             "ffffffff81100000 t __udp4_lib_rcv\n"
                             "ffffffff81100800 T udp_rcv\n"
                             "ffffffff81200000 d some_data\n"
                             "0000000000000000 T hidden\n")
    assert table.name(0xFFFFFFFF811004BC) == "__udp4_lib_rcv+0x4bc"
    assert table.name(0xFFFFFFFF81100800) == "udp_rcv+0x0"
    assert table.name(0x1000) == "0x1000"
    assert kallsyms.Symbols("").name(0xFFFF) == "0xffff"
