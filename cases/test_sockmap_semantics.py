"""Sockmap/sockhash map and program semantics (cases/test_sockmap.py has the redirect matrix).

Reference: tools/testing/selftests/bpf/prog_tests/sockmap_basic.c and sockmap_listen.c, and
the kernel's net/core/sock_map.c, net/core/skmsg.c and net/ipv4/tcp_bpf.c, where each errno
below comes from:

- BPF_MAP_UPDATE_ELEM: EOPNOTSUPP for a socket in a state the map cannot hold
  (sock_map_sk_state_allowed(): TCP must be established or listening, AF_UNIX stream
  established), ENOTSOCK for an fd that is no socket (sockfd_lookup()), EEXIST/ENOENT for
  BPF_NOEXIST/BPF_EXIST, E2BIG for a sockmap key >= max_entries or a full sockhash.
- BPF_MAP_LOOKUP_ELEM from user space returns the socket cookie, and ENOSPC when the
  value size is not 8 (sock_map_lookup_sys()).
- BPF_PROG_ATTACH: EBUSY when stream_verdict and skb_verdict would both be attached
  (sock_map_prog_update()/sock_map_prog_link_lookup()); BPF_PROG_DETACH of a program that
  is not attached: ENOENT. BPF_LINK_CREATE on a sockmap (6.10+) is probed by trying: older
  kernels answer EINVAL.

All traffic is TCP over loopback inside a private network namespace, checked byte for byte.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from harness.guest import bpf as lb
from harness.guest.bpf import BpfObject, Map, Program
from harness.guest.fixtures import KernelExpectations
from harness.guest.net.netns import run_in_netns
from harness.guest.net.sockets import (
    Kind,
    Pair,
    assert_nothing_arrives,
    cookie,
    fionread,
    first_difference,
    payload,
    recv_exact,
    send_all,
    socket_pair,
    wait_eof,
)
from harness.guest.wait import wait_until

ACT_PASS, ACT_DROP, ACT_REDIRECT_INGRESS, ACT_REDIRECT_EGRESS = 0, 1, 2, 3
PARSER, SKB_CALLS, MSG_CALLS, LOG_NEXT = 0, 1, 2, 3
GRACE = 0.3
TIMEOUT = 15.0


def _expect_errno(err: int, fn: Callable[[], object], what: str) -> None:
    with pytest.raises(OSError) as info:
        fn()
    assert info.value.errno == err, \
        f"{what}: wanted {errno.errorcode[err]}, kernel said {info.value!r}"


@pytest.fixture
def in_netns(netns: str) -> Iterator[str]:
    with run_in_netns(netns):
        yield netns


@pytest.fixture
def tcp_pairs(in_netns: str) -> Iterator[Callable[[], Pair]]:
    made: list[Pair] = []

    def make() -> Pair:
        pair = socket_pair(Kind.TCP4)
        made.append(pair)
        return pair

    yield make
    for pair in made:
        pair.close()


@dataclass
class Progs:
    obj: BpfObject

    @property
    def sock_map(self) -> Map:
        return self.obj.map("sock_map")

    def prog(self, name: str) -> Program:
        return self.obj.program(name)

    def configure(self, *, parse_len: int = 0, action: int = ACT_PASS, apply_bytes: int = 0,
                  cork_bytes: int = 0) -> None:
        self.obj.map("prog_cfg").update(
            0, struct.pack("IIII", parse_len, action, apply_bytes, cork_bytes))

    def count(self, idx: int) -> int:
        return self.obj.map("prog_counts").lookup_int(idx)

    def lengths(self) -> list[int]:
        n = min(self.count(LOG_NEXT), 256)
        log = self.obj.map("len_log")
        return [log.lookup_int(i) for i in range(n)]


@pytest.fixture
def progs(bpf_object: Callable[..., BpfObject], in_netns: str) -> Progs:
    p = Progs(bpf_object("sockmap_prog"))
    p.configure()
    return p


class Attached:
    """prog_attach'ed programs, detached at the end (closing the object would too)."""

    def __init__(self) -> None:
        self.items: list[tuple[Program, int, int]] = []

    def attach(self, prog: Program, smap: Map, attach_type: int) -> None:
        lb.prog_attach(prog, smap.fd, attach_type)
        self.items.append((prog, smap.fd, attach_type))

    def detach_all(self) -> None:
        while self.items:
            prog, fd, attach_type = self.items.pop()
            try:
                lb.prog_detach(prog, fd, attach_type)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise


@pytest.fixture
def attached() -> Iterator[Attached]:
    a = Attached()
    yield a
    a.detach_all()


# --------------------------------------------------------------------------- map semantics

MAP_TYPES = {"sockmap": lb.MapType.SOCKMAP, "sockhash": lb.MapType.SOCKHASH}
#: BPF_MAP_DELETE_ELEM of an absent entry: sockmap slot EINVAL, sockhash key ENOENT
EMPTY_DELETE = {lb.MapType.SOCKMAP: errno.EINVAL, lb.MapType.SOCKHASH: errno.ENOENT}


def _map_params() -> list[object]:
    return [pytest.param(t, id=name, marks=pytest.mark.requires(name))
            for name, t in MAP_TYPES.items()]


@pytest.mark.parametrize("map_type", _map_params())
def test_insert_lookup_delete(tcp_pairs: Callable[[], Pair], map_type: lb.MapType) -> None:
    p1, p2 = tcp_pairs(), tcp_pairs()
    with lb.create_map(map_type, 4, 8, 4) as smap:
        smap.update(0, p1.a.fileno(), lb.UpdateFlags.NOEXIST)
        assert smap.lookup_int(0) == cookie(p1.a), "lookup must return the socket cookie"
        _expect_errno(errno.EEXIST, lambda: smap.update(0, p2.a.fileno(),
                                                        lb.UpdateFlags.NOEXIST),
                      "BPF_NOEXIST on an occupied key")
        _expect_errno(errno.ENOENT, lambda: smap.update(1, p2.a.fileno(),
                                                        lb.UpdateFlags.EXIST),
                      "BPF_EXIST on an empty key")
        # the same socket may sit under two keys
        smap.update(1, p1.a.fileno())
        assert smap.lookup_int(1) == cookie(p1.a)
        smap.update(1, p2.b.fileno(), lb.UpdateFlags.EXIST)
        assert smap.lookup_int(1) == cookie(p2.b), "BPF_EXIST must replace the socket"
        smap.delete(0)
        assert smap.lookup(0) is None
        # __sock_map_delete(): an empty sockmap slot is EINVAL; a sockhash key is ENOENT
        _expect_errno(EMPTY_DELETE[map_type], lambda: smap.delete(0),
                      "delete of a deleted key")
        assert smap.lookup_int(1) == cookie(p2.b)
        if map_type == lb.MapType.SOCKHASH:
            assert list(smap.keys()) == [struct.pack("I", 1)], "sockhash keys after delete"


@pytest.mark.requires("sockmap")
def test_sockmap_key_range_and_value_size(tcp_pairs: Callable[[], Pair]) -> None:
    pair = tcp_pairs()
    with lb.create_map(lb.MapType.SOCKMAP, 4, 8, 4) as smap:
        _expect_errno(errno.E2BIG, lambda: smap.update(4, pair.a.fileno()),
                      "sockmap key == max_entries")
    with lb.create_map(lb.MapType.SOCKMAP, 4, 4, 4) as small:
        small.update(0, pair.a.fileno())  # a 4-byte value is an fd too
        _expect_errno(errno.ENOSPC, lambda: small.lookup(0),
                      "user-space lookup with value_size 4 (no room for the cookie)")
        small.delete(0)
        _expect_errno(errno.EINVAL, lambda: small.delete(0), "delete of an empty slot")


def _unconnected_tcp() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def _bound_tcp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s


def _unix_listener() -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(f"\0kmx-sockmap-{os.getpid()}-{time.monotonic_ns()}")
    s.listen(1)
    return s


def _unconnected_unix_stream() -> socket.socket:
    return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)


REFUSED: dict[str, tuple[Callable[[], socket.socket], int]] = {
    "tcp_unconnected": (_unconnected_tcp, errno.EOPNOTSUPP),
    "tcp_bound_not_listening": (_bound_tcp, errno.EOPNOTSUPP),
    "unix_stream_unconnected": (_unconnected_unix_stream, errno.EOPNOTSUPP),
    "unix_stream_listening": (_unix_listener, errno.EOPNOTSUPP),
}


@pytest.mark.parametrize("map_type", _map_params())
@pytest.mark.parametrize("what", list(REFUSED))
def test_wrong_state_refused(in_netns: str, map_type: lb.MapType, what: str) -> None:
    make, err = REFUSED[what]
    with make() as sock, lb.create_map(map_type, 4, 8, 4) as smap:
        _expect_errno(err, lambda: smap.update(0, sock.fileno()), f"insert {what}")
        assert smap.lookup(0) is None


@pytest.mark.parametrize("map_type", _map_params())
def test_not_a_socket_refused(in_netns: str, map_type: lb.MapType) -> None:
    r, w = os.pipe()
    try:
        with lb.create_map(map_type, 4, 8, 4) as smap:
            _expect_errno(errno.ENOTSOCK, lambda: smap.update(0, r), "insert a pipe fd")
            _expect_errno(errno.EBADF, lambda: smap.update(0, 0x7FFFFFF0), "insert a bad fd")
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("map_type", _map_params())
def test_listening_tcp_allowed(in_netns: str, map_type: lb.MapType) -> None:
    with socket.socket() as listener, lb.create_map(map_type, 4, 8, 4) as smap:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        smap.update(0, listener.fileno())
        assert smap.lookup_int(0) == cookie(listener)


@pytest.mark.parametrize("map_type", _map_params())
def test_removed_on_close(tcp_pairs: Callable[[], Pair], map_type: lb.MapType) -> None:
    pair = tcp_pairs()
    keep = tcp_pairs()
    with lb.create_map(map_type, 4, 8, 4) as smap:
        smap.update(0, pair.a.fileno())
        smap.update(1, keep.a.fileno())
        assert smap.lookup_int(0) == cookie(pair.a)
        pair.a.close()
        # sock_map_close() unlinks the socket from every map it is in
        wait_until(lambda: smap.lookup(0) is None, timeout=5, what="entry gone after close")
        assert smap.lookup_int(1) == cookie(keep.a), "the other entry must stay"
        _expect_errno(EMPTY_DELETE[map_type], lambda: smap.delete(0), "delete after close")


@pytest.mark.requires("sockhash")
def test_sockhash_keys(tcp_pairs: Callable[[], Pair]) -> None:
    pairs = [tcp_pairs() for _ in range(5)]

    def key(i: int) -> bytes:
        return struct.pack("IHHI", 0x7F000001, 1000 + i, socket.AF_INET, 0xC0FFEE00 + i)

    with lb.create_map(lb.MapType.SOCKHASH, 12, 8, 4) as smap:
        for i in range(4):
            smap.update(key(i), pairs[i].a.fileno(), lb.UpdateFlags.NOEXIST)
        assert set(smap.keys()) == {key(i) for i in range(4)}
        for i in range(4):
            assert smap.lookup_int(key(i)) == cookie(pairs[i].a)
        _expect_errno(errno.E2BIG, lambda: smap.update(key(4), pairs[4].a.fileno()),
                      "insert into a full sockhash")
        _expect_errno(errno.ENOENT, lambda: smap.delete(key(9)), "delete an absent key")
        smap.update(key(2), pairs[4].a.fileno(), lb.UpdateFlags.EXIST)
        assert smap.lookup_int(key(2)) == cookie(pairs[4].a)
        smap.delete(key(0))
        assert smap.lookup(key(0)) is None
        smap.update(key(4), pairs[0].b.fileno(), lb.UpdateFlags.NOEXIST)
        assert set(smap.keys()) == {key(1), key(2), key(3), key(4)}


# --------------------------------------------------------------------------- programs


@pytest.mark.requires("sockmap", "sk_skb")
@pytest.mark.parametrize("first", ["stream_verdict", "skb_verdict"])
def test_verdict_conflict_ebusy(progs: Progs, attached: Attached, first: str) -> None:
    types = {"stream_verdict": (progs.prog("prog_stream_verdict"),
                                lb.BPF_SK_SKB_STREAM_VERDICT),
             "skb_verdict": (progs.prog("prog_skb_verdict"), lb.BPF_SK_SKB_VERDICT)}
    second = "skb_verdict" if first == "stream_verdict" else "stream_verdict"
    attached.attach(types[first][0], progs.sock_map, types[first][1])
    _expect_errno(errno.EBUSY,
                  lambda: lb.prog_attach(types[second][0], progs.sock_map.fd, types[second][1]),
                  f"attach {second} while {first} is attached")
    # replacing a program of the same attach type is allowed
    if first == "stream_verdict":
        attached.attach(progs.prog("prog_stream_verdict2"), progs.sock_map,
                        lb.BPF_SK_SKB_STREAM_VERDICT)
        _expect_errno(errno.ENOENT, lambda: lb.prog_detach(
            progs.prog("prog_stream_verdict"), progs.sock_map.fd, lb.BPF_SK_SKB_STREAM_VERDICT),
            "detach the replaced program")
    attached.detach_all()
    attached.attach(types[second][0], progs.sock_map, types[second][1])


@pytest.mark.requires("sockmap", "sk_skb")
def test_detach_not_attached(progs: Progs) -> None:
    _expect_errno(errno.ENOENT, lambda: lb.prog_detach(
        progs.prog("prog_stream_verdict"), progs.sock_map.fd, lb.BPF_SK_SKB_STREAM_VERDICT),
        "detach a program that was never attached")


def _pass_through(progs: Progs, pair: Pair, data: bytes) -> None:
    """Insert pair.b, send `data` from pair.a, expect exactly `data` at pair.b."""
    send_all(pair.a, data, timeout=TIMEOUT)
    got = recv_exact(pair.b, len(data), timeout=TIMEOUT)
    assert got == data, first_difference(data, got)


@pytest.mark.requires("sockmap", "sk_skb")
def test_sockmap_link(progs: Progs, tcp_pairs: Callable[[], Pair],
                      expect: KernelExpectations) -> None:
    """BPF_LINK_CREATE on a sockmap (6.10+): tried, then link semantics. A refusal is a
    failure where the kernel should have sockmap links, a skip with the errno elsewhere."""
    smap = progs.sock_map
    try:
        link = lb.link_create(progs.prog("prog_stream_verdict"), smap.fd,
                              lb.BPF_SK_SKB_STREAM_VERDICT)
    except OSError as exc:
        expect.refused("sockmap_link", f"BPF_LINK_CREATE(sockmap, BPF_SK_SKB_STREAM_VERDICT) "
                                       f"-> {lb.errno_name(exc.errno or 0)}")
    with link:
        info = link.info()
        assert info.type == lb.LinkType.SOCKMAP
        assert info.prog_id == progs.prog("prog_stream_verdict").id
        _expect_errno(errno.EBUSY, lambda: lb.prog_attach(
            progs.prog("prog_stream_verdict2"), smap.fd, lb.BPF_SK_SKB_STREAM_VERDICT),
            "prog_attach over a sockmap link")
        _expect_errno(errno.EBUSY, lambda: lb.link_create(
            progs.prog("prog_stream_verdict2"), smap.fd, lb.BPF_SK_SKB_STREAM_VERDICT),
            "a second link of the same attach type")
        _expect_errno(errno.EBUSY, lambda: lb.link_create(
            progs.prog("prog_skb_verdict"), smap.fd, lb.BPF_SK_SKB_VERDICT),
            "an skb_verdict link beside a stream_verdict link")
        pair = tcp_pairs()
        smap.update(0, pair.b.fileno())
        _pass_through(progs, pair, payload(3000, 1))
        assert progs.count(SKB_CALLS) >= 1, "the link's program did not run"
        link.update(progs.prog("prog_stream_verdict2"))
        assert link.info().prog_id == progs.prog("prog_stream_verdict2").id
        link.detach()
        # detached: the attach point is free for prog_attach again
        lb.prog_attach(progs.prog("prog_stream_verdict"), smap.fd,
                       lb.BPF_SK_SKB_STREAM_VERDICT)
        lb.prog_detach(progs.prog("prog_stream_verdict"), smap.fd,
                       lb.BPF_SK_SKB_STREAM_VERDICT)
    print(f"VERDICT sockmap link: created (id {info.id}), EBUSY against prog_attach and a "
          "second link, update and detach work")


@pytest.mark.requires("sockmap", "sk_skb")
def test_stream_parser_frames_records(progs: Progs, attached: Attached,
                                      tcp_pairs: Callable[[], Pair]) -> None:
    """The parser returns 100: a record that arrives in pieces is held until it is whole
    (a return value above skb->len means "wait for more"), then the verdict runs once per
    record and the reader gets exactly the records; two records in one send are two
    verdicts. (The pattern of selftests prog_tests/sockmap_strp.c, partial read.)"""
    progs.configure(parse_len=100, action=ACT_PASS)
    attached.attach(progs.prog("prog_parser"), progs.sock_map, lb.BPF_SK_SKB_STREAM_PARSER)
    attached.attach(progs.prog("prog_stream_verdict"), progs.sock_map,
                    lb.BPF_SK_SKB_STREAM_VERDICT)
    pair = tcp_pairs()
    pair.a.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    progs.sock_map.update(0, pair.b.fileno())
    data = payload(400, 7)
    for n, (first, second) in enumerate(((30, 70), (60, 40))):
        record = data[n * 100:(n + 1) * 100]
        send_all(pair.a, record[:first], timeout=TIMEOUT)
        assert_nothing_arrives(pair.b, grace=GRACE, what=f"record {n}: {first} of 100 bytes")
        send_all(pair.a, record[first:first + second], timeout=TIMEOUT)
        got = recv_exact(pair.b, 100, timeout=TIMEOUT)
        assert got == record, first_difference(record, got)
    send_all(pair.a, data[200:], timeout=TIMEOUT)  # two whole records in one send
    got = recv_exact(pair.b, 200, timeout=TIMEOUT)
    assert got == data[200:], first_difference(data[200:], got)
    assert_nothing_arrives(pair.b, grace=GRACE, what="after the last record")
    assert progs.count(SKB_CALLS) == 4, f"verdict ran {progs.count(SKB_CALLS)}x for 4 " \
        f"records (skb lengths {progs.lengths()})"


@pytest.mark.requires("sockmap", "sk_skb")
@pytest.mark.parametrize("attach", ["stream_verdict", "skb_verdict"])
@pytest.mark.parametrize("action", ["pass", "drop"])
def test_skb_verdict_pass_drop(progs: Progs, attached: Attached,
                               tcp_pairs: Callable[[], Pair], attach: str, action: str) -> None:
    progs.configure(action=ACT_PASS if action == "pass" else ACT_DROP)
    if attach == "stream_verdict":
        attached.attach(progs.prog("prog_stream_verdict"), progs.sock_map,
                        lb.BPF_SK_SKB_STREAM_VERDICT)
    else:
        attached.attach(progs.prog("prog_skb_verdict"), progs.sock_map, lb.BPF_SK_SKB_VERDICT)
    pair = tcp_pairs()
    progs.sock_map.update(0, pair.b.fileno())
    data = payload(20000, 3)
    if action == "pass":
        _pass_through(progs, pair, data)
    else:
        send_all(pair.a, data, timeout=TIMEOUT)
        wait_until(lambda: sum(progs.lengths()) >= len(data), timeout=TIMEOUT,
                   what="verdicts for every byte")
        assert_nothing_arrives(pair.b, grace=GRACE, what="receiver of SK_DROP")
    assert sum(progs.lengths()) == len(data), f"verdict lengths {progs.lengths()}"


@pytest.mark.requires("sockmap", "sk_skb")
@pytest.mark.parametrize("path", ["pass", "redirect_ingress"])
def test_eof_through_verdict(progs: Progs, attached: Attached,
                             tcp_pairs: Callable[[], Pair], path: str) -> None:
    """FIN after data, with an skb verdict (BPF_SK_SKB_VERDICT) on the receiving socket:
    the judged socket reads the data (pass) or the redirect target does (redirect), and
    the FIN comes through the same way: the reader gets the data and then EOF (tcp_read_skb
    hands the FIN skb to the verdict like any other, so a redirect carries it to the
    target's queue as an empty read), and the judged socket itself reads EOF."""
    progs.configure(action=ACT_PASS if path == "pass" else ACT_REDIRECT_INGRESS)
    attached.attach(progs.prog("prog_skb_verdict"), progs.sock_map, lb.BPF_SK_SKB_VERDICT)
    src, dst = tcp_pairs(), tcp_pairs()
    progs.sock_map.update(0, src.b.fileno())
    progs.sock_map.update(1, dst.a.fileno())
    data = payload(50000, 5)
    send_all(src.a, data, timeout=TIMEOUT)
    src.a.shutdown(socket.SHUT_WR)
    reader = src.b if path == "pass" else dst.a
    got = recv_exact(reader, len(data), timeout=TIMEOUT)
    assert got == data, first_difference(data, got)
    try:
        wait_eof(reader, timeout=TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"{path}: the FIN did not reach the reader") from None
    if path == "redirect_ingress":
        wait_eof(src.b, timeout=TIMEOUT)
    assert sum(progs.lengths()) == len(data), f"verdict lengths {progs.lengths()}"


def _queued(reader: socket.socket, limit: int) -> int:
    """Bytes recv() would return now, up to `limit` (MSG_PEEK: nothing is consumed)."""
    try:
        return len(reader.recv(limit, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return 0


def _wait_fionread(reader: socket.socket, data: bytes, expect: KernelExpectations, *,
                   redirected: bool) -> None:
    """Once all of `data` is queued on `reader` (a peek returns it), FIONREAD must count it:
    the ioctl reports what is queued at the moment it is asked.

    Older kernels (seen on Debian 6.1) do not count bytes a verdict redirected into the
    psock ingress queue: FIONREAD says 0 while recv() returns them. After checking the
    bytes really are there, that is the kernel's refusal of `sockmap_fionread`: a failure
    where the feature table expects the count, a skip with the evidence where it does not.
    Anything else (a wrong count, missing bytes, a zero on the plain pass path) fails."""
    wait_until(lambda: _queued(reader, len(data) + 1) >= len(data), timeout=TIMEOUT,
               what=f"{len(data)} bytes queued on the reader")
    said = fionread(reader)
    if said == len(data):
        return
    if redirected and said == 0:
        got = recv_exact(reader, len(data), timeout=TIMEOUT)
        assert got == data, first_difference(data, got)
        expect.refused("sockmap_fionread", f"FIONREAD is 0 on a socket holding "
                                           f"{len(data)} redirected bytes (recv() "
                                           "returned them all)")
    raise AssertionError(f"FIONREAD says {said}, {len(data)} bytes were queued by the "
                         "verdict")


@pytest.mark.requires("sockmap", "sk_skb")
@pytest.mark.parametrize("path", ["pass", "redirect_ingress"])
def test_fionread(progs: Progs, attached: Attached, tcp_pairs: Callable[[], Pair],
                  path: str, expect: KernelExpectations) -> None:
    """FIONREAD counts bytes queued by the verdict (psock ingress queue) on the reader."""
    progs.configure(action=ACT_PASS if path == "pass" else ACT_REDIRECT_INGRESS)
    attached.attach(progs.prog("prog_skb_verdict"), progs.sock_map, lb.BPF_SK_SKB_VERDICT)
    src, dst = tcp_pairs(), tcp_pairs()
    progs.sock_map.update(0, src.b.fileno())
    progs.sock_map.update(1, dst.a.fileno())
    reader = src.b if path == "pass" else dst.a
    data = payload(4096 * 3 + 11, 8)
    send_all(src.a, data, timeout=TIMEOUT)
    _wait_fionread(reader, data, expect, redirected=path != "pass")
    got = recv_exact(reader, 5000, timeout=TIMEOUT)
    assert got == data[:5000]
    assert fionread(reader) == len(data) - 5000
    got = recv_exact(reader, len(data) - 5000, timeout=TIMEOUT)
    assert got == data[5000:]
    assert fionread(reader) == 0


@pytest.mark.requires("sockmap", "sk_msg")
def test_msg_apply_bytes(progs: Progs, attached: Attached,
                         tcp_pairs: Callable[[], Pair]) -> None:
    """bpf_msg_apply_bytes(100): the verdict holds for 100 bytes, then the program runs
    again: 10 runs for one 1000-byte send, all bytes delivered in order."""
    progs.configure(action=ACT_PASS, apply_bytes=100)
    attached.attach(progs.prog("prog_msg"), progs.sock_map, lb.BPF_SK_MSG_VERDICT)
    pair = tcp_pairs()
    progs.sock_map.update(0, pair.a.fileno())
    data = payload(1000, 11)
    send_all(pair.a, data, timeout=TIMEOUT)
    got = recv_exact(pair.b, len(data), timeout=TIMEOUT)
    assert got == data, first_difference(data, got)
    lengths = progs.lengths()
    assert progs.count(MSG_CALLS) == 10, f"sk_msg ran {progs.count(MSG_CALLS)}x: {lengths}"
    assert lengths == list(range(1000, 0, -100)), f"msg sizes seen {lengths}"


@pytest.mark.requires("sockmap", "sk_msg")
def test_msg_cork_bytes(progs: Progs, attached: Attached,
                        tcp_pairs: Callable[[], Pair]) -> None:
    """bpf_msg_cork_bytes(500): nothing leaves until 500 bytes are queued, then all 500 at
    once. The program runs on the first 100 bytes (and corks), not for the sends that fill
    the cork, and once more on the complete 500-byte message before it is sent."""
    progs.configure(action=ACT_PASS, cork_bytes=500)
    attached.attach(progs.prog("prog_msg"), progs.sock_map, lb.BPF_SK_MSG_VERDICT)
    pair = tcp_pairs()
    progs.sock_map.update(0, pair.a.fileno())
    data = payload(500, 12)
    for i in range(4):
        send_all(pair.a, data[i * 100:(i + 1) * 100], timeout=TIMEOUT)
    assert_nothing_arrives(pair.b, grace=GRACE, what="peer while 400 of 500 bytes are corked")
    send_all(pair.a, data[400:], timeout=TIMEOUT)
    got = recv_exact(pair.b, 500, timeout=TIMEOUT)
    assert got == data, first_difference(data, got)
    assert progs.lengths() == [100, 500], f"sk_msg ran {progs.count(MSG_CALLS)}x on " \
        f"{progs.lengths()} bytes"


@pytest.mark.requires("sockmap", "sk_msg")
def test_msg_drop_eacces(progs: Progs, attached: Attached,
                         tcp_pairs: Callable[[], Pair]) -> None:
    progs.configure(action=ACT_DROP)
    attached.attach(progs.prog("prog_msg"), progs.sock_map, lb.BPF_SK_MSG_VERDICT)
    pair = tcp_pairs()
    progs.sock_map.update(0, pair.a.fileno())
    _expect_errno(errno.EACCES, lambda: send_all(pair.a, b"dropped", timeout=TIMEOUT),
                  "send() through an SK_DROP sk_msg verdict")
    assert_nothing_arrives(pair.b, grace=GRACE, what="peer of a dropped message")
    assert progs.count(MSG_CALLS) == 1


def _msg_redirected_to_ingress(progs: Progs, attached: Attached,
                               tcp_pairs: Callable[[], Pair]) -> tuple[Pair, Pair, bytes]:
    """An sk_msg program redirecting src.a's sends to dst.a's ingress, and 10000 bytes
    sent: (src, dst, the bytes)."""
    progs.configure(action=ACT_REDIRECT_INGRESS)
    attached.attach(progs.prog("prog_msg"), progs.sock_map, lb.BPF_SK_MSG_VERDICT)
    src, dst = tcp_pairs(), tcp_pairs()
    progs.sock_map.update(0, src.a.fileno())
    progs.sock_map.update(1, dst.a.fileno())
    data = payload(10000, 13)
    send_all(src.a, data, timeout=TIMEOUT)
    return src, dst, data


@pytest.mark.requires("sockmap", "sk_msg")
def test_msg_redirect_ingress_closes(progs: Progs, attached: Attached,
                                    tcp_pairs: Callable[[], Pair]) -> None:
    """sk_msg to the ingress of another socket: the target reads the bytes; closing the
    sender's peer, then the sender itself, ends neither the target's stream nor puts
    anything more on it (its connection is its own)."""
    src, dst, data = _msg_redirected_to_ingress(progs, attached, tcp_pairs)
    got = recv_exact(dst.a, len(data), timeout=TIMEOUT)
    assert got == data, first_difference(data, got)
    assert_nothing_arrives(src.b, grace=GRACE, what="the sender's own peer")
    src.b.close()
    assert_nothing_arrives(dst.a, grace=GRACE, what="target after the sender's peer closed")
    src.a.close()
    assert_nothing_arrives(dst.a, grace=GRACE, what="target after the sender closed")


@pytest.mark.requires("sockmap", "sk_msg")
def test_msg_redirect_ingress_fionread(progs: Progs, attached: Attached,
                                      tcp_pairs: Callable[[], Pair],
                                      expect: KernelExpectations) -> None:
    """sk_msg to the ingress of another socket: FIONREAD on the target counts the bytes."""
    _src, dst, data = _msg_redirected_to_ingress(progs, attached, tcp_pairs)
    _wait_fionread(dst.a, data, expect, redirected=True)
    got = recv_exact(dst.a, len(data), timeout=TIMEOUT)
    assert got == data, first_difference(data, got)
