"""The AF_XDP socket calls, one typed function each: create, ring sizes, umem registration,
mmap offsets and ring mappings, bind, statistics, options, wakeups.

Python's socket module knows neither AF_XDP addresses nor its option structures, so
options go through setsockopt/getsockopt with the ctypes structures of `uapi`, and bind
through libc. Failures raise OSError carrying the kernel's errno and naming the call, e.g.
``setsockopt(SOL_XDP, XDP_UMEM_REG, chunk_size=3000): EINVAL (Invalid argument)``.
These are the building blocks of `Umem` and `XskSocket`; a test that wants to see what the
kernel does with one step on its own (bind twice, a bad ring size...) calls them directly.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import select
import socket
import struct
from dataclasses import dataclass

from ..bpf.library import oserror
from ..uapi import libc
from .uapi import (
    AF_XDP,
    SOL_XDP,
    XDP_OPTIONS_ZEROCOPY,
    BindFlag,
    SockaddrXdp,
    SockOpt,
    XdpMmapOffsets,
    XdpOptions,
    XdpStatistics,
    XdpUmemReg,
    bind_flags_str,
    umem_reg_bytes,
)

#: errors of a sendto() wakeup that mean "try again later", as libxdp's kick_tx treats them
WAKEUP_RETRY_ERRNOS = frozenset({errno.EAGAIN, errno.EBUSY, errno.ENOBUFS, errno.ENETDOWN})


def xsk_socket() -> socket.socket:
    """A new, unbound AF_XDP socket (socket(AF_XDP, SOCK_RAW, 0)); the caller closes it."""
    try:
        return socket.socket(AF_XDP, socket.SOCK_RAW, 0)
    except OSError as exc:
        raise oserror(exc.errno or errno.EINVAL, "socket(AF_XDP, SOCK_RAW, 0)") from exc


def _setsockopt(sock: socket.socket, opt: SockOpt, value: bytes, what: str) -> None:
    try:
        sock.setsockopt(SOL_XDP, opt, value)
    except OSError as exc:
        raise oserror(exc.errno or errno.EINVAL,
                      f"setsockopt(SOL_XDP, XDP_{opt.name}, {what})") from exc


def _getsockopt(sock: socket.socket, opt: SockOpt, size: int) -> bytes:
    try:
        return sock.getsockopt(SOL_XDP, opt, size)
    except OSError as exc:
        raise oserror(exc.errno or errno.EINVAL,
                      f"getsockopt(SOL_XDP, XDP_{opt.name}, {size} bytes)") from exc


def set_ring_size(sock: socket.socket, opt: SockOpt, entries: int) -> None:
    """Create one of the socket's rings with `entries` entries: `opt` is XDP_RX_RING,
    XDP_TX_RING, XDP_UMEM_FILL_RING or XDP_UMEM_COMPLETION_RING (the kernel wants a power
    of two and says EINVAL otherwise)."""
    if opt not in (SockOpt.RX_RING, SockOpt.TX_RING, SockOpt.UMEM_FILL_RING,
                   SockOpt.UMEM_COMPLETION_RING):
        raise ValueError(f"XDP_{opt.name} is not a ring option")
    _setsockopt(sock, opt, struct.pack("=i", entries), f"{entries} entries")


def register_umem(sock: socket.socket, reg: XdpUmemReg) -> None:
    """XDP_UMEM_REG: register the memory `reg` describes as the socket's umem (passing the
    structure size the kernel accepts, see `uapi.umem_reg_bytes`)."""
    raw = umem_reg_bytes(reg)
    _setsockopt(sock, SockOpt.UMEM_REG, raw,
                f"addr={reg.addr:#x}, len={reg.len}, chunk_size={reg.chunk_size}, "
                f"headroom={reg.headroom}, flags={reg.flags:#x}, "
                f"tx_metadata_len={reg.tx_metadata_len}, {len(raw)} bytes")


def mmap_offsets(sock: socket.socket) -> XdpMmapOffsets:
    """XDP_MMAP_OFFSETS: where each ring's parts are within its mapping. OSError
    EOPNOTSUPP for a kernel that only knows the pre-5.4 layout (no flags word)."""
    size = ctypes.sizeof(XdpMmapOffsets)
    raw = _getsockopt(sock, SockOpt.MMAP_OFFSETS, size)
    if len(raw) != size:
        raise oserror(errno.EOPNOTSUPP,
                      f"getsockopt(SOL_XDP, XDP_MMAP_OFFSETS) returned {len(raw)} bytes, "
                      f"not {size}: a kernel before 5.4 (rings without a flags word)")
    return XdpMmapOffsets.from_buffer_copy(raw)


def map_ring(sock: socket.socket, pgoff: int, length: int, what: str) -> mmap.mmap:
    """mmap `length` bytes of the ring at page offset `pgoff` (XDP_PGOFF_RX_RING, ...)
    shared and populated, as libxdp does. Rings are mapped before bind (the kernel says
    EBUSY after). The caller closes the mapping."""
    try:
        return mmap.mmap(sock.fileno(), length, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
                         prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=pgoff)
    except OSError as exc:
        raise oserror(exc.errno or errno.EINVAL,
                      f"mmap({what}, {length} bytes at offset {pgoff:#x})") from exc


def bind(sock: socket.socket, ifindex: int, queue_id: int, flags: int = 0,
         shared_umem_fd: int = 0) -> None:
    """bind(2) the socket to queue `queue_id` of device `ifindex` with `flags` (BindFlag;
    with XDP_SHARED_UMEM, `shared_umem_fd` is the bound socket owning the umem)."""
    addr = SockaddrXdp(AF_XDP, flags, ifindex, queue_id, shared_umem_fd)
    ret = libc.bind(sock.fileno(), ctypes.byref(addr), ctypes.sizeof(addr))
    if ret != 0:
        err = ctypes.get_errno()
        shared = f", shared_umem_fd={shared_umem_fd}" if flags & BindFlag.SHARED_UMEM else ""
        raise oserror(err, f"bind(AF_XDP, ifindex={ifindex}, queue_id={queue_id}, "
                           f"flags={bind_flags_str(flags)}{shared})")


@dataclass(frozen=True)
class XskStatistics:
    """XDP_STATISTICS counters. Kernels before 5.9 fill only the first three (`filled`
    says how many the kernel gave; the others are None then, and such a kernel counts
    rx_ring_full into rx_dropped)."""

    rx_dropped: int
    rx_invalid_descs: int
    tx_invalid_descs: int
    rx_ring_full: int | None
    rx_fill_ring_empty_descs: int | None
    tx_ring_empty_descs: int | None
    #: how many counters the kernel filled (3 or 6)
    filled: int


def statistics(sock: socket.socket) -> XskStatistics:
    """getsockopt XDP_STATISTICS, with the counters the kernel filled."""
    raw = _getsockopt(sock, SockOpt.STATISTICS, ctypes.sizeof(XdpStatistics))
    stats, filled = XdpStatistics.parse(raw)

    def extra(name: str, position: int) -> int | None:
        return int(getattr(stats, name)) if filled > position else None

    return XskStatistics(
        rx_dropped=stats.rx_dropped, rx_invalid_descs=stats.rx_invalid_descs,
        tx_invalid_descs=stats.tx_invalid_descs,
        rx_ring_full=extra("rx_ring_full", 3),
        rx_fill_ring_empty_descs=extra("rx_fill_ring_empty_descs", 4),
        tx_ring_empty_descs=extra("tx_ring_empty_descs", 5), filled=filled)


@dataclass(frozen=True)
class XskOptions:
    """XDP_OPTIONS: the flags word and what it says."""

    flags: int

    @property
    def zerocopy(self) -> bool:
        """The socket is bound in zero-copy mode."""
        return bool(self.flags & XDP_OPTIONS_ZEROCOPY)


def options(sock: socket.socket) -> XskOptions:
    """getsockopt XDP_OPTIONS (kernel >= 5.3)."""
    raw = _getsockopt(sock, SockOpt.OPTIONS, ctypes.sizeof(XdpOptions))
    return XskOptions(XdpOptions.from_buffer_copy(raw.ljust(ctypes.sizeof(XdpOptions),
                                                              b"\0")).flags)


def wakeup_tx(sock: socket.socket) -> None:
    """sendto(fd, NULL, 0, MSG_DONTWAIT): make the kernel process the tx ring (copy mode
    transmits in this call). EAGAIN/EBUSY/ENOBUFS/ENETDOWN mean "again later", as in
    libxdp's kick_tx, and are not errors."""
    try:
        sock.send(b"", socket.MSG_DONTWAIT)
    except OSError as exc:
        if exc.errno not in WAKEUP_RETRY_ERRNOS:
            raise oserror(exc.errno or errno.EINVAL, "sendto(AF_XDP, MSG_DONTWAIT)") from exc


def wakeup_rx(sock: socket.socket) -> None:
    """recvfrom(fd, NULL, 0, MSG_DONTWAIT): wake the driver to refill from the fill ring
    (what libxdp's examples do when the fill ring needs a wakeup)."""
    try:
        sock.recv(0, socket.MSG_DONTWAIT)
    except OSError as exc:
        if exc.errno not in WAKEUP_RETRY_ERRNOS:
            raise oserror(exc.errno or errno.EINVAL, "recvfrom(AF_XDP, MSG_DONTWAIT)") from exc


def poll(sock: socket.socket, events: int, timeout: float) -> int:
    """poll(2) the socket for `events` (select.POLLIN: rx ring not empty, POLLOUT: tx ring
    has room) for up to `timeout` seconds; the events that are ready (0 on timeout). In
    copy mode with XDP_USE_NEED_WAKEUP poll also drives tx, in zero-copy mode it wakes the
    driver."""
    poller = select.poll()
    poller.register(sock.fileno(), events)
    ready = poller.poll(max(0, int(timeout * 1000 + 0.999)))
    return ready[0][1] if ready else 0
