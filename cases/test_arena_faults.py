"""BPF arena faults and pointer forms (6.9+): what user space gets when it touches a page
no program allocated, with and without BPF_F_SEGV_ON_FAULT, and what BPF_F_NO_USER_CONV
does to the pointers a program converts.

Objects: bpf/arena_segv.bpf.c (4 pages, BPF_F_SEGV_ON_FAULT), bpf/arena_nouserconv.bpf.c
(4 pages, BPF_F_NO_USER_CONV) and bpf/arena_alloc.bpf.c (no flag), all driven through
their `arena_op` program (bpf/arena_ops.h, harness.guest.bpf.ArenaOps). Touches that may
SIGSEGV are made by a forked child (harness.guest.bpf.touch_in_child), which maps the
arena again at its address where the kernel did not copy the mapping across fork.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from harness.guest import bpf as lb
from harness.guest.bpf import arena as ar

pytestmark = pytest.mark.requires("arena")

PAGE = ar.PAGE_SIZE


@dataclass
class Loaded:
    obj: lb.BpfObject
    mem: ar.ArenaMemory
    ops: ar.ArenaOps


@pytest.fixture
def load(bpf_object: Callable[..., lb.BpfObject]) -> Callable[[str], Loaded]:
    """Factory: bpf/NAME's object with its arena mapping and `arena_op` driver."""

    def make(name: str) -> Loaded:
        obj = bpf_object(name, autoload=["arena_op"])
        return Loaded(obj, ar.object_arena(obj.map("arena")), ar.ArenaOps(obj.program("arena_op")))

    return make


def assert_segfault(outcome: ar.TouchOutcome, what: str) -> None:
    assert outcome.signal == signal.SIGSEGV, f"{what}: the child {outcome.describe()}"


def assert_read(outcome: ar.TouchOutcome, data: bytes, what: str) -> None:
    assert (outcome.signal, outcome.exit_code) == (None, 0), \
        f"{what}: the child {outcome.describe()}"
    assert outcome.data == data, f"{what}: the child read {outcome.data.hex()}"


def test_segv_on_fault_for_unallocated_pages(load: Callable[[str], Loaded]) -> None:
    """BPF_F_SEGV_ON_FAULT: user space reads a program-allocated page normally, and a read
    or a write of a page no program allocated kills it with SIGSEGV; such a touch takes no
    page, so the program can still allocate exactly those pages afterwards."""
    arena = load("arena_segv")
    assert ar.arena_info(arena.obj.map("arena")).segv_on_fault
    page = arena.ops.alloc(addr=arena.mem.page(1))
    assert page == arena.mem.page(1)
    assert arena.ops.write(page + 64, 0x5E6F) == 0x5E6F
    assert_read(ar.touch_in_child(arena.mem, page + 64), (0x5E6F).to_bytes(8, "little"),
                "read of the allocated page")
    assert_segfault(ar.touch_in_child(arena.mem, arena.mem.page(2)), "read of page 2")
    assert_segfault(ar.touch_in_child(arena.mem, arena.mem.page(3) + 8, write=b"x" * 8),
                    "write to page 3")
    assert_segfault(ar.touch_in_child(arena.mem, arena.mem.page(0)), "read of page 0")
    assert arena.ops.alloc(2, addr=arena.mem.page(2)) == arena.mem.page(2)
    assert arena.ops.alloc() == arena.mem.page(0)
    assert arena.mem.read_u64(page + 64) == 0x5E6F


def test_segv_on_fault_after_free(load: Callable[[str], Loaded]) -> None:
    """BPF_F_SEGV_ON_FAULT: once the program frees a page that user space had mapped and
    read, the next user-space touch of it is a SIGSEGV (the kernel unmapped it)."""
    arena = load("arena_segv")
    page = arena.ops.alloc()
    arena.ops.stamp(page, 1, 0xF00D)
    first, last = ar.stamp_words(0xF00D, 0)
    assert (arena.mem.read_u64(page), arena.mem.read_u64(page + PAGE - 8)) == (first, last)
    arena.ops.free(page)
    assert_segfault(ar.touch_in_child(arena.mem, page), "read after free")
    assert arena.ops.read(page) == 0


def test_fault_without_flag_zero_fills(load: Callable[[str], Loaded]) -> None:
    """Without BPF_F_SEGV_ON_FAULT a user-space touch of a page no program allocated gets
    a zero-filled page, and it is a real arena page: the program reads what user space
    then writes there, and can no longer allocate it (NULL), while other pages it can."""
    arena = load("arena_alloc")
    target = arena.mem.page(1)
    assert_read(ar.touch_in_child(arena.mem, target, PAGE), bytes(PAGE), "first touch")
    arena.mem.write_u64(target + 8, 0xC0FFEE)
    assert arena.ops.read(target + 8) == 0xC0FFEE
    assert arena.ops.alloc(addr=target) == 0
    assert arena.ops.alloc(addr=arena.mem.page(0)) == arena.mem.page(0)


def test_user_read_after_free_zero_fills(load: Callable[[str], Loaded]) -> None:
    """Without BPF_F_SEGV_ON_FAULT user space reading a page the program freed gets zeros,
    not the old contents (a fresh page)."""
    arena = load("arena_alloc")
    page = arena.ops.alloc()
    arena.ops.stamp(page, 1, 0xBEEF)
    assert arena.mem.read_u64(page) == ar.stamp_words(0xBEEF, 0)[0]
    arena.ops.free(page)
    assert_read(ar.touch_in_child(arena.mem, page, PAGE), bytes(PAGE), "read after free")


@pytest.mark.parametrize("name,no_user_conv", [("arena_alloc", False),
                                               ("arena_nouserconv", True)],
                         ids=["user_conv", "no_user_conv"])
def test_cast_user(load: Callable[[str], Loaded], name: str, no_user_conv: bool) -> None:
    """cast_user of a pointer in the kernel's form: the full user address on a plain
    arena, the 32-bit kernel form unchanged with BPF_F_NO_USER_CONV (the verifier turns it
    into a 32-bit move); NULL stays NULL. Either way the program reads and writes through
    the pointers, and user space can put the upper half back itself."""
    arena = load(name)
    assert ar.arena_info(arena.obj.map("arena")).no_user_conv == no_user_conv
    page = arena.ops.alloc()
    assert arena.mem.contains(page, PAGE)
    for ptr in (page, page + 8, page + PAGE - 8):
        kern, user = arena.ops.casts(ptr)
        assert kern == ar.kernel_offset(ptr)
        assert user == (kern if no_user_conv else ptr)
        assert ar.user_pointer(arena.mem.start, user) == ptr
    if no_user_conv:
        assert arena.mem.start >> 32, "the arena's upper half must be non-zero to tell"
    assert arena.ops.casts(0) == (0, 0)
    assert arena.ops.write(page + 16, 0xAB) == 0xAB
    assert arena.mem.read_u64(page + 16) == 0xAB
