"""sockmap/sockhash maps and the sk_msg/sk_skb verdict programs."""

from __future__ import annotations

import socket

from .. import bpf as lb
from ..uapi import SO_COOKIE
from .base import Unsupported, bpf_object, tcp_pair


def probe_sockmap_type(map_type: lb.MapType) -> str:
    listener, client, server = tcp_pair()
    with listener, client, server, lb.create_map(map_type, 4, 8, 2) as smap:
        smap.update(0, client.fileno())
        cookie = smap.lookup_int(0)  # 8-byte values read back as the socket cookie
        want = int.from_bytes(client.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), "little")
        if cookie != want:
            raise Unsupported(f"{map_type.name}: lookup gave cookie {cookie}, socket has {want}")
        return (f"bpf_map_create(BPF_MAP_TYPE_{map_type.name}) + update with a connected "
                f"TCP socket, lookup returns its cookie {cookie}: map id {smap.id}")


def probe_sk_prog(prog_name: str, attach_type: lb.AttachType) -> str:
    listener, client, server = tcp_pair()
    with listener, client, server, bpf_object("probe_sockmap", autoload=[prog_name]) as obj:
        smap = obj.map("sock_map")
        prog = obj.program(prog_name)
        lb.prog_attach(prog, smap.fd, attach_type)
        try:
            smap.update(0, client.fileno())
            smap.update(1, server.fileno())
            client.sendall(b"ping")
            server.settimeout(5)
            data = server.recv(16)
        finally:
            lb.prog_detach(prog, smap.fd, attach_type)
        return (f"bpf_prog_attach({prog_name}, sockmap, BPF_{attach_type.name}) + connected "
                f"TCP sockets inserted, {len(data)} bytes passed the verdict")
