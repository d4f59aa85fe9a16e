"""AF_XDP single-producer/single-consumer rings over a shared buffer, operated the way
libxdp's xsk.h does it.

A ring is four things in one mapping, at the offsets XDP_MMAP_OFFSETS reports: a u32
producer index, a u32 consumer index, a u32 flags word and ``size`` entries (a power of
two): u64 umem addresses for the fill and completion rings, 16-byte ``struct xdp_desc``
for rx and tx. Indexes are free-running u32 counters that wrap at 2**32; entry ``i`` is at
``desc + (i & mask) * entry_size``. One side produces (writes entries, then advances
``producer``), the other consumes (reads entries, then advances ``consumer``): userspace
produces on fill and tx and consumes on completion and rx.

Like libxdp, each side keeps cached copies of both indexes and reads the other side's
index only when its cache says there is not enough room (producer) or nothing to read
(consumer). `ProducerRing.cached_cons` is kept ``size`` ahead of the real consumer, so the
free count is a single subtraction.

Memory ordering. The kernel publishes with smp_store_release() and reads the other
side's index with smp_load_acquire(); libxdp does the same with __atomic release/acquire.
Userspace needs (a) loads of entries after the acquire-load of ``producer`` not to be
satisfied earlier (consumer), (b) entry stores before the release-store of ``producer``
to be visible first (producer), (c) entry loads before the release-store of ``consumer``
to be complete (consumer). x86-64 is TSO: loads are not reordered with other loads, stores
not with other stores, and stores not with earlier loads, so plain loads and stores give
(a)-(c); the one reordering TSO allows (a store passing a later load) is not excluded by
release/acquire either. The remaining requirement is that the compiler neither reorders
nor splits the accesses: CPython runs each index access as a separate call in program
order, and reads/writes a native ``'I'`` memoryview item with a fixed-size memcpy of 4
bytes, which is one 32-bit mov at the naturally aligned offsets the kernel uses. Other
architectures need real barriers that CPython cannot express, so every ring refuses to be
built there (`require_tso`) instead of being silently wrong.

Rings work on any writable buffer (an mmap of the socket, or a bytearray in unit tests);
they do not own it. `close()` releases the ring's views of the buffer, after which the
owner can close an mmap (an mmap with views into it refuses to close).
"""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Self

from ..closing import Closing
from .uapi import XDP_RING_NEED_WAKEUP, XdpDesc, XdpRingOffset

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

U32 = 0xFFFFFFFF
#: entry sizes: a u64 umem address (fill, completion), a struct xdp_desc (rx, tx)
ADDR_SIZE = 8
DESC_SIZE = ctypes.sizeof(XdpDesc)
#: machines whose memory model makes plain CPython loads/stores act as acquire/release
TSO_MACHINES = frozenset({"x86_64", "amd64", "AMD64"})


def require_tso(machine: str | None = None) -> None:
    """Raise NotImplementedError unless this (or the named) machine is x86-64, the only
    architecture where the rings' plain loads and stores are correctly ordered."""
    machine = platform.machine() if machine is None else machine
    if machine not in TSO_MACHINES:
        raise NotImplementedError(
            f"AF_XDP rings from Python need x86-64's total store order; on {machine!r} "
            "the ring indexes need acquire/release barriers that CPython cannot issue")


@dataclass(frozen=True)
class RingOffsets:
    """Byte offsets of a ring's parts within its mapping (struct xdp_ring_offset)."""

    producer: int
    consumer: int
    desc: int
    flags: int

    @classmethod
    def of(cls, off: XdpRingOffset) -> Self:
        """From the kernel's struct xdp_ring_offset."""
        return cls(off.producer, off.consumer, off.desc, off.flags)

    def mapping_size(self, size: int, entry_size: int) -> int:
        """Bytes to map for a ring of `size` entries of `entry_size` bytes."""
        return self.desc + size * entry_size


class Desc(NamedTuple):
    """An rx/tx descriptor: umem address, length, options (XDP_PKT_CONTD, ...)."""

    addr: int
    len: int
    options: int = 0


def encode_desc(desc: Desc) -> bytes:
    """The 16 bytes of a struct xdp_desc."""
    return bytes(XdpDesc(*desc))


def decode_desc(buf: bytes | bytearray | memoryview, offset: int = 0) -> Desc:
    """The struct xdp_desc at `offset` of `buf`."""
    raw = XdpDesc.from_buffer_copy(buf, offset)
    return Desc(raw.addr, raw.len, raw.options)


class Ring(Closing):
    """What both sides of a ring share: the layout, the indexes and the entries.

    `buf` is the ring's mapping (or any writable buffer laid out the same way), `offsets`
    where its parts are, `size` the entry count (a power of two), `entry_size` 8 (fill,
    completion) or 16 (rx, tx). `name` appears in error messages.
    """

    def __init__(self, buf: WriteableBuffer,
                 offsets: RingOffsets, size: int, entry_size: int, *,
                 name: str = "ring") -> None:
        require_tso()
        if size <= 0 or size & (size - 1):
            raise ValueError(f"{name}: size {size} is not a power of two")
        if entry_size not in (ADDR_SIZE, DESC_SIZE):
            raise ValueError(f"{name}: entry size {entry_size} is neither {ADDR_SIZE} "
                             f"(u64 address) nor {DESC_SIZE} (struct xdp_desc)")
        for part in ("producer", "consumer", "flags"):
            if getattr(offsets, part) % 4:
                raise ValueError(f"{name}: {part} offset {getattr(offsets, part)} is not "
                                 "4-byte aligned")
        if offsets.desc % 8:
            raise ValueError(f"{name}: desc offset {offsets.desc} is not 8-byte aligned")
        view = memoryview(buf).cast("B")
        end = offsets.mapping_size(size, entry_size)
        words_end = max(offsets.producer, offsets.consumer, offsets.flags) + 4
        if len(view) < max(end, words_end):
            have = len(view)
            view.release()
            raise ValueError(f"{name}: buffer of {have} bytes is too small for "
                             f"{size} entries of {entry_size} bytes at {offsets}")
        self.name = name
        self.size = size
        self.mask = size - 1
        self.entry_size = entry_size
        self.offsets = offsets
        self._view: memoryview | None = view
        self._prod = view[offsets.producer: offsets.producer + 4].cast("I")
        self._cons = view[offsets.consumer: offsets.consumer + 4].cast("I")
        self._flags = view[offsets.flags: offsets.flags + 4].cast("I")
        self._entries = view[offsets.desc: end]
        self._addrs = self._entries.cast("Q") if entry_size == ADDR_SIZE else None

    # -- the shared words (each access is one aligned 32-bit load or store)
    @property
    def producer(self) -> int:
        """The producer index as the kernel sees it now."""
        return int(self._prod[0])

    @property
    def consumer(self) -> int:
        """The consumer index as the kernel sees it now."""
        return int(self._cons[0])

    @property
    def flags(self) -> int:
        """The ring's flags word (XDP_RING_NEED_WAKEUP)."""
        return int(self._flags[0])

    # -- entries
    def addr(self, idx: int) -> int:
        """The u64 address in entry `idx` (fill/completion rings)."""
        if self._addrs is None:
            raise TypeError(f"{self.name}: entries are descriptors, not addresses")
        return int(self._addrs[idx & self.mask])

    def set_addr(self, idx: int, addr: int) -> None:
        """Write address `addr` into entry `idx` (fill/completion rings)."""
        if self._addrs is None:
            raise TypeError(f"{self.name}: entries are descriptors, not addresses")
        self._addrs[idx & self.mask] = addr

    def desc(self, idx: int) -> Desc:
        """The descriptor in entry `idx` (rx/tx rings)."""
        if self._addrs is not None:
            raise TypeError(f"{self.name}: entries are addresses, not descriptors")
        return decode_desc(self._entries, (idx & self.mask) * DESC_SIZE)

    def set_desc(self, idx: int, desc: Desc) -> None:
        """Write `desc` into entry `idx` (rx/tx rings)."""
        if self._addrs is not None:
            raise TypeError(f"{self.name}: entries are addresses, not descriptors")
        off = (idx & self.mask) * DESC_SIZE
        self._entries[off: off + DESC_SIZE] = encode_desc(desc)

    # -- lifetime
    def close(self) -> None:
        """Release the views of the buffer (the ring is unusable afterwards)."""
        if self._view is None:
            return
        for view in (self._addrs, self._entries, self._flags, self._cons, self._prod):
            if view is not None:
                view.release()
        self._view.release()
        self._view = None

    @property
    def closed(self) -> bool:
        return self._view is None

    def __repr__(self) -> str:
        if self.closed:
            return f"<{type(self).__name__} {self.name} closed>"
        return (f"<{type(self).__name__} {self.name} size={self.size} "
                f"prod={self.producer} cons={self.consumer} flags={self.flags:#x}>")


class ProducerRing(Ring):
    """The side that fills entries: fill and tx rings (xsk_ring_prod)."""

    def __init__(self, buf: WriteableBuffer,
                 offsets: RingOffsets, size: int, entry_size: int, *,
                 name: str = "producer ring") -> None:
        super().__init__(buf, offsets, size, entry_size, name=name)
        self.cached_prod = self.producer
        self.cached_cons = (self.consumer + size) & U32

    def free(self, wanted: int = 1) -> int:
        """Free entries (xsk_prod_nb_free): from the cache if it shows at least `wanted`,
        else after re-reading the consumer index."""
        free = (self.cached_cons - self.cached_prod) & U32
        if free >= wanted:
            return free
        self.cached_cons = (self.consumer + self.size) & U32  # acquire
        return (self.cached_cons - self.cached_prod) & U32

    def reserve(self, n: int) -> int | None:
        """Reserve `n` entries (all or none, xsk_ring_prod__reserve): the index of the
        first, or None when fewer than `n` are free. Write them, then `submit(n)`."""
        if n <= 0 or n > self.size:
            raise ValueError(f"{self.name}: cannot reserve {n} of {self.size} entries")
        if self.free(n) < n:
            return None
        idx = self.cached_prod
        self.cached_prod = (self.cached_prod + n) & U32
        return idx

    def reserved(self) -> int:
        """Entries reserved and not yet submitted."""
        return (self.cached_prod - self.producer) & U32

    def submit(self, n: int) -> None:
        """Publish the next `n` reserved entries to the consumer (xsk_ring_prod__submit:
        a release store of producer + n, after the entries were written)."""
        if not 0 <= n <= self.reserved():
            raise ValueError(f"{self.name}: submit({n}) but {self.reserved()} reserved")
        self._prod[0] = (self.producer + n) & U32  # release

    def cancel(self, n: int) -> None:
        """Give back the last `n` reserved, unsubmitted entries."""
        if not 0 <= n <= self.reserved():
            raise ValueError(f"{self.name}: cancel({n}) but {self.reserved()} reserved")
        self.cached_prod = (self.cached_prod - n) & U32

    def needs_wakeup(self) -> bool:
        """The kernel set XDP_RING_NEED_WAKEUP: it makes progress on this ring only after a
        poll() (fill) or sendto() (tx). Only set for sockets bound with
        XDP_USE_NEED_WAKEUP (and on a fresh tx ring)."""
        return bool(self.flags & XDP_RING_NEED_WAKEUP)

    def put_addrs(self, addrs: Sequence[int]) -> int:
        """Produce as many of `addrs` as there is room for, in order; returns how many."""
        n = min(len(addrs), self.free(len(addrs)))
        if n == 0:
            return 0
        idx = self.reserve(n)
        assert idx is not None
        for i, addr in enumerate(addrs[:n]):
            self.set_addr(idx + i, addr)
        self.submit(n)
        return n

    def put_descs(self, descs: Sequence[Desc]) -> int:
        """Produce as many of `descs` as there is room for, in order; returns how many."""
        n = min(len(descs), self.free(len(descs)))
        if n == 0:
            return 0
        idx = self.reserve(n)
        assert idx is not None
        for i, desc in enumerate(descs[:n]):
            self.set_desc(idx + i, desc)
        self.submit(n)
        return n


class ConsumerRing(Ring):
    """The side that reads entries: rx and completion rings (xsk_ring_cons)."""

    def __init__(self, buf: WriteableBuffer,
                 offsets: RingOffsets, size: int, entry_size: int, *,
                 name: str = "consumer ring") -> None:
        super().__init__(buf, offsets, size, entry_size, name=name)
        self.cached_prod = self.producer
        self.cached_cons = self.consumer

    def available(self, wanted: int | None = None) -> int:
        """Entries ready to read, at most `wanted` (xsk_cons_nb_avail): the producer index
        is re-read only when the cache shows none."""
        entries = (self.cached_prod - self.cached_cons) & U32
        if entries == 0:
            self.cached_prod = self.producer  # acquire
            entries = (self.cached_prod - self.cached_cons) & U32
        return entries if wanted is None else min(entries, wanted)

    def peek(self, n: int) -> tuple[int, int]:
        """Take up to `n` ready entries (xsk_ring_cons__peek): (index of the first, count);
        count 0 when there are none. Read them, then `release(count)`."""
        if n <= 0:
            raise ValueError(f"{self.name}: cannot peek {n} entries")
        entries = self.available(n)
        idx = self.cached_cons
        self.cached_cons = (self.cached_cons + entries) & U32
        return idx, entries

    def peeked(self) -> int:
        """Entries peeked and not yet released."""
        return (self.cached_cons - self.consumer) & U32

    def release(self, n: int) -> None:
        """Hand the next `n` peeked entries back to the producer (xsk_ring_cons__release:
        a release store of consumer + n, after the entries were read)."""
        if not 0 <= n <= self.peeked():
            raise ValueError(f"{self.name}: release({n}) but {self.peeked()} peeked")
        self._cons[0] = (self.consumer + n) & U32  # release

    def cancel(self, n: int) -> None:
        """Un-peek the last `n` peeked, unreleased entries (xsk_ring_cons__cancel)."""
        if not 0 <= n <= self.peeked():
            raise ValueError(f"{self.name}: cancel({n}) but {self.peeked()} peeked")
        self.cached_cons = (self.cached_cons - n) & U32

    def take_addrs(self, n: int | None = None) -> list[int]:
        """Consume up to `n` (default: all ready) addresses."""
        if n == 0:
            return []
        idx, count = self.peek(self.size if n is None else n)
        out = [self.addr(idx + i) for i in range(count)]
        self.release(count)
        return out

    def take_descs(self, n: int | None = None) -> list[Desc]:
        """Consume up to `n` (default: all ready) descriptors."""
        if n == 0:
            return []
        idx, count = self.peek(self.size if n is None else n)
        out = [self.desc(idx + i) for i in range(count)]
        self.release(count)
        return out


def ring_layout(size: int, entry_size: int) -> tuple[RingOffsets, int]:
    """Offsets for a ring over a plain buffer (each shared word on its own cache line, as
    the kernel lays them out, entries after them) and the buffer size that needs."""
    offsets = RingOffsets(producer=0, consumer=64, flags=128, desc=192)
    return offsets, offsets.mapping_size(size, entry_size)
