"""BPF arena (6.9) and what builds on it: arena atomics (6.10), the arena spin lock
(6.15), arena kfuncs callable from non-sleepable programs (7.0).

Each probe does what the gated cases rely on and checks the result from user space, at the
pointer the program handed back (bpf/arena_probe.bpf.c, bpf/arena_spin_lock.bpf.c):

- arena: an arena map created and mmapped, then a sleepable syscall program allocates a
  page and stamps it, and user space finds the stamp at the same address;
- arena_atomics: fetch-add, add, xchg and cmpxchg on an arena page (the x86 JIT refuses
  the load before 6.10);
- arena_spin_lock: the suite's arena spin lock (cmpxchg/xchg on arena memory, may_goto,
  bpf_local_irq_save/restore) taken and released by a tc program run with BPF_PROG_TEST_RUN;
- arena_nonsleepable_kfuncs: an XDP program allocates and frees arena pages (before 7.0
  the verifier refuses the load: "program must be sleepable to call sleepable kfunc").
"""

from __future__ import annotations

import ctypes

from .. import bpf as lb
from ..bpf import arena as ar
from .base import Unsupported, kernel_says, oserror_detail

MAGIC = 0x6B6D_6174_7269_7821  # "kmatrix!"
_U64 = ctypes.c_uint64
#: a minimal Ethernet frame for BPF_PROG_TEST_RUN of tc/XDP programs (>= ETH_HLEN bytes)
TEST_FRAME = bytes(64)


class ProbeArgs(ctypes.Structure):
    """struct probe_args of bpf/arena_probe.bpf.c"""

    _fields_ = [("magic", _U64), ("ptr", _U64), ("freed", _U64), ("add_old", _U64),
                ("xchg_old", _U64), ("cmpxchg_miss", _U64), ("cmpxchg_hit", _U64),
                ("final", _U64)]


def load_refusal(exc: OSError, what: str) -> Unsupported:
    """A refused load as the probe's answer: the errno and the kernel's reason (the
    verifier's message, or libbpf's note of a kfunc the kernel does not have)."""
    text = str(exc)
    reason = ar.verifier_message(text) or next(
        (line.strip() for line in text.splitlines() if "extern " in line), "")
    if not reason:
        return Unsupported(oserror_detail(exc, what))
    return Unsupported(f"{what}: {lb.errno_name(exc.errno or 0)}: {reason}")


def load(name: str, programs: list[str] | None, what: str) -> lb.BpfObject:
    """bpf/NAME's object with only `programs` loaded; a refused load is the kernel's
    answer (Unsupported with its reason), a missing object the harness's problem."""
    path = lb.object_path(name)
    try:
        return lb.BpfObject(path, autoload=programs)
    except OSError as exc:
        raise load_refusal(exc, what) from exc


def _stamp_seen(mem: ar.ArenaMemory, ptr: int, where: str) -> None:
    """The page at `ptr` carries MAGIC first and ~MAGIC last, as user space reads it."""
    if not mem.contains(ptr, ar.PAGE_SIZE):
        raise Unsupported(f"{where}: pointer {ptr:#x} is outside the arena mapping "
                          f"{mem.start:#x}..{mem.end:#x}")
    first = mem.read_u64(ptr)
    last = mem.read_u64(ptr + ar.PAGE_SIZE - 8)
    if (first, last) != (MAGIC, MAGIC ^ (2**64 - 1)):
        raise Unsupported(f"{where}: user space reads {first:#x}/{last:#x} at {ptr:#x}, "
                          f"the program wrote {MAGIC:#x}/{MAGIC ^ (2**64 - 1):#x}")


def probe_arena() -> str:
    with kernel_says("bpf_map_create(BPF_MAP_TYPE_ARENA, 1 page, BPF_F_MMAPABLE)"):
        standalone = ar.create_arena(1, name="kmx_probe_arena")
    with standalone, kernel_says("mmap(arena)"), ar.map_arena(standalone) as mapping:
        mapping.write(mapping.start, b"kmx!")
        if mapping.read(mapping.start, 4) != b"kmx!":
            raise Unsupported("arena page mapped but did not keep what was written")
    with load("arena_probe", ["probe_alloc"], "load syscall program allocating arena pages") \
            as obj:
        args = ProbeArgs(magic=MAGIC)
        with kernel_says("BPF_PROG_TEST_RUN(probe_alloc)"):
            ret = ar.run_syscall(obj.program("probe_alloc"), args)
        if ret != 0:
            raise Unsupported(f"probe_alloc: bpf_arena_alloc_pages returned NULL (ret {ret})")
        mem = ar.object_arena(obj.map("arena"))
        _stamp_seen(mem, args.ptr, "probe_alloc")
        return (f"arena created + mmapped; a syscall program allocated page "
                f"{mem.page_of(args.ptr)} at {args.ptr:#x}, user space read its stamp there")


def probe_arena_atomics() -> str:
    with load("arena_probe", ["probe_atomics"], "load atomics on arena memory") as obj:
        args = ProbeArgs()
        with kernel_says("BPF_PROG_TEST_RUN(probe_atomics)"):
            ret = ar.run_syscall(obj.program("probe_atomics"), args)
        if ret != 0:
            raise Unsupported(f"probe_atomics: bpf_arena_alloc_pages returned NULL ({ret})")
        got = (args.add_old, args.xchg_old, args.cmpxchg_miss, args.cmpxchg_hit, args.final)
        want = (10, 16, 100, 100, 42)
        seen = ar.object_arena(obj.map("arena")).read_u64(args.ptr)
        if got != want or seen != 42:
            raise Unsupported(f"arena atomics loaded but gave (old add, old xchg, cmpxchg "
                              f"miss/hit, final) {got}, user space {seen}; want {want}, 42")
        return "fetch-add, add, xchg, cmpxchg on an arena page: every old value and the " \
               "final 42 as expected, seen by user space"


class LockStateArgs(ctypes.Structure):
    """struct lock_state_args of bpf/arena_spin_lock.bpf.c"""

    _fields_ = [("addr", _U64)]


class LockState(ctypes.Structure):
    """struct lock_state of bpf/arena_spin_lock.bpf.c (in the arena)"""

    _fields_ = [("locked", _U64), ("counter", _U64), ("timeouts", _U64),
                ("cs_loops", _U64), ("acquired", _U64), ("spin_limit", _U64)]


def lock_state(obj: lb.BpfObject) -> tuple[ar.ArenaMemory, int]:
    """The arena of a loaded arena_spin_lock object and the user address of its `state`."""
    args = LockStateArgs()
    if ar.run_syscall(obj.program("lock_state"), args) != 0:
        raise RuntimeError("lock_state returned an error")
    return ar.object_arena(obj.map("arena")), int(args.addr)


def read_lock_state(mem: ar.ArenaMemory, addr: int) -> LockState:
    return LockState.from_buffer_copy(mem.read(addr, ctypes.sizeof(LockState)))


def probe_arena_spin_lock() -> str:
    runs = 16
    with load("arena_spin_lock", None, "load the arena spin lock") as obj:
        mem, addr = lock_state(obj)
        with kernel_says(f"BPF_PROG_TEST_RUN(lock_inc, repeat {runs})"):
            result = obj.program("lock_inc").test_run(TEST_FRAME, repeat=runs)
        state = read_lock_state(mem, addr)
        got = (result.retval, state.counter, state.acquired, state.timeouts, state.locked)
        if got != (0, runs, runs, 0, 0):
            raise Unsupported(f"arena spin lock: (retval, counter, acquired, timeouts, "
                              f"locked) = {got} after {runs} runs, want (0, {runs}, {runs}, "
                              "0, 0)")
        return (f"tc program took and released the arena spin lock {runs} times "
                "(cmpxchg/xchg on arena memory, may_goto, bpf_local_irq_save/restore)")


def probe_arena_nonsleepable_kfuncs() -> str:
    with load("arena_probe", ["probe_xdp_alloc"],
              "load XDP program calling bpf_arena_alloc_pages") as obj:
        ctl = obj.map("xdp_ctl")
        ctl.update(0, bytes(ProbeArgs(magic=MAGIC)))
        with kernel_says("BPF_PROG_TEST_RUN(probe_xdp_alloc)"):
            result = obj.program("probe_xdp_alloc").test_run(TEST_FRAME)
        if result.retval != 2:  # XDP_PASS
            raise Unsupported(f"probe_xdp_alloc returned {result.retval}: "
                              "bpf_arena_alloc_pages gave NULL in XDP")
        args = ProbeArgs.from_buffer_copy(ctl.lookup(0) or b"")
        _stamp_seen(ar.object_arena(obj.map("arena")), args.ptr, "probe_xdp_alloc")
        return (f"XDP program allocated arena pages {args.ptr:#x} and {args.freed:#x}, "
                "freed the second; user space read the first's stamp")
