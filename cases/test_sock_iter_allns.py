"""Socket iteration across all network namespaces (harness/guest/net/allns.py).

Upstream socket iterators (iter/tcp, iter/udp, iter/unix) list only the namespace the
iterator fd was created in, on every kernel; an all-namespaces iterator is proposed, not
merged (probe `all_netns_sock_iter`). The guest library therefore finds every namespace
itself (named ones, bind mounts elsewhere, the namespaces of all threads and the namespace
fds processes hold), creates one iterator inside each and merges what they list. The cases:

- a socket of namespace B is invisible to an iterator made in A, and visible to one made in
  B (the upstream limit);
- namespaces of every kind (the case's own, named, held only by an fd, held only by a bind
  mount outside /run/netns, and one made by a child process from inside a named namespace)
  are each found once, and every socket the case made there is found exactly once, in its
  namespace (the namespace the kernel gives the socket agrees);
- destroy_matching() destroys exactly the sockets connected to one backend address:port in
  every namespace, each once, and the other connections keep working;
- a namespace that disappears during the walk (its name removed, its only process gone) is
  skipped and reported, not an error.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.guest.isolation import MNT_DETACH
from harness.guest.net.allns import (
    Found,
    InetRecord,
    Netns,
    NetnsRunner,
    SockIterators,
    destroy_matching,
    list_netns,
    read_all,
    walk,
)
from harness.guest.net.netns import in_new_netns, remove_netns, run_in_netns
from harness.guest.net.sockets import cookie, tcp_connection
from harness.guest.uapi import libc

MS_BIND = 4096
TIMEOUT = 10.0
ALL_KINDS = pytest.mark.requires("bpf_iter_tcp", "bpf_iter_udp", "bpf_iter_unix")
PROJECT = Path(__file__).resolve().parents[1]

#: a child process: enters a new namespace of its own, makes sockets there, says which
#: (cookies and namespace inode, one JSON line), and lives until its stdin closes
CHILD = """
import json, os, socket, sys
from harness.guest.net.netns import set_up, unshare_netns
from harness.guest.net.sockets import cookie
unshare_netns()
set_up("lo")
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(4)
client = socket.create_connection(listener.getsockname(), timeout=10)
server = listener.accept()[0]
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 0))
socks = [listener, client, server, udp, *socket.socketpair()]
print(json.dumps({"netns": os.stat("/proc/self/ns/net").st_ino,
                  "cookies": [cookie(s) for s in socks]}), flush=True)
sys.stdin.read()
"""


@dataclass
class Space:
    """A namespace the case made, how it is held, and the cookies of its sockets there."""

    kind: str  # case | named | fd | mount | child
    inode: int
    path: str | None  # where to enter it (None: only its child process is in it)
    cookies: set[int] = field(default_factory=set)
    proc: subprocess.Popen[str] | None = None


def populate(stack: contextlib.ExitStack) -> list[socket.socket]:
    """In the calling thread's namespace: a TCP listener, a connection to it (both ends), a
    bound UDP socket and an AF_UNIX pair."""
    tcp = tcp_connection(stack, timeout=TIMEOUT)
    udp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    udp.bind(("127.0.0.1", 0))
    pair = [stack.enter_context(s) for s in socket.socketpair()]
    return [*tcp, udp, *pair]


def ns_inode(path: str) -> int:
    return os.stat(path).st_ino


def _open_own_netns() -> int:
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


class Spaces:
    """Namespaces of each kind, made for one case and gone at its end."""

    def __init__(self, stack: contextlib.ExitStack, netns_factory: Callable[[], str],
                 tmp_path: Path) -> None:
        self.stack, self.netns_factory, self.tmp_path = stack, netns_factory, tmp_path
        self.all: list[Space] = []

    def _add(self, space: Space, fill: bool = True) -> Space:
        if fill and space.path is not None:
            with run_in_netns(space.path):
                space.cookies = {cookie(s) for s in populate(self.stack)}
        self.all.append(space)
        return space

    def case(self) -> Space:
        path = "/proc/thread-self/ns/net"
        space = Space("case", ns_inode(path), None)
        space.cookies = {cookie(s) for s in populate(self.stack)}
        self.all.append(space)
        return space

    def named(self) -> Space:
        path = f"/run/netns/{self.netns_factory()}"
        return self._add(Space("named", ns_inode(path), path))

    def fd(self) -> Space:
        """A namespace held only by an open fd of this process (its thread is gone)."""
        fd = in_new_netns(_open_own_netns)
        self.stack.callback(os.close, fd)
        path = f"/proc/self/fd/{fd}"
        return self._add(Space("fd", ns_inode(path), path))

    def mount(self) -> Space:
        """A namespace held only by a bind mount on a file outside /run/netns."""
        fd = in_new_netns(_open_own_netns)
        try:
            target = self.tmp_path / f"netns-{len(self.all)}"
            target.touch()
            if libc.mount(f"/proc/self/fd/{fd}".encode(), str(target).encode(), None,
                          MS_BIND, None) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"mount --bind netns {target}: {os.strerror(err)}")
            self.stack.callback(libc.umount2, str(target).encode(), MNT_DETACH)
        finally:
            os.close(fd)
        return self._add(Space("mount", ns_inode(str(target)), str(target)))

    def child(self, inside: Space) -> Space:
        """A child process started inside `inside` that makes a namespace of its own."""
        assert inside.path is not None
        with run_in_netns(inside.path):
            proc = subprocess.Popen([sys.executable, "-c", CHILD], cwd=PROJECT, text=True,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.stack.callback(_end, proc)
        assert proc.stdout is not None
        said = json.loads(proc.stdout.readline() or "null")
        assert said, f"the child process said nothing (exit {proc.poll()})"
        space = Space("child", int(said["netns"]), None, set(said["cookies"]), proc)
        self.all.append(space)
        return space


def _end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def spaces(netns_factory: Callable[[], str], tmp_path: Path) -> Iterator[Spaces]:
    with contextlib.ExitStack() as stack:
        yield Spaces(stack, netns_factory, tmp_path)


def ours(found: list[Netns], made: list[Space]) -> list[Netns]:
    """`made`'s namespaces as list_netns() found them, in the order of `made`."""
    by_inode = {ns.inode: ns for ns in found}
    missing = [s.kind for s in made if s.inode not in by_inode]
    assert not missing, f"list_netns() did not find the {missing} namespace(s)"
    return [by_inode[s.inode] for s in made]


# --------------------------------------------------------------------------- cases


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.requires(f"bpf_iter_{k}"))
                                  for k in ("tcp", "udp", "unix")])
def test_iterator_sees_only_its_namespace(kind: str, spaces: Spaces) -> None:
    """An iterator made in namespace A does not list the sockets of namespace B, one made in
    B lists them (and not A's): upstream iterators are per namespace on every kernel."""
    a, b = spaces.case(), spaces.named()
    with SockIterators((kind,)) as iters, NetnsRunner() as runner:
        in_a = {r.cookie for r in iters.dump()}
        b_ns = next(ns for ns in list_netns() if ns.inode == b.inode)
        in_b = read_all(runner.run(b_ns, iters.create))
    mine_a = {c for c in a.cookies if c in in_a}
    assert mine_a, f"iter/{kind} made in A lists none of A's own sockets"
    assert not (b.cookies & in_a), f"iter/{kind} made in A lists sockets of B"
    cookies_b = {r.cookie for r in in_b}
    assert not (a.cookies & cookies_b), f"iter/{kind} made in B lists sockets of A"
    listed = [r for r in in_b if r.cookie in b.cookies]
    assert listed, f"iter/{kind} made in B lists none of B's sockets"
    assert {r.netns for r in listed} == {b.inode}, "B's sockets carry another namespace"


@ALL_KINDS
def test_walk_finds_every_socket_once(spaces: Spaces) -> None:
    """The case's own namespace, two named ones, one held only by an fd, one only by a bind
    mount and one made by a child process started inside a named one: list_netns() finds
    each once (through the way it is held), and walk() finds every socket made there exactly
    once, in that namespace, which is also the namespace the kernel reports for it."""
    own, named = spaces.case(), spaces.named()
    spaces.named()
    spaces.fd()
    spaces.mount()
    spaces.child(inside=named)
    found_ns = list_netns()
    counts = {s.inode: sum(ns.inode == s.inode for ns in found_ns) for s in spaces.all}
    assert set(counts.values()) == {1}, f"namespaces found more or less than once: {counts}"
    want_source = {"case": "task", "named": "named", "fd": "fd", "mount": "mount",
                   "child": "task"}
    for space, ns in zip(spaces.all, ours(found_ns, spaces.all), strict=True):
        assert want_source[space.kind] in ns.sources, (space.kind, ns)
    result = walk()
    by_cookie: dict[int, list[Found]] = {}
    for f in result.found:
        by_cookie.setdefault(f.record.cookie, []).append(f)
    for space in spaces.all:
        for c in space.cookies:
            hits = by_cookie.get(c, [])
            assert len(hits) == 1, f"{space.kind} socket {c} found {len(hits)} times"
            assert hits[0].netns.inode == space.inode == hits[0].record.netns, (
                f"{space.kind} socket {c} found in {hits[0].netns}, kernel says "
                f"net:[{hits[0].record.netns}], made in net:[{space.inode}]")
    wrong = [f for f in result.found if f.record.netns != f.netns.inode]
    assert not wrong, f"sockets listed by another namespace's iterator: {wrong[:3]}"
    assert own.inode in {ns.inode for ns in result.namespaces}


@dataclass
class Backend:
    """In one namespace: the backend listener (127.0.0.2:P) with two clients, and the
    listeners that only look alike (127.0.0.3:P, 127.0.0.2:Q) with a client each."""

    path: str | None
    doomed: list[tuple[socket.socket, socket.socket]]  # (client, accepted)
    spared: list[tuple[socket.socket, socket.socket]]
    listener: socket.socket


def _connect(listener: socket.socket, stack: contextlib.ExitStack
             ) -> tuple[socket.socket, socket.socket]:
    client = stack.enter_context(socket.create_connection(listener.getsockname()[:2],
                                                          timeout=TIMEOUT))
    return client, stack.enter_context(listener.accept()[0])


def _listen(addr: tuple[str, int], stack: contextlib.ExitStack) -> socket.socket:
    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    sock.bind(addr)
    sock.listen(8)
    sock.settimeout(TIMEOUT)
    return sock


def _backend(path: str | None, port: int, other_port: int,
             stack: contextlib.ExitStack) -> Backend:
    with run_in_netns(path):
        backend = _listen(("127.0.0.2", port), stack)
        lookalikes = [_listen(("127.0.0.3", port), stack),
                      _listen(("127.0.0.2", other_port), stack)]
        return Backend(path, [_connect(backend, stack) for _ in range(2)],
                       [_connect(other, stack) for other in lookalikes], backend)


def _free_ports(n: int) -> list[int]:
    """`n` TCP ports free on 127.0.0.2 here (fresh namespaces have every port free)."""
    with contextlib.ExitStack() as stack:
        socks = [_listen(("127.0.0.2", 0), stack) for _ in range(n)]
        return [s.getsockname()[1] for s in socks]


def _fails(err: int, op: Callable[[], object], what: str) -> None:
    with pytest.raises(OSError) as info:
        op()
    assert info.value.errno == err, f"{what}: {info.value}, want {errno.errorcode[err]}"


@ALL_KINDS
@pytest.mark.requires("bpf_sock_destroy")
def test_destroy_backend_connections_everywhere(spaces: Spaces) -> None:
    """In four namespaces (the case's, two named, one held by an fd) clients connect to a
    backend 127.0.0.2:P and to look-alikes (127.0.0.3:P, 127.0.0.2:Q). destroy_matching()
    of everything connected to 127.0.0.2:P destroys exactly the eight backend clients, each
    once: they fail ECONNABORTED, the backend's ends see resets; the look-alike connections
    still carry data and the backends still accept."""
    made = [spaces.case(), spaces.named(), spaces.named(), spaces.fd()]
    with contextlib.ExitStack() as stack:
        port, other = _free_ports(2)
        backends = [_backend(s.path, port, other, stack) for s in made]
        namespaces = ours(list_netns(), made)
        target = ("127.0.0.2", port)

        def connected_to_backend(f: Found) -> bool:
            r = f.record
            return isinstance(r, InetRecord) and r.proto == "tcp" and r.remote == target

        result = destroy_matching(connected_to_backend, namespaces=namespaces)
        want = {cookie(c): ns.inode for b, ns in zip(backends, namespaces, strict=True)
                for c, _ in b.doomed}
        got = {d.found.record.cookie: d.found.netns.inode for d in result.chosen}
        assert got == want, f"chosen {got}, want the backend clients {want}"
        bad = [d for d in result.chosen if (d.ret, d.calls) != (0, 1)]
        assert not bad, f"destroyed other than once with success: {bad}"
        for b in backends:
            for client, accepted in b.doomed:
                _fails(errno.ECONNABORTED, functools.partial(client.recv, 1), "backend client")
                _fails(errno.ECONNRESET, functools.partial(accepted.recv, 1), "backend end")
            for client, accepted in b.spared:
                client.sendall(b"s")
                assert accepted.recv(1) == b"s", "a look-alike connection stopped working"
            with run_in_netns(b.path):
                _connect(b.listener, stack)


@ALL_KINDS
def test_vanished_namespace_is_skipped(spaces: Spaces) -> None:
    """Namespaces that disappear after the listing and before the walk reaches them (a name
    removed, the only process in one killed) are skipped with the reason, not an error;
    the others are walked and their sockets found."""
    first, gone_named = spaces.named(), spaces.named()
    gone_child = spaces.child(inside=first)
    last = spaces.named()
    order = [first, gone_named, gone_child, last]
    namespaces = ours(list_netns(), order)
    assert gone_named.path is not None and gone_child.proc is not None
    name = os.path.basename(gone_named.path)
    proc = gone_child.proc
    triggered: list[Netns] = []

    def vanish(ns: Netns) -> None:
        if not triggered:
            triggered.append(ns)
            remove_netns(name)
            proc.kill()
            proc.wait(timeout=TIMEOUT)

    result = walk(namespaces, before=vanish)
    skipped = {ns.inode: why for ns, why in result.skipped}
    assert set(skipped) == {gone_named.inode, gone_child.inode}, (
        f"skipped {skipped}, want the removed named namespace and the child's")
    walked = {f.record.cookie for f in result.found}
    for space in (first, last):
        assert space.cookies <= walked, f"sockets of a {space.kind} namespace not found"
    assert not (gone_named.cookies & walked) and not (gone_child.cookies & walked)
