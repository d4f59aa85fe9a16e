"""What a probe returns, and the pieces every probe uses."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from .. import bpf as lb


@dataclass(frozen=True)
class ProbeResult:
    feature: str
    supported: bool
    detail: str


class Unsupported(Exception):
    """Raised inside a probe to report the feature missing, with the evidence."""


def oserror_detail(exc: OSError, what: str = "") -> str:
    """'what: ENAME (message)' from any OSError (libbpf's already read that way)."""
    msg = str(exc.strerror or exc)
    if exc.errno is not None and lb.errno_name(exc.errno) in msg:
        text = msg
    else:
        name = lb.errno_name(exc.errno) if exc.errno is not None else "error"
        text = f"{what}: {name} ({msg})" if what else f"{name} ({msg})"
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 4:  # the call + the last lines of libbpf's log
        lines = [lines[0], "...", *lines[-3:]]
    return " | ".join(lines)


def bpf_object(name: str, **kwargs: object) -> lb.BpfObject:
    return lb.BpfObject(lb.object_path(name), **kwargs)  # type: ignore[arg-type]


def tcp_pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    """A connected TCP pair over 127.0.0.1 (listener, client, accepted)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    return listener, client, server
