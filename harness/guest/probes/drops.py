"""skb:kfree_skb with its drop reason (5.17): the program the per-case evidence attaches
(bpf/drop_reasons.bpf.c, `drop_reason`) loads and attaches, and a UDP datagram to a closed
port is counted in this namespace with the reason the kernel gave.

- kfree_skb_reason: the reason argument is there (a 2-argument tracepoint refuses the
  program at load) and a real drop comes back with a reason the kernel's BTF names;
- drop_reason_no_socket: that reason is NO_SOCKET.
"""

from __future__ import annotations

import socket

from ..evidence.drops import REASON_PROGRAM, DropCounter, DropsUnavailable
from ..evidence.snapshot import current_id
from .base import Unsupported

#: a port nothing listens on in the probe's fresh namespace
CLOSED_PORT = 9


def _observe() -> tuple[str, str, int]:
    """Attach, drop one datagram here; (reason name, location, reason number)."""
    try:
        counter = DropCounter(programs=(REASON_PROGRAM,))
    except DropsUnavailable as exc:
        raise Unsupported(str(exc)) from exc
    with counter:
        here = current_id()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"kmatrix drop probe", ("127.0.0.1", CLOSED_PORT))
        ours = [(key, n) for key, n in counter.drain().items()
                if (key.netns_cookie or key.netns_inum) == (here.cookie or here.inum)]
        if not ours:
            raise Unsupported("tp_btf/kfree_skb attached, but a UDP datagram to a closed "
                              "port in this namespace was not seen dropped")
        key, _ = ours[0]
        name = counter.names.name(key.reason)
        if name is None or not counter.names.core:
            raise Unsupported(f"drop seen, reason {key.reason} not named by the kernel's BTF "
                              "(no enum skb_drop_reason)")
        return name, counter.location(key.location), key.reason


def probe_kfree_skb_reason() -> str:
    name, where, code = _observe()
    return (f"tp_btf/kfree_skb ({REASON_PROGRAM}) attached; a UDP datagram to a closed port "
            f"dropped with reason {code} ({name}) at {where}")


def probe_drop_reason_no_socket() -> str:
    name, where, code = _observe()
    if name != "NO_SOCKET":
        raise Unsupported(f"a UDP datagram to a closed port was dropped with reason {code} "
                          f"({name}) at {where}, not NO_SOCKET")
    return f"UDP to a closed port: reason {code} (NO_SOCKET) at {where}"
