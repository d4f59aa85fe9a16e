"""The record format of bpf/sock_iter.bpf.c as harness.guest.net.allns parses it (no kernel):
one line per socket, addresses in network-order hex, unix names in hex."""

from __future__ import annotations

import ipaddress

import pytest

from harness.guest.net.allns import (
    InetRecord,
    RecordError,
    SockmapRecord,
    UnixRecord,
    parse_record,
    parse_records,
)

NETNS = 4026532177


def test_tcp4_listener_and_established() -> None:
    listener = parse_record(f"tcp 2 10 47685 0 65534 50101 4107 {NETNS} 7f000001 00000000")
    assert listener == InetRecord("tcp", 2, 10, 47685, 0, 65534, 50101, 4107, NETNS,
                                  ipaddress.IPv4Address("127.0.0.1"),
                                  ipaddress.IPv4Address("0.0.0.0"))
    assert listener.state_name == "LISTEN" and listener.local == ("127.0.0.1", 47685)
    est = parse_record(f"tcp 2 1 50072 47685 0 50102 4108 {NETNS} 7f000001 7f000002")
    assert isinstance(est, InetRecord)
    assert est.remote == ("127.0.0.2", 47685) and est.state_name == "ESTABLISHED"


def test_tcp6_and_udp6_addresses() -> None:
    rec = parse_record(f"tcp 10 12 8080 5555 0 0 9 {NETNS} "
                       "20010db8000000000000000000000001 00000000000000000000000000000001")
    assert isinstance(rec, InetRecord)
    assert rec.laddr == ipaddress.IPv6Address("2001:db8::1")
    assert rec.raddr == ipaddress.IPv6Address("::1") and rec.state_name == "NEW_SYN_RECV"
    udp = parse_record(f"udp 10 7 53 0 0 1 2 {NETNS} {'0' * 32} {'0' * 32}")
    assert isinstance(udp, InetRecord) and udp.proto == "udp" and udp.state_name == "CLOSE"


def test_unknown_state_keeps_its_number() -> None:
    rec = parse_record(f"tcp 2 99 1 2 0 0 1 {NETNS} 7f000001 7f000001")
    assert isinstance(rec, InetRecord) and rec.state_name == "99"


def test_unix_names() -> None:
    path = b"/tmp/kmx.sock".hex()
    rec = parse_record(f"unix 1 10 70001 12 0 0 {NETNS} p:{path}")
    assert rec == UnixRecord(1, 10, 70001, 12, 0, 0, NETNS, "/tmp/kmx.sock")
    abstract = parse_record(f"unix 2 7 70002 13 70003 65534 {NETNS} a:{b'kmx x'.hex()}")
    assert isinstance(abstract, UnixRecord) and abstract.name == "@kmx x"
    unbound = parse_record(f"unix 2 7 70004 14 0 0 {NETNS} -")
    assert isinstance(unbound, UnixRecord) and unbound.name == ""
    raw = parse_record(f"unix 5 1 1 2 3 0 {NETNS} a:00ff0a")  # NUL, non-UTF-8, newline
    assert isinstance(raw, UnixRecord)
    assert raw.name.encode(errors="surrogateescape") == b"@\x00\xff\n"


def test_sockmap() -> None:
    assert parse_record(f"sockmap 3 10 6 8080 77 {NETNS}") == SockmapRecord(3, 10, 6, 8080,
                                                                          77, NETNS)


@pytest.mark.parametrize("line", [
    "",
    "raw 1 2 3",
    f"tcp 2 1 1 2 0 0 1 {NETNS} 7f000001",                       # a field short
    f"tcp 2 1 1 2 0 0 1 {NETNS} 7f000001 7f000001 extra",
    f"tcp 3 1 1 2 0 0 1 {NETNS} 7f000001 7f000001",              # family 3
    f"tcp 10 1 1 2 0 0 1 {NETNS} 7f000001 7f000001",             # v6 with v4 addresses
    f"udp 2 1 x 2 0 0 1 {NETNS} 7f000001 7f000001",              # not a number
    f"tcp 2 1 1 2 0 0 1 {NETNS} 7f00000g 7f000001",              # not hex
    f"unix 1 1 1 2 3 0 {NETNS} /plain/path",                     # name not hex-encoded
    f"unix 1 1 1 2 3 0 {NETNS} p:abc",                           # odd hex
    f"unix 1 1 1 2 3 0 {NETNS}",
    "sockmap 1 2 6 80 5",
])
def test_malformed_lines_are_refused(line: str) -> None:
    with pytest.raises(RecordError):
        parse_record(line)


def test_records_of_a_whole_output() -> None:
    text = (f"tcp 2 10 1 0 0 5 6 {NETNS} 7f000001 00000000\n"
            f"unix 1 1 2 3 4 0 {NETNS} -\n")
    assert [r.proto for r in parse_records(text)] == ["tcp", "unix"]
    assert parse_records("") == []


def test_output_cut_inside_a_record_is_an_error() -> None:
    with pytest.raises(RecordError, match="ends inside a record"):
        parse_records(f"tcp 2 10 1 0 0 5 6 {NETNS} 7f000001 00000000\nunix 1 1")
