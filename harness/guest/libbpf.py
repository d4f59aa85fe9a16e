"""A thin, typed ctypes layer over the system libbpf (libbpf.so.1, version >= 1.4).

Everything goes through libbpf's own API: objects are opened and loaded by libbpf (no ELF
parsing here), attachments use libbpf's attach helpers or its low-level syscall wrappers.
Kernel and libbpf failures come back as `OSError` whose ``errno`` is the kernel's (or
libbpf's) error code; a failed load carries libbpf's log, verifier log included.

Main types (all context managers that release what they own):

- `BpfObject(path, ...)`   an opened (and by default loaded) ``.bpf.o``
- `Program`                a program of an object: fd/id/info, attach_tcx/attach_netkit/
                           attach_iter/attach_sockmap, test_run
- `Map`                    a map of an object or created with `create_map`: fd, lookup/
                           update/delete/keys/items, per-CPU lookup, mmap
- `Link`                   a BPF link (from libbpf attach helpers or `link_create`): fd, id,
                           info, update, detach, iterator reading
- `TcHook`                 classic tc (clsact + cls_bpf) through bpf_tc_* for coexistence

Low-level wrappers: `link_create`, `link_update`, `link_detach`, `prog_attach`,
`prog_attach_opts`, `prog_detach`, `prog_detach_opts`, `prog_query`, `create_map`,
`prog_get_fd_by_id`, `link_get_fd_by_id`, `map_get_fd_by_id`, `prog_info`, `map_info`,
`link_info`, `iter_create`, `read_iter`.

Constants (`AttachType`, `ProgType`, `MapType`, `LinkType`, `AttachFlags`, `TcxAction`, ...)
mirror the kernel UAPI; tests/test_bpfobj.py checks their values against <linux/bpf.h> and
the newest vmlinux.h.

Network-namespace note: calls taking an ifindex act in the *calling thread's* network
namespace (see harness.guest.fixtures.run_in_netns).
"""

from __future__ import annotations

import builtins
import ctypes
import ctypes.util
import errno as errno_mod
import logging
import mmap
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeAlias

log = logging.getLogger("kmatrix.libbpf")

MIN_VERSION = (1, 4)

# --------------------------------------------------------------------------- UAPI constants


class ProgType(IntEnum):
    """enum bpf_prog_type"""

    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    LWT_IN = 10
    LWT_OUT = 11
    LWT_XMIT = 12
    SOCK_OPS = 13
    SK_SKB = 14
    CGROUP_DEVICE = 15
    SK_MSG = 16
    RAW_TRACEPOINT = 17
    CGROUP_SOCK_ADDR = 18
    LWT_SEG6LOCAL = 19
    LIRC_MODE2 = 20
    SK_REUSEPORT = 21
    FLOW_DISSECTOR = 22
    CGROUP_SYSCTL = 23
    RAW_TRACEPOINT_WRITABLE = 24
    CGROUP_SOCKOPT = 25
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SK_LOOKUP = 30
    SYSCALL = 31
    NETFILTER = 32


class MapType(IntEnum):
    """enum bpf_map_type"""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30
    USER_RINGBUF = 31
    CGRP_STORAGE = 32
    ARENA = 33


PERCPU_MAP_TYPES = frozenset(
    {MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
     MapType.PERCPU_CGROUP_STORAGE}
)


class AttachType(IntEnum):
    """enum bpf_attach_type"""

    CGROUP_INET_INGRESS = 0
    CGROUP_INET_EGRESS = 1
    CGROUP_INET_SOCK_CREATE = 2
    CGROUP_SOCK_OPS = 3
    SK_SKB_STREAM_PARSER = 4
    SK_SKB_STREAM_VERDICT = 5
    CGROUP_DEVICE = 6
    SK_MSG_VERDICT = 7
    CGROUP_INET4_BIND = 8
    CGROUP_INET6_BIND = 9
    CGROUP_INET4_CONNECT = 10
    CGROUP_INET6_CONNECT = 11
    CGROUP_INET4_POST_BIND = 12
    CGROUP_INET6_POST_BIND = 13
    CGROUP_UDP4_SENDMSG = 14
    CGROUP_UDP6_SENDMSG = 15
    LIRC_MODE2 = 16
    FLOW_DISSECTOR = 17
    CGROUP_SYSCTL = 18
    CGROUP_UDP4_RECVMSG = 19
    CGROUP_UDP6_RECVMSG = 20
    CGROUP_GETSOCKOPT = 21
    CGROUP_SETSOCKOPT = 22
    TRACE_RAW_TP = 23
    TRACE_FENTRY = 24
    TRACE_FEXIT = 25
    MODIFY_RETURN = 26
    LSM_MAC = 27
    TRACE_ITER = 28
    CGROUP_INET4_GETPEERNAME = 29
    CGROUP_INET6_GETPEERNAME = 30
    CGROUP_INET4_GETSOCKNAME = 31
    CGROUP_INET6_GETSOCKNAME = 32
    XDP_DEVMAP = 33
    CGROUP_INET_SOCK_RELEASE = 34
    XDP_CPUMAP = 35
    SK_LOOKUP = 36
    XDP = 37
    SK_SKB_VERDICT = 38
    SK_REUSEPORT_SELECT = 39
    SK_REUSEPORT_SELECT_OR_MIGRATE = 40
    PERF_EVENT = 41
    TRACE_KPROBE_MULTI = 42
    LSM_CGROUP = 43
    STRUCT_OPS = 44
    NETFILTER = 45
    TCX_INGRESS = 46
    TCX_EGRESS = 47
    TRACE_UPROBE_MULTI = 48
    CGROUP_UNIX_CONNECT = 49
    CGROUP_UNIX_SENDMSG = 50
    CGROUP_UNIX_RECVMSG = 51
    CGROUP_UNIX_GETPEERNAME = 52
    CGROUP_UNIX_GETSOCKNAME = 53
    NETKIT_PRIMARY = 54
    NETKIT_PEER = 55
    TRACE_KPROBE_SESSION = 56


class LinkType(IntEnum):
    """enum bpf_link_type"""

    UNSPEC = 0
    RAW_TRACEPOINT = 1
    TRACING = 2
    CGROUP = 3
    ITER = 4
    NETNS = 5
    XDP = 6
    PERF_EVENT = 7
    KPROBE_MULTI = 8
    STRUCT_OPS = 9
    NETFILTER = 10
    TCX = 11
    UPROBE_MULTI = 12
    NETKIT = 13
    SOCKMAP = 14


class AttachFlags(IntFlag):
    """BPF_F_* flags of BPF_PROG_ATTACH / BPF_PROG_DETACH / BPF_LINK_CREATE (mprog)."""

    ALLOW_OVERRIDE = 1 << 0
    ALLOW_MULTI = 1 << 1
    REPLACE = 1 << 2
    BEFORE = 1 << 3
    AFTER = 1 << 4
    ID = 1 << 5
    LINK = 1 << 13


class TcxAction(IntEnum):
    """enum tcx_action_base: return codes of TCX (and netkit) programs."""

    NEXT = -1
    PASS = 0
    DROP = 2
    REDIRECT = 7


class NetkitAction(IntEnum):
    """enum netkit_action"""

    NEXT = -1
    PASS = 0
    DROP = 2
    REDIRECT = 7


class TcAttachPoint(IntFlag):
    """enum bpf_tc_attach_point (libbpf's classic tc API)"""

    INGRESS = 1 << 0
    EGRESS = 1 << 1
    CUSTOM = 1 << 2


class UpdateFlags(IntEnum):
    """BPF_MAP_UPDATE_ELEM flags"""

    ANY = 0
    NOEXIST = 1
    EXIST = 2
    F_LOCK = 4


class PrintLevel(IntEnum):
    """enum libbpf_print_level"""

    WARN = 0
    INFO = 1
    DEBUG = 2


# map_flags
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_MMAPABLE = 1 << 10

# short aliases in the kernel's spelling, for code that reads like the selftests
BPF_TCX_INGRESS = AttachType.TCX_INGRESS
BPF_TCX_EGRESS = AttachType.TCX_EGRESS
BPF_NETKIT_PRIMARY = AttachType.NETKIT_PRIMARY
BPF_NETKIT_PEER = AttachType.NETKIT_PEER
BPF_TRACE_ITER = AttachType.TRACE_ITER
BPF_SK_MSG_VERDICT = AttachType.SK_MSG_VERDICT
BPF_SK_SKB_STREAM_PARSER = AttachType.SK_SKB_STREAM_PARSER
BPF_SK_SKB_STREAM_VERDICT = AttachType.SK_SKB_STREAM_VERDICT
BPF_SK_SKB_VERDICT = AttachType.SK_SKB_VERDICT
BPF_F_REPLACE = AttachFlags.REPLACE
BPF_F_BEFORE = AttachFlags.BEFORE
BPF_F_AFTER = AttachFlags.AFTER
BPF_F_ID = AttachFlags.ID
BPF_F_LINK = AttachFlags.LINK
TCX_NEXT = TcxAction.NEXT
TCX_PASS = TcxAction.PASS
TCX_DROP = TcxAction.DROP
TCX_REDIRECT = TcxAction.REDIRECT

#: most programs one mprog attach point (tcx, netkit) holds: bpf_mprog_max()
MPROG_MAX = 64 - 1

# --------------------------------------------------------------------------- ctypes structs

_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64
_size_t = ctypes.c_size_t


class _Opts(ctypes.Structure):
    """libbpf *_opts struct: `sz` must hold sizeof(struct) (forward/backward compat)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sz = ctypes.sizeof(self)


class TcxOpts(_Opts):
    """struct bpf_tcx_opts / struct bpf_netkit_opts (same layout)"""

    _fields_ = [("sz", _size_t), ("flags", _u32), ("relative_fd", _u32),
                ("relative_id", _u32), ("expected_revision", _u64)]


NetkitOpts = TcxOpts


class ProgAttachOpts(_Opts):
    """struct bpf_prog_attach_opts (replace_fd is a union with replace_prog_fd)"""

    _fields_ = [("sz", _size_t), ("flags", _u32), ("replace_fd", ctypes.c_int),
                ("relative_fd", ctypes.c_int), ("relative_id", _u32),
                ("expected_revision", _u64)]


class ProgDetachOpts(_Opts):
    """struct bpf_prog_detach_opts"""

    _fields_ = [("sz", _size_t), ("flags", _u32), ("relative_fd", ctypes.c_int),
                ("relative_id", _u32), ("expected_revision", _u64)]


class ProgQueryOpts(_Opts):
    """struct bpf_prog_query_opts (count is a union with prog_cnt)"""

    _fields_ = [("sz", _size_t), ("query_flags", _u32), ("attach_flags", _u32),
                ("prog_ids", ctypes.POINTER(_u32)), ("count", _u32),
                ("prog_attach_flags", ctypes.POINTER(_u32)),
                ("link_ids", ctypes.POINTER(_u32)),
                ("link_attach_flags", ctypes.POINTER(_u32)), ("revision", _u64)]


class _LinkCreateTcx(ctypes.Structure):
    _fields_ = [("relative_fd", _u32), ("relative_id", _u32), ("expected_revision", _u64)]


class _LinkCreateUprobeMulti(ctypes.Structure):
    # the union's largest member; only here so the union has libbpf's size
    _fields_ = [("flags", _u32), ("cnt", _u32), ("path", ctypes.c_void_p),
                ("offsets", ctypes.c_void_p), ("ref_ctr_offsets", ctypes.c_void_p),
                ("cookies", ctypes.c_void_p), ("pid", _u32)]


class _LinkCreateUnion(ctypes.Union):
    _fields_ = [("uprobe_multi", _LinkCreateUprobeMulti), ("tcx", _LinkCreateTcx),
                ("netkit", _LinkCreateTcx), ("bpf_cookie", _u64)]


class LinkCreateOpts(_Opts):
    """struct bpf_link_create_opts (the tcx/netkit/perf_event parts of its union)"""

    _anonymous_ = ("u",)
    _fields_ = [("sz", _size_t), ("flags", _u32), ("iter_info", ctypes.c_void_p),
                ("iter_info_len", _u32), ("target_btf_id", _u32), ("u", _LinkCreateUnion)]


class LinkUpdateOpts(_Opts):
    """struct bpf_link_update_opts"""

    _fields_ = [("sz", _size_t), ("flags", _u32), ("old_prog_fd", _u32),
                ("old_map_fd", _u32)]


class MapCreateOpts(_Opts):
    """struct bpf_map_create_opts"""

    _fields_ = [("sz", _size_t), ("btf_fd", _u32), ("btf_key_type_id", _u32),
                ("btf_value_type_id", _u32), ("btf_vmlinux_value_type_id", _u32),
                ("inner_map_fd", _u32), ("map_flags", _u32), ("map_extra", _u64),
                ("numa_node", _u32), ("map_ifindex", _u32),
                ("value_type_btf_obj_fd", ctypes.c_int32), ("token_fd", _u32)]


class IterAttachOpts(_Opts):
    """struct bpf_iter_attach_opts"""

    _fields_ = [("sz", _size_t), ("link_info", ctypes.c_void_p), ("link_info_len", _u32)]


class TestRunOpts(_Opts):
    """struct bpf_test_run_opts"""

    __test__ = False  # not a pytest class
    _fields_ = [("sz", _size_t), ("data_in", ctypes.c_void_p), ("data_out", ctypes.c_void_p),
                ("data_size_in", _u32), ("data_size_out", _u32),
                ("ctx_in", ctypes.c_void_p), ("ctx_out", ctypes.c_void_p),
                ("ctx_size_in", _u32), ("ctx_size_out", _u32), ("retval", _u32),
                ("repeat", ctypes.c_int), ("duration", _u32), ("flags", _u32),
                ("cpu", _u32), ("batch_size", _u32)]


class TcHookOpts(_Opts):
    """struct bpf_tc_hook"""

    _fields_ = [("sz", _size_t), ("ifindex", ctypes.c_int), ("attach_point", ctypes.c_int),
                ("parent", _u32)]


class TcOpts(_Opts):
    """struct bpf_tc_opts"""

    _fields_ = [("sz", _size_t), ("prog_fd", ctypes.c_int), ("flags", _u32),
                ("prog_id", _u32), ("handle", _u32), ("priority", _u32)]


class BpfProgInfo(ctypes.Structure):
    """struct bpf_prog_info, up to the fields used here (the kernel copies a prefix)."""

    _fields_ = [("type", _u32), ("id", _u32), ("tag", ctypes.c_uint8 * 8),
                ("jited_prog_len", _u32), ("xlated_prog_len", _u32),
                ("jited_prog_insns", _u64), ("xlated_prog_insns", _u64),
                ("load_time", _u64), ("created_by_uid", _u32), ("nr_map_ids", _u32),
                ("map_ids", _u64), ("name", ctypes.c_char * 16), ("ifindex", _u32)]


class BpfMapInfo(ctypes.Structure):
    """struct bpf_map_info"""

    _fields_ = [("type", _u32), ("id", _u32), ("key_size", _u32), ("value_size", _u32),
                ("max_entries", _u32), ("map_flags", _u32), ("name", ctypes.c_char * 16),
                ("ifindex", _u32), ("btf_vmlinux_value_type_id", _u32),
                ("netns_dev", _u64), ("netns_ino", _u64), ("btf_id", _u32),
                ("btf_key_type_id", _u32), ("btf_value_type_id", _u32),
                ("btf_vmlinux_id", _u32), ("map_extra", _u64)]


class _LinkInfoIfindex(ctypes.Structure):
    # tcx, netkit: { __u32 ifindex; __u32 attach_type; }
    _fields_ = [("ifindex", _u32), ("attach_type", _u32)]


class _LinkInfoUnion(ctypes.Union):
    _fields_ = [("tcx", _LinkInfoIfindex), ("netkit", _LinkInfoIfindex),
                ("raw", ctypes.c_uint8 * 120), ("_align", _u64)]


class BpfLinkInfo(ctypes.Structure):
    """struct bpf_link_info: common header + the union (decoded for tcx/netkit)"""

    _anonymous_ = ("u",)
    _fields_ = [("type", _u32), ("id", _u32), ("prog_id", _u32), ("u", _LinkInfoUnion)]


# --------------------------------------------------------------------------- the library

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


def _captures() -> list[list[tuple[int, str]]]:
    stack: list[list[tuple[int, str]]] | None = getattr(_tls, "captures", None)
    if stack is None:
        stack = []
        _tls.captures = stack
    return stack


def _print_callback(level: int, fmt: bytes | None, args: int | None) -> int:
    """libbpf_print_fn_t: format with vsnprintf (va_list passed through) and collect."""
    if fmt is None:
        return 0
    buf: ctypes.Array[ctypes.c_char] | None = getattr(_tls, "logbuf", None)
    if buf is None:
        buf = ctypes.create_string_buffer(_LOG_BUF_SIZE)
        _tls.logbuf = buf
    n = _libc.vsnprintf(buf, _LOG_BUF_SIZE, fmt, args)
    text = buf.raw[: max(0, min(n, _LOG_BUF_SIZE - 1))].decode(errors="replace")
    for capture in _captures():
        capture.append((level, text))
    if level <= PrintLevel.WARN:
        log.debug("libbpf: %s", text.rstrip())
    return int(n)


@contextmanager
def capture_log(min_level: PrintLevel = PrintLevel.INFO) -> Iterator[list[str]]:
    """Collect libbpf's messages (at `min_level` or more important) printed in this block."""
    lines: list[tuple[int, str]] = []
    out: list[str] = []
    lib()
    _captures().append(lines)
    try:
        yield out
    finally:
        _captures().remove(lines)
        out.extend(text for level, text in lines if level <= min_level)


# --------------------------------------------------------------------------- errors


def _oserror(err: int, what: str, detail: str = "") -> OSError:
    name = errno_name(err)
    message = f"{what}: {name} ({os.strerror(err)})"
    if detail:
        message += "\n" + detail.rstrip()
    return OSError(err, message)


def _check(ret: int, what: str) -> int:
    """libbpf int API: negative errno on failure (libbpf 1.x) -> OSError."""
    if ret < 0:
        raise _oserror(-ret, what)
    return ret


def _check_ptr(ptr: int | None, what: str, detail: str = "") -> int:
    """libbpf pointer API: NULL + errno on failure -> OSError."""
    if not ptr:
        err = ctypes.get_errno() or errno_mod.EINVAL
        raise _oserror(err, what, detail)
    return ptr


def errno_name(err: int) -> str:
    """'EINVAL' for 22 (kernel spelling: EOPNOTSUPP for 95); the number when unknown."""
    if err == errno_mod.EOPNOTSUPP:
        return "EOPNOTSUPP"
    return errno_mod.errorcode.get(err, str(err))


# --------------------------------------------------------------------------- buffers

Buffer: TypeAlias = "bytes | bytearray | memoryview | ctypes._CData | int"


def _to_buffer(value: Buffer, size: int, what: str) -> ctypes.Array[ctypes.c_char]:
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


# --------------------------------------------------------------------------- info


@dataclass(frozen=True)
class ProgInfo:
    id: int
    type: int
    name: str
    tag: bytes


@dataclass(frozen=True)
class MapInfo:
    id: int
    type: int
    name: str
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int
    map_extra: int


@dataclass(frozen=True)
class LinkInfo:
    """bpf_link_info; `ifindex`/`attach_type` are decoded for TCX and netkit links
    (ifindex 0 once the device is gone: the link is defunct)."""

    id: int
    type: int
    prog_id: int
    ifindex: int | None = None
    attach_type: int | None = None
    raw: bytes = field(default=b"", repr=False)


def prog_info(fd: int) -> ProgInfo:
    info = BpfProgInfo()
    n = _u32(ctypes.sizeof(info))
    _check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(n)),
           f"bpf_obj_get_info_by_fd(prog fd {fd})")
    return ProgInfo(info.id, info.type, info.name.decode(errors="replace"), bytes(info.tag))


def map_info(fd: int) -> MapInfo:
    info = BpfMapInfo()
    n = _u32(ctypes.sizeof(info))
    _check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(n)),
           f"bpf_obj_get_info_by_fd(map fd {fd})")
    return MapInfo(info.id, info.type, info.name.decode(errors="replace"), info.key_size,
                   info.value_size, info.max_entries, info.map_flags, info.map_extra)


def link_info(fd: int) -> LinkInfo:
    info = BpfLinkInfo()
    n = _u32(ctypes.sizeof(info))
    _check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(n)),
           f"bpf_link_get_info_by_fd(link fd {fd})")
    ifindex = attach_type = None
    if info.type in (LinkType.TCX, LinkType.NETKIT):
        ifindex, attach_type = info.tcx.ifindex, info.tcx.attach_type
    return LinkInfo(info.id, info.type, info.prog_id, ifindex, attach_type, bytes(info.raw))


def _fd_by_id(fn: str, obj_id: int) -> int:
    return _check(getattr(lib(), fn)(obj_id), f"{fn}({obj_id})")


def prog_get_fd_by_id(prog_id: int) -> int:
    """A new fd for program `prog_id` (caller closes it)."""
    return _fd_by_id("bpf_prog_get_fd_by_id", prog_id)


def map_get_fd_by_id(map_id: int) -> int:
    return _fd_by_id("bpf_map_get_fd_by_id", map_id)


def link_get_fd_by_id(link_id: int) -> int:
    return _fd_by_id("bpf_link_get_fd_by_id", link_id)


def prog_ids() -> list[int]:
    """Ids of every program loaded in the kernel now."""
    ids: list[int] = []
    cur = _u32(0)
    nxt = _u32(0)
    while lib().bpf_prog_get_next_id(cur, ctypes.byref(nxt)) == 0:
        ids.append(nxt.value)
        cur = _u32(nxt.value)
    return ids


# --------------------------------------------------------------------------- links


class Link:
    """A BPF link. Closing it drops this process's reference (the kernel detaches the link
    when the last reference goes); `detach()` detaches it while the fd stays valid."""

    def __init__(self, *, ptr: int | None = None, fd: int | None = None,
                 what: str = "link") -> None:
        if (ptr is None) == (fd is None):
            raise ValueError("Link needs exactly one of ptr (struct bpf_link *) or fd")
        self._ptr = ptr
        self._fd = fd
        self.what = what

    @property
    def fd(self) -> int:
        if self._ptr is not None:
            return int(lib().bpf_link__fd(self._ptr))
        if self._fd is None:
            raise ValueError(f"{self.what}: closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._ptr is None and self._fd is None

    def info(self) -> LinkInfo:
        return link_info(self.fd)

    @property
    def id(self) -> int:
        return self.info().id

    def update(self, prog: Program | int, *, old_prog: Program | int | None = None,
               flags: int | None = None) -> None:
        """BPF_LINK_UPDATE: swap the link's program. With `old_prog` the kernel checks it
        is the current one (BPF_F_REPLACE is implied unless `flags` is given)."""
        link_update(self.fd, prog, old_prog=old_prog, flags=flags)

    def detach(self) -> None:
        """BPF_LINK_DETACH: detach from the hook; the link object stays (defunct)."""
        link_detach(self.fd)

    def read_iter(self) -> str:
        """For iterator links: create an iterator fd and read it to the end as text."""
        return read_iter(self.fd)

    def close(self) -> None:
        if self._ptr is not None:
            lib().bpf_link__destroy(self._ptr)
            self._ptr = None
        elif self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:  # last resort; code should use close()/with
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<Link {self.what} fd={'closed' if self.closed else self.fd}>"


def _fd_of(obj: Program | Map | Link | int) -> int:
    return obj if isinstance(obj, int) else obj.fd


def link_create(prog: Program | int, target: int, attach_type: int, *, flags: int = 0,
                relative_fd: int = 0, relative_id: int = 0, expected_revision: int = 0,
                iter_info: bytes | None = None, target_btf_id: int = 0) -> Link:
    """BPF_LINK_CREATE through libbpf's bpf_link_create().

    `target` is an ifindex (tcx, netkit, xdp), a map fd (sockmap) or a cgroup fd. For tcx
    and netkit, `relative_fd`/`relative_id`/`expected_revision` go to the mprog fields;
    libbpf adds BPF_F_ID when `relative_id` is given.
    """
    opts = LinkCreateOpts(flags=flags, target_btf_id=target_btf_id)
    keep: Any = None
    if iter_info is not None:
        keep = ctypes.create_string_buffer(iter_info, len(iter_info))
        opts.iter_info = ctypes.cast(keep, ctypes.c_void_p)
        opts.iter_info_len = len(iter_info)
    if attach_type in (AttachType.TCX_INGRESS, AttachType.TCX_EGRESS):
        opts.tcx = _LinkCreateTcx(relative_fd, relative_id, expected_revision)
    elif attach_type in (AttachType.NETKIT_PRIMARY, AttachType.NETKIT_PEER):
        opts.netkit = _LinkCreateTcx(relative_fd, relative_id, expected_revision)
    elif relative_fd or relative_id or expected_revision:
        raise ValueError("relative_fd/relative_id/expected_revision only apply to tcx/netkit")
    what = (f"bpf_link_create({_attach_name(attach_type)}, target={target}, "
            f"flags={_flags_str(flags)})")
    fd = _check(lib().bpf_link_create(_fd_of(prog), target, attach_type, ctypes.byref(opts)),
                what)
    del keep
    return Link(fd=fd, what=what)


def link_update(link_fd: int, prog: Program | int, *, old_prog: Program | int | None = None,
                flags: int | None = None) -> None:
    """BPF_LINK_UPDATE (bpf_link_update): new program, optionally checking the old one."""
    if flags is None:
        flags = AttachFlags.REPLACE if old_prog is not None else 0
    opts = LinkUpdateOpts(flags=flags, old_prog_fd=_fd_of(old_prog) if old_prog else 0)
    _check(lib().bpf_link_update(link_fd, _fd_of(prog), ctypes.byref(opts)),
           f"bpf_link_update(link fd {link_fd}, flags={_flags_str(flags)})")


def link_detach(link_fd: int) -> None:
    """BPF_LINK_DETACH (bpf_link_detach)."""
    _check(lib().bpf_link_detach(link_fd), f"bpf_link_detach(link fd {link_fd})")


def iter_create(link_fd: int) -> int:
    """BPF_ITER_CREATE: a readable fd for an iterator link (caller closes it)."""
    return _check(lib().bpf_iter_create(link_fd), f"bpf_iter_create(link fd {link_fd})")


def read_iter(link_fd: int, *, chunk: int = 1 << 16) -> str:
    """Create an iterator from `link_fd`, read everything it prints, return it as text."""
    fd = iter_create(link_fd)
    parts: list[bytes] = []
    try:
        while True:
            data = os.read(fd, chunk)
            if not data:
                break
            parts.append(data)
    finally:
        os.close(fd)
    return b"".join(parts).decode(errors="replace")


# --------------------------------------------------------------------------- prog attach


def prog_attach(prog: Program | int, target: int, attach_type: int, flags: int = 0) -> None:
    """BPF_PROG_ATTACH (bpf_prog_attach): e.g. sk_msg/sk_skb programs to a sockmap fd."""
    _check(lib().bpf_prog_attach(_fd_of(prog), target, attach_type, flags),
           f"bpf_prog_attach({_attach_name(attach_type)}, target={target}, "
           f"flags={_flags_str(flags)})")


def prog_detach(prog: Program | int, target: int, attach_type: int) -> None:
    """BPF_PROG_DETACH of a specific program (bpf_prog_detach2)."""
    _check(lib().bpf_prog_detach2(_fd_of(prog), target, attach_type),
           f"bpf_prog_detach2({_attach_name(attach_type)}, target={target})")


def prog_attach_opts(prog: Program | int, target: int, attach_type: int, *, flags: int = 0,
                     replace: Program | int | None = None, relative_fd: int = 0,
                     relative_id: int = 0, expected_revision: int = 0) -> None:
    """BPF_PROG_ATTACH with mprog options (bpf_prog_attach_opts); for tcx, `target` is the
    ifindex. `replace` (a program or fd) fills replace_fd; pass BPF_F_REPLACE in `flags`."""
    opts = ProgAttachOpts(flags=flags, replace_fd=_fd_of(replace) if replace else 0,
                          relative_fd=relative_fd, relative_id=relative_id,
                          expected_revision=expected_revision)
    _check(lib().bpf_prog_attach_opts(_fd_of(prog), target, attach_type, ctypes.byref(opts)),
           f"bpf_prog_attach_opts({_attach_name(attach_type)}, target={target}, "
           f"flags={_flags_str(flags)})")


def prog_detach_opts(prog: Program | int, target: int, attach_type: int, *, flags: int = 0,
                     relative_fd: int = 0, relative_id: int = 0,
                     expected_revision: int = 0) -> None:
    """BPF_PROG_DETACH with mprog options (bpf_prog_detach_opts). `prog` may be 0 to
    detach by position (BPF_F_BEFORE/AFTER with a relative)."""
    opts = ProgDetachOpts(flags=flags, relative_fd=relative_fd, relative_id=relative_id,
                          expected_revision=expected_revision)
    _check(lib().bpf_prog_detach_opts(_fd_of(prog), target, attach_type, ctypes.byref(opts)),
           f"bpf_prog_detach_opts({_attach_name(attach_type)}, target={target}, "
           f"flags={_flags_str(flags)})")


@dataclass(frozen=True)
class QueryResult:
    """What BPF_PROG_QUERY returned: the attached programs in execution order."""

    count: int
    revision: int
    attach_flags: int
    prog_ids: list[int] = field(default_factory=list)
    link_ids: list[int] = field(default_factory=list)
    prog_attach_flags: list[int] = field(default_factory=list)
    link_attach_flags: list[int] = field(default_factory=list)


def prog_query(target: int, attach_type: int, *, query_flags: int = 0,
               max_count: int = MPROG_MAX + 1) -> QueryResult:
    """BPF_PROG_QUERY (bpf_prog_query_opts) with room for `max_count` entries.

    For tcx/netkit `target` is the ifindex; link_ids[i] is 0 where prog_ids[i] was attached
    without a link.
    """
    prog = (_u32 * max_count)()
    link = (_u32 * max_count)()
    pflags = (_u32 * max_count)()
    lflags = (_u32 * max_count)()
    opts = ProgQueryOpts(query_flags=query_flags, prog_ids=prog, count=max_count,
                         prog_attach_flags=pflags, link_ids=link, link_attach_flags=lflags)
    _check(lib().bpf_prog_query_opts(target, attach_type, ctypes.byref(opts)),
           f"bpf_prog_query_opts({_attach_name(attach_type)}, target={target})")
    n = min(opts.count, max_count)
    return QueryResult(opts.count, opts.revision, opts.attach_flags, list(prog[:n]),
                       list(link[:n]), list(pflags[:n]), list(lflags[:n]))


# --------------------------------------------------------------------------- programs


@dataclass(frozen=True)
class TestRunResult:
    """Outcome of BPF_PROG_TEST_RUN."""

    __test__ = False
    retval: int
    duration_ns: int
    data_out: bytes
    ctx_out: bytes


class Program:
    """A program of a `BpfObject` (valid while the object is open)."""

    def __init__(self, obj: BpfObject, ptr: int) -> None:
        self._obj = obj
        self._ptr = ptr

    @property
    def ptr(self) -> int:
        self._obj._require_open()
        return self._ptr

    @property
    def name(self) -> str:
        return (lib().bpf_program__name(self.ptr) or b"").decode()

    @property
    def section(self) -> str:
        return (lib().bpf_program__section_name(self.ptr) or b"").decode()

    @property
    def fd(self) -> int:
        fd = int(lib().bpf_program__fd(self.ptr))
        if fd < 0:
            raise _oserror(-fd if fd < -1 else errno_mod.EBADF,
                           f"program {self.name}: no fd (not loaded?)")
        return fd

    def info(self) -> ProgInfo:
        return prog_info(self.fd)

    @property
    def id(self) -> int:
        return self.info().id

    @property
    def type(self) -> int:
        return int(lib().bpf_program__type(self.ptr))

    @property
    def expected_attach_type(self) -> int:
        return int(lib().bpf_program__expected_attach_type(self.ptr))

    def set_expected_attach_type(self, attach_type: int) -> None:
        """Before load: the attach type libbpf's attach helpers (attach_tcx...) use."""
        _check(lib().bpf_program__set_expected_attach_type(self.ptr, attach_type),
               f"bpf_program__set_expected_attach_type({self.name})")

    def set_type(self, prog_type: int) -> None:
        _check(lib().bpf_program__set_type(self.ptr, prog_type),
               f"bpf_program__set_type({self.name})")

    @property
    def autoload(self) -> bool:
        return bool(lib().bpf_program__autoload(self.ptr))

    def set_autoload(self, autoload: bool) -> None:
        _check(lib().bpf_program__set_autoload(self.ptr, autoload),
               f"bpf_program__set_autoload({self.name})")

    def set_log_level(self, level: int) -> None:
        """Verifier log level for this program's load (1: on error, 2: everything)."""
        _check(lib().bpf_program__set_log_level(self.ptr, level),
               f"bpf_program__set_log_level({self.name})")

    def _attach_mprog(self, fn: str, ifindex: int, flags: int, relative_fd: int,
                      relative_id: int, expected_revision: int) -> Link:
        opts = TcxOpts(flags=flags, relative_fd=relative_fd, relative_id=relative_id,
                       expected_revision=expected_revision)
        what = (f"{fn}({self.name}, ifindex={ifindex}, "
                f"{_attach_name(self.expected_attach_type)}, flags={_flags_str(flags)}"
                + (f", relative_fd={relative_fd}" if relative_fd else "")
                + (f", relative_id={relative_id}" if relative_id else "")
                + (f", expected_revision={expected_revision}" if expected_revision else "")
                + ")")
        with capture_log(PrintLevel.WARN) as msgs:
            ptr = getattr(lib(), fn)(self.ptr, ifindex, ctypes.byref(opts))
        return Link(ptr=_check_ptr(ptr, what, "".join(msgs)), what=what)

    def attach_tcx(self, ifindex: int, *, flags: int = 0, relative_fd: int = 0,
                   relative_id: int = 0, expected_revision: int = 0) -> Link:
        """bpf_program__attach_tcx: a TCX link at the program's expected attach type
        (BPF_TCX_INGRESS/EGRESS: SEC("tcx/ingress"|"tcx/egress") or
        set_expected_attach_type() before load)."""
        return self._attach_mprog("bpf_program__attach_tcx", ifindex, flags, relative_fd,
                                  relative_id, expected_revision)

    def attach_netkit(self, ifindex: int, *, flags: int = 0, relative_fd: int = 0,
                      relative_id: int = 0, expected_revision: int = 0) -> Link:
        """bpf_program__attach_netkit: a netkit link at the program's expected attach type
        (BPF_NETKIT_PRIMARY/PEER)."""
        return self._attach_mprog("bpf_program__attach_netkit", ifindex, flags, relative_fd,
                                  relative_id, expected_revision)

    def attach_iter(self, link_info: bytes | None = None) -> Link:
        """bpf_program__attach_iter; `link_info` is a packed union bpf_iter_link_info."""
        opts = IterAttachOpts()
        keep = None
        if link_info is not None:
            keep = ctypes.create_string_buffer(link_info, len(link_info))
            opts.link_info = ctypes.cast(keep, ctypes.c_void_p)
            opts.link_info_len = len(link_info)
        what = f"bpf_program__attach_iter({self.name})"
        with capture_log(PrintLevel.WARN) as msgs:
            ptr = lib().bpf_program__attach_iter(self.ptr, ctypes.byref(opts))
        del keep
        return Link(ptr=_check_ptr(ptr, what, "".join(msgs)), what=what)

    def attach(self) -> Link:
        """bpf_program__attach: auto-attach by section name (tracing, iter, ...)."""
        what = f"bpf_program__attach({self.name})"
        with capture_log(PrintLevel.WARN) as msgs:
            ptr = lib().bpf_program__attach(self.ptr)
        return Link(ptr=_check_ptr(ptr, what, "".join(msgs)), what=what)

    def attach_sockmap(self, sockmap: Map | int) -> Link:
        """A sockmap link (kernel >= 6.10). Uses bpf_program__attach_sockmap when libbpf has
        it (>= 1.5), else the equivalent bpf_link_create(prog, map, expected attach type)."""
        map_fd = _fd_of(sockmap)
        if "bpf_program__attach_sockmap" in lib().optional:
            what = f"bpf_program__attach_sockmap({self.name}, map fd {map_fd})"
            ptr = lib().bpf_program__attach_sockmap(self.ptr, map_fd)
            return Link(ptr=_check_ptr(ptr, what), what=what)
        return link_create(self, map_fd, self.expected_attach_type)

    def test_run(self, data: bytes = b"", *, ctx: bytes | None = None, repeat: int = 1,
                 data_out_size: int | None = None, ctx_out_size: int | None = None,
                 flags: int = 0, cpu: int = 0) -> TestRunResult:
        """BPF_PROG_TEST_RUN with `data` as packet; returns retval and output buffers."""
        out_size = data_out_size if data_out_size is not None else max(len(data), 1) + 256
        din = ctypes.create_string_buffer(data, max(len(data), 1))
        dout = ctypes.create_string_buffer(out_size)
        opts = TestRunOpts(data_in=ctypes.cast(din, ctypes.c_void_p) if data else None,
                           data_size_in=len(data), data_out=ctypes.cast(dout, ctypes.c_void_p),
                           data_size_out=out_size, repeat=repeat, flags=flags, cpu=cpu)
        cin = cout = None
        if ctx is not None:
            cin = ctypes.create_string_buffer(ctx, len(ctx))
            opts.ctx_in = ctypes.cast(cin, ctypes.c_void_p)
            opts.ctx_size_in = len(ctx)
            cout = ctypes.create_string_buffer(ctx_out_size or len(ctx))
            opts.ctx_out = ctypes.cast(cout, ctypes.c_void_p)
            opts.ctx_size_out = ctx_out_size or len(ctx)
        _check(lib().bpf_prog_test_run_opts(self.fd, ctypes.byref(opts)),
               f"bpf_prog_test_run_opts({self.name})")
        return TestRunResult(
            retval=ctypes.c_int32(opts.retval).value, duration_ns=opts.duration,
            data_out=dout.raw[: opts.data_size_out],
            ctx_out=cout.raw[: opts.ctx_size_out] if cout is not None else b"")

    def __repr__(self) -> str:
        return f"<Program {self.name}>"


# --------------------------------------------------------------------------- maps


class Map:
    """A BPF map: of a `BpfObject` (`ptr`), or a standalone fd from `create_map` (owned)."""

    def __init__(self, *, obj: BpfObject | None = None, ptr: int | None = None,
                 fd: int | None = None, name: str = "") -> None:
        self._obj = obj
        self._ptr = ptr
        self._fd = fd
        self._name = name
        self._info: MapInfo | None = None

    # -- identity
    @property
    def fd(self) -> int:
        if self._ptr is not None:
            if self._obj is not None:
                self._obj._require_open()
            fd = int(lib().bpf_map__fd(self._ptr))
            if fd < 0:
                raise _oserror(errno_mod.EBADF, f"map {self.name}: no fd (not created?)")
            return fd
        if self._fd is None:
            raise ValueError(f"map {self._name}: closed")
        return self._fd

    def info(self) -> MapInfo:
        if self._info is None:
            self._info = map_info(self.fd)
        return self._info

    @property
    def name(self) -> str:
        if self._ptr is not None:
            return (lib().bpf_map__name(self._ptr) or b"").decode()
        return self._name or self.info().name

    @property
    def id(self) -> int:
        return self.info().id

    @property
    def type(self) -> int:
        return self.info().type

    @property
    def key_size(self) -> int:
        return self.info().key_size

    @property
    def value_size(self) -> int:
        return self.info().value_size

    @property
    def max_entries(self) -> int:
        return self.info().max_entries

    # -- before load (object maps)
    def set_max_entries(self, n: int) -> None:
        if self._ptr is None:
            raise ValueError("set_max_entries: only for maps of an unloaded BpfObject")
        _check(lib().bpf_map__set_max_entries(self._ptr, n), f"set_max_entries({self.name})")

    def set_autocreate(self, autocreate: bool) -> None:
        if self._ptr is None:
            raise ValueError("set_autocreate: only for maps of an unloaded BpfObject")
        _check(lib().bpf_map__set_autocreate(self._ptr, autocreate),
               f"set_autocreate({self.name})")

    # -- elements
    def _value_len(self) -> int:
        size = self.value_size
        if self.type in PERCPU_MAP_TYPES:
            return ((size + 7) // 8 * 8) * possible_cpus()
        return size

    def lookup(self, key: Buffer) -> bytes | None:
        """The value for `key` as bytes (all CPUs' values back to back for per-CPU maps),
        None if the key is absent (ENOENT)."""
        k = _to_buffer(key, self.key_size, f"{self.name} key")
        vlen = self._value_len()
        v = ctypes.create_string_buffer(vlen)
        ret = lib().bpf_map_lookup_elem(self.fd, k, v)
        if ret == -errno_mod.ENOENT:
            return None
        _check(ret, f"bpf_map_lookup_elem({self.name})")
        return v.raw[:vlen]

    def lookup_percpu(self, key: Buffer) -> list[bytes]:
        """Per-CPU maps: one value per possible CPU."""
        raw = self.lookup(key)
        if raw is None:
            raise KeyError(key)
        stride = (self.value_size + 7) // 8 * 8
        return [raw[i * stride: i * stride + self.value_size] for i in range(possible_cpus())]

    def lookup_int(self, key: Buffer, *, signed: bool = False) -> int:
        """Value as a little-endian integer (summed over CPUs for per-CPU maps)."""
        if self.type in PERCPU_MAP_TYPES:
            return sum(int.from_bytes(v, "little", signed=signed)
                       for v in self.lookup_percpu(key))
        raw = self.lookup(key)
        if raw is None:
            raise KeyError(key)
        return int.from_bytes(raw, "little", signed=signed)

    def update(self, key: Buffer, value: Buffer, flags: int = UpdateFlags.ANY) -> None:
        k = _to_buffer(key, self.key_size, f"{self.name} key")
        v = _to_buffer(value, self._value_len(), f"{self.name} value")
        _check(lib().bpf_map_update_elem(self.fd, k, v, flags),
               f"bpf_map_update_elem({self.name})")

    def delete(self, key: Buffer) -> None:
        k = _to_buffer(key, self.key_size, f"{self.name} key")
        _check(lib().bpf_map_delete_elem(self.fd, k), f"bpf_map_delete_elem({self.name})")

    def next_key(self, key: Buffer | None) -> bytes | None:
        """BPF_MAP_GET_NEXT_KEY: the key after `key` (first key for None), None at the end."""
        k = None if key is None else _to_buffer(key, self.key_size, f"{self.name} key")
        out = ctypes.create_string_buffer(self.key_size)
        ret = lib().bpf_map_get_next_key(self.fd, k, out)
        if ret == -errno_mod.ENOENT:
            return None
        _check(ret, f"bpf_map_get_next_key({self.name})")
        return out.raw[: self.key_size]

    def keys(self) -> Iterator[bytes]:
        key = self.next_key(None)
        while key is not None:
            yield key
            key = self.next_key(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:
                yield key, value

    def zero(self) -> None:
        """Array maps: set every element to zeros."""
        zeros = bytes(self._value_len())
        for i in range(self.max_entries):
            self.update(i, zeros)

    # -- memory
    def mmap(self, length: int | None = None, offset: int = 0) -> mmap.mmap:
        """mmap the map fd (BPF_F_MMAPABLE arrays, global-data maps, BPF arena).
        `length` defaults to value_size * max_entries (for an arena: max_entries pages)."""
        if length is None:
            info = self.info()
            if info.type == MapType.ARENA:
                length = info.max_entries * mmap.PAGESIZE
            else:
                length = info.value_size * info.max_entries
        return mmap.mmap(self.fd, length, mmap.MAP_SHARED,
                         mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)

    def close(self) -> None:
        """Close a standalone map (object maps are closed with their object)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: builtins.type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Map {self.name}>"


def create_map(map_type: int, key_size: int, value_size: int, max_entries: int, *,
               name: str | None = None, map_flags: int = 0, map_extra: int = 0,
               inner_map_fd: int = 0, numa_node: int = 0) -> Map:
    """BPF_MAP_CREATE (bpf_map_create): a standalone map owned by the returned `Map`."""
    opts = MapCreateOpts(map_flags=map_flags, map_extra=map_extra, inner_map_fd=inner_map_fd,
                         numa_node=numa_node)
    tname = _enum_name(MapType, map_type)
    fd = _check(lib().bpf_map_create(map_type, name.encode() if name else None, key_size,
                                     value_size, max_entries, ctypes.byref(opts)),
                f"bpf_map_create(BPF_MAP_TYPE_{tname}, key={key_size}, value={value_size}, "
                f"max_entries={max_entries}, flags={map_flags:#x})")
    return Map(fd=fd, name=name or "")


_ncpus: int | None = None


def possible_cpus() -> int:
    """libbpf_num_possible_cpus(): the per-CPU value count."""
    global _ncpus
    if _ncpus is None:
        _ncpus = _check(lib().libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")
    return _ncpus


# --------------------------------------------------------------------------- objects


class BpfObject:
    """A BPF ELF object opened and loaded by libbpf; closing it releases its programs and
    maps (and, with them, the attachments that only they kept alive).

        with BpfObject(path) as obj:
            link = obj.program("tc1").attach_tcx(ifindex)

    `autoload`: load only these programs (others are skipped, e.g. when a kernel lacks
    what they need). `expected_attach_type`: one type for all programs or a mapping
    name -> type, set before load. `prepare`: called after open, before load, for anything
    else (map sizes, autocreate...). `log_level`: verifier log level for every program.
    With `load=False` the object stays open-but-unloaded until `load()`.
    """

    def __init__(self, path: str | Path, *, autoload: Iterable[str] | None = None,
                 expected_attach_type: int | Mapping[str, int] | None = None,
                 prepare: Callable[[BpfObject], None] | None = None,
                 log_level: int = 0, load: bool = True) -> None:
        self.path = Path(path)
        self._ptr: int | None = None
        self.loaded = False
        what = f"bpf_object__open_file({self.path})"
        with capture_log(PrintLevel.WARN) as msgs:
            ptr = lib().bpf_object__open_file(str(self.path).encode(), None)
        self._ptr = _check_ptr(ptr, what, "".join(msgs))
        try:
            if autoload is not None:
                wanted = set(autoload)
                unknown = wanted - set(self.programs)
                if unknown:
                    raise KeyError(f"{self.path.name}: no program(s) {sorted(unknown)}")
                for name, prog in self.programs.items():
                    prog.set_autoload(name in wanted)
            if isinstance(expected_attach_type, int):
                for prog in self.programs.values():
                    prog.set_expected_attach_type(expected_attach_type)
            elif expected_attach_type is not None:
                for name, attach_type in expected_attach_type.items():
                    self.program(name).set_expected_attach_type(attach_type)
            if log_level:
                for prog in self.programs.values():
                    prog.set_log_level(log_level)
            if prepare is not None:
                prepare(self)
            if load:
                self.load()
        except BaseException:
            self.close()
            raise

    @property
    def name(self) -> str:
        return (lib().bpf_object__name(self._require_open()) or b"").decode()

    def _require_open(self) -> int:
        if self._ptr is None:
            raise ValueError(f"BPF object {self.path.name} is closed")
        return self._ptr

    def load(self) -> None:
        """bpf_object__load: create maps, load programs. On failure the OSError carries
        libbpf's log, including the verifier's."""
        ptr = self._require_open()
        with capture_log(PrintLevel.WARN) as msgs:
            ret = lib().bpf_object__load(ptr)
        if ret < 0:
            raise _oserror(-ret, f"bpf_object__load({self.path.name})", "".join(msgs))
        self.loaded = True

    @property
    def programs(self) -> dict[str, Program]:
        ptr = self._require_open()
        out: dict[str, Program] = {}
        cur = lib().bpf_object__next_program(ptr, None)
        while cur:
            prog = Program(self, cur)
            out[prog.name] = prog
            cur = lib().bpf_object__next_program(ptr, cur)
        return out

    @property
    def maps(self) -> dict[str, Map]:
        ptr = self._require_open()
        out: dict[str, Map] = {}
        cur = lib().bpf_object__next_map(ptr, None)
        while cur:
            m = Map(obj=self, ptr=cur)
            out[m.name] = m
            cur = lib().bpf_object__next_map(ptr, cur)
        return out

    def program(self, name: str) -> Program:
        ptr = lib().bpf_object__find_program_by_name(self._require_open(), name.encode())
        if not ptr:
            raise KeyError(f"{self.path.name}: no program {name!r} "
                           f"(have: {', '.join(self.programs)})")
        return Program(self, ptr)

    def map(self, name: str) -> Map:
        ptr = lib().bpf_object__find_map_by_name(self._require_open(), name.encode())
        if not ptr:
            raise KeyError(f"{self.path.name}: no map {name!r} (have: {', '.join(self.maps)})")
        return Map(obj=self, ptr=ptr)

    def close(self) -> None:
        if self._ptr is not None:
            lib().bpf_object__close(self._ptr)
            self._ptr = None

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BpfObject {self.path.name}{' closed' if self.closed else ''}>"


# --------------------------------------------------------------------------- classic tc


@dataclass(frozen=True)
class TcFilter:
    """A cls_bpf filter as bpf_tc_attach/bpf_tc_query report it."""

    handle: int
    priority: int
    prog_id: int


class TcHook:
    """Classic tc through libbpf (bpf_tc_hook_* / bpf_tc_*): a clsact qdisc on `ifindex`
    and direct-action cls_bpf filters at `attach_point` (ingress or egress).

    Acts in the calling thread's network namespace (libbpf opens a netlink socket)."""

    def __init__(self, ifindex: int, attach_point: TcAttachPoint, parent: int = 0) -> None:
        self.ifindex = ifindex
        self.attach_point = attach_point
        self.parent = parent

    def _hook(self, attach_point: int | None = None) -> TcHookOpts:
        return TcHookOpts(ifindex=self.ifindex,
                          attach_point=self.attach_point if attach_point is None
                          else attach_point, parent=self.parent)

    def create(self, *, exist_ok: bool = True) -> bool:
        """Create the clsact qdisc; False if it existed (and `exist_ok`)."""
        ret = lib().bpf_tc_hook_create(ctypes.byref(self._hook()))
        if ret == -errno_mod.EEXIST and exist_ok:
            return False
        _check(ret, f"bpf_tc_hook_create(ifindex={self.ifindex})")
        return True

    def destroy(self) -> None:
        """Delete the clsact qdisc (ingress and egress, with their filters)."""
        hook = self._hook(TcAttachPoint.INGRESS | TcAttachPoint.EGRESS)
        _check(lib().bpf_tc_hook_destroy(ctypes.byref(hook)),
               f"bpf_tc_hook_destroy(ifindex={self.ifindex})")

    def attach(self, prog: Program | int, *, handle: int = 1, priority: int = 1,
               replace: bool = False) -> TcFilter:
        opts = TcOpts(prog_fd=_fd_of(prog), handle=handle, priority=priority,
                      flags=1 if replace else 0)
        _check(lib().bpf_tc_attach(ctypes.byref(self._hook()), ctypes.byref(opts)),
               f"bpf_tc_attach(ifindex={self.ifindex}, handle={handle}, prio={priority})")
        return TcFilter(opts.handle, opts.priority, opts.prog_id)

    def detach(self, *, handle: int = 1, priority: int = 1) -> None:
        opts = TcOpts(handle=handle, priority=priority)
        _check(lib().bpf_tc_detach(ctypes.byref(self._hook()), ctypes.byref(opts)),
               f"bpf_tc_detach(ifindex={self.ifindex}, handle={handle}, prio={priority})")

    def query(self, *, handle: int = 1, priority: int = 1) -> TcFilter:
        opts = TcOpts(handle=handle, priority=priority)
        _check(lib().bpf_tc_query(ctypes.byref(self._hook()), ctypes.byref(opts)),
               f"bpf_tc_query(ifindex={self.ifindex}, handle={handle}, prio={priority})")
        return TcFilter(opts.handle, opts.priority, opts.prog_id)


# --------------------------------------------------------------------------- naming


def _enum_name(enum: type[IntEnum], value: int) -> str:
    try:
        return enum(value).name
    except ValueError:
        return str(value)


def _attach_name(attach_type: int) -> str:
    return "BPF_" + _enum_name(AttachType, attach_type)


def _flags_str(flags: int) -> str:
    if not flags:
        return "0"
    names = [f"BPF_F_{f.name}" for f in AttachFlags if f & flags and f.name]
    rest = flags & ~sum(AttachFlags)
    if rest:
        names.append(hex(rest))
    return "|".join(names)
