"""A thin, typed ctypes layer over the system libbpf (libbpf.so.1, version >= 1.4).

Everything goes through libbpf's own API: objects are opened and loaded by libbpf (no ELF
parsing here), attachments use libbpf's attach helpers or its low-level syscall wrappers.
Kernel and libbpf failures come back as `OSError` whose ``errno`` is the kernel's (or
libbpf's) error code; a failed load carries libbpf's log, verifier log included.

Modules: `uapi` (constants of <linux/bpf.h>), `structs` (ctypes mirrors of libbpf's opts
and the kernel's info structs), `library` (loading libbpf, its log, errors), `info`,
`links` (links, prog attach/detach/query, iterators), `programs`, `maps`, `objects`
(BpfObject, `object_path`), `shared` (objects the agent loads once a boot for every case
process), `tc` (classic tc), `counters` (the hits/trace maps of bpf/run_trace.h), `arena`
(BPF arenas: mappings, pointers, syscall programs). This package
re-exports their public names, so cases write
``from harness.guest import bpf as lb`` and ``lb.link_create(...)``.

Main types (all context managers that release what they own): `BpfObject(path, ...)`, an
opened (and by default loaded) ``.bpf.o``; `Program`; `Map` (of an object, or created with
`create_map`); `Link`; `TcHook`.

Network-namespace note: calls taking an ifindex act in the *calling thread's* network
namespace (see harness.guest.net.netns.run_in_netns).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .info import (
    LinkInfo,
    MapInfo,
    ProgInfo,
    link_get_fd_by_id,
    link_ids,
    link_info,
    map_get_fd_by_id,
    map_ids,
    map_info,
    obj_get,
    obj_pin,
    prog_get_fd_by_id,
    prog_ids,
    prog_info,
)
from .library import (
    MIN_VERSION,
    Buffer,
    HasFd,
    LibbpfVersionError,
    PrintLevel,
    attach_name,
    capture_log,
    check,
    check_ptr,
    enum_name,
    errno_name,
    fd_of,
    flags_str,
    has,
    lib,
    oserror,
    to_buffer,
    version,
)
from .links import (
    Link,
    QueryResult,
    iter_create,
    link_create,
    link_detach,
    link_update,
    prog_attach,
    prog_attach_opts,
    prog_detach,
    prog_detach_opts,
    prog_query,
    read_iter,
)
from .maps import (
    Map,
    create_map,
    possible_cpus,
)
from .objects import (
    BpfObject,
    object_path,
)
from .programs import (
    Program,
    TestRunResult,
)
from .shared import shared_object
from .tc import (
    TcFilter,
    TcHook,
)
from .uapi import (
    BPF_F_AFTER,
    BPF_F_BEFORE,
    BPF_F_ID,
    BPF_F_LINK,
    BPF_F_MMAPABLE,
    BPF_F_NO_PREALLOC,
    BPF_F_NO_USER_CONV,
    BPF_F_RDONLY_PROG,
    BPF_F_REPLACE,
    BPF_F_SEGV_ON_FAULT,
    BPF_NETKIT_PEER,
    BPF_NETKIT_PRIMARY,
    BPF_SK_MSG_VERDICT,
    BPF_SK_SKB_STREAM_PARSER,
    BPF_SK_SKB_STREAM_VERDICT,
    BPF_SK_SKB_VERDICT,
    BPF_TCX_EGRESS,
    BPF_TCX_INGRESS,
    BPF_TRACE_ITER,
    MPROG_MAX,
    PERCPU_MAP_TYPES,
    TCX_DROP,
    TCX_NEXT,
    TCX_PASS,
    TCX_REDIRECT,
    AttachFlags,
    AttachType,
    LinkType,
    MapType,
    NetkitAction,
    ProgType,
    TcAttachPoint,
    TcxAction,
    UpdateFlags,
)

if TYPE_CHECKING:  # imported on first use at run time (see __getattr__)
    from .arena import (
        ArenaInfo,
        ArenaMapping,
        ArenaMemory,
        ArenaOp,
        ArenaOpArgs,
        ArenaOps,
        TouchOutcome,
        arena_info,
        create_arena,
        map_arena,
        object_arena,
        run_syscall,
        touch_in_child,
    )

#: names of `arena` (the largest module, used by the arena suite only), imported when
#: first asked for
_ARENA_NAMES = frozenset({
    "ArenaInfo", "ArenaMapping", "ArenaMemory", "ArenaOp", "ArenaOpArgs", "ArenaOps",
    "TouchOutcome", "arena_info", "create_arena", "map_arena", "object_arena",
    "run_syscall", "touch_in_child"})


def __getattr__(name: str) -> Any:
    if name in _ARENA_NAMES:
        from . import arena

        return getattr(arena, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BPF_F_AFTER",
    "BPF_F_BEFORE",
    "BPF_F_ID",
    "BPF_F_LINK",
    "BPF_F_MMAPABLE",
    "BPF_F_NO_PREALLOC",
    "BPF_F_NO_USER_CONV",
    "BPF_F_RDONLY_PROG",
    "BPF_F_REPLACE",
    "BPF_F_SEGV_ON_FAULT",
    "BPF_NETKIT_PEER",
    "BPF_NETKIT_PRIMARY",
    "BPF_SK_MSG_VERDICT",
    "BPF_SK_SKB_STREAM_PARSER",
    "BPF_SK_SKB_STREAM_VERDICT",
    "BPF_SK_SKB_VERDICT",
    "BPF_TCX_EGRESS",
    "BPF_TCX_INGRESS",
    "BPF_TRACE_ITER",
    "MIN_VERSION",
    "MPROG_MAX",
    "PERCPU_MAP_TYPES",
    "TCX_DROP",
    "TCX_NEXT",
    "TCX_PASS",
    "TCX_REDIRECT",
    "ArenaInfo",
    "ArenaMapping",
    "ArenaMemory",
    "ArenaOp",
    "ArenaOpArgs",
    "ArenaOps",
    "AttachFlags",
    "AttachType",
    "BpfObject",
    "Buffer",
    "HasFd",
    "LibbpfVersionError",
    "Link",
    "LinkInfo",
    "LinkType",
    "Map",
    "MapInfo",
    "MapType",
    "NetkitAction",
    "PrintLevel",
    "ProgInfo",
    "ProgType",
    "Program",
    "QueryResult",
    "TcAttachPoint",
    "TcFilter",
    "TcHook",
    "TcxAction",
    "TestRunResult",
    "TouchOutcome",
    "UpdateFlags",
    "arena_info",
    "attach_name",
    "capture_log",
    "check",
    "check_ptr",
    "create_arena",
    "create_map",
    "enum_name",
    "errno_name",
    "fd_of",
    "flags_str",
    "has",
    "iter_create",
    "lib",
    "link_create",
    "link_detach",
    "link_get_fd_by_id",
    "link_ids",
    "link_info",
    "link_update",
    "map_arena",
    "map_get_fd_by_id",
    "map_ids",
    "map_info",
    "obj_get",
    "obj_pin",
    "object_arena",
    "object_path",
    "oserror",
    "possible_cpus",
    "prog_attach",
    "prog_attach_opts",
    "prog_detach",
    "prog_detach_opts",
    "prog_get_fd_by_id",
    "prog_ids",
    "prog_info",
    "prog_query",
    "read_iter",
    "run_syscall",
    "shared_object",
    "to_buffer",
    "touch_in_child",
    "version",
]
