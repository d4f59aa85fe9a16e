"""A program of a loaded BpfObject: info, attach helpers, BPF_PROG_TEST_RUN."""

from __future__ import annotations

import ctypes
import errno as errno_mod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .info import ProgInfo, prog_info
from .library import (
    HasFd,
    PrintLevel,
    attach_name,
    capture_log,
    check,
    check_ptr,
    fd_of,
    flags_str,
    lib,
    oserror,
)
from .links import Link, link_create
from .structs import IterAttachOpts, TcxOpts, TestRunOpts

if TYPE_CHECKING:
    from .objects import BpfObject


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
            raise oserror(-fd if fd < -1 else errno_mod.EBADF,
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
        check(lib().bpf_program__set_expected_attach_type(self.ptr, attach_type),
               f"bpf_program__set_expected_attach_type({self.name})")

    def set_type(self, prog_type: int) -> None:
        check(lib().bpf_program__set_type(self.ptr, prog_type),
               f"bpf_program__set_type({self.name})")

    @property
    def autoload(self) -> bool:
        return bool(lib().bpf_program__autoload(self.ptr))

    def set_autoload(self, autoload: bool) -> None:
        check(lib().bpf_program__set_autoload(self.ptr, autoload),
               f"bpf_program__set_autoload({self.name})")

    def set_log_level(self, level: int) -> None:
        """Verifier log level for this program's load (1: on error, 2: everything)."""
        check(lib().bpf_program__set_log_level(self.ptr, level),
               f"bpf_program__set_log_level({self.name})")

    def _attach_mprog(self, fn: str, ifindex: int, flags: int, relative_fd: int,
                      relative_id: int, expected_revision: int) -> Link:
        opts = TcxOpts(flags=flags, relative_fd=relative_fd, relative_id=relative_id,
                       expected_revision=expected_revision)
        what = (f"{fn}({self.name}, ifindex={ifindex}, "
                f"{attach_name(self.expected_attach_type)}, flags={flags_str(flags)}"
                + (f", relative_fd={relative_fd}" if relative_fd else "")
                + (f", relative_id={relative_id}" if relative_id else "")
                + (f", expected_revision={expected_revision}" if expected_revision else "")
                + ")")
        with capture_log(PrintLevel.WARN) as msgs:
            ptr = getattr(lib(), fn)(self.ptr, ifindex, ctypes.byref(opts))
        return Link(ptr=check_ptr(ptr, what, "".join(msgs)), what=what)

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
        return Link(ptr=check_ptr(ptr, what, "".join(msgs)), what=what)

    def attach(self) -> Link:
        """bpf_program__attach: auto-attach by section name (tracing, iter, ...)."""
        what = f"bpf_program__attach({self.name})"
        with capture_log(PrintLevel.WARN) as msgs:
            ptr = lib().bpf_program__attach(self.ptr)
        return Link(ptr=check_ptr(ptr, what, "".join(msgs)), what=what)

    def attach_sockmap(self, sockmap: HasFd | int) -> Link:
        """A sockmap link (kernel >= 6.10). Uses bpf_program__attach_sockmap when libbpf has
        it (>= 1.5), else the equivalent bpf_link_create(prog, map, expected attach type)."""
        map_fd = fd_of(sockmap)
        if "bpf_program__attach_sockmap" in lib().optional:
            what = f"bpf_program__attach_sockmap({self.name}, map fd {map_fd})"
            ptr = lib().bpf_program__attach_sockmap(self.ptr, map_fd)
            return Link(ptr=check_ptr(ptr, what), what=what)
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
        check(lib().bpf_prog_test_run_opts(self.fd, ctypes.byref(opts)),
               f"bpf_prog_test_run_opts({self.name})")
        return TestRunResult(
            retval=ctypes.c_int32(opts.retval).value, duration_ns=opts.duration,
            data_out=dout.raw[: opts.data_size_out],
            ctx_out=cout.raw[: opts.ctx_size_out] if cout is not None else b"")

    def __repr__(self) -> str:
        return f"<Program {self.name}>"
