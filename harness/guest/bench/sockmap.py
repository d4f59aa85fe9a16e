"""Guest side of the sockmap redirect benchmark (benchmarks/sockmap_bench.py drives it).

Three data paths between the two ends of one TCP connection over loopback:

- ``tcp``:       plain TCP (Nagle on, as an application gets it by default);
- ``msg_ingress``: sk_msg on each sender redirects (BPF_F_INGRESS) straight into the
  peer's receive queue: the bytes never enter the TCP stack;
- ``skb_ingress``: sk_skb verdict on each receiver redirects every skb into its own
  receive queue (psock ingress), after TCP delivered it.

Per path and message size: throughput (a sender process sends `size`-byte messages for
`duration` seconds, the receiver counts what arrives; both in separate processes, so no
GIL between them) and request/response latency (`size` bytes each way, a forked echo
server, mean and median round trip over `duration` seconds). Every received byte is
counted; a short count or a wrong echo is an error, not a number.

Under TCG the first traffic through a code path pays for translating it, so every path is
first run briefly at every size and discarded (warm-up) before anything is measured.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import statistics
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .. import bpf as lb
from ..net.sockets import Kind, payload, recv_exact, socket_pair

PATHS = ("tcp", "msg_ingress", "skb_ingress")
SIZES = (64, 1024, 4096, 65536, 262144)
#: what a failed measurement point raises (recorded as the point's error, never a number)
POINT_ERRORS = (OSError, RuntimeError, AssertionError, TimeoutError)


@contextmanager
def _path(kind: str) -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected TCP pair (a, b) set up for data path `kind`."""
    pair = socket_pair(Kind.TCP4)
    obj: lb.BpfObject | None = None
    attached: tuple[lb.Program, int, int] | None = None
    try:
        if kind != "tcp":
            obj = lb.BpfObject(lb.object_path("sockmap_bench"))
            smap, peer_of = obj.map("bench_map"), obj.map("peer_of")
            if kind == "msg_ingress":
                prog, atype = obj.program("bench_msg"), lb.BPF_SK_MSG_VERDICT
            else:
                prog, atype = obj.program("bench_skb"), lb.BPF_SK_SKB_VERDICT
            lb.prog_attach(prog, smap.fd, atype)
            attached = (prog, smap.fd, atype)
            ports = [s.getsockname()[1] for s in (pair.a, pair.b)]
            for idx, sock in enumerate((pair.a, pair.b)):
                smap.update(idx, sock.fileno())
            # sk_msg: a's sends go into b's queue and back; sk_skb: each end to itself
            targets = (1, 0) if kind == "msg_ingress" else (0, 1)
            for port, target in zip(ports, targets, strict=True):
                peer_of.update(struct.pack("I", port), struct.pack("I", target))
        yield pair.a, pair.b
    finally:
        pair.close()
        if attached is not None:
            lb.prog_detach(*attached)
        if obj is not None:
            obj.close()


def _sender(sock: socket.socket, size: int, duration: float, report_fd: int) -> None:
    data = payload(size, 1)
    view = memoryview(data)
    sent = 0
    stop = time.monotonic() + duration
    while time.monotonic() < stop:
        off = 0
        while off < size:
            off += sock.send(view[off:])
        sent += size
    os.write(report_fd, struct.pack("Q", sent))


def throughput(kind: str, size: int, duration: float) -> dict[str, Any]:
    """Bytes per second from a to b with `size`-byte send() calls for `duration` s."""
    with _path(kind) as (a, b):
        rfd, wfd = os.pipe()
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 0
            try:
                os.close(rfd)
                _sender(a, size, duration, wfd)
            except BaseException:
                code = 1
            os._exit(code)
        os.close(wfd)
        received = 0
        sent: int | None = None
        deadline = t0 + duration + 30
        try:
            while sent is None or received < sent:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{kind} {size}: {received} of {sent} bytes")
                r, _, _ = select.select([b.fileno(), rfd] if sent is None else [b.fileno()],
                                        [], [], 1.0)
                if b.fileno() in r:
                    data = b.recv(1 << 20, socket.MSG_DONTWAIT)
                    if not data:
                        raise ConnectionError(f"{kind} {size}: EOF after {received} bytes")
                    received += len(data)
                if rfd in r:
                    raw = os.read(rfd, 8)
                    if len(raw) != 8:
                        raise RuntimeError(f"{kind} {size}: sender died")
                    sent = struct.unpack("Q", raw)[0]
            elapsed = time.monotonic() - t0
        finally:
            os.close(rfd)
            _, status = os.waitpid(pid, 0)
        if status != 0:
            raise RuntimeError(f"{kind} {size}: sender exited with status {status}")
        return {"bytes": received, "seconds": elapsed, "bps": received / elapsed,
                "messages": received // size}


def _echo(sock: socket.socket, size: int) -> None:
    while True:
        try:
            data = recv_exact(sock, size, timeout=60)
        except (AssertionError, TimeoutError):
            return  # EOF / done
        off = 0
        while off < size:
            off += sock.send(memoryview(data)[off:])


def latency(kind: str, size: int, duration: float) -> dict[str, Any]:
    """Round trips of `size` bytes each way, for `duration` s: mean and median in us."""
    with _path(kind) as (a, b):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 0
            try:
                a.close()
                _echo(b, size)
            except BaseException:
                code = 1
            os._exit(code)
        try:
            req = payload(size, 2)
            rtts: list[float] = []
            stop = time.monotonic() + duration
            while time.monotonic() < stop or not rtts:
                t = time.monotonic()
                a.sendall(req)
                got = recv_exact(a, size, timeout=30)
                rtts.append(time.monotonic() - t)
                if got != req:
                    raise AssertionError(f"{kind} {size}: echo differs")
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        return {"round_trips": len(rtts), "mean_us": statistics.mean(rtts) * 1e6,
                "median_us": statistics.median(rtts) * 1e6}


def run(sizes: tuple[int, ...] = SIZES, duration: float = 1.0,
        paths: tuple[str, ...] = PATHS) -> dict[str, Any]:
    """Every path x size: {"throughput": {...}, "latency": {...}}, plus the kernel."""
    out: dict[str, Any] = {"release": os.uname().release, "duration_s": duration,
                           "sizes": list(sizes), "warm_up": True, "paths": {}}
    for kind in paths:  # warm-up, discarded (a failure shows up in the measured pass)
        for size in sizes:
            try:
                throughput(kind, size, min(0.2, duration))
                latency(kind, size, min(0.2, duration))
            except POINT_ERRORS:
                pass
    for kind in paths:
        per: dict[str, Any] = {}
        for size in sizes:
            try:
                per[str(size)] = {"throughput": throughput(kind, size, duration),
                                  "latency": latency(kind, size, duration)}
            except POINT_ERRORS as exc:
                per[str(size)] = {"error": f"{type(exc).__name__}: {exc}"}
        out["paths"][kind] = per
    return out
