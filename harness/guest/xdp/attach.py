"""XDP programs on a device, and XSK sockets in an XSKMAP.

`attach_xdp` attaches with a BPF link (BPF_LINK_CREATE, kernel >= 5.9), so the program
is detached when the link is closed or the process dies, never left behind on a device:

    with lb.BpfObject(path) as obj, attach_xdp(obj.program("xsk_redirect"), ifindex,
                                               XdpMode.SKB) as link:
        register_xsk(obj.map("xsks"), 0, xsk)

Calls taking an ifindex act in the calling thread's network namespace.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

from .. import bpf as lb
from .uapi import XdpAttachFlag


class XdpMode(IntEnum):
    """Where the XDP program runs: the attach flag that asks for it."""

    #: whatever the device supports best (native if the driver has it, else generic)
    AUTO = 0
    #: generic XDP in the stack's receive path, for any device (XDP_FLAGS_SKB_MODE)
    SKB = XdpAttachFlag.SKB_MODE
    #: native XDP in the driver (XDP_FLAGS_DRV_MODE); EOPNOTSUPP where the driver has none
    DRV = XdpAttachFlag.DRV_MODE
    #: offloaded to the NIC (XDP_FLAGS_HW_MODE)
    HW = XdpAttachFlag.HW_MODE


class HasFileno(Protocol):
    """A socket: anything with fileno()."""

    def fileno(self) -> int: ...


def attach_xdp(prog: lb.HasFd | int, ifindex: int, mode: XdpMode = XdpMode.SKB, *,
               flags: int = 0) -> lb.Link:
    """Attach XDP program `prog` to device `ifindex` in `mode` through a BPF link and
    return the link (a context manager: closing it detaches the program; `link.detach()`
    detaches it while the fd stays open). `flags` adds other XdpAttachFlag bits. OSError
    with the kernel's errno if refused (e.g. EEXIST: the device already has an XDP
    program, in any mode; EOPNOTSUPP: no native XDP in that driver)."""
    what = f"XDP link on ifindex {ifindex} in {mode.name} mode (XDP_FLAGS {int(mode) | flags:#x})"
    try:
        link = lb.link_create(prog, ifindex, lb.AttachType.XDP, flags=int(mode) | flags)
    except OSError as exc:
        raise lb.oserror(exc.errno or 0, f"bpf_link_create({what})") from exc
    link.what = what
    return link


def register_xsk(xskmap: lb.Map, queue_id: int, sock: HasFileno | int) -> None:
    """Insert an XSK socket (or its fd) into an XSKMAP at `queue_id`, the key the program
    redirects with (``bpf_redirect_map(&xsks, ctx->rx_queue_index, ...)``). The kernel
    accepts only a bound socket; the entry goes away when the socket is closed."""
    fd = sock if isinstance(sock, int) else sock.fileno()
    xskmap.update(queue_id, fd)


def unregister_xsk(xskmap: lb.Map, queue_id: int) -> None:
    """Remove the XSKMAP entry at `queue_id`."""
    xskmap.delete(queue_id)
