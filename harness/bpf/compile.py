"""Compile bpf/*.bpf.c on the host, once per content hash, before any VM boots.

Every `bpf/NAME.bpf.c` is compiled with

    clang-19 -O2 -g -target bpf -D__TARGET_ARCH_x86 -I<vmlinux.h dir> -I<bpf/> -c

into ``$KMATRIX_CACHE/bpf/<hash>/NAME.bpf.o``. The hash covers the source, the project's own
headers in bpf/, the libbpf headers it may include, the vmlinux.h, the clang version string
and the flags, so an object is rebuilt exactly when one of its inputs changes, and never
twice otherwise.

vmlinux.h (for CO-RE) comes from Debian's ``linux-bpf-dev`` package: apt's candidate is
fetched with ``apt-get download`` and unpacked into ``$KMATRIX_CACHE/vmlinux-h/<version>/``.

The guest never compiles nor hashes: `object_set()` links the objects of this checkout into
``$KMATRIX_CACHE/bpf/sets/<digest>/NAME.bpf.o`` and the VM is told that folder
(``KMATRIX_BPF_OBJECTS``, read by `harness.guest.bpf.objects.object_path`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..acquire import apt
from ..command import run, which
from ..errors import CommandError, UserError
from ..paths import PROJECT_ROOT, cache_root

#: the repository's BPF C sources
BPF_DIR = PROJECT_ROOT / "bpf"
SOURCE_SUFFIX = ".bpf.c"
OBJECT_SUFFIX = ".bpf.o"

CLANG = "clang-19"
#: compile flags besides the include dirs (part of the cache key)
CFLAGS: tuple[str, ...] = ("-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86")

VMLINUX_PACKAGE = "linux-bpf-dev"
#: where vmlinux.h sits inside the unpacked linux-bpf-dev package
VMLINUX_REL = Path("usr/include/x86_64-linux-gnu/linux/bpf/vmlinux.h")
#: libbpf's BPF-side headers; their contents are part of the cache key when present
LIBBPF_HEADERS = Path("/usr/include/bpf")

#: bump to invalidate every cached object (e.g. when the compile recipe changes)
_RECIPE = b"kmatrix-bpfobj-1"


def sources(bpf_dir: Path = BPF_DIR) -> dict[str, Path]:
    """Every BPF source, by object name (``tcx_chain`` for ``bpf/tcx_chain.bpf.c``)."""
    return {
        p.name[: -len(SOURCE_SUFFIX)]: p for p in sorted(bpf_dir.glob("*" + SOURCE_SUFFIX))
    }


# --------------------------------------------------------------------------- vmlinux.h


@dataclass(frozen=True)
class VmlinuxHeader:
    """A vmlinux.h unpacked from a Debian package into the cache."""

    path: Path
    package: str
    version: str

    @property
    def include_dir(self) -> Path:
        return self.path.parent


def _vmlinux_dir() -> Path:
    return cache_root() / "vmlinux-h"


def _record_path() -> Path:
    return _vmlinux_dir() / "current.json"


def _header_for(version: str) -> VmlinuxHeader | None:
    path = _vmlinux_dir() / version / VMLINUX_REL
    return VmlinuxHeader(path, VMLINUX_PACKAGE, version) if path.is_file() else None


@functools.cache
def _candidate_version() -> str:
    """The version of linux-bpf-dev that apt would fetch: its candidate."""
    return apt.candidate(VMLINUX_PACKAGE).version


def _fetch_vmlinux_h(version: str) -> VmlinuxHeader:
    """apt-get download + dpkg-deb -x of linux-bpf-dev=version into the cache."""
    dest = _vmlinux_dir() / version
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vmlinux-h-", dir=dest.parent) as tmp:
        tmpdir = Path(tmp)
        debs = [d for d in apt.download([f"{VMLINUX_PACKAGE}={version}"], tmpdir, timeout=600)
                if d.name.startswith(f"{VMLINUX_PACKAGE}_")]
        if len(debs) != 1:
            raise CommandError(
                ["apt-get", "download", f"{VMLINUX_PACKAGE}={version}"],
                0,
                f"expected one .deb in {tmpdir}, found {[d.name for d in debs]}",
            )
        unpack = tmpdir / "root"
        run([which("dpkg-deb"), "-x", str(debs[0]), str(unpack)])
        if not (unpack / VMLINUX_REL).is_file():
            raise CommandError(
                ["dpkg-deb", "-x", str(debs[0]), str(unpack)],
                0,
                f"{debs[0].name} has no {VMLINUX_REL}",
            )
        digest = hashlib.sha256(debs[0].read_bytes()).hexdigest()
        (unpack / "source.json").write_text(
            json.dumps(
                {"package": VMLINUX_PACKAGE, "version": version, "deb": debs[0].name,
                 "deb_sha256": digest, "fetched": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                indent=1,
            )
        )
        if dest.exists():  # a concurrent fetch won the race; keep its copy
            shutil.rmtree(unpack)
        else:
            unpack.rename(dest)
    header = _header_for(version)
    assert header is not None
    return header


def _write_record(header: VmlinuxHeader) -> None:
    record = _record_path()
    tmp = record.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"package": header.package, "version": header.version}))
    os.replace(tmp, record)


def _recorded_header() -> VmlinuxHeader | None:
    try:
        data = json.loads(_record_path().read_text())
    except (OSError, ValueError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return _header_for(version) if isinstance(version, str) else None


def vmlinux_h(*, fetch: bool = True) -> VmlinuxHeader:
    """The vmlinux.h objects are compiled against.

    With `fetch`, apt's candidate of linux-bpf-dev is used, downloaded when not cached yet,
    and recorded as current. Without it, the recorded choice is used (asking apt costs
    seconds); UserError when nothing is recorded.
    """
    if fetch:
        header = _header_for(_candidate_version()) or _fetch_vmlinux_h(_candidate_version())
        if _recorded_header() != header:
            _write_record(header)
        return header
    recorded = _recorded_header()
    if recorded is not None:
        return recorded
    raise UserError(f"no vmlinux.h recorded in {_vmlinux_dir()}",
                    hint="run harness.bpf.compile.build_all() (kmatrix run does) first")


# --------------------------------------------------------------------------- hashing


@functools.cache
def _clang_version(clang: str) -> str:
    return run([clang, "--version"]).stdout.strip()


@functools.cache
def _file_digest(path: Path, mtime_ns: int, size: int) -> bytes:
    # keyed on (mtime, size) too, so an edited file in a long-lived process is re-read
    return hashlib.sha256(path.read_bytes()).digest()


def _digest(path: Path) -> bytes:
    st = path.stat()
    return _file_digest(path, st.st_mtime_ns, st.st_size)


def _input_files(source: Path, bpf_dir: Path) -> list[Path]:
    """Files besides vmlinux.h that can change the object: the source and all headers
    (kmatrix's own too, for a project's objects: they may include bpf/run_trace.h)."""
    files = [source, *sorted(bpf_dir.glob("*.h"))]
    if bpf_dir.resolve() != BPF_DIR.resolve():
        files += sorted(BPF_DIR.glob("*.h"))
    if LIBBPF_HEADERS.is_dir():
        files += sorted(LIBBPF_HEADERS.glob("*.h"))
    return files


def _inputs_key(source: Path, vmlinux: VmlinuxHeader, bpf_dir: Path) -> str:
    """Digest of everything but the compiler: lets a clang-less guest find the object."""
    h = hashlib.sha256(_RECIPE)
    for f in _input_files(source, bpf_dir):
        h.update(f.name.encode() + b"\0" + _digest(f))
    h.update(b"vmlinux.h\0" + _digest(vmlinux.path))
    h.update("\0".join(CFLAGS).encode())
    return h.hexdigest()


def object_hash(source: Path, vmlinux: VmlinuxHeader, clang_version: str,
                bpf_dir: Path = BPF_DIR) -> str:
    """The cache key of `source`: its inputs, vmlinux.h, clang's version and the flags."""
    h = hashlib.sha256(_inputs_key(source, vmlinux, bpf_dir).encode())
    h.update(b"\0clang\0" + clang_version.encode())
    return h.hexdigest()[:32]


# --------------------------------------------------------------------------- building


def _compile(clang: str, source: Path, vmlinux: VmlinuxHeader, out: Path,
             bpf_dir: Path) -> None:
    """Compile atomically: the object appears under its final name complete or not at all."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    argv = [clang, *CFLAGS, f"-I{vmlinux.include_dir}", f"-I{bpf_dir}", f"-I{BPF_DIR}", "-c",
            str(source), "-o", str(tmp)]
    try:
        run(argv, timeout=600)  # CommandError carries the compiler's output
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _source(name: str, bpf_dir: Path) -> Path:
    src = bpf_dir / f"{name}{SOURCE_SUFFIX}"
    if not src.is_file():
        known = ", ".join(sources(bpf_dir)) or "none"
        raise UserError(f"no BPF source {src}", hint=f"known objects: {known}")
    return src


def _default_vmlinux() -> VmlinuxHeader:
    """The recorded header (what build_all chose) first: asking apt costs seconds. Only a
    host with nothing recorded yet fetches."""
    try:
        return vmlinux_h(fetch=False)
    except UserError:
        return vmlinux_h(fetch=True)


def build(name: str, *, vmlinux: VmlinuxHeader | None = None, bpf_dir: Path = BPF_DIR) -> Path:
    """Compile bpf/NAME.bpf.c unless the cache already has it; return the object's path."""
    source = _source(name, bpf_dir)
    clang = which(CLANG)
    vmlinux = vmlinux or _default_vmlinux()
    key = object_hash(source, vmlinux, _clang_version(clang), bpf_dir)
    obj = cache_root() / "bpf" / key / f"{name}{OBJECT_SUFFIX}"
    if obj.is_file():
        return obj
    _compile(clang, source, vmlinux, obj, bpf_dir)
    manifest = {"source": str(source), "inputs": _inputs_key(source, vmlinux, bpf_dir),
                "clang": _clang_version(clang), "flags": list(CFLAGS),
                "vmlinux_h": {"package": vmlinux.package, "version": vmlinux.version}}
    obj.with_suffix(".json").write_text(json.dumps(manifest, indent=1))
    return obj


def build_all(names: Iterable[str] | None = None, *, bpf_dir: Path = BPF_DIR) -> dict[str, Path]:
    """Build (or find cached) every object in bpf/, before any VM boots."""
    vmlinux = vmlinux_h(fetch=True)
    wanted = list(names) if names is not None else list(sources(bpf_dir))
    return {name: build(name, vmlinux=vmlinux, bpf_dir=bpf_dir) for name in wanted}


#: environment variable telling the guest where this run's objects are
OBJECTS_ENV = "KMATRIX_BPF_OBJECTS"


def object_set(bpf_dir: Path = BPF_DIR, extra: Sequence[Path] = ()) -> Path:
    """Build every object of `bpf_dir` (and of the folders `extra`: a project's own bpf/)
    and gather them, by name, in one folder the guest reads:
    ``$KMATRIX_CACHE/bpf/sets/<digest>/NAME.bpf.o`` (hard links into the cache). The digest
    covers the objects' own keys, so the same checkout gives the same folder. A project's
    object may not take the name of one of kmatrix's (UserError naming both)."""
    built = build_all(bpf_dir=bpf_dir)
    for folder in extra:
        if folder.resolve() == bpf_dir.resolve():
            continue
        theirs = build_all(bpf_dir=folder)
        clash = sorted(set(theirs) & set(built))
        if clash:
            raise UserError(f"BPF object name(s) {', '.join(clash)} in {folder} are "
                            f"kmatrix's too ({bpf_dir})", hint="rename the project's source")
        built.update(theirs)
    digest = hashlib.sha256("".join(f"{n}={p.parent.name}\n" for n, p in sorted(
        built.items())).encode()).hexdigest()[:24]
    dest = cache_root() / "bpf" / "sets" / digest
    if (dest / ".complete").is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for path in built.values():
        link = dest / path.name
        if not link.exists():
            tmp = dest / f".{path.name}.{os.getpid()}"
            os.link(path, tmp)
            os.replace(tmp, link)
    (dest / ".complete").write_text(json.dumps({n: str(p) for n, p in built.items()}))
    return dest


def object_path(name: str) -> Path:
    """Host side: the compiled bpf/NAME.bpf.c (built when missing)."""
    return build(name)
