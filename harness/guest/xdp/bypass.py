"""The VM-bypass data path in user space: an AF_XDP backend that forwards one steered flow
between an XSK and a VM, and a VM side that stands in for QEMU.

    NIC --XDP (steer.py)--> XSK --XskBackend--> unix socket (QEMU -netdev stream framing)
        <--XSK tx ring--        <--                 --TapRelay--> TAP in the "vm" netns

`XskBackend` is what a VM host would run: it owns the XSK's rings (rx frames out to the
stream, stream frames in to the tx ring) and listens on a unix socket, like the far end of
``qemu -netdev stream,server=off,addr.type=unix,addr.path=PATH``. `TapRelay` plays QEMU
with its guest: it connects to that socket and moves frames between it and a TAP device,
so a real network stack (the "vm" namespace) answers. Both run one thread each, never
block (non-blocking sockets, poll with a stop pipe) and keep exact counts; with `record`
they also keep every frame, for byte-for-byte comparison.

TAP: opened (/dev/net/tun, TUNSETIFF IFF_TAP | IFF_NO_PI) inside the target namespace,
not persistent, so closing the fd deletes the device; no IFF_VNET_HDR and no offloads,
so it hands the stack frames as they were on the wire and gets fully checksummed,
unsegmented frames back.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from .. import kmod
from ..net.netns import run_in_netns
from .ring import Desc
from .stream import StreamDecoder, encode_frame
from .xsk import XskSocket

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
#: longest poll(2) sleep of a forwarding loop (the stop pipe wakes it sooner)
POLL_SLICE = 0.05
#: stop reading the XSK while this many bytes wait for the stream socket
MAX_BACKLOG = 4 << 20
#: frames taken from the rx ring per round
RX_BATCH = 64
#: bytes read from a stream socket per call
READ_SIZE = 256 << 10


@dataclass
class Direction:
    """Frames that went one way: count, bytes (`octets`) and, when recording, the frames."""

    frames: int = 0
    octets: int = 0
    record: bool = False
    seen: list[bytes] = field(default_factory=list)

    def add(self, frame: bytes) -> None:
        self.frames += 1
        self.octets += len(frame)
        if self.record:
            self.seen.append(frame)


class _Loop:
    """A forwarding thread with a stop pipe and an error slot."""

    name = "forwarder"

    def __init__(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: what ended the loop early (re-raised by `stop`)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.loop()
        except BaseException as exc:  # handed to the thread that stops us
            self.error = exc

    def loop(self) -> None:
        raise NotImplementedError

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait_events(self, poller: select.poll, timeout: float = POLL_SLICE) -> set[int]:
        """poll(2) for at most `timeout`; the fds with events (the stop pipe drained)."""
        ready = {fd for fd, _ in poller.poll(int(timeout * 1000))}
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 64)
        return ready

    def register_wake(self, poller: select.poll) -> None:
        poller.register(self._wake_r, select.POLLIN)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (bounded join) and re-raise what broke it, if anything."""
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"{self.name}: thread still running {timeout:.0f}s after "
                                   "stop")
            self._thread = None
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1
        self.check()

    def check(self) -> None:
        """Raise now if the loop died."""
        if self.error is not None:
            raise RuntimeError(f"{self.name} failed") from self.error

    def close(self) -> None:
        """Release what the subclass holds (after `stop`)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.stop()
        finally:
            self.close()


class _StreamPeer:
    """The non-blocking stream socket side: decoder in, output buffer out."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.decoder = StreamDecoder()
        self.out = bytearray()
        self.closed = False

    def queue(self, frame: bytes) -> None:
        self.out += encode_frame(frame)

    def flush(self) -> None:
        while self.out:
            try:
                sent = self.sock.send(self.out)
            except BlockingIOError:
                return
            del self.out[:sent]

    def read(self) -> list[bytes]:
        """Frames that arrived (none when nothing is ready); marks EOF in `closed`."""
        frames: list[bytes] = []
        while True:
            try:
                data = self.sock.recv(READ_SIZE)
            except BlockingIOError:
                return frames
            if not data:
                self.closed = True
                return frames
            frames += self.decoder.feed(data)

    def events(self) -> int:
        return select.POLLIN | (select.POLLOUT if self.out else 0)


class XskBackend(_Loop):
    """Forward frames between an XSK and whoever connects to a unix socket at `path`
    (QEMU -netdev stream framing). The XSK's umem pool must be filled (`xsk.fill()`)
    before traffic comes; the backend keeps refilling what it consumed.

    `to_vm`/`from_vm`: frames rx ring -> stream and stream -> tx ring. `tx_completed`:
    tx frames the kernel gave back on the completion ring. `runts`: stream frames too
    short for Ethernet, dropped.
    """

    name = "xsk-backend"

    def __init__(self, xsk: XskSocket, path: str, *, record: bool = False,
                 accept_timeout: float = 30.0) -> None:
        super().__init__()
        self.xsk = xsk
        self.path = path
        self.accept_timeout = accept_timeout
        self.to_vm = Direction(record=record)
        self.from_vm = Direction(record=record)
        self.tx_completed = 0
        self.runts = 0
        self._pending: deque[bytes] = deque()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.listener.bind(path)
            self.listener.listen(1)
        except BaseException:
            self.listener.close()
            raise

    def loop(self) -> None:
        deadline = time.monotonic() + self.accept_timeout
        while True:  # wait for the VM side, but stop when told to
            if self.stopping:
                return
            poller = select.poll()
            self.register_wake(poller)
            poller.register(self.listener.fileno(), select.POLLIN)
            if self.listener.fileno() in self.wait_events(poller):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: nobody connected to {self.path} within "
                                   f"{self.accept_timeout:.0f}s")
        conn, _ = self.listener.accept()
        peer = _StreamPeer(conn)
        try:
            self._forward(peer)
        finally:
            conn.close()

    def _forward(self, peer: _StreamPeer) -> None:
        xsk = self.xsk
        rx = xsk.rx
        if rx is None or xsk.tx is None:
            raise ValueError(f"{xsk}: the backend needs both an rx and a tx ring")
        while not self.stopping:
            poller = select.poll()
            self.register_wake(poller)
            poller.register(peer.sock.fileno(), peer.events())
            if len(peer.out) < MAX_BACKLOG:
                poller.register(xsk.fileno(), select.POLLIN)
            self.wait_events(poller)
            if len(peer.out) < MAX_BACKLOG:
                for rx_frame in xsk.receive(RX_BATCH):
                    self.to_vm.add(rx_frame.data)
                    peer.queue(rx_frame.data)
            peer.flush()
            for frame in peer.read():
                if len(frame) < 14:
                    self.runts += 1
                    continue
                self.from_vm.add(frame)
                self._pending.append(frame)
            self._transmit()
            if peer.closed:
                return

    def _transmit(self) -> None:
        """Post pending frames to the tx ring as far as ring and umem allow; collect
        completions."""
        xsk, umem = self.xsk, self.xsk.umem
        self.tx_completed += len(xsk.complete())
        if not self._pending:
            return
        assert xsk.tx is not None
        room = min(len(self._pending), xsk.tx.free(len(self._pending)), umem.free_count)
        if room <= 0:
            xsk.kick()
            return
        frames = [self._pending.popleft() for _ in range(room)]
        addrs = umem.alloc_frames(room)
        descs = []
        for frame, addr in zip(frames, addrs, strict=True):
            umem.write(addr + umem.tx_offset, frame)
            descs.append(Desc(addr + umem.tx_offset, len(frame)))
        posted = xsk.transmit_descs(descs)
        if posted < room:  # the ring filled meanwhile: keep the rest for the next round
            umem.free_frames(addrs[posted:])
            self._pending.extendleft(reversed(frames[posted:]))

    def close(self) -> None:
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


#: the TUN/TAP clone device (devtmpfs makes it when the tun module loads)
TUN_NODE = "/dev/net/tun"


def open_tap(name: str, netns: str | None = None) -> int:
    """A TAP device `name` in namespace `netns` (None: the calling thread's), as a
    non-blocking fd; closing the fd deletes the device."""
    why = kmod.ensure("tun", lambda: os.path.exists(TUN_NODE))
    if why is not None:
        raise FileNotFoundError(errno.ENOENT, f"{TUN_NODE} missing: {why}", TUN_NODE)
    with run_in_netns(netns):
        fd = os.open(TUN_NODE, os.O_RDWR | os.O_CLOEXEC)
    try:
        ifr = struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
        os.set_blocking(fd, False)
    except BaseException:
        os.close(fd)
        raise
    return fd


class TapRelay(_Loop):
    """The VM side: a TAP device in the VM's namespace joined to the backend's unix
    socket, as QEMU joins its guest NIC to a stream netdev.

    `to_vm`: frames from the stream written to the TAP (the VM received them);
    `from_vm`: frames the VM sent, read from the TAP and put on the stream.
    """

    name = "tap-relay"

    def __init__(self, tap_fd: int, path: str, *, record: bool = False,
                 connect_timeout: float = 10.0) -> None:
        super().__init__()
        self.tap_fd = tap_fd
        self.to_vm = Direction(record=record)
        self.from_vm = Direction(record=record)
        #: frames the TAP would not take (EAGAIN/ENOBUFS: the VM's stack is behind)
        self.tap_drops = 0
        deadline = time.monotonic() + connect_timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            while True:
                try:
                    sock.connect(path)
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.01)
        except BaseException:
            sock.close()
            raise
        self.peer = _StreamPeer(sock)

    def loop(self) -> None:
        peer = self.peer
        while not self.stopping:
            poller = select.poll()
            self.register_wake(poller)
            poller.register(peer.sock.fileno(), peer.events())
            poller.register(self.tap_fd, select.POLLIN)
            self.wait_events(poller)
            for frame in peer.read():
                self._write_tap(frame)
            while True:
                try:
                    frame = os.read(self.tap_fd, 65536)
                except BlockingIOError:
                    break
                self.from_vm.add(frame)
                peer.queue(frame)
            peer.flush()
            if peer.closed:
                return

    def _write_tap(self, frame: bytes) -> None:
        try:
            os.write(self.tap_fd, frame)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ENOBUFS):
                raise
            self.tap_drops += 1
            return
        self.to_vm.add(frame)

    def close(self) -> None:
        self.peer.sock.close()


@contextlib.contextmanager
def socket_path(prefix: str = "kmx-xsk-") -> Iterator[str]:
    """A fresh folder with a path for a unix socket in it; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield os.path.join(folder, "stream.sock")
