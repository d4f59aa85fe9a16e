"""BPF links, BPF_PROG_ATTACH/DETACH/QUERY (mprog options), iterators."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from typing import Any

from ..closing import Closing
from .info import LinkInfo, link_info
from .library import HasFd, attach_name, check, fd_of, flags_str, lib
from .structs import (
    LinkCreateOpts,
    LinkUpdateOpts,
    ProgAttachOpts,
    ProgDetachOpts,
    ProgQueryOpts,
    _LinkCreateTcx,
    _u32,
)
from .uapi import MPROG_MAX, AttachFlags, AttachType


class Link(Closing):
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

    def update(self, prog: HasFd | int, *, old_prog: HasFd | int | None = None,
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

    def __del__(self) -> None:  # last resort; code should use close()/with
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<Link {self.what} fd={'closed' if self.closed else self.fd}>"


def link_create(prog: HasFd | int, target: int, attach_type: int, *, flags: int = 0,
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
    what = (f"bpf_link_create({attach_name(attach_type)}, target={target}, "
            f"flags={flags_str(flags)})")
    fd = check(lib().bpf_link_create(fd_of(prog), target, attach_type, ctypes.byref(opts)),
                what)
    del keep
    return Link(fd=fd, what=what)


def link_update(link_fd: int, prog: HasFd | int, *, old_prog: HasFd | int | None = None,
                flags: int | None = None) -> None:
    """BPF_LINK_UPDATE (bpf_link_update): new program, optionally checking the old one."""
    if flags is None:
        flags = AttachFlags.REPLACE if old_prog is not None else 0
    opts = LinkUpdateOpts(flags=flags, old_prog_fd=fd_of(old_prog) if old_prog else 0)
    check(lib().bpf_link_update(link_fd, fd_of(prog), ctypes.byref(opts)),
           f"bpf_link_update(link fd {link_fd}, flags={flags_str(flags)})")


def link_detach(link_fd: int) -> None:
    """BPF_LINK_DETACH (bpf_link_detach)."""
    check(lib().bpf_link_detach(link_fd), f"bpf_link_detach(link fd {link_fd})")


def iter_create(link_fd: int) -> int:
    """BPF_ITER_CREATE: a readable fd for an iterator link (caller closes it)."""
    return check(lib().bpf_iter_create(link_fd), f"bpf_iter_create(link fd {link_fd})")


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


def prog_attach(prog: HasFd | int, target: int, attach_type: int, flags: int = 0) -> None:
    """BPF_PROG_ATTACH (bpf_prog_attach): e.g. sk_msg/sk_skb programs to a sockmap fd."""
    check(lib().bpf_prog_attach(fd_of(prog), target, attach_type, flags),
           f"bpf_prog_attach({attach_name(attach_type)}, target={target}, "
           f"flags={flags_str(flags)})")


def prog_detach(prog: HasFd | int, target: int, attach_type: int) -> None:
    """BPF_PROG_DETACH of a specific program (bpf_prog_detach2)."""
    check(lib().bpf_prog_detach2(fd_of(prog), target, attach_type),
           f"bpf_prog_detach2({attach_name(attach_type)}, target={target})")


def prog_attach_opts(prog: HasFd | int, target: int, attach_type: int, *, flags: int = 0,
                     replace: HasFd | int | None = None, relative_fd: int = 0,
                     relative_id: int = 0, expected_revision: int = 0) -> None:
    """BPF_PROG_ATTACH with mprog options (bpf_prog_attach_opts); for tcx, `target` is the
    ifindex. `replace` (a program or fd) fills replace_fd; pass BPF_F_REPLACE in `flags`."""
    opts = ProgAttachOpts(flags=flags, replace_fd=fd_of(replace) if replace else 0,
                          relative_fd=relative_fd, relative_id=relative_id,
                          expected_revision=expected_revision)
    check(lib().bpf_prog_attach_opts(fd_of(prog), target, attach_type, ctypes.byref(opts)),
           f"bpf_prog_attach_opts({attach_name(attach_type)}, target={target}, "
           f"flags={flags_str(flags)})")


def prog_detach_opts(prog: HasFd | int, target: int, attach_type: int, *, flags: int = 0,
                     relative_fd: int = 0, relative_id: int = 0,
                     expected_revision: int = 0) -> None:
    """BPF_PROG_DETACH with mprog options (bpf_prog_detach_opts). `prog` may be 0 to
    detach by position (BPF_F_BEFORE/AFTER with a relative)."""
    opts = ProgDetachOpts(flags=flags, relative_fd=relative_fd, relative_id=relative_id,
                          expected_revision=expected_revision)
    check(lib().bpf_prog_detach_opts(fd_of(prog), target, attach_type, ctypes.byref(opts)),
           f"bpf_prog_detach_opts({attach_name(attach_type)}, target={target}, "
           f"flags={flags_str(flags)})")


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
    check(lib().bpf_prog_query_opts(target, attach_type, ctypes.byref(opts)),
           f"bpf_prog_query_opts({attach_name(attach_type)}, target={target})")
    n = min(opts.count, max_count)
    return QueryResult(opts.count, opts.revision, opts.attach_flags, list(prog[:n]),
                       list(link[:n]), list(pflags[:n]), list(lflags[:n]))
