"""BPF socket iterators (iter/tcp, iter/udp, iter/unix), bpf_sock_destroy, exactly-once
batched iteration (UDP, TCP) and the all-namespaces iterator slot."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from .. import bpf as lb
from ..net.netns import in_new_netns
from ..net.sockets import cookie
from .base import Unsupported, bpf_object, kernel_says, tcp_pair


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
        with bpf_object("probe_iter", autoload=[prog_name], load_defines_feature=True) as obj:
            with kernel_says(f"bpf_program__attach_iter(iter/{what})"):
                link = obj.program(prog_name).attach_iter()
            with link:
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
    """An iter/tcp program calling bpf_sock_destroy on the client of a connected TCP pair:
    the client's next read must fail ECONNABORTED (what the cases rely on)."""
    listener, client, server = tcp_pair()
    with listener, client, server:
        with bpf_object("probe_sock_destroy", load_defines_feature=True) as obj:
            obj.map("cfg").update(0, client.getsockname()[1])
            with kernel_says("bpf_program__attach_iter(iter/tcp calling bpf_sock_destroy)"):
                link = obj.program("probe_sock_destroy").attach_iter()
            with link:
                link.read_iter()
                link_id = link.info().id
            destroyed = obj.map("cfg").lookup_int(1)
        client.settimeout(5)
        try:
            client.recv(1)
        except ConnectionAbortedError:
            return (f"iter/tcp program (link id {link_id}) called bpf_sock_destroy on "
                    f"{destroyed} socket(s); the client's recv() then failed ECONNABORTED")
        except OSError as exc:
            raise Unsupported(f"after bpf_sock_destroy the client's recv() failed "
                              f"{errno.errorcode.get(exc.errno or 0, exc.errno)}, not "
                              "ECONNABORTED") from exc
        raise Unsupported(f"bpf_sock_destroy called on {destroyed} socket(s), yet the "
                          "client's recv() did not fail")


# --------------------------------------------------------------------------- exactly once
# Batched iteration (after tools/testing/selftests/bpf/prog_tests/sock_iter_batch.c): a
# reuseport group puts every socket of one address:port in one hash bucket; reading one
# socket per read() makes the kernel stop the iterator inside that bucket and resume it at
# the next read. Kernels that resume by position (an offset into the bucket) skip or repeat
# sockets when the bucket changed in between; kernels with exactly-once iteration (UDP
# 6.16, TCP 6.17, backported to some stable series) resume at the first socket not yet
# seen, by cookie.

#: per kind: (iterator program of bpf/sock_iter_batch.bpf.c, socket type)
BATCH_KINDS: dict[str, tuple[str, int]] = {
    "tcp": ("batch_tcp", socket.SOCK_STREAM),
    "udp": ("batch_udp", socket.SOCK_DGRAM),
}
#: bit of TCP_LISTEN (10) in cfg[CFG_STATES]
LISTEN_ONLY = 1 << 10
CFG_PORT, CFG_STATES, CFG_FAMILY, CFG_PORT_MASK, CFG_PORT2 = 0, 1, 2, 3, 4


def reuseport_group(family: int, sotype: int, count: int, port: int = 0,
                    into: list[socket.socket] | None = None) -> list[socket.socket]:
    """`count` SO_REUSEPORT sockets bound to loopback:`port` (0: a free port, the first
    socket's), listening if TCP; appended to `into` (closed there by the caller) as they are
    made, so a failure half-way leaks nothing the caller does not close."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    made = into if into is not None else []
    for _ in range(count):
        sock = socket.socket(family, sotype)
        made.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        port = sock.getsockname()[1]
        if sotype == socket.SOCK_STREAM:
            sock.listen(16)
    return made


def _close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


def read_cookies(fd: int, n: int | None = None) -> list[int]:
    """Cookies from a batch_* iterator fd, one read() of 8 bytes (one socket) each: `n` of
    them, or all until the end (None)."""
    out: list[int] = []
    while n is None or len(out) < n:
        data = os.read(fd, 8)
        if not data:
            if n is not None:
                raise AssertionError(f"iterator ended after {len(out)} of {n} socket(s)")
            break
        if len(data) != 8:
            raise AssertionError(f"read() of one 8-byte record returned {len(data)} bytes")
        out.append(int.from_bytes(data, "little"))
    return out


@contextlib.contextmanager
def batch_iterator(proto: str, port: int, *, family: int = 0, states: int = 0,
                   port_mask: int = 0, port2: int = 0) -> Iterator[lb.Link]:
    """bpf/sock_iter_batch.bpf.c's iterator for `proto` ("tcp"/"udp") listing sockets whose
    local port is `port` (only the `port_mask` bits, 0: all) or `port2` (0: none) or whose
    remote port is `port`, of `family` (0: any) and in one of the `states` (bit mask, 0:
    any): its link, for the block (then detached and unloaded)."""
    prog, _ = BATCH_KINDS[proto]
    with bpf_object("sock_iter_batch", autoload=[prog]) as obj:
        cfg = obj.map("cfg")
        for key, value in ((CFG_PORT, port), (CFG_STATES, states), (CFG_FAMILY, family),
                           (CFG_PORT_MASK, port_mask), (CFG_PORT2, port2)):
            cfg.update(key, value)
        with kernel_says(f"bpf_program__attach_iter(iter/{proto})"):
            link = obj.program(prog).attach_iter()
        with link:
            yield link


@dataclass
class BatchRun:
    """One read of a bucket that changed midway: the cookies in it at the start, read before
    the change, removed and added by the change, and read after it."""

    original: list[int]
    before: list[int]
    removed: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    after: list[int] = field(default_factory=list)

    def problems(self) -> list[str]:
        """What breaks exactly-once: a socket seen twice, an original socket still there
        never seen, a removed socket seen after its removal, a socket nobody made."""
        seen = Counter(self.before + self.after)
        removed, known = set(self.removed), set(self.original) | set(self.added)
        out = []
        for what, bad in (
                ("seen twice or more", [c for c, n in seen.items() if n > 1]),
                ("never seen", [c for c in self.original
                                if c not in removed and not seen[c]]),
                ("seen after being removed", [c for c in self.after if c in removed]),
                ("not made by the test", [c for c in seen if c not in known])):
            if bad:
                out.append(f"{len(bad)} socket(s) {what}")
        return out


def _batch_scenario(proto: str, family: int, change: str) -> list[str]:
    """One resume scenario on a reuseport group of 4: read 3 sockets one per read(), then
    `change` the bucket ("close-seen": close a socket already read; "add": bind 4 more
    into the group), read the rest; what broke exactly-once (nothing: [])."""
    _, sotype = BATCH_KINDS[proto]
    with contextlib.ExitStack() as stack:
        socks: list[socket.socket] = []
        stack.callback(_close_all, socks)
        reuseport_group(family, sotype, 4, into=socks)
        port = socks[0].getsockname()[1]
        link = stack.enter_context(batch_iterator(
            proto, port, family=family, states=LISTEN_ONLY if proto == "tcp" else 0))
        fd = lb.iter_create(link.fd)
        stack.callback(os.close, fd)
        by_cookie = {cookie(s): s for s in socks}
        run = BatchRun(list(by_cookie), read_cookies(fd, 3))
        if change == "close-seen":
            victim = by_cookie[run.before[0]]
            victim.close()
            socks.remove(victim)
            run.removed.append(run.before[0])
        else:
            reuseport_group(family, sotype, 4, port, into=socks)
            run.added.extend(cookie(s) for s in socks[4:])
        run.after = read_cookies(fd)
    return run.problems()


def probe_sock_iter_batch(proto: str) -> str:
    """Exactly-once iteration of iter/`proto` (after sock_iter_batch.c): with the iterator
    stopped inside a reuseport bucket, closing an already-seen socket must not make it skip
    one, and adding sockets at the head of the bucket must not make it repeat one."""
    scenarios = (("close-seen", socket.AF_INET6, "a seen socket closed mid-bucket"),
                 ("add", socket.AF_INET, "4 sockets added mid-bucket"))
    report = []
    failed = False
    for change, family, what in scenarios:
        problems = _batch_scenario(proto, family, change)
        failed = failed or bool(problems)
        report.append(f"{what}: {', '.join(problems) or 'each socket seen exactly once'}")
    text = (f"iter/{proto}, reuseport group of 4 read one socket per read(); "
            + "; ".join(report))
    if failed:
        raise Unsupported(text)
    return text


# --------------------------------------------------------------------------- all namespaces

#: iterator targets an all-namespaces socket iterator might be registered under (none is
#: upstream; the proposal names no target yet): bpf_iter_<name> in the kernel's BTF
ALL_NETNS_TARGETS = ("sock_all_netns", "tcp_all_netns", "udp_all_netns", "netns_sock")


def _set_attach_target(prog: lb.Program, name: str) -> None:
    """bpf_program__set_attach_target(prog, 0, name): for an iterator program, libbpf looks
    bpf_iter_<name> up in the kernel's BTF (ESRCH: the kernel has no such target)."""
    fn = lb.lib().cdll.bpf_program__set_attach_target
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]
    fn.restype = ctypes.c_int
    lb.check(fn(prog.ptr, 0, name.encode()),
             f"bpf_program__set_attach_target(iter, bpf_iter_{name})")


def probe_all_netns_sock_iter() -> str:
    """An iterator over the sockets of every network namespace: retarget an iterator program
    at each candidate target name (the first the kernel has wins); failing all, keep its
    own target, iter/tcp. Loaded and attached, the iterator must list a listener that lives
    in another namespace."""
    answers = []
    target = "tcp"
    with bpf_object("probe_iter", autoload=["probe_iter_allns"], load=False) as obj:
        prog = obj.program("probe_iter_allns")
        for name in ALL_NETNS_TARGETS:
            try:
                _set_attach_target(prog, name)
            except OSError as exc:  # the program keeps its previous target
                answers.append(f"bpf_iter_{name}: {lb.errno_name(exc.errno or 0)}")
                continue
            target = name
            break
        with kernel_says(f"load iter/{target}"):
            obj.load()
        with kernel_says(f"bpf_program__attach_iter(iter/{target})"):
            link = prog.attach_iter()
        with link, _listener_elsewhere() as (other, other_ns):
            want = f"sock {cookie(other)} {other_ns}"
            text = link.read_iter()
    if want in text:
        return f"iter/{target} made in one namespace listed a listener of net:[{other_ns}]"
    tried = "; ".join(answers) + " (ESRCH: no such iterator target in the kernel's BTF)"
    raise Unsupported(f"no iterator over all network namespaces: {tried}; iter/{target} "
                      f"made here did not list a listener of net:[{other_ns}]")


@contextlib.contextmanager
def _listener_elsewhere() -> Iterator[tuple[socket.socket, int]]:
    """A TCP listener in a fresh namespace of its own, and that namespace's inode."""
    def make() -> tuple[socket.socket, int]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        return sock, os.stat("/proc/thread-self/ns/net").st_ino

    sock, ino = in_new_netns(make)
    with sock:
        yield sock, ino
