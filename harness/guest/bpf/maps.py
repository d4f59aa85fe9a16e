"""BPF maps: of an object or standalone (bpf_map_create); elements, per-CPU values, mmap."""

from __future__ import annotations

import builtins
import ctypes
import errno as errno_mod
import mmap
import os
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Self

from .info import MapInfo, map_info
from .library import Buffer, check, enum_name, lib, oserror, to_buffer
from .structs import MapCreateOpts
from .uapi import PERCPU_MAP_TYPES, MapType, UpdateFlags

if TYPE_CHECKING:
    from .objects import BpfObject


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
                raise oserror(errno_mod.EBADF, f"map {self.name}: no fd (not created?)")
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
        check(lib().bpf_map__set_max_entries(self._ptr, n), f"set_max_entries({self.name})")

    def set_autocreate(self, autocreate: bool) -> None:
        if self._ptr is None:
            raise ValueError("set_autocreate: only for maps of an unloaded BpfObject")
        check(lib().bpf_map__set_autocreate(self._ptr, autocreate),
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
        k = to_buffer(key, self.key_size, f"{self.name} key")
        vlen = self._value_len()
        v = ctypes.create_string_buffer(vlen)
        ret = lib().bpf_map_lookup_elem(self.fd, k, v)
        if ret == -errno_mod.ENOENT:
            return None
        check(ret, f"bpf_map_lookup_elem({self.name})")
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
        k = to_buffer(key, self.key_size, f"{self.name} key")
        v = to_buffer(value, self._value_len(), f"{self.name} value")
        check(lib().bpf_map_update_elem(self.fd, k, v, flags),
               f"bpf_map_update_elem({self.name})")

    def delete(self, key: Buffer) -> None:
        k = to_buffer(key, self.key_size, f"{self.name} key")
        check(lib().bpf_map_delete_elem(self.fd, k), f"bpf_map_delete_elem({self.name})")

    def next_key(self, key: Buffer | None) -> bytes | None:
        """BPF_MAP_GET_NEXT_KEY: the key after `key` (first key for None), None at the end."""
        k = None if key is None else to_buffer(key, self.key_size, f"{self.name} key")
        out = ctypes.create_string_buffer(self.key_size)
        ret = lib().bpf_map_get_next_key(self.fd, k, out)
        if ret == -errno_mod.ENOENT:
            return None
        check(ret, f"bpf_map_get_next_key({self.name})")
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
    tname = enum_name(MapType, map_type)
    fd = check(lib().bpf_map_create(map_type, name.encode() if name else None, key_size,
                                     value_size, max_entries, ctypes.byref(opts)),
                f"bpf_map_create(BPF_MAP_TYPE_{tname}, key={key_size}, value={value_size}, "
                f"max_entries={max_entries}, flags={map_flags:#x})")
    return Map(fd=fd, name=name or "")


_ncpus: int | None = None


def possible_cpus() -> int:
    """libbpf_num_possible_cpus(): the per-CPU value count."""
    global _ncpus
    if _ncpus is None:
        _ncpus = check(lib().libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")
    return _ncpus
