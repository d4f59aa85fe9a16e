"""The cache of kernels built from source: layout, index, list, prune.

Layout under `$KMATRIX_CACHE/kernels` (default `~/.cache/kmatrix/kernels`):

    build/images/KEY/     one built kernel: bzImage, config, build.log, meta.json and,
                          when the config has modules, lib/modules/RELEASE
    build/objs/DIRKEY/    the O= build folder, kept for incremental rebuilds
    src/...               unpacked sources (Debian linux-source, tarballs)
    downloads/...         fetched tarballs
    ccache/               the compiler cache

KEY hashes source identity (with uncommitted changes), merged config, toolchain and arch:
the same inputs give the same KEY, and a hit costs a few file reads. DIRKEY is the same
without the uncommitted-changes hash, so an edit rebuilds in the same O= folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...paths import cache_root
from ..sources import kernels_dir

META = "meta.json"


def images_dir(cache: Path | None = None) -> Path:
    return kernels_dir(cache) / "build" / "images"


def objs_dir(cache: Path | None = None) -> Path:
    return kernels_dir(cache) / "build" / "objs"


def ccache_dir(cache: Path | None = None) -> Path:
    return kernels_dir(cache) / "ccache"


@dataclass(frozen=True)
class CachedKernel:
    """One entry of `kmatrix kernels list`, read from its meta.json."""

    #: the content-addressed cache key (folder name under build/images)
    key: str
    #: the folder holding bzImage, config, build.log, meta.json
    path: Path
    #: the spec it was built for (`debian-source:6.12`, `./linux`, ...)
    spec: str
    #: `uname -r` of the built kernel
    release: str
    #: fragments merged into its config
    fragments: tuple[str, ...]
    #: the O= folder key it was built in
    dirkey: str
    #: bytes on disk of the image folder
    size: int
    #: seconds since the epoch when it was built
    created: float
    #: the whole meta.json, for reports
    meta: dict[str, Any]

    @property
    def image(self) -> Path:
        return self.path / "bzImage"


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def read_entry(path: Path, with_size: bool = True) -> CachedKernel | None:
    """The entry in `path`, or None when it is incomplete (no meta.json or no image)."""
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError):
        return None
    if not (path / "bzImage").is_file():
        return None
    return CachedKernel(
        key=path.name,
        path=path,
        spec=str(meta.get("spec", "")),
        release=str(meta.get("release", "")),
        fragments=tuple(meta.get("fragments", ())),
        dirkey=str(meta.get("dirkey", "")),
        size=dir_size(path) if with_size else 0,
        created=float(meta.get("created", 0.0)),
        meta=meta,
    )


def lookup(key: str, cache: Path | None = None) -> CachedKernel | None:
    """The cached kernel for `key` (no size computation: this is the fast cache-hit path)."""
    return read_entry(images_dir(cache) / key, with_size=False)


def entries(cache: Path | None = None) -> Iterator[CachedKernel]:
    root = images_dir(cache)
    if not root.is_dir():
        return
    for path in sorted(root.iterdir()):
        entry = read_entry(path)
        if entry is not None:
            yield entry


def store(staging: Path, key: str, meta: dict[str, Any], cache: Path | None = None) -> Path:
    """Move a finished `staging` folder into place as entry `key` (atomic rename)."""
    (staging / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    dest = images_dir(cache) / key
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        shutil.rmtree(dest)
    staging.rename(dest)
    return dest


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def format_list(items: list[CachedKernel], cache: Path | None = None) -> str:
    """The `kmatrix kernels list` table."""
    if not items:
        return f"no built kernels in {images_dir(cache)}"
    rows = [("KEY", "SPEC", "RELEASE", "IMAGE", "OBJ DIR", "BUILT", "FRAGMENTS")]
    for e in items:
        obj = objs_dir(cache) / e.dirkey
        rows.append((
            e.key, e.spec, e.release, human_size(e.size),
            human_size(dir_size(obj)) if e.dirkey and obj.is_dir() else "-",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created)),
            ",".join(f for f in e.fragments if f != "base"),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


@dataclass(frozen=True)
class PruneResult:
    """What `prune` removed (or would remove, with dry_run)."""

    removed: tuple[Path, ...]
    freed: int


def prune(
    cache: Path | None = None,
    *,
    keys: list[str] | None = None,
    older_than_days: float | None = None,
    objs: bool = True,
    sources: bool = False,
    dry_run: bool = False,
) -> PruneResult:
    """Remove cached kernels: the given keys (or prefixes), those older than N days, or all.

    `objs` also removes the O= folders no remaining kernel uses (and those of removed ones);
    `sources` also removes unpacked sources and downloads (they are fetched again on demand).
    """
    cache = cache or cache_root()
    now = time.time()
    victims: list[Path] = []
    keep_dirkeys: set[str] = set()
    for e in entries(cache):
        chosen = True
        if keys is not None:
            chosen = any(e.key.startswith(k) for k in keys)
        if chosen and older_than_days is not None:
            chosen = now - e.created > older_than_days * 86400
        if chosen:
            victims.append(e.path)
        else:
            keep_dirkeys.add(e.dirkey)
    # incomplete entries (a crashed build's staging folders) always go
    if images_dir(cache).is_dir():
        victims += [p for p in images_dir(cache).iterdir()
                    if p.name.startswith(".") or not (p / META).is_file()]
    if objs and objs_dir(cache).is_dir():
        victims += [p for p in objs_dir(cache).iterdir() if p.name not in keep_dirkeys]
    if sources:
        victims += [p for p in (kernels_dir(cache) / "src", kernels_dir(cache) / "downloads")
                    if p.is_dir()]
    freed = 0
    for path in victims:
        freed += dir_size(path)
        if not dry_run:
            shutil.rmtree(path, ignore_errors=True)
    return PruneResult(tuple(victims), freed)
