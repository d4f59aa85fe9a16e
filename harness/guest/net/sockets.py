"""Connected socket pairs of every kind the sockmap suite redirects between, and exact-bytes
I/O with deadlines. Runs in the guest (plain Python sockets, no BPF).

Kinds (`KINDS`): tcp4, tcp6, udp4, udp6, unix_stream, unix_dgram, vsock_stream and
vsock_seqpacket. A pair is two sockets connected to each other (``a`` sends to ``b`` and
back), built like the kernel selftests' ``create_pair()`` (tools/testing/selftests/bpf/
prog_tests/sockmap_helpers.h): a listener on loopback + connect + accept for stream kinds
(TCP, vsock over the loopback transport), two bound loopback sockets connected to each
other for UDP, ``socketpair()`` for AF_UNIX.

vsock pairs need the vsock loopback transport (``vsock_loopback``, CID 1 =
VMADDR_CID_LOCAL); `vsock_unavailable()` says why a kernel has none (None if it has one).

I/O helpers raise `TimeoutError` at their deadline and never return short:
`send_all` (blocking send of everything, the socket's own errors propagate as OSError),
`recv_exact` (exactly n bytes, concatenating datagrams/segments), `recv_available`
(whatever is queued now, without blocking), `assert_nothing_arrives`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import os
import select
import socket
import struct
import termios
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

from .. import kmod
from ..uapi import SO_COOKIE

VMADDR_CID_LOCAL = 1
VMADDR_PORT_ANY = 0xFFFFFFFF
#: how long a pair's connect/accept may take (TCG is slow, but loopback is instant)
CONNECT_TIMEOUT = 10.0


class Kind(StrEnum):
    """A socket kind; the value is the id used in test names."""

    TCP4 = "tcp4"
    TCP6 = "tcp6"
    UDP4 = "udp4"
    UDP6 = "udp6"
    UNIX_STREAM = "unix_stream"
    UNIX_DGRAM = "unix_dgram"
    VSOCK_STREAM = "vsock_stream"
    VSOCK_SEQPACKET = "vsock_seqpacket"

    @property
    def family(self) -> int:
        return _FAMILY[self]

    @property
    def sotype(self) -> int:
        return _SOTYPE[self]

    @property
    def is_tcp(self) -> bool:
        return self in (Kind.TCP4, Kind.TCP6)

    @property
    def is_udp(self) -> bool:
        return self in (Kind.UDP4, Kind.UDP6)

    @property
    def is_unix(self) -> bool:
        return self in (Kind.UNIX_STREAM, Kind.UNIX_DGRAM)

    @property
    def is_vsock(self) -> bool:
        return self in (Kind.VSOCK_STREAM, Kind.VSOCK_SEQPACKET)

    @property
    def is_stream(self) -> bool:
        """Byte stream without message boundaries (TCP, unix stream, vsock stream)."""
        return self.sotype == socket.SOCK_STREAM

    @property
    def max_message(self) -> int:
        """Largest single send() the kind takes on loopback without EMSGSIZE (bytes)."""
        if self is Kind.UDP4:
            return 65507  # 65535 - 20 (IPv4) - 8 (UDP)
        if self is Kind.UDP6:
            return 65527  # 65535 - 8 (UDP); the IPv6 header is outside the payload length
        if self is Kind.UNIX_DGRAM:
            return 65536  # far below sk_sndbuf - 32, which is the real limit
        if self is Kind.VSOCK_SEQPACKET:
            return 65536
        return 1 << 30


KINDS: tuple[Kind, ...] = tuple(Kind)

_FAMILY: dict[Kind, int] = {
    Kind.TCP4: socket.AF_INET, Kind.UDP4: socket.AF_INET,
    Kind.TCP6: socket.AF_INET6, Kind.UDP6: socket.AF_INET6,
    Kind.UNIX_STREAM: socket.AF_UNIX, Kind.UNIX_DGRAM: socket.AF_UNIX,
    Kind.VSOCK_STREAM: socket.AF_VSOCK, Kind.VSOCK_SEQPACKET: socket.AF_VSOCK,
}
_SOTYPE: dict[Kind, int] = {
    Kind.TCP4: socket.SOCK_STREAM, Kind.TCP6: socket.SOCK_STREAM,
    Kind.UDP4: socket.SOCK_DGRAM, Kind.UDP6: socket.SOCK_DGRAM,
    Kind.UNIX_STREAM: socket.SOCK_STREAM, Kind.UNIX_DGRAM: socket.SOCK_DGRAM,
    Kind.VSOCK_STREAM: socket.SOCK_STREAM, Kind.VSOCK_SEQPACKET: socket.SOCK_SEQPACKET,
}


@dataclass
class Pair:
    """Two sockets connected to each other: what `a` sends, `b` receives, and back."""

    kind: Kind
    a: socket.socket
    b: socket.socket

    def close(self) -> None:
        for sock in (self.a, self.b):
            sock.close()

    def __enter__(self) -> Pair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _loopback(kind: Kind) -> tuple[str, int] | tuple[str, int, int, int] | tuple[int, int]:
    if kind.is_vsock:
        return (VMADDR_CID_LOCAL, VMADDR_PORT_ANY)
    if kind.family == socket.AF_INET6:
        return ("::1", 0, 0, 0)
    return ("127.0.0.1", 0)


def socket_pair(kind: Kind) -> Pair:
    """A connected pair of `kind` on loopback (blocking sockets)."""
    if kind.is_unix:
        a, b = socket.socketpair(socket.AF_UNIX, kind.sotype)
        return Pair(kind, a, b)
    if kind.is_udp:
        a = socket.socket(kind.family, socket.SOCK_DGRAM)
        b = socket.socket(kind.family, socket.SOCK_DGRAM)
        try:
            a.bind(_loopback(kind))
            b.bind(_loopback(kind))
            a.connect(b.getsockname())
            b.connect(a.getsockname())
        except BaseException:
            a.close()
            b.close()
            raise
        return Pair(kind, a, b)
    # connection-oriented: TCP, vsock stream/seqpacket
    with socket.socket(kind.family, kind.sotype) as listener:
        listener.bind(_loopback(kind))
        listener.listen(1)
        client = socket.socket(kind.family, kind.sotype)
        try:
            client.settimeout(CONNECT_TIMEOUT)
            client.connect(listener.getsockname())
            listener.settimeout(CONNECT_TIMEOUT)
            server, _ = listener.accept()
        except BaseException:
            client.close()
            raise
    client.settimeout(None)
    server.settimeout(None)
    return Pair(kind, client, server)


@contextlib.contextmanager
def pairs(*kinds: Kind) -> Iterator[list[Pair]]:
    """Context manager: one connected pair per kind (closed at the end)."""
    made: list[Pair] = []
    try:
        for kind in kinds:
            made.append(socket_pair(kind))
        yield made
    finally:
        for pair in made:
            pair.close()


def cookie(sock: socket.socket) -> int:
    """SO_COOKIE: what a sockmap/sockhash lookup from user space returns for `sock`."""
    return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), "little")


def fionread(sock: socket.socket) -> int:
    """ioctl(FIONREAD): bytes the kernel says are ready to read."""
    buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, struct.pack("i", 0))
    return int(struct.unpack("i", buf)[0])


# --------------------------------------------------------------------------- vsock

_vsock_reason: list[str | None] = []
#: where the loaded vsock_loopback module shows
VSOCK_LOOPBACK = "/sys/module/vsock_loopback"


def vsock_unavailable() -> str | None:
    """None if this kernel has vsock loopback (a vsock stream pair on CID 1 works, loading
    the vsock_loopback module if needed), else the evidence why not."""
    if _vsock_reason:
        return _vsock_reason[0]
    reason = _try_vsock()
    if reason is not None:
        kmod.ensure("vsock_loopback", lambda: os.path.isdir(VSOCK_LOOPBACK), wait=0)
        reason = _try_vsock()
    _vsock_reason.append(reason)
    return reason


def _try_vsock() -> str | None:
    try:
        with socket_pair(Kind.VSOCK_STREAM) as pair:
            pair.a.sendall(b"v")
            pair.b.settimeout(5)
            if pair.b.recv(1) != b"v":
                return "vsock loopback pair connected but did not carry a byte"
        return None
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        return (f"vsock loopback (AF_VSOCK, CID {VMADDR_CID_LOCAL}) unusable after modprobe "
                f"vsock_loopback: {name} ({exc.strerror})")


# --------------------------------------------------------------------------- payloads


@functools.lru_cache(maxsize=64)
def payload(size: int, seed: int = 0) -> bytes:
    """`size` bytes nobody would produce by accident (SHA-256 counter stream), distinct per
    seed, so a misplaced, repeated or truncated chunk is caught by a byte comparison."""
    out = bytearray()
    block = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{block}".encode()).digest()
        block += 1
    return bytes(out[:size])


def first_difference(want: bytes, got: bytes) -> str:
    """Where two byte strings part (for assertion messages that stay readable)."""
    for i, (x, y) in enumerate(zip(want, got, strict=False)):
        if x != y:
            return (f"first difference at byte {i}: want {want[i:i + 8].hex()} "
                    f"got {got[i:i + 8].hex()}")
    return f"lengths differ: want {len(want)} bytes, got {len(got)}"


# --------------------------------------------------------------------------- I/O


def _wait(sock: socket.socket, readable: bool, deadline: float, what: str) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(what)
    rlist, wlist = ([sock], []) if readable else ([], [sock])
    r, w, _ = select.select(rlist, wlist, [], left)
    if not r and not w:
        raise TimeoutError(what)


def send_all(sock: socket.socket, data: bytes, *, timeout: float = 10.0) -> None:
    """Send all of `data` as ONE message for datagram kinds, as many send() calls as the
    stream needs otherwise; OSError from the kernel propagates (e.g. EACCES from sk_msg)."""
    deadline = time.monotonic() + timeout
    view = memoryview(data)
    sent = 0
    while sent < len(data) or (not data and sent == 0):
        _wait(sock, False, deadline, f"send of {len(data)} bytes: {sent} sent at deadline")
        n = sock.send(view[sent:], socket.MSG_DONTWAIT)
        if sock.type != socket.SOCK_STREAM and n != len(data):
            raise AssertionError(f"datagram send of {len(data)} bytes sent {n}")
        sent += n
        if not data:
            break


def tcp_connection(stack: contextlib.ExitStack, *, host: str = "127.0.0.1",
                   timeout: float = 10.0) -> tuple[socket.socket, socket.socket, socket.socket]:
    """In the calling thread's namespace: a TCP listener on `host` and both ends of a
    connection to it, (listener, client, accepted server), closed with `stack`."""
    listener = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    listener.bind((host, 0))
    listener.listen(4)
    listener.settimeout(timeout)
    client = stack.enter_context(socket.create_connection(listener.getsockname(),
                                                          timeout=timeout))
    return listener, client, stack.enter_context(listener.accept()[0])


def read_exact(sock: socket.socket, size: int) -> bytes:
    """Exactly `size` bytes of a stream in blocking recv() calls (the socket's own timeout
    applies); ConnectionError at EOF before that. For loops where a poll per read would
    cost too much (benchmarks, echo servers); cases use `recv_exact`."""
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError(f"EOF after {len(buf)} of {size} bytes")
        buf += chunk
    return bytes(buf)


def recv_exact(sock: socket.socket, size: int, *, timeout: float = 10.0,
               chunk: int = 1 << 18) -> bytes:
    """Exactly `size` bytes, concatenated over as many recv() calls as it takes; EOF before
    that is an AssertionError, the deadline a TimeoutError naming what had arrived."""
    deadline = time.monotonic() + timeout
    out = bytearray()
    while len(out) < size:
        try:
            _wait(sock, True, deadline, "")
        except TimeoutError:
            raise TimeoutError(f"recv: {len(out)} of {size} bytes after {timeout:.1f}s") \
                from None
        try:
            # a stream is read no further than wanted; a datagram needs room for all of it
            want = size - len(out)
            n = min(chunk, want) if sock.type == socket.SOCK_STREAM else max(want, 1 << 16)
            data = sock.recv(n, socket.MSG_DONTWAIT)
        except BlockingIOError:
            continue  # woken but nothing queued (e.g. a psock moving data): wait again
        if not data and sock.type == socket.SOCK_STREAM:
            raise AssertionError(f"recv: EOF after {len(out)} of {size} bytes")
        out += data
    if len(out) > size:
        raise AssertionError(f"recv: wanted {size} bytes, got {len(out)} (more than sent)")
    return bytes(out)


def recv_available(sock: socket.socket, *, chunk: int = 1 << 18) -> bytes:
    """Whatever `sock` has queued right now (b"" if nothing), without blocking."""
    out = bytearray()
    while True:
        try:
            data = sock.recv(chunk, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return bytes(out)
        if not data:
            return bytes(out)
        out += data


def assert_nothing_arrives(socks: socket.socket | Mapping[str, socket.socket], *,
                           grace: float = 0.2, what: str = "socket") -> None:
    """Watch `socks` (one socket, or several by name) for `grace` seconds, all of them over
    the same window: data or an EOF (recv() returning 0) on any of them in that time is an
    AssertionError naming it (`what: name: ...`). A wake-up with nothing queued (a psock
    moving data) goes on waiting to the end of the window."""
    named = {"": socks} if isinstance(socks, socket.socket) else dict(socks)
    deadline = time.monotonic() + grace
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select(list(named.values()), [], [], max(left, 0.0))
        for name, sock in named.items():
            if sock in ready:
                _refuse_queued(sock, f"{what}: {name}" if name else what)
        if left <= 0:
            return
        if ready:  # readable with nothing queued: look again shortly, not in a busy loop
            time.sleep(min(0.01, left))


def _refuse_queued(sock: socket.socket, where: str) -> None:
    """An AssertionError if `sock` has data or an EOF queued."""
    try:
        data = sock.recv(1 << 16, socket.MSG_DONTWAIT | socket.MSG_PEEK)
    except BlockingIOError:
        return
    except OSError as exc:
        raise AssertionError(f"{where}: readable with error {exc}") from exc
    if not data and sock.type == socket.SOCK_STREAM:
        raise AssertionError(f"{where}: recv() returned 0 (EOF) though nothing closed it")
    raise AssertionError(f"{where}: {len(data)} unexpected byte(s) arrived: "
                         f"{data[:16].hex()}")


def wait_eof(sock: socket.socket, *, timeout: float = 5.0) -> None:
    """Wait until `sock` reads EOF (recv returns b""); data before it is an AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _wait(sock, True, deadline, "")
        except TimeoutError:
            raise TimeoutError(f"no EOF within {timeout:.1f}s") from None
        try:
            data = sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            continue
        if data:
            raise AssertionError(f"wanted EOF, got {len(data)} byte(s): {data[:16].hex()}")
        return


__all__ = [
    "KINDS", "Kind", "Pair", "assert_nothing_arrives", "cookie", "fionread",
    "first_difference", "pairs", "payload", "recv_available", "recv_exact", "send_all",
    "socket_pair", "vsock_unavailable", "wait_eof",
]
