"""BPF socket iterators (iter/tcp, iter/udp, iter/unix) and bpf_sock_destroy."""

from __future__ import annotations

import socket

from .base import Unsupported, bpf_object


def probe_iter(prog_name: str, what: str) -> str:
    """Load the iterator, create it with a socket of its kind open, and find that socket
    in what the iterator prints."""
    if what == "unix":
        socks = list(socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM))
        expect = "unix "
    else:
        kind = socket.SOCK_STREAM if what == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET, kind)
        sock.bind(("127.0.0.1", 0))
        if what == "tcp":
            sock.listen(1)
        socks = [sock]
        expect = f"{what} {sock.getsockname()[1]}"
    try:
        with bpf_object("probe_iter", autoload=[prog_name]) as obj, \
                obj.program(prog_name).attach_iter() as link:
            text = link.read_iter()
            link_id = link.info().id
    finally:
        for sock in socks:
            sock.close()
    if expect not in text:
        raise Unsupported(f"iter/{what}: iterator read, but {expect!r} not in {text!r}")
    return (f"iter/{what} loaded, bpf_program__attach_iter link id {link_id}, read "
            f"{len(text.splitlines())} line(s) incl. {expect!r}")


def probe_sock_destroy() -> str:
    with bpf_object("probe_sock_destroy") as obj:
        with obj.program("probe_sock_destroy").attach_iter() as link:
            link.read_iter()
            link_id = link.info().id
        return (f"iter/tcp program calling kfunc bpf_sock_destroy loaded, "
                f"iterator link id {link_id} created and read")
