"""BPF objects (.bpf.o) opened and loaded by libbpf, and where the guest finds them."""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ..closing import Closing
from ..environment import bpf_objects_dir
from . import core_btf
from .library import PrintLevel, capture_log, check_ptr, lib, oserror
from .maps import Map
from .programs import Program
from .structs import ObjectOpenOpts


class BpfObject(Closing):
    """A BPF ELF object opened and loaded by libbpf; closing it releases its programs and
    maps (and, with them, the attachments that only they kept alive).

        with BpfObject(path) as obj:
            link = obj.program("tc1").attach_tcx(ifindex)

    `autoload`: load only these programs (others are skipped, e.g. when a kernel lacks
    what they need). `expected_attach_type`: one type for all programs or a mapping
    name -> type, set before load. `prepare`: called after open, before load, for anything
    else (map sizes, autocreate...). `log_level`: verifier log level for every program.
    With `load=False` the object stays open-but-unloaded until `load()`.
    """

    def __init__(self, path: str | Path, *, autoload: Iterable[str] | None = None,
                 expected_attach_type: int | Mapping[str, int] | None = None,
                 prepare: Callable[[BpfObject], None] | None = None,
                 log_level: int = 0, load: bool = True) -> None:
        self.path = Path(path)
        self._ptr: int | None = None
        self.loaded = False
        what = f"bpf_object__open_file({self.path})"
        opts = None
        minimal = core_btf.ready()
        if minimal is not None:  # CO-RE against this kernel's BTF, the needed part only
            opts = ObjectOpenOpts(btf_custom_path=str(minimal).encode())
        with capture_log(PrintLevel.WARN) as msgs:
            ptr = lib().bpf_object__open_file(
                str(self.path).encode(), None if opts is None else ctypes.byref(opts))
        self._ptr = check_ptr(ptr, what, "".join(msgs))
        try:
            if autoload is not None:
                wanted = set(autoload)
                unknown = wanted - set(self.programs)
                if unknown:
                    raise KeyError(f"{self.path.name}: no program(s) {sorted(unknown)}")
                for name, prog in self.programs.items():
                    prog.set_autoload(name in wanted)
            if isinstance(expected_attach_type, int):
                for prog in self.programs.values():
                    prog.set_expected_attach_type(expected_attach_type)
            elif expected_attach_type is not None:
                for name, attach_type in expected_attach_type.items():
                    self.program(name).set_expected_attach_type(attach_type)
            if log_level:
                for prog in self.programs.values():
                    prog.set_log_level(log_level)
            if prepare is not None:
                prepare(self)
            if load:
                self.load()
        except BaseException:
            self.close()
            raise

    @property
    def name(self) -> str:
        return (lib().bpf_object__name(self._require_open()) or b"").decode()

    def _require_open(self) -> int:
        if self._ptr is None:
            raise ValueError(f"BPF object {self.path.name} is closed")
        return self._ptr

    def load(self) -> None:
        """bpf_object__load: create maps, load programs. On failure the OSError carries
        libbpf's log, including the verifier's."""
        ptr = self._require_open()
        with capture_log(PrintLevel.WARN) as msgs:
            ret = lib().bpf_object__load(ptr)
        if ret < 0:
            raise oserror(-ret, f"bpf_object__load({self.path.name})", "".join(msgs))
        self.loaded = True

    @property
    def programs(self) -> dict[str, Program]:
        ptr = self._require_open()
        out: dict[str, Program] = {}
        cur = lib().bpf_object__next_program(ptr, None)
        while cur:
            prog = Program(self, cur)
            out[prog.name] = prog
            cur = lib().bpf_object__next_program(ptr, cur)
        return out

    @property
    def maps(self) -> dict[str, Map]:
        ptr = self._require_open()
        out: dict[str, Map] = {}
        cur = lib().bpf_object__next_map(ptr, None)
        while cur:
            m = Map(obj=self, ptr=cur)
            out[m.name] = m
            cur = lib().bpf_object__next_map(ptr, cur)
        return out

    def program(self, name: str) -> Program:
        ptr = lib().bpf_object__find_program_by_name(self._require_open(), name.encode())
        if not ptr:
            raise KeyError(f"{self.path.name}: no program {name!r} "
                           f"(have: {', '.join(self.programs)})")
        return Program(self, ptr)

    def map(self, name: str) -> Map:
        ptr = lib().bpf_object__find_map_by_name(self._require_open(), name.encode())
        if not ptr:
            raise KeyError(f"{self.path.name}: no map {name!r} (have: {', '.join(self.maps)})")
        return Map(obj=self, ptr=ptr)

    def close(self) -> None:
        if self._ptr is not None:
            lib().bpf_object__close(self._ptr)
            self._ptr = None

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def __repr__(self) -> str:
        return f"<BpfObject {self.path.name}{' closed' if self.closed else ''}>"


def object_path(name: str) -> Path:
    """The compiled bpf/NAME.bpf.c of this run. The host compiles every object before the
    VM boots and names their folder in KMATRIX_BPF_OBJECTS; the guest neither compiles nor
    hashes anything."""
    path = bpf_objects_dir() / f"{name}.bpf.o"
    if not path.is_file():
        known = sorted(p.name.removesuffix(".bpf.o") for p in path.parent.glob("*.bpf.o"))
        raise FileNotFoundError(f"no BPF object {name!r} in {path.parent} (known: "
                                f"{', '.join(known) or 'none'}): is bpf/{name}.bpf.c in the "
                                "checkout the host compiled?")
    return path
