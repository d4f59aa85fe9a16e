"""The loaded libbpf.so.1 (>= 1.4) with prototypes, its log, and errors as OSError."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as errno_mod
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Any, Protocol, TypeAlias

from .structs import (
    IterAttachOpts,
    LinkCreateOpts,
    LinkUpdateOpts,
    MapCreateOpts,
    ProgAttachOpts,
    ProgDetachOpts,
    ProgQueryOpts,
    TcHookOpts,
    TcOpts,
    TcxOpts,
    TestRunOpts,
    _size_t,
    _u32,
    _u64,
)
from .uapi import AttachFlags, AttachType

log = logging.getLogger("kmatrix.libbpf")

MIN_VERSION = (1, 4)


class PrintLevel(IntEnum):
    """enum libbpf_print_level"""

    WARN = 0
    INFO = 1
    DEBUG = 2



_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)

_P = ctypes.c_void_p
_I = ctypes.c_int
_S = ctypes.c_char_p

#: name -> (restype, argtypes); `None` restype means void
_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "libbpf_major_version": (_u32, []),
    "libbpf_minor_version": (_u32, []),
    "libbpf_version_string": (_S, []),
    "libbpf_set_print": (_P, [_PRINT_FN]),
    "libbpf_num_possible_cpus": (_I, []),
    "libbpf_strerror": (_I, [_I, _S, _size_t]),
    "bpf_object__open_file": (_P, [_S, _P]),
    "bpf_object__load": (_I, [_P]),
    "bpf_object__close": (None, [_P]),
    "bpf_object__name": (_S, [_P]),
    "bpf_object__find_program_by_name": (_P, [_P, _S]),
    "bpf_object__find_map_by_name": (_P, [_P, _S]),
    "bpf_object__next_program": (_P, [_P, _P]),
    "bpf_object__next_map": (_P, [_P, _P]),
    "bpf_program__name": (_S, [_P]),
    "bpf_program__section_name": (_S, [_P]),
    "bpf_program__fd": (_I, [_P]),
    "bpf_program__autoload": (ctypes.c_bool, [_P]),
    "bpf_program__set_autoload": (_I, [_P, ctypes.c_bool]),
    "bpf_program__type": (_I, [_P]),
    "bpf_program__set_type": (_I, [_P, _I]),
    "bpf_program__expected_attach_type": (_I, [_P]),
    "bpf_program__set_expected_attach_type": (_I, [_P, _I]),
    "bpf_program__set_log_level": (_I, [_P, _u32]),
    "bpf_program__attach_tcx": (_P, [_P, _I, ctypes.POINTER(TcxOpts)]),
    "bpf_program__attach_netkit": (_P, [_P, _I, ctypes.POINTER(TcxOpts)]),
    "bpf_program__attach_iter": (_P, [_P, ctypes.POINTER(IterAttachOpts)]),
    "bpf_program__attach": (_P, [_P]),
    "bpf_map__name": (_S, [_P]),
    "bpf_map__fd": (_I, [_P]),
    "bpf_map__type": (_I, [_P]),
    "bpf_map__key_size": (_u32, [_P]),
    "bpf_map__value_size": (_u32, [_P]),
    "bpf_map__max_entries": (_u32, [_P]),
    "bpf_map__set_max_entries": (_I, [_P, _u32]),
    "bpf_map__set_autocreate": (_I, [_P, ctypes.c_bool]),
    "bpf_map__initial_value": (_P, [_P, ctypes.POINTER(_size_t)]),
    "bpf_map__set_initial_value": (_I, [_P, _P, _size_t]),
    "bpf_link__fd": (_I, [_P]),
    "bpf_link__destroy": (_I, [_P]),
    "bpf_link__detach": (_I, [_P]),
    "bpf_link__update_program": (_I, [_P, _P]),
    "bpf_link_create": (_I, [_I, _I, _I, ctypes.POINTER(LinkCreateOpts)]),
    "bpf_link_update": (_I, [_I, _I, ctypes.POINTER(LinkUpdateOpts)]),
    "bpf_link_detach": (_I, [_I]),
    "bpf_iter_create": (_I, [_I]),
    "bpf_prog_attach": (_I, [_I, _I, _I, ctypes.c_uint]),
    "bpf_prog_detach2": (_I, [_I, _I, _I]),
    "bpf_prog_attach_opts": (_I, [_I, _I, _I, ctypes.POINTER(ProgAttachOpts)]),
    "bpf_prog_detach_opts": (_I, [_I, _I, _I, ctypes.POINTER(ProgDetachOpts)]),
    "bpf_prog_query_opts": (_I, [_I, _I, ctypes.POINTER(ProgQueryOpts)]),
    "bpf_obj_get_info_by_fd": (_I, [_I, _P, ctypes.POINTER(_u32)]),
    "bpf_prog_get_fd_by_id": (_I, [_u32]),
    "bpf_map_get_fd_by_id": (_I, [_u32]),
    "bpf_link_get_fd_by_id": (_I, [_u32]),
    "bpf_prog_get_next_id": (_I, [_u32, ctypes.POINTER(_u32)]),
    "bpf_map_get_next_id": (_I, [_u32, ctypes.POINTER(_u32)]),
    "bpf_obj_pin": (_I, [_I, _S]),
    "bpf_obj_get": (_I, [_S]),
    "bpf_link_get_next_id": (_I, [_u32, ctypes.POINTER(_u32)]),
    "bpf_map_create": (_I, [_I, _S, _u32, _u32, _u32, ctypes.POINTER(MapCreateOpts)]),
    "bpf_map_update_elem": (_I, [_I, _P, _P, _u64]),
    "bpf_map_lookup_elem": (_I, [_I, _P, _P]),
    "bpf_map_delete_elem": (_I, [_I, _P]),
    "bpf_map_get_next_key": (_I, [_I, _P, _P]),
    "bpf_prog_test_run_opts": (_I, [_I, ctypes.POINTER(TestRunOpts)]),
    "bpf_tc_hook_create": (_I, [ctypes.POINTER(TcHookOpts)]),
    "bpf_tc_hook_destroy": (_I, [ctypes.POINTER(TcHookOpts)]),
    "bpf_tc_attach": (_I, [ctypes.POINTER(TcHookOpts), ctypes.POINTER(TcOpts)]),
    "bpf_tc_detach": (_I, [ctypes.POINTER(TcHookOpts), ctypes.POINTER(TcOpts)]),
    "bpf_tc_query": (_I, [ctypes.POINTER(TcHookOpts), ctypes.POINTER(TcOpts)]),
}

#: present only in newer libbpf; callers check `has(name)` and degrade
_OPTIONAL: dict[str, tuple[Any, list[Any]]] = {
    "bpf_program__attach_sockmap": (_P, [_P, _I]),  # libbpf >= 1.5
}


class LibbpfVersionError(RuntimeError):
    """The system libbpf is missing or older than MIN_VERSION."""


class _Lib:
    """The loaded libbpf.so.1 with prototypes applied; one per process."""

    def __init__(self) -> None:
        name = "libbpf.so.1"
        try:
            self.cdll = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            raise LibbpfVersionError(
                f"cannot load {name}: {exc}; install libbpf1 >= 1.4 (bookworm-backports)"
            ) from exc
        for fname, (restype, argtypes) in _PROTOTYPES.items():
            fn = getattr(self.cdll, fname)
            fn.restype = restype
            fn.argtypes = argtypes
        self.optional: set[str] = set()
        for fname, (restype, argtypes) in _OPTIONAL.items():
            if hasattr(self.cdll, fname):
                fn = getattr(self.cdll, fname)
                fn.restype = restype
                fn.argtypes = argtypes
                self.optional.add(fname)
        self.version = (int(self.cdll.libbpf_major_version()),
                        int(self.cdll.libbpf_minor_version()))
        self.version_string = (self.cdll.libbpf_version_string() or b"?").decode()
        if self.version < MIN_VERSION:
            raise LibbpfVersionError(
                f"system libbpf is {self.version_string}; kmatrix needs >= "
                f"v{MIN_VERSION[0]}.{MIN_VERSION[1]} (tcx, netkit, arena): install libbpf1 "
                "from bookworm-backports (scripts/bootstrap does)"
            )
        self._print_cb = _PRINT_FN(_print_callback)  # keep a reference: libbpf holds it
        self.cdll.libbpf_set_print(self._print_cb)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cdll, name)


_lib_lock = threading.Lock()
_lib_instance: _Lib | None = None


def lib() -> _Lib:
    """The process-wide libbpf handle (loaded on first use; LibbpfVersionError if unusable)."""
    global _lib_instance
    with _lib_lock:
        if _lib_instance is None:
            _lib_instance = _Lib()
        return _lib_instance


def version() -> tuple[int, int]:
    """(major, minor) of the loaded libbpf."""
    return lib().version


def has(symbol: str) -> bool:
    """Whether the loaded libbpf exports an optional symbol (e.g. bpf_program__attach_sockmap)."""
    return symbol in lib().optional or symbol in _PROTOTYPES


# --------------------------------------------------------------------------- libbpf log

# no use_errno here: the print callback runs inside libbpf calls and must not disturb
# the errno ctypes saves for them
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
_libc.vsnprintf.restype = ctypes.c_int
_libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
_LOG_BUF_SIZE = 1 << 20
_tls = threading.local()


def _captures() -> list[tuple[int, list[str]]]:
    """This thread's open `capture_log` blocks: (least important level kept, lines)."""
    stack: list[tuple[int, list[str]]] | None = getattr(_tls, "captures", None)
    if stack is None:
        stack = []
        _tls.captures = stack
    return stack


def _print_callback(level: int, fmt: bytes | None, args: int | None) -> int:
    """libbpf_print_fn_t: format with vsnprintf (va_list passed through) and collect.

    libbpf calls it for every message, debug ones included (84-395 per object load): those
    nobody keeps are not formatted at all. The calls themselves are cheap: a tcx_chain load
    (219 messages) took 30 ms under TCG with this callback and without any."""
    if fmt is None:
        return 0
    captures = _captures()
    keep = [lines for min_level, lines in captures if level <= min_level]
    to_log = level <= PrintLevel.WARN and log.isEnabledFor(logging.DEBUG)
    if not keep and not to_log:
        return 0
    buf: ctypes.Array[ctypes.c_char] | None = getattr(_tls, "logbuf", None)
    if buf is None:
        buf = ctypes.create_string_buffer(_LOG_BUF_SIZE)
        _tls.logbuf = buf
    n = _libc.vsnprintf(buf, _LOG_BUF_SIZE, fmt, args)
    text = ctypes.string_at(buf, max(0, min(n, _LOG_BUF_SIZE - 1))).decode(errors="replace")
    for lines in keep:
        lines.append(text)
    if to_log:
        log.debug("libbpf: %s", text.rstrip())
    return int(n)


@contextmanager
def capture_log(min_level: PrintLevel = PrintLevel.INFO) -> Iterator[list[str]]:
    """Collect libbpf's messages (at `min_level` or more important) printed in this block."""
    lines: list[str] = []
    lib()
    entry = (int(min_level), lines)
    _captures().append(entry)
    try:
        yield lines
    finally:
        _captures().remove(entry)


# --------------------------------------------------------------------------- errors


def oserror(err: int, what: str, detail: str = "") -> OSError:
    name = errno_name(err)
    message = f"{what}: {name} ({os.strerror(err)})"
    if detail:
        message += "\n" + detail.rstrip()
    return OSError(err, message)


def check(ret: int, what: str) -> int:
    """libbpf int API: negative errno on failure (libbpf 1.x) -> OSError."""
    if ret < 0:
        raise oserror(-ret, what)
    return ret


def check_ptr(ptr: int | None, what: str, detail: str = "") -> int:
    """libbpf pointer API: NULL + errno on failure -> OSError."""
    if not ptr:
        err = ctypes.get_errno() or errno_mod.EINVAL
        raise oserror(err, what, detail)
    return ptr


def errno_name(err: int) -> str:
    """'EINVAL' for 22 (kernel spelling: EOPNOTSUPP for 95); the number when unknown."""
    if err == errno_mod.EOPNOTSUPP:
        return "EOPNOTSUPP"
    return errno_mod.errorcode.get(err, str(err))


# --------------------------------------------------------------------------- buffers

Buffer: TypeAlias = "bytes | bytearray | memoryview | ctypes._CData | int"


def to_buffer(value: Buffer, size: int, what: str) -> ctypes.Array[ctypes.c_char]:
    """A C buffer of exactly `size` bytes from bytes, a ctypes object or an int (LE)."""
    if isinstance(value, int):
        raw = value.to_bytes(size, "little", signed=value < 0)
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
    else:
        raw = bytes(memoryview(value))
    if len(raw) != size:
        raise ValueError(f"{what}: {len(raw)} bytes given, map wants {size}")
    return ctypes.create_string_buffer(raw, size)


# --------------------------------------------------------------------------- naming


def enum_name(enum: type[IntEnum], value: int) -> str:
    try:
        return enum(value).name
    except ValueError:
        return str(value)


def attach_name(attach_type: int) -> str:
    return "BPF_" + enum_name(AttachType, attach_type)


def flags_str(flags: int) -> str:
    if not flags:
        return "0"
    names = [f"BPF_F_{f.name}" for f in AttachFlags if f & flags and f.name]
    rest = flags & ~sum(AttachFlags)
    if rest:
        names.append(hex(rest))
    return "|".join(names)


class HasFd(Protocol):
    """A program, map or link: anything with a file descriptor."""

    @property
    def fd(self) -> int: ...


def fd_of(obj: HasFd | int) -> int:
    return obj if isinstance(obj, int) else obj.fd
