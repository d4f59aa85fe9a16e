"""AF_XDP user API (include/uapi/linux/if_xdp.h): socket options, bind/umem/ring flags,
mmap page offsets and the structures exchanged with the kernel, as ctypes structures so
their sizes and offsets are the C ones (tests/unit/test_xsk_rings.py compares them with
what gcc sees in <linux/if_xdp.h>).

Also the few XDP constants of other headers this package needs: the XDP attach flags
(include/uapi/linux/if_link.h), `enum xdp_action` and XDP_PACKET_HEADROOM
(include/uapi/linux/bpf.h). AF_XDP and SOL_XDP themselves live in harness.guest.uapi.

Structures that grew over kernel versions (the kernels kmatrix tests are >= 5.4):

- ``struct xdp_umem_reg``: v1 (addr, len, chunk_size, headroom; 24 bytes) is known to
  every kernel; ``flags`` came in 5.4 and ``tx_metadata_len`` in 6.8, both within 32 bytes
  (on 5.4..6.7 the last 4 bytes are padding the kernel ignores). `umem_reg_bytes` passes
  the v1 size when neither is used, so any kernel takes it, else the full 32 bytes.
- ``struct xdp_statistics``: kernels before 5.9 fill only the first three counters (24
  bytes) and say so in optlen; `XdpStatistics.parse` keeps that length.
- ``struct xdp_mmap_offsets``: the ``flags`` offsets exist since 5.4; kmatrix needs them
  (need_wakeup) and does not handle the v1 layout.
"""

from __future__ import annotations

import ctypes
from enum import IntEnum, IntFlag
from typing import ClassVar, Self

from ..uapi import AF_XDP, SOL_XDP

__all__ = [
    "AF_XDP",
    "SOL_XDP",
    "XDP_COPY",
    "XDP_MMAP_OFFSETS",
    "XDP_OPTIONS",
    "XDP_OPTIONS_ZEROCOPY",
    "XDP_PACKET_HEADROOM",
    "XDP_PGOFF_RX_RING",
    "XDP_PGOFF_TX_RING",
    "XDP_PKT_CONTD",
    "XDP_RING_NEED_WAKEUP",
    "XDP_RX_RING",
    "XDP_SHARED_UMEM",
    "XDP_STATISTICS",
    "XDP_TX_METADATA",
    "XDP_TX_RING",
    "XDP_UMEM_COMPLETION_RING",
    "XDP_UMEM_FILL_RING",
    "XDP_UMEM_PGOFF_COMPLETION_RING",
    "XDP_UMEM_PGOFF_FILL_RING",
    "XDP_UMEM_REG",
    "XDP_UMEM_REG_V1_SIZE",
    "XDP_UMEM_TX_METADATA_LEN",
    "XDP_UMEM_TX_SW_CSUM",
    "XDP_UMEM_UNALIGNED_CHUNK_FLAG",
    "XDP_USE_NEED_WAKEUP",
    "XDP_USE_SG",
    "XDP_ZEROCOPY",
    "XSK_UNALIGNED_BUF_ADDR_MASK",
    "XSK_UNALIGNED_BUF_OFFSET_SHIFT",
    "BindFlag",
    "SockOpt",
    "SockaddrXdp",
    "UmemFlag",
    "XdpAction",
    "XdpAttachFlag",
    "XdpDesc",
    "XdpMmapOffsets",
    "XdpOptions",
    "XdpRingOffset",
    "XdpStatistics",
    "XdpUmemReg",
    "bind_flags_str",
    "umem_reg_bytes",
]


class SockOpt(IntEnum):
    """SOL_XDP socket options."""

    MMAP_OFFSETS = 1
    RX_RING = 2
    TX_RING = 3
    UMEM_REG = 4
    UMEM_FILL_RING = 5
    UMEM_COMPLETION_RING = 6
    STATISTICS = 7
    OPTIONS = 8


class BindFlag(IntFlag):
    """sockaddr_xdp.sxdp_flags"""

    SHARED_UMEM = 1 << 0
    COPY = 1 << 1
    ZEROCOPY = 1 << 2
    USE_NEED_WAKEUP = 1 << 3
    USE_SG = 1 << 4  # multi-buffer: one packet may span several descriptors (6.6)


class UmemFlag(IntFlag):
    """xdp_umem_reg.flags"""

    UNALIGNED_CHUNK_FLAG = 1 << 0
    TX_SW_CSUM = 1 << 1  # 6.8
    TX_METADATA_LEN = 1 << 2  # 6.11: tx_metadata_len is only honoured with this flag


class XdpAttachFlag(IntFlag):
    """XDP_FLAGS_* of include/uapi/linux/if_link.h (netlink attach and BPF_LINK_CREATE)."""

    UPDATE_IF_NOEXIST = 1 << 0
    SKB_MODE = 1 << 1
    DRV_MODE = 1 << 2
    HW_MODE = 1 << 3
    REPLACE = 1 << 4


class XdpAction(IntEnum):
    """enum xdp_action: what an XDP program returns."""

    ABORTED = 0
    DROP = 1
    PASS = 2
    TX = 3
    REDIRECT = 4


# kernel spellings, for code that reads like the selftests
XDP_MMAP_OFFSETS = SockOpt.MMAP_OFFSETS
XDP_RX_RING = SockOpt.RX_RING
XDP_TX_RING = SockOpt.TX_RING
XDP_UMEM_REG = SockOpt.UMEM_REG
XDP_UMEM_FILL_RING = SockOpt.UMEM_FILL_RING
XDP_UMEM_COMPLETION_RING = SockOpt.UMEM_COMPLETION_RING
XDP_STATISTICS = SockOpt.STATISTICS
XDP_OPTIONS = SockOpt.OPTIONS

XDP_SHARED_UMEM = BindFlag.SHARED_UMEM
XDP_COPY = BindFlag.COPY
XDP_ZEROCOPY = BindFlag.ZEROCOPY
XDP_USE_NEED_WAKEUP = BindFlag.USE_NEED_WAKEUP
XDP_USE_SG = BindFlag.USE_SG

XDP_UMEM_UNALIGNED_CHUNK_FLAG = UmemFlag.UNALIGNED_CHUNK_FLAG
XDP_UMEM_TX_SW_CSUM = UmemFlag.TX_SW_CSUM
XDP_UMEM_TX_METADATA_LEN = UmemFlag.TX_METADATA_LEN

#: ring flags word: the kernel wants a wakeup (poll/sendto) to make progress
XDP_RING_NEED_WAKEUP = 1 << 0
#: xdp_options.flags: the socket is bound in zero-copy mode
XDP_OPTIONS_ZEROCOPY = 1 << 0
#: xdp_desc.options: the packet continues in the next descriptor (multi-buffer)
XDP_PKT_CONTD = 1 << 0
#: xdp_desc.options: the tx frame carries struct xsk_tx_metadata before its data
XDP_TX_METADATA = 1 << 1

#: mmap offsets of the four rings (the socket fd is the file)
XDP_PGOFF_RX_RING = 0
XDP_PGOFF_TX_RING = 0x80000000
XDP_UMEM_PGOFF_FILL_RING = 0x100000000
XDP_UMEM_PGOFF_COMPLETION_RING = 0x180000000

#: unaligned-chunk mode: a descriptor address is (offset << 48) | chunk address
XSK_UNALIGNED_BUF_OFFSET_SHIFT = 48
XSK_UNALIGNED_BUF_ADDR_MASK = (1 << XSK_UNALIGNED_BUF_OFFSET_SHIFT) - 1

#: headroom the kernel reserves in front of a received frame (include/uapi/linux/bpf.h)
XDP_PACKET_HEADROOM = 256

_u16, _u32, _u64 = ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64


class SockaddrXdp(ctypes.Structure):
    """struct sockaddr_xdp: the address an AF_XDP socket binds to."""

    _fields_: ClassVar = [
        ("sxdp_family", _u16),
        ("sxdp_flags", _u16),
        ("sxdp_ifindex", _u32),
        ("sxdp_queue_id", _u32),
        ("sxdp_shared_umem_fd", _u32),
    ]


class XdpRingOffset(ctypes.Structure):
    """struct xdp_ring_offset: where a ring's producer, consumer, descriptors and flags are
    within its mapping."""

    _fields_: ClassVar = [
        ("producer", _u64),
        ("consumer", _u64),
        ("desc", _u64),
        ("flags", _u64),
    ]


class XdpMmapOffsets(ctypes.Structure):
    """struct xdp_mmap_offsets (getsockopt XDP_MMAP_OFFSETS): the four rings' layouts."""

    _fields_: ClassVar = [
        ("rx", XdpRingOffset),
        ("tx", XdpRingOffset),
        ("fr", XdpRingOffset),
        ("cr", XdpRingOffset),
    ]


class XdpUmemReg(ctypes.Structure):
    """struct xdp_umem_reg (setsockopt XDP_UMEM_REG); see `umem_reg_bytes`."""

    _fields_: ClassVar = [
        ("addr", _u64),
        ("len", _u64),
        ("chunk_size", _u32),
        ("headroom", _u32),
        ("flags", _u32),
        ("tx_metadata_len", _u32),
    ]


def bind_flags_str(flags: int) -> str:
    """'XDP_COPY|XDP_USE_NEED_WAKEUP' for bind flags (unknown bits as a number)."""
    names = [f"XDP_{f.name}" for f in BindFlag if f & flags]
    rest = flags & ~sum(BindFlag)
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names) or "0"


#: sizeof(struct xdp_umem_reg_v1): what every kernel accepts
XDP_UMEM_REG_V1_SIZE = 24


def umem_reg_bytes(reg: XdpUmemReg) -> bytes:
    """The option value for XDP_UMEM_REG: the v1 layout (24 bytes, accepted by every
    kernel) when `reg` uses neither flags nor tx_metadata_len, else the whole structure (32
    bytes; a kernel that does not know a flag rejects it with EINVAL rather than ignore
    it). A non-zero tx_metadata_len needs UmemFlag.TX_METADATA_LEN (kernel >= 6.11)."""
    raw = bytes(reg)
    if reg.flags == 0 and reg.tx_metadata_len == 0:
        return raw[:XDP_UMEM_REG_V1_SIZE]
    return raw


class XdpStatistics(ctypes.Structure):
    """struct xdp_statistics (getsockopt XDP_STATISTICS)."""

    _fields_: ClassVar = [
        ("rx_dropped", _u64),
        ("rx_invalid_descs", _u64),
        ("tx_invalid_descs", _u64),
        ("rx_ring_full", _u64),
        ("rx_fill_ring_empty_descs", _u64),
        ("tx_ring_empty_descs", _u64),
    ]

    @classmethod
    def parse(cls, raw: bytes) -> tuple[Self, int]:
        """The structure from what getsockopt returned (zeros past it) and how many of
        its counters the kernel filled (3 before 5.9, 6 since)."""
        if len(raw) % 8 or not 0 < len(raw) <= ctypes.sizeof(cls):
            raise ValueError(f"XDP_STATISTICS returned {len(raw)} bytes")
        return cls.from_buffer_copy(raw.ljust(ctypes.sizeof(cls), b"\0")), len(raw) // 8


class XdpOptions(ctypes.Structure):
    """struct xdp_options (getsockopt XDP_OPTIONS)."""

    _fields_: ClassVar = [("flags", _u32)]


class XdpDesc(ctypes.Structure):
    """struct xdp_desc: an rx/tx ring entry (fill and completion entries are a bare u64
    umem address)."""

    _fields_: ClassVar = [
        ("addr", _u64),
        ("len", _u32),
        ("options", _u32),
    ]
