"""ctypes mirrors of libbpf's *_opts structs and the kernel's bpf_*_info structs."""

from __future__ import annotations

import ctypes
from typing import Any

_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64
_size_t = ctypes.c_size_t


class _Opts(ctypes.Structure):
    """libbpf *_opts struct: `sz` must hold sizeof(struct) (forward/backward compat)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sz = ctypes.sizeof(self)


class ObjectOpenOpts(_Opts):
    """struct bpf_object_open_opts, up to btf_custom_path (libbpf takes a shorter `sz`)"""

    _fields_ = [("sz", _size_t), ("object_name", ctypes.c_char_p),
                ("relaxed_maps", ctypes.c_bool), ("pin_root_path", ctypes.c_char_p),
                ("_removed_attach_prog_fd", _u32), ("kconfig", ctypes.c_char_p),
                ("btf_custom_path", ctypes.c_char_p)]


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
