"""The namespace counter reader (harness/guest/net/counters.py) without a kernel: the
three MIB file formats as the kernel writes them, malformed text refused, deltas per
counter and per device."""

from __future__ import annotations

import pytest

from harness.guest.net import counters as ct

IP_NAMES = ("Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams "
            "InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes "
            "ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates "
            "OutTransmits")
ICMP_NAMES = ("InMsgs InErrors InCsumErrors InDestUnreachs InEchos InEchoReps OutMsgs "
              "OutErrors OutDestUnreachs OutEchos OutEchoReps")
#: /proc/net/snmp as 6.18 writes it (after 3 pings over lo), Udp shortened
SNMP = f"""\
Ip: {IP_NAMES}
Ip: 2 64 6 0 0 0 0 0 6 6 0 0 0 0 0 0 0 0 0 6
Icmp: {ICMP_NAMES}
Icmp: 6 0 0 0 3 3 6 0 0 3 3
IcmpMsg: InType0 InType8 OutType0 OutType8
IcmpMsg: 3 3 3 3
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens
Tcp: 1 200 120000 -1 0 0
Udp: InDatagrams NoPorts InErrors OutDatagrams
Udp: 0 0 0 0
"""

NETSTAT = """\
TcpExt: SyncookiesSent SyncookiesRecv TCPTimeouts
TcpExt: 0 0 4
IpExt: InNoRoutes InOctets OutOctets
IpExt: 0 264 264
"""

SNMP6 = """\
Ip6InReceives                   	7
Ip6InOctets                     	560
Icmp6InMsgs                     	2
Icmp6InType133                  	1
Udp6InDatagrams                 	0
UdpLite6InDatagrams             	0
Ip6OutMcastPkts                 	3
"""


def test_paired_format() -> None:
    mib = ct.parse_paired(SNMP)
    assert mib["Ip"]["InReceives"] == 6 and mib["Ip"]["OutTransmits"] == 6
    assert mib["Icmp"]["InEchos"] == 3 and mib["IcmpMsg"]["OutType8"] == 3
    assert mib["Tcp"]["MaxConn"] == -1
    assert set(ct.parse_paired(NETSTAT)) == {"TcpExt", "IpExt"}


def test_snmp6_format_groups_by_prefix() -> None:
    mib = ct.parse_snmp6(SNMP6)
    assert mib["Ip6"] == {"InReceives": 7, "InOctets": 560, "OutMcastPkts": 3}
    assert mib["Icmp6"] == {"InMsgs": 2, "InType133": 1}
    assert mib["Udp6"] == {"InDatagrams": 0}
    assert mib["UdpLite6"] == {"InDatagrams": 0}
    assert ct.parse_snmp6("Weird 1\n") == {"Snmp6": {"Weird": 1}}


@pytest.mark.parametrize("text", [
    "Ip: A B\n",                      # a header without values
    "Ip: A B\nIcmp: 1 2\n",           # values of another group
    "Ip: A B\nIp: 1\n",               # counts differ
    "Ip: A B\nIp: 1 x\n",             # not a number
])
def test_paired_format_errors(text: str) -> None:
    with pytest.raises(ct.CounterFormatError):
        ct.parse_paired(text)


@pytest.mark.parametrize("text", ["Ip6InReceives\n", "Ip6InReceives 1 2\n", "Ip6X y\n"])
def test_snmp6_errors(text: str) -> None:
    with pytest.raises(ct.CounterFormatError):
        ct.parse_snmp6(text)


def _snap(mibs: ct.Mib, links: dict[str, dict[str, int]]) -> ct.Snapshot:
    return ct.Snapshot("ns", mibs, {n: ct.LinkStats(n, i + 1, v)
                                    for i, (n, v) in enumerate(links.items())})


def test_delta_per_counter_and_device() -> None:
    before = _snap({"Ip": {"InReceives": 6, "InDelivers": 6}, "Tcp": {"MaxConn": -1}},
                   {"veth0": {"rx_packets": 10, "tx_packets": 3}})
    after = _snap({"Ip": {"InReceives": 9, "InDelivers": 6}, "Tcp": {"MaxConn": -1},
                   "IcmpMsg": {"InType8": 2}},
                  {"veth0": {"rx_packets": 14, "tx_packets": 3}, "veth1": {"rx_packets": 2}})
    d = after.minus(before)
    assert d.mib("Ip", "InReceives") == 3 and d.mib("Ip", "InDelivers") == 0
    assert d.mib("IcmpMsg", "InType8") == 2, "a group that appeared counts from 0"
    assert d.mib("Nope", "X") == 0
    assert d.link("veth0", "rx_packets") == 4 and d.link("veth1", "rx_packets") == 2
    assert d.link("veth0", "rx_dropped") == 0
    assert d.changed() == {"Ip": {"InReceives": 3}, "IcmpMsg": {"InType8": 2}}
    assert d.changed(["Tcp", "Ip"]) == {"Ip": {"InReceives": 3}}
    assert d.changed_links() == {"veth0": {"rx_packets": 4}, "veth1": {"rx_packets": 2}}
    text = d.describe()
    assert "Ip: InReceives=+3" in text and "link veth0: rx_packets=+4" in text
    with pytest.raises(KeyError):
        d.link("veth0", "no_such_field")


def test_nothing_changed() -> None:
    snap = _snap({"Ip": {"InReceives": 1}}, {"lo": {"rx_packets": 1}})
    d = snap.minus(snap)
    assert d.changed() == {} and d.changed_links() == {}
    assert d.describe() == "(nothing changed)"


def test_snapshot_lookup_names_what_exists() -> None:
    snap = _snap({"Ip": {"InReceives": 1}}, {})
    assert snap.mib("Ip", "InReceives") == 1
    with pytest.raises(KeyError, match="InReceives"):
        snap.mib("Ip", "Missing")
    with pytest.raises(KeyError, match="Ip"):
        snap.mib("Udp", "InDatagrams")


def test_link_stats_fields() -> None:
    stats = ct.LinkStats("x", 1, {"rx_packets": 5})
    assert stats["rx_packets"] == 5 and stats["rx_nohandler"] == 0
    with pytest.raises(KeyError):
        stats["bogus"]
    assert len(ct.LINK_FIELDS) == 24
