"""Names of a kernel enum's values from the running kernel's BTF (/sys/kernel/btf/vmlinux),
parsed by libbpf (btf__load_vmlinux_btf, btf__find_by_name_kind, btf__type_by_id).

Drop reason numbers are not ABI (values are inserted in the middle of
`enum skb_drop_reason` from one release to the next), so the names must come from the
booted kernel. Loading vmlinux BTF costs ~25 ms natively: done once per boot.

The libbpf functions are bound here with ctypes prototypes of their own (the guest BPF
library binds only what programs, maps and links need).
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..bpf.library import lib

BTF_KIND_ENUM = 6
BTF_KIND_ENUM64 = 19
#: struct btf_type: name_off, info, size
_TYPE_WORDS = 3

_P = ctypes.c_void_p


def _fn(name: str, restype: Any, *argtypes: Any) -> Any:
    return ctypes.CFUNCTYPE(restype, *argtypes, use_errno=True)((name, lib().cdll))


@contextmanager
def vmlinux_btf() -> Iterator[int]:
    """The kernel's BTF as a libbpf `struct btf *`, freed after the block."""
    ptr = _fn("btf__load_vmlinux_btf", _P)()
    if not ptr:
        err = ctypes.get_errno() or errno_mod.ENOENT
        raise OSError(err, f"btf__load_vmlinux_btf: {os.strerror(err)}")
    try:
        yield int(ptr)
    finally:
        _fn("btf__free", None, _P)(ptr)


def enum_values(btf: int, name: str) -> dict[int, str]:
    """value -> name of every member of `enum NAME` (plain or 64-bit); {} if the kernel has
    no such enum."""
    find = _fn("btf__find_by_name_kind", ctypes.c_int, _P, ctypes.c_char_p, ctypes.c_uint32)
    type_by_id = _fn("btf__type_by_id", _P, _P, ctypes.c_uint32)
    name_by_offset = _fn("btf__name_by_offset", ctypes.c_char_p, _P, ctypes.c_uint32)
    for kind in (BTF_KIND_ENUM, BTF_KIND_ENUM64):
        type_id = find(btf, name.encode(), kind)
        if type_id > 0:
            break
    else:
        return {}
    ptr = type_by_id(btf, type_id)
    _name_off, info, _size = (ctypes.c_uint32 * _TYPE_WORDS).from_address(ptr)
    vlen = info & 0xFFFF
    signed = bool(info >> 31)  # kflag: signed values
    members = ptr + _TYPE_WORDS * 4
    out: dict[int, str] = {}
    if kind == BTF_KIND_ENUM:  # struct btf_enum {u32 name_off; s32 val;}
        words = (ctypes.c_uint32 * (2 * vlen)).from_address(members)
        for i in range(vlen):
            raw = words[2 * i + 1]
            value = raw - (1 << 32) if signed and raw >> 31 else raw
            out[value] = (name_by_offset(btf, words[2 * i]) or b"").decode()
    else:  # struct btf_enum64 {u32 name_off; u32 val_lo32; u32 val_hi32;}
        words = (ctypes.c_uint32 * (3 * vlen)).from_address(members)
        for i in range(vlen):
            value = words[3 * i + 1] | words[3 * i + 2] << 32
            if signed and value >> 63:
                value -= 1 << 64
            out[value] = (name_by_offset(btf, words[3 * i]) or b"").decode()
    return out


def kernel_enums(*names: str) -> dict[str, dict[int, str]]:
    """Several enums from one load of the kernel's BTF."""
    with vmlinux_btf() as btf:
        return {name: enum_values(btf, name) for name in names}
