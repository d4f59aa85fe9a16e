"""The netdev generic netlink family (include/uapi/linux/netdev.h) through pyroute2's
`GenericNetlinkSocket`: family discovery, queue leasing (NETDEV_CMD_QUEUE_CREATE, 7.x) and
the queue as the kernel reports it, its lease included (NETDEV_CMD_QUEUE_GET, `queue_get`).

A netkit peer (or single device) can take over ("lease") an RX queue of a physical device:
NETDEV_CMD_QUEUE_CREATE on the netkit device, naming the lessor and its queue
(net/core/netdev-genl.c, netdev_nl_queue_create_doit). pyroute2 ships no netdev message
class, so the attribute sets are declared here; encoding, the request/ACK exchange and the
kernel's extack message (NetlinkError's text) are pyroute2's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
from collections.abc import Iterator
from typing import Any, Final

from pyroute2.netlink import NLA_F_NESTED, NLM_F_ACK, NLM_F_REQUEST, genlmsg, nla
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import GenericNetlinkSocket

FAMILY: Final = "netdev"
#: enum netdev_cmd: queue-get is 10 (15 is bind-tx), queue-create 16 (7.1)
NETDEV_CMD_QUEUE_GET: Final = 10
NETDEV_CMD_QUEUE_CREATE: Final = 16
NETDEV_QUEUE_TYPE_RX, NETDEV_QUEUE_TYPE_TX = 0, 1


class _queue_ref(nla):  # type: ignore[misc]  # pyroute2 is untyped
    """Attribute set `queue-id` inside a lease: which queue of the lessor."""

    nla_flags = NLA_F_NESTED
    nla_map = (
        ("NETDEV_A_QUEUE_UNSPEC", "none"),
        ("NETDEV_A_QUEUE_ID", "uint32"),
        ("NETDEV_A_QUEUE_IFINDEX", "uint32"),
        ("NETDEV_A_QUEUE_TYPE", "uint32"),
    )


class _lease(nla):  # type: ignore[misc]
    """Attribute set `lease`: the lessor device, its queue, its namespace."""

    nla_flags = NLA_F_NESTED
    nla_map = (
        ("NETDEV_A_LEASE_UNSPEC", "none"),
        ("NETDEV_A_LEASE_IFINDEX", "uint32"),
        ("NETDEV_A_LEASE_QUEUE", "queue_ref"),
        ("NETDEV_A_LEASE_NETNS_ID", "int32"),
    )
    queue_ref = _queue_ref


class netdev_queue_msg(genlmsg):  # type: ignore[misc]
    """Attribute set `queue` (NETDEV_A_QUEUE_*), requests and replies of the queue ops."""

    nla_map = (
        ("NETDEV_A_QUEUE_UNSPEC", "none"),
        ("NETDEV_A_QUEUE_ID", "uint32"),
        ("NETDEV_A_QUEUE_IFINDEX", "uint32"),
        ("NETDEV_A_QUEUE_TYPE", "uint32"),
        ("NETDEV_A_QUEUE_NAPI_ID", "uint32"),
        ("NETDEV_A_QUEUE_DMABUF", "uint32"),
        ("NETDEV_A_QUEUE_IO_URING", "hex"),
        ("NETDEV_A_QUEUE_XSK", "hex"),
        ("NETDEV_A_QUEUE_LEASE", "lease"),
    )
    lease = _lease


class GenlError(OSError):
    """A netdev request the kernel refused: errno + its extack message, if any."""

    def __init__(self, err: int, what: str, extack: str) -> None:
        detail = f": {extack}" if extack else ""
        name = "EOPNOTSUPP" if err == errno.EOPNOTSUPP else errno.errorcode.get(err, str(err))
        super().__init__(err, f"{what}: {name}{detail}")
        self.extack = extack


@dataclasses.dataclass(frozen=True)
class GenlFamily:
    id: int
    name: str
    version: int
    ops: frozenset[int]


@contextlib.contextmanager
def _socket() -> Iterator[Any]:
    """A netdev genl socket (extended ACKs on) in the calling thread's namespace."""
    sock = GenericNetlinkSocket(ext_ack=True)
    try:
        sock.bind(FAMILY, netdev_queue_msg)
    except NetlinkError as exc:
        sock.close()
        raise GenlError(exc.code, f"genl family {FAMILY}", _extack(exc)) from exc
    except BaseException:
        sock.close()
        raise
    try:
        yield sock
    finally:
        sock.close()


def netdev_family() -> GenlFamily:
    """CTRL_CMD_GETFAMILY of netdev: id, version and operations (GenlError ENOENT when the
    kernel has no such family)."""
    with _socket() as sock:
        msg = sock.discovery(FAMILY)
    ops = frozenset(int(op.get_attr("CTRL_ATTR_OP_ID"))
                    for op in msg.get_attr("CTRL_ATTR_OPS", []))
    return GenlFamily(int(msg.get_attr("CTRL_ATTR_FAMILY_ID")),
                      str(msg.get_attr("CTRL_ATTR_FAMILY_NAME")),
                      int(msg.get_attr("CTRL_ATTR_VERSION")), ops)


def queue_create_msg(ifindex: int, lease_ifindex: int, lease_queue: int, *,
                     netns_id: int | None = None, queue_type: int = NETDEV_QUEUE_TYPE_RX,
                     lease_queue_type: int = NETDEV_QUEUE_TYPE_RX) -> netdev_queue_msg:
    """NETDEV_CMD_QUEUE_CREATE: a new queue on `ifindex` (the netkit device) leasing queue
    `lease_queue` of `lease_ifindex` (in netns `netns_id` if given)."""
    lease: list[list[Any]] = [
        ["NETDEV_A_LEASE_IFINDEX", lease_ifindex],
        ["NETDEV_A_LEASE_QUEUE", {"attrs": [["NETDEV_A_QUEUE_ID", lease_queue],
                                            ["NETDEV_A_QUEUE_TYPE", lease_queue_type]]}],
    ]
    if netns_id is not None:
        lease.append(["NETDEV_A_LEASE_NETNS_ID", netns_id])
    msg = netdev_queue_msg()
    msg["cmd"] = NETDEV_CMD_QUEUE_CREATE
    msg["version"] = 1
    msg["attrs"] = [["NETDEV_A_QUEUE_IFINDEX", ifindex], ["NETDEV_A_QUEUE_TYPE", queue_type],
                    ["NETDEV_A_QUEUE_LEASE", {"attrs": lease}]]
    return msg


def queue_create(ifindex: int, lease_ifindex: int, lease_queue: int, **kwargs: Any) -> int:
    """NETDEV_CMD_QUEUE_CREATE in the calling thread's netns; returns the new queue's id.
    GenlError ENOENT if there is no netdev family, EOPNOTSUPP if it lacks the command, or
    the kernel's errno and extack message when it refuses the lease."""
    fam = netdev_family()
    if NETDEV_CMD_QUEUE_CREATE not in fam.ops:
        raise GenlError(errno.EOPNOTSUPP, f"genl family {FAMILY}",
                        f"no queue-create op (NETDEV_CMD_QUEUE_CREATE="
                        f"{NETDEV_CMD_QUEUE_CREATE}); ops: {sorted(fam.ops)}")
    msg = queue_create_msg(ifindex, lease_ifindex, lease_queue, **kwargs)
    msg["version"] = fam.version
    with _socket() as sock:
        try:
            replies = list(sock.nlm_request(msg, msg_type=sock.prid,
                                            msg_flags=NLM_F_REQUEST | NLM_F_ACK))
        except NetlinkError as exc:
            raise GenlError(exc.code, f"{FAMILY} queue-create", _extack(exc)) from exc
    for reply in replies:
        qid = reply.get_attr("NETDEV_A_QUEUE_ID")
        if qid is not None:
            return int(qid)
    raise GenlError(errno.EPROTO, f"{FAMILY} queue-create", "reply carried no queue id")


@dataclasses.dataclass(frozen=True)
class QueueLease:
    """The other end of a leased queue (NETDEV_A_QUEUE_LEASE of a queue-get reply)."""

    ifindex: int
    queue_id: int
    queue_type: int
    #: NETDEV_A_LEASE_NETNS_ID: set when that device lives in another namespace
    netns_id: int | None


@dataclasses.dataclass(frozen=True)
class QueueInfo:
    """A queue as NETDEV_CMD_QUEUE_GET reports it."""

    ifindex: int
    queue_id: int
    queue_type: int
    napi_id: int | None
    #: an AF_XDP socket is bound to it (NETDEV_A_QUEUE_XSK present)
    xsk: bool
    lease: QueueLease | None


def _queue_info(msg: Any) -> QueueInfo:
    lease = msg.get_attr("NETDEV_A_QUEUE_LEASE")
    leased = None
    if lease is not None:
        ref = lease.get_attr("NETDEV_A_LEASE_QUEUE")
        netns = lease.get_attr("NETDEV_A_LEASE_NETNS_ID")
        leased = QueueLease(
            int(lease.get_attr("NETDEV_A_LEASE_IFINDEX") or 0),
            int(ref.get_attr("NETDEV_A_QUEUE_ID") or 0) if ref is not None else -1,
            int(ref.get_attr("NETDEV_A_QUEUE_TYPE") or 0) if ref is not None else -1,
            None if netns is None else int(netns))
    napi = msg.get_attr("NETDEV_A_QUEUE_NAPI_ID")
    return QueueInfo(int(msg.get_attr("NETDEV_A_QUEUE_IFINDEX") or 0),
                     int(msg.get_attr("NETDEV_A_QUEUE_ID") or 0),
                     int(msg.get_attr("NETDEV_A_QUEUE_TYPE") or 0),
                     None if napi is None else int(napi),
                     msg.get_attr("NETDEV_A_QUEUE_XSK") is not None, leased)


def queue_get(ifindex: int, queue_id: int,
              queue_type: int = NETDEV_QUEUE_TYPE_RX) -> QueueInfo:
    """NETDEV_CMD_QUEUE_GET of one queue in the calling thread's netns (with its lease on
    kernels that report leases: on the lender's queue, not the netkit's). GenlError with
    the kernel's errno (EINVAL: no such queue; ENOENT: the device is down) and extack
    message."""
    fam = netdev_family()
    msg = netdev_queue_msg()
    msg["cmd"] = NETDEV_CMD_QUEUE_GET
    msg["version"] = fam.version
    msg["attrs"] = [["NETDEV_A_QUEUE_IFINDEX", ifindex], ["NETDEV_A_QUEUE_TYPE", queue_type],
                    ["NETDEV_A_QUEUE_ID", queue_id]]
    with _socket() as sock:
        try:
            replies = list(sock.nlm_request(msg, msg_type=sock.prid,
                                            msg_flags=NLM_F_REQUEST))
        except NetlinkError as exc:
            raise GenlError(exc.code, f"{FAMILY} queue-get", _extack(exc)) from exc
    for reply in replies:
        if reply.get_attr("NETDEV_A_QUEUE_IFINDEX") is not None:
            return _queue_info(reply)
    raise GenlError(errno.EPROTO, f"{FAMILY} queue-get", "reply carried no queue")


def _extack(exc: NetlinkError) -> str:
    """The kernel's extended-ACK message pyroute2 put into the error; "" when the kernel
    sent none (pyroute2 then puts strerror there)."""
    text = str(exc.args[1]) if len(exc.args) > 1 and exc.args[1] else ""
    return "" if text == os.strerror(exc.code) else text
