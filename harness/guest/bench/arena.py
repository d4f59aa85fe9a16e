"""Guest side of the arena benchmark (benchmarks/arena_bench.py drives it).

A table of 256 u64 counters, one slot updated per packet by XDP, kept in three places:

- ``arena``: an arena page (bpf/arena_bench.bpf.c): the program stores through a pointer
  (a JIT'd load and store, no helper);
- ``array``: a BPF_F_MMAPABLE array map (bpf/arena_bench_maps.bpf.c): bpf_map_lookup_elem,
  which the verifier inlines for arrays;
- ``hash``: a hash map holding every slot: bpf_map_lookup_elem, a hash lookup;
- ``none``: the same program without an update (what BPF_PROG_TEST_RUN itself costs).

Update cost: BPF_PROG_TEST_RUN of each XDP program with `repeat` runs on one 64-byte frame
(slot SLOT): the kernel's mean ns per run (CPU time of the loop, whole ns; natively the
update is a few ns next to the test run's own ~20 ns, under TCG both grow).

Read cost: user space reading the whole table, decoded into 256 integers: the arena
through its mmap (one copy), the array through its mmap, the array and the hash through
one bpf_map_lookup_elem per slot (each a syscall through libbpf from Python, into
preallocated buffers). Mean ns per full read over `reads` reads; the Python loop is part
of both kinds of reader.

Order effects: one discarded warm-up round, then `rounds` rounds with the order rotated
each round; each figure is the median round (all rounds kept). Exactness: after the runs
every table must hold exactly (rounds + 1) x repeat in slot SLOT and 0 elsewhere, and
every reader must return that table; a mismatch is reported under "checks".

A kernel without arenas (harness.guest.probes.probe("arena") says no) gets the arena
variants reported as skipped, with the probe's answer, and the map variants measured.
"""

from __future__ import annotations

import ctypes
import mmap
import statistics
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from .. import bpf as lb
from ..bpf import arena as ar
from .netkit import rotated

UPDATES = ("arena", "array", "hash", "none")
READS = ("arena-mmap", "array-mmap", "array-lookup", "hash-lookup")
#: what the ratios are taken against
BASE_UPDATE, BASE_READ = "array", "array-lookup"
NSLOTS = 256
SLOT = 7
#: a 64-byte frame whose first byte after the Ethernet header picks SLOT
FRAME = bytes(14) + bytes([SLOT]) + bytes(49)
TABLE = struct.Struct(f"<{NSLOTS}Q")
DEFAULT_REPEAT, DEFAULT_READS, DEFAULT_ROUNDS = 200_000, 200, 3
XDP_DROP = 1


class SetupArgs(ctypes.Structure):
    """struct setup_args of bpf/arena_bench.bpf.c"""

    _fields_ = [("table", ctypes.c_uint64)]


@dataclass
class Tables:
    """The loaded programs and every way of reading their tables."""

    updates: dict[str, lb.Program] = field(default_factory=dict)
    readers: dict[str, Callable[[], tuple[int, ...]]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def lookup_reader(table: lb.Map) -> Callable[[], tuple[int, ...]]:
    """A reader of the whole table with one bpf_map_lookup_elem per slot, straight into
    preallocated buffers (the syscall path, not the harness's per-call conveniences)."""
    fd, lookup = table.fd, lb.lib().bpf_map_lookup_elem
    key, value = ctypes.c_uint32(), ctypes.c_uint64()
    key_p, value_p = ctypes.byref(key), ctypes.byref(value)

    def read() -> tuple[int, ...]:
        out = []
        for slot in range(NSLOTS):
            key.value = slot
            lb.check(lookup(fd, key_p, value_p), f"bpf_map_lookup_elem({table.name})")
            out.append(value.value)
        return tuple(out)

    return read


@contextmanager
def tables(arena_supported: bool, arena_detail: str) -> Iterator[Tables]:
    """Load both objects (the arena one only where arenas work) and set the tables up."""
    with ExitStack() as stack:
        out = Tables()
        maps = stack.enter_context(lb.BpfObject(lb.object_path("arena_bench_maps")))
        array, hashed = maps.map("array_counters"), maps.map("hash_counters")
        for slot in range(NSLOTS):
            hashed.update(slot, 0)
        array_mem = stack.enter_context(array.mmap())
        out.updates.update(array=maps.program("count_array"), hash=maps.program("count_hash"),
                           none=maps.program("count_none"))
        out.readers["array-mmap"] = lambda: TABLE.unpack_from(array_mem, 0)
        out.readers["array-lookup"] = lookup_reader(array)
        out.readers["hash-lookup"] = lookup_reader(hashed)
        if arena_supported:
            obj = stack.enter_context(lb.BpfObject(lb.object_path("arena_bench")))
            args = SetupArgs()
            if ar.run_syscall(obj.program("bench_setup"), args) != 0 or not args.table:
                raise RuntimeError("bench_setup could not allocate the arena table")
            mem = ar.object_arena(obj.map("arena"))
            ptr = int(args.table)
            out.updates["arena"] = obj.program("count_arena")
            out.readers["arena-mmap"] = lambda: TABLE.unpack(mem.read(ptr, TABLE.size))
        else:
            out.skipped["arena"] = out.skipped["arena-mmap"] = arena_detail
        yield out


def measure_update(prog: lb.Program, repeat: int) -> float:
    """Mean ns per run of `prog` over one BPF_PROG_TEST_RUN of `repeat` runs on FRAME, as
    the kernel measures it: time the test-run loop was on the CPU (preemption excluded,
    which matters on a shared host or under TCG), divided down to whole ns."""
    result = prog.test_run(FRAME, repeat=repeat)
    if result.retval != XDP_DROP:
        raise RuntimeError(f"{prog.name} returned {result.retval}, not XDP_DROP")
    return float(result.duration_ns)


def measure_read(reader: Callable[[], tuple[int, ...]], reads: int) -> float:
    """Mean ns per full-table read over `reads` reads."""
    start = time.perf_counter_ns()
    for _ in range(reads):
        reader()
    return (time.perf_counter_ns() - start) / reads


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def expected_table(runs: int) -> tuple[int, ...]:
    """Every table after `runs` updates of FRAME: `runs` in SLOT, 0 elsewhere."""
    return tuple(runs if slot == SLOT else 0 for slot in range(NSLOTS))


def check_tables(t: Tables, runs: int) -> dict[str, str]:
    """What each reader returned that it should not have ({} when all is exact)."""
    want = expected_table(runs)
    problems = {}
    for name, reader in t.readers.items():
        got = reader()
        if got != want:
            wrong = {s: v for s, v in enumerate(got) if v != want[s]}
            first = dict(list(wrong.items())[:4])
            problems[name] = f"want {runs} in slot {SLOT} and 0 elsewhere, got {first}"
    return problems


def run(repeat: int = DEFAULT_REPEAT, reads: int = DEFAULT_READS,
        rounds: int = DEFAULT_ROUNDS) -> dict[str, Any]:
    """The whole benchmark in this kernel: a JSON-able result."""
    from ..probes import probe

    arena = probe("arena")
    with tables(arena.supported, f"probe arena: {arena.status}: {arena.detail}") as t:
        update_rounds: dict[str, list[float]] = {name: [] for name in t.updates}
        read_rounds: dict[str, list[float]] = {name: [] for name in t.readers}
        for r in range(rounds + 1):  # round 0: the warm-up, discarded
            for name in rotated([n for n in UPDATES if n in t.updates], r):
                ns = measure_update(t.updates[name], repeat)
                if r:
                    update_rounds[name].append(ns)
            for name in rotated([n for n in READS if n in t.readers], r):
                ns = measure_read(t.readers[name], reads)
                if r:
                    read_rounds[name].append(ns)
        checks = check_tables(t, (rounds + 1) * repeat)
        return {
            "repeat": repeat, "reads": reads, "rounds": rounds, "nslots": NSLOTS,
            "page_size": mmap.PAGESIZE,
            "update_ns": {n: median(v) for n, v in update_rounds.items()},
            "read_ns": {n: median(v) for n, v in read_rounds.items()},
            "update_rounds": update_rounds, "read_rounds": read_rounds,
            "skipped": t.skipped, "checks": checks,
        }
