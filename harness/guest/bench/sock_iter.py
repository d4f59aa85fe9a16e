"""Guest side of the socket iterator benchmark (benchmarks/sock_iter_bench.py drives it).

What iterating sockets costs, per socket and per namespace, with the dump programs of
bpf/sock_iter.bpf.c read through harness.guest.net.allns (one iterator per namespace, made
inside it by a helper thread):

- ``one_ns``:  one namespace holding `sockets` sockets;
- ``many_ns``: `namespaces` namespaces holding `per_ns` sockets each (same total by default:
  10 000 sockets either way), so the difference is the price of a namespace (entering it,
  one more iterator, one more walk over empty hash buckets).

Per setup and kind (``tcp``: established connections to one listener, both ends counted;
``udp``: bound sockets), `rounds` timed walks after a discarded warm-up; each walk is split
into ``read_s`` (create the iterator fds, read them to the end: kernel + BPF) and ``parse_s``
(Python parsing the records). Every walk must list every socket of the setup exactly once,
or the point is an error, not a number.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import statistics
import time
from collections.abc import Iterator
from typing import Any

from ..net.allns import (
    Netns,
    NetnsRunner,
    SockIterators,
    parse_records,
    read_fd,
)
from ..net.netns import in_new_netns

KINDS = ("tcp", "udp")
SETUPS = ("one_ns", "many_ns")
#: what a failed measurement point raises (recorded as the point's error)
POINT_ERRORS = (OSError, RuntimeError, AssertionError, TimeoutError)


def make_sockets(kind: str, n: int) -> list[socket.socket]:
    """`n` sockets of `kind` in the calling thread's namespace (tcp: n // 2 connections to
    one listener, both ends, plus the listener)."""
    socks: list[socket.socket] = []
    try:
        if kind == "udp":
            for _ in range(n):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", 0))
            return socks
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        socks.append(listener)
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        for _ in range(n // 2):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(client)
            client.connect(listener.getsockname())
            socks.append(listener.accept()[0])
        return socks
    except BaseException:
        for sock in socks:
            sock.close()
        raise


@contextlib.contextmanager
def namespaces(kind: str, count: int, per_ns: int) -> Iterator[tuple[list[Netns], int]]:
    """`count` fresh namespaces (held by fds of this process) with `per_ns` sockets of `kind`
    each: (the namespaces, the number of sockets made)."""
    fds: list[int] = []
    socks: list[socket.socket] = []

    def make() -> tuple[int, list[socket.socket]]:
        fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return fd, make_sockets(kind, per_ns)
        except BaseException:
            os.close(fd)
            raise

    try:
        spaces = []
        for _ in range(count):
            fd, made = in_new_netns(make)
            fds.append(fd)
            socks += made
            path = f"/proc/{os.getpid()}/fd/{fd}"
            st = os.stat(path)
            spaces.append(Netns(st.st_dev, st.st_ino, path, ("fd",), (path,)))
        yield spaces, len(socks)
    finally:
        for sock in socks:
            sock.close()
        for fd in fds:
            os.close(fd)


def timed_walk(spaces: list[Netns], iters: SockIterators, runner: NetnsRunner
               ) -> tuple[float, float, int]:
    """One walk over `spaces`: (seconds creating and reading the iterators, seconds parsing,
    records listed)."""
    read_s = parse_s = 0.0
    records = 0
    for ns in spaces:
        t0 = time.perf_counter()
        fds = runner.run(ns, iters.create)
        try:
            data = [read_fd(fd) for fd in fds]
        finally:
            for fd in fds:
                os.close(fd)
        t1 = time.perf_counter()
        for chunk in data:
            records += len(parse_records(chunk.decode()))
        read_s += t1 - t0
        parse_s += time.perf_counter() - t1
    return read_s, parse_s, records


def summarize(walks: list[tuple[float, float, int]], sockets: int, spaces: int
              ) -> dict[str, Any]:
    """The median walk of `walks` and what it costs per socket and per namespace."""
    read_s = statistics.median(w[0] for w in walks)
    parse_s = statistics.median(w[1] for w in walks)
    return {"sockets": sockets, "namespaces": spaces, "walks": len(walks),
            "read_s": read_s, "parse_s": parse_s,
            "read_ns_per_socket": read_s / sockets * 1e9 if sockets else None,
            "read_us_per_namespace": read_s / spaces * 1e6 if spaces else None,
            "all_read_s": [w[0] for w in walks]}


def measure(kind: str, count: int, per_ns: int, rounds: int) -> dict[str, Any]:
    """A warm-up walk and `rounds` timed ones over `count` namespaces of `per_ns` sockets."""
    with namespaces(kind, count, per_ns) as (spaces, made), \
            SockIterators((kind,)) as iters, NetnsRunner() as runner:
        walks = []
        for i in range(rounds + 1):
            read_s, parse_s, records = timed_walk(spaces, iters, runner)
            if records != made:
                raise AssertionError(f"a walk listed {records} sockets, {made} were made")
            if i:  # the first one is the warm-up
                walks.append((read_s, parse_s, records))
        return summarize(walks, made, count)


@contextlib.contextmanager
def enough_fds(n: int) -> Iterator[None]:
    """RLIMIT_NOFILE raised to at least `n` for the block (the hard limit too where
    allowed: CAP_SYS_RESOURCE; else as far as it goes), restored after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        yield
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, max(n, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def per_namespace_overhead(one: dict[str, Any], many: dict[str, Any]) -> float | None:
    """Microseconds a namespace adds to a walk: the many-namespace walk minus what its
    sockets cost at the one-namespace rate, per namespace."""
    if not one.get("read_ns_per_socket") or not many.get("namespaces"):
        return None
    sockets_cost = one["read_ns_per_socket"] * 1e-9 * many["sockets"]
    return float((many["read_s"] - sockets_cost) / many["namespaces"] * 1e6)


def run(sockets: int = 10000, count: int = 100, per_ns: int = 100, rounds: int = 5,
        kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    """Every kind in both setups; a failed point records its error."""
    out: dict[str, Any] = {"request": {"sockets": sockets, "namespaces": count,
                                       "per_ns": per_ns, "rounds": rounds},
                           "points": {}}
    with enough_fds(max(sockets, count * per_ns) + 1024):
        for kind in kinds:
            point: dict[str, Any] = {}
            for setup, (n_ns, n_socks) in (("one_ns", (1, sockets)),
                                           ("many_ns", (count, per_ns))):
                try:
                    point[setup] = measure(kind, n_ns, n_socks, rounds)
                except POINT_ERRORS as exc:
                    point[setup] = {"error": f"{type(exc).__name__}: {exc}"}
            if "error" not in point["one_ns"] and "error" not in point["many_ns"]:
                point["us_per_namespace"] = per_namespace_overhead(point["one_ns"],
                                                                   point["many_ns"])
            out["points"][kind] = point
    return out
