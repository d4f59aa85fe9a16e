"""BPF arena (6.9+) from Python: arena maps, their user-space mapping, pointers into them,
and the BPF_PROG_TYPE_SYSCALL programs that allocate arena pages, run with
BPF_PROG_TEST_RUN.

An arena (BPF_MAP_TYPE_ARENA) is a sparse region of `max_entries` pages (at most 4 GiB)
that BPF programs and user space share *at the same addresses*: a program that allocates
a page with ``bpf_arena_alloc_pages`` gets a pointer `p`, and user space reads and writes
the same bytes at address `p` of its mapping. What the kernel requires (kernel/bpf/arena.c):

- the map is created with key_size = value_size = 0, max_entries > 0 and BPF_F_MMAPABLE;
  other flags allowed are BPF_F_SEGV_ON_FAULT and BPF_F_NO_USER_CONV;
- `map_extra`, when not 0, is the user address the arena must be mapped at: page aligned,
  and the whole arena must not cross a 4 GiB boundary (ERANGE); then every mmap must be at
  exactly that address with exactly max_entries pages (EINVAL/EBUSY otherwise);
- with `map_extra` 0 the first mmap fixes the address (the kernel picks one whose 32-bit
  halves do not wrap) and later mmaps must use it again (EBUSY otherwise): the address
  stays fixed after munmap, so a re-mapping needs MAP_FIXED, which Python's mmap cannot;
- a program using the arena can be loaded only once its user address is fixed (verifier:
  "arena's user address must be set via map_extra or mmap()"). libbpf therefore mmaps an
  object's arena itself when it creates it (`object_arena` returns that mapping);
- a user-space touch of a page no program allocated allocates a zero-filled page (and the
  page is then taken: a program cannot allocate it any more), or, with
  BPF_F_SEGV_ON_FAULT, raises SIGSEGV: probe such pages with `touch_in_child`.

Pointer forms: the kernel addresses page `i` at `kern_vm_start + lower32(user address)`, so
a program holds 32-bit offsets after a `cast_kern` (addr_space_cast(r, 0, 1)) and turns
them back into user addresses with `cast_user` (addr_space_cast(r, 1, 0): the upper 32 bits
of the user start are put back, 0 stays 0). BPF_F_NO_USER_CONV makes `cast_user` a 32-bit
move: pointers stay in the kernel's form. `user_pointer` and `kernel_offset` are the same
arithmetic in Python.

Syscall programs: BPF_PROG_TEST_RUN of a BPF_PROG_TYPE_SYSCALL program takes only a
context (no data_in/data_out, no repeat, no duration: EINVAL otherwise, so
`Program.test_run`, which always passes data_out, cannot run them) and copies the context
back into the caller's buffer when the program returns. `run_syscall` does exactly that.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import faulthandler
import mmap
import os
import signal
from dataclasses import dataclass
from enum import IntEnum

from ..closing import Closing
from .library import HasFd, check, fd_of, lib, oserror
from .maps import Map, create_map
from .structs import TestRunOpts, _size_t
from .uapi import BPF_F_MMAPABLE, BPF_F_NO_USER_CONV, BPF_F_SEGV_ON_FAULT, MapType

PAGE_SIZE = mmap.PAGESIZE
#: the most an arena can span: the 32-bit offsets a program addresses it with
MAX_ARENA_BYTES = 1 << 32
#: map_flags the kernel accepts for an arena besides BPF_F_MMAPABLE (which it requires)
ARENA_FLAGS = BPF_F_SEGV_ON_FAULT | BPF_F_NO_USER_CONV
#: NUMA_NO_NODE for bpf_arena_alloc_pages' node_id
NUMA_NO_NODE = -1

# <linux/mman.h> (Python's mmap module has neither, nor a way to pass an address)
MAP_FIXED = 0x10
MAP_FIXED_NOREPLACE = 0x100000
_MAP_FAILED = ctypes.c_void_p(-1).value

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, _size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, _size_t]


# --------------------------------------------------------------------------- arithmetic


def lower32(value: int) -> int:
    """The low 32 bits: what a program's pointer holds after cast_kern."""
    return value & 0xFFFF_FFFF


def kernel_offset(ptr: int) -> int:
    """The kernel's form of an arena pointer (cast_kern): its low 32 bits."""
    return lower32(ptr)


def user_pointer(user_start: int, kern: int) -> int:
    """cast_user: a kernel-form pointer back into a user address of the arena mapped at
    `user_start` (its upper 32 bits put back); 0 (NULL) stays 0."""
    low = lower32(kern)
    return 0 if low == 0 else (user_start & ~0xFFFF_FFFF) | low


def page_index(user_start: int, ptr: int) -> int:
    """The arena page `ptr` falls in (the kernel's compute_pgoff: 32-bit arithmetic, so
    only the low halves count)."""
    return lower32(lower32(ptr) - lower32(user_start)) // PAGE_SIZE


def arena_bytes(pages: int) -> int:
    """Bytes an arena of `pages` pages spans (its mmap length)."""
    return pages * PAGE_SIZE


def create_errno(pages: int, *, map_flags: int = BPF_F_MMAPABLE, map_extra: int = 0,
                 key_size: int = 0, value_size: int = 0) -> int | None:
    """The errno BPF_MAP_CREATE of an arena with these parameters fails with on a kernel
    with arenas (arena_map_alloc's checks, in their order), None if it is accepted."""
    if (key_size or value_size or pages == 0 or not map_flags & BPF_F_MMAPABLE
            or map_flags & ~(ARENA_FLAGS | BPF_F_MMAPABLE)):
        return errno_mod.EINVAL
    if map_extra % PAGE_SIZE:
        return errno_mod.EINVAL
    size = arena_bytes(pages)
    if size > MAX_ARENA_BYTES:
        return errno_mod.E2BIG
    if map_extra >> 32 != (map_extra + size - 1) >> 32:
        return errno_mod.ERANGE
    return None


# --------------------------------------------------------------------------- maps


def create_arena(pages: int, *, flags: int = 0, map_extra: int = 0, name: str | None = None,
                 numa_node: int = 0) -> Map:
    """BPF_MAP_CREATE of an arena of `pages` pages (BPF_F_MMAPABLE is added to `flags`;
    `map_extra`: the user address it must be mapped at, 0 for the kernel's choice)."""
    return create_map(MapType.ARENA, 0, 0, pages, name=name,
                      map_flags=BPF_F_MMAPABLE | flags, map_extra=map_extra,
                      numa_node=numa_node)


@dataclass(frozen=True)
class ArenaInfo:
    """What the kernel reports about an arena map (bpf_map_info)."""

    id: int
    pages: int
    map_flags: int
    map_extra: int

    @property
    def size(self) -> int:
        return arena_bytes(self.pages)

    @property
    def segv_on_fault(self) -> bool:
        return bool(self.map_flags & BPF_F_SEGV_ON_FAULT)

    @property
    def no_user_conv(self) -> bool:
        return bool(self.map_flags & BPF_F_NO_USER_CONV)


def arena_info(arena: Map) -> ArenaInfo:
    """bpf_map_info of `arena`, checked to be an arena (ValueError otherwise)."""
    info = arena.info()
    if info.type != MapType.ARENA:
        raise ValueError(f"map {arena.name} is not an arena (type {info.type})")
    return ArenaInfo(info.id, info.max_entries, info.map_flags, info.map_extra)


# --------------------------------------------------------------------------- memory


class ArenaMemory:
    """User space's view of an arena mapped at `start` (`size` bytes): reads and writes at
    pointer values, i.e. the same addresses programs use.

    Touching a page no program allocated allocates a zero page, or kills the process with
    SIGSEGV on a BPF_F_SEGV_ON_FAULT arena (see `touch_in_child`). `fd` is the arena map's
    (for mapping it again at the same address)."""

    def __init__(self, start: int, size: int, fd: int) -> None:
        self.start = start
        self.size = size
        self.fd = fd

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def pages(self) -> int:
        return self.size // PAGE_SIZE

    def page(self, index: int) -> int:
        """The user address of page `index`."""
        if not 0 <= index < self.pages:
            raise IndexError(f"page {index} outside the arena's {self.pages} pages")
        return self.start + index * PAGE_SIZE

    def page_of(self, ptr: int) -> int:
        """The index of the page holding `ptr` (which must be inside the mapping)."""
        self._check(ptr, 1)
        return (ptr - self.start) // PAGE_SIZE

    def contains(self, ptr: int, length: int = 1) -> bool:
        return self.start <= ptr and ptr + length <= self.end

    def _check(self, ptr: int, length: int) -> None:
        if not self.contains(ptr, length):
            raise ValueError(f"{length} bytes at {ptr:#x} are outside the arena mapping "
                             f"{self.start:#x}..{self.end:#x}")

    def read(self, ptr: int, length: int) -> bytes:
        """`length` bytes at user address `ptr`."""
        self._check(ptr, length)
        return ctypes.string_at(ptr, length)

    def write(self, ptr: int, data: bytes) -> None:
        """Store `data` at user address `ptr`."""
        self._check(ptr, len(data))
        ctypes.memmove(ptr, data, len(data))

    def read_u64(self, ptr: int) -> int:
        return int.from_bytes(self.read(ptr, 8), "little")

    def write_u64(self, ptr: int, value: int) -> None:
        self.write(ptr, value.to_bytes(8, "little"))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.start:#x}+{self.size:#x}>"


class ArenaMapping(ArenaMemory, Closing):
    """An mmap of an arena made here (`map_arena`); munmapped by `close()`/the context.

    The kernel keeps the arena's user address after munmap: a later mapping must be at
    the same address (pass it, or the arena's map_extra applies)."""

    def __init__(self, start: int, size: int, fd: int) -> None:
        super().__init__(start, size, fd)
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if _libc.munmap(self.start, self.size) != 0:
                err = ctypes.get_errno()
                raise oserror(err, f"munmap(arena at {self.start:#x}, {self.size:#x})")



def map_arena(arena: Map, *, address: int | None = None, pages: int | None = None,
              replace: bool = False) -> ArenaMapping:
    """mmap `arena` read-write and shared, as the kernel wants it: at `address` if given,
    else at its map_extra if that is set, else where the kernel chooses. A fixed address is
    mapped with MAP_FIXED_NOREPLACE (EEXIST if something else is there), or MAP_FIXED with
    `replace`. `pages` defaults to the whole arena. OSError with the kernel's errno."""
    info = arena_info(arena)
    want = address if address is not None else (info.map_extra or None)
    length = arena_bytes(info.pages if pages is None else pages)
    what = f"mmap(arena id {info.id}, {length:#x} bytes" + (
        f", at {want:#x}" if want is not None else "") + ")"
    start = _mmap(arena.fd, want, length, replace=replace, what=what)
    return ArenaMapping(start, length, arena.fd)


def _mmap(fd: int, address: int | None, length: int, *, replace: bool, what: str) -> int:
    """mmap(2) of `fd`, shared and read-write, at exactly `address` when given."""
    flags = mmap.MAP_SHARED
    if address is not None:
        flags |= MAP_FIXED if replace else MAP_FIXED_NOREPLACE
    got = _libc.mmap(address or 0, length, mmap.PROT_READ | mmap.PROT_WRITE, flags, fd, 0)
    if got is None or got == _MAP_FAILED:
        raise oserror(ctypes.get_errno(), what)
    if address is not None and got != address:  # a kernel without MAP_FIXED_NOREPLACE
        _libc.munmap(got, length)
        raise oserror(errno_mod.EEXIST, f"{what}: the kernel mapped it at {got:#x}")
    return int(got)


def object_arena(arena: Map) -> ArenaMemory:
    """The mapping libbpf made of a loaded object's arena (valid while the object is open:
    libbpf munmaps it when the object is closed)."""
    if arena._ptr is None:
        raise ValueError(f"{arena!r} is not a map of a BpfObject: use map_arena()")
    size = _size_t(0)
    start = lib().bpf_map__initial_value(arena._ptr, ctypes.byref(size))
    if not start:
        raise ValueError(f"arena {arena.name} is not mapped (object not loaded?)")
    return ArenaMemory(int(start), arena_info(arena).size, arena.fd)


# --------------------------------------------------------------------------- programs


def run_syscall(prog: HasFd | int, ctx: ctypes.Structure | ctypes.Array[ctypes.c_char]
                | None = None, *, what: str = "") -> int:
    """BPF_PROG_TEST_RUN of a BPF_PROG_TYPE_SYSCALL program with `ctx` as its context; the
    kernel writes the context back into `ctx` (in place) after the run. Returns the
    program's return value (OSError if the kernel refused the run)."""
    opts = TestRunOpts()
    size = 0
    if ctx is not None:
        size = ctypes.sizeof(ctx)
        opts.ctx_in = ctypes.addressof(ctx)
        opts.ctx_size_in = size
    name = what or getattr(prog, "name", f"fd {fd_of(prog)}")
    check(lib().bpf_prog_test_run_opts(fd_of(prog), ctypes.byref(opts)),
          f"bpf_prog_test_run_opts({name}, syscall ctx of {size} bytes)")
    return ctypes.c_int32(opts.retval).value


class ArenaOp(IntEnum):
    """enum arena_op of bpf/arena_ops.h"""

    ALLOC = 1
    FREE = 2
    READ = 3
    WRITE = 4
    CASTS = 5
    STAMP = 6
    CHECK = 7
    ALLOC_NOT_ARENA = 8


class ArenaOpArgs(ctypes.Structure):
    """struct arena_op_args of bpf/arena_ops.h (the `arena_op` program's context)"""

    _fields_ = [("op", ctypes.c_uint64), ("addr", ctypes.c_uint64),
                ("count", ctypes.c_uint64), ("value", ctypes.c_uint64),
                ("ret", ctypes.c_uint64), ("kern", ctypes.c_uint64),
                ("user", ctypes.c_uint64)]


def stamp_words(seed: int, page: int) -> tuple[int, int]:
    """The first and last u64 ARENA_OP_STAMP writes into the `page`-th page of a run."""
    first = (seed + page) & 0xFFFF_FFFF_FFFF_FFFF
    return first, first ^ 0xFFFF_FFFF_FFFF_FFFF


class ArenaOps:
    """Drives the `arena_op` syscall program of bpf/arena_ops.h: one arena operation per
    BPF_PROG_TEST_RUN, as the program sees it (pointers are user addresses, 0 is NULL)."""

    def __init__(self, prog: HasFd | int, name: str = "arena_op") -> None:
        self.prog = prog
        self.name = name

    def run(self, op: ArenaOp, *, addr: int = 0, count: int = 0,
            value: int = 0) -> ArenaOpArgs:
        args = ArenaOpArgs(op=op, addr=addr, count=count, value=value)
        ret = run_syscall(self.prog, args, what=f"{self.name} {op.name}")
        if ret != 0:
            raise RuntimeError(f"{self.name}: operation {op.name} returned {ret}")
        return args

    def alloc(self, pages: int = 1, *, addr: int = 0, flags: int = 0) -> int:
        """bpf_arena_alloc_pages(&arena, addr or NULL, pages, NUMA_NO_NODE, flags)."""
        return int(self.run(ArenaOp.ALLOC, addr=addr, count=pages, value=flags).ret)

    def free(self, ptr: int, pages: int = 1) -> None:
        """bpf_arena_free_pages(&arena, ptr, pages)."""
        self.run(ArenaOp.FREE, addr=ptr, count=pages)

    def read(self, ptr: int) -> int:
        """The u64 at `ptr` as the program reads it (0 where there is no page)."""
        return int(self.run(ArenaOp.READ, addr=ptr).value)

    def write(self, ptr: int, value: int) -> int:
        """Store a u64 at `ptr` from the program; what reading it back there gives."""
        return int(self.run(ArenaOp.WRITE, addr=ptr, value=value).ret)

    def casts(self, ptr: int) -> tuple[int, int]:
        """(cast_kern(ptr), cast_user(cast_kern(ptr))) as the program computes them."""
        args = self.run(ArenaOp.CASTS, addr=ptr)
        return int(args.kern), int(args.user)

    def stamp(self, ptr: int, pages: int, seed: int) -> None:
        """Write `stamp_words(seed, i)` into the first and last word of page i from ptr."""
        self.run(ArenaOp.STAMP, addr=ptr, count=pages, value=seed)

    def check(self, ptr: int, pages: int, seed: int) -> int:
        """How many of the `pages` pages from `ptr` carry their stamp, program side."""
        return int(self.run(ArenaOp.CHECK, addr=ptr, count=pages, value=seed).ret)

    def alloc_not_arena(self) -> int:
        """bpf_arena_alloc_pages on the object's array map `not_arena` (NULL expected)."""
        return int(self.run(ArenaOp.ALLOC_NOT_ARENA).ret)


def verifier_message(log: str) -> str:
    """The verifier's reason in a failed load's log (libbpf's log, as a load OSError
    carries it): the last line before "processed N insns", or before libbpf's "-- END PROG
    LOAD LOG --" when the verifier stopped without its summary; "" when there is none."""
    lines = [line.strip() for line in log.splitlines()]
    end = next((i for i, line in enumerate(lines) if line.startswith("processed ")
                and " insns " in line), None)
    if end is None:
        end = next((i for i, line in enumerate(lines) if "END PROG LOAD LOG" in line), None)
    if end is None:
        return ""
    return next((line for line in reversed(lines[:end]) if line), "")


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class TouchOutcome:
    """How a child process that touched arena memory ended."""

    #: the signal that killed it (signal.SIGSEGV for a refused page), else None
    signal: int | None
    #: its exit status when it was not killed: 0 read/wrote as asked, 1 data differed
    exit_code: int | None
    #: what it read (reads that completed only)
    data: bytes = b""

    @property
    def segfault(self) -> bool:
        return self.signal == signal.SIGSEGV

    def describe(self) -> str:
        if self.signal is not None:
            return f"killed by {signal.Signals(self.signal).name}"
        return f"exited {self.exit_code}"


def touch_in_child(mem: ArenaMemory, ptr: int, length: int = 8, *,
                   write: bytes | None = None) -> TouchOutcome:
    """Read `length` bytes at `ptr` of arena `mem` (or write `write` there) in a forked
    child, so a SIGSEGV (a BPF_F_SEGV_ON_FAULT arena's answer for a page no program
    allocated) kills only the child. The child sends back what it read through a pipe.

    Newer kernels mark an arena's mapping VM_DONTCOPY (upstream around 7.0, backported to
    stable: this 6.18.44 has it), so a forked child does not inherit it: the child maps the
    arena again at the same address (the only one the kernel accepts), or uses the
    inherited mapping where there is one. Exit code 3: the child could not map the arena."""
    mem._check(ptr, max(length, len(write or b"")))
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: touch, report, _exit; never return into pytest
        code = 2
        try:
            os.close(rfd)
            faulthandler.disable()  # let SIGSEGV kill it, no traceback dump
            try:
                _mmap(mem.fd, mem.start, mem.size, replace=False, what="child mmap")
            except OSError as exc:
                if exc.errno != errno_mod.EEXIST:  # EEXIST: the mapping was inherited
                    code = 3
                    raise
            if write is not None:
                ctypes.memmove(ptr, write, len(write))
                data = ctypes.string_at(ptr, len(write))
                code = 0 if data == write else 1
            else:
                data = ctypes.string_at(ptr, length)
                code = 0
            os.write(wfd, data)
        finally:
            os._exit(code)
    os.close(wfd)
    try:
        chunks = []
        while chunk := os.read(rfd, 65536):
            chunks.append(chunk)
    finally:
        os.close(rfd)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return TouchOutcome(os.WTERMSIG(status), None)
    return TouchOutcome(None, os.WEXITSTATUS(status), b"".join(chunks))
