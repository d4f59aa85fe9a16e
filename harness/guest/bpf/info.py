"""bpf_obj_get_info_by_fd for programs, maps and links; ids -> fds."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

from .library import check, lib
from .structs import BpfLinkInfo, BpfMapInfo, BpfProgInfo, _u32
from .uapi import LinkType


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
    check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(n)),
           f"bpf_obj_get_info_by_fd(prog fd {fd})")
    return ProgInfo(info.id, info.type, info.name.decode(errors="replace"), bytes(info.tag))


def map_info(fd: int) -> MapInfo:
    info = BpfMapInfo()
    n = _u32(ctypes.sizeof(info))
    check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(n)),
           f"bpf_obj_get_info_by_fd(map fd {fd})")
    return MapInfo(info.id, info.type, info.name.decode(errors="replace"), info.key_size,
                   info.value_size, info.max_entries, info.map_flags, info.map_extra)


def link_info(fd: int) -> LinkInfo:
    info = BpfLinkInfo()
    n = _u32(ctypes.sizeof(info))
    check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(n)),
           f"bpf_link_get_info_by_fd(link fd {fd})")
    ifindex = attach_type = None
    if info.type in (LinkType.TCX, LinkType.NETKIT):
        ifindex, attach_type = info.tcx.ifindex, info.tcx.attach_type
    return LinkInfo(info.id, info.type, info.prog_id, ifindex, attach_type, bytes(info.raw))


def _fd_by_id(fn: str, obj_id: int) -> int:
    return check(getattr(lib(), fn)(obj_id), f"{fn}({obj_id})")


def prog_get_fd_by_id(prog_id: int) -> int:
    """A new fd for program `prog_id` (caller closes it)."""
    return _fd_by_id("bpf_prog_get_fd_by_id", prog_id)


def map_get_fd_by_id(map_id: int) -> int:
    return _fd_by_id("bpf_map_get_fd_by_id", map_id)


def link_get_fd_by_id(link_id: int) -> int:
    return _fd_by_id("bpf_link_get_fd_by_id", link_id)


def _ids(fn: str) -> list[int]:
    ids: list[int] = []
    cur = _u32(0)
    nxt = _u32(0)
    while getattr(lib(), fn)(cur, ctypes.byref(nxt)) == 0:
        ids.append(nxt.value)
        cur = _u32(nxt.value)
    return ids


def prog_ids() -> list[int]:
    """Ids of every program loaded in the kernel now."""
    return _ids("bpf_prog_get_next_id")


def map_ids() -> list[int]:
    """Ids of every map in the kernel now."""
    return _ids("bpf_map_get_next_id")


def link_ids() -> list[int]:
    """Ids of every BPF link in the kernel now."""
    return _ids("bpf_link_get_next_id")


def obj_pin(fd: int, path: str) -> None:
    """BPF_OBJ_PIN: pin the program, map or link behind `fd` at `path` (on a bpffs)."""
    check(lib().bpf_obj_pin(fd, path.encode()), f"bpf_obj_pin(fd {fd}, {path})")


def obj_get(path: str) -> int:
    """BPF_OBJ_GET: a new fd for what is pinned at `path` (caller closes it)."""
    return check(lib().bpf_obj_get(path.encode()), f"bpf_obj_get({path})")
