"""Atomic operations on arena memory (x86 JIT, 6.10+) and a spin lock living in an arena
(6.15+), after the kernel selftests' progs/arena_atomics.c and prog_tests/arena_spin_lock.c.

bpf/arena_atomics.bpf.c runs every atomic the JIT supports on arena pointers, 64-bit and
32-bit, with each old value and result checked exactly; the fetch forms of and/or/xor,
which the x86 JIT refuses on arena pointers (bpf_jit_supports_insn, images/features.toml),
have programs of their own: a refusal is recorded and skipped (no kernel is expected to
run them), never passed. Concurrency: a tc program adds to arena counters from several
threads' BPF_PROG_TEST_RUNs at once (`repeat`), and the totals must be exact.

bpf/arena_spin_lock.bpf.c is the suite's own arena spin lock (cmpxchg/xchg on arena
memory, may_goto-bounded spinning, bpf_local_irq_save/restore); its counter is incremented
non-atomically inside the lock, so a lost update would show in the count.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable

import pytest

from harness.guest import bpf as lb
from harness.guest.bpf import arena as ar
from harness.guest.fixtures import KernelExpectations
from harness.guest.probes import arena as arena_probe

U64 = ctypes.c_uint64
HIGH = 0x1234_5678_0000_0000
#: a minimal frame for BPF_PROG_TEST_RUN of the tc programs
FRAME = arena_probe.TEST_FRAME
Record = Callable[[str, object], None]


class AtomicsArgs(ctypes.Structure):
    """struct atomics_args of bpf/arena_atomics.bpf.c"""

    _fields_ = [(name, U64) for name in (
        "ptr", "fetch_add_old", "after_add", "fetch_sub_old", "after_sub", "after_and",
        "after_or", "after_xor", "cmpxchg_miss", "cmpxchg_hit", "xchg_old", "final", "high")]


#: the sequence both atomics programs run, as (field, value) before any upper half
SEQUENCE = [("fetch_add_old", 100), ("after_add", 110), ("fetch_sub_old", 110),
            ("after_sub", 60), ("after_and", 0x3C), ("after_or", 0x33C), ("after_xor", 0x3C3),
            ("cmpxchg_miss", 0x3C3), ("cmpxchg_hit", 0x3C3), ("xchg_old", 0xABC),
            ("final", 0x5A5A)]


class FetchArgs(ctypes.Structure):
    """struct fetch_args of bpf/arena_atomics.bpf.c"""

    _fields_ = [("ptr", U64), ("old", U64), ("now", U64)]


class SharedArgs(ctypes.Structure):
    """struct shared_args of bpf/arena_atomics.bpf.c"""

    _fields_ = [("addr", U64)]


class SharedCounters(ctypes.Structure):
    """struct shared_counters of bpf/arena_atomics.bpf.c (an __arena global)"""

    _fields_ = [("add", U64), ("fetch_add", U64), ("last_fetch", U64)]


def load(name: str, programs: list[str] | None) -> lb.BpfObject:
    return lb.BpfObject(lb.object_path(name), autoload=programs)


def cpus_for_contention() -> list[int]:
    """Up to 4 CPUs this process may run on; the test skips below 2 (no contention)."""
    cpus = sorted(os.sched_getaffinity(0))[:4]
    if len(cpus) < 2:
        pytest.skip(f"one CPU ({cpus}): nothing to contend with")
    return cpus


def run_on_cpus(prog: lb.Program, cpus: list[int], repeat: int) -> list[int]:
    """BPF_PROG_TEST_RUN of `prog` with `repeat` from one thread per CPU, all started
    together (ctypes drops the GIL around the syscall); each run's retval."""
    barrier = threading.Barrier(len(cpus))
    results: dict[int, int | BaseException] = {}

    def worker(cpu: int) -> None:
        try:
            os.sched_setaffinity(0, {cpu})  # this thread only
            barrier.wait(timeout=30)
            results[cpu] = prog.test_run(FRAME, repeat=repeat).retval
        except BaseException as exc:  # reported below, in the test's thread
            results[cpu] = exc

    threads = [threading.Thread(target=worker, args=(cpu,)) for cpu in cpus]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    for cpu, outcome in results.items():
        if isinstance(outcome, BaseException):
            raise RuntimeError(f"test run on CPU {cpu} failed") from outcome
    assert len(results) == len(cpus), "a test-run thread did not finish"
    return [int(r) for r in results.values() if isinstance(r, int)]


# --------------------------------------------------------------------------- atomics


@pytest.mark.requires("arena_atomics")
def test_atomics_64() -> None:
    """64-bit fetch-add, add, fetch-sub, sub, and, or, xor, cmpxchg (a miss, then a hit)
    and xchg on an arena word: every old value and every result exact, the upper half
    intact throughout; user space reads the final value at the program's pointer."""
    with load("arena_atomics", ["atomics64"]) as obj:
        args = AtomicsArgs()
        assert ar.run_syscall(obj.program("atomics64"), args) == 0
        got = [(name, getattr(args, name)) for name, _ in SEQUENCE]
        assert got == [(name, HIGH | value) for name, value in SEQUENCE]
        assert args.high == 1
        assert ar.object_arena(obj.map("arena")).read_u64(args.ptr) == HIGH | 0x5A5A


@pytest.mark.requires("arena_atomics")
def test_atomics_32() -> None:
    """The same sequence with 32-bit atomics (BPF_W): every old value and result exact,
    the neighbouring 32-bit word untouched; user space reads the final value."""
    with load("arena_atomics", ["atomics32"]) as obj:
        args = AtomicsArgs()
        assert ar.run_syscall(obj.program("atomics32"), args) == 0
        got = [(name, getattr(args, name)) for name, _ in SEQUENCE]
        assert got == SEQUENCE
        assert args.high == 1
        mem = ar.object_arena(obj.map("arena"))
        assert mem.read(args.ptr, 8) == (0x5A5A).to_bytes(4, "little") + (
            0xFEEDF00D).to_bytes(4, "little")


FETCH_FORMS = {"fetch_and": 0xF0F0 & 0x0FF0, "fetch_or": 0xF0F0 | 0x0FF0,
               "fetch_xor": 0xF0F0 ^ 0x0FF0}


@pytest.mark.requires("arena_atomics")
@pytest.mark.parametrize("prog", list(FETCH_FORMS))
def test_fetch_bitwise(prog: str, expect: KernelExpectations, record_property: Record) -> None:
    """The fetch forms of and/or/xor on an arena word: where the kernel runs them, the old
    value and the result are exact; where it refuses them (the x86 JIT on every kernel
    known, "... arena is not allowed"), the refusal is recorded and the case skips."""
    try:
        obj = load("arena_atomics", [prog])
    except OSError as exc:
        message = ar.verifier_message(str(exc))
        observed = f"load {prog}: {lb.errno_name(exc.errno or 0)}: {message}"
        record_property("observed", observed)
        assert "arena" in message, f"refused for another reason: {exc}"
        expect.refused(None, observed)
    with obj:
        args = FetchArgs()
        assert ar.run_syscall(obj.program(prog), args) == 0
        assert (args.old, args.now) == (0xF0F0, FETCH_FORMS[prog])
        assert ar.object_arena(obj.map("arena")).read_u64(args.ptr) == FETCH_FORMS[prog]
        record_property("observed", f"{prog} on arena memory ran")


@pytest.mark.requires("arena_atomics")
def test_atomic_add_concurrent() -> None:
    """A tc program adds 1 to an arena counter (BPF_ADD) and fetch-adds 1 to another, run
    from one thread per CPU at once with BPF_PROG_TEST_RUN `repeat`: both totals are
    exactly threads x repeat, as user space reads them in the arena."""
    cpus = cpus_for_contention()
    repeat = 20000
    with load("arena_atomics", ["count_tc", "shared_addr"]) as obj:
        where = SharedArgs()
        assert ar.run_syscall(obj.program("shared_addr"), where) == 0
        mem = ar.object_arena(obj.map("arena"))
        assert run_on_cpus(obj.program("count_tc"), cpus, repeat) == [0] * len(cpus)
        shared = SharedCounters.from_buffer_copy(mem.read(where.addr,
                                                          ctypes.sizeof(SharedCounters)))
        total = len(cpus) * repeat
        assert (shared.add, shared.fetch_add) == (total, total)
        assert shared.last_fetch < total


# --------------------------------------------------------------------------- spin lock


@pytest.mark.requires("arena_spin_lock")
def test_spin_lock_mutual_exclusion(record_property: Record) -> None:
    """One thread per CPU takes the arena spin lock `repeat` times (BPF_PROG_TEST_RUN) and
    increments a counter non-atomically inside it (read, a delay, write): the counter ends
    at exactly threads x repeat, every acquisition succeeded, the lock is free. The same
    increments without the lock are recorded (lost updates show what the lock prevents)."""
    cpus = cpus_for_contention()
    repeat, cs_loops = 2000, 50
    with load("arena_spin_lock", None) as obj:
        mem, addr = arena_probe.lock_state(obj)
        mem.write_u64(addr + arena_probe.LockState.cs_loops.offset, cs_loops)
        assert run_on_cpus(obj.program("lock_inc"), cpus, repeat) == [0] * len(cpus)
        state = arena_probe.read_lock_state(mem, addr)
        total = len(cpus) * repeat
        assert (state.counter, state.acquired, state.timeouts, state.locked) == (
            total, total, 0, 0)
        mem.write_u64(addr + arena_probe.LockState.counter.offset, 0)
        run_on_cpus(obj.program("nolock_inc"), cpus, repeat)
        unlocked = arena_probe.read_lock_state(mem, addr).counter
        record_property("observed", f"{len(cpus)} threads x {repeat}: with the lock "
                                    f"{total} of {total}, without it {unlocked}")


@pytest.mark.requires("arena_spin_lock")
def test_spin_lock_held_by_user_space_times_out() -> None:
    """User space can hold the lock by writing its word in the arena: the program's
    bounded spin then gives up (returns 1, one timeout counted, the counter and the lock
    word untouched); once user space releases it the program takes it. (The spin is cut
    at 4096 tries here: may_goto's own bound keeps IRQs off for ~0.3 s natively, seconds
    under TCG.)"""
    with load("arena_spin_lock", None) as obj:
        mem, addr = arena_probe.lock_state(obj)
        prog = obj.program("lock_inc")
        mem.write_u64(addr + arena_probe.LockState.spin_limit.offset, 4096)
        mem.write_u64(addr + arena_probe.LockState.locked.offset, 1)
        assert prog.test_run(FRAME).retval == 1
        state = arena_probe.read_lock_state(mem, addr)
        assert (state.locked, state.counter, state.acquired, state.timeouts) == (1, 0, 0, 1)
        mem.write_u64(addr + arena_probe.LockState.locked.offset, 0)
        assert prog.test_run(FRAME).retval == 0
        state = arena_probe.read_lock_state(mem, addr)
        assert (state.locked, state.counter, state.acquired, state.timeouts) == (0, 1, 1, 1)
