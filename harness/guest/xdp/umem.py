"""A UMEM: the packet memory an AF_XDP socket shares with the kernel, split into frames,
with its fill and completion rings.

The memory is an anonymous, page-aligned mapping of ``frame_count * frame_size`` bytes
registered with XDP_UMEM_REG on an AF_XDP socket the `Umem` creates and owns; the fill
ring (userspace gives the kernel frames to receive into) and the completion ring (the
kernel gives back frames it has sent) are set up on that socket and mapped. The first
`XskSocket` made on a Umem binds that very socket (the kernel wants the umem owner to be a
bound socket, so libxdp does the same); later sockets share it with XDP_SHARED_UMEM.

Addresses are umem offsets, as the rings carry them. In the default aligned mode a frame
is the chunk at ``index * frame_size``; the kernel puts received data at chunk +
XDP_PACKET_HEADROOM + `headroom`. In unaligned-chunk mode a descriptor address is
``(offset << 48) | chunk address``.

The Umem also keeps the free frames (a simple pool): `XskSocket.fill` takes receive frames
from it, `XskSocket.transmit` takes frames to send from it, and completions and recycled
receive frames go back.
"""

from __future__ import annotations

import ctypes
import mmap
from collections import deque
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..closing import Closing
from .ring import ADDR_SIZE, ConsumerRing, ProducerRing, RingOffsets
from .sockopt import map_ring, mmap_offsets, register_umem, set_ring_size, xsk_socket
from .uapi import (
    XDP_PACKET_HEADROOM,
    XDP_UMEM_PGOFF_COMPLETION_RING,
    XDP_UMEM_PGOFF_FILL_RING,
    XSK_UNALIGNED_BUF_ADDR_MASK,
    XSK_UNALIGNED_BUF_OFFSET_SHIFT,
    SockOpt,
    UmemFlag,
    XdpUmemReg,
)

if TYPE_CHECKING:
    import socket


@dataclass(frozen=True)
class UmemConfig:
    """Size and layout of a UMEM (libxdp's xsk_umem_config plus the frame count).

    `frame_size` is the chunk size (2048 or 4096 in aligned mode: a power of two up to the
    page size), `headroom` what the kernel leaves free in front of received data beyond
    XDP_PACKET_HEADROOM, `fill_size`/`completion_size` the ring sizes (powers of two),
    `flags` UmemFlag bits, `tx_metadata_len` the per-frame tx metadata area (6.11+, needs
    UmemFlag.TX_METADATA_LEN). The kernel checks the rest and says EINVAL.
    """

    frame_count: int = 2048
    frame_size: int = 4096
    headroom: int = 0
    fill_size: int = 1024
    completion_size: int = 1024
    flags: int = 0
    tx_metadata_len: int = 0

    def __post_init__(self) -> None:
        if self.frame_count <= 0 or self.frame_size <= 0:
            raise ValueError(f"umem of {self.frame_count} frames of {self.frame_size} bytes")
        for name in ("fill_size", "completion_size"):
            size = getattr(self, name)
            if size <= 0 or size & (size - 1):
                raise ValueError(f"{name} {size} is not a power of two")

    @property
    def size(self) -> int:
        """Bytes of packet memory."""
        return self.frame_count * self.frame_size

    @property
    def unaligned(self) -> bool:
        """Unaligned-chunk mode (descriptor addresses carry an offset in bits 48..63)."""
        return bool(self.flags & UmemFlag.UNALIGNED_CHUNK_FLAG)


class UmemRings(Closing):
    """A fill and a completion ring created on `sock` and mapped (what a socket owning a
    umem, or sharing one on another queue or device, needs). Closing unmaps them."""

    def __init__(self, sock: socket.socket, fill_size: int, completion_size: int) -> None:
        with ExitStack() as stack:
            set_ring_size(sock, SockOpt.UMEM_FILL_RING, fill_size)
            set_ring_size(sock, SockOpt.UMEM_COMPLETION_RING, completion_size)
            off = mmap_offsets(sock)
            fr, cr = RingOffsets.of(off.fr), RingOffsets.of(off.cr)
            fill_map = map_ring(sock, XDP_UMEM_PGOFF_FILL_RING,
                                fr.mapping_size(fill_size, ADDR_SIZE), "fill ring")
            stack.callback(fill_map.close)
            self.fill = stack.enter_context(ProducerRing(
                fill_map, fr, fill_size, ADDR_SIZE, name=f"fill ring of fd {sock.fileno()}"))
            comp_map = map_ring(sock, XDP_UMEM_PGOFF_COMPLETION_RING,
                                cr.mapping_size(completion_size, ADDR_SIZE), "completion ring")
            stack.callback(comp_map.close)
            self.completion = stack.enter_context(
                ConsumerRing(comp_map, cr, completion_size, ADDR_SIZE,
                             name=f"completion ring of fd {sock.fileno()}"))
            self._stack = stack.pop_all()

    def close(self) -> None:
        """Release the rings and unmap them."""
        self._stack.close()



def _address_of(area: mmap.mmap) -> int:
    """The virtual address of a mapping (for XDP_UMEM_REG); the ctypes view that finds it
    is dropped at once, so the mapping can still be closed."""
    anchor = ctypes.c_char.from_buffer(area)
    address = ctypes.addressof(anchor)
    del anchor
    return address


class Umem(Closing):
    """A registered UMEM with its fill and completion rings and a pool of free frames.

        with Umem(UmemConfig(frame_count=1024)) as umem, XskSocket(umem, ifindex) as xsk:
            ...

    Closing releases the rings, the socket owning the umem (and with it the first
    XskSocket's binding) and the memory. Close the sockets made on it first (nest the
    ``with`` blocks as above).
    """

    def __init__(self, config: UmemConfig | None = None) -> None:
        self.config = config or UmemConfig()
        cfg = self.config
        #: (ifindex, queue_id, bind flags) of the socket bound on `socket`, once there is one
        self.owner: tuple[int, int, int] | None = None
        self._claimed = False
        with ExitStack() as stack:
            self._area = mmap.mmap(-1, cfg.size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                                   prot=mmap.PROT_READ | mmap.PROT_WRITE)
            stack.callback(self._area.close)
            #: the umem's virtual address in this process
            self.address = _address_of(self._area)
            #: the AF_XDP socket the umem is registered on
            self.socket = xsk_socket()
            stack.callback(self.socket.close)
            register_umem(self.socket, XdpUmemReg(
                addr=self.address, len=cfg.size, chunk_size=cfg.frame_size,
                headroom=cfg.headroom, flags=cfg.flags, tx_metadata_len=cfg.tx_metadata_len))
            self.rings = stack.enter_context(
                UmemRings(self.socket, cfg.fill_size, cfg.completion_size))
            self._stack = stack.pop_all()
        self._free: deque[int] = deque(self.frame_addr(i) for i in range(cfg.frame_count))

    # -- the socket's rings
    @property
    def fill(self) -> ProducerRing:
        """The fill ring of the umem's own socket."""
        return self.rings.fill

    @property
    def completion(self) -> ConsumerRing:
        """The completion ring of the umem's own socket."""
        return self.rings.completion

    def fileno(self) -> int:
        """The fd of the socket owning the umem (sxdp_shared_umem_fd for sharers)."""
        return self.socket.fileno()

    def claim_socket(self) -> bool:
        """For XskSocket: True the first time (that socket binds the umem's own socket),
        False afterwards (the caller makes its own socket and shares the umem)."""
        first = not self._claimed
        self._claimed = True
        return first

    # -- addresses
    @property
    def tx_offset(self) -> int:
        """Where transmitted data starts in a frame (after the tx metadata area)."""
        return self.config.tx_metadata_len

    @property
    def rx_offset(self) -> int:
        """Where the kernel puts received data in a frame in aligned mode."""
        return XDP_PACKET_HEADROOM + self.config.headroom

    def frame_addr(self, index: int) -> int:
        """The umem address of frame `index`."""
        if not 0 <= index < self.config.frame_count:
            raise IndexError(f"frame {index} of {self.config.frame_count}")
        return index * self.config.frame_size

    def frame_of(self, addr: int) -> int:
        """The address of the frame a descriptor address lies in (rx and completion
        addresses point into a frame: this is what goes back into the fill ring or the
        pool)."""
        if self.config.unaligned:
            addr &= XSK_UNALIGNED_BUF_ADDR_MASK
        return addr - addr % self.config.frame_size

    def offset_of(self, addr: int) -> int:
        """The byte offset in the umem a descriptor address points at."""
        if self.config.unaligned:
            return (addr & XSK_UNALIGNED_BUF_ADDR_MASK) + (addr >> XSK_UNALIGNED_BUF_OFFSET_SHIFT)
        return addr

    def _span(self, addr: int, length: int) -> slice:
        start = self.offset_of(addr)
        if length < 0 or start < 0 or start + length > self.config.size:
            raise ValueError(f"umem range {addr:#x}+{length} is outside the "
                             f"{self.config.size}-byte umem")
        return slice(start, start + length)

    def read(self, addr: int, length: int) -> bytes:
        """A copy of `length` bytes at descriptor address `addr`."""
        return self._area[self._span(addr, length)]

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Copy `data` into the umem at descriptor address `addr`."""
        self._area[self._span(addr, len(data))] = data

    # -- the free-frame pool
    @property
    def free_count(self) -> int:
        """Frames in the pool (neither in a ring nor handed out)."""
        return len(self._free)

    def alloc_frames(self, n: int) -> list[int]:
        """Take `n` frame addresses from the pool; ValueError if it has fewer."""
        if n > len(self._free):
            raise ValueError(f"{n} frames wanted, {len(self._free)} free in the umem")
        return [self._free.popleft() for _ in range(n)]

    def free_frames(self, addrs: Iterable[int]) -> None:
        """Give frames back to the pool (any address within a frame names the frame)."""
        self._free.extend(self.frame_of(a) for a in addrs)

    # -- lifetime
    def close(self) -> None:
        """Unmap the rings, close the owning socket, unmap the memory."""
        self._stack.close()
        self._free.clear()

    @property
    def closed(self) -> bool:
        return self._area.closed

    def __repr__(self) -> str:
        cfg = self.config
        state = "closed" if self.closed else f"fd={self.socket.fileno()} free={self.free_count}"
        return f"<Umem {cfg.frame_count}x{cfg.frame_size} {state}>"
