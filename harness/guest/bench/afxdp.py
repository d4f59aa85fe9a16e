"""Guest side of the AF_XDP bypass benchmark (benchmarks/afxdp_bench.py drives it).

One UDP flow, from a peer namespace to a server, over two data paths built the same way
(a veth pair, the peer at 10.200.0.2):

- ``stack``:  the server socket is in the NIC's namespace (10.200.0.1): veth -> the guest
              stack -> a UDP socket (the reference);
- ``bypass``: the server socket is in the VM's namespace (10.200.0.3) behind the bypass
              path: veth -> XDP steering -> XSK -> our AF_XDP backend -> unix socket
              (QEMU stream framing) -> TAP relay -> the VM's stack -> a UDP socket, and
              back the same way (harness/guest/xdp/vmpath.py).

Per path: frames per second (the peer sends `size`-byte datagrams for `duration`
seconds as fast as a blocking socket allows, the server counts what arrives; datagrams
the path drops count as lost, not as throughput) and round-trip latency (`size`-byte
ping-pong for `duration` seconds: median and p99 in microseconds). Every path is first
run briefly and discarded (under TCG the first traffic through a code path pays for
translating it), then measured in `rounds` rounds with the order rotated; each path
reports its median round. Every socket and thread has a deadline: a stuck path is an
error entry, not a hung guest.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from ..net.links import delete_link
from ..net.netns import create_netns, remove_netns, socket_in
from ..net.veth import create_veth_pair
from ..wait import unique_name
from ..xdp.attach import XdpMode
from ..xdp.vmpath import Addrs, BypassPath, BypassSpec, configure
from .netkit import rotated

PATHS = ("stack", "bypass")
SIZE = 64
PORT = 5301
#: how long a datagram that has not arrived yet may still come
DRAIN = 0.5


@dataclass(frozen=True)
class Endpoint:
    """Where the client (peer namespace) sends and the server listens."""

    client_ns: str
    server_ns: str
    server_ip: str


@contextmanager
def path(kind: str, mode: XdpMode = XdpMode.SKB) -> Iterator[Endpoint]:
    """Namespaces, a veth pair and, for ``bypass``, the whole bypass path."""
    addrs = Addrs()
    made: list[str] = []
    with ExitStack() as stack:
        for _ in range(3):
            name = unique_name("kxb", limit=15)
            create_netns(name)
            made.append(name)
        for name in made:
            stack.callback(remove_netns, name)
        nic_ns, peer_ns, vm_ns = made
        pair = create_veth_pair(netns_a=nic_ns, netns_b=peer_ns, prefix="kxw",
                                addresses=False)
        stack.callback(delete_link, pair.a.name, netns=nic_ns)
        if kind == "stack":
            configure(peer_ns, pair.b.name, addrs.peer_ip, addrs.prefix)
            configure(nic_ns, pair.a.name, addrs.nic_ip, addrs.prefix)
            yield Endpoint(peer_ns, nic_ns, addrs.nic_ip)
            return
        spec = BypassSpec(nic_ns, pair.a.name, peer_ns, pair.b.name, vm_ns, mode=mode,
                          record=False)
        bypass = stack.enter_context(BypassPath(spec))
        yield Endpoint(peer_ns, vm_ns, addrs.vm_ip)
        bypass.check()


def _server(ep: Endpoint, timeout: float) -> socket.socket:
    sock = socket_in(ep.server_ns, socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ep.server_ip, PORT))
    sock.settimeout(timeout)
    return sock


def _client(ep: Endpoint, timeout: float) -> socket.socket:
    sock = socket_in(ep.client_ns, socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    sock.connect((ep.server_ip, PORT))
    return sock


def rr(ep: Endpoint, duration: float, size: int = SIZE) -> dict[str, Any]:
    """UDP ping-pong for `duration` seconds: round trips, median/p99/mean in us."""
    timeout = 10.0 + duration
    stop = threading.Event()
    box: dict[str, BaseException] = {}
    with _server(ep, 0.1) as srv, _client(ep, timeout) as cli:
        def echo() -> None:
            try:
                while not stop.is_set():
                    try:
                        data, addr = srv.recvfrom(65535)
                    except TimeoutError:
                        continue
                    srv.sendto(data, addr)
            except BaseException as exc:
                box["error"] = exc

        echoer = threading.Thread(target=echo, name="afxdp-bench-echo")
        echoer.start()
        rtts: list[float] = []
        try:
            req = bytes((i * 13 + 5) & 0xFF for i in range(size))
            first = time.monotonic()
            while time.monotonic() - first < duration or not rtts:
                t = time.perf_counter()
                cli.send(req)
                if cli.recv(65535) != req:
                    raise AssertionError("rr: the echo differs")
                rtts.append(time.perf_counter() - t)
        finally:
            stop.set()
            echoer.join(timeout)
        if "error" in box:
            raise box["error"]
    rtts.sort()
    return {"round_trips": len(rtts), "size": size,
            "median_us": statistics.median(rtts) * 1e6,
            "p99_us": rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))] * 1e6,
            "mean_us": statistics.mean(rtts) * 1e6}


def blast(ep: Endpoint, duration: float, size: int = SIZE) -> dict[str, Any]:
    """One-way datagrams for `duration` seconds: sent, received, frames per second
    (received / the receiver's span)."""
    timeout = 10.0 + duration
    stop = threading.Event()
    box: dict[str, Any] = {"received": 0}
    with _server(ep, 0.05) as srv, _client(ep, timeout) as cli:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

        def count() -> None:
            try:
                while True:
                    try:
                        srv.recv(65535)
                    except TimeoutError:
                        if stop.is_set():
                            return
                        continue
                    box["received"] += 1
                    box.setdefault("first", time.monotonic())
                    box["last"] = time.monotonic()
            except BaseException as exc:
                box["error"] = exc

        counter = threading.Thread(target=count, name="afxdp-bench-count")
        counter.start()
        sent = 0
        payload = bytes(size)
        try:
            end = time.monotonic() + duration
            while time.monotonic() < end:
                cli.send(payload)
                sent += 1
            time.sleep(DRAIN)  # the last datagrams still in flight
        finally:
            stop.set()
            counter.join(timeout)
        if "error" in box:
            raise box["error"]
    received = int(box["received"])
    span = float(box.get("last", 0.0)) - float(box.get("first", 0.0))
    fps = received / span if received > 1 and span > 0 else 0.0
    return {"sent": sent, "received": received, "seconds": span, "fps": fps, "size": size}


def measure(kind: str, duration: float, size: int = SIZE,
            mode: XdpMode = XdpMode.SKB) -> dict[str, Any]:
    """{"blast": frames per second, "rr": ping-pong} for one path, or {"error": ...}."""
    try:
        with path(kind, mode) as ep:
            return {"blast": blast(ep, duration, size), "rr": rr(ep, duration, size)}
    except Exception as exc:  # any failure of a path is an entry, not a crash
        return {"error": f"{type(exc).__name__}: {exc}"}


def fold(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One path's rounds folded: the blast of median frame rate and the RR of median
    latency (each a real measured round, not an average); an error if none worked."""
    good = [r for r in rounds if "error" not in r]
    if not good:
        return {"error": rounds[-1]["error"] if rounds else "no rounds", "rounds": rounds}
    blasts = sorted((r["blast"] for r in good), key=lambda x: float(x["fps"]))
    rrs = sorted((r["rr"] for r in good), key=lambda x: float(x["median_us"]))
    return {"blast": blasts[(len(blasts) - 1) // 2], "rr": rrs[(len(rrs) - 1) // 2],
            "rounds": rounds}


def ratios(paths: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """bypass / stack: frame rate (> 1: the bypass is faster) and median RTT (< 1: the
    bypass is faster); None where either path has no figure."""
    base, other = paths.get("stack", {}), paths.get("bypass", {})
    fps = rtt = None
    if "blast" in base and "blast" in other and base["blast"]["fps"]:
        fps = float(other["blast"]["fps"]) / float(base["blast"]["fps"])
    if "rr" in base and "rr" in other and base["rr"]["median_us"]:
        rtt = float(other["rr"]["median_us"]) / float(base["rr"]["median_us"])
    return {"fps": fps, "latency": rtt}


def run(duration: float = 1.0, paths: tuple[str, ...] = PATHS, size: int = SIZE,
        rounds: int = 3, mode: str = "skb") -> dict[str, Any]:
    """Every path's figures (median round of `rounds` after a warm-up) and the kernel."""
    from ..probes import probe

    xmode = XdpMode.DRV if mode == "drv" else XdpMode.SKB
    af = probe("af_xdp")
    out: dict[str, Any] = {"release": os.uname().release, "duration_s": duration,
                           "size": size, "rounds": rounds, "mode": mode,
                           "af_xdp_probe": {"supported": af.supported, "detail": af.detail},
                           "paths": {}}
    usable = [k for k in paths if af.supported or k != "bypass"]
    for kind in paths:
        if kind not in usable:
            out["paths"][kind] = {"skipped": f"af_xdp unsupported: {af.detail}"}
    for kind in usable:  # warm-up, discarded
        measure(kind, max(0.2, duration / 4), size, xmode)
    measured: dict[str, list[dict[str, Any]]] = {k: [] for k in usable}
    for r in range(max(1, rounds)):
        for kind in rotated(usable, r):
            measured[kind].append(measure(kind, duration, size, xmode))
    for kind in usable:
        out["paths"][kind] = fold(measured[kind])
    out["ratios"] = ratios(out["paths"])
    return out
