"""The arena split pattern with real packets (6.9+): a sleepable syscall program
allocates a counter table in an arena, an XDP program on a veth counts every test packet
into it, user space reads the counts in its own mapping of the arena, and writes there
that the XDP program then builds on. Since 7.0 the XDP program may allocate the table
itself (arena kfuncs callable from non-sleepable programs); on older kernels loading it is
refused with the verifier's message, which is a skip there (expect.refused), never a pass.

bpf/arena_xdp.bpf.c; the XDP program is attached to veth end `a` in generic (SKB) mode
and counts IPv4 UDP datagrams to PORT whose payload starts with a u32 slot number, sent
from the peer namespace, each one waited for at the receiving socket, so every count is
exact: packets and frame bytes (Ethernet + IPv4 + UDP + payload) per slot.
"""

from __future__ import annotations

import ctypes
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from harness.guest import bpf as lb
from harness.guest import xdp
from harness.guest.bpf import arena as ar
from harness.guest.fixtures import KernelExpectations
from harness.guest.net.netns import socket_in
from harness.guest.net.veth import VethPair
from harness.guest.wait import wait_until

pytestmark = pytest.mark.requires("arena")

PORT = 4797
U64 = ctypes.c_uint64
HEADERS = 14 + 20 + 8  # Ethernet, IPv4 without options, UDP
TABLE_MAGIC = 0x6B6D7874616231
MAX_SLOTS = 128
BY_SYSCALL, BY_XDP = 1, 2
#: the verifier's refusal of bpf_arena_alloc_pages in XDP before 7.0
SLEEPABLE_ONLY = "program must be sleepable to call sleepable kfunc bpf_arena_alloc_pages"


class XdpCtl(ctypes.Structure):
    """struct xdp_ctl of bpf/arena_xdp.bpf.c (the `ctl` array's value)"""

    _fields_ = [(name, U64) for name in ("port", "nslots", "table", "counted", "no_table",
                                         "bad_slot", "alloc_failed", "created")]


class TableSlot(ctypes.Structure):
    _fields_ = [("packets", U64), ("bytes", U64)]


class Table(ctypes.Structure):
    """struct table of bpf/arena_xdp.bpf.c (one arena page)"""

    _fields_ = [("magic", U64), ("nslots", U64), ("created_by", U64), ("pad", U64),
                ("slots", TableSlot * MAX_SLOTS)]


class CreateArgs(ctypes.Structure):
    """struct create_args of bpf/arena_xdp.bpf.c"""

    _fields_ = [("nslots", U64), ("table", U64)]


def payload(slot: int) -> bytes:
    """The test datagram for `slot`: its number, then filler (a per-slot length)."""
    return slot.to_bytes(4, "little") + bytes([slot & 0xFF]) * (28 + 8 * (slot % 16))


@dataclass
class Split:
    """The loaded object, the XDP hook on veth end `a`, and the test's sockets."""

    obj: lb.BpfObject
    pair: VethPair
    rx: socket.socket
    tx: socket.socket

    @property
    def mem(self) -> ar.ArenaMemory:
        return ar.object_arena(self.obj.map("arena"))

    def ctl(self) -> XdpCtl:
        return XdpCtl.from_buffer_copy(self.obj.map("ctl").lookup(0) or b"")

    def table(self, ptr: int) -> Table:
        assert self.mem.contains(ptr, ctypes.sizeof(Table)), f"table {ptr:#x} not in arena"
        return Table.from_buffer_copy(self.mem.read(ptr, ctypes.sizeof(Table)))

    def send(self, slots: list[int]) -> None:
        """One datagram per slot number, each waited for at the receiver."""
        for i, slot in enumerate(slots):
            self.tx.sendto(payload(slot), (self.pair.a.address, PORT))
            got = wait_until(lambda: _recv(self.rx), timeout=5, what=f"datagram {i}")
            assert got == payload(slot)


def _recv(sock: socket.socket) -> bytes | None:
    try:
        return sock.recv(2048)
    except BlockingIOError:
        return None


@pytest.fixture
def split_setup(veth_pair: VethPair) -> Iterator[Callable[[lb.BpfObject, str], Split]]:
    """Factory: attach `prog` of a loaded arena_xdp object to veth end `a` (SKB mode) with
    sockets to send from the peer namespace and receive here; all closed at teardown."""
    with ExitStack() as stack:
        def make(obj: lb.BpfObject, prog: str) -> Split:
            rx = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            rx.bind((veth_pair.a.address, PORT))
            rx.setblocking(False)
            tx = stack.enter_context(socket_in(veth_pair.b.netns, socket.AF_INET,
                                               socket.SOCK_DGRAM))
            stack.enter_context(xdp.attach_xdp(obj.program(prog), veth_pair.a.ifindex,
                                               xdp.XdpMode.SKB))
            return Split(obj, veth_pair, rx, tx)

        yield make


def expected_slots(slots: list[int]) -> dict[int, tuple[int, int]]:
    """slot -> (packets, frame bytes) for these datagrams."""
    counts = Counter(slots)
    return {s: (n, n * (HEADERS + len(payload(s)))) for s, n in counts.items()}


def slot_counts(table: Table) -> dict[int, tuple[int, int]]:
    return {i: (int(s.packets), int(s.bytes)) for i, s in enumerate(table.slots)
            if s.packets or s.bytes}


def test_syscall_allocates_xdp_counts(bpf_object: Callable[..., lb.BpfObject],
                                      split_setup: Callable[[lb.BpfObject, str], Split]) -> None:
    """Datagrams before the table exists are only noted (no_table); a syscall program
    then allocates the table and publishes it; XDP counts every datagram into its slot:
    packets and frame bytes per slot exact in user space's view of the arena, a slot past
    the table's end refused (bad_slot) without touching it. User space then sets a count
    in the arena and the XDP program counts on from that value."""
    obj = bpf_object("arena_xdp", autoload=["table_create", "table_count"])
    obj.map("ctl").update(0, bytes(XdpCtl(port=PORT)))
    split = split_setup(obj, "table_count")

    split.send([0, 3])
    assert (split.ctl().no_table, split.ctl().counted) == (2, 0)

    args = CreateArgs(nslots=8)
    assert ar.run_syscall(obj.program("table_create"), args) == 0
    table = split.table(args.table)
    assert (table.magic, table.nslots, table.created_by) == (TABLE_MAGIC, 8, BY_SYSCALL)
    assert slot_counts(table) == {}

    plan = [0, 5, 1, 5, 7, 0, 5, 0, 7, 5]
    split.send(plan)
    assert slot_counts(split.table(args.table)) == expected_slots(plan)
    ctl = split.ctl()
    assert (ctl.counted, ctl.no_table, ctl.bad_slot, ctl.alloc_failed) == (len(plan), 2, 0, 0)

    split.send([9])
    assert slot_counts(split.table(args.table)) == expected_slots(plan)
    assert (split.ctl().bad_slot, split.ctl().counted) == (1, len(plan))

    packets_1 = args.table + Table.slots.offset + 1 * ctypes.sizeof(TableSlot)
    split.mem.write_u64(packets_1, 1000)
    split.send([1])
    assert split.table(args.table).slots[1].packets == 1001
    assert split.table(args.table).slots[1].bytes == expected_slots([*plan, 1])[1][1]


def test_xdp_allocates_its_table(split_setup: Callable[[lb.BpfObject, str], Split],
                                 expect: KernelExpectations,
                                 record_property: Callable[[str, object], None]) -> None:
    """Where the arena kfuncs are not sleepable-only (7.0+), the XDP program allocates
    the table itself on the first test packet (once), publishes it in the ctl map, and
    counts every datagram exactly, as user space reads the table in the arena. Older
    kernels refuse the load with the verifier's message: a skip (or a failure where
    images/features.toml expects arena_nonsleepable_kfuncs), never a pass."""
    try:
        obj = lb.BpfObject(lb.object_path("arena_xdp"), autoload=["table_count_alloc"])
    except OSError as exc:
        message = ar.verifier_message(str(exc))
        observed = f"load table_count_alloc: {lb.errno_name(exc.errno or 0)}: {message}"
        record_property("observed", observed)
        assert SLEEPABLE_ONLY in message, f"refused for another reason: {exc}"
        expect.refused("arena_nonsleepable_kfuncs", observed)
    with obj:
        obj.map("ctl").update(0, bytes(XdpCtl(port=PORT, nslots=4)))
        split = split_setup(obj, "table_count_alloc")
        plan = [2, 0, 2, 3, 2, 0]
        split.send(plan)
        ctl = split.ctl()
        assert (ctl.created, ctl.alloc_failed, ctl.counted, ctl.no_table) == (1, 0, len(plan), 0)
        table = split.table(ctl.table)
        assert (table.magic, table.nslots, table.created_by) == (TABLE_MAGIC, 4, BY_XDP)
        assert slot_counts(table) == expected_slots(plan)
        record_property("observed", f"XDP allocated its table at {ctl.table:#x}")
