"""TCX (tc BPF links, multi-prog attach points) in the kernel under test.

Modelled on the kernel selftests tools/testing/selftests/bpf/prog_tests/tc_links.c and
tc_opts.c: attach at ingress and egress, BPF_F_BEFORE/AFTER relative to a program fd, a
link fd, a program id and a link id, revisions and expected_revision, query order, link
update, invalid flag combinations, links going defunct with their device, coexistence with
classic tc (cls_bpf), and non-link (BPF_PROG_ATTACH) attachments mixed with links.

Every test runs in its own network namespace (fixture `chain`), on that namespace's lo
(ifindex 1) unless it builds a veth pair, and proves what it claims with real packets: the
programs of bpf/tcx_chain.bpf.c count UDP datagrams to TEST_PORT per program (`hits`) and
log the order they ran in (`trace`). Error numbers are the ones the kernel's
kernel/bpf/mprog.c, kernel/bpf/tcx.c and kernel/bpf/syscall.c return for each request.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from harness.guest import bpf as lb
from harness.guest.bpf import (
    BPF_F_AFTER,
    BPF_F_BEFORE,
    BPF_F_ID,
    BPF_F_LINK,
    BPF_F_REPLACE,
    BPF_TCX_EGRESS,
    BPF_TCX_INGRESS,
    BpfObject,
    Link,
    Program,
    QueryResult,
    counters,
    object_path,
)
from harness.guest.evidence.fixture import StackCounters
from harness.guest.evidence.model import render
from harness.guest.net.netns import run_in_netns
from harness.guest.net.veth import VethPair
from harness.guest.wait import wait_until

pytestmark = pytest.mark.requires("tcx")

LO = 1  # lo's ifindex in every new network namespace
TEST_PORT = 4242
#: how long a dropped datagram is given to (wrongly) show up before we call it dropped
DROP_GRACE = 0.3
#: program numbers (bpf/tcx_chain.bpf.c): tc1..tc4 TCX_NEXT, tc5/tc6 TCX_PASS
CLS = 7  # the classic cls_bpf filter
DROP = 8  # tc_drop

DIRECTIONS = {"ingress": BPF_TCX_INGRESS, "egress": BPF_TCX_EGRESS}
OTHER: dict[int, int] = {BPF_TCX_INGRESS: BPF_TCX_EGRESS, BPF_TCX_EGRESS: BPF_TCX_INGRESS}
NO_SUCH_ID = 0xFFFFFFFF  # no program/link ever gets this id


def query(ifindex: int, target: int) -> QueryResult:
    """BPF_PROG_QUERY; a device that never had a tcx entry counts as empty.

    Kernels up to 6.12 answer ENOENT there, later ones count=0 (see test_query_empty)."""
    try:
        return lb.prog_query(ifindex, target)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
        return QueryResult(count=0, revision=0, attach_flags=0)


@dataclass
class Chain:
    """The loaded tcx_chain object, the device and hook under test, and packet helpers.

    The test thread is inside `netns` while it runs."""

    obj: BpfObject
    target: int
    netns: str
    ifindex: int = LO
    links: list[Link] = field(default_factory=list)

    def prog(self, n: int | str) -> Program:
        return self.obj.program(n if isinstance(n, str) else f"tc{n}")

    def pid(self, n: int | str) -> int:
        return self.prog(n).id

    def attach(self, n: int | str, ifindex: int | None = None, **opts: int) -> Link:
        """bpf_program__attach_tcx of program `n` at the chain's hook; closed at teardown."""
        link = self.prog(n).attach_tcx(self.ifindex if ifindex is None else ifindex, **opts)
        self.links.append(link)
        return link

    def create(self, n: int | str, **opts: int) -> Link:
        """The same through raw bpf_link_create (no libbpf-side checks)."""
        link = lb.link_create(self.prog(n), self.ifindex, self.target,
                              flags=opts.get("flags", 0),
                              relative_fd=opts.get("relative_fd", 0),
                              relative_id=opts.get("relative_id", 0),
                              expected_revision=opts.get("expected_revision", 0))
        self.links.append(link)
        return link

    def query(self, target: int | None = None) -> QueryResult:
        return query(self.ifindex, self.target if target is None else target)

    def count(self, target: int | None = None) -> int:
        return self.query(target).count

    def reset(self) -> None:
        self.obj.map("hits").zero()
        self.obj.map("trace").zero()

    def hits(self) -> dict[int, int]:
        """Packets each program counted (only non-zero entries)."""
        return counters.hits(self.obj.map("hits"))

    def trace(self) -> list[int]:
        return counters.trace(self.obj.map("trace"))

    def send(self, count: int = 1, *, expect_delivery: bool = True) -> int:
        """Send `count` UDP datagrams over lo to 127.0.0.1:TEST_PORT (egress then ingress
        of lo); return how many arrived (each waited for, or DROP_GRACE when not expected).
        """
        return udp_exchange(None, None, "127.0.0.1", count, expect_delivery=expect_delivery)

    def run_once(self) -> list[int]:
        """Reset the counters, send one datagram, return the order programs ran in."""
        self.reset()
        assert self.send(1) == 1, "the test datagram was not delivered"
        return self.trace()

    def close(self) -> None:
        for link in reversed(self.links):
            link.close()


def udp_exchange(sender_ns: str | None, receiver_ns: str | None, dst: str, count: int,
                 *, expect_delivery: bool = True) -> int:
    """Send `count` datagrams from `sender_ns` to dst:TEST_PORT, received in
    `receiver_ns`; returns how many arrived."""
    with run_in_netns(receiver_ns):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx:
        rx.bind((dst, TEST_PORT))
        rx.setblocking(False)
        with run_in_netns(sender_ns):
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        received = 0
        with tx:
            for i in range(count):
                tx.sendto(b"kmatrix-%d" % i, (dst, TEST_PORT))
                if expect_delivery:
                    wait_until(lambda: _recv_one(rx), timeout=5, what=f"datagram {i}")
                    received += 1
        if not expect_delivery:
            try:
                wait_until(lambda: _recv_one(rx), timeout=DROP_GRACE, what="a datagram")
                received += 1 + sum(1 for _ in iter(lambda: _recv_one(rx), False))
            except TimeoutError:
                pass
        return received


def _recv_one(sock: socket.socket) -> bool:
    try:
        sock.recv(64)
        return True
    except BlockingIOError:
        return False


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(params=list(DIRECTIONS), ids=list(DIRECTIONS))
def target(request: pytest.FixtureRequest) -> int:
    """The TCX hook under test: BPF_TCX_INGRESS or BPF_TCX_EGRESS."""
    return DIRECTIONS[request.param]


class ChainObjects:
    """tcx_chain loaded once per attach type for the whole module (a load costs seconds
    under TCG); tests reset its maps and close their links, so they stay independent."""

    def __init__(self) -> None:
        self._objs: dict[int, BpfObject] = {}

    def __call__(self, target: int) -> BpfObject:
        if target not in self._objs:
            def prepare(obj: BpfObject) -> None:
                for prog in obj.programs.values():
                    if prog.type == lb.ProgType.SCHED_CLS:
                        prog.set_expected_attach_type(target)

            obj = BpfObject(object_path("tcx_chain"), prepare=prepare)
            obj.map("cfg").update(0, TEST_PORT)
            self._objs[target] = obj
        obj = self._objs[target]
        obj.map("hits").zero()
        obj.map("trace").zero()
        return obj

    def close(self) -> None:
        for obj in self._objs.values():
            obj.close()


@pytest.fixture(scope="module")
def chain_objects() -> Iterator[ChainObjects]:
    objects = ChainObjects()
    try:
        yield objects
    finally:
        objects.close()


@pytest.fixture
def chain(chain_objects: ChainObjects, netns: str, target: int) -> Iterator[Chain]:
    """tcx_chain for `target`; the test runs inside the fresh namespace `netns`."""
    obj = chain_objects(target)
    with run_in_netns(netns):
        c = Chain(obj, target, netns)
        assert c.count() == 0 and c.count(OTHER[target]) == 0
        try:
            yield c
        finally:
            c.close()


# --------------------------------------------------------------------------- basics


def test_attach(chain: Chain) -> None:
    """One link at the hook: query, link info, packets counted; gone again on close."""
    pid1 = chain.pid(1)
    link = chain.attach(1)
    info = link.info()
    assert info.type == lb.LinkType.TCX
    assert info.prog_id == pid1
    assert info.ifindex == LO
    assert info.attach_type == chain.target

    q = chain.query()
    assert (q.count, q.revision) == (1, 2)
    assert q.prog_ids == [pid1]
    assert q.link_ids == [info.id]
    assert chain.count(OTHER[chain.target]) == 0

    chain.reset()
    assert chain.send(3) == 3
    assert chain.hits() == {1: 3}

    link.close()
    assert chain.count() == 0
    chain.reset()
    assert chain.send(2) == 2
    assert chain.hits() == {}


def test_ingress_and_egress(chain_objects: ChainObjects, netns: str) -> None:
    """tc1 at ingress and tc2 at egress of lo: a datagram to 127.0.0.1 leaves through the
    egress hook and comes back through the ingress hook, each counted once per datagram."""
    ing = chain_objects(BPF_TCX_INGRESS)
    egr = chain_objects(BPF_TCX_EGRESS)
    with run_in_netns(netns):
        c = Chain(ing, BPF_TCX_INGRESS, netns)
        with ing.program("tc1").attach_tcx(LO) as l1, egr.program("tc2").attach_tcx(LO) as l2:
            qi, qe = query(LO, BPF_TCX_INGRESS), query(LO, BPF_TCX_EGRESS)
            assert (qi.count, qi.prog_ids, qi.link_ids) == (1, [ing.program("tc1").id],
                                                             [l1.info().id])
            assert (qe.count, qe.prog_ids, qe.link_ids) == (1, [egr.program("tc2").id],
                                                             [l2.info().id])
            assert l1.info().id != l2.info().id
            assert c.send(4) == 4
            assert Chain(ing, BPF_TCX_INGRESS, netns).hits() == {1: 4}
            assert Chain(egr, BPF_TCX_EGRESS, netns).hits() == {2: 4}
        assert query(LO, BPF_TCX_INGRESS).count == 0
        assert query(LO, BPF_TCX_EGRESS).count == 0


def test_query_empty(netns: str) -> None:
    """BPF_PROG_QUERY on a device that never had a tcx program: either an empty answer
    (count 0) or ENOENT for 'no tcx entry'; nothing else."""
    with run_in_netns(netns):
        for target in DIRECTIONS.values():
            try:
                q = lb.prog_query(LO, target)
            except OSError as exc:
                assert exc.errno == errno.ENOENT, exc
            else:
                assert (q.count, q.prog_ids, q.link_ids) == (0, [], [])


def test_query_no_device(netns: str) -> None:
    """Query and attach on an ifindex that does not exist: ENODEV."""
    with run_in_netns(netns):
        with pytest.raises(OSError) as exc:
            lb.prog_query(4242, BPF_TCX_INGRESS)
        assert exc.value.errno == errno.ENODEV


# --------------------------------------------------------------------------- ordering


def _anchor(chain: Chain, kind: str, n: int, links: dict[int, Link]) -> dict[str, int]:
    """Options naming program/link `n` as the relative, the way `kind` says."""
    if kind == "prog":
        return {"flags": 0, "relative_fd": chain.prog(n).fd}
    if kind == "link":
        return {"flags": BPF_F_LINK, "relative_fd": links[n].fd}
    if kind == "prog_id":
        return {"flags": BPF_F_ID, "relative_id": chain.pid(n)}
    if kind == "link_id":
        return {"flags": BPF_F_LINK | BPF_F_ID, "relative_id": links[n].info().id}
    raise ValueError(kind)


def _check_relative(chain: Chain, where: int, kind: str) -> None:
    """tc1, tc2 appended; then tc3 and tc4 placed `where` (BEFORE/AFTER) relative to
    tc2 and tc1 (named as `kind`); query order and run order must agree."""
    links = {1: chain.attach(1), 2: chain.attach(2)}
    q = chain.query()
    assert (q.count, q.revision) == (2, 3)
    assert q.prog_ids == [chain.pid(1), chain.pid(2)]
    assert chain.run_once() == [1, 2]

    first, second = (2, 1) if where == BPF_F_BEFORE else (1, 2)
    opts = _anchor(chain, kind, first, links)
    links[3] = chain.attach(3, **{**opts, "flags": opts["flags"] | where})
    opts = _anchor(chain, kind, second, links)
    links[4] = chain.attach(4, **{**opts, "flags": opts["flags"] | where})

    order = [4, 1, 3, 2] if where == BPF_F_BEFORE else [1, 3, 2, 4]
    q = chain.query()
    assert (q.count, q.revision) == (4, 5)
    assert q.prog_ids == [chain.pid(n) for n in order]
    assert q.link_ids == [links[n].info().id for n in order]
    assert chain.run_once() == order
    assert chain.hits() == dict.fromkeys(order, 1)


@pytest.mark.parametrize("kind", ["prog", "link", "prog_id", "link_id"])
def test_before(chain: Chain, kind: str) -> None:
    """BPF_F_BEFORE relative to a program fd, a link fd (BPF_F_LINK), a program id
    (BPF_F_ID) and a link id (BPF_F_LINK|BPF_F_ID)."""
    _check_relative(chain, BPF_F_BEFORE, kind)


@pytest.mark.parametrize("kind", ["prog", "link", "prog_id", "link_id"])
def test_after(chain: Chain, kind: str) -> None:
    """BPF_F_AFTER relative to a program fd, a link fd, a program id and a link id."""
    _check_relative(chain, BPF_F_AFTER, kind)


def test_prepend(chain: Chain) -> None:
    """BPF_F_BEFORE without a relative puts the program first."""
    for n in (1, 2, 3, 4):
        chain.attach(n, flags=BPF_F_BEFORE if n > 1 else 0)
    q = chain.query()
    assert (q.count, q.revision) == (4, 5)
    assert q.prog_ids == [chain.pid(n) for n in (4, 3, 2, 1)]
    assert chain.run_once() == [4, 3, 2, 1]


def test_append(chain: Chain) -> None:
    """BPF_F_AFTER without a relative (and no flag at all) appends."""
    for n in (1, 2, 3, 4):
        chain.attach(n, flags=BPF_F_AFTER if n % 2 else 0)
    q = chain.query()
    assert (q.count, q.revision) == (4, 5)
    assert q.prog_ids == [chain.pid(n) for n in (1, 2, 3, 4)]
    assert chain.run_once() == [1, 2, 3, 4]


# --------------------------------------------------------------------------- revisions


def test_revision_estale(chain: Chain) -> None:
    """expected_revision must equal the hook's revision, else ESTALE and nothing changes.
    The revision starts at 1 and moves by one per attach, detach and program swap."""
    l1 = chain.attach(1, expected_revision=1)
    assert chain.query().revision == 2

    with pytest.raises(OSError) as exc:
        chain.attach(2, expected_revision=1)
    assert exc.value.errno == errno.ESTALE
    q = chain.query()
    assert (q.count, q.revision, q.prog_ids) == (1, 2, [chain.pid(1)])

    with pytest.raises(OSError) as exc:
        chain.attach(2, expected_revision=3)
    assert exc.value.errno == errno.ESTALE
    assert chain.count() == 1

    chain.attach(2, expected_revision=2)
    q = chain.query()
    assert (q.count, q.revision) == (2, 3)
    assert chain.run_once() == [1, 2]

    l1.update(chain.prog(3))  # a program swap is a change too
    assert chain.query().revision == 4
    with pytest.raises(OSError) as exc:
        chain.attach(4, expected_revision=3)
    assert exc.value.errno == errno.ESTALE
    l1.detach()
    q = chain.query()
    assert (q.count, q.revision, q.prog_ids) == (1, 5, [chain.pid(2)])
    assert chain.run_once() == [2]


# --------------------------------------------------------------------------- link update


def test_link_update(chain: Chain) -> None:
    """Replacing a link's program keeps its place and its link id (upstream
    tc_links_replace): BPF_F_REPLACE on link creation is refused, BPF_LINK_UPDATE works."""
    l1 = chain.attach(1, expected_revision=1)
    l2 = chain.attach(2, flags=BPF_F_BEFORE | BPF_F_ID, relative_id=chain.pid(1),
                      expected_revision=2)
    lid1, lid2 = l1.info().id, l2.info().id
    q = chain.query()
    assert (q.count, q.revision) == (2, 3)
    assert (q.prog_ids, q.link_ids) == ([chain.pid(2), chain.pid(1)], [lid2, lid1])
    assert chain.run_once() == [2, 1]

    # a link cannot be created "replacing" another program: the kernel finds no entry for
    # the new link's own (old-program-less) tuple
    for opts in ({"flags": BPF_F_REPLACE, "relative_fd": chain.prog(2).fd},
                 {"flags": BPF_F_REPLACE | BPF_F_LINK, "relative_fd": l2.fd},
                 {"flags": BPF_F_REPLACE | BPF_F_LINK | BPF_F_AFTER | BPF_F_ID,
                  "relative_id": lid2}):
        with pytest.raises(OSError) as exc:
            chain.create(3, expected_revision=3, **opts)
        assert exc.value.errno == errno.ENOENT, opts
        assert chain.count() == 2

    l2.update(chain.prog(3))
    info = l2.info()
    assert (info.id, info.prog_id) == (lid2, chain.pid(3))
    q = chain.query()
    assert (q.count, q.revision) == (2, 4)
    assert (q.prog_ids, q.link_ids) == ([chain.pid(3), chain.pid(1)], [lid2, lid1])
    assert chain.run_once() == [3, 1]

    l2.detach()
    q = chain.query()
    assert (q.count, q.revision, q.prog_ids, q.link_ids) == (1, 5, [chain.pid(1)], [lid1])
    assert chain.run_once() == [1]

    l1.update(chain.prog(1))  # updating to the same program changes nothing
    q = chain.query()
    assert (q.count, q.revision, q.prog_ids, q.link_ids) == (1, 5, [chain.pid(1)], [lid1])
    assert chain.run_once() == [1]


def test_link_update_refused(chain: Chain) -> None:
    """BPF_LINK_UPDATE errors leave the chain untouched: wrong old program (EPERM), old
    program without BPF_F_REPLACE or an unknown flag (EINVAL), a program already in the
    chain (EEXIST), a program of another type (EINVAL)."""
    l1 = chain.attach(1)
    chain.attach(2)
    before = chain.query()

    cases: list[tuple[str, Callable[[], None], int]] = [
        ("wrong old prog", lambda: l1.update(chain.prog(3), old_prog=chain.prog(2)),
         errno.EPERM),
        ("old prog without BPF_F_REPLACE",
         lambda: l1.update(chain.prog(3), old_prog=chain.prog(1), flags=0), errno.EINVAL),
        ("unknown flag", lambda: l1.update(chain.prog(3), flags=BPF_F_BEFORE), errno.EINVAL),
        ("prog already attached", lambda: l1.update(chain.prog(2)), errno.EEXIST),
        ("other prog type", lambda: l1.update(chain.obj.program("not_tc")), errno.EINVAL),
    ]
    for what, call, want in cases:
        with pytest.raises(OSError) as exc:
            call()
        assert exc.value.errno == want, f"{what}: {exc.value}"
        assert chain.query() == before, what
    assert chain.run_once() == [1, 2]

    l1.update(chain.prog(3), old_prog=chain.prog(1))  # the right old program: works
    assert chain.query().prog_ids == [chain.pid(3), chain.pid(2)]
    assert chain.run_once() == [3, 2]


# --------------------------------------------------------------------------- invalid


def _invalid_empty(c: Chain) -> list[tuple[str, int | str, dict[str, int], int]]:
    """(id, program, link_create options, errno) refused on an empty hook."""
    fd1, fd2 = c.prog(1).fd, c.prog(2).fd
    return [
        ("before_and_after", 1, {"flags": BPF_F_BEFORE | BPF_F_AFTER}, errno.ERANGE),
        ("before_id_zero", 1, {"flags": BPF_F_BEFORE | BPF_F_ID}, errno.ENOENT),
        ("after_id_zero", 1, {"flags": BPF_F_AFTER | BPF_F_ID}, errno.ENOENT),
        ("id_zero", 1, {"flags": BPF_F_ID}, errno.ENOENT),
        ("link_flag_prog_fd", 1, {"flags": BPF_F_LINK, "relative_fd": fd2}, errno.EINVAL),
        ("link_flag_no_fd", 1, {"flags": BPF_F_LINK}, errno.EINVAL),
        ("relative_without_position", 1, {"relative_fd": fd2}, errno.EINVAL),
        ("before_and_after_unattached", 1,
         {"flags": BPF_F_BEFORE | BPF_F_AFTER, "relative_fd": fd2}, errno.ENOENT),
        ("before_self", 1, {"flags": BPF_F_BEFORE, "relative_fd": fd1}, errno.ENOENT),
        ("id_without_position", 1, {"flags": BPF_F_ID, "relative_id": c.pid(2)}, errno.EINVAL),
        ("id_unknown", 1, {"flags": BPF_F_ID, "relative_id": NO_SUCH_ID}, errno.ENOENT),
        ("before_link_prog_fd", 1, {"flags": BPF_F_BEFORE | BPF_F_LINK, "relative_fd": fd1},
         errno.EINVAL),
        ("after_self", 1, {"flags": BPF_F_AFTER, "relative_fd": fd1}, errno.ENOENT),
        ("after_link_prog_fd", 1, {"flags": BPF_F_AFTER | BPF_F_LINK, "relative_fd": fd1},
         errno.EINVAL),
    ]


INVALID_EMPTY_IDS = [
    "before_and_after", "before_id_zero", "after_id_zero", "id_zero", "link_flag_prog_fd",
    "link_flag_no_fd", "relative_without_position", "before_and_after_unattached",
    "before_self", "id_without_position", "id_unknown", "before_link_prog_fd", "after_self",
    "after_link_prog_fd",
]


@pytest.mark.parametrize("case", INVALID_EMPTY_IDS)
def test_invalid_on_empty(chain: Chain, case: str) -> None:
    """Flag/relative combinations the kernel must refuse on an empty hook (upstream
    tc_links_invalid), each with its errno; the hook stays empty and packets pass."""
    table = {row[0]: row[1:] for row in _invalid_empty(chain)}
    assert list(table) == INVALID_EMPTY_IDS
    n, opts, want = table[case]
    with pytest.raises(OSError) as exc:
        chain.create(n, **opts)
    assert exc.value.errno == want, str(exc.value)
    assert chain.count() == 0
    chain.reset()
    assert chain.send(1) == 1
    assert chain.hits() == {}


def test_invalid_ifindex(chain: Chain) -> None:
    """A link on ifindex 0 or on one that does not exist: ENODEV from the kernel (libbpf's
    attach_tcx refuses ifindex 0 itself, with EINVAL)."""
    for ifindex in (0, 0x7FFFFFF0):
        with pytest.raises(OSError) as exc:
            lb.link_create(chain.prog(1), ifindex, chain.target)
        assert exc.value.errno == errno.ENODEV
    with pytest.raises(OSError) as exc:
        chain.attach(1, ifindex=0)
    assert exc.value.errno == errno.EINVAL
    assert chain.count() == 0


def test_invalid_with_one_attached(chain: Chain) -> None:
    """With tc1 linked: a program fd given as a link (EINVAL), an unknown link id
    (ENOENT), attaching an attached program again by any route (EEXIST); the count stays 1
    until a valid request (BEFORE link id) succeeds."""
    l1 = chain.attach(1)
    lid1 = l1.info().id
    cases = [
        ("after_link_prog_fd", 2, {"flags": BPF_F_AFTER | BPF_F_LINK,
                                   "relative_fd": chain.prog(1).fd}, errno.EINVAL),
        ("before_unknown_link_id", 2, {"flags": BPF_F_BEFORE | BPF_F_LINK | BPF_F_ID,
                                       "relative_id": NO_SUCH_ID}, errno.ENOENT),
        ("self_before_own_link", 1, {"flags": BPF_F_BEFORE | BPF_F_LINK | BPF_F_ID,
                                     "relative_id": lid1}, errno.EEXIST),
        ("self_before_own_prog", 1, {"flags": BPF_F_BEFORE | BPF_F_ID,
                                     "relative_id": chain.pid(1)}, errno.EEXIST),
        ("self_again", 1, {}, errno.EEXIST),
    ]
    for what, n, opts, want in cases:
        with pytest.raises(OSError) as exc:
            chain.create(n, **opts)
        assert exc.value.errno == want, f"{what}: {exc.value}"
        assert chain.count() == 1, what
    chain.attach(2, flags=BPF_F_BEFORE | BPF_F_LINK | BPF_F_ID, relative_id=lid1)
    assert chain.count() == 2
    assert chain.run_once() == [2, 1]


# --------------------------------------------------------------------------- defunct


def test_device_removal(chain: Chain, veth_factory: Callable[..., VethPair]) -> None:
    """Deleting the device detaches every link (upstream tc_links_dev_cleanup): the links
    live on, defunct, with ifindex 0 in their info; an update then fails with ENOLINK,
    a detach is a no-op that succeeds."""
    pair = veth_factory(netns_a=chain.netns, netns_b=chain.netns)
    dev = pair.a.ifindex
    links = [chain.attach(n, ifindex=dev) for n in (1, 2, 3, 4)]
    q = query(dev, chain.target)
    assert q.count == 4 and q.link_ids == [link.info().id for link in links]

    from harness.guest.net.links import delete_link, ifindex

    delete_link(pair.a.name)
    for name in (pair.a.name, pair.b.name):
        with pytest.raises(OSError) as gone:
            ifindex(name)
        assert gone.value.errno == errno.ENODEV

    for n, link in zip((1, 2, 3, 4), links, strict=True):
        info = link.info()
        assert info.ifindex == 0, f"link of tc{n} still names ifindex {info.ifindex}"
        assert info.prog_id == chain.pid(n)
        assert info.attach_type == chain.target
        with pytest.raises(OSError) as exc:
            link.update(chain.prog(5))
        assert exc.value.errno == errno.ENOLINK
        link.detach()  # nothing left to detach from
    with pytest.raises(OSError) as exc:
        lb.prog_query(dev, chain.target)
    assert exc.value.errno == errno.ENODEV


def test_detach_then_update(chain: Chain) -> None:
    """BPF_LINK_DETACH takes the program off the hook but keeps the link object: its
    info shows ifindex 0, updates fail with ENOLINK, the other links keep running."""
    l1, l2 = chain.attach(1), chain.attach(2)
    assert chain.run_once() == [1, 2]
    rev = chain.query().revision
    l1.detach()
    q = chain.query()
    assert (q.count, q.revision, q.prog_ids) == (1, rev + 1, [chain.pid(2)])
    assert l1.info().ifindex == 0
    assert l2.info().ifindex == LO
    with pytest.raises(OSError) as exc:
        l1.update(chain.prog(3))
    assert exc.value.errno == errno.ENOLINK
    l1.detach()  # again: still fine, still nothing attached
    assert chain.query().count == 1
    assert chain.run_once() == [2]


# --------------------------------------------------------------------------- verdicts


def test_pass_ends_chain(chain: Chain) -> None:
    """TCX_PASS ends the chain: programs after it do not run, the packet goes on."""
    chain.attach(5)
    chain.attach(1)
    assert chain.run_once() == [5]
    assert chain.hits() == {5: 1}


def test_drop(chain: Chain, stack_counters: StackCounters,
              record_property: Callable[[str, object], None]) -> None:
    """TCX_DROP drops the packet (it never arrives) and ends the chain; without the drop
    program the same datagram is delivered and the rest of the chain runs. The kernel's
    own account agrees: 3 drops, with the TC_INGRESS/TC_EGRESS reason where the kernel has
    it (the drop reasons of skb:kfree_skb)."""
    drop = chain.attach("tc_drop")
    chain.attach(1)
    chain.reset()
    stack_counters.restart()
    assert chain.send(3, expect_delivery=False) == 0
    assert chain.hits() == {DROP: 3}
    if stack_counters.counter is not None:
        ev = stack_counters.delta()
        want = "TC_INGRESS" if chain.target == BPF_TCX_INGRESS else "TC_EGRESS"
        if want in stack_counters.counter.names.core.values():
            assert ev.drop_count(want) == 3, render(ev)
        else:  # older kernels free a TC_ACT_SHOT packet without a reason of its own
            assert ev.drop_count() >= 3, render(ev)
        record_property("observed", "; ".join(d.text() for d in ev.drops))
    drop.close()
    assert chain.run_once() == [1]


# --------------------------------------------------------------------------- classic tc


@pytest.fixture
def clsact(chain: Chain) -> Iterator[lb.TcHook]:
    """A clsact qdisc on lo with the `cls` program as direct-action cls_bpf filter at the
    chain's direction (bpf_tc_hook_create + bpf_tc_attach)."""
    point = (lb.TcAttachPoint.INGRESS if chain.target == BPF_TCX_INGRESS
             else lb.TcAttachPoint.EGRESS)
    hook = lb.TcHook(LO, point)
    created = hook.create()
    filt = hook.attach(chain.prog("cls"), handle=1, priority=1)
    assert filt.prog_id == chain.pid("cls")
    assert hook.query(handle=1, priority=1).prog_id == chain.pid("cls")
    yield hook
    hook.detach(handle=1, priority=1)
    if created:
        hook.destroy()


def test_classic_tc_after_next(chain: Chain, clsact: lb.TcHook) -> None:
    """Programs returning TCX_NEXT hand the packet on to classic tc (upstream
    tc_links_chain_classic): cls runs after the TCX chain, and alone once it is empty."""
    assert chain.run_once() == [CLS]
    l1, l2 = chain.attach(1), chain.attach(2)
    assert chain.run_once() == [1, 2, CLS]
    l2.detach()
    assert chain.run_once() == [1, CLS]
    l1.close()
    assert chain.count() == 0
    assert chain.run_once() == [CLS]


def test_classic_tc_after_pass(chain: Chain, clsact: lb.TcHook) -> None:
    """A TCX_PASS verdict skips classic tc (upstream tc_links_chain_mixed); swapping the
    link to a TCX_NEXT program lets it run again, as does detaching."""
    link = chain.attach(6)
    assert chain.run_once() == [6]
    assert chain.hits() == {6: 1}
    link.update(chain.prog(4))
    assert chain.run_once() == [4, CLS]
    link.detach()
    assert chain.run_once() == [CLS]


# --------------------------------------------------------------------------- non-link attach


def test_opts_attach_mixed_with_links(chain: Chain) -> None:
    """BPF_PROG_ATTACH/DETACH (bpf_prog_attach_opts, no link) and links share the hook
    (upstream tc_opts): link_ids are 0 for non-link entries, a link-owned program cannot be
    detached or replaced through the opts API (EBUSY), revisions are checked on detach."""
    t = chain.target
    lb.prog_attach_opts(chain.prog(1), LO, t)
    l2 = chain.attach(2)
    lb.prog_attach_opts(chain.prog(3), LO, t, flags=BPF_F_BEFORE,
                        relative_fd=chain.prog(1).fd)
    q = chain.query()
    assert (q.count, q.revision) == (3, 4)
    assert q.prog_ids == [chain.pid(3), chain.pid(1), chain.pid(2)]
    assert q.link_ids == [0, 0, l2.info().id]
    assert chain.run_once() == [3, 1, 2]

    refused: list[tuple[str, Callable[[], None], int]] = [
        ("attach again", lambda: lb.prog_attach_opts(chain.prog(1), LO, t), errno.EEXIST),
        ("detach link-owned", lambda: lb.prog_detach_opts(chain.prog(2), LO, t), errno.EBUSY),
        ("replace link-owned", lambda: lb.prog_attach_opts(
            chain.prog(5), LO, t, flags=BPF_F_REPLACE, replace=chain.prog(2)), errno.EBUSY),
        ("stale detach", lambda: lb.prog_detach_opts(
            chain.prog(1), LO, t, expected_revision=3), errno.ESTALE),
        ("detach unattached", lambda: lb.prog_detach_opts(chain.prog(4), LO, t),
         errno.ENOENT),
    ]
    for what, call, want in refused:
        with pytest.raises(OSError) as exc:
            call()
        assert exc.value.errno == want, f"{what}: {exc.value}"
        assert chain.query() == q, what

    lb.prog_attach_opts(chain.prog(4), LO, t, flags=BPF_F_REPLACE, replace=chain.prog(3),
                        expected_revision=4)
    q = chain.query()
    assert (q.count, q.revision) == (3, 5)
    assert q.prog_ids == [chain.pid(4), chain.pid(1), chain.pid(2)]
    assert chain.run_once() == [4, 1, 2]

    lb.prog_detach_opts(chain.prog(4), LO, t, expected_revision=5)
    lb.prog_detach_opts(chain.prog(1), LO, t)
    q = chain.query()
    assert (q.count, q.revision, q.prog_ids) == (1, 7, [chain.pid(2)])
    assert chain.run_once() == [2]


# --------------------------------------------------------------------------- across veth


def test_veth_between_namespaces(chain: Chain, netns_factory: Callable[[], str],
                                 veth_factory: Callable[..., VethPair]) -> None:
    """Real traffic between two namespaces over veth: with the chain on the veth end in
    the test's namespace (ingress: packets arrive there; egress: packets leave from
    there), every datagram is counted exactly once by every program, in order."""
    peer_ns = netns_factory()
    pair = veth_factory(netns_a=chain.netns, netns_b=peer_ns)
    chain.ifindex = pair.a.ifindex
    chain.attach(1)
    chain.attach(3, flags=BPF_F_BEFORE)
    chain.reset()
    if chain.target == BPF_TCX_INGRESS:
        sent = udp_exchange(peer_ns, chain.netns, pair.a.address, 5)
    else:
        sent = udp_exchange(chain.netns, peer_ns, pair.b.address, 5)
    assert sent == 5
    assert chain.hits() == {3: 5, 1: 5}
    assert chain.trace() == [3, 1] * 5
    # lo of the test namespace saw none of it
    assert query(LO, chain.target).count == 0


# --------------------------------------------------------------------------- capacity


def test_max_programs(bpf_object: Callable[..., BpfObject], netns: str, target: int) -> None:
    """A TCX hook holds MPROG_MAX (63) programs, links and non-link attachments alike;
    the 64th is refused with ERANGE either way and nothing changes. All 63 run for every
    packet, in query order; freeing a slot makes room again."""
    obj = bpf_object("tcx_max", expected_attach_type=target)
    progs = [obj.program(f"max_{i // 8}_{i % 8}") for i in range(64)]
    with run_in_netns(netns):
        links = [progs[i].attach_tcx(LO) for i in range(lb.MPROG_MAX - 1)]
        try:
            lb.prog_attach_opts(progs[lb.MPROG_MAX - 1], LO, target)
            q = query(LO, target)
            assert q.count == lb.MPROG_MAX == 63
            assert q.prog_ids == [p.id for p in progs[: lb.MPROG_MAX]]
            assert q.link_ids == [link.info().id for link in links] + [0]

            last = progs[lb.MPROG_MAX]
            with pytest.raises(OSError) as exc:
                last.attach_tcx(LO)
            assert exc.value.errno == errno.ERANGE
            with pytest.raises(OSError) as exc:
                lb.prog_attach_opts(last, LO, target)
            assert exc.value.errno == errno.ERANGE
            assert query(LO, target) == q

            assert udp_exchange(None, None, "127.0.0.1", 3) == 3
            counts = [obj.map("count").lookup_int(i) for i in range(64)]
            assert counts[0] >= 3
            assert counts[: lb.MPROG_MAX] == [counts[0]] * lb.MPROG_MAX
            assert counts[lb.MPROG_MAX] == 0

            links.pop(0).close()
            with last.attach_tcx(LO, flags=BPF_F_AFTER) as link:
                q = query(LO, target)
                assert q.count == lb.MPROG_MAX
                assert q.prog_ids[-1] == last.id and q.link_ids[-1] == link.info().id
        finally:
            for link in links:
                link.close()
