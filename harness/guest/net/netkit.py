"""netkit devices through rtnetlink: a pyroute2 link-kind plugin plus typed wrappers.

pyroute2 0.9 has no "netkit" link kind: without a plugin, IFLA_INFO_DATA of a netkit device
decodes as raw bytes and `netkit_*` keywords are silently dropped from requests. Importing this
module registers the kind, after which the ordinary pyroute2 API works::

    ipr.link("add", ifname="nk0", kind="netkit", netkit_mode=NetkitMode.L2,
             netkit_policy=NetkitPolicy.PASS, netkit_peer_policy=NetkitPolicy.DROP,
             netkit_scrub=NetkitScrub.NONE, netkit_peer_scrub=NetkitScrub.DEFAULT,
             netkit_headroom=64, netkit_tailroom=32,
             peer={"ifname": "nk1", "net_ns_fd": "ns-name-or-fd"})
    ipr.link("get", ifname="nk0")[0].get(("linkinfo", "data", "netkit_policy"))
    ipr.link("set", index=idx, kind="netkit", netkit_policy=NetkitPolicy.DROP)

`kind="netkit"` must be given on "set" too: pyroute2 only routes `netkit_*` keywords into
IFLA_INFO_DATA when it knows the kind of the request.

UAPI (include/uapi/linux/if_link.h), attribute numbers are ABI:

    IFLA_NETKIT_PEER_INFO=1 (struct ifinfomsg + IFLA_*), PRIMARY=2 (u8, read-only),
    POLICY=3, PEER_POLICY=4, MODE=5, SCRUB=6, PEER_SCRUB=7 (u32),
    HEADROOM=8, TAILROOM=9 (u16, 6.14+), PAIRING=10 (u32, single-device mode, 7.x)

What the kernel lets `changelink` do (drivers/net/netkit.c, netkit_change_link): only through
the primary (EACCES on the peer), only IFLA_NETKIT_POLICY and IFLA_NETKIT_PEER_POLICY, only
NETKIT_PASS or NETKIT_DROP (EINVAL otherwise). Mode, scrub, peer info (and where they exist
headroom, tailroom, pairing) are fixed at creation: EACCES (6.12 answers EINVAL for peer info).
Older kernels ignore attributes above their IFLA_NETKIT_MAX, so "accepted" is not
"supported": `NetkitInfo.present` records which attributes the kernel actually reported.

Typed layer: enums `NetkitMode`, `NetkitPolicy` (the two default policies), `NetkitAction`
(BPF return codes), `NetkitScrub`, `NetkitPairing`; `NetkitInfo` (a decoded RTM_NEWLINK);
`create`, `create_pair`, `pair` (context manager), `info`, `dump`, `set_policy`, `change`,
`delete` (tolerates already-gone), each optionally in a named netns. Queue leasing (7.x)
is `harness.guest.net.genl`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
from collections.abc import Iterator, Mapping
from typing import Any, Final

from pyroute2 import IPRoute
from pyroute2.netlink import nla
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg, ifinfveth
from pyroute2.requests.link import LinkIPRouteFilter

from ..bpf.uapi import NetkitAction as NetkitAction  # re-exported: the cases use nk.*
from .netns import run_in_netns

KIND: Final = "netkit"

#: IFLA_NETKIT_* attribute numbers, from include/uapi/linux/if_link.h
IFLA_NETKIT: Final[Mapping[str, int]] = {
    "IFLA_NETKIT_UNSPEC": 0,
    "IFLA_NETKIT_PEER_INFO": 1,
    "IFLA_NETKIT_PRIMARY": 2,
    "IFLA_NETKIT_POLICY": 3,
    "IFLA_NETKIT_PEER_POLICY": 4,
    "IFLA_NETKIT_MODE": 5,
    "IFLA_NETKIT_SCRUB": 6,
    "IFLA_NETKIT_PEER_SCRUB": 7,
    "IFLA_NETKIT_HEADROOM": 8,
    "IFLA_NETKIT_TAILROOM": 9,
    "IFLA_NETKIT_PAIRING": 10,
}


class NetkitMode(enum.IntEnum):
    """enum netkit_mode. L3 is the kernel's default."""

    L2 = 0
    L3 = 1


class NetkitPolicy(enum.IntEnum):
    """Default xmit policy (no program attached): the only actions netkit_check_policy takes."""

    PASS = NetkitAction.PASS
    DROP = NetkitAction.DROP


class NetkitScrub(enum.IntEnum):
    """enum netkit_scrub. DEFAULT zeroes skb->{mark,priority} when crossing namespaces."""

    NONE = 0
    DEFAULT = 1


class NetkitPairing(enum.IntEnum):
    """enum netkit_pairing (7.x): a pair, or a single device without peer."""

    PAIR = 0
    SINGLE = 1


def u32(value: int) -> int:
    """An enum netkit_action (NEXT is -1) as the u32 the netlink attribute carries."""
    return int(value) & 0xFFFFFFFF


# --- the pyroute2 plugin ------------------------------------------------------------------


class netkit(nla):  # type: ignore[misc]  # pyroute2 is untyped; class name = link kind
    """IFLA_INFO_DATA of kind "netkit" (pyroute2 naming convention: class named as the kind)."""

    prefix = "IFLA_"
    nla_map = (
        ("IFLA_NETKIT_UNSPEC", "none"),
        ("IFLA_NETKIT_PEER_INFO", "peer_info"),
        ("IFLA_NETKIT_PRIMARY", "uint8"),
        ("IFLA_NETKIT_POLICY", "uint32"),
        ("IFLA_NETKIT_PEER_POLICY", "uint32"),
        ("IFLA_NETKIT_MODE", "uint32"),
        ("IFLA_NETKIT_SCRUB", "uint32"),
        ("IFLA_NETKIT_PEER_SCRUB", "uint32"),
        ("IFLA_NETKIT_HEADROOM", "uint16"),
        ("IFLA_NETKIT_TAILROOM", "uint16"),
        ("IFLA_NETKIT_PAIRING", "uint32"),
    )

    class peer_info(ifinfveth):  # type: ignore[misc]
        """struct ifinfomsg followed by IFLA_* attributes, like VETH_INFO_PEER."""


# the ifinfomsg header fields a peer spec may set directly; everything else is an IFLA_* NLA
_PEER_FIELDS: Final = frozenset(name for name, _ in ifinfmsg.fields if not name.startswith("__"))
_IFLA_NAMES: Final = frozenset(
    entry[0] if isinstance(entry[0], str) else entry[1] for entry in ifinfmsg.nla_map
)


def peer_spec(value: str | Mapping[str, Any]) -> dict[str, Any]:
    """The IFLA_NETKIT_PEER_INFO value for `peer=`: a name, or {"ifname": ..., NLA keys...}.

    Keys are ifinfomsg fields (index, flags, change, ifi_type, family) or IFLA_* names in
    either spelling ("net_ns_fd" / "IFLA_NET_NS_FD"). An unknown key is an error, not a
    silently dropped attribute.
    """
    if isinstance(value, str):
        return {"attrs": [["IFLA_IFNAME", value]]}
    spec: dict[str, Any] = {"attrs": []}
    for key, item in value.items():
        if key in _PEER_FIELDS:
            spec[key] = item
            continue
        name = key if key.startswith("IFLA_") else ifinfmsg.name2nla(key)
        if name not in _IFLA_NAMES:
            raise ValueError(f"netkit peer: {key!r} is neither an ifinfomsg field nor IFLA_*")
        spec["attrs"].append([name, item])
    return spec


def _push_specific_netkit(self: Any, key: str, value: Any) -> bool:
    # pyroute2 special-cases `peer=` for veth only ("FIXME: veth hack" in push_specific);
    # this is the same translation for netkit, where the peer goes into IFLA_NETKIT_PEER_INFO.
    if getattr(self, "kind", None) == KIND and key == "peer":
        self.info_data.append(["IFLA_NETKIT_PEER_INFO", peer_spec(value)])
        return True
    result: bool = _push_specific_orig(self, key, value)
    return result


_push_specific_orig: Any = None


def register() -> None:
    """Register the netkit kind with pyroute2 (idempotent; done on import)."""
    global _push_specific_orig
    ifinfmsg.ifinfo.register_link_kind(module={KIND: netkit})
    current = LinkIPRouteFilter.push_specific
    if current is not _push_specific_netkit:
        _push_specific_orig = current
        LinkIPRouteFilter.push_specific = _push_specific_netkit


register()


# --- typed view of a dumped device ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NetkitInfo:
    """One netkit device as the kernel reports it in RTM_NEWLINK (link get / dump)."""

    ifname: str
    index: int
    flags: int
    address: str | None
    mtu: int
    #: IFLA_LINK: ifindex of the peer (in the peer's namespace); 0 without a peer
    link: int
    #: IFLA_LINK_NETNSID: present when the peer lives in another namespace
    link_netnsid: int | None
    primary: bool
    mode: NetkitMode
    policy: NetkitPolicy
    #: None when the kernel sent no such attribute (no peer, or a kernel without it)
    peer_policy: NetkitPolicy | None
    scrub: NetkitScrub | None
    peer_scrub: NetkitScrub | None
    headroom: int | None
    tailroom: int | None
    pairing: NetkitPairing | None
    #: the IFLA_NETKIT_* attribute names the kernel put into IFLA_INFO_DATA
    present: frozenset[str]

    @classmethod
    def from_msg(cls, msg: Any) -> NetkitInfo:
        """Decode an ifinfmsg (pyroute2) of kind netkit; ValueError for any other kind."""
        linkinfo = msg.get_attr("IFLA_LINKINFO")
        kind = linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo is not None else None
        if kind != KIND:
            raise ValueError(f"{msg.get_attr('IFLA_IFNAME')}: link kind {kind!r}, not netkit")
        data = linkinfo.get_attr("IFLA_INFO_DATA")
        if data is None or not hasattr(data, "get_attr"):
            raise ValueError(f"{msg.get_attr('IFLA_IFNAME')}: IFLA_INFO_DATA not decoded: {data!r}")

        def opt(name: str) -> int | None:
            value = data.get_attr(name)
            return None if value is None else int(value)

        def need(name: str) -> int:
            value = opt(name)
            if value is None:
                raise ValueError(f"{msg.get_attr('IFLA_IFNAME')}: kernel sent no {name}")
            return value

        def maybe(enum_cls: type[Any], name: str) -> Any:
            value = opt(name)
            return None if value is None else enum_cls(value)

        return cls(
            ifname=str(msg.get_attr("IFLA_IFNAME")),
            index=int(msg["index"]),
            flags=int(msg["flags"]),
            address=msg.get_attr("IFLA_ADDRESS"),
            mtu=int(msg.get_attr("IFLA_MTU") or 0),
            link=int(msg.get_attr("IFLA_LINK") or 0),
            link_netnsid=msg.get_attr("IFLA_LINK_NETNSID"),
            primary=bool(need("IFLA_NETKIT_PRIMARY")),
            mode=NetkitMode(need("IFLA_NETKIT_MODE")),
            policy=NetkitPolicy(need("IFLA_NETKIT_POLICY")),
            peer_policy=maybe(NetkitPolicy, "IFLA_NETKIT_PEER_POLICY"),
            scrub=maybe(NetkitScrub, "IFLA_NETKIT_SCRUB"),
            peer_scrub=maybe(NetkitScrub, "IFLA_NETKIT_PEER_SCRUB"),
            headroom=opt("IFLA_NETKIT_HEADROOM"),
            tailroom=opt("IFLA_NETKIT_TAILROOM"),
            pairing=maybe(NetkitPairing, "IFLA_NETKIT_PAIRING"),
            present=frozenset(str(name) for name, _ in data["attrs"]),
        )


# --- wrappers ------------------------------------------------------------------------------


@contextlib.contextmanager
def _ipr(netns: str | None, ipr: Any | None) -> Iterator[Any]:
    """`ipr`, or an rtnetlink socket of our own in namespace `netns` (None: the calling
    thread's). The thread enters the namespace (setns) to make it: pyroute2's
    IPRoute(netns=...) forks a child process for that, and a fork of a case process costs
    0.1-0.5 s under TCG."""
    if ipr is not None:
        yield ipr
        return
    with run_in_netns(netns), IPRoute() as own:
        yield own


def _index(ipr: Any, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise NetlinkError(errno.ENODEV, f"no device {ifname!r}")
    return int(found[0])


def create(
    ifname: str,
    peer: str | Mapping[str, Any] | None = None,
    *,
    mode: NetkitMode | None = None,
    policy: int | None = None,
    peer_policy: int | None = None,
    scrub: NetkitScrub | None = None,
    peer_scrub: NetkitScrub | None = None,
    headroom: int | None = None,
    tailroom: int | None = None,
    pairing: NetkitPairing | None = None,
    address: str | None = None,
    index: int | None = None,
    netns: str | None = None,
    ipr: Any | None = None,
) -> NetkitInfo:
    """RTM_NEWLINK kind netkit; only the given attributes are sent (kernel defaults otherwise).

    `peer` is a name or a peer spec (see `peer_spec`: e.g. {"ifname": "nk1", "net_ns_fd":
    "ns1"}); `index` asks for the primary's ifindex. Policies are plain ints on purpose: a
    test may send a value the kernel must refuse (NetkitAction.REDIRECT, NEXT). Returns the
    primary as the kernel reports it.
    """
    args: dict[str, Any] = {"ifname": ifname, "kind": KIND}
    optional: dict[str, int | None] = {
        "netkit_mode": mode,
        "netkit_policy": None if policy is None else u32(policy),
        "netkit_peer_policy": None if peer_policy is None else u32(peer_policy),
        "netkit_scrub": scrub,
        "netkit_peer_scrub": peer_scrub,
        "netkit_headroom": headroom,
        "netkit_tailroom": tailroom,
        "netkit_pairing": pairing,
    }
    args.update({k: int(v) for k, v in optional.items() if v is not None})
    if peer is not None:
        args["peer"] = peer
    if address is not None:
        args["address"] = address
    if index is not None:
        args["index"] = index
    with _ipr(netns, ipr) as conn:
        conn.link("add", **args)
        return info(ifname, ipr=conn)


def create_pair(
    ifname: str,
    peer_ifname: str,
    *,
    peer_netns: str | None = None,
    peer_address: str | None = None,
    peer_index: int | None = None,
    **kwargs: Any,
) -> tuple[NetkitInfo, NetkitInfo]:
    """Create primary `ifname` (in `netns`, default: current) and peer `peer_ifname`, straight
    into `peer_netns` (a name under /var/run/netns) if given, with ifindex `peer_index` if
    given (the ifinfomsg of IFLA_NETKIT_PEER_INFO; like veth, the kernel honours it only
    when the primary's `index` is given too); returns (primary, peer) as the kernel
    reports them. Other keywords go to `create`."""
    spec: dict[str, Any] = {"ifname": peer_ifname}
    if peer_netns is not None:
        spec["net_ns_fd"] = peer_netns
    if peer_address is not None:
        spec["address"] = peer_address
    if peer_index is not None:
        spec["index"] = peer_index
    primary = create(ifname, spec, **kwargs)
    peer = info(peer_ifname, netns=peer_netns if peer_netns is not None else kwargs.get("netns"))
    return primary, peer


def info(ifname: str, *, netns: str | None = None, ipr: Any | None = None) -> NetkitInfo:
    """RTM_GETLINK of `ifname`, decoded. NetlinkError(ENODEV) if it does not exist."""
    with _ipr(netns, ipr) as conn:
        msgs = conn.link("get", index=_index(conn, ifname))
        return NetkitInfo.from_msg(msgs[0])


def dump(*, netns: str | None = None, ipr: Any | None = None) -> list[NetkitInfo]:
    """All netkit devices of a namespace (RTM_GETLINK dump, filtered on IFLA_INFO_KIND)."""
    with _ipr(netns, ipr) as conn:
        out = []
        for msg in conn.link("dump"):
            linkinfo = msg.get_attr("IFLA_LINKINFO")
            if linkinfo is not None and linkinfo.get_attr("IFLA_INFO_KIND") == KIND:
                out.append(NetkitInfo.from_msg(msg))
        return out


def set_policy(
    ifname: str,
    *,
    policy: int | None = None,
    peer_policy: int | None = None,
    netns: str | None = None,
    ipr: Any | None = None,
) -> NetkitInfo:
    """Change the default policies (what netkit_change_link allows); returns the new state."""
    args: dict[str, Any] = {"kind": KIND}
    if policy is not None:
        args["netkit_policy"] = u32(policy)
    if peer_policy is not None:
        args["netkit_peer_policy"] = u32(peer_policy)
    with _ipr(netns, ipr) as conn:
        conn.link("set", index=_index(conn, ifname), **args)
        return info(ifname, ipr=conn)


def change(
    ifname: str, *, netns: str | None = None, ipr: Any | None = None, **netkit_attrs: int
) -> None:
    """Raw changelink with arbitrary `netkit_*` keywords (to test what the kernel refuses)."""
    with _ipr(netns, ipr) as conn:
        conn.link("set", index=_index(conn, ifname), kind=KIND, **netkit_attrs)


def delete(
    ifname: str, *, netns: str | None = None, ipr: Any | None = None, missing_ok: bool = True
) -> bool:
    """RTM_DELLINK; deletes the peer too. False if already gone and `missing_ok`."""
    try:
        with _ipr(netns, ipr) as conn:
            found = conn.link_lookup(ifname=ifname)
            if not found:
                raise NetlinkError(errno.ENODEV, f"no device {ifname!r}")
            conn.link("del", index=found[0])
    except NetlinkError as exc:
        if missing_ok and exc.code == errno.ENODEV:
            return False
        raise
    except FileNotFoundError:  # the namespace itself is gone
        if missing_ok:
            return False
        raise
    return True


@contextlib.contextmanager
def pair(ifname: str, peer_ifname: str, **kwargs: Any) -> Iterator[tuple[NetkitInfo, NetkitInfo]]:
    """`create_pair` as a context manager; deletes the pair on exit (tolerates already gone)."""
    devs = create_pair(ifname, peer_ifname, **kwargs)
    try:
        yield devs
    finally:
        delete(ifname, netns=kwargs.get("netns"))
