"""AF_XDP from Python: UMEM, rings and XSK sockets over the socket API, mmap and ctypes
(libbpf >= 1.0 has no xsk.h, and there is no Python AF_XDP binding), plus attaching XDP
programs and filling XSKMAPs.

Modules: `uapi` (constants and structures of <linux/if_xdp.h>), `ring` (producer and
consumer rings over a shared buffer, libxdp's xsk.h semantics; x86-64 only, see its
memory-ordering note), `sockopt` (one function per AF_XDP socket call), `umem` (the packet
memory, its fill/completion rings, a free-frame pool), `xsk` (XskSocket: rx, tx,
completions, statistics), `attach` (XDP links, XSKMAP entries). This package re-exports
their public names: ``from harness.guest import xdp`` then ``xdp.Umem(...)``.

Built on them, imported by module (not re-exported): `frames` (numbered test frames,
checksums), `rig` (what the AF_XDP cases share: sockets, programs, exact send/receive),
`device` (XDP state, MTU, promiscuity, ethtool tx checksum and channels, borrowing NICs),
`stream` (QEMU -netdev stream framing), `steer` (the bypass steering program), `bypass`
(the AF_XDP backend and the TAP relay standing in for QEMU), `vmpath` (the whole bypass
path), `qemu` (a nested QEMU's af-xdp netdev), `netdevsim` (simulated NICs, the queue
lender), `lease` (netkit devices with room for leased queues).

Calls taking an ifindex act in the calling thread's network namespace.
"""

from __future__ import annotations

from .attach import HasFileno, XdpMode, attach_xdp, register_xsk, unregister_xsk
from .ring import (
    ADDR_SIZE,
    DESC_SIZE,
    ConsumerRing,
    Desc,
    ProducerRing,
    Ring,
    RingOffsets,
    decode_desc,
    encode_desc,
    require_tso,
    ring_layout,
)
from .sockopt import XskOptions, XskStatistics
from .uapi import (
    XDP_COPY,
    XDP_OPTIONS_ZEROCOPY,
    XDP_PACKET_HEADROOM,
    XDP_PKT_CONTD,
    XDP_RING_NEED_WAKEUP,
    XDP_SHARED_UMEM,
    XDP_USE_NEED_WAKEUP,
    XDP_USE_SG,
    XDP_ZEROCOPY,
    BindFlag,
    UmemFlag,
    XdpAction,
    XdpAttachFlag,
)
from .umem import Umem, UmemConfig, UmemRings
from .xsk import RxFrame, XskConfig, XskSocket, join_packets

__all__ = [
    "ADDR_SIZE",
    "DESC_SIZE",
    "XDP_COPY",
    "XDP_OPTIONS_ZEROCOPY",
    "XDP_PACKET_HEADROOM",
    "XDP_PKT_CONTD",
    "XDP_RING_NEED_WAKEUP",
    "XDP_SHARED_UMEM",
    "XDP_USE_NEED_WAKEUP",
    "XDP_USE_SG",
    "XDP_ZEROCOPY",
    "BindFlag",
    "ConsumerRing",
    "Desc",
    "HasFileno",
    "ProducerRing",
    "Ring",
    "RingOffsets",
    "RxFrame",
    "Umem",
    "UmemConfig",
    "UmemFlag",
    "UmemRings",
    "XdpAction",
    "XdpAttachFlag",
    "XdpMode",
    "XskConfig",
    "XskOptions",
    "XskSocket",
    "XskStatistics",
    "attach_xdp",
    "decode_desc",
    "encode_desc",
    "join_packets",
    "register_xsk",
    "require_tso",
    "ring_layout",
    "unregister_xsk",
]
