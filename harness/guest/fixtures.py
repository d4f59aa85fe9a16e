"""Guest-side pytest fixtures: network namespaces, veth pairs, BPF objects, resources.

Loaded as a plugin by the project's conftest.py (``pytest_plugins``). Everything here runs
as root inside the kernel under test; every resource is created with a unique name (several
pytest workers may share one guest) and removed at teardown. Teardown tolerates resources
that are already gone (ENOENT/ENODEV: a test deleted them, or a namespace took its devices
with it) and fails on any other error.

The plain helpers these fixtures use live in `harness.guest.net` (netns, links, veth) and
`harness.guest.wait`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import pytest

from ..protocol import Expectation
from .bpf import BpfObject, object_path
from .expect import expectation, refused
from .net.links import delete_link
from .net.netns import create_netns, remove_netns
from .net.nics import Nic, borrowed, root_nics
from .net.veth import VethPair, create_veth_pair
from .wait import unique_name


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
    bpf/tcx_chain.bpf.c's object (compiled on the host by harness.bpf.compile); every object is
    closed at teardown, which releases its programs, maps and any links it still owns."""

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


class KernelExpectations:
    """What this kernel is expected to do (the host's feature table), for cases that watch
    the kernel refuse something themselves."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def of(self, feature: str) -> Expectation | None:
        return expectation(self.config, feature)

    def refused(self, feature: str | None, observed: str) -> NoReturn:
        """The kernel refused what the case is named for: FAIL where `feature` is expected,
        SKIP with `observed` (the errno) where it is not; never a pass."""
        refused(self.config, feature, observed)


@pytest.fixture
def expect(pytestconfig: pytest.Config) -> KernelExpectations:
    """This kernel's expectations (images/features.toml as the host applied it):
    ``expect.refused("netkit_scrub", "kernel reports no IFLA_NETKIT_SCRUB")``."""
    return KernelExpectations(pytestconfig)


@pytest.fixture
def vm_nics() -> Iterator[list[Nic]]:
    """The VM's virtio-net NICs (two joined by a hub with @pytest.mark.nics("loop")),
    moved into the case's network namespace, up, for the case; back in the root namespace
    after it. Skips when the VM has none (a case without the nics marker)."""
    names = root_nics()
    if not names:
        pytest.skip("this VM has no virtio-net NICs: mark the case @pytest.mark.nics('loop') "
                    "and kmatrix boots its kernel with two, joined by a QEMU hub")
    with borrowed(names) as nics:
        yield nics
