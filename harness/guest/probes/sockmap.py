"""sockmap/sockhash maps and the sk_msg/sk_skb verdict programs, with real bytes."""

from __future__ import annotations

from .. import bpf as lb
from ..net.sockets import cookie
from .base import Unsupported, bpf_object, kernel_says, tcp_pair


def probe_sockmap_type(map_type_name: str) -> str:
    """Create a map of type BPF_MAP_TYPE_`map_type_name`, insert a connected TCP socket,
    read its cookie back."""
    map_type = lb.MapType[map_type_name]
    listener, client, server = tcp_pair()
    with listener, client, server:
        with kernel_says(f"bpf_map_create(BPF_MAP_TYPE_{map_type.name})"):
            smap = lb.create_map(map_type, 4, 8, 2)
        with smap:
            with kernel_says(f"BPF_MAP_UPDATE_ELEM({map_type.name}, connected TCP socket)"):
                smap.update(0, client.fileno())
            got = smap.lookup_int(0)  # 8-byte values read back as the socket cookie
            want = cookie(client)
            if got != want:
                raise Unsupported(f"{map_type.name}: lookup gave cookie {got}, socket has "
                                  f"{want}")
            return (f"bpf_map_create(BPF_MAP_TYPE_{map_type.name}) + update with a "
                    f"connected TCP socket, lookup returns its cookie {got}: map id "
                    f"{smap.id}")


def probe_sk_prog(prog_name: str, attach_type_name: str) -> str:
    """Attach `prog_name` (an SK_PASS verdict) with BPF_`attach_type_name`, the way the
    cases do, insert a connected TCP pair and see bytes pass through it."""
    attach_type = lb.AttachType[attach_type_name]
    listener, client, server = tcp_pair()
    with listener, client, server, bpf_object("probe_sockmap", autoload=[prog_name]) as obj:
        smap = obj.map("sock_map")
        prog = obj.program(prog_name)
        with kernel_says(f"bpf_prog_attach({prog_name}, sockmap, BPF_{attach_type.name})"):
            lb.prog_attach(prog, smap.fd, attach_type)
        try:
            with kernel_says("BPF_MAP_UPDATE_ELEM(sockmap with a verdict program)"):
                smap.update(0, client.fileno())
                smap.update(1, server.fileno())
            client.sendall(b"ping")
            server.settimeout(5)
            try:
                data = server.recv(16)
            except TimeoutError:
                raise Unsupported(f"BPF_{attach_type.name}: 4 bytes sent through an SK_PASS "
                                  "verdict never arrived") from None
        finally:
            lb.prog_detach(prog, smap.fd, attach_type)
        if data != b"ping":
            raise Unsupported(f"BPF_{attach_type.name}: sent b'ping', received {data!r}")
        return (f"bpf_prog_attach({prog_name}, sockmap, BPF_{attach_type.name}) + connected "
                f"TCP sockets inserted, {len(data)} bytes passed the verdict")
