"""Pure logic of harness.guest.bpf.arena (no kernel): pointer forms, page arithmetic, the
kernel's checks on arena parameters, the `arena_op` context layout, verifier messages."""

from __future__ import annotations

import ctypes
import errno

import pytest

from harness.guest.bpf import arena as ar
from harness.guest.bpf.uapi import BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, BPF_F_SEGV_ON_FAULT

PAGE = ar.PAGE_SIZE
START = 0x7F12_3456_0000


def test_kernel_offset_is_the_low_half() -> None:
    assert ar.kernel_offset(START + 0x1234) == 0x3456_1234
    assert ar.kernel_offset(0) == 0
    assert ar.lower32(2**64 - 1) == 0xFFFF_FFFF


def test_user_pointer_puts_the_upper_half_back() -> None:
    assert ar.user_pointer(START, 0x3456_1234) == START + 0x1234
    # the upper half comes from the mapping's start, whatever the value carried
    assert ar.user_pointer(START, 0xABCD_0000_3456_1234) == START + 0x1234
    assert ar.user_pointer(START, 0) == 0  # NULL stays NULL
    assert ar.user_pointer(START, 1 << 32) == 0  # low half 0: NULL


def test_round_trip_across_a_4g_boundary() -> None:
    """An arena ending at a 4 GiB boundary (bpf/arena_fixed.bpf.c's placement)."""
    start = (1 << 44) | (0xFFFF_FFFF - 2 * PAGE + 1)
    for ptr in (start, start + PAGE, start + 2 * PAGE - 1):
        assert ar.user_pointer(start, ar.kernel_offset(ptr)) == ptr
    assert ar.kernel_offset(start) == 0xFFFF_E000


@pytest.mark.parametrize("offset,page", [(0, 0), (PAGE - 1, 0), (PAGE, 1), (5 * PAGE + 8, 5)])
def test_page_index(offset: int, page: int) -> None:
    assert ar.page_index(START, START + offset) == page
    # only the low halves count, as in the kernel's compute_pgoff
    assert ar.page_index(START, ar.kernel_offset(START + offset)) == page


def test_arena_bytes() -> None:
    assert ar.arena_bytes(1) == PAGE
    assert ar.arena_bytes(ar.MAX_ARENA_BYTES // PAGE) == 1 << 32


@pytest.mark.parametrize("params,want", [
    ({"pages": 4}, None),
    ({"pages": 4, "map_flags": BPF_F_MMAPABLE | BPF_F_SEGV_ON_FAULT}, None),
    ({"pages": 2, "map_extra": 1 << 45}, None),
    ({"pages": 1 << 20}, None),  # exactly 4 GiB
    ({"pages": 1, "map_flags": 0}, errno.EINVAL),
    ({"pages": 1, "map_flags": BPF_F_MMAPABLE | BPF_F_NO_PREALLOC}, errno.EINVAL),
    ({"pages": 1, "key_size": 4}, errno.EINVAL),
    ({"pages": 1, "value_size": 4}, errno.EINVAL),
    ({"pages": 0}, errno.EINVAL),
    ({"pages": 1, "map_extra": (1 << 45) + 8}, errno.EINVAL),
    ({"pages": (1 << 20) + 1}, errno.E2BIG),
    ({"pages": 2, "map_extra": (1 << 44) - PAGE}, errno.ERANGE),
    ({"pages": 1, "map_extra": (1 << 44) - PAGE}, None),  # the last page below the boundary
])
def test_create_errno(params: dict[str, int], want: int | None) -> None:
    assert ar.create_errno(**params) == want


def test_op_args_layout() -> None:
    """struct arena_op_args of bpf/arena_ops.h: seven u64 in this order."""
    names = [field[0] for field in ar.ArenaOpArgs._fields_]
    assert names == ["op", "addr", "count", "value", "ret", "kern", "user"]
    assert ctypes.sizeof(ar.ArenaOpArgs) == 7 * 8
    assert [int(op) for op in ar.ArenaOp] == list(range(1, 9))


def test_stamp_words() -> None:
    assert ar.stamp_words(0x10, 2) == (0x12, 0xFFFF_FFFF_FFFF_FFED)
    assert ar.stamp_words(2**64 - 1, 1) == (0, 2**64 - 1)  # wraps like the program's u64


def test_arena_memory_bounds() -> None:
    mem = ar.ArenaMemory(START, 4 * PAGE, fd=-1)
    assert (mem.pages, mem.end) == (4, START + 4 * PAGE)
    assert mem.page(3) == START + 3 * PAGE
    assert mem.page_of(START + 3 * PAGE + 5) == 3
    assert mem.contains(START + 4 * PAGE - 8, 8)
    assert not mem.contains(START + 4 * PAGE - 4, 8)
    assert not mem.contains(START - 1)
    with pytest.raises(IndexError):
        mem.page(4)
    with pytest.raises(ValueError, match="outside the arena"):
        mem.read(START + 4 * PAGE, 1)
    with pytest.raises(ValueError, match="outside the arena"):
        mem.write(START - 8, b"x" * 8)


def test_touch_outcome() -> None:
    import signal

    killed = ar.TouchOutcome(signal.SIGSEGV, None)
    assert killed.segfault and killed.describe() == "killed by SIGSEGV"
    fine = ar.TouchOutcome(None, 0, b"\x00" * 8)
    assert not fine.segfault and fine.describe() == "exited 0"


LOG = """bpf_object__load(x.bpf.o): EACCES (Permission denied)
libbpf: prog 'p': BPF program load failed: Permission denied
libbpf: prog 'p': -- BEGIN PROG LOAD LOG --
0: R1=ctx() R10=fp0
17: (85) call bpf_arena_alloc_pages#63511
program must be sleepable to call sleepable kfunc bpf_arena_alloc_pages
processed 15 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0
-- END PROG LOAD LOG --
libbpf: prog 'p': failed to load: -13
"""


def test_verifier_message() -> None:
    assert ar.verifier_message(LOG) == (
        "program must be sleepable to call sleepable kfunc bpf_arena_alloc_pages")
    truncated = LOG.replace(
        "processed 15 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0\n",
        "")
    assert ar.verifier_message(truncated) == (
        "program must be sleepable to call sleepable kfunc bpf_arena_alloc_pages")
    assert ar.verifier_message("libbpf: extern (func ksym) 'x': not found in kernel") == ""
