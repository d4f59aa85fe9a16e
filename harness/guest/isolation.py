"""Cases do not leak into each other: what the agent checks and cleans after each case.

Every case runs in a forked process that first moves into a fresh network namespace (lo up),
so it starts clean. What it could still leave behind, visible to the next case, is compared
before and after it, from the agent (which stays in the guest's root network namespace):

- devices in the root network namespace (/sys/class/net);
- named network namespaces (/run/netns);
- pinned BPF objects (files under /sys/fs/bpf);
- BPF programs, maps and links still loaded (the kernel's id iterators): a case's own
  objects go when its process exits, so one that stays was pinned or attached to
  something that outlived the case;
- tcx programs attached to root-namespace devices (BPF_PROG_QUERY).

A leak fails the case that leaked, naming what leaked; the agent then cleans it (unpin,
detach, delete) so the next case starts clean, and says what it could not clean.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from . import bpf as lb
from .net.netns import NETNS_DIR, SYS_NET
from .uapi import libc

BPFFS = "/sys/fs/bpf"
#: how long freed BPF objects may take to go after the case's process exited (RCU and
#: RCU-tasks-trace grace periods, work queues: slow under TCG); only a real leak waits it
BPF_SETTLE = 15.0
MNT_DETACH = 2


@dataclass(frozen=True)
class Snapshot:
    """What a case could leave behind, at one moment."""

    root_links: frozenset[str] = frozenset()
    named_netns: frozenset[str] = frozenset()
    pins: frozenset[str] = frozenset()
    progs: frozenset[int] = frozenset()
    maps: frozenset[int] = frozenset()
    links: frozenset[int] = frozenset()
    #: "DEV ingress|egress prog ID" per tcx attachment on a root-namespace device
    tcx: frozenset[str] = field(default_factory=frozenset)


def _walk(root: str) -> Iterator[str]:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            yield os.path.join(dirpath, name)


def _listdir(path: str) -> frozenset[str]:
    try:
        return frozenset(os.listdir(path))
    except FileNotFoundError:
        return frozenset()


def _tcx(devices: frozenset[str]) -> frozenset[str]:
    out: set[str] = set()
    for dev in devices:
        try:
            with open(f"{SYS_NET}/{dev}/ifindex") as fh:
                ifindex = int(fh.read())
        except (OSError, ValueError):
            continue
        for name, hook in (("ingress", lb.BPF_TCX_INGRESS), ("egress", lb.BPF_TCX_EGRESS)):
            try:
                query = lb.prog_query(ifindex, hook)
            except OSError:  # no tcx entry yet (ENOENT), no tcx at all (EINVAL)
                continue
            out.update(f"{dev} {name} prog {pid}" for pid in query.prog_ids)
    return frozenset(out)


def take() -> Snapshot:
    """The state now (in the agent's, i.e. the guest's root, network namespace)."""
    links = _listdir(SYS_NET)
    return Snapshot(links, _listdir(NETNS_DIR), frozenset(_walk(BPFFS)),
                    frozenset(lb.prog_ids()), frozenset(lb.map_ids()),
                    frozenset(lb.link_ids()), _tcx(links))


@dataclass(frozen=True)
class Leak:
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


def _bpf_name(kind: str, obj_id: int) -> str:
    """`prog 123 (tc_drop)`: the id with the object's name where the kernel still has it."""
    try:
        if kind == "prog":
            fd = lb.prog_get_fd_by_id(obj_id)
            try:
                return f"{obj_id} ({lb.prog_info(fd).name})"
            finally:
                os.close(fd)
        if kind == "map":
            fd = lb.map_get_fd_by_id(obj_id)
            try:
                return f"{obj_id} ({lb.map_info(fd).name})"
            finally:
                os.close(fd)
    except OSError:
        pass
    return str(obj_id)


def leaks(before: Snapshot, after: Snapshot) -> list[Leak]:
    """What `after` has that `before` had not (named for the report)."""
    out = [Leak("link", n) for n in sorted(after.root_links - before.root_links)]
    out += [Leak("netns", n) for n in sorted(after.named_netns - before.named_netns)]
    out += [Leak("pinned", p) for p in sorted(after.pins - before.pins)]
    out += [Leak("tcx", t) for t in sorted(after.tcx - before.tcx)]
    out += [Leak("BPF link", str(i)) for i in sorted(after.links - before.links)]
    out += [Leak("BPF prog", _bpf_name("prog", i)) for i in sorted(after.progs - before.progs)]
    out += [Leak("BPF map", _bpf_name("map", i)) for i in sorted(after.maps - before.maps)]
    return out


def settle(before: Snapshot, deadline: float = BPF_SETTLE) -> Snapshot:
    """The state once the case's own BPF objects had time to be freed: poll until nothing
    new is left or `deadline` seconds passed."""
    end = time.monotonic() + deadline
    while True:
        now = take()
        if not leaks(before, now) or time.monotonic() >= end:
            return now
        time.sleep(0.02)


def _run(argv: list[str]) -> None:
    subprocess.run(argv, capture_output=True, timeout=30, check=False)


def clean(before: Snapshot, found: list[Leak]) -> list[str]:
    """Undo what a case left behind; what could not be cleaned, in words."""
    after = take()
    for pin in sorted(after.pins - before.pins, reverse=True):
        with contextlib.suppress(OSError):
            os.unlink(pin)
    for name in after.named_netns - before.named_netns:
        path = os.path.join(NETNS_DIR, name)
        libc.umount2(path.encode(), MNT_DETACH)
        with contextlib.suppress(OSError):
            os.unlink(path)
    for entry in after.tcx - before.tcx:
        dev, hook, _, pid = entry.split()
        _detach_tcx(dev, hook, int(pid))
    for dev in after.root_links - before.root_links:
        _run(["ip", "link", "del", "dev", dev])
    left = leaks(before, settle(before))
    if any(leak.kind == "BPF prog" for leak in left):
        # classic tc filters hold programs too: drop clsact from the root devices
        for dev in after.root_links:
            _run(["tc", "qdisc", "del", "dev", dev, "clsact"])
        left = leaks(before, settle(before))
    return [str(leak) for leak in left]


def _detach_tcx(dev: str, hook: str, prog_id: int) -> None:
    try:
        with open(f"{SYS_NET}/{dev}/ifindex") as fh:
            ifindex = int(fh.read())
        fd = lb.prog_get_fd_by_id(prog_id)
    except (OSError, ValueError):
        return
    try:
        attach = lb.BPF_TCX_INGRESS if hook == "ingress" else lb.BPF_TCX_EGRESS
        with contextlib.suppress(OSError):
            lb.prog_detach_opts(fd, ifindex, attach)
    finally:
        os.close(fd)


def ensure_bpffs() -> None:
    """Mount a bpffs on /sys/fs/bpf if the guest has none (cases pin there)."""
    if os.path.ismount(BPFFS):
        return
    os.makedirs(BPFFS, exist_ok=True)
    if libc.mount(b"bpf", BPFFS.encode(), b"bpf", 0, None) != 0:
        raise OSError(ctypes.get_errno(), f"mount -t bpf bpf {BPFFS}")


def enter_fresh_netns() -> None:
    """In a case's process, before the case: a new network namespace with lo up."""
    from .net.netns import set_up, unshare_netns

    unshare_netns()
    set_up("lo")


__all__ = ["Leak", "Snapshot", "clean", "ensure_bpffs", "enter_fresh_netns", "leaks",
           "settle", "take"]
