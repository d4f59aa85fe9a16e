"""Sockets of every network namespace of the system, through BPF socket iterators.

An iter/tcp, iter/udp or iter/unix iterator sees only the network namespace it was created
in (the kernel takes the creating task's namespace when the iterator fd is made), and no
upstream kernel has an iterator over all namespaces (probe ``all_netns_sock_iter``). So this
module does it from user space:

1. `list_netns()`: every network namespace it can reach, deduplicated by nsfs inode:
   named ones (/run/netns/NAME), other nsfs bind mounts (/proc/self/mountinfo), the
   namespace of every thread (/proc/PID/task/TID/ns/net) and every namespace fd a process
   holds open (/proc/PID/fd/N -> ``net:[INODE]``). A namespace kept alive only by a socket
   (its creator gone, nothing else holding it) is not reachable this way.
2. `walk()`: one iterator per namespace, each iterator fd created by a helper thread that
   setns()es into that namespace; the records of all of them, each with its namespace. A
   namespace that disappears before the walk reaches it (a removed name, an exited process)
   is skipped and listed in `Walk.skipped`, not an error. Kernel limit: iter/unix loses the
   rest of a hash bucket whenever a read() stops it inside one (feature
   ``bpf_iter_unix_resume``, no fix upstream), and a read() returns at most 8 pages, so
   AF_UNIX sockets of a namespace with more than that many records can be missed; TCP and
   UDP resume correctly on a stable table.
3. `destroy_matching(predicate)`: bpf_sock_destroy (v6.5) of every TCP/UDP socket the
   predicate picks, in whichever namespace it lives, each exactly once (by cookie).

Record format: the text lines bpf/sock_iter.bpf.c prints (one per socket), parsed by
`parse_records` into `InetRecord`, `UnixRecord` and `SockmapRecord`.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import re
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from .. import bpf as lb
from ..closing import Closing
from .netns import NETNS_DIR, setns

T = TypeVar("T")

# --------------------------------------------------------------------------- records

#: include/net/tcp_states.h (UDP uses ESTABLISHED for connected, CLOSE for unconnected)
TCP_STATES: dict[int, str] = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
    11: "CLOSING", 12: "NEW_SYN_RECV",
}
STATE: dict[str, int] = {name: num for num, name in TCP_STATES.items()}

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RecordError(ValueError):
    """A line that is not what bpf/sock_iter.bpf.c prints."""


@dataclass(frozen=True)
class InetRecord:
    """A TCP or UDP socket as iter/tcp or iter/udp saw it."""

    proto: str  # "tcp" | "udp"
    family: int
    state: int
    lport: int
    rport: int
    uid: int
    inode: int
    cookie: int
    netns: int
    laddr: IpAddress
    raddr: IpAddress

    @property
    def state_name(self) -> str:
        return TCP_STATES.get(self.state, str(self.state))

    @property
    def local(self) -> tuple[str, int]:
        return (str(self.laddr), self.lport)

    @property
    def remote(self) -> tuple[str, int]:
        return (str(self.raddr), self.rport)


@dataclass(frozen=True)
class UnixRecord:
    """An AF_UNIX socket as iter/unix saw it; `name` is "" when unbound, the path, or "@"
    and the abstract name."""

    type: int
    state: int
    inode: int
    cookie: int
    peer_inode: int
    uid: int
    netns: int
    name: str
    proto: str = "unix"


@dataclass(frozen=True)
class SockmapRecord:
    """A socket in a sockmap as iter/sockmap saw it."""

    key: int
    family: int
    protocol: int
    lport: int
    cookie: int
    netns: int
    proto: str = "sockmap"


SockRecord = InetRecord | UnixRecord | SockmapRecord

_HEX_ADDR = re.compile(r"[0-9a-f]{8}|[0-9a-f]{32}")


def _addr(text: str, family: int) -> IpAddress:
    want = 8 if family == 2 else 32
    if len(text) != want or not _HEX_ADDR.fullmatch(text):
        raise RecordError(f"address {text!r}: want {want} hex digits for family {family}")
    raw = bytes.fromhex(text)
    return ipaddress.IPv4Address(raw) if family == 2 else ipaddress.IPv6Address(raw)


def _ints(fields: Sequence[str], line: str) -> list[int]:
    try:
        return [int(f) for f in fields]
    except ValueError:
        raise RecordError(f"non-numeric field in {line!r}") from None


def _unix_name(text: str, line: str) -> str:
    """'-' -> '' (unbound); 'p:HEX' -> the path; 'a:HEX' -> '@' + the abstract name (bytes
    that are not UTF-8 kept as surrogate escapes, as os functions do)."""
    if text == "-":
        return ""
    kind, sep, hexname = text.partition(":")
    if not sep or kind not in ("p", "a") or not re.fullmatch(r"(?:[0-9a-f]{2})+", hexname):
        raise RecordError(f"unix name {text!r} is not '-', 'p:HEX' or 'a:HEX': {line!r}")
    name = bytes.fromhex(hexname).decode(errors="surrogateescape")
    return "@" + name if kind == "a" else name


def parse_record(line: str) -> SockRecord:
    """One line of bpf/sock_iter.bpf.c's output (without its newline)."""
    kind, _, rest = line.partition(" ")
    if kind in ("tcp", "udp"):
        fields = rest.split(" ")
        if len(fields) != 10:
            raise RecordError(f"{kind} record needs 10 fields, got {len(fields)}: {line!r}")
        family, state, lport, rport, uid, inode, cookie, netns = _ints(fields[:8], line)
        if family not in (2, 10):
            raise RecordError(f"family {family} is neither AF_INET nor AF_INET6: {line!r}")
        return InetRecord(kind, family, state, lport, rport, uid, inode, cookie, netns,
                          _addr(fields[8], family), _addr(fields[9], family))
    if kind == "unix":
        fields = rest.split(" ", 7)
        if len(fields) != 8:
            raise RecordError(f"unix record needs 8 fields, got {len(fields)}: {line!r}")
        stype, state, inode, cookie, peer, uid, netns = _ints(fields[:7], line)
        return UnixRecord(stype, state, inode, cookie, peer, uid, netns,
                          _unix_name(fields[7], line))
    if kind == "sockmap":
        fields = rest.split(" ")
        if len(fields) != 6:
            raise RecordError(f"sockmap record needs 6 fields, got {len(fields)}: {line!r}")
        key, family, protocol, lport, cookie, netns = _ints(fields, line)
        return SockmapRecord(key, family, protocol, lport, cookie, netns)
    raise RecordError(f"unknown record kind {kind!r}: {line!r}")


def parse_records(text: str) -> list[SockRecord]:
    """Every record of an iterator's output; a last line without its newline (a record cut
    short) is an error."""
    if text and not text.endswith("\n"):
        raise RecordError(f"output ends inside a record: {text[-80:]!r}")
    return [parse_record(line) for line in text.splitlines()]


def read_fd(fd: int, chunk: int = 1 << 16) -> bytes:
    """Everything an iterator fd yields, read `chunk` bytes at a time (a small `chunk`
    makes the kernel stop and restart the iterator between reads); the fd is not closed."""
    parts: list[bytes] = []
    while True:
        data = os.read(fd, chunk)
        if not data:
            return b"".join(parts)
        parts.append(data)


# --------------------------------------------------------------------------- namespaces

#: where a namespace was found, in the order of preference for the path used to enter it
#: (a name or a mount is meant to hold it; an fd is held on purpose; a thread's namespace
#: changes with the thread)
SOURCES = ("named", "mount", "fd", "task")


@dataclass(frozen=True)
class NetnsCandidate:
    """One way to reach a network namespace: `path` opens it; (`dev`, `inode`) is the
    namespace's identity (stat of the nsfs file)."""

    dev: int
    inode: int
    path: str
    source: str


@dataclass(frozen=True)
class Netns:
    """A network namespace (deduplicated by nsfs dev + inode): the path to enter it, every
    path it was found under (best first; entering tries them in turn) and how it is held."""

    dev: int
    inode: int
    path: str
    sources: tuple[str, ...]
    paths: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"net:[{self.inode}] ({self.path})"


def dedup(candidates: Iterable[NetnsCandidate]) -> list[Netns]:
    """One `Netns` per (dev, inode), in order of first appearance; its paths ordered by how
    stable the hold is (a name, a bind mount, an fd, a thread; SOURCES), `path` the first."""
    groups: dict[tuple[int, int], list[NetnsCandidate]] = {}
    for cand in candidates:
        if cand.source not in SOURCES:
            raise ValueError(f"unknown namespace source {cand.source!r}")
        groups.setdefault((cand.dev, cand.inode), []).append(cand)
    out = []
    for (dev, inode), group in groups.items():
        ordered = sorted(group, key=lambda c: SOURCES.index(c.source))  # stable
        sources = tuple(dict.fromkeys(c.source for c in ordered))
        paths = tuple(dict.fromkeys(c.path for c in ordered))
        out.append(Netns(dev, inode, paths[0], sources, paths))
    return out


def _unescape(field_text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_text)


def nsfs_mounts(mountinfo: str) -> list[tuple[str, int]]:
    """(mount point, namespace inode) of every network namespace bind mount listed in a
    /proc/PID/mountinfo text."""
    out = []
    for line in mountinfo.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields, after = pre.split(" "), post.split(" ")
        if len(fields) < 5 or not after or after[0] != "nsfs":
            continue
        m = re.fullmatch(r"net:\[(\d+)\]", fields[3])
        if m:
            out.append((_unescape(fields[4]), int(m.group(1))))
    return out


def _stat_candidate(path: str, source: str) -> NetnsCandidate | None:
    try:
        st = os.stat(path)
    except OSError:  # gone meanwhile, or not ours to see
        return None
    return NetnsCandidate(st.st_dev, st.st_ino, path, source)


def _named() -> Iterator[NetnsCandidate]:
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir(NETNS_DIR)):
            cand = _stat_candidate(os.path.join(NETNS_DIR, name), "named")
            if cand is not None:
                yield cand


def _mounts() -> Iterator[NetnsCandidate]:
    try:
        with open("/proc/self/mountinfo") as f:
            text = f.read()
    except OSError:
        return
    for mountpoint, inode in nsfs_mounts(text):
        source = "named" if os.path.dirname(mountpoint) == NETNS_DIR else "mount"
        cand = _stat_candidate(mountpoint, source)
        if cand is not None and cand.inode == inode:
            yield cand


def _pids() -> list[str]:
    return sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int)


def _tasks() -> Iterator[NetnsCandidate]:
    for pid in _pids():
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in sorted(tids, key=int):
            cand = _stat_candidate(f"/proc/{pid}/task/{tid}/ns/net", "task")
            if cand is not None:
                yield cand


def _fds() -> Iterator[NetnsCandidate]:
    for pid in _pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            path = f"/proc/{pid}/fd/{fd}"
            try:
                target = os.readlink(path)
            except OSError:
                continue
            if target.startswith("net:["):
                cand = _stat_candidate(path, "fd")
                if cand is not None:
                    yield cand


def netns_candidates() -> Iterator[NetnsCandidate]:
    """Every way this process can reach a network namespace (with repeats)."""
    yield from _named()
    yield from _mounts()
    yield from _tasks()
    yield from _fds()


def list_netns() -> list[Netns]:
    """Every network namespace this process can reach, once each."""
    return dedup(netns_candidates())


def current_netns() -> Netns:
    """The calling thread's network namespace (entered through this thread's /proc path)."""
    path = f"/proc/{os.getpid()}/task/{threading.get_native_id()}/ns/net"
    st = os.stat(path)
    return Netns(st.st_dev, st.st_ino, path, ("task",), (path,))


class NetnsGone(Exception):
    """A namespace could not be entered any more (the way to it disappeared)."""


#: what opening a vanished namespace path answers
_GONE = (errno.ENOENT, errno.ESRCH, errno.ENXIO)


class NetnsRunner(Closing):
    """A helper thread that runs functions inside other network namespaces: `run(ns, fn)`
    setns()es the thread into `ns` (checking it is still the same namespace) and calls
    `fn` there. The caller's own threads never change namespace."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kmatrix-allns")

    def run(self, ns: Netns, fn: Callable[[], T]) -> T:
        """`fn()` in namespace `ns`; NetnsGone when `ns` cannot be entered any more."""
        return self._pool.submit(_enter_and_run, ns, fn).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)



def open_netns(ns: Netns) -> int:
    """An fd of namespace `ns` through the first of its paths that still leads to it
    (caller closes); NetnsGone, saying why for each path, when none does."""
    why = []
    for path in ns.paths or (ns.path,):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno not in _GONE:
                raise
            why.append(f"{path}: {os.strerror(exc.errno or 0)}")
            continue
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == (ns.dev, ns.inode):
            return fd
        os.close(fd)
        why.append(f"{path} now leads to net:[{st.st_ino}]")
    raise NetnsGone(f"net:[{ns.inode}] is gone: " + "; ".join(why))


def _enter_and_run(ns: Netns, fn: Callable[[], T]) -> T:
    fd = open_netns(ns)
    try:
        setns(fd)
    finally:
        os.close(fd)
    return fn()


# --------------------------------------------------------------------------- walking

KINDS = ("tcp", "udp", "unix")


class SockIterators(Closing):
    """The dump programs of bpf/sock_iter.bpf.c, loaded and attached (one iterator link
    per kind); links are namespace-free, each `create()` makes iterator fds in the calling
    thread's namespace."""

    def __init__(self, kinds: Sequence[str] = KINDS) -> None:
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown socket kinds {sorted(unknown)}; known: {KINDS}")
        self.kinds = tuple(kinds)
        self.obj = lb.BpfObject(lb.object_path("sock_iter"),
                                autoload=[f"dump_{k}" for k in self.kinds])
        self.links: list[lb.Link] = []
        try:
            for kind in self.kinds:
                self.links.append(self.obj.program(f"dump_{kind}").attach_iter())
        except BaseException:
            self.close()
            raise

    def create(self) -> list[int]:
        """One iterator fd per kind, in the calling thread's namespace (caller closes)."""
        fds: list[int] = []
        try:
            for link in self.links:
                fds.append(lb.iter_create(link.fd))
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def dump(self, *, chunk: int = 1 << 16) -> list[SockRecord]:
        """Every socket of the calling thread's namespace."""
        return read_all(self.create(), chunk=chunk)

    def close(self) -> None:
        for link in reversed(self.links):
            link.close()
        self.links.clear()
        self.obj.close()



def read_all(fds: Iterable[int], *, chunk: int = 1 << 16) -> list[SockRecord]:
    """Read and close each iterator fd; the records of all."""
    records: list[SockRecord] = []
    errors: list[BaseException] = []
    for fd in fds:
        try:
            if not errors:
                records.extend(parse_records(read_fd(fd, chunk).decode()))
        except BaseException as exc:
            errors.append(exc)
        finally:
            os.close(fd)
    if errors:
        raise errors[0]
    return records


@dataclass(frozen=True)
class Found:
    """A socket and the namespace it was found in."""

    netns: Netns
    record: SockRecord


@dataclass
class Walk:
    """What `walk()` saw: the namespaces it walked, every socket with its namespace, and the
    namespaces skipped because they disappeared first (with why)."""

    namespaces: list[Netns]
    found: list[Found] = field(default_factory=list)
    skipped: list[tuple[Netns, str]] = field(default_factory=list)

    def of(self, ns: Netns) -> list[SockRecord]:
        return [f.record for f in self.found if f.netns.inode == ns.inode]


def walk(namespaces: Sequence[Netns] | None = None, *, kinds: Sequence[str] = KINDS,
         iterators: SockIterators | None = None, runner: NetnsRunner | None = None,
         before: Callable[[Netns], None] | None = None) -> Walk:
    """One iterator per namespace (`namespaces`, default: `list_netns()`), created inside
    it; the union of their records. `iterators`/`runner` may be passed in to reuse loaded
    programs and the helper thread; `before(ns)` is called before entering each namespace
    (tests use it to make one disappear mid-walk)."""
    with contextlib.ExitStack() as stack:
        if iterators is None:
            iterators = stack.enter_context(SockIterators(kinds))
        if runner is None:
            runner = stack.enter_context(NetnsRunner())
        spaces = list_netns() if namespaces is None else list(namespaces)
        result = Walk(spaces)
        for ns in spaces:
            if before is not None:
                before(ns)
            try:
                fds = runner.run(ns, iterators.create)
            except NetnsGone as exc:
                result.skipped.append((ns, str(exc)))
                continue
            result.found.extend(Found(ns, rec) for rec in read_all(fds))
        return result


# --------------------------------------------------------------------------- destroying


@dataclass(frozen=True)
class Destroyed:
    """A socket `destroy_matching` chose, and what bpf_sock_destroy answered for it (None:
    the destroy iterator never met it, e.g. it closed meanwhile)."""

    found: Found
    ret: int | None
    calls: int


@dataclass
class DestroyResult:
    chosen: list[Destroyed]
    skipped: list[tuple[Netns, str]]

    @property
    def destroyed(self) -> list[Destroyed]:
        return [d for d in self.chosen if d.ret == 0]


_DESTROYED_VAL = struct.Struct("<iI")


def destroy_matching(predicate: Callable[[Found], bool], *,
                     namespaces: Sequence[Netns] | None = None,
                     kinds: Sequence[str] = ("tcp", "udp"),
                     runner: NetnsRunner | None = None) -> DestroyResult:
    """bpf_sock_destroy every TCP/UDP socket, in any namespace, for which `predicate`
    (given the socket's record and namespace) is true: a dump walk picks them, then a
    destroy iterator runs in each namespace that has one, matching by cookie, so each
    chosen socket is destroyed at most once and nothing else is touched. Needs the kfunc
    (v6.5): on older kernels loading bpf/sock_destroy.bpf.c fails with libbpf's answer."""
    bad = set(kinds) - {"tcp", "udp"}
    if bad:
        raise ValueError(f"bpf_sock_destroy handles TCP and UDP only, not {sorted(bad)}")
    with contextlib.ExitStack() as stack:
        if runner is None:
            runner = stack.enter_context(NetnsRunner())
        seen = walk(namespaces, kinds=kinds, runner=runner)
        chosen = [f for f in seen.found if predicate(f)]
        obj = stack.enter_context(lb.BpfObject(lb.object_path("sock_destroy"),
                                               autoload=[f"destroy_{k}" for k in kinds]))
        targets = obj.map("targets")
        for f in chosen:
            targets.update(struct.pack("<Q", f.record.cookie), b"\x01")
        links = [stack.enter_context(obj.program(f"destroy_{k}").attach_iter())
                 for k in kinds]
        skipped = list(seen.skipped)
        todo = dict.fromkeys(f.netns for f in chosen)
        for ns in todo:
            def create() -> list[int]:
                return [lb.iter_create(link.fd) for link in links]
            try:
                fds = runner.run(ns, create)
            except NetnsGone as exc:
                skipped.append((ns, str(exc)))
                continue
            for fd in fds:
                try:
                    read_fd(fd)
                finally:
                    os.close(fd)
        log = obj.map("destroyed")
        out = []
        for f in chosen:
            raw = log.lookup(struct.pack("<Q", f.record.cookie))
            ret, calls = _DESTROYED_VAL.unpack(raw) if raw is not None else (None, 0)
            out.append(Destroyed(f, ret, calls))
        return DestroyResult(out, skipped)


__all__ = [
    "KINDS", "SOURCES", "STATE", "TCP_STATES", "DestroyResult", "Destroyed", "Found",
    "InetRecord", "Netns", "NetnsCandidate", "NetnsGone", "NetnsRunner", "RecordError",
    "SockIterators", "SockRecord", "SockmapRecord", "UnixRecord", "Walk", "current_netns",
    "dedup", "destroy_matching", "list_netns", "netns_candidates", "nsfs_mounts", "open_netns",
    "parse_record", "parse_records", "read_all", "read_fd", "walk",
]
