"""BPF arena (6.9+): creating and mapping arenas, allocating their pages from programs,
and data shared between programs and user space at the same addresses.

Modelled on the kernel selftests tools/testing/selftests/bpf/progs/verifier_arena.c,
verifier_arena_large.c, arena_list.c and arena_htab.c with their prog_tests: pages are
allocated by sleepable syscall programs (bpf_arena_alloc_pages) run with
BPF_PROG_TEST_RUN, and every result is checked twice, as the program reads it and as user
space reads it in its mapping of the arena at the pointer value the program handed out.

Objects: bpf/arena_alloc.bpf.c (an arena with no globals, so every page is the programs',
and the `arena_op` program of bpf/arena_ops.h, driven one operation at a time with
harness.guest.bpf.ArenaOps), bpf/arena_fixed.bpf.c (an arena at a map_extra address) and
bpf/arena_share.bpf.c (byte copies, a list and a hash table). Arenas made here with
create_arena are mapped with map_arena (MAP_FIXED_NOREPLACE where the address is fixed).
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from harness.guest import bpf as lb
from harness.guest.bpf import arena as ar

pytestmark = pytest.mark.requires("arena")

PAGE = ar.PAGE_SIZE
U64 = ctypes.c_uint64
#: bpf/arena_fixed.bpf.c's map_extra: 2 pages ending at the 4 GiB boundary 0x1001_0000_0000
FIXED_START = (1 << 44) | (0xFFFF_FFFF - 2 * PAGE + 1)
#: where arenas created here with a map_extra are placed (free in a Python process)
STANDALONE_START = 1 << 45
ALL_ONES = 2**64 - 1


@dataclass
class Arena:
    """A loaded object and user space's view of its arena (libbpf's mapping)."""

    obj: lb.BpfObject
    mem: ar.ArenaMemory

    @property
    def ops(self) -> ar.ArenaOps:
        """The object's `arena_op` program (bpf/arena_ops.h), one operation per run."""
        return ar.ArenaOps(self.obj.program("arena_op"))

    def run(self, prog: str, ctx: ctypes.Structure | None = None) -> int:
        """BPF_PROG_TEST_RUN of syscall program `prog` with context `ctx` (updated)."""
        return ar.run_syscall(self.obj.program(prog), ctx)


@pytest.fixture
def arena_object(bpf_object: Callable[..., lb.BpfObject]) -> Callable[..., Arena]:
    """Factory: ``arena_object("arena_alloc", pages=4, programs=[...])`` loads the object
    with its arena resized to `pages` (closed at teardown by `bpf_object`)."""

    def make(name: str = "arena_alloc", *, pages: int | None = None,
             programs: list[str] | None = None) -> Arena:
        def prepare(obj: lb.BpfObject) -> None:
            if pages is not None:
                obj.map("arena").set_max_entries(pages)

        obj = bpf_object(name, prepare=prepare, autoload=programs)
        return Arena(obj, ar.object_arena(obj.map("arena")))

    return make


@pytest.fixture
def resizable(arena_object: Callable[..., Arena]) -> Callable[[int], Arena]:
    """Factory: arena_alloc's object with an arena of n pages."""
    return lambda pages: arena_object("arena_alloc", pages=pages)


def stamp_of(mem: ar.ArenaMemory, ptr: int) -> tuple[int, int]:
    """The first and last u64 of the page at `ptr`, read by user space."""
    return mem.read_u64(ptr), mem.read_u64(ptr + PAGE - 8)


# --------------------------------------------------------------------------- creating


@pytest.mark.parametrize("flags", [0, lb.BPF_F_SEGV_ON_FAULT, lb.BPF_F_NO_USER_CONV,
                                   lb.BPF_F_SEGV_ON_FAULT | lb.BPF_F_NO_USER_CONV],
                         ids=["plain", "segv_on_fault", "no_user_conv", "both"])
def test_create_and_inspect(flags: int) -> None:
    """BPF_MAP_CREATE of an arena with each accepted flag: the kernel reports the type,
    page count, flags (BPF_F_MMAPABLE included) and map_extra it was given."""
    with ar.create_arena(8, flags=flags, name="kmx_arena") as arena:
        info = arena.info()
        assert (info.type, info.key_size, info.value_size) == (lb.MapType.ARENA, 0, 0)
        assert info.name == "kmx_arena"
        spec = ar.arena_info(arena)
        assert (spec.pages, spec.map_flags, spec.map_extra) == (8, lb.BPF_F_MMAPABLE | flags, 0)
        assert spec.segv_on_fault == bool(flags & lb.BPF_F_SEGV_ON_FAULT)
        assert spec.no_user_conv == bool(flags & lb.BPF_F_NO_USER_CONV)
    with ar.create_arena(2, map_extra=STANDALONE_START) as arena:
        assert ar.arena_info(arena).map_extra == STANDALONE_START


REFUSED_CREATES = {
    "no_mmapable": dict(pages=1, map_flags=0),
    "unknown_flag": dict(pages=1, map_flags=lb.BPF_F_MMAPABLE | lb.BPF_F_NO_PREALLOC),
    "key_size": dict(pages=1, key_size=4),
    "value_size": dict(pages=1, value_size=8),
    "no_pages": dict(pages=0),
    "unaligned_map_extra": dict(pages=1, map_extra=STANDALONE_START + 8),
    "over_4g": dict(pages=(1 << 32) // PAGE + 1),
    "crosses_4g_boundary": dict(pages=2, map_extra=(1 << 44) - PAGE),
}


@pytest.mark.parametrize("case", list(REFUSED_CREATES))
def test_create_refused(case: str) -> None:
    """Arena parameters the kernel refuses, each with arena_map_alloc's errno: a key or
    value size, no BPF_F_MMAPABLE, a flag arenas do not take, no pages (EINVAL), more than
    4 GiB (E2BIG), an unaligned map_extra (EINVAL), one whose pages would cross a 4 GiB
    boundary (ERANGE)."""
    params = dict(REFUSED_CREATES[case])
    pages = int(params.pop("pages"))
    flags = int(params.pop("map_flags", lb.BPF_F_MMAPABLE))
    extra = int(params.pop("map_extra", 0))
    key, value = int(params.pop("key_size", 0)), int(params.pop("value_size", 0))
    want = ar.create_errno(pages, map_flags=flags, map_extra=extra, key_size=key,
                           value_size=value)
    assert want is not None
    with pytest.raises(OSError) as exc:
        lb.create_map(lb.MapType.ARENA, key, value, pages, map_flags=flags,
                      map_extra=extra).close()
    assert exc.value.errno == want, f"{case}: kernel said {lb.errno_name(exc.value.errno or 0)}"


# --------------------------------------------------------------------------- mapping


def test_mmap_at_map_extra() -> None:
    """An arena created with map_extra maps at exactly that address; the kernel refuses
    another address (EINVAL) and another length (EINVAL); bytes written there stay."""
    with ar.create_arena(4, map_extra=STANDALONE_START) as arena:
        with pytest.raises(OSError) as wrong_place:
            ar.map_arena(arena, address=STANDALONE_START + (1 << 32)).close()
        assert wrong_place.value.errno == errno.EINVAL
        with pytest.raises(OSError) as wrong_size:
            ar.map_arena(arena, pages=2).close()
        assert wrong_size.value.errno == errno.EINVAL
        with ar.map_arena(arena) as mapping:
            assert (mapping.start, mapping.size) == (STANDALONE_START, 4 * PAGE)
            data = os.urandom(64)
            mapping.write(mapping.page(3) + 100, data)
            assert mapping.read(mapping.page(3) + 100, 64) == data


def test_first_mmap_fixes_the_address() -> None:
    """Without map_extra the first mmap picks the address (its 32-bit halves do not wrap
    over the arena), and it stays the arena's: after munmap a mapping elsewhere is refused
    (EINVAL, which is also what Python's mmap, which cannot pass an address, gets), one at
    the same address works and still holds the bytes."""
    with ar.create_arena(4) as arena:
        with ar.map_arena(arena) as first:
            start = first.start
            assert start % PAGE == 0 and start >> 32 == (start + 4 * PAGE - 1) >> 32
            data = os.urandom(256)
            first.write(first.page(2), data)
        with pytest.raises(OSError) as python_mmap:
            arena.mmap().close()
        assert python_mmap.value.errno == errno.EINVAL
        with pytest.raises(OSError) as elsewhere:
            ar.map_arena(arena, address=STANDALONE_START).close()
        assert elsewhere.value.errno == errno.EINVAL
        with ar.map_arena(arena, address=start) as again:
            assert again.read(again.page(2), 256) == data


def test_object_arena_at_map_extra(arena_object: Callable[..., Arena]) -> None:
    """libbpf maps an object's arena before loading its programs, at map_extra when the
    object sets one: bpf/arena_fixed's 2 pages end at a 4 GiB boundary; pages allocated by
    the program are those addresses, their kernel form the low 32 bits 0xffffe000 and
    0xfffff000, and cast_user turns them back into the full user addresses."""
    arena = arena_object("arena_fixed")
    info = ar.arena_info(arena.obj.map("arena"))
    assert (info.map_extra, info.pages) == (FIXED_START, 2)
    assert (arena.mem.start, arena.mem.size) == (FIXED_START, 2 * PAGE)
    first, second = arena.ops.alloc(), arena.ops.alloc()
    assert (first, second) == (FIXED_START, FIXED_START + PAGE)
    assert arena.ops.casts(first) == (0xFFFF_E000, first)
    assert arena.ops.casts(second) == (0xFFFF_F000, second)
    assert arena.ops.write(second + PAGE - 8, 0x0123_4567_89AB_CDEF) == 0x0123_4567_89AB_CDEF
    assert arena.mem.read_u64(second + PAGE - 8) == 0x0123_4567_89AB_CDEF


# --------------------------------------------------------------------------- allocating


def test_alloc_beyond_max_entries(resizable: Callable[[int], Arena]) -> None:
    """A 2-page arena: two single-page allocations get page 0 then page 1, a third gets
    NULL; both pages hold what the program wrote, for the program and for user space."""
    arena = resizable(2)
    first, second = arena.ops.alloc(), arena.ops.alloc()
    assert (first, second) == (arena.mem.page(0), arena.mem.page(1))
    assert arena.ops.alloc() == 0
    assert arena.ops.write(first, 0x1111) == 0x1111
    assert arena.ops.write(second, 0x2222) == 0x2222
    assert (arena.ops.read(first), arena.ops.read(second)) == (0x1111, 0x2222)
    assert (arena.mem.read_u64(first), arena.mem.read_u64(second)) == (0x1111, 0x2222)


def test_use_after_free_reads_zero(resizable: Callable[[int], Arena]) -> None:
    """After bpf_arena_free_pages a program reading the freed page gets 0 and its writes
    there vanish (the JIT's fault handling), while the other page keeps its value."""
    arena = resizable(2)
    first, second = arena.ops.alloc(), arena.ops.alloc()
    arena.ops.write(first, 0xAAAA)
    arena.ops.write(second, 0xBBBB)
    arena.ops.free(second)
    assert arena.ops.read(second) == 0
    assert arena.ops.write(second, 0xCCCC) == 0
    assert arena.ops.read(first) == 0xAAAA
    assert arena.mem.read_u64(first) == 0xAAAA


def test_freed_page_is_reused(resizable: Callable[[int], Arena]) -> None:
    """A freed page is the next one handed out (the arena was full), zero-filled again,
    and user space sees the new contents, not the old ones."""
    arena = resizable(2)
    first, second = arena.ops.alloc(), arena.ops.alloc()
    arena.ops.stamp(second, 1, 0x5E)
    assert stamp_of(arena.mem, second) == ar.stamp_words(0x5E, 0)
    arena.ops.free(second)
    assert arena.ops.alloc() == second
    assert arena.ops.check(second, 1, 0x5E) == 0
    assert (arena.ops.read(second), arena.ops.read(second + PAGE - 8)) == (0, 0)
    arena.ops.stamp(second, 1, 0x77)
    assert stamp_of(arena.mem, second) == ar.stamp_words(0x77, 0)
    assert arena.ops.alloc() == 0
    assert first == arena.mem.page(0)


def test_alloc_sequence_in_program(arena_object: Callable[..., Arena]) -> None:
    """verifier_arena's basic_alloc1 in one program run: two pages, a third refused, use
    after free reads 0, the freed page comes back (alloc_sequence returns the failed step,
    0 when all held)."""
    arena = arena_object(programs=["alloc_sequence"])
    assert arena.run("alloc_sequence") == 0


def test_unallocated_pages_read_zero(resizable: Callable[[int], Arena]) -> None:
    """Reads of arena addresses with no page behind them give 0 and writes there are
    dropped: the pages around an allocated one, the pages past max_entries, and the far
    end of the 4 GiB the program can address; the allocated page is untouched."""
    arena = resizable(4)
    page = arena.ops.alloc(addr=arena.mem.page(1))
    assert page == arena.mem.page(1)
    arena.ops.stamp(page, 1, 0x42)
    elsewhere = [arena.mem.page(0), arena.mem.page(2), arena.mem.page(3) + PAGE - 8,
                 arena.mem.end, arena.mem.end + 64 * PAGE,
                 (arena.mem.start & ~0xFFFF_FFFF) + (1 << 32) - 8]
    for ptr in elsewhere:
        assert arena.ops.read(ptr) == 0, f"read at {ptr:#x}"
        assert arena.ops.write(ptr, 0xDEAD) == 0, f"write at {ptr:#x} stuck"
    assert arena.ops.check(page, 1, 0x42) == 1
    assert stamp_of(arena.mem, page) == ar.stamp_words(0x42, 0)


def test_neighbours_in_program(arena_object: Callable[..., Arena]) -> None:
    """verifier_arena's basic_alloc2 in one program run: two pages at once; the pages
    below and above them read 0 and drop writes, and after the free all four read 0."""
    arena = arena_object(pages=4, programs=["alloc_neighbours"])
    assert arena.run("alloc_neighbours") == 0


@pytest.mark.parametrize("pages", [16, 256])
def test_allocate_whole_arena(resizable: Callable[[int], Arena], pages: int) -> None:
    """The whole arena in one bpf_arena_alloc_pages call starts at page 0; not one page
    more is given; every page stamped by the program reads back from user space; freed
    all at once it can be taken whole again, zero-filled."""
    arena = resizable(pages)
    base = arena.ops.alloc(pages)
    assert base == arena.mem.start
    assert arena.ops.alloc() == 0
    arena.ops.stamp(base, pages, 0x1000)
    assert arena.ops.check(base, pages, 0x1000) == pages
    assert [stamp_of(arena.mem, arena.mem.page(i)) for i in range(pages)] == [
        ar.stamp_words(0x1000, i) for i in range(pages)]
    arena.ops.free(base, pages)
    assert arena.ops.check(base, pages, 0x1000) == 0
    assert arena.ops.alloc(pages) == base
    assert arena.ops.check(base, pages, 0x1000) == 0
    assert arena.mem.read(arena.mem.page(pages - 1), PAGE) == bytes(PAGE)


def test_allocate_whole_arena_in_program(arena_object: Callable[..., Arena]) -> None:
    """verifier_arena's basic_alloc3: the program reads the arena's size from the map
    itself (CO-RE on struct bpf_arena) and allocates all of it, then nothing more."""
    arena = arena_object(pages=32, programs=["alloc_whole"])
    assert arena.run("alloc_whole") == 0


def test_alloc_at_address(resizable: Callable[[int], Arena]) -> None:
    """bpf_arena_alloc_pages at a requested address gets exactly that page; the same page
    again, an unaligned address, or a range past the end get NULL; a NULL request takes the
    lowest free page. User space finds each page's stamp at its address."""
    arena = resizable(8)
    mem = arena.mem
    assert arena.ops.alloc(addr=mem.page(5)) == mem.page(5)
    assert arena.ops.alloc(addr=mem.page(5)) == 0
    assert arena.ops.alloc(addr=mem.page(3) + 8) == 0
    assert arena.ops.alloc(2, addr=mem.page(7)) == 0
    assert arena.ops.alloc(2, addr=mem.page(6)) == mem.page(6)
    assert arena.ops.alloc(2, addr=mem.page(4)) == 0  # page 5 is taken
    assert arena.ops.alloc() == mem.page(0)
    for index in (0, 5, 6, 7):
        arena.ops.stamp(mem.page(index), 1, index << 8)
    assert [stamp_of(mem, mem.page(i)) for i in (0, 5, 6, 7)] == [
        ar.stamp_words(i << 8, 0) for i in (0, 5, 6, 7)]
    assert arena.ops.check(mem.page(4), 1, 4 << 8) == 0


def test_alloc_refusals_return_null(resizable: Callable[[int], Arena]) -> None:
    """bpf_arena_alloc_pages returns NULL (it has no error codes) for non-zero flags, for
    0 pages, for more pages than the arena has, and for a map that is not an arena; none
    of these takes a page."""
    arena = resizable(4)
    assert arena.ops.alloc(flags=1) == 0
    assert arena.ops.alloc(0) == 0
    assert arena.ops.alloc(5) == 0
    assert arena.ops.alloc_not_arena() == 0
    assert arena.ops.alloc(4) == arena.mem.start


# --------------------------------------------------------------------------- sharing


class PageArgs(ctypes.Structure):
    """struct page_args of bpf/arena_share.bpf.c"""

    _fields_ = [("count", U64), ("ptr", U64)]


COPY_BYTES = 256


class CopyArgs(ctypes.Structure):
    """struct copy_args of bpf/arena_share.bpf.c"""

    _fields_ = [("ptr", U64), ("len", U64), ("buf", ctypes.c_uint8 * COPY_BYTES)]


@pytest.fixture
def share(arena_object: Callable[..., Arena]) -> Arena:
    """bpf/arena_share.bpf.c loaded (a 64-page arena)."""
    return arena_object("arena_share")


def share_pages(arena: Arena, count: int) -> int:
    args = PageArgs(count=count)
    assert arena.run("alloc_pages", args) == 0
    assert args.ptr, f"alloc_pages({count}) got NULL"
    return int(args.ptr)


def copy_in(arena: Arena, ptr: int, data: bytes) -> None:
    args = CopyArgs(ptr=ptr, len=len(data))
    args.buf[: len(data)] = data
    assert arena.run("copy_in", args) == 0


def copy_out(arena: Arena, ptr: int, length: int) -> bytes:
    args = CopyArgs(ptr=ptr, len=length)
    assert arena.run("copy_out", args) == 0
    return bytes(args.buf)[:length]


def test_program_writes_user_reads(share: Arena) -> None:
    """Bytes a program stores at arena pointer p are the bytes user space reads at address
    p: at the start and the end of one page and across the next, compared byte for byte;
    the pointer is inside user space's mapping and its low 32 bits are the kernel's form."""
    ptr = share_pages(share, 2)
    assert share.mem.contains(ptr, 2 * PAGE)
    spots = [ptr, ptr + PAGE - COPY_BYTES, ptr + PAGE, ptr + 2 * PAGE - COPY_BYTES]
    written = {spot: os.urandom(COPY_BYTES) for spot in spots}
    for spot, data in written.items():
        copy_in(share, spot, data)
    for spot, data in written.items():
        assert share.mem.read(spot, COPY_BYTES) == data, f"at {spot:#x}"
    assert ar.kernel_offset(ptr) == ptr & 0xFFFF_FFFF
    assert ar.user_pointer(share.mem.start, ar.kernel_offset(ptr)) == ptr


def test_user_writes_program_reads(share: Arena) -> None:
    """Bytes user space writes at address p are what a program reads at pointer p, byte
    for byte, at several places of two program-allocated pages."""
    ptr = share_pages(share, 2)
    for spot in (ptr, ptr + 1000 * 8, ptr + PAGE - COPY_BYTES, ptr + PAGE + 512):
        data = os.urandom(COPY_BYTES)
        share.mem.write(spot, data)
        assert copy_out(share, spot, COPY_BYTES) == data, f"at {spot:#x}"


def test_pointer_translation(resizable: Callable[[int], Arena]) -> None:
    """A program's view of arena pointers: cast_kern keeps the low 32 bits, cast_user puts
    the user mapping's upper half back (what harness.guest.bpf.arena.user_pointer does),
    NULL stays NULL; both directions agree for every page."""
    arena = resizable(8)
    base = arena.ops.alloc(8)
    for index in range(8):
        ptr = base + index * PAGE + 8 * index
        kern, user = arena.ops.casts(ptr)
        assert kern == ptr & 0xFFFF_FFFF
        assert user == ptr == ar.user_pointer(arena.mem.start, kern)
        assert ar.page_index(arena.mem.start, ptr) == index
    assert arena.ops.casts(0) == (0, 0)


# --------------------------------------------------------------------------- list


class ListArgs(ctypes.Structure):
    """struct list_args of bpf/arena_share.bpf.c"""

    _fields_ = [("head", U64), ("count", U64), ("base", U64), ("sum", U64), ("pages", U64)]


class ListNode(ctypes.Structure):
    """struct list_node of bpf/arena_share.bpf.c (in the arena)"""

    _fields_ = [("next", U64), ("value", U64), ("index", U64), ("seen", U64)]


def read_node(mem: ar.ArenaMemory, ptr: int) -> ListNode:
    return ListNode.from_buffer_copy(mem.read(ptr, ctypes.sizeof(ListNode)))


def walk_list(mem: ar.ArenaMemory, head: int, limit: int) -> list[tuple[int, ListNode]]:
    """(address, node) from `head` along the `next` pointers, user-space side."""
    out: list[tuple[int, ListNode]] = []
    ptr = head
    while ptr:
        assert len(out) < limit, "the list does not end"
        node = read_node(mem, ptr)
        out.append((ptr, node))
        ptr = node.next
    return out


@pytest.mark.parametrize("count", [1, 500])
def test_list_built_by_program(share: Arena, count: int) -> None:
    """A program pushes `count` nodes on a list; user space follows the same `next`
    pointers and finds every node (index count-1 down to 0, value base + index^2, all
    inside its mapping); the program then walks it and marks each node's position, which
    user space reads back node by node."""
    args = ListArgs(count=count, base=7)
    assert share.run("list_build", args) == 0
    want_sum = sum(7 + i * i for i in range(count))
    assert args.sum == want_sum
    nodes = walk_list(share.mem, args.head, count + 1)
    assert [n.index for _, n in nodes] == list(range(count - 1, -1, -1))
    assert [n.value for _, n in nodes] == [7 + i * i for i in range(count - 1, -1, -1)]
    assert all(share.mem.contains(ptr, ctypes.sizeof(ListNode)) for ptr, _ in nodes)
    assert all(n.seen == 0 for _, n in nodes)
    walk = ListArgs(head=args.head)
    assert share.run("list_walk", walk) == 0
    assert (walk.count, walk.sum) == (count, want_sum)
    assert [read_node(share.mem, ptr).seen for ptr, _ in nodes] == list(range(1, count + 1))


def test_list_built_by_user(share: Arena) -> None:
    """User space builds a list in program-allocated pages, storing its own addresses as
    `next` pointers; the program follows them: count and sum exact, and its mark of each
    node's position is what user space then reads in every node."""
    count = 300
    per_page = PAGE // ctypes.sizeof(ListNode)
    pages = -(-count // per_page)
    base = share_pages(share, pages)
    addrs = [base + i * ctypes.sizeof(ListNode) for i in range(count)]
    order = addrs[::3] + addrs[1::3] + addrs[2::3]  # links jump around the pages
    values = [(i * 7919) % 1000003 for i in range(count)]
    for i, ptr in enumerate(order):
        nxt = order[i + 1] if i + 1 < count else 0
        share.mem.write(ptr, bytes(ListNode(next=nxt, value=values[i], index=i, seen=0)))
    walk = ListArgs(head=order[0])
    assert share.run("list_walk", walk) == 0
    assert (walk.count, walk.sum) == (count, sum(values))
    assert [read_node(share.mem, ptr).seen for ptr in order] == list(range(1, count + 1))
    assert [read_node(share.mem, ptr).value for ptr in order] == values


# --------------------------------------------------------------------------- hash table


class HtabArgs(ctypes.Structure):
    """struct htab_args of bpf/arena_share.bpf.c"""

    _fields_ = [("table", U64), ("n_buckets", U64), ("count", U64), ("key_base", U64),
                ("key", U64), ("add", U64), ("found", U64), ("value", U64), ("sum", U64),
                ("misplaced", U64)]


class Htab(ctypes.Structure):
    """struct htab of bpf/arena_share.bpf.c (in the arena)"""

    _fields_ = [("n_buckets", U64), ("count", U64), ("buckets", U64)]


class HNode(ctypes.Structure):
    """struct hnode of bpf/arena_share.bpf.c (in the arena)"""

    _fields_ = [("next", U64), ("key", U64), ("value", U64)]


def kmx_hash(key: int, n_buckets: int) -> int:
    """bpf/arena_share.bpf.c's kmx_hash: Fibonacci hashing of the low 32 bits."""
    return ((key & 0xFFFF_FFFF) * 2654435769) & 0xFFFF_FFFF & (n_buckets - 1)


def read_htab(mem: ar.ArenaMemory, table: int) -> dict[int, list[tuple[int, HNode]]]:
    """Bucket -> [(address, node)] of the table at `table`, walked by user space."""
    head = Htab.from_buffer_copy(mem.read(table, ctypes.sizeof(Htab)))
    heads = mem.read(head.buckets, 8 * head.n_buckets)
    out: dict[int, list[tuple[int, HNode]]] = {}
    for b in range(head.n_buckets):
        ptr = int.from_bytes(heads[8 * b: 8 * b + 8], "little")
        chain = out.setdefault(b, [])
        while ptr:
            assert len(chain) <= head.count, f"bucket {b} does not end"
            node = HNode.from_buffer_copy(mem.read(ptr, ctypes.sizeof(HNode)))
            chain.append((ptr, node))
            ptr = node.next
    return out


def user_lookup(mem: ar.ArenaMemory, table: int, key: int) -> int | None:
    head = Htab.from_buffer_copy(mem.read(table, ctypes.sizeof(Htab)))
    ptr = mem.read_u64(head.buckets + 8 * kmx_hash(key, head.n_buckets))
    while ptr:
        node = HNode.from_buffer_copy(mem.read(ptr, ctypes.sizeof(HNode)))
        if node.key == key:
            return int(node.value)
        ptr = node.next
    return None


def test_htab_built_by_program(share: Arena) -> None:
    """A program builds a chained hash table (64 buckets, 300 keys); user space walks
    every bucket through the program's pointers: each node sits in the bucket its key
    hashes to, keys and values are exactly the ones inserted, and lookups done in user
    space find every key and no other."""
    n_buckets, count, key_base = 64, 300, 1000
    args = HtabArgs(n_buckets=n_buckets, count=count, key_base=key_base)
    assert share.run("htab_build", args) == 0
    buckets = read_htab(share.mem, args.table)
    assert len(buckets) == n_buckets
    found = {}
    for b, chain in buckets.items():
        for _, node in chain:
            assert kmx_hash(node.key, n_buckets) == b, f"key {node.key} in bucket {b}"
            found[int(node.key)] = int(node.value)
    want = {key_base + 7 * i: (key_base + 7 * i) * 3 + 1 for i in range(count)}
    assert found == want
    for key in (key_base, key_base + 7 * 150, key_base + 7 * (count - 1)):
        assert user_lookup(share.mem, args.table, key) == want[key]
    assert user_lookup(share.mem, args.table, key_base + 1) is None


def test_htab_built_by_user(share: Arena) -> None:
    """User space builds a hash table in program-allocated pages (its addresses as
    pointers, its own hashing); the program walks it (count, sum, no node in the wrong
    bucket), finds keys, and updates a value in place, which user space then reads."""
    n_buckets, keys = 32, [5 + 13 * i for i in range(200)]
    node_size = ctypes.sizeof(HNode)
    pages = -(-(ctypes.sizeof(Htab) + 8 * n_buckets + node_size * len(keys)) // PAGE)
    base = share_pages(share, pages)
    heads = [0] * n_buckets
    node_at = base + ctypes.sizeof(Htab) + 8 * n_buckets
    where = {}
    for key in keys:
        b = kmx_hash(key, n_buckets)
        share.mem.write(node_at, bytes(HNode(next=heads[b], key=key, value=key * key)))
        heads[b] = where[key] = node_at
        node_at += node_size
    share.mem.write(base + ctypes.sizeof(Htab),
                    b"".join(h.to_bytes(8, "little") for h in heads))
    share.mem.write(base, bytes(Htab(n_buckets=n_buckets, count=len(keys),
                                     buckets=base + ctypes.sizeof(Htab))))
    total = HtabArgs(table=base)
    assert share.run("htab_sum", total) == 0
    assert (total.count, total.sum, total.misplaced) == (
        len(keys), sum(k * k for k in keys), 0)
    for key in (keys[0], keys[77], keys[-1]):
        look = HtabArgs(table=base, key=key)
        assert share.run("htab_lookup", look) == 0
        assert (look.found, look.value) == (1, key * key)
    miss = HtabArgs(table=base, key=6)
    assert share.run("htab_lookup", miss) == 0 and miss.found == 0
    bump = HtabArgs(table=base, key=keys[77], add=1000)
    assert share.run("htab_lookup", bump) == 0
    assert (bump.found, bump.value) == (1, keys[77] ** 2 + 1000)
    assert HNode.from_buffer_copy(share.mem.read(where[keys[77]], node_size)).value == (
        keys[77] ** 2 + 1000)
