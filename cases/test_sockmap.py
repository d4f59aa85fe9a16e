"""Sockmap/sockhash redirect matrix: {sockmap, sockhash} x {sk_msg, sk_skb} x {egress,
ingress} x every ordered pair of socket kinds (same kind and cross kind).

Modelled on the kernel selftest tools/testing/selftests/bpf/prog_tests/sockmap_redir.c
(bpf/sockmap_redir.bpf.c is its program): two connected pairs, ``in`` = (in0, in1) and
``out`` = (out0, out1). in0 sits in the "in" map that carries the verdict program, out0 in
the "out" map the program redirects to (key 0).

- sk_msg to egress:  send on in0 -> program on in0's sendmsg -> out0 egress -> read out1
- sk_msg to ingress: send on in0 -> program on in0's sendmsg -> out0 ingress -> read out0
- sk_skb to egress:  send on in1 -> program on in0's receive -> out0 egress -> read out1
- sk_skb to ingress: send on in1 -> program on in0's receive -> out0 ingress -> read out0

What the kernel specifies (net/core/sock_map.c, net/core/skmsg.c, net/ipv4/tcp_bpf.c; the
table of selftests' is_redir_supported()):

- sk_msg runs only on TCP senders (only tcp_bpf hooks sendmsg). From TCP it redirects to
  the ingress of TCP, UDP and AF_UNIX sockets, and to the egress of TCP only; any other
  target makes bpf_msg_redirect_{map,hash}() return SK_DROP and the send() fail with
  EACCES. From a non-TCP sender the program never runs: the bytes reach the original peer.
- sk_skb (BPF_SK_SKB_VERDICT) runs on every kind's receive path and redirects to the
  egress of any kind and to the ingress of any kind but vsock; ingress to vsock makes
  bpf_sk_redirect_{map,hash}() return SK_DROP: the bytes are dropped.
- A kernel may refuse a non-TCP socket at map insert (BPF_MAP_UPDATE_ELEM): EOPNOTSUPP
  from sock_map_update_elem_sys() for a socket type it cannot hold (older kernels: AF_UNIX
  before 5.15, vsock before 6.0/6.3) or EINVAL from sock_map_init_proto() for a protocol
  without psock_update_sk_prot.

Supported pairs must deliver exactly the bytes sent (several messages, 1 B .. 128 KiB, each
compared byte for byte) to the right socket and nowhere else: only that passes. The others
must show exactly the failure above, and then do not pass: a map insert the kernel refuses
is a FAILURE where images/features.toml says this kernel takes that socket kind
(sockmap_udp, sockmap_unix, sockmap_vsock) and a SKIP with the errno where it does not;
a combination no kernel redirects is a SKIP ("unsupported combination"). What the kernel
did is recorded either way (observed.md). Every case prints one ``VERDICT`` line.
"""

from __future__ import annotations

import errno
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from harness.guest import bpf as lb
from harness.guest.bpf import BpfObject
from harness.guest.fixtures import KernelExpectations
from harness.guest.net.sockets import (
    KINDS,
    Kind,
    assert_nothing_arrives,
    first_difference,
    payload,
    recv_available,
    recv_exact,
    send_all,
    socket_pair,
    vsock_unavailable,
)
from harness.guest.wait import wait_until

BPF_F_INGRESS = 1
SK_DROP, SK_PASS, SEEN_BYTES = 0, 1, 2
#: message sizes each supported pair carries, in order (capped per sender kind)
SIZES = (1, 4096, 65536, 131072)
#: documented refusals of BPF_MAP_UPDATE_ELEM for a socket the map cannot hold
INSERT_REFUSALS = {errno.EOPNOTSUPP: "sock_map_update_elem_sys: socket type/state not "
                   "supported", errno.EINVAL: "sock_map_init_proto: no psock_update_sk_prot"}
IO_TIMEOUT = 20.0
GRACE = 0.2


@dataclass(frozen=True)
class Mode:
    prog: str  # "msg" | "skb"
    direction: str  # "egress" | "ingress"

    @property
    def ingress(self) -> bool:
        return self.direction == "ingress"

    @property
    def id(self) -> str:
        return f"{self.prog}-{self.direction}"


MODES = (Mode("msg", "egress"), Mode("msg", "ingress"), Mode("skb", "egress"),
         Mode("skb", "ingress"))
MAPS = {"sockmap": (lb.MapType.SOCKMAP, "nop_map", "sock_map"),
        "sockhash": (lb.MapType.SOCKHASH, "nop_hash", "sock_hash")}


def supported(mode: Mode, src: Kind, dst: Kind) -> bool:
    """The kernel's redirect support table (selftests' is_redir_supported())."""
    if mode.prog == "msg":
        if not src.is_tcp:
            return False
        return dst.is_tcp if not mode.ingress else not dst.is_vsock
    return not (mode.ingress and dst.is_vsock)


def _params() -> list[object]:
    out: list[object] = []
    for map_name in MAPS:
        for mode in MODES:
            for src in KINDS:
                for dst in KINDS:
                    marks = [pytest.mark.requires(map_name, "sk_" + mode.prog)]
                    out.append(pytest.param(map_name, mode, src, dst, marks=marks,
                                            id=f"{map_name}-{mode.id}-{src.value}-{dst.value}"))
    return out


class Stats:
    def __init__(self, obj: BpfObject) -> None:
        self.map = obj.map("redir_stats")

    def zero(self) -> None:
        for idx in (SK_DROP, SK_PASS, SEEN_BYTES):
            self.map.update(idx, 0)

    def get(self) -> tuple[int, int, int]:
        return (self.map.lookup_int(SK_DROP), self.map.lookup_int(SK_PASS),
                self.map.lookup_int(SEEN_BYTES))


class Sender:
    """One thread that sends each message it is given on `sock` (a blocking send_all: a
    large one blocks until the receiver reads), one at a time: a pair's messages go in
    lockstep with their receipt (send, receive, compare, then the next), and a thread is
    started once a pair, not once a message (each start costs ~10 ms under TCG)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._todo: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sockmap-send")

    def _run(self) -> None:
        while (data := self._todo.get()) is not None:
            try:
                send_all(self._sock, data, timeout=IO_TIMEOUT)
            except BaseException as exc:
                self._done.put(exc)
            else:
                self._done.put(None)

    def send(self, data: bytes) -> None:
        """Start sending `data`; `sent()` waits for it."""
        self._todo.put(data)

    def sent(self) -> None:
        """Wait until the message given last is sent; its send's error is raised here."""
        try:
            error = self._done.get(timeout=IO_TIMEOUT + 5)
        except queue.Empty:
            raise TimeoutError("sender thread still blocked in send()") from None
        if error is not None:
            raise error

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._todo.put(None)
        self._thread.join(IO_TIMEOUT + 5)


def _sizes(src: Kind) -> list[int]:
    return sorted({min(size, src.max_message) for size in SIZES})


def _payloads() -> None:
    """Make the payloads now (they are cached per process): the module is imported in the
    guest agent, so every case process inherits them instead of hashing 200 KB again."""
    for kind in Kind:
        for seed, size in enumerate(_sizes(kind)):
            payload(size, seed)
    payload(64, 99)


_payloads()


#: the agent loads bpf/sockmap_redir.bpf.c once a boot (loading is slow under TCG) and
#: every case process inherits it: each case resets it first (see _reset)
pytestmark = pytest.mark.bpf_shared("sockmap_redir")
VERDICTS = {"redir_msg": lb.BPF_SK_MSG_VERDICT, "redir_skb": lb.BPF_SK_SKB_VERDICT}


@pytest.fixture(scope="module")
def redir_obj() -> Iterator[BpfObject]:
    """bpf/sockmap_redir.bpf.c: the agent's, shared by the cases (harness/guest/bpf/shared.py)."""
    with lb.shared_object("sockmap_redir") as obj:
        yield obj


def _reset(obj: BpfObject) -> None:
    """What an earlier case could have left in the shared object (a case killed half-way
    leaves its verdict program attached): no program on any map, no socket at key 0.
    The config and the counters are set by each case itself."""
    for _, in_name, out_name in MAPS.values():
        in_map = obj.map(in_name)
        for prog_name, attach in VERDICTS.items():
            try:
                lb.prog_detach(obj.program(prog_name), in_map.fd, attach)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
        for smap in (in_map, obj.map(out_name)):
            _delete_key0(smap)


def _delete_key0(smap: lb.Map) -> None:
    try:
        smap.delete(0)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EINVAL):
            raise


@pytest.mark.parametrize(("map_name", "mode", "src", "dst"), _params())
def test_redirect(redir_obj: BpfObject, map_name: str, mode: Mode, src: Kind,
                  dst: Kind, record_property: Callable[[str, object], None],
                  expect: KernelExpectations) -> None:
    for kind in {src, dst}:
        if kind.is_vsock and (reason := vsock_unavailable()) is not None:
            pytest.skip(reason)
    map_type, in_name, out_name = MAPS[map_name]
    obj = redir_obj
    _reset(obj)
    in_map, out_map = obj.map(in_name), obj.map(out_name)
    obj.map("redir_cfg").update(0, struct.pack("II", map_type,
                                               BPF_F_INGRESS if mode.ingress else 0))
    stats = Stats(obj)
    stats.zero()
    prog_name = "redir_msg" if mode.prog == "msg" else "redir_skb"
    prog, attach = obj.program(prog_name), VERDICTS[prog_name]
    lb.prog_attach(prog, in_map.fd, attach)
    try:
        observed, refusal = _run_pair(in_map, out_map, stats, mode, src, dst)
        # what the kernel did with this pair goes into the report (observed.md)
        record_property("observed", observed)
        if refusal is not None:  # only a delivered pair passes
            expect.refused(*refusal)
    finally:
        lb.prog_detach(prog, in_map.fd, attach)
        for smap in (in_map, out_map):  # normally gone with the closed sockets already
            _delete_key0(smap)


def insert_feature(kind: Kind) -> str:
    """The feature (images/features.toml) that says since when a sockmap takes `kind`."""
    if kind.is_udp:
        return "sockmap_udp"
    if kind.is_vsock:
        return "sockmap_vsock"
    return "sockmap_unix" if kind.is_unix else "sockmap"


#: (feature whose expectation decides, what the kernel did) of a pair that did not deliver;
#: feature None: no kernel redirects that combination (the kernel's own rules)
Refusal = tuple[str | None, str]


def _insert(smap: lb.Map, sock: socket.socket, kind: Kind, role: str) -> tuple[str, str] | None:
    """Put `sock` at key 0; None on success, (errno name, description) if the kernel
    refused it in one of its documented ways (never for TCP: the base feature)."""
    try:
        smap.update(0, sock.fileno(), lb.UpdateFlags.NOEXIST)
        return None
    except OSError as exc:
        if kind.is_tcp or exc.errno not in INSERT_REFUSALS:
            raise
        name = lb.errno_name(exc.errno)
        return name, (f"map insert of {role} ({kind.value}) refused: "
                      f"{name} ({INSERT_REFUSALS[exc.errno]})")


def _run_pair(in_map: lb.Map, out_map: lb.Map, stats: Stats, mode: Mode, src: Kind,
              dst: Kind) -> tuple[str, Refusal | None]:
    """Run one pair: (what the kernel did, in a few words: the report's category; the
    refusal when the bytes were not redirected, else None)."""
    name = f"{mode.id} {src.value} -> {dst.value}"
    with socket_pair(src) as pin, socket_pair(dst) as pout:
        in0, in1, out0, out1 = pin.a, pin.b, pout.a, pout.b
        for smap, sock, kind, role in ((in_map, in0, src, "in0"), (out_map, out0, dst, "out0")):
            refusal = _insert(smap, sock, kind, role)
            if refusal is not None:
                print(f"VERDICT {name}: REFUSED {refusal[1]}")
                which = "source" if role == "in0" else "target"
                return (f"map insert of the {which} socket refused: {refusal[0]}",
                        (insert_feature(kind), refusal[1]))
        sender, peer = (in0, in1) if mode.prog == "msg" else (in1, in0)
        receiver = out0 if mode.ingress else out1
        everyone = {"in0": in0, "in1": in1, "out0": out0, "out1": out1}

        if supported(mode, src, dst):
            total = 0
            sizes = _sizes(src)
            with Sender(sender) as sending:
                for seed, size in enumerate(sizes):
                    data = payload(size, seed)
                    sending.send(data)
                    try:
                        got = recv_exact(receiver, size, timeout=IO_TIMEOUT)
                    finally:
                        sending.sent()
                    assert got == data, f"{name}: message {seed} ({size} B): " \
                        f"{first_difference(data, got)}"
                    total += size
            # the sender's own queue and everyone else's stay empty (watched together)
            assert_nothing_arrives({role: sock for role, sock in everyone.items()
                                    if sock is not sender}, grace=GRACE, what=name)
            drop, passed, seen = stats.get()
            assert drop == 0, f"{name}: {drop} SK_DROP verdict(s) on a supported redirect"
            assert passed >= 1, f"{name}: bytes arrived but the program never redirected"
            assert seen == total, f"{name}: program saw {seen} bytes, {total} were sent"
            print(f"VERDICT {name}: DELIVERED {total} bytes in {len(sizes)} messages "
                  f"({', '.join(map(str, sizes))}) byte for byte; {passed} SK_PASS verdicts")
            return "delivered", None

        data = payload(64, 99)
        if mode.prog == "msg" and src.is_tcp:
            # bpf_msg_redirect_*() refuses the target: SK_DROP, and send() fails EACCES
            with pytest.raises(OSError) as info:
                send_all(sender, data, timeout=IO_TIMEOUT)
            assert info.value.errno == errno.EACCES, \
                f"{name}: send() failed with {info.value!r}, the kernel specifies EACCES"
            drop, passed, _ = stats.get()
            assert (drop, passed) == (1, 0), f"{name}: verdicts drop/pass {drop}/{passed}"
            assert_nothing_arrives(everyone, grace=GRACE, what=name)
            print(f"VERDICT {name}: UNSUPPORTED send() EACCES, 1 SK_DROP, nothing delivered")
            return "refused: send() EACCES, SK_DROP", (
                None, f"{name}: bpf_msg_redirect refuses the target: send() EACCES, SK_DROP")
        elif mode.prog == "msg":
            # no sk_msg hook on a non-TCP sender: the bytes go to the original peer
            send_all(sender, data, timeout=IO_TIMEOUT)
            got = recv_exact(peer, len(data), timeout=IO_TIMEOUT)
            assert got == data, f"{name}: at the peer: {first_difference(data, got)}"
            assert stats.get() == (0, 0, 0), f"{name}: program ran: {stats.get()}"
            assert_nothing_arrives({role: sock for role, sock in everyone.items()
                                    if sock is not peer}, grace=0.01, what=name)
            print(f"VERDICT {name}: UNSUPPORTED sk_msg does not run on {src.value}; "
                  f"{len(data)} bytes reached the original peer unchanged")
            return "sk_msg not run on the sender: bytes to the original peer", (
                None, f"{name}: sk_msg does not run on a {src.value} sender (no sendmsg "
                      "hook): the bytes went to the original peer")
        else:
            # bpf_sk_redirect_*() refuses the target: SK_DROP, the skb is freed
            send_all(sender, data, timeout=IO_TIMEOUT)
            wait_until(lambda: stats.get()[SK_DROP] >= 1, timeout=IO_TIMEOUT,
                       what=f"{name}: SK_DROP verdict")
            time.sleep(GRACE)
            drop, passed, _ = stats.get()
            assert passed == 0, f"{name}: {passed} SK_PASS verdicts on an unsupported target"
            for role, sock in everyone.items():
                leaked = recv_available(sock)
                assert not leaked, f"{name}: {len(leaked)} dropped bytes showed up at {role}"
            print(f"VERDICT {name}: UNSUPPORTED {drop} SK_DROP verdict(s), "
                  f"{len(data)} bytes dropped, nothing delivered anywhere")
            return "refused: SK_DROP, bytes dropped", (
                None, f"{name}: bpf_sk_redirect refuses the target: SK_DROP, bytes dropped")
