"""Unit tests (no kernel) for the pyroute2 netkit plugin in harness.guest.netkit.

Requests are compiled by pyroute2's own request pipeline (IPBatch: the IPRoute API, but the
message goes into a buffer instead of the kernel) and checked with an independent TLV parser
against the UAPI numbers of include/uapi/linux/if_link.h; replies are built by hand the way
drivers/net/netkit.c (netkit_fill_info) lays them out and decoded through the plugin.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest
from pyroute2 import IPBatch
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from harness.guest.net import genl
from harness.guest.net import netkit as nk

# UAPI numbers, spelled out here on purpose (not taken from the module under test)
RTM_NEWLINK = 16
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK = 1, 3, 4, 5
IFLA_LINKINFO, IFLA_NET_NS_FD, IFLA_LINK_NETNSID = 18, 28, 37
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
(
    PEER_INFO,
    PRIMARY,
    POLICY,
    PEER_POLICY,
    MODE,
    SCRUB,
    PEER_SCRUB,
    HEADROOM,
    TAILROOM,
    PAIRING,
) = range(1, 11)
NLA_TYPE_MASK = ~(0x8000 | 0x4000) & 0xFFFF
IFINFOMSG = struct.Struct("=BxHiII")
NLMSGHDR = struct.Struct("=IHHII")


def tlvs(buf: bytes) -> Iterator[tuple[int, bytes]]:
    off = 0
    while off + 4 <= len(buf):
        length, typ = struct.unpack_from("=HH", buf, off)
        assert length >= 4, f"bad nla length {length} at {off}"
        yield typ & NLA_TYPE_MASK, buf[off + 4 : off + length]
        off += (length + 3) & ~3


def attrs(buf: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for typ, payload in tlvs(buf):
        assert typ not in out, f"attribute {typ} twice"
        out[typ] = payload
    return out


def split_request(data: bytes) -> tuple[tuple[int, int, int, int, int], dict[int, bytes], int]:
    length, msg_type, _flags, _seq, _pid = NLMSGHDR.unpack_from(data)
    assert length == len(data)
    ifi = IFINFOMSG.unpack_from(data, NLMSGHDR.size)
    return ifi, attrs(data[NLMSGHDR.size + IFINFOMSG.size :]), msg_type


def info_data(top: dict[int, bytes]) -> dict[int, bytes]:
    linkinfo = attrs(top[IFLA_LINKINFO])
    assert linkinfo[IFLA_INFO_KIND] == b"netkit\0"
    return attrs(linkinfo[IFLA_INFO_DATA])


def u32(b: bytes) -> int:
    assert len(b) == 4
    return int(struct.unpack("=I", b)[0])


def u16(b: bytes) -> int:
    assert len(b) == 2
    return int(struct.unpack("=H", b)[0])


@pytest.fixture
def ipb() -> Iterator[Any]:
    with IPBatch() as batch:
        yield batch


def compile_link(ipb: Any, command: str, **kwargs: Any) -> bytes:
    ipb.reset()
    ipb.link(command, **kwargs)
    return bytes(ipb.asyncore.batch)


def test_uapi_numbers_match_module() -> None:
    expected = {
        "IFLA_NETKIT_PEER_INFO": PEER_INFO,
        "IFLA_NETKIT_PRIMARY": PRIMARY,
        "IFLA_NETKIT_POLICY": POLICY,
        "IFLA_NETKIT_PEER_POLICY": PEER_POLICY,
        "IFLA_NETKIT_MODE": MODE,
        "IFLA_NETKIT_SCRUB": SCRUB,
        "IFLA_NETKIT_PEER_SCRUB": PEER_SCRUB,
        "IFLA_NETKIT_HEADROOM": HEADROOM,
        "IFLA_NETKIT_TAILROOM": TAILROOM,
        "IFLA_NETKIT_PAIRING": PAIRING,
    }
    for name, number in expected.items():
        assert nk.IFLA_NETKIT[name] == number
        assert nk.netkit.nla_map[number][0] == name
    assert (nk.NetkitMode.L2, nk.NetkitMode.L3) == (0, 1)
    assert (nk.NetkitAction.NEXT, nk.NetkitAction.PASS) == (-1, 0)
    assert (nk.NetkitAction.DROP, nk.NetkitAction.REDIRECT) == (2, 7)
    assert set(nk.NetkitPolicy) == {nk.NetkitPolicy.PASS, nk.NetkitPolicy.DROP}
    assert (nk.NetkitScrub.NONE, nk.NetkitScrub.DEFAULT) == (0, 1)
    assert (nk.NetkitPairing.PAIR, nk.NetkitPairing.SINGLE) == (0, 1)


def test_kind_registered_with_pyroute2() -> None:
    assert ifinfmsg.ifinfo.data_map["netkit"] is nk.netkit
    nk.register()  # idempotent: a second registration must not wrap the hook twice
    assert ifinfmsg.ifinfo.data_map["netkit"] is nk.netkit


def test_add_request_wire_format(ipb: Any) -> None:
    data = compile_link(
        ipb,
        "add",
        ifname="nk0",
        kind="netkit",
        netkit_mode=nk.NetkitMode.L2,
        netkit_policy=nk.NetkitPolicy.DROP,
        netkit_peer_policy=nk.NetkitPolicy.PASS,
        netkit_scrub=nk.NetkitScrub.NONE,
        netkit_peer_scrub=nk.NetkitScrub.DEFAULT,
        netkit_headroom=64,
        netkit_tailroom=32,
        peer={"ifname": "nk1", "net_ns_fd": 7, "address": "02:00:00:00:00:01", "index": 99},
    )
    ifi, top, msg_type = split_request(data)
    assert msg_type == RTM_NEWLINK
    assert ifi[2] == 0  # primary ifindex: let the kernel choose
    assert top[IFLA_IFNAME] == b"nk0\0"
    data_attrs = info_data(top)
    assert set(data_attrs) == {
        PEER_INFO,
        POLICY,
        PEER_POLICY,
        MODE,
        SCRUB,
        PEER_SCRUB,
        HEADROOM,
        TAILROOM,
    }
    assert u32(data_attrs[MODE]) == 0
    assert u32(data_attrs[POLICY]) == 2
    assert u32(data_attrs[PEER_POLICY]) == 0
    assert u32(data_attrs[SCRUB]) == 0
    assert u32(data_attrs[PEER_SCRUB]) == 1
    assert u16(data_attrs[HEADROOM]) == 64
    assert u16(data_attrs[TAILROOM]) == 32
    # peer: struct ifinfomsg, then IFLA_* attributes (rtnl_nla_parse_ifinfomsg)
    peer = data_attrs[PEER_INFO]
    family, ifi_type, index, flags, change = IFINFOMSG.unpack_from(peer)
    assert (family, ifi_type, index, flags, change) == (0, 0, 99, 0, 0)
    peer_attrs = attrs(peer[IFINFOMSG.size :])
    assert peer_attrs[IFLA_IFNAME] == b"nk1\0"
    assert u32(peer_attrs[IFLA_NET_NS_FD]) == 7
    assert peer_attrs[IFLA_ADDRESS] == bytes.fromhex("020000000001")


def test_add_sends_only_given_attributes(ipb: Any) -> None:
    # kernel defaults (L3, pass/pass, scrub default) must come from the kernel, not from us
    _, top, _ = split_request(compile_link(ipb, "add", ifname="nk0", kind="netkit"))
    linkinfo = attrs(top[IFLA_LINKINFO])
    assert linkinfo[IFLA_INFO_KIND] == b"netkit\0"
    assert IFLA_INFO_DATA not in linkinfo or attrs(linkinfo[IFLA_INFO_DATA]) == {}


def test_peer_as_plain_name_and_mode_keyword(ipb: Any) -> None:
    # pyroute2 maps a bare `mode=` to IFLA_<KIND>_MODE; `peer="name"` is the short form
    data = compile_link(ipb, "add", ifname="a", kind="netkit", mode=1, peer="b")
    data_attrs = info_data(split_request(data)[1])
    assert u32(data_attrs[MODE]) == 1
    assert attrs(data_attrs[PEER_INFO][IFINFOMSG.size :]) == {IFLA_IFNAME: b"b\0"}


def test_peer_spec_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="bogus"):
        nk.peer_spec({"ifname": "x", "bogus": 1})
    assert nk.peer_spec({"IFLA_MTU": 1400})["attrs"] == [["IFLA_MTU", 1400]]


def test_veth_peer_still_handled_by_pyroute2(ipb: Any) -> None:
    # our push_specific hook must leave the other kinds alone
    data = compile_link(ipb, "add", ifname="v0", kind="veth", peer="v1")
    linkinfo = attrs(split_request(data)[1][IFLA_LINKINFO])
    assert linkinfo[IFLA_INFO_KIND] == b"veth\0"
    veth_peer = attrs(linkinfo[IFLA_INFO_DATA])[1]  # VETH_INFO_PEER
    assert attrs(veth_peer[IFINFOMSG.size :])[IFLA_IFNAME] == b"v1\0"


def test_change_request_carries_policies(ipb: Any) -> None:
    data = compile_link(
        ipb,
        "set",
        index=42,
        kind="netkit",
        netkit_policy=nk.u32(nk.NetkitAction.NEXT),
        netkit_peer_policy=nk.NetkitPolicy.DROP,
    )
    ifi, top, msg_type = split_request(data)
    assert msg_type == RTM_NEWLINK
    assert ifi[2] == 42
    data_attrs = info_data(top)
    assert u32(data_attrs[POLICY]) == 0xFFFFFFFF  # NETKIT_NEXT (-1) as the kernel reads it
    assert u32(data_attrs[PEER_POLICY]) == 2


# --- decoding: replies laid out as netkit_fill_info() does --------------------------------


def nla(typ: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), typ) + payload
    return raw + b"\0" * (-len(raw) % 4)


def reply(ifname: str, index: int, data: bytes, *, extra: bytes = b"", kind: str = "netkit") -> Any:
    body = (
        IFINFOMSG.pack(0, 1, index, 0x1043, 0)
        + nla(IFLA_IFNAME, ifname.encode() + b"\0")
        + nla(IFLA_MTU, struct.pack("=I", 1500))
        + nla(IFLA_LINK, struct.pack("=I", index + 1))
        + extra
        + nla(
            IFLA_LINKINFO,
            nla(IFLA_INFO_KIND, kind.encode() + b"\0") + nla(0x8000 | IFLA_INFO_DATA, data),
        )
    )
    raw = NLMSGHDR.pack(NLMSGHDR.size + len(body), RTM_NEWLINK, 0, 1, 0) + body
    msg = ifinfmsg(raw)
    msg.decode()
    return msg


def fill_info_712(primary: bool, policy: int, mode: int, scrub: int) -> bytes:
    """netkit_fill_info of 6.12: no headroom/tailroom/pairing."""
    return (
        nla(PRIMARY, bytes([primary]))
        + nla(POLICY, struct.pack("=I", policy))
        + nla(MODE, struct.pack("=I", mode))
        + nla(SCRUB, struct.pack("=I", scrub))
        + nla(PEER_POLICY, struct.pack("=I", 0))
        + nla(PEER_SCRUB, struct.pack("=I", 1))
    )


def test_decode_612_style_reply() -> None:
    msg = reply("nk0", 5, fill_info_712(True, 2, 0, 0))
    info = nk.NetkitInfo.from_msg(msg)
    assert info.ifname == "nk0"
    assert info.index == 5
    assert info.link == 6
    assert info.flags == 0x1043
    assert info.primary is True
    assert info.mode is nk.NetkitMode.L2
    assert info.policy is nk.NetkitPolicy.DROP
    assert info.peer_policy is nk.NetkitPolicy.PASS
    assert info.scrub is nk.NetkitScrub.NONE
    assert info.peer_scrub is nk.NetkitScrub.DEFAULT
    assert info.headroom is None and info.tailroom is None and info.pairing is None
    assert "IFLA_NETKIT_HEADROOM" not in info.present
    assert info.present == {
        "IFLA_NETKIT_PRIMARY",
        "IFLA_NETKIT_POLICY",
        "IFLA_NETKIT_MODE",
        "IFLA_NETKIT_SCRUB",
        "IFLA_NETKIT_PEER_POLICY",
        "IFLA_NETKIT_PEER_SCRUB",
    }
    # the generic pyroute2 path sees named attributes too, not raw bytes
    assert msg.get(("linkinfo", "data", "netkit_policy")) == 2


def test_decode_7x_single_device_reply() -> None:
    # single mode: no scrub, no peer attributes; headroom/tailroom/pairing present
    data = (
        nla(PRIMARY, b"\1")
        + nla(POLICY, struct.pack("=I", 0))
        + nla(MODE, struct.pack("=I", 1))
        + nla(HEADROOM, struct.pack("=H", 64))
        + nla(TAILROOM, struct.pack("=H", 32))
        + nla(PAIRING, struct.pack("=I", 1))
    )
    netnsid = nla(IFLA_LINK_NETNSID, struct.pack("=i", 3))
    info = nk.NetkitInfo.from_msg(reply("nks", 9, data, extra=netnsid))
    assert info.mode is nk.NetkitMode.L3
    assert info.pairing is nk.NetkitPairing.SINGLE
    assert (info.headroom, info.tailroom) == (64, 32)
    assert info.scrub is None and info.peer_policy is None and info.peer_scrub is None
    assert info.link_netnsid == 3


def test_request_round_trips_through_decoder(ipb: Any) -> None:
    data = compile_link(
        ipb,
        "add",
        ifname="nk0",
        kind="netkit",
        netkit_mode=nk.NetkitMode.L3,
        netkit_peer_policy=nk.NetkitPolicy.DROP,
        peer={"ifname": "nk1"},
    )
    msg = ifinfmsg(data)
    msg.decode()
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    decoded = linkinfo.get_attr("IFLA_INFO_DATA")
    assert decoded.get_attr("IFLA_NETKIT_MODE") == 1
    assert decoded.get_attr("IFLA_NETKIT_PEER_POLICY") == 2
    assert decoded.get_attr("IFLA_NETKIT_PEER_INFO").get_attr("IFLA_IFNAME") == "nk1"


def test_decode_rejects_other_kinds_and_missing_mandatory() -> None:
    with pytest.raises(ValueError, match="not netkit"):
        nk.NetkitInfo.from_msg(reply("v0", 3, b"", kind="veth"))
    with pytest.raises(ValueError, match="IFLA_NETKIT_MODE"):
        nk.NetkitInfo.from_msg(reply("nk0", 3, nla(PRIMARY, b"\1") + nla(POLICY, b"\0" * 4)))
    with pytest.raises(ValueError):  # a policy the kernel never reports (REDIRECT)
        nk.NetkitInfo.from_msg(reply("nk0", 3, fill_info_712(True, 7, 1, 1)))


# --- netdev generic netlink (queue leasing) ------------------------------------------------


def _types(buf: bytes) -> dict[int, int]:
    """Attribute type -> the raw type field (flags included)."""
    out: dict[int, int] = {}
    off = 0
    while off + 4 <= len(buf):
        length, typ = struct.unpack_from("=HH", buf, off)
        out[typ & NLA_TYPE_MASK] = typ
        off += (length + 3) & ~3
    return out


def test_queue_create_wire_format() -> None:
    """What pyroute2 encodes from our attribute sets is netdev_nl_queue_create_doit's input:
    NETDEV_A_QUEUE_IFINDEX, _TYPE and a nested _LEASE (NLA_F_NESTED set, which
    nla_parse_nested insists on) holding the lessor, its queue (nested) and netns id."""
    msg = genl.queue_create_msg(7, 3, 1, netns_id=2)
    msg["header"]["type"] = 0x1D
    msg.encode()
    body = msg.data[NLMSGHDR.size + 4:]  # after nlmsghdr + genlmsghdr
    assert msg.data[NLMSGHDR.size] == genl.NETDEV_CMD_QUEUE_CREATE
    top = attrs(body)
    assert set(top) == {2, 3, 8}  # NETDEV_A_QUEUE_IFINDEX, _TYPE, _LEASE
    assert u32(top[2]) == 7 and u32(top[3]) == 0  # RX
    assert _types(body)[8] & 0x8000
    lease = attrs(top[8])
    assert u32(lease[1]) == 3  # NETDEV_A_LEASE_IFINDEX
    assert struct.unpack("=i", lease[3])[0] == 2  # NETDEV_A_LEASE_NETNS_ID
    assert _types(top[8])[2] & 0x8000
    queue = attrs(lease[2])  # NETDEV_A_LEASE_QUEUE
    assert (u32(queue[1]), u32(queue[3])) == (1, 0)  # id, type RX
    plain = genl.queue_create_msg(7, 3, 1)
    plain.encode()
    assert 3 not in attrs(attrs(plain.data[NLMSGHDR.size + 4:])[8])  # no netns id asked


def test_queue_reply_decodes_queue_id() -> None:
    """A queue-create reply (NETDEV_A_QUEUE_ID, _IFINDEX, _TYPE) decodes through our
    attribute set."""
    attrs = b"".join(struct.pack("=HHI", 8, typ, value) for typ, value in ((1, 5), (2, 7),
                                                                            (3, 0)))
    raw = NLMSGHDR.pack(NLMSGHDR.size + 4 + len(attrs), 0x1D, 0, 1, 0) + bytes(
        [genl.NETDEV_CMD_QUEUE_CREATE, 1, 0, 0]) + attrs
    msg = genl.netdev_queue_msg(raw)
    msg.decode()
    assert msg.get_attr("NETDEV_A_QUEUE_ID") == 5
    assert msg.get_attr("NETDEV_A_QUEUE_IFINDEX") == 7
