"""Guest-side pytest fixtures: network namespaces, veth pairs, BPF objects, deadlines.

Loaded as a plugin by the project's conftest.py (``pytest_plugins``). Everything here runs
as root inside the kernel under test; every resource is created with a unique name (several
pytest workers may share one guest) and removed at teardown. Teardown tolerates resources
that are already gone (ENOENT/ENODEV: a test deleted them, or a namespace took its devices
with it) and fails on any other error.

Plain helpers (usable without pytest): `run_in_netns`, `create_netns`, `remove_netns`,
`create_veth_pair`, `delete_link`, `set_link_up`, `wait_until`, `wait_for_oper_up`,
`unique_name`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from .libbpf import BpfObject

T = TypeVar("T")

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
#: veth addresses come from the benchmarking range (RFC 2544), one /30 per pair
TEST_NET = ipaddress.IPv4Network("198.18.0.0/15")
_GONE = (errno.ENOENT, errno.ENODEV)

_counter = itertools.count()
_libc = ctypes.CDLL(None, use_errno=True)


def unique_name(prefix: str, limit: int = 15) -> str:
    """A name unique among this guest's processes, at most `limit` chars (IFNAMSIZ-1)."""
    name = f"{prefix}{os.getpid() % 100000:x}x{next(_counter)}"
    if len(name) > limit:
        raise ValueError(f"name {name!r} longer than {limit} chars; use a shorter prefix")
    return name


# --------------------------------------------------------------------------- deadlines


def wait_until(predicate: Callable[[], T], *, timeout: float = 5.0, interval: float = 0.005,
               what: str = "condition") -> T:
    """Poll `predicate` until it returns something truthy and return that; TimeoutError
    naming `what` once `timeout` seconds have passed. The poll interval backs off to 0.1 s.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, 0.1)


# --------------------------------------------------------------------------- namespaces


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(CLONE_NEWNET): {os.strerror(err)}")


@contextlib.contextmanager
def run_in_netns(name: str | None) -> Iterator[None]:
    """Switch the calling thread into network namespace `name` (``/run/netns/NAME``) for
    the block, and back to where it was. Sockets, netlink and ifindex-based BPF calls made
    in the block act in that namespace. `None` stays put."""
    if name is None:
        yield
        return
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(orig)
    finally:
        os.close(orig)


def create_netns(name: str, *, lo_up: bool = True) -> None:
    """Create network namespace `name` at /run/netns/NAME (like `ip netns add`); bring lo
    up.

    A short-lived thread unshares its own network namespace and has pyroute2 bind-mount it
    (`netns.attach`); unlike `pyroute2.netns.create` this forks no child process, which
    matters under TCG where a fork of the test process costs seconds."""
    from pyroute2 import netns

    box: dict[str, BaseException] = {}

    def body() -> None:
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
            netns.attach(name, f"{os.getpid()}/task/{threading.get_native_id()}")
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=body, name=f"netns-{name}")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    if lo_up:
        set_link_up("lo", netns=name)


def remove_netns(name: str) -> None:
    """Delete network namespace `name`; already gone is fine."""
    from pyroute2 import netns

    try:
        netns.remove(name)
    except OSError as exc:
        if exc.errno not in _GONE:
            raise


@contextlib.contextmanager
def _ipr(netns: str | None) -> Iterator[Any]:
    from pyroute2 import IPRoute

    with run_in_netns(netns), IPRoute() as ipr:
        yield ipr


def ifindex(ifname: str, *, netns: str | None = None) -> int:
    """ifindex of `ifname` in `netns`; OSError ENODEV if there is none."""
    with _ipr(netns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise OSError(errno.ENODEV, f"no device {ifname} in netns {netns or '(current)'}")
    return int(found[0])


def set_link_up(ifname: str, *, netns: str | None = None) -> None:
    with _ipr(netns) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], state="up")


def delete_link(ifname: str, *, netns: str | None = None) -> None:
    """`ip link del`; already gone (ENODEV, or its namespace is gone) is fine."""
    from pyroute2.netlink.exceptions import NetlinkError

    if netns is not None and not os.path.exists(os.path.join(NETNS_DIR, netns)):
        return
    with _ipr(netns) as ipr:
        try:
            ipr.link("del", ifname=ifname)
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise


def oper_state(ifname: str, *, netns: str | None = None) -> str:
    with _ipr(netns) as ipr:
        links = ipr.get_links(ifname=ifname)
    return str(links[0].get("IFLA_OPERSTATE")) if links else "ABSENT"


def wait_for_oper_up(ifname: str, *, netns: str | None = None, timeout: float = 5.0) -> None:
    """Wait until the device's operstate is UP (carrier on, ready to pass packets)."""
    wait_until(lambda: oper_state(ifname, netns=netns) == "UP", timeout=timeout,
               what=f"{ifname} operstate UP in netns {netns or '(current)'}")


# --------------------------------------------------------------------------- veth


@dataclass(frozen=True)
class VethEnd:
    name: str
    ifindex: int
    address: str
    netns: str | None


@dataclass(frozen=True)
class VethPair:
    """Two connected veth devices, up, with addresses in one /30 of TEST_NET."""

    a: VethEnd
    b: VethEnd
    prefixlen: int = 30


_subnet_lock = threading.Lock()
_subnet_seq = itertools.count()


def _next_subnet() -> ipaddress.IPv4Network:
    """A /30 of TEST_NET, distinct per pair in this process and spread by pid across
    processes sharing the guest."""
    with _subnet_lock:
        seq = next(_subnet_seq)
    count = TEST_NET.num_addresses // 4
    index = ((os.getpid() % 512) * 64 + seq) % count
    return ipaddress.IPv4Network((int(TEST_NET.network_address) + 4 * index, 30))


def create_veth_pair(*, netns_a: str | None = None, netns_b: str | None = None,
                     prefix: str = "kv", addresses: bool = True,
                     wait_up: bool = True) -> VethPair:
    """Create a veth pair with unique names, end `a` in `netns_a` and `b` in `netns_b`
    (None: the calling thread's namespace), both up, with IPv4 addresses from one /30."""
    name_a, name_b = unique_name(prefix + "a"), unique_name(prefix + "b")
    subnet = _next_subnet()
    hosts = list(subnet.hosts())
    addr_a, addr_b = (str(hosts[0]), str(hosts[1])) if addresses else ("", "")
    with _ipr(None) as ipr:
        ipr.link("add", ifname=name_a, kind="veth", peer={"ifname": name_b})
        try:
            for name, ns in ((name_a, netns_a), (name_b, netns_b)):
                if ns is not None:
                    ipr.link("set", index=ipr.link_lookup(ifname=name)[0], net_ns_fd=ns)
        except BaseException:
            with contextlib.suppress(Exception):
                ipr.link("del", ifname=name_a)
            raise
    try:
        ends = []
        for name, ns, addr in ((name_a, netns_a, addr_a), (name_b, netns_b, addr_b)):
            with _ipr(ns) as ipr:
                idx = ipr.link_lookup(ifname=name)[0]
                if addresses:
                    ipr.addr("add", index=idx, address=addr, prefixlen=subnet.prefixlen)
                ipr.link("set", index=idx, state="up")
            ends.append(VethEnd(name, int(idx), addr, ns))
        if wait_up:
            for end in ends:
                wait_for_oper_up(end.name, netns=end.netns)
    except BaseException:
        delete_link(name_a, netns=netns_a)
        raise
    return VethPair(ends[0], ends[1], subnet.prefixlen)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def netns_factory() -> Iterator[Callable[[], str]]:
    """Factory: each call creates another unique network namespace (lo up) and returns its
    name; all are deleted at teardown."""
    created: list[str] = []

    def make() -> str:
        name = unique_name("kmx-ns-", limit=64)
        create_netns(name)
        created.append(name)
        return name

    yield make
    for name in reversed(created):
        remove_netns(name)


@pytest.fixture
def netns(netns_factory: Callable[[], str]) -> str:
    """A unique network namespace with lo up; yields its name (/run/netns/NAME), deleted
    on teardown. Enter it with `run_in_netns(name)`."""
    return netns_factory()


@pytest.fixture
def veth_factory() -> Iterator[Callable[..., VethPair]]:
    """Factory: ``veth_factory(netns_a=None, netns_b=None)`` creates a veth pair (unique
    names, up, 198.18.x.y/30 addresses), each end optionally in a namespace; deleted at
    teardown (gone already is fine)."""
    pairs: list[VethPair] = []

    def make(**kwargs: Any) -> VethPair:
        pair = create_veth_pair(**kwargs)
        pairs.append(pair)
        return pair

    yield make
    for pair in reversed(pairs):
        delete_link(pair.a.name, netns=pair.a.netns)


@pytest.fixture
def veth_pair(veth_factory: Callable[..., VethPair], netns: str) -> VethPair:
    """A veth pair: end `a` in the test's current namespace, end `b` in the `netns`
    fixture's namespace; both up, with addresses a.address / b.address in one /30."""
    return veth_factory(netns_b=netns)


@pytest.fixture
def bpf_object() -> Iterator[Callable[..., BpfObject]]:
    """Factory: ``bpf_object("tcx_chain", **BpfObject kwargs)`` opens and loads
    bpf/tcx_chain.bpf.c's object (built and cached by harness.bpfobj); every object is
    closed at teardown, which releases its programs, maps and any links it still owns."""
    from ..bpfobj import object_path

    objects: list[BpfObject] = []

    def load(name: str, **kwargs: Any) -> BpfObject:
        obj = BpfObject(object_path(name), **kwargs)
        objects.append(obj)
        return obj

    yield load
    for obj in reversed(objects):
        obj.close()


@pytest.fixture
def resources() -> Iterator[contextlib.ExitStack]:
    """An ExitStack closed at teardown: ``resources.enter_context(prog.attach_tcx(...))``
    keeps a link (or any context manager) until the test ends."""
    with contextlib.ExitStack() as stack:
        yield stack
