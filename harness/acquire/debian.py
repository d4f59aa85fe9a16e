"""Acquire Debian kernel packages (`debian:6.12`) without installing them into the host.

The newest `amd64`-flavour package of the series is found with apt-cache, fetched with
`apt-get download` and extracted into the cache keyed by the exact package version, so a
second run downloads nothing. Layouts differ across Debian releases:

- up to 6.12: `linux-image-VER-amd64` holds `boot/vmlinuz-VER` and `lib/modules/VER`;
- 7.x: `linux-image-VER-amd64` is a metapackage; the image is `usr/lib/modules/VER/vmlinuz`
  in `linux-binary-VER-amd64`, the modules in `linux-modules-VER-amd64`.

Extracted packages ship no modules.dep, so `depmod -b` runs once after extraction.
"""

from __future__ import annotations

import json
import logging
import lzma
import re
import shutil
import tempfile
import time
from pathlib import Path

from ..command import run, which
from ..errors import CommandError, KernelSpecError
from ..paths import cache_root, locked
from ..progress import report_acquire
from . import apt
from .apt import Package
from .kernel import Kernel

log = logging.getLogger("kmatrix.debian")

FLAVOUR = "amd64"
_SERIES = re.compile(r"^\d+\.\d+$")
_META = "kmatrix-kernel.json"


def image_package_names(series: str, names: list[str]) -> list[str]:
    """Package names of `series`' amd64 kernel images among `names` (no -unsigned/-dbg/cloud/rt)."""
    pat = re.compile(rf"^linux-image-({re.escape(series)}(?:[.-][^ ]*)?)-{FLAVOUR}$")
    picked = []
    for name in names:
        m = pat.match(name)
        if not m:
            continue
        rel = m.group(1)
        # "6.1" must not match "6.12": the series is followed by '.', '-', '+' or nothing
        rest = rel[len(series) :]
        # an empty rest is a series metapackage (linux-image-6.12-amd64): skip it, we want
        # the exact versioned package it points to
        if not rest or rest[0] not in ".-+":
            continue
        if any(bad in rel for bad in ("cloud", "rt-", "-rt", "dbg")):
            continue
        picked.append(name)
    return picked


def available_series(names: list[str]) -> list[str]:
    series = set()
    for name in names:
        m = re.match(rf"^linux-image-(\d+)\.(\d+)[.-][^ ]*-{FLAVOUR}$", name)
        if m:
            series.add(f"{m.group(1)}.{m.group(2)}")
    return sorted(series, key=lambda s: tuple(int(x) for x in s.split(".")))


def newest_package(series: str) -> Package:
    """The newest amd64 image package of `series` known to apt; KernelSpecError if none."""
    if not _SERIES.match(series):
        raise KernelSpecError(
            f"bad Debian kernel series '{series}'", hint="use MAJOR.MINOR, e.g. debian:6.12"
        )
    names = apt.search_names(r"^linux-image-[0-9]")
    if not names:
        raise KernelSpecError(
            "apt knows no Debian kernel packages",
            hint="run scripts/bootstrap (adds the backports suites and runs apt-get update)",
        )
    candidates = image_package_names(series, names)
    if not candidates:
        raise KernelSpecError(
            f"no Debian {FLAVOUR} kernel package for series {series}",
            hint="series apt can reach: " + ", ".join(available_series(names)),
        )
    packages = apt.show(candidates)
    if not packages:
        raise KernelSpecError(f"apt-cache show gave nothing for {candidates}")
    return apt.newest(packages)


def _find_image(root: Path) -> tuple[Path, str, Path]:
    """(image, release, modules dir) inside an extracted package tree."""
    for image in sorted(root.glob("usr/lib/modules/*/vmlinuz")) + sorted(
        root.glob("lib/modules/*/vmlinuz")
    ):
        return image, image.parent.name, image.parent
    for image in sorted(root.glob("boot/vmlinuz-*")):
        release = image.name[len("vmlinuz-") :]
        for mods in (root / "lib/modules" / release, root / "usr/lib/modules" / release):
            if mods.is_dir():
                return image, release, mods
        raise KernelSpecError(f"{image}: no modules folder for {release} in the package")
    raise KernelSpecError(f"no kernel image found in the extracted package tree {root}")


def fetch(series: str, spec: str) -> Kernel:
    """Resolve `debian:SERIES` to an extracted kernel in the cache (download only once)."""
    pkg = newest_package(series)
    dest = cache_root() / "kernels" / "debian" / f"{pkg.name}_{pkg.version}"
    meta = dest / _META
    with locked(dest.parent / f"{dest.name}.lock"):
        if not meta.exists():
            _download_and_extract(pkg, dest)
        info = json.loads(meta.read_text())
        config = dest / "boot" / f"config-{info['release']}"
        if not config.is_file():
            _fetch_config(series, pkg.version, config)
    return Kernel(
        spec=spec,
        label=f"debian-{series}",
        image=dest / info["image"],
        release=info["release"],
        origin=f"Debian package {pkg.name} {pkg.version}",
        version=pkg.version,
        properties={"package": pkg.name, "package_version": pkg.version},
        config=config if config.is_file() else None,
    )


#: the member of linux-config-SERIES that is the amd64 flavour's config
_CONFIG_MEMBER = "config.amd64_none_amd64.xz"


def _fetch_config(series: str, version: str, dest: Path) -> None:
    """The 7.x packages ship no config beside the image: take it from linux-config-SERIES
    at the same version (Debian's record of how that kernel was configured). Without it
    the kernel runs anyway; its expectations then go by version alone."""
    name = f"linux-config-{series}"
    with tempfile.TemporaryDirectory(dir=dest.parent.parent, prefix=".cfg-") as tmp:
        tmpdir = Path(tmp)
        try:
            debs = apt.download([f"{name}={version}"], tmpdir, timeout=300)
        except CommandError as exc:
            log.warning("no %s=%s (%s): expectations by version only", name, version,
                        str(exc).splitlines()[0])
            return
        run(["dpkg-deb", "-x", str(debs[0]), str(tmpdir / "root")])
        found = sorted((tmpdir / "root").glob(f"usr/src/{name}/{_CONFIG_MEMBER}"))
        if not found:
            log.warning("%s has no %s: expectations by version only", debs[0].name,
                        _CONFIG_MEMBER)
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        part.write_bytes(lzma.decompress(found[0].read_bytes()))
        part.rename(dest)


def _download_and_extract(pkg: Package, dest: Path) -> None:
    which("dpkg-deb")
    which("depmod")
    if dest.exists():
        shutil.rmtree(dest)  # a half-extracted tree from an interrupted run
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".dl-") as tmp:
        tmpdir = Path(tmp)
        wanted = [f"{pkg.name}={pkg.version}"]
        # 7.x: the image package is a metapackage over linux-binary-* and linux-modules-*
        wanted += [
            d for d in pkg.depends if d.startswith(("linux-binary-", "linux-modules-"))
        ]
        log.info("downloading %s", " ".join(wanted))
        t0 = time.monotonic()
        label = f"debian {pkg.name}"

        def downloading(percent: float) -> None:
            report_acquire(label, f"downloading {pkg.version}: {percent:.0f}% "
                                  f"({time.monotonic() - t0:.0f}s)")

        downloading(0.0)
        debs = apt.download(wanted, tmpdir, timeout=900, on_percent=downloading)
        size = sum(d.stat().st_size for d in debs)
        took = max(time.monotonic() - t0, 1e-3)
        log.info("downloaded %.1f MB in %.0fs (%.1f MB/s)", size / 1e6, took, size / 1e6 / took)
        report_acquire(label, f"extracting {size / 1e6:.0f} MB")
        root = tmpdir / "root"
        for deb in debs:
            run(["dpkg-deb", "-x", str(deb), str(root)])
        image, release, mods = _find_image(root)
        base = mods.parent.parent.parent  # .../lib/modules/REL -> base for depmod -b
        run(["depmod", "-b", str(base), release])
        meta = {"image": str(image.relative_to(root)), "release": release,
                "package": pkg.name, "version": pkg.version}
        (root / _META).write_text(json.dumps(meta, indent=1))
        root.rename(dest)
        report_acquire(label, "")
