"""Batched socket iteration: every socket exactly once while its hash bucket changes.

Modelled on tools/testing/selftests/bpf/prog_tests/sock_iter_batch.c. The iterators of
bpf/sock_iter_batch.bpf.c write one 8-byte cookie per socket, so a read() of 8 bytes makes
the kernel stop the iterator after exactly one socket and resume it at the next read; many
sockets are put into ONE hash bucket so that the stop falls inside it:

- `reuseport`: an SO_REUSEPORT group on one loopback address:port (UDP sockets; TCP
  listeners), one bucket of the UDP table or the TCP listening table;
- `child-hash` (UDP): a child namespace made with net.ipv4.udp_child_hash_entries=128 (its own
  128-slot table, v6.2), sockets on ports P, P+128, P+256... share a slot;
- `established` (TCP): a child namespace made with net.ipv4.tcp_child_ehash_entries=1 (its
  own one-bucket established table): every connection's two ends share it.

Between reads the bucket changes as in the selftest: a socket already seen is removed, the
next unseen one is removed, all unseen ones are removed, sockets are added, or so many are
added that the kernel must grow its batch. Kernels with exactly-once iteration (UDP 6.16,
TCP 6.17, TCP backported to Debian's 6.1.183+/6.12.104+) resume at the first unseen
socket by cookie and list each socket exactly once; older ones resume by position and skip
or repeat. What each case saw is recorded (`observed`); a skip or repeat is a refusal of
`sock_iter_batch_udp`/`sock_iter_batch_tcp`: a failure where the kernel should have it, a
skip with the evidence elsewhere, never a pass.

Removing an established TCP socket closes it with SO_LINGER 0 (a reset, no TIME_WAIT), which
takes its peer out of the table too: both count as removed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Protocol

import pytest

from harness.guest import bpf as lb
from harness.guest.fixtures import KernelExpectations
from harness.guest.net.netns import in_new_netns
from harness.guest.net.sockets import cookie
from harness.guest.probes.sockiter import (
    BatchRun,
    batch_iterator,
    read_cookies,
    reuseport_group,
)
from harness.guest.wait import wait_until

TCP_ESTABLISHED, TCP_LISTEN, TCP_CLOSE = 1, 10, 7
#: the kernel's first batch size (INIT_BATCH_SZ in net/ipv4/tcp_ipv4.c and udp.c)
INIT_BATCH = 16
GROUP = 4
UDP_CHILD_SLOTS = 128
TIMEOUT = 10.0
SCENARIOS = ("remove_seen", "remove_unseen", "remove_all", "add_some", "force_realloc")
LAYOUTS = {"udp": ("reuseport", "child-hash"), "tcp": ("reuseport", "established")}

Record = Callable[[str, object], None]


class Bucket(Protocol):
    """Sockets sharing one hash bucket, in the namespace the scenario runs in."""

    proto: str
    port: int
    family: int
    states: int
    port_mask: int

    def cookies(self) -> list[int]: ...
    def grow(self, n: int) -> list[int]: ...
    def remove(self, sock_cookie: int) -> list[int]: ...


class ReuseportBucket:
    """A reuseport group of `n` on loopback:port (TCP: listeners)."""

    def __init__(self, proto: str, family: int, n: int, stack: contextlib.ExitStack) -> None:
        self.proto, self.family, self.port_mask = proto, family, 0
        self.states = 1 << TCP_LISTEN if proto == "tcp" else 0
        self.sotype = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        self.socks: list[socket.socket] = []
        stack.callback(_close_all, self.socks)
        reuseport_group(family, self.sotype, n, into=self.socks)
        self.port = self.socks[0].getsockname()[1]

    def cookies(self) -> list[int]:
        return [cookie(s) for s in self.socks]

    def grow(self, n: int) -> list[int]:
        before = len(self.socks)
        reuseport_group(self.family, self.sotype, n, self.port, into=self.socks)
        return [cookie(s) for s in self.socks[before:]]

    def remove(self, sock_cookie: int) -> list[int]:
        sock = next(s for s in self.socks if cookie(s) == sock_cookie)
        self.socks.remove(sock)
        sock.close()
        return [sock_cookie]


class ChildHashBucket:
    """UDP sockets on 127.0.0.1 ports P + 128*k of a namespace whose UDP table has 128 slots:
    one slot (the iterator matches the low 7 bits of the local port)."""

    def __init__(self, n: int, stack: contextlib.ExitStack) -> None:
        self.proto, self.family, self.states = "udp", int(socket.AF_INET), 0
        self.port_mask = UDP_CHILD_SLOTS - 1
        self.port = 20000 + 1  # an odd base: no unconnected socket's rport (0) matches
        self.socks: list[socket.socket] = []
        stack.callback(_close_all, self.socks)
        self.grow(n)

    def cookies(self) -> list[int]:
        return [cookie(s) for s in self.socks]

    def grow(self, n: int) -> list[int]:
        made = []
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.socks.append(sock)
            sock.bind(("127.0.0.1", self.port + UDP_CHILD_SLOTS * len(self.socks)))
            made.append(cookie(sock))
        return made

    def remove(self, sock_cookie: int) -> list[int]:
        sock = next(s for s in self.socks if cookie(s) == sock_cookie)
        self.socks.remove(sock)
        sock.close()
        return [sock_cookie]


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


class EstablishedBucket:
    """`n` sockets (n/2 connections over 127.0.0.1) in a namespace whose established table
    has one bucket; removing one resets it (SO_LINGER 0) and so its peer as well."""

    def __init__(self, n: int, stack: contextlib.ExitStack) -> None:
        self.proto, self.family, self.port_mask = "tcp", int(socket.AF_INET), 0
        self.states = 1 << TCP_ESTABLISHED
        self.socks: list[socket.socket] = []
        self.peer: dict[int, socket.socket] = {}
        stack.callback(_close_all, self.socks)
        self.listener = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.grow(n)

    def cookies(self) -> list[int]:
        return [cookie(s) for s in self.socks if tcp_state(s) == TCP_ESTABLISHED]

    def grow(self, n: int) -> list[int]:
        made = []
        for _ in range(n // 2):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.socks.append(client)
            client.settimeout(TIMEOUT)
            client.connect(("127.0.0.1", self.port))
            server = self.listener.accept()[0]
            self.socks.append(server)
            self.peer[cookie(client)], self.peer[cookie(server)] = server, client
            made += [cookie(client), cookie(server)]
        return made

    def remove(self, sock_cookie: int) -> list[int]:
        sock = next(s for s in self.socks if cookie(s) == sock_cookie)
        peer = self.peer[sock_cookie]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.socks.remove(sock)
        sock.close()
        wait_until(lambda: tcp_state(peer) == TCP_CLOSE, timeout=TIMEOUT,
                   what="the reset peer to leave the established table")
        return [sock_cookie, cookie(peer)]


def _close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


# --------------------------------------------------------------------------- scenarios


def nth_listed(link: lb.Link, n: int) -> int:
    """The cookie a fresh iterator lists `n`-th (1: first)."""
    fd = lb.iter_create(link.fd)
    try:
        return read_cookies(fd, n)[-1]
    finally:
        os.close(fd)


def resume(bucket: Bucket, link: lb.Link, scenario: str) -> BatchRun:
    """Read part of the bucket one socket per read(), change it as `scenario` says, read the
    rest (all in the calling thread's namespace, where the bucket's sockets are)."""
    original = bucket.cookies()
    n = len(original)
    fd = lb.iter_create(link.fd)
    try:
        if scenario in ("remove_seen", "add_some"):
            run = BatchRun(original, read_cookies(fd, n - 1))
        else:
            run = BatchRun(original, read_cookies(fd, 1))
        if scenario == "remove_seen":
            run.removed += bucket.remove(run.before[0])
        elif scenario == "remove_unseen":
            run.removed += bucket.remove(nth_listed(link, 2))
        elif scenario == "remove_all":
            for c in original:
                if c not in run.before and c not in run.removed:
                    run.removed += bucket.remove(c)
        else:  # add_some: as many again; force_realloc: past the batch the kernel holds
            run.added += bucket.grow(n)
        run.after = read_cookies(fd)
    finally:
        os.close(fd)
    return run


def make_bucket(proto: str, layout: str, scenario: str,
                stack: contextlib.ExitStack) -> Bucket:
    """The bucket of `layout` for `scenario`: reuseport groups are IPv6 (new members at the
    tail) except for add_some, IPv4 (new members at the head), as in the selftest."""
    n = INIT_BATCH if scenario == "force_realloc" else GROUP
    if layout == "reuseport":
        family = socket.AF_INET if scenario == "add_some" else socket.AF_INET6
        return ReuseportBucket(proto, family, n, stack)
    if layout == "child-hash":
        return ChildHashBucket(n, stack)
    return EstablishedBucket(2 * n if scenario != "force_realloc" else n, stack)


@contextlib.contextmanager
def child_netns_sysctl(name: str, value: int) -> Iterator[None]:
    """net.ipv4.`name` set to `value` in this namespace for the block (a namespace made in
    it takes its table size from there), restored after."""
    path = f"/proc/sys/net/ipv4/{name}"
    try:
        with open(path) as f:
            old = f.read().strip()
    except FileNotFoundError:
        pytest.skip(f"no net.ipv4.{name} on this kernel: no per-namespace table to squeeze "
                    "sockets into one bucket")
    with open(path, "w") as f:
        f.write(str(value))
    try:
        yield
    finally:
        with open(path, "w") as f:
            f.write(old)


def run_layout(proto: str, layout: str, scenario: str) -> BatchRun:
    def body() -> BatchRun:
        with contextlib.ExitStack() as stack:
            bucket = make_bucket(proto, layout, scenario, stack)
            link = stack.enter_context(batch_iterator(
                proto, bucket.port, family=bucket.family, states=bucket.states,
                port_mask=bucket.port_mask))
            return resume(bucket, link, scenario)

    if layout == "reuseport":
        return body()
    sysctl = "udp_child_hash_entries" if layout == "child-hash" else "tcp_child_ehash_entries"
    with child_netns_sysctl(sysctl, UDP_CHILD_SLOTS if layout == "child-hash" else 1):
        return in_new_netns(body)


def judge(proto: str, what: str, problems: list[str], record_property: Record,
          expect: KernelExpectations) -> None:
    observed = f"{what}: {', '.join(problems) or 'each socket exactly once'}"
    record_property("observed", observed)
    if problems:
        expect.refused(f"sock_iter_batch_{proto}", observed)


def _resume_params() -> list[object]:
    return [pytest.param(proto, layout, scenario, id=f"{proto}-{layout}-{scenario}",
                         marks=pytest.mark.requires(f"bpf_iter_{proto}"))
            for proto, layouts in LAYOUTS.items() for layout in layouts
            for scenario in SCENARIOS]


@pytest.mark.parametrize(("proto", "layout", "scenario"), _resume_params())
def test_resume(proto: str, layout: str, scenario: str, record_property: Record,
                expect: KernelExpectations) -> None:
    """Stopped inside one bucket, the iterator resumes after the bucket changed (a seen
    socket removed, the next unseen removed, all unseen removed, as many added, more added
    than the batch holds): every socket still there is listed exactly once, no removed one
    after its removal, added ones at most once."""
    run = run_layout(proto, layout, scenario)
    what = (f"iter/{proto} {layout} bucket of {len(run.original)}, {scenario} after "
            f"{len(run.before)} read one at a time")
    judge(proto, what, run.problems(), record_property, expect)


@pytest.mark.parametrize("bulk", [False, True], ids=["one-by-one", "bulk"])
@pytest.mark.parametrize("proto", [pytest.param(p, marks=pytest.mark.requires(f"bpf_iter_{p}"))
                                   for p in ("tcp", "udp")])
def test_two_buckets(proto: str, bulk: bool, record_property: Record,
                     expect: KernelExpectations) -> None:
    """Two reuseport groups of 4 on [::1] (two buckets): read 3 sockets of whichever comes
    first (one per read(), or 24 bytes in one read()), close that whole group, read on:
    exactly the other group's 4 sockets follow, each once (the iterator must not go back
    nor skip into the next bucket)."""
    sotype = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    states = 1 << TCP_LISTEN if proto == "tcp" else 0
    with contextlib.ExitStack() as stack:
        groups: list[list[socket.socket]] = [[], []]
        for group in groups:
            stack.callback(_close_all, group)
            reuseport_group(socket.AF_INET6, sotype, GROUP, into=group)
        ports = [g[0].getsockname()[1] for g in groups]
        cookies = [{cookie(s) for s in g} for g in groups]
        link = stack.enter_context(batch_iterator(proto, ports[0], port2=ports[1],
                                                  family=socket.AF_INET6, states=states))
        fd = lb.iter_create(link.fd)
        stack.callback(os.close, fd)
        if bulk:
            data = os.read(fd, 8 * (GROUP - 1))
            first = [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]
        else:
            first = read_cookies(fd, GROUP - 1)
        which = 0 if first[0] in cookies[0] else 1
        _close_all(groups[which])
        groups[which].clear()
        rest = read_cookies(fd)
    run = BatchRun(sorted(cookies[0] | cookies[1]), first, removed=sorted(cookies[which]),
                   after=rest)
    assert len(first) == GROUP - 1, f"read {len(first)} sockets, want {GROUP - 1}"
    # both ports hashing into one bucket is possible (the selftest tolerates it too): the
    # first reads then mix the groups, and the check is the same exactly-once rule
    shared = any(c not in cookies[which] for c in first)
    what = (f"iter/{proto} two reuseport {'groups in one bucket' if shared else 'buckets'} "
            f"of {GROUP}, 3 read {'in one read()' if bulk else 'one at a time'}, then the "
            "first one's group closed")
    judge(proto, what, run.problems(), record_property, expect)
