"""Classic tc (clsact + cls_bpf) through libbpf's bpf_tc_* API, for coexistence cases."""

from __future__ import annotations

import ctypes
import errno as errno_mod
from dataclasses import dataclass

from .library import HasFd, check, fd_of, lib
from .structs import TcHookOpts, TcOpts
from .uapi import TcAttachPoint


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
        check(ret, f"bpf_tc_hook_create(ifindex={self.ifindex})")
        return True

    def destroy(self) -> None:
        """Delete the clsact qdisc (ingress and egress, with their filters)."""
        hook = self._hook(TcAttachPoint.INGRESS | TcAttachPoint.EGRESS)
        check(lib().bpf_tc_hook_destroy(ctypes.byref(hook)),
               f"bpf_tc_hook_destroy(ifindex={self.ifindex})")

    def attach(self, prog: HasFd | int, *, handle: int = 1, priority: int = 1,
               replace: bool = False) -> TcFilter:
        opts = TcOpts(prog_fd=fd_of(prog), handle=handle, priority=priority,
                      flags=1 if replace else 0)
        check(lib().bpf_tc_attach(ctypes.byref(self._hook()), ctypes.byref(opts)),
               f"bpf_tc_attach(ifindex={self.ifindex}, handle={handle}, prio={priority})")
        return TcFilter(opts.handle, opts.priority, opts.prog_id)

    def detach(self, *, handle: int = 1, priority: int = 1) -> None:
        opts = TcOpts(handle=handle, priority=priority)
        check(lib().bpf_tc_detach(ctypes.byref(self._hook()), ctypes.byref(opts)),
               f"bpf_tc_detach(ifindex={self.ifindex}, handle={handle}, prio={priority})")

    def query(self, *, handle: int = 1, priority: int = 1) -> TcFilter:
        opts = TcOpts(handle=handle, priority=priority)
        check(lib().bpf_tc_query(ctypes.byref(self._hook()), ctypes.byref(opts)),
               f"bpf_tc_query(ifindex={self.ifindex}, handle={handle}, prio={priority})")
        return TcFilter(opts.handle, opts.priority, opts.prog_id)
