"""What a probe returns, and the pieces every probe uses.

A probe does the real thing the feature's cases rely on and tells apart:

- the kernel said no: the operation that *defines* the feature failed (wrapped in
  `kernel_says(...)`), or the kernel did not do what it accepted (`Unsupported` raised by
  the probe with the evidence): `unsupported`, with the errno;
- the probe could not run: any other exception (a missing BPF object, a harness bug, a
  tool that is not there): `error`, with the traceback. An error is never "unsupported".
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from .. import bpf as lb

SUPPORTED, UNSUPPORTED, ERROR = "supported", "unsupported", "error"


@dataclass(frozen=True)
class ProbeResult:
    feature: str
    #: supported / unsupported (the kernel said no) / error (the probe could not run)
    status: str
    #: what worked, the kernel's answer, or the traceback
    detail: str

    @property
    def supported(self) -> bool:
        return self.status == SUPPORTED

    def as_dict(self) -> dict[str, object]:
        return {"supported": self.supported, "status": self.status, "detail": self.detail}


class Unsupported(Exception):
    """Raised inside a probe: the kernel refused the feature, with the evidence."""


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


@contextlib.contextmanager
def kernel_says(what: str = "") -> Iterator[None]:
    """Around the operation that defines the feature: an OSError from it is the kernel's
    answer (Unsupported with its errno), not a broken probe."""
    try:
        yield
    except OSError as exc:
        raise Unsupported(oserror_detail(exc, what)) from exc


def bpf_object(name: str, *, load_defines_feature: bool = False,
               **kwargs: object) -> lb.BpfObject:
    """bpf/NAME's object, loaded. Finding it is the harness's business (a missing object is
    an error); loading it is the kernel's answer only where the load itself is the feature
    (an iterator target or a kfunc the kernel may not have)."""
    path = lb.object_path(name)
    if not load_defines_feature:
        return lb.BpfObject(path, **kwargs)  # type: ignore[arg-type]
    with kernel_says(f"load {name}"):
        return lb.BpfObject(path, **kwargs)  # type: ignore[arg-type]


def tcp_pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    """A connected TCP pair over 127.0.0.1 (listener, client, accepted)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    return listener, client, server
