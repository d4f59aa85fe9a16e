"""BPF arena (6.9): an arena map created and mmapped."""

from __future__ import annotations

from .. import bpf as lb
from .base import Unsupported


def probe_arena() -> str:
    with lb.create_map(lb.MapType.ARENA, 0, 0, 1, name="kmx_probe_arena",
                       map_flags=lb.BPF_F_MMAPABLE) as arena:
        with arena.mmap() as mem:
            mem[0:4] = b"kmx!"
            if mem[0:4] != b"kmx!":
                raise Unsupported("arena page mapped but did not keep what was written")
        return (f"bpf_map_create(BPF_MAP_TYPE_ARENA, 1 page, BPF_F_MMAPABLE) + mmap: "
                f"map id {arena.id}")
