"""Guest side of the netkit benchmark (benchmarks/netkit_bench.py drives it).

TCP between two network namespaces over four data paths:

- ``host``:      both ends in one namespace, over loopback (the reference);
- ``netkit-l3``: a netkit pair in L3 mode (the kernel default), primary in ns A, peer in ns B;
- ``netkit-l2``: the same in L2 mode (ARP, Ethernet headers);
- ``veth``:      a veth pair, one end in each namespace.

Per path: stream throughput (a sender thread in ns A writes 64 KiB for `duration` seconds, a
receiver thread in ns B counts the bytes until EOF) and request/response latency (`rr_size`
bytes each way, an echo thread in ns B, median and p99 round trip in microseconds over
`duration` seconds). Every socket has a timeout and every thread a bounded join: a stuck
path is an error entry, not a hung guest. If netkit is unsupported
(harness.guest.probes.probe("netkit")), both netkit paths are reported skipped with the
probe's detail.

Order effects: under TCG the first traffic through a code path pays for translating it,
and a shared host drifts. So every path is first run once, briefly, and discarded
(warm-up), then measured in `rounds` rounds with the path order rotated each round; each
path reports its median round (stream and RR each), all rounds kept under "rounds".
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from ..net.links import wait_for_oper_up
from ..net.netns import create_netns, remove_netns, run_in_netns
from ..net.sockets import read_exact
from ..net.veth import create_veth_pair
from ..wait import unique_name

PATHS = ("host", "netkit-l3", "netkit-l2", "veth")
WRITE_SIZE = 65536
RR_SIZE = 1
PORT = 5201
PREFIX = 30


@dataclass(frozen=True)
class Endpoints:
    """Where the client (ns_a) and server (ns_b, listening on ip_b) live."""

    ns_a: str
    ns_b: str
    ip_b: str


def _configure(ns: str, ifname: str, ip: str) -> None:
    from pyroute2 import IPRoute

    with run_in_netns(ns), IPRoute() as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        ipr.addr("add", index=index, address=ip, prefixlen=PREFIX)
        ipr.link("set", index=index, state="up")


@contextmanager
def _path(kind: str) -> Iterator[Endpoints]:
    """Two namespaces (one for ``host``) connected by data path `kind`."""
    ns_a, ns_b = unique_name("nba"), unique_name("nbb")
    made: list[str] = []
    try:
        create_netns(ns_a)
        made.append(ns_a)
        if kind == "host":
            yield Endpoints(ns_a, ns_a, "127.0.0.1")
            return
        create_netns(ns_b)
        made.append(ns_b)
        if kind == "veth":
            pair = create_veth_pair(netns_a=ns_a, netns_b=ns_b, prefix="nbv")
            yield Endpoints(ns_a, ns_b, pair.b.address)
            return
        from ..net import netkit as nk

        mode = nk.NetkitMode.L3 if kind == "netkit-l3" else nk.NetkitMode.L2
        prim, peer = unique_name("nkb"), unique_name("nkc")
        nk.create_pair(prim, peer, netns=ns_a, peer_netns=ns_b, mode=mode)
        _configure(ns_a, prim, "10.201.0.1")
        _configure(ns_b, peer, "10.201.0.2")
        wait_for_oper_up(prim, netns=ns_a)
        wait_for_oper_up(peer, netns=ns_b)
        yield Endpoints(ns_a, ns_b, "10.201.0.2")
    finally:
        for ns in made:  # the namespaces take their devices with them
            remove_netns(ns)


@contextmanager
def _connection(ep: Endpoints, timeout: float) -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client in ns_a, accepted server socket in ns_b), both with `timeout`."""
    with run_in_netns(ep.ns_b):
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((ep.ip_b, PORT))
        lsock.listen(1)
        lsock.settimeout(timeout)
        with run_in_netns(ep.ns_a):
            cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            cli.settimeout(timeout)
            cli.connect((ep.ip_b, PORT))
            srv, _ = lsock.accept()
            try:
                srv.settimeout(timeout)
                yield cli, srv
            finally:
                srv.close()
        finally:
            cli.close()
    finally:
        lsock.close()


def _join(thread: threading.Thread, deadline: float, what: str) -> None:
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        raise TimeoutError(f"{what}: thread still running at the deadline")


def stream(ep: Endpoints, duration: float) -> dict[str, Any]:
    """Bytes per second from ns_a to ns_b with 64 KiB writes for `duration` seconds."""
    timeout = 10.0 + duration
    with _connection(ep, timeout) as (cli, srv):
        box: dict[str, Any] = {"received": 0}
        sent = 0

        def receive() -> None:
            try:
                while True:
                    data = srv.recv(1 << 20)
                    if not data:
                        break
                    box["received"] += len(data)
                box["end"] = time.monotonic()
            except BaseException as exc:
                box["error"] = exc

        receiver = threading.Thread(target=receive, name="netkit-bench-rx")
        data = memoryview(b"\x5a" * WRITE_SIZE)
        t0 = time.monotonic()
        receiver.start()
        try:
            stop = t0 + duration
            while time.monotonic() < stop:
                cli.sendall(data)
                sent += WRITE_SIZE
            cli.shutdown(socket.SHUT_WR)
        finally:
            _join(receiver, t0 + duration + timeout, "stream receiver")
        if "error" in box:
            raise box["error"]
        received = int(box["received"])
        if received != sent:
            raise ConnectionError(f"stream: received {received} of {sent} bytes")
        elapsed = float(box["end"]) - t0
        return {"bytes": received, "seconds": elapsed, "bps": received / elapsed}


def rr(ep: Endpoints, duration: float, size: int = RR_SIZE) -> dict[str, Any]:
    """`size`-byte ping-pong from ns_a to an echo thread in ns_b for `duration` s."""
    timeout = 10.0 + duration
    with _connection(ep, timeout) as (cli, srv):
        for s in (cli, srv):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        box: dict[str, BaseException] = {}

        def echo() -> None:
            try:
                while True:
                    try:
                        data = read_exact(srv, size)
                    except ConnectionError:
                        return  # the client is done
                    srv.sendall(data)
            except BaseException as exc:
                box["error"] = exc

        echoer = threading.Thread(target=echo, name="netkit-bench-echo")
        echoer.start()
        req = bytes((i * 7 + 1) & 0xFF for i in range(size))
        rtts: list[float] = []
        t0 = time.monotonic()
        try:
            stop = t0 + duration
            while time.monotonic() < stop or not rtts:
                t = time.perf_counter()
                cli.sendall(req)
                got = read_exact(cli, size)
                rtts.append(time.perf_counter() - t)
                if got != req:
                    raise AssertionError("rr: echo differs")
        finally:
            with suppress(OSError):
                cli.shutdown(socket.SHUT_WR)
            _join(echoer, time.monotonic() + timeout, "rr echo")
        if "error" in box:
            raise box["error"]
        rtts.sort()
        p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
        return {"round_trips": len(rtts), "size": size,
                "median_us": statistics.median(rtts) * 1e6, "p99_us": p99 * 1e6,
                "mean_us": statistics.mean(rtts) * 1e6}


def measure(kind: str, duration: float, rr_size: int = RR_SIZE) -> dict[str, Any]:
    """{"stream": ..., "rr": ...} for one path, or {"error": ...}."""
    try:
        with _path(kind) as ep:
            return {"stream": stream(ep, duration), "rr": rr(ep, duration, rr_size)}
    except Exception as exc:  # NetlinkError is no OSError; any failure is an entry
        return {"error": f"{type(exc).__name__}: {exc}"}


def rotated(items: list[str], shift: int) -> list[str]:
    """`items` rotated left by `shift` (round r measures the paths starting at the r-th)."""
    k = shift % len(items) if items else 0
    return items[k:] + items[:k]


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One path's rounds folded: the stream of median throughput, the RR of median latency
    (a real measured round each, not an average of them); an error if no round worked."""
    good = [r for r in rounds if "error" not in r]
    if not good:
        return {"error": rounds[-1]["error"] if rounds else "no rounds", "rounds": rounds}
    streams = sorted((r["stream"] for r in good), key=lambda x: float(x["bps"]))
    rrs = sorted((r["rr"] for r in good), key=lambda x: float(x["median_us"]))
    return {"stream": streams[(len(streams) - 1) // 2], "rr": rrs[(len(rrs) - 1) // 2],
            "rounds": rounds}


def run(duration: float = 1.0, paths: tuple[str, ...] = PATHS,
        rr_size: int = RR_SIZE, rounds: int = 3) -> dict[str, Any]:
    """Every path's figures, plus the kernel and the netkit probe's verdict."""
    from ..probes import probe

    nk = probe("netkit")
    out: dict[str, Any] = {"release": os.uname().release, "duration_s": duration,
                           "rr_size": rr_size, "write_size": WRITE_SIZE,
                           "netkit_probe": {"supported": nk.supported, "detail": nk.detail},
                           "rounds": rounds, "paths": {}}
    usable = [k for k in paths if nk.supported or not k.startswith("netkit")]
    for kind in paths:
        if kind not in usable:
            out["paths"][kind] = {"skipped": f"netkit unsupported: {nk.detail}"}
    for kind in usable:  # warm-up, discarded
        measure(kind, max(0.2, duration / 4), rr_size)
    measured: dict[str, list[dict[str, Any]]] = {k: [] for k in usable}
    for r in range(max(1, rounds)):
        for kind in rotated(usable, r):
            measured[kind].append(measure(kind, duration, rr_size))
    for kind in usable:
        out["paths"][kind] = median_round(measured[kind])
    return out
