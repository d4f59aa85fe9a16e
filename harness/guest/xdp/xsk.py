"""An AF_XDP socket (XSK) bound to one queue of a device, over a `Umem`.

    with Umem() as umem, XskSocket(umem, ifindex, 0, XskConfig(bind_flags=XDP_COPY)) as xsk:
        xskmap.update(0, xsk.fileno())        # or harness.guest.xdp.attach.register_xsk
        xsk.fill()                            # give the kernel frames to receive into
        frames = xsk.wait_receive(10)         # RxFrame(desc, data) x 10
        xsk.transmit([frame_bytes])           # through the tx ring, kicked with sendto
        xsk.wait_complete(1)                  # the frame came back on the completion ring

The socket is set up the way libxdp's xsk_socket__create does it: rx/tx ring sizes, the
rings mapped (before bind: the kernel refuses mappings of a bound socket), then bind. The
first socket made on a Umem is the umem's own socket; later ones are new sockets bound
with XDP_SHARED_UMEM to it, with fill and completion rings of their own when they bind
another queue or device (the kernel requires that), else sharing the owner's.

Every wait has a deadline and raises TimeoutError naming what it waited for (with the
socket's XDP_STATISTICS, which usually say why: an empty fill ring, a full rx ring,
invalid descriptors).
"""

from __future__ import annotations

import errno
import select
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ..closing import Closing
from .ring import DESC_SIZE, ConsumerRing, Desc, ProducerRing, RingOffsets
from .sockopt import (
    XskOptions,
    XskStatistics,
    bind,
    map_ring,
    mmap_offsets,
    options,
    poll,
    set_ring_size,
    statistics,
    wakeup_rx,
    wakeup_tx,
    xsk_socket,
)
from .uapi import (
    XDP_PGOFF_RX_RING,
    XDP_PGOFF_TX_RING,
    XDP_PKT_CONTD,
    BindFlag,
    SockOpt,
    bind_flags_str,
)
from .umem import Umem, UmemRings

if TYPE_CHECKING:
    import socket

#: pause between binds refused with EBUSY
_BUSY_RETRY = 0.005
#: longest single poll(2) sleep inside a wait, so kicks and completions keep being retried
_POLL_SLICE = 0.05


@dataclass(frozen=True)
class XskConfig:
    """Rings and bind flags of an XskSocket.

    `rx_size`/`tx_size`: ring sizes (powers of two; 0 for no such ring, the kernel wants
    at least one). `bind_flags`: BindFlag bits (XDP_COPY, XDP_ZEROCOPY,
    XDP_USE_NEED_WAKEUP, XDP_USE_SG); XDP_SHARED_UMEM is added by XskSocket when it shares
    the umem (the kernel then refuses the mode flags: a sharer follows the owner).
    `fill_size`/`completion_size`: the rings of a socket sharing the umem on another queue
    or device (default: the umem's sizes). `busy_timeout`: how long to retry a bind the
    kernel refuses with EBUSY: it releases a closed socket's hold on its queue in deferred
    work, so binding the same queue right after a close fails for a while (15-30 ms on an
    idle x86 host; xskxceiver retries likewise). 0 fails at the first EBUSY.
    """

    rx_size: int = 1024
    tx_size: int = 1024
    bind_flags: int = 0
    fill_size: int | None = None
    completion_size: int | None = None
    busy_timeout: float = 2.0

    def __post_init__(self) -> None:
        for name in ("rx_size", "tx_size"):
            size = getattr(self, name)
            if size < 0 or size & (size - 1):
                raise ValueError(f"{name} {size} is neither 0 nor a power of two")
        if self.bind_flags & BindFlag.SHARED_UMEM:
            raise ValueError("XDP_SHARED_UMEM is XskSocket's to set (make the socket on "
                             "the Umem to share)")


class RxFrame(NamedTuple):
    """A received descriptor and a copy of its bytes."""

    desc: Desc
    data: bytes


def join_packets(frames: Sequence[RxFrame]) -> list[bytes]:
    """Whole packets from received frames: multi-buffer packets (XDP_USE_SG) span
    consecutive descriptors, all but the last with XDP_PKT_CONTD."""
    packets: list[bytes] = []
    parts: list[bytes] = []
    for frame in frames:
        parts.append(frame.data)
        if not frame.desc.options & XDP_PKT_CONTD:
            packets.append(b"".join(parts))
            parts = []
    if parts:
        raise ValueError(f"the last packet is incomplete: {len(parts)} descriptors with "
                         "XDP_PKT_CONTD and no final one")
    return packets


class XskSocket(Closing):
    """An AF_XDP socket bound to queue `queue_id` of device `ifindex` (in the calling
    thread's network namespace), with its rx and tx rings mapped.

    Closing unmaps the rx/tx rings and, unless this is the umem's own socket, closes the
    socket (which also removes it from any XSKMAP). The umem's own socket, the first one
    bound on a Umem, is released when the Umem closes.
    """

    def __init__(self, umem: Umem, ifindex: int, queue_id: int = 0,
                 config: XskConfig | None = None) -> None:
        self.umem = umem
        self.ifindex = ifindex
        self.queue_id = queue_id
        self.config = config or XskConfig()
        cfg = self.config
        self.rx: ConsumerRing | None = None
        self.tx: ProducerRing | None = None
        self._closed = False
        with ExitStack() as stack:
            self.owns_umem = umem.claim_socket()
            if self.owns_umem:
                self.socket: socket.socket = umem.socket
                flags = cfg.bind_flags
            else:
                if umem.owner is None:
                    raise ValueError("the umem's first socket is not bound: a socket "
                                     "sharing the umem needs a bound owner")
                self.socket = xsk_socket()
                stack.callback(self.socket.close)
                flags = cfg.bind_flags | BindFlag.SHARED_UMEM
            if cfg.rx_size:
                set_ring_size(self.socket, SockOpt.RX_RING, cfg.rx_size)
            if cfg.tx_size:
                set_ring_size(self.socket, SockOpt.TX_RING, cfg.tx_size)
            #: the fill and completion rings this socket uses: the umem's, or its own when
            #: it shares the umem on another queue or device
            self.fill_ring: ProducerRing = umem.fill
            self.completion_ring: ConsumerRing = umem.completion
            if umem.owner is not None and umem.owner[:2] != (ifindex, queue_id):
                rings = stack.enter_context(UmemRings(
                    self.socket, cfg.fill_size or umem.config.fill_size,
                    cfg.completion_size or umem.config.completion_size))
                self.fill_ring, self.completion_ring = rings.fill, rings.completion
            off = mmap_offsets(self.socket)
            label = f"ifindex {ifindex} queue {queue_id}"
            if cfg.rx_size:
                rx_off = RingOffsets.of(off.rx)
                rx_map = map_ring(self.socket, XDP_PGOFF_RX_RING,
                                  rx_off.mapping_size(cfg.rx_size, DESC_SIZE), "rx ring")
                stack.callback(rx_map.close)
                self.rx = stack.enter_context(ConsumerRing(
                    rx_map, rx_off, cfg.rx_size, DESC_SIZE, name=f"rx ring of {label}"))
            if cfg.tx_size:
                tx_off = RingOffsets.of(off.tx)
                tx_map = map_ring(self.socket, XDP_PGOFF_TX_RING,
                                  tx_off.mapping_size(cfg.tx_size, DESC_SIZE), "tx ring")
                stack.callback(tx_map.close)
                self.tx = stack.enter_context(ProducerRing(
                    tx_map, tx_off, cfg.tx_size, DESC_SIZE, name=f"tx ring of {label}"))
            self._bind(flags)
            if self.owns_umem:
                umem.owner = (ifindex, queue_id, flags)
            self._stack = stack.pop_all()
        assert umem.owner is not None
        #: the bind flags in force (a sharer has the owner's copy/zero-copy/wakeup mode)
        self.bind_flags = flags | umem.owner[2]
        self.need_wakeup = bool(self.bind_flags & BindFlag.USE_NEED_WAKEUP)

    def _bind(self, flags: int) -> None:
        """bind(2), retrying EBUSY for the config's busy_timeout (a queue a closed socket
        held is released in deferred kernel work)."""
        deadline = time.monotonic() + self.config.busy_timeout
        while True:
            try:
                bind(self.socket, self.ifindex, self.queue_id, flags,
                     0 if self.owns_umem else self.umem.fileno())
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                    if exc.errno == errno.EBUSY and self.config.busy_timeout:
                        exc.add_note(f"still EBUSY after retrying for "
                                     f"{self.config.busy_timeout:.1f}s: another socket holds "
                                     "the queue (or a closed one is not released yet)")
                    raise
            time.sleep(_BUSY_RETRY)

    # -- identity
    def fileno(self) -> int:
        """The socket's fd (the value an XSKMAP entry takes)."""
        return self.socket.fileno()

    def statistics(self) -> XskStatistics:
        """XDP_STATISTICS of this socket."""
        return statistics(self.socket)

    def options(self) -> XskOptions:
        """XDP_OPTIONS of this socket (`.zerocopy`: bound in zero-copy mode)."""
        return options(self.socket)

    def poll(self, events: int = select.POLLIN, timeout: float = 0.0) -> int:
        """poll(2) this socket for up to `timeout` seconds; the ready events."""
        return poll(self.socket, events, timeout)

    def _rx_ring(self) -> ConsumerRing:
        if self.rx is None:
            raise ValueError(f"{self}: made without an rx ring")
        return self.rx

    def _tx_ring(self) -> ProducerRing:
        if self.tx is None:
            raise ValueError(f"{self}: made without a tx ring")
        return self.tx

    # -- receive
    def fill(self, count: int | None = None) -> int:
        """Move up to `count` (default: as many as fit) free frames of the umem's pool into
        the fill ring; returns how many went in."""
        room = self.fill_ring.free(self.fill_ring.size)
        n = min(room, self.umem.free_count, room if count is None else count)
        if n <= 0:
            return 0
        addrs = self.umem.alloc_frames(n)
        placed = self.fill_ring.put_addrs(addrs)
        self.umem.free_frames(addrs[placed:])
        return placed

    def fill_addrs(self, addrs: Sequence[int]) -> int:
        """Put these frame addresses into the fill ring as far as it has room; returns how
        many went in (the caller keeps the rest)."""
        return self.fill_ring.put_addrs(addrs)

    def receive(self, max_frames: int = 64, *, refill: bool = True) -> list[RxFrame]:
        """Take up to `max_frames` frames from the rx ring now (maybe none), copying their
        bytes out of the umem. With `refill` their frames go straight back into the fill
        ring (into the pool if it is full); otherwise the caller owns them."""
        rx = self._rx_ring()
        idx, count = rx.peek(max_frames)
        frames = []
        for i in range(count):
            desc = rx.desc(idx + i)
            frames.append(RxFrame(desc, self.umem.read(desc.addr, desc.len)))
        rx.release(count)
        if refill and frames:
            addrs = [self.umem.frame_of(f.desc.addr) for f in frames]
            placed = self.fill_ring.put_addrs(addrs)
            self.umem.free_frames(addrs[placed:])
        return frames

    def wait_receive(self, count: int = 1, *, timeout: float = 5.0,
                     refill: bool = True) -> list[RxFrame]:
        """Receive until `count` frames have arrived (more may come in the last batch);
        TimeoutError naming what was awaited after `timeout` seconds. Polls the socket
        (and wakes the fill ring when the kernel asks for it) between attempts."""
        rx = self._rx_ring()
        frames: list[RxFrame] = []
        deadline = time.monotonic() + timeout
        while True:
            frames += self.receive(rx.size, refill=refill)
            if len(frames) >= count:
                return frames
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"timed out after {timeout:.1f}s waiting for {count} frames on the "
                    f"{rx.name} (got {len(frames)}; {self._state()})")
            if self.need_wakeup and self.fill_ring.needs_wakeup():
                wakeup_rx(self.socket)
            self.poll(select.POLLIN, min(remaining, _POLL_SLICE))

    # -- transmit
    def kick(self) -> None:
        """Make the kernel process the tx ring (sendto MSG_DONTWAIT) if it has to: always
        without XDP_USE_NEED_WAKEUP, else when the tx ring asks for it."""
        if not self.need_wakeup or self._tx_ring().needs_wakeup():
            wakeup_tx(self.socket)

    def transmit_descs(self, descs: Sequence[Desc]) -> int:
        """Post descriptors whose data is already in the umem, as far as the tx ring has
        room, and kick; returns how many were posted."""
        n = self._tx_ring().put_descs(descs)
        if n:
            self.kick()
        return n

    def _descs_for(self, packets: Sequence[bytes]) -> list[Desc]:
        room = self.umem.config.frame_size - self.umem.tx_offset
        sg = bool(self.bind_flags & BindFlag.USE_SG)
        descs: list[Desc] = []
        for packet in packets:
            pieces = [packet[i: i + room] for i in range(0, len(packet), room)] or [b""]
            if len(pieces) > 1 and not sg:
                raise ValueError(f"a {len(packet)}-byte packet does not fit a frame "
                                 f"({room} bytes) and the socket is not bound with XDP_USE_SG")
            frames = self._alloc_tx_frames(len(pieces))
            for i, (piece, frame) in enumerate(zip(pieces, frames, strict=True)):
                addr = frame + self.umem.tx_offset
                self.umem.write(addr, piece)
                descs.append(Desc(addr, len(piece), XDP_PKT_CONTD if i < len(pieces) - 1 else 0))
        return descs

    def _alloc_tx_frames(self, n: int) -> list[int]:
        if self.umem.free_count < n:
            self.complete()
        return self.umem.alloc_frames(n)

    def transmit(self, packets: Sequence[bytes], *, timeout: float = 5.0) -> list[Desc]:
        """Copy each packet into a frame of the pool and send them all through the tx ring
        (waiting for room, kicking as needed); returns the descriptors posted. Their
        frames come back to the pool with `complete`. A packet larger than a frame is
        split over several descriptors when the socket is bound with XDP_USE_SG."""
        tx = self._tx_ring()
        descs = self._descs_for(packets)
        posted = 0
        deadline = time.monotonic() + timeout
        while True:
            posted += self.transmit_descs(descs[posted:])
            if posted == len(descs):
                return descs
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.umem.free_frames(d.addr for d in descs[posted:])
                raise TimeoutError(
                    f"timed out after {timeout:.1f}s waiting for room in the {tx.name} "
                    f"(posted {posted} of {len(descs)} descriptors; {self._state()})")
            self.complete()
            self.poll(select.POLLOUT, min(remaining, _POLL_SLICE))

    def complete(self, max_frames: int | None = None, *, recycle: bool = True) -> list[int]:
        """Take the addresses the kernel has finished sending from the completion ring
        (up to `max_frames`); with `recycle` their frames go back to the umem's pool."""
        addrs = self.completion_ring.take_addrs(max_frames)
        if recycle:
            self.umem.free_frames(addrs)
        return addrs

    def wait_complete(self, count: int = 1, *, timeout: float = 5.0,
                      recycle: bool = True) -> list[int]:
        """Kick and collect completions until `count` addresses came back; TimeoutError
        naming what was awaited after `timeout` seconds."""
        done: list[int] = []
        deadline = time.monotonic() + timeout
        while True:
            done += self.complete(recycle=recycle)
            if len(done) >= count:
                return done
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"timed out after {timeout:.1f}s waiting for {count} completions on "
                    f"the {self.completion_ring.name} (got {len(done)}; {self._state()})")
            if self.tx is not None:
                self.kick()
            self.poll(select.POLLOUT, min(remaining, _POLL_SLICE))

    # -- lifetime
    def _state(self) -> str:
        """Ring indexes and statistics, for error messages."""
        parts = [f"{r.name}: prod {r.producer} cons {r.consumer} flags {r.flags:#x}"
                 for r in (self.rx, self.tx, self.fill_ring, self.completion_ring)
                 if r is not None and not r.closed]
        try:
            parts.append(str(self.statistics()))
        except OSError as exc:
            parts.append(f"statistics: {exc}")
        return "; ".join(parts)

    def close(self) -> None:
        """Unmap the rx/tx rings (and own fill/completion rings) and close the socket
        unless it is the umem's own."""
        self._stack.close()
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return (f"<XskSocket ifindex={self.ifindex} queue={self.queue_id} "
                f"flags={bind_flags_str(self.bind_flags)}{' closed' if self.closed else ''}>")
