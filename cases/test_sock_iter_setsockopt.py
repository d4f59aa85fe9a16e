"""bpf_setsockopt from socket iterators: TCP congestion control from iter/tcp (v5.15) and
SO_SNDBUF from iter/unix (v5.18), checked from user space with getsockopt().

Modelled on tools/testing/selftests/bpf/prog_tests/bpf_iter_setsockopt.c (switch the
congestion control of the listener and both ends of its connections) and
bpf_iter_setsockopt_unix.c (SO_SNDBUF set and read back in the iterator). The programs are
in bpf/sock_iter_setsockopt.bpf.c; only matching sockets may change (a port for TCP, a
cookie for AF_UNIX), everything else keeps its setting. A kernel whose verifier refuses
the helper in that iterator is a refusal of `bpf_iter_setsockopt` /
`bpf_iter_setsockopt_unix` (a failure where the kernel should have it, a skip elsewhere).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator

import pytest

from harness.guest import bpf as lb
from harness.guest.fixtures import KernelExpectations
from harness.guest.net.sockets import cookie

FROM_CC = "reno"  # always built in
CC_LEN = 16
TIMEOUT = 10.0
#: SO_SNDBUF values the iterator sets, per socket; the kernel stores twice the value
SNDBUFS = (8192, 65536)


def congestion(sock: socket.socket) -> str:
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, CC_LEN)
    return raw.split(b"\0", 1)[0].decode()


def target_cc() -> str:
    """An available congestion control other than reno (cubic when there is one)."""
    with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as f:
        names = [n for n in f.read().split() if n != FROM_CC]
    if not names:
        pytest.skip(f"no congestion control besides {FROM_CC} is available to switch to")
    return "cubic" if "cubic" in names else names[0]


@contextlib.contextmanager
def iterator(prog: str, feature: str, expect: KernelExpectations
             ) -> Iterator[tuple[lb.BpfObject, lb.Link]]:
    """bpf/sock_iter_setsockopt.bpf.c with only `prog` loaded and attached; the kernel
    refusing the program (its use of bpf_setsockopt) is a refusal of `feature`."""
    try:
        obj = lb.BpfObject(lb.object_path("sock_iter_setsockopt"), autoload=[prog])
    except OSError as exc:
        expect.refused(feature, f"loading {prog}: {exc}")
    with obj, obj.program(prog).attach_iter() as link:
        yield obj, link


def connections(listener: socket.socket, n: int, stack: contextlib.ExitStack
                ) -> list[socket.socket]:
    """`n` connections to `listener`: [client, accepted, client, accepted, ...]."""
    out = []
    listener.settimeout(TIMEOUT)
    for _ in range(n):
        client = stack.enter_context(socket.socket(listener.family, socket.SOCK_STREAM))
        client.settimeout(TIMEOUT)
        client.connect(listener.getsockname())
        out += [client, stack.enter_context(listener.accept()[0])]
    return out


@pytest.mark.requires("bpf_iter_tcp")
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["tcp4", "tcp6"])
def test_tcp_congestion_control(family: int, expect: KernelExpectations) -> None:
    """An iter/tcp program switches the listener on one port and both ends of its three
    connections from reno to another congestion control with bpf_setsockopt
    (TCP_CONGESTION); getsockopt() sees the new one on exactly those seven sockets, while a
    listener on another port and its connection keep reno."""
    to_cc = target_cc()
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with contextlib.ExitStack() as stack:
        groups: list[list[socket.socket]] = []
        for _ in range(2):
            listener = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, FROM_CC.encode())
            listener.bind((host, 0))
            listener.listen(8)
            groups.append([listener, *connections(listener, 3 if not groups else 1, stack)])
        for sock in groups[0] + groups[1]:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, FROM_CC.encode())
        port = groups[0][0].getsockname()[1]
        with iterator("set_tcp_cc", "bpf_iter_setsockopt", expect) as (obj, link):
            obj.map("conf").update(0, struct.pack(f"{CC_LEN}s{CC_LEN}sI", FROM_CC.encode(),
                                                  to_cc.encode(), port))
            link.read_iter()
            stats = [obj.map("stats").lookup_int(i) for i in range(3)]
        got = [[congestion(s) for s in group] for group in groups]
        assert got == [[to_cc] * 7, [FROM_CC] * 3], (
            f"congestion control per socket (listener first) on port {port} and the "
            f"bystander port: {got}")
        assert stats == [7, 7, 0], f"iterator counted matched/changed/errors {stats}"


@pytest.mark.requires("bpf_iter_unix")
def test_unix_sndbuf(expect: KernelExpectations) -> None:
    """An iter/unix program sets SO_SNDBUF on two AF_UNIX sockets chosen by cookie and
    reads it back with bpf_getsockopt: both see twice the value set (the kernel's
    doubling), getsockopt() from user space agrees, and a third socket keeps its size."""
    with contextlib.ExitStack() as stack:
        a, b = (stack.enter_context(s) for s in socket.socketpair())
        c = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
        before = c.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        with iterator("set_unix_sndbuf", "bpf_iter_setsockopt_unix", expect) as (obj, link):
            sndbuf = obj.map("sndbuf")
            for sock, size in zip((a, b), SNDBUFS, strict=True):
                sndbuf.update(struct.pack("<Q", cookie(sock)), struct.pack("<i", size))
            link.read_iter()
            read_back = [sndbuf.lookup_int(struct.pack("<Q", cookie(s)), signed=True)
                         for s in (a, b)]
        user = [s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) for s in (a, b)]
        want = [2 * size for size in SNDBUFS]
        assert read_back == want, f"bpf_getsockopt after bpf_setsockopt read {read_back}"
        assert user == want, f"getsockopt(SO_SNDBUF) from user space reads {user}"
        assert c.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == before
