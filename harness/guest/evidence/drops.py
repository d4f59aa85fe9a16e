"""Packet drops by reason, location and network namespace: bpf/drop_reasons.bpf.c on the
`skb:kfree_skb` tracepoint, attached once (per boot, in the agent) and read per case.

    counter = DropCounter(ignore_tgid=os.getpid())   # load + attach, name table from BTF
    counter.drain()                                   # before the case: forget what was
    ...                                               # the case runs
    counts = counter.drain()                          # its drops, {DropKey: count}
    records = counter.records(counts, labels)         # named: reasons, locations, netns

Reason names come from the running kernel's BTF (`enum skb_drop_reason`, see `btf`),
locations from the program itself (bpf_snprintf "%pS" on the first drop at a place) or,
on kernels without bpf_snprintf (< 5.13), from /proc/kallsyms.

A forked case process inherits the agent's counter (its map fds): `shared()` returns it,
and `read()` there looks without deleting, so the agent's `drain()` still sees everything.
"""

from __future__ import annotations

import ctypes
import errno
import struct
from collections.abc import Callable
from dataclasses import dataclass

from .. import bpf as lb
from ..bpf.library import lib
from ..closing import Closing
from . import btf, kallsyms
from .model import DropRecord

OBJECT = "drop_reasons"
#: the programs, in the order they are tried (see bpf/drop_reasons.bpf.c)
REASON_PROGRAM = "drop_reason"
LOCATION_PROGRAM = "drop_location"
#: without bpf_snprintf (< 5.13): locations are named from /proc/kallsyms
BARE_PROGRAM = "drop_location_bare"
#: drop_key.reason of the location-only program
NO_REASON = 0xFFFFFFFF
CFG_IGNORE_TGID, CFG_LOST, CFG_IGNORE_TGID2 = 0, 1, 2
SUBSYS_SHIFT = 16

_KEY = struct.Struct("=QQII")


class DropsUnavailable(RuntimeError):
    """Neither program could be loaded and attached; the message says what the kernel said."""


@dataclass(frozen=True, order=True)
class DropKey:
    netns_cookie: int
    location: int
    netns_inum: int
    reason: int

    @classmethod
    def unpack(cls, raw: bytes) -> DropKey:
        return cls(*_KEY.unpack(raw))

    def pack(self) -> bytes:
        return _KEY.pack(self.netns_cookie, self.location, self.netns_inum, self.reason)


def strip_reason(name: str) -> str:
    """SKB_DROP_REASON_NO_SOCKET -> NO_SOCKET, SKB_CONSUMED -> CONSUMED."""
    for prefix in ("SKB_DROP_REASON_", "SKB_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


class ReasonNames:
    """Drop reason numbers of the running kernel -> names."""

    def __init__(self, core: dict[int, str], subsystems: dict[int, str]) -> None:
        self.core = {v: strip_reason(n) for v, n in core.items()}
        self.subsystems = {v: n.removeprefix("SKB_DROP_REASON_SUBSYS_")
                           for v, n in subsystems.items()}

    @classmethod
    def from_kernel(cls) -> ReasonNames:
        """The running kernel's names (its BTF is read once per process: ~25 ms natively;
        forked case processes inherit the table)."""
        global _kernel_names
        if _kernel_names is None:
            enums = btf.kernel_enums("skb_drop_reason", "skb_drop_reason_subsys")
            _kernel_names = cls(enums["skb_drop_reason"], enums["skb_drop_reason_subsys"])
        return _kernel_names

    def name(self, code: int) -> str | None:
        """The name of reason `code`; None for NO_REASON; a subsystem's reasons (6.4+,
        code >> 16 != 0) as SUBSYS:NUMBER (their enums live in the subsystems' modules)."""
        if code == NO_REASON:
            return None
        subsys = code >> SUBSYS_SHIFT
        if subsys:
            return f"{self.subsystems.get(subsys, f'SUBSYS{subsys}')}:{code & 0xFFFF}"
        return self.core.get(code, f"REASON_{code}")


_kernel_names: ReasonNames | None = None


class DropCounter(Closing):
    """The drop counter: loaded and attached on construction, detached by `close()`."""

    def __init__(self, *, ignore_tgid: int = 0,
                 programs: tuple[str, ...] = (REASON_PROGRAM, LOCATION_PROGRAM,
                                              BARE_PROGRAM)) -> None:
        answers: list[str] = []
        self._obj: lb.BpfObject | None = None
        self._link: lb.Link | None = None
        path = lb.object_path(OBJECT)  # a missing object is the harness's problem
        for prog in programs:
            obj = None
            try:
                obj = lb.BpfObject(path, autoload=[prog])
                link = obj.program(prog).attach()
            except OSError as exc:
                if obj is not None:
                    obj.close()
                answers.append(f"{prog}: {str(exc).splitlines()[0]}")
                continue
            self._obj, self._link = obj, link
            self.program = prog
            break
        else:
            raise DropsUnavailable("skb:kfree_skb: " + "; ".join(answers))
        self.mode = "reason" if self.program == REASON_PROGRAM else "location"
        #: what the kernel said to the programs tried before this one
        self.refused = answers
        self._drops = self._obj.map("drops")
        self._syms = self._obj.map("syms")
        self._cfg = self._obj.map("cfg")
        try:
            if ignore_tgid:
                self._cfg.update(CFG_IGNORE_TGID, ignore_tgid.to_bytes(8, "little"))
            self.names = (ReasonNames.from_kernel() if self.mode == "reason"
                          else ReasonNames({}, {}))
        except BaseException:
            self.close()
            raise
        self._locations: dict[int, str] = {}
        self._lookup_and_delete = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(
            ("bpf_map_lookup_and_delete_elem", lib().cdll))
        self._atomic_drain = True

    # -- reading
    def read(self) -> dict[DropKey, int]:
        """The counts so far, left in place."""
        return {DropKey.unpack(k): int.from_bytes(v, "little") for k, v in self._drops.items()}

    def drain(self) -> dict[DropKey, int]:
        """The counts so far, deleted from the map as they are read (one syscall when there
        are none, two per entry otherwise)."""
        out: dict[DropKey, int] = {}
        keys = list(self._drops.keys())
        value = ctypes.create_string_buffer(8)
        fd = self._drops.fd
        for raw in keys:
            count = None
            if self._atomic_drain:
                key = ctypes.create_string_buffer(raw, len(raw))
                ret = self._lookup_and_delete(fd, key, value)
                if ret == 0:
                    count = int.from_bytes(value.raw, "little")
                elif ret == -errno.ENOENT:
                    continue
                else:  # EINVAL/ENOTSUPP: no LOOKUP_AND_DELETE for hash maps (< 5.14)
                    self._atomic_drain = False
            if count is None:
                got = self._drops.lookup(raw)
                if got is None:
                    continue
                try:
                    self._drops.delete(raw)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
                count = int.from_bytes(got, "little")
            out[DropKey.unpack(raw)] = out.get(DropKey.unpack(raw), 0) + count
        return out

    def ignore_also(self, tgid: int) -> None:
        """Leave the drops of process `tgid` uncounted too (the agent's evidence server),
        next to the one given at construction."""
        self._cfg.update(CFG_IGNORE_TGID2, tgid.to_bytes(8, "little"))

    def lost(self) -> int:
        """Drops not counted because the map was full (since load)."""
        return self._cfg.lookup_int(CFG_LOST)

    # -- naming
    def location(self, address: int) -> str:
        """"function+0xoff" of a drop location."""
        name = self._locations.get(address)
        if name is None:
            raw = self._syms.lookup(address.to_bytes(8, "little"))
            text = raw.split(b"\0", 1)[0].decode(errors="replace") if raw else ""
            name = text.split("/", 1)[0] if text and not text.startswith("0x") else ""
            if not name:
                name = kallsyms.name(address)
            self._locations[address] = name
        return name

    def records(self, counts: dict[DropKey, int],
                labels: dict[int, str]) -> list[DropRecord]:
        """`counts` named (see `records`)."""
        return records(counts, labels, self.names, self.location)

    def close(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
        if self._obj is not None:
            self._obj.close()
            self._obj = None



def records(counts: dict[DropKey, int], labels: dict[int, str], names: ReasonNames,
            location: Callable[[int], str]) -> list[DropRecord]:
    """Named drop records. `labels` maps a namespace's cookie (or, where the kernel has no
    cookies, its inode number) to its label; other namespaces are "netns:INUM", no
    namespace at all "-"."""
    out = []
    for key, count in sorted(counts.items()):
        if key.netns_cookie or key.netns_inum:
            netns = labels.get(key.netns_cookie or key.netns_inum, f"netns:{key.netns_inum}")
        else:
            netns = "-"
        out.append(DropRecord(netns, names.name(key.reason), location(key.location), count,
                              None if key.reason == NO_REASON else key.reason,
                              key.netns_cookie, key.netns_inum))
    return out


_shared: DropCounter | None = None


def share(counter: DropCounter | None) -> None:
    """Make `counter` the process's shared one (the agent's: its forked cases see it)."""
    global _shared
    _shared = counter


def shared() -> DropCounter | None:
    """The agent's counter, where this process is the agent or one of its cases."""
    return _shared
