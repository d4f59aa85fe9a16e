"""AF_XDP sockets and XSKMAP redirects."""

from __future__ import annotations

import socket

from ..uapi import AF_XDP
from .base import Unsupported, bpf_object, oserror_detail


def probe_af_xdp() -> str:
    try:
        sock = socket.socket(AF_XDP, socket.SOCK_RAW, 0)
    except OSError as exc:
        raise Unsupported(oserror_detail(exc, "socket(AF_XDP, SOCK_RAW)")) from exc
    with sock, bpf_object("probe_xdp") as obj:
        prog = obj.program("probe_xsk_redirect")
        return (f"socket(AF_XDP, SOCK_RAW) fd {sock.fileno()}; XDP program redirecting to an "
                f"XSKMAP loaded: prog id {prog.id}")
