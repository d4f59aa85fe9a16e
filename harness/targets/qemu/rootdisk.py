"""The guest's root as a disk image, for VMs that are snapshotted (`--snapshot`).

QEMU refuses to save a VM while the guest has a 9p export mounted (the migration blocker
goes only when the export's root is unmounted), and virtme-ng's usual guest reads its root,
its guest tools and the kernel's modules over 9p. A snapshotted VM therefore boots from an
ext4 image (virtme-ng's `--root-disk`) that holds what the guest reads before the save: the
host's system folders and the Python environment at their host paths, the few modules of
the agent's first stage (harness.guest.preload), and virtme-ng's guest tools
(harness.targets.qemu.wrapper binds them from the image where virtme-ng would mount them
over 9p). The checkout, the case folders and the BPF objects are not in it: the guest binds
them from the host's cached 9p export after the save (or the restore), so they are read as
they are now. The image has empty folders where they go. The kernel's modules are a
second, small image of their own (one per kernel: the root image is the same for every
kernel of a run).

The image is built from hard links (a copy across filesystems) with `mke2fs -d`, once per
content: its name is a hash of every path, mode, size and modification time that goes in,
so a new package or an edited first-stage module makes a new image (about a minute for a
few GB here); an edited case or helper does not. Walking the content takes 0.7-1.4 s, so a
run starts on the image the same sources had at the last run while the walk runs
(`image_for`, `Candidate`): the VM checks it before its guest collects, and boots again on
a new image when the content changed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ...command import which
from ...errors import BootError, MissingToolError
from ...matrix.features import read_config
from ...progress import report_stage

#: the host's system folders the guest needs (those that exist; symlinks stay symlinks)
#: (not /opt: third-party trees, often large, that the guest has no use for)
SYSTEM_DIRS = ("usr", "etc", "var", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
#: what nothing in the guest reads: documentation, locales, headers, caches, logs
EXCLUDED = frozenset({
    "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/include",
    "usr/src", "var/cache", "var/log", "var/tmp", "var/lib/apt/lists"})
PYCACHE = "__pycache__"
#: empty folders the guest mounts things on
MOUNT_POINTS = ("dev", "proc", "sys", "run", "tmp", "root", "home", "mnt")
#: where the image holds virtme-ng's guest tools
GUEST_TOOLS = "usr/lib/kmatrix/virtme-guest"
#: images kept in the cache (older ones are deleted when a new one is made): root images,
#: module images
KEEP = {"root": 2, "modules": 8}


#: what a kernel needs to boot from the image: its PCI virtio devices, the disk, the
#: filesystem (built in, or modules: virtme-ng puts them in its initramfs)
NEEDS = ("CONFIG_VIRTIO_PCI", "CONFIG_VIRTIO_BLK", "CONFIG_EXT4_FS")


class ImageError(BootError):
    """The root image could not be made (space, mke2fs)."""


def unfit(config: Path | None, modules: bool) -> str | None:
    """Why a kernel (its .config `config`; with a module folder when `modules`) cannot boot
    from a root image, or None when it can."""
    values = read_config(config)
    if values is None:
        return "its .config is not known (booting from the root image needs virtio-blk and ext4)"
    for symbol in NEEDS:
        value = values.get(symbol, "n")
        if value == "y" or (value == "m" and modules):
            continue
        return (f"{symbol}={value} in {config}" + (" and kmatrix found no module folder"
                                                     if value == "m" else ""))
    try:
        which("mke2fs")
    except MissingToolError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class Source:
    """`host` (a folder or file) goes into the image at `guest` (relative to its root)."""

    host: Path
    guest: str
    #: names skipped at any depth
    skip: frozenset[str] = frozenset()
    #: paths (relative to `host`) skipped
    excluded: frozenset[str] = frozenset()
    #: an empty folder at `guest` (where the guest mounts something): nothing of `host`
    #: goes in, and nothing of it is in the image's hash but the path
    empty: bool = False
    #: only its folders are in the image's hash (everything goes in): a folder's mtime
    #: changes when a file in it is created, renamed or deleted, as package managers
    #: (dpkg, apt, pip) always do; a file written over in place is not seen
    shallow: bool = False


def sources(guest_tools: Path, *, root: Path = Path("/"), python: Iterable[Path] = (),
            system_python: Iterable[Path] = (), files: Iterable[Path] = (),
            folders: Iterable[Path] = ()) -> list[Source]:
    """What the root image holds: the system, the Python environment (`python`: the one
    kmatrix runs in, each file of it in the image's hash; `system_python`: the
    interpreter's installation, only its folders in the hash, as the system's) and `files`
    at their own paths, empty `folders` (the guest binds the checkout there), and
    virtme-ng's guest tools. Of the system, /etc is hashed file by file (edited in place by
    hand), /usr and /var by their folders (package managers rename their files into
    place): walking each of their ~150k files took 2 s, every run."""
    out = [Source(root / d, d, excluded=frozenset(
        e.removeprefix(d + "/") for e in EXCLUDED if e.startswith(d + "/")),
        shallow=d != "etc")
        for d in SYSTEM_DIRS if (root / d).exists() or (root / d).is_symlink()]
    out += [Source(Path(d), str(Path(d).relative_to("/")), empty=True) for d in folders]
    out += [Source(Path(d), str(Path(d).relative_to("/")), shallow=True)
            for d in system_python]
    out += [Source(Path(d), str(Path(d).relative_to("/"))) for d in python]
    out += [Source(Path(f), str(Path(f).relative_to("/"))) for f in files]
    out.append(Source(guest_tools, GUEST_TOOLS, skip=frozenset({PYCACHE})))
    return out


def _entries(src: Source) -> Iterator[tuple[str, os.stat_result]]:
    """(path relative to src.host, lstat) of everything under `src`, parents first."""
    st = os.lstat(src.host)
    yield "", st
    if not stat.S_ISDIR(st.st_mode):
        return
    for dirpath, dirs, files in os.walk(src.host):
        rel_dir = os.path.relpath(dirpath, src.host)
        rel_dir = "" if rel_dir == "." else rel_dir
        keep = []
        for name in sorted(dirs):
            rel = os.path.join(rel_dir, name)
            if name in src.skip or rel in src.excluded:
                continue
            st = os.lstat(os.path.join(dirpath, name))
            yield rel, st
            if stat.S_ISDIR(st.st_mode):  # a symlink to a folder is not walked
                keep.append(name)
        dirs[:] = keep
        for name in sorted(files):
            rel = os.path.join(rel_dir, name)
            if name not in src.skip and rel not in src.excluded:
                yield rel, os.lstat(os.path.join(dirpath, name))


def _folders(src: Source) -> Iterator[tuple[str, os.stat_result]]:
    """(path relative to src.host, lstat) of `src` and every folder under it (not of the
    files: no stat of each)."""
    st = os.lstat(src.host)
    yield "", st
    if not stat.S_ISDIR(st.st_mode):  # a symlink (/lib -> usr/lib) is not followed
        return
    for dirpath, dirs, _files in os.walk(src.host):
        rel_dir = os.path.relpath(dirpath, src.host)
        rel_dir = "" if rel_dir == "." else rel_dir
        dirs[:] = [d for d in sorted(dirs) if d not in src.skip
                   and os.path.join(rel_dir, d) not in src.excluded]
        for name in dirs:
            yield os.path.join(rel_dir, name), os.lstat(os.path.join(dirpath, name))


def fingerprint(srcs: Iterable[Source]) -> str:
    """A hash of every path, mode, size and mtime that goes into the image (of a `shallow`
    source: of its folders). Bytecode caches (`__pycache__`) go into the image but not into
    the hash: the host's Python writes them whenever it first imports a module (during a
    run too), and a cache is checked against its source, which is in the hash. (Walking
    the sources in threads side by side was slower: 1.3 s against 0.9 s here.)"""
    h = hashlib.sha256()
    for src in srcs:
        h.update(f"\0{src.host}\0{src.guest}\0{int(src.empty)}{int(src.shallow)}\n"
                 .encode())
        if src.empty:
            continue
        for rel, st in (_folders if src.shallow else _entries)(src):
            if PYCACHE in rel.split(os.sep):
                continue
            if stat.S_ISDIR(st.st_mode) and not src.shallow:  # its files say it all (a
                # new __pycache__ in it would change its mtime)
                h.update(f"{rel}\0{st.st_mode}\n".encode())
                continue
            h.update(f"{rel}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def content_size(srcs: Iterable[Source]) -> int:
    """Bytes of the files that go into the image."""
    return sum(st.st_size for src in srcs if not src.empty
               for _rel, st in _entries(src) if stat.S_ISREG(st.st_mode))


def stage(srcs: Iterable[Source], into: Path, *, root: bool = True) -> None:
    """The image's tree under `into`: hard links where the filesystem allows, else copies;
    a `root` image gets the folders the guest mounts things on."""
    into.mkdir(parents=True, exist_ok=True)
    for d in MOUNT_POINTS if root else ():
        (into / d).mkdir(parents=True, exist_ok=True)
    for src in srcs:
        base = into / src.guest
        base.parent.mkdir(parents=True, exist_ok=True)
        if src.empty:
            base.mkdir(exist_ok=True)
            continue
        for rel, st in _entries(src):
            host = src.host / rel if rel else src.host
            dest = base / rel if rel else base
            if stat.S_ISDIR(st.st_mode):
                dest.mkdir(exist_ok=True)
                os.chmod(dest, stat.S_IMODE(st.st_mode))
            elif stat.S_ISLNK(st.st_mode):
                if not dest.is_symlink() and not dest.exists():
                    os.symlink(os.readlink(host), dest)
            elif stat.S_ISREG(st.st_mode) and not dest.exists():
                try:
                    os.link(host, dest)
                except OSError:  # another filesystem, or not ours to link
                    shutil.copy2(host, dest)


def image_size(total: int) -> int:
    """Bytes for an ext4 image holding `total` bytes of files (metadata, slack)."""
    return (int(total * 1.25) + (512 << 20)) // (1 << 20) << 20


#: images this process made or found, by what went in (a restart does not walk it again)
_KNOWN: dict[tuple[Source, ...], Path] = {}
#: the content key each set of sources had at its last build or check (by what the sources
#: are: their paths and options), so the next run can start on that image at once
LAST = "last.json"
#: sets of sources remembered in LAST (the newest ones)
LAST_KEEP = 16


def forget() -> None:
    """Forget the images this process confirmed (its next boot starts as a new run's)."""
    _KNOWN.clear()


def describe(srcs: Iterable[Source]) -> str:
    """What the sources are (not what they hold): the key of their entry in LAST."""
    h = hashlib.sha256()
    for s in srcs:
        h.update(f"{s.host}\0{s.guest}\0{sorted(s.skip)}\0{sorted(s.excluded)}\0"
                 f"{int(s.empty)}{int(s.shallow)}\n".encode())
    return h.hexdigest()[:24]


def quick(srcs: Iterable[Source]) -> str:
    """The fingerprint of the sources that are single files (the first stage's modules, the
    boot script: what the guest runs before its image is confirmed, so what a stale image
    must never hold): checked before a run starts on the last image (a few ms)."""
    return fingerprint([s for s in srcs if not s.empty and not s.shallow and s.host.is_file()])


def _last(folder: Path) -> dict[str, dict[str, str]]:
    """LAST: describe(srcs) -> {"key": their content's fingerprint, "quick": quick(srcs)}."""
    try:
        data = json.loads((folder / LAST).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): {"key": str(v["key"]), "quick": str(v["quick"])} for k, v in data.items()
            if isinstance(v, dict) and "key" in v and "quick" in v}


def _remember(folder: Path, srcs: list[Source], key: str) -> None:
    """Note `key` as the content of `srcs` (under the folder's lock, or racing only with
    another writer of the same fact: the file is replaced whole)."""
    last = _last(folder)
    last.pop(describe(srcs), None)
    last[describe(srcs)] = {"key": key, "quick": quick(srcs)}
    tmp = folder / f"{LAST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(dict(list(last.items())[-LAST_KEEP:])))
    tmp.replace(folder / LAST)


class Walk(threading.Thread):
    """`fingerprint(srcs)` in a thread of its own (a daemon: an interrupted run does not
    wait for it)."""

    def __init__(self, srcs: list[Source]) -> None:
        super().__init__(name="rootdisk-walk", daemon=True)
        self.srcs = srcs
        self.key: str | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.key = fingerprint(self.srcs)
        except BaseException as exc:  # handed to whoever waits for the key
            self.error = exc

    def result(self) -> str:
        self.join()
        if self.error is not None:
            raise self.error
        assert self.key is not None
        return self.key


class Candidate:
    """The image for a set of sources, maybe before their content is known to be its own:
    a boot can start on the image those sources had at the last run while their content
    is walked (0.7-1.4 s here, as long as a restored guest takes to be ready); `confirm()`
    says whether the content is still that image's before anything of the guest counts.
    A stale candidate is `rebuild()`-ed: the image of the content found."""

    def __init__(self, srcs: list[Source], folder: Path, kind: str, image: Path,
                 walk: Walk | None = None) -> None:
        self.srcs, self.folder, self.kind, self.image = srcs, folder, kind, image
        self._walk = walk
        #: seconds confirm() waited for the walk (what was not overlapped)
        self.waited = 0.0

    @property
    def confirmed(self) -> bool:
        return self._walk is None

    def confirm(self) -> bool:
        """Whether the image holds the sources' content now (waits for the walk)."""
        if self._walk is None:
            return True
        t = time.monotonic()
        key = self._walk.result()
        self.waited = time.monotonic() - t
        if key != _key_of(self.image, self.kind):
            return False
        self._walk = None
        _KNOWN[tuple(self.srcs)] = self.image
        return True

    def rebuild(self) -> Path:
        """The image of the content the walk found (made if there is none)."""
        key = self._walk.result() if self._walk is not None else None
        self._walk = None
        self.image = build(self.srcs, self.folder, self.kind, key=key)
        return self.image


def _key_of(image: Path, kind: str) -> str:
    return image.name.removeprefix(f"{kind}-").removesuffix(".img")


def image_for(srcs: list[Source], folder: Path, kind: str = "root") -> Candidate:
    """The image to boot on: the one this process made or found (confirmed), else the one
    these sources had at their last build or check, while their content is walked
    (unconfirmed; only if their single files, `quick`, are what they were: a first stage
    changed in the checkout is never run from an older image), else the image built or
    found now (confirmed)."""
    known = _KNOWN.get(tuple(srcs))
    if known is not None and known.exists():
        return Candidate(srcs, folder, kind, known)
    last = _last(folder).get(describe(srcs))
    if last is not None and last["quick"] == quick(srcs):
        image = folder / f"{kind}-{last['key']}.img"
        if image.exists():
            return Candidate(srcs, folder, kind, image, Walk(srcs))
    return Candidate(srcs, folder, kind, build(srcs, folder, kind))


def build(srcs: list[Source], folder: Path, kind: str = "root", *,
          key: str | None = None) -> Path:
    """The image of `srcs` under `folder` (`kind`: "root" or "modules"), made unless one
    with the same content exists (the content is walked once per process: 0.6-0.9 s for
    the root image here; `key`: its fingerprint, if known already)."""
    known = _KNOWN.get(tuple(srcs))
    if known is not None and known.exists():
        return known
    key = key or fingerprint(srcs)
    image = folder / f"{kind}-{key}.img"
    folder.mkdir(parents=True, exist_ok=True)
    # one builder at a time (parallel workers want the same image): the others wait
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not image.exists():
            _make(srcs, folder, image, key, kind)
        _remember(folder, srcs, key)
    _KNOWN[tuple(srcs)] = image
    return image


def _make(srcs: list[Source], folder: Path, image: Path, key: str, kind: str) -> None:
    mke2fs = which("mke2fs")
    total = content_size(srcs)
    report_stage("snapshot", f"building the guest's {kind} image ({total >> 20} MB)")
    free = shutil.disk_usage(folder).free
    if free < image_size(total):
        raise ImageError(f"not enough free space for the guest's {kind} image in {folder}: "
                        f"it needs {image_size(total) >> 20} MB, {free >> 20} MB are free",
                        hint="free some space, or run with --no-snapshot")
    for stale in folder.glob("stage-*"):  # a builder that was killed (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    for stale in folder.glob("*.tmp"):
        stale.unlink(missing_ok=True)
    staging = folder / f"stage-{key}.{os.getpid()}"
    tmp = image.with_suffix(f".{os.getpid()}.tmp")
    try:
        stage(srcs, staging, root=kind == "root")
        proc = subprocess.run([mke2fs, "-q", "-F", "-t", "ext4", "-d", str(staging),
                               "-L", f"kmatrix-{kind}", "-E", "root_owner=0:0", str(tmp),
                               f"{image_size(total) >> 20}M"],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ImageError(f"mke2fs could not build the guest's {kind} image: "
                            f"{proc.stderr.strip()}", hint="see the message above; the "
                            f"image goes to {folder} (free space?)")
        tmp.replace(image)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        tmp.unlink(missing_ok=True)
    _prune(folder, image, kind)


def _prune(folder: Path, keep: Path, kind: str) -> None:
    """Delete all but the KEEP[kind] newest images of `kind` (a VM using one keeps it open:
    it goes when that VM ends)."""
    images = sorted(folder.glob(f"{kind}-*.img"), key=lambda p: p.stat().st_mtime,
                    reverse=True)
    for old in [p for p in images if p != keep][KEEP[kind] - 1:]:
        old.unlink(missing_ok=True)


def module_sources(modules: Path) -> list[Source]:
    """What a kernel's module image holds: its module folder, at the image's root."""
    return [Source(modules, "")]


def kernel_modules(image: Path, release: str | None) -> Path | None:
    """The module folder of a kernel image (a Debian package's tree: beside it, or the
    folder it is in, as trixie's packages ship it), if it has one."""
    if not release:
        return None
    if image.parent.name == release and (image.parent / "modules.dep").is_file():
        return image.parent
    for parent in (image.parent.parent, image.parent):
        for sub in ("usr/lib/modules", "lib/modules"):
            candidate = parent / sub / release
            if candidate.is_dir():
                return candidate
    return None
