"""Counter parsing and deltas of harness.guest.evidence on saved /proc and rtnetlink data of
several kernels (tests/unit/data/evidence/README.md), without a kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.guest.evidence import devstats, rtnl, snmp, softnet
from harness.guest.evidence.devstats import Device
from harness.guest.evidence.snapshot import NetnsId, NetnsSnapshot, delta

DATA = Path(__file__).parent / "data" / "evidence"


def texts(kernel: str, state: str, files: tuple[str, ...] = snmp.FILES) -> snmp.Texts:
    return {name: (DATA / f"{kernel}-{state}-{name}").read_text() for name in files}


# --- snmp / netstat / snmp6 ------------------------------------------------------------------


CLOSED_PORT = {"Udp.NoPorts": 1, "Udp.OutDatagrams": 1, "Icmp.OutDestUnreachs": 1,
               "Icmp.InDestUnreachs": 1, "IcmpMsg.OutType3": 1, "IcmpMsg.InType3": 1,
               "Ip.InReceives": 2, "Ip.InDelivers": 2, "Ip.OutRequests": 2,
               "IpExt.InOctets": 86, "IpExt.OutOctets": 86}


@pytest.mark.parametrize("kernel", ["6.18", "6.1"])
def test_closed_port_delta(kernel: str) -> None:
    files = ("snmp",) if kernel == "6.1" else snmp.FILES
    before, after = texts(kernel, "fresh", files), texts(kernel, "closed-port", files)
    got = snmp.delta(before, after)
    want = {k: v for k, v in CLOSED_PORT.items() if not k.startswith("IpExt") or
            kernel != "6.1"}
    assert got.items() >= want.items()
    assert ("Ip.OutTransmits" in got) is (kernel == "6.18")
    assert all(v for v in got.values())
    # a namespace made in between counts from 0: the same, since `before` is all zeros
    assert snmp.delta(None, after) == got


def test_unchanged_and_not_counters() -> None:
    after = texts("6.18", "closed-port")
    assert snmp.delta(after, after) == {}
    everything = snmp.delta(None, after)
    assert not snmp.NOT_COUNTERS & everything.keys()  # Ip.Forwarding 2, DefaultTTL 64...
    assert "Tcp.MaxConn" not in everything  # -1 in every namespace


def test_group_that_appears_counts_from_zero() -> None:
    """IcmpMsg lines exist only once a type was counted."""
    before = texts("6.18", "fresh", ("snmp",))
    assert "IcmpMsg" not in before["snmp"]
    assert snmp.delta(before, texts("6.18", "closed-port", ("snmp",)))["IcmpMsg.InType3"] == 1


def test_negative_changes_are_kept() -> None:
    head = "Tcp: RtoAlgorithm CurrEstab ActiveOpens\n"
    before = {"snmp": head + "Tcp: 1 3 10\n"}
    after = {"snmp": head + "Tcp: 1 1 12\n"}
    assert snmp.delta(before, after) == {"Tcp.CurrEstab": -2, "Tcp.ActiveOpens": 2}


def test_snmp6_names_are_split() -> None:
    before = {"snmp6": "Ip6InReceives\t3\nUdp6NoPorts\t0\nUdpLite6InErrors  0\n"
                       "Icmp6OutType133\t1\n"}
    after = {"snmp6": "Ip6InReceives\t5\nUdp6NoPorts\t1\nUdpLite6InErrors  2\n"
                      "Icmp6OutType133\t1\nIcmp6InType1\t4\n"}
    assert snmp.delta(before, after) == {"Ip6.InReceives": 2, "Udp6.NoPorts": 1,
                                         "UdpLite6.InErrors": 2, "Icmp6.InType1": 4}


def test_unpaired_lines_are_refused() -> None:
    with pytest.raises(ValueError, match="unpaired"):
        snmp.delta(None, {"netstat": "TcpExt: A B\nIpExt: 1 2\n"})


# --- softnet_stat ----------------------------------------------------------------------------


def test_softnet_15_columns() -> None:
    rows = softnet.parse((DATA / "6.18-softnet_stat").read_text())
    assert sorted(rows) == [0, 1]  # the cpu column, 6.18 (and 6.12, 7.3)
    assert rows[1]["time_squeeze"] == 2 and rows[1]["backlog_len"] == 0
    assert rows[0]["processed"] == 0x11A66
    assert set(rows[0]) == {"processed", "dropped", "time_squeeze", "cpu_collision",
                            "received_rps", "flow_limit_count", "backlog_len",
                            "input_qlen", "process_qlen"}


def test_softnet_13_columns_with_an_offline_cpu() -> None:
    rows = softnet.parse((DATA / "6.1-softnet_stat").read_text())
    assert sorted(rows) == [0, 1, 3]  # CPU 2 offline: the line number would say 2
    assert rows[1] == {"processed": 0x3C4D, "dropped": 2, "time_squeeze": 0,
                       "cpu_collision": 0, "received_rps": 0, "flow_limit_count": 0,
                       "backlog_len": 1}
    assert rows[0]["received_rps"] == 0x10


def test_softnet_11_columns_numbered_by_line() -> None:
    rows = softnet.parse((DATA / "5.4-softnet_stat").read_text())
    assert sorted(rows) == [0, 1]
    assert rows[0]["dropped"] == 1 and "backlog_len" not in rows[0]


def test_softnet_unknown_columns_are_kept() -> None:
    line = " ".join(["00000001"] * 12 + ["00000000"] + ["00000000"] * 2 + ["00000005"])
    assert softnet.parse(line)[0]["col15"] == 5


def test_softnet_delta() -> None:
    before = softnet.parse((DATA / "6.1-softnet_stat").read_text())
    after = {cpu: dict(row) for cpu, row in before.items()}
    after[1]["dropped"] += 4
    after[1]["backlog_len"] = 900  # a gauge: not a change worth reporting
    after[3]["processed"] = 0x10  # 32-bit counter wrapped: 0x99 -> 0x10
    after[5] = {"processed": 7}  # came online
    assert softnet.delta(before, after) == {
        1: {"dropped": 4}, 3: {"processed": 0x10 - 0x99 + (1 << 32)}, 5: {"processed": 7}}


# --- rtnetlink / devices ---------------------------------------------------------------------


def dump() -> bytes:
    return (DATA / "6.18-rtm-getlink-dump.bin").read_bytes()


def test_rtm_getlink_dump() -> None:
    links, done = rtnl.parse_dump([dump()])
    assert done
    by_name = {link.name: link for link in links}
    assert set(by_name) == {"lo", "va", "vb"}
    assert by_name["lo"].ifindex == 1 and by_name["lo"].kind == ""
    assert by_name["va"].kind == by_name["vb"].kind == "veth"
    assert set(by_name["va"].stats) == set(rtnl.STATS64)  # 6.0+: rx_otherhost_dropped too


def test_rtm_getlink_dump_in_pieces() -> None:
    """Several datagrams; the last carries NLMSG_DONE."""
    data = dump()
    links, done = rtnl.parse_dump([data[:-20]])
    assert not done and len(links) == 3
    assert rtnl.parse_dump([data[-20:]]) == ([], True)


def test_rtm_getlink_error() -> None:
    import struct

    msg = struct.pack("=IHHII", 36, rtnl.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -1)
    with pytest.raises(OSError, match="error 1"):
        rtnl.parse_dump([msg + bytes(16)])


def dev(stats: dict[str, int], driver: dict[str, int] | None = None, *, ifindex: int = 5,
        name: str = "veth0") -> Device:
    return Device(ifindex, name, "veth", stats, driver or {})


def test_device_delta() -> None:
    before = dev({"rx_packets": 10, "rx_dropped": 1}, {"rx_queue_0_xdp_drops": 0})
    after = dev({"rx_packets": 12, "rx_dropped": 4}, {"rx_queue_0_xdp_drops": 3})
    assert devstats.delta(before, after) == ({"rx_packets": 2, "rx_dropped": 3},
                                             {"rx_queue_0_xdp_drops": 3})
    assert devstats.delta(None, after)[0] == {"rx_packets": 12, "rx_dropped": 4}


def test_device_recreated_counts_from_zero() -> None:
    before = dev({"rx_packets": 10})
    assert devstats.delta(before, dev({"rx_packets": 3}))[0] == {"rx_packets": 3}
    assert devstats.delta(before, dev({"rx_packets": 12}, ifindex=9))[0] == {"rx_packets": 12}


def snap(label: str, counters: snmp.Texts, devices: dict[str, Device],
         cookie: int = 7) -> NetnsSnapshot:
    return NetnsSnapshot(label, NetnsId(cookie, 4026531999), counters, devices)


def test_namespace_delta() -> None:
    lo = Device(1, "lo", "", {"rx_packets": 0})
    after = snap("case", texts("6.18", "closed-port"),
                 {"lo": Device(1, "lo", "", {"rx_packets": 2}),
                  "eth1": Device(3, "eth1", "", {"rx_packets": 105})})
    before = snap("case", texts("6.18", "fresh"), {"lo": lo})
    # eth1 was borrowed from the root namespace, where it had counted 100
    got = delta(before, after, {"eth1": Device(3, "eth1", "", {"rx_packets": 100}),
                                "lo": Device(1, "lo", "", {"rx_packets": 99})})
    assert got.counters["Udp.NoPorts"] == 1
    lo_delta, eth1_delta = got.device("lo"), got.device("eth1")
    assert lo_delta is not None and lo_delta.stats == {"rx_packets": 2}
    assert eth1_delta is not None and eth1_delta.stats == {"rx_packets": 5}
    assert (got.label, got.cookie) == ("case", 7)
    quiet = delta(after, after)
    assert quiet.empty and quiet.devices == []
