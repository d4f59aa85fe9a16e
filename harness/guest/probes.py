"""Feature probes: does the booted kernel do X? Answered by trying X, never by version.

Each probe does the real thing the feature's tests need, in a private network namespace
(a helper thread that unshares its netns, so nothing shows up on the host's devices and
parallel tests never see a probe's attachment), and reports a `ProbeResult`:

- supported: what worked, e.g. ``bpf_link_create(BPF_TCX_INGRESS) on lo: link id 7``
- unsupported: the call that failed with the kernel's errno name and message, e.g.
  ``bpf_link_create(BPF_TCX_INGRESS, target=1, flags=0): EINVAL (Invalid argument)``

A missing feature is never an exception. Results are cached per process.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

from . import libbpf as lb


@dataclass(frozen=True)
class ProbeResult:
    feature: str
    supported: bool
    detail: str


class _Unsupported(Exception):
    """Raised inside a probe to report the feature missing, with the evidence."""


def _oserror_detail(exc: OSError, what: str = "") -> str:
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


# --------------------------------------------------------------------------- helpers

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
AF_XDP = 44
SO_COOKIE = 57


def _run_in_private_netns(fn: Callable[[], str]) -> str:
    """Run `fn` in a new thread that first moves itself into a fresh network namespace
    (unshare(CLONE_NEWNET) affects only the calling thread); the namespace dies with it."""
    box: dict[str, object] = {}

    def body() -> None:
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
            _set_up("lo")
            box["result"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=body, name="kmatrix-probe")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return str(box["result"])


def _set_up(ifname: str) -> None:
    """ip link set IFNAME up, via SIOCSIFFLAGS (in the calling thread's netns)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", ifname.encode(), 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", ifname.encode(), flags | IFF_UP))


def _obj(name: str, **kwargs: object) -> lb.BpfObject:
    from ..bpfobj import object_path

    return lb.BpfObject(object_path(name), **kwargs)  # type: ignore[arg-type]


def _tcp_pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    """A connected TCP pair over 127.0.0.1 (listener, client, accepted)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    return listener, client, server


# --------------------------------------------------------------------------- probes


def _probe_tcx() -> str:
    with _obj("probe_tc") as obj:
        prog = obj.program("probe_tc")
        link = lb.link_create(prog, 1, lb.BPF_TCX_INGRESS)
        with link:
            info = link.info()
            q = lb.prog_query(1, lb.BPF_TCX_INGRESS)
            if q.link_ids != [info.id]:
                raise _Unsupported(f"TCX link {info.id} created but query shows {q}")
        return (f"bpf_link_create(BPF_TCX_INGRESS) on lo: link id {info.id}, "
                f"query revision {q.revision}")


def _probe_netkit() -> str:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname="kmxprobe0", kind="netkit")
        except NetlinkError as exc:
            raise _Unsupported(
                f"RTM_NEWLINK kind netkit: {lb.errno_name(exc.code)} "
                f"({os.strerror(exc.code)})") from exc
        try:
            ifindex = ipr.link_lookup(ifname="kmxprobe0")[0]
            with _obj("probe_tc") as obj, lb.link_create(
                obj.program("probe_tc"), ifindex, lb.BPF_NETKIT_PRIMARY
            ) as link:
                link_id = link.info().id
        finally:
            ipr.link("del", ifname="kmxprobe0")
    return (f"netkit pair created (RTM_NEWLINK kind netkit), "
            f"bpf_link_create(BPF_NETKIT_PRIMARY): link id {link_id}, pair deleted")


def _probe_arena() -> str:
    with lb.create_map(lb.MapType.ARENA, 0, 0, 1, name="kmx_probe_arena",
                       map_flags=lb.BPF_F_MMAPABLE) as arena:
        with arena.mmap() as mem:
            mem[0:4] = b"kmx!"
            if mem[0:4] != b"kmx!":
                raise _Unsupported("arena page mapped but did not keep what was written")
        return (f"bpf_map_create(BPF_MAP_TYPE_ARENA, 1 page, BPF_F_MMAPABLE) + mmap: "
                f"map id {arena.id}")


def _probe_sockmap_type(map_type: lb.MapType) -> str:
    listener, client, server = _tcp_pair()
    with listener, client, server, lb.create_map(map_type, 4, 8, 2) as smap:
        smap.update(0, client.fileno())
        cookie = smap.lookup_int(0)  # 8-byte values read back as the socket cookie
        want = int.from_bytes(client.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), "little")
        if cookie != want:
            raise _Unsupported(f"{map_type.name}: lookup gave cookie {cookie}, socket has {want}")
        return (f"bpf_map_create(BPF_MAP_TYPE_{map_type.name}) + update with a connected "
                f"TCP socket, lookup returns its cookie {cookie}: map id {smap.id}")


def _probe_sk_prog(prog_name: str, attach_type: lb.AttachType) -> str:
    listener, client, server = _tcp_pair()
    with listener, client, server, _obj("probe_sockmap", autoload=[prog_name]) as obj:
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


def _probe_af_xdp() -> str:
    try:
        sock = socket.socket(AF_XDP, socket.SOCK_RAW, 0)
    except OSError as exc:
        raise _Unsupported(_oserror_detail(exc, "socket(AF_XDP, SOCK_RAW)")) from exc
    with sock, _obj("probe_xdp") as obj:
        prog = obj.program("probe_xsk_redirect")
        return (f"socket(AF_XDP, SOCK_RAW) fd {sock.fileno()}; XDP program redirecting to an "
                f"XSKMAP loaded: prog id {prog.id}")


def _probe_iter(prog_name: str, what: str) -> str:
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
        with _obj("probe_iter", autoload=[prog_name]) as obj, \
                obj.program(prog_name).attach_iter() as link:
            text = link.read_iter()
            link_id = link.info().id
    finally:
        for sock in socks:
            sock.close()
    if expect not in text:
        raise _Unsupported(f"iter/{what}: iterator read, but {expect!r} not in {text!r}")
    return (f"iter/{what} loaded, bpf_program__attach_iter link id {link_id}, read "
            f"{len(text.splitlines())} line(s) incl. {expect!r}")


def _probe_sock_destroy() -> str:
    with _obj("probe_sock_destroy") as obj:
        with obj.program("probe_sock_destroy").attach_iter() as link:
            link.read_iter()
            link_id = link.info().id
        return (f"iter/tcp program calling kfunc bpf_sock_destroy loaded, "
                f"iterator link id {link_id} created and read")


_PROBES: dict[str, Callable[[], str]] = {
    "tcx": _probe_tcx,
    "netkit": _probe_netkit,
    "arena": _probe_arena,
    "sockmap": lambda: _probe_sockmap_type(lb.MapType.SOCKMAP),
    "sockhash": lambda: _probe_sockmap_type(lb.MapType.SOCKHASH),
    "sk_msg": lambda: _probe_sk_prog("probe_sk_msg", lb.BPF_SK_MSG_VERDICT),
    "sk_skb": lambda: _probe_sk_prog("probe_sk_skb_verdict", lb.BPF_SK_SKB_STREAM_VERDICT),
    "af_xdp": _probe_af_xdp,
    "bpf_iter_tcp": lambda: _probe_iter("probe_iter_tcp", "tcp"),
    "bpf_iter_udp": lambda: _probe_iter("probe_iter_udp", "udp"),
    "bpf_iter_unix": lambda: _probe_iter("probe_iter_unix", "unix"),
    "bpf_sock_destroy": _probe_sock_destroy,
}

FEATURES: tuple[str, ...] = tuple(_PROBES)


@functools.cache
def probe(feature: str) -> ProbeResult:
    """Try `feature` in the running kernel (cached per process). Unknown names raise
    ValueError (a typo in a marker must not turn into a silent skip)."""
    try:
        fn = _PROBES[feature]
    except KeyError:
        raise ValueError(f"unknown feature {feature!r}; known: {', '.join(FEATURES)}") from None
    try:
        return ProbeResult(feature, True, _run_in_private_netns(fn))
    except _Unsupported as exc:
        return ProbeResult(feature, False, str(exc))
    except OSError as exc:
        return ProbeResult(feature, False, _oserror_detail(exc))
    except Exception as exc:  # the probe itself broke: report it, never raise
        return ProbeResult(feature, False, f"probe error: {type(exc).__name__}: {exc}")


def probe_all(before: Callable[[str], None] | None = None) -> dict[str, ProbeResult]:
    """Every feature's result, in FEATURES order; `before(feature)` is called before each
    probe (the agent reports progress with it)."""
    out: dict[str, ProbeResult] = {}
    for feature in FEATURES:
        if before is not None:
            before(feature)
        out[feature] = probe(feature)
    return out


def main() -> None:
    """`python -m harness.guest.probes`: print the table (run it in the guest)."""
    for result in probe_all().values():
        mark = "yes" if result.supported else "NO "
        print(f"{result.feature:18} {mark}  {result.detail}")


if __name__ == "__main__":
    main()


__all__ = ["FEATURES", "ProbeResult", "probe", "probe_all"]
