"""Kernel sources: turn a source spec into a tree on disk and an identity for the cache key.

Source specs (usable wherever `--kernel` is accepted):

- a local tree: a directory with a kernel `Makefile` and `Kconfig` (git checkout or an
  unpacked tarball): `./linux`, `/src/linux`, `tree:../linux`
- `debian-source:6.12`: Debian's `linux-source-6.12` package, fetched with `apt-get download`
  and unpacked with `dpkg-deb -x` into the cache (never installed on the host)
- a tarball by path: `./linux-6.6.30.tar.xz`
- a tarball by URL: `https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.6.30.tar.xz`, or
  the short form `kernel.org:6.6.30`. kernel.org URLs go to the mirror base in
  `$KMATRIX_KERNEL_MIRROR` (or `--mirror`) when set, so they work wherever a mirror is
  reachable.

Identity: a git commit plus a hash of uncommitted changes, or the tarball's SHA-256, or the
Debian package version plus its SHA-256. `SourceIdentity.stable` leaves the uncommitted part
out: the build folder is keyed by it, so an edit rebuilds incrementally in the same folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..command import run, which
from ..errors import ConfigError, InfraError, KernelSpecError, UserError
from ..paths import cache_root
from . import apt

SourceKind = Literal["tree", "debian-source", "tarball", "url"]

#: where kernel.org-style URLs point unless a mirror is configured
KERNEL_ORG_BASE = "https://cdn.kernel.org/pub"
#: URL prefixes that are "kernel.org" and get rewritten to the mirror base
KERNEL_ORG_PREFIXES = (
    "https://cdn.kernel.org/pub",
    "https://www.kernel.org/pub",
    "https://mirrors.edge.kernel.org/pub",
    "http://cdn.kernel.org/pub",
)
MIRROR_ENV = "KMATRIX_KERNEL_MIRROR"
TARBALL_SUFFIXES = (".tar.xz", ".tar.gz", ".tgz", ".tar.bz2", ".tar.zst", ".tar")


def kernels_dir(cache: Path | None = None) -> Path:
    return (cache or cache_root()) / "kernels"


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source spec."""

    #: what the user wrote, for messages and labels
    spec: str
    #: how to get the tree
    kind: SourceKind
    #: directory / Debian series (`6.12`) / tarball path / URL (mirror applied)
    location: str


def kernel_org_url(version: str, mirror: str | None = None) -> str:
    """`6.6.30` -> `{mirror}/linux/kernel/v6.x/linux-6.6.30.tar.xz`."""
    major = version.split(".", 1)[0]
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?(-rc\d+)?", version):
        raise KernelSpecError(f"kernel.org:{version}: not a kernel version",
                              hint="write e.g. kernel.org:6.6.30")
    base = KERNEL_ORG_BASE
    return apply_mirror(f"{base}/linux/kernel/v{major}.x/linux-{version}.tar.xz", mirror)


def apply_mirror(url: str, mirror: str | None = None) -> str:
    """Rewrite a kernel.org URL to the mirror base (`mirror` or $KMATRIX_KERNEL_MIRROR)."""
    base = mirror if mirror is not None else os.environ.get(MIRROR_ENV, "")
    if not base:
        return url
    for prefix in KERNEL_ORG_PREFIXES:
        if url.startswith(prefix + "/"):
            return base.rstrip("/") + url[len(prefix):]
    return url


def looks_like_kernel_tree(path: Path) -> bool:
    return (path / "Makefile").is_file() and (path / "Kconfig").is_file() and (
        path / "scripts" / "kconfig"
    ).is_dir()


def parse_source_spec(spec: str, mirror: str | None = None) -> SourceSpec | None:
    """The SourceSpec for `spec`, or None when it is not a source spec (e.g. `debian:6.12`)."""
    if spec.startswith("debian-source:"):
        series = spec.split(":", 1)[1]
        if not re.fullmatch(r"\d+\.\d+", series):
            raise KernelSpecError(f"{spec}: expected debian-source:MAJOR.MINOR",
                                  hint="e.g. debian-source:6.12 (package linux-source-6.12)")
        return SourceSpec(spec, "debian-source", series)
    if spec.startswith("kernel.org:"):
        return SourceSpec(spec, "url", kernel_org_url(spec.split(":", 1)[1], mirror))
    if spec.startswith(("http://", "https://")):
        return SourceSpec(spec, "url", apply_mirror(spec, mirror))
    if spec.startswith("tarball:"):
        return SourceSpec(spec, "tarball", str(Path(spec[8:]).expanduser().resolve()))
    if spec.startswith("tree:"):
        return SourceSpec(spec, "tree", str(Path(spec[5:]).expanduser().resolve()))
    if spec.endswith(TARBALL_SUFFIXES) and Path(spec).expanduser().is_file():
        return SourceSpec(spec, "tarball", str(Path(spec).expanduser().resolve()))
    path = Path(spec).expanduser()
    if ("/" in spec or spec.startswith(".")) and path.is_dir() and looks_like_kernel_tree(path):
        return SourceSpec(spec, "tree", str(path.resolve()))
    return None


def is_source_spec(spec: str) -> bool:
    try:
        return parse_source_spec(spec) is not None
    except KernelSpecError:
        return True  # it is meant as one, and resolving it will report the problem


@dataclass(frozen=True)
class SourceIdentity:
    """What "the same source" means for the cache."""

    #: tree / debian-source / tarball / url
    kind: SourceKind
    #: the committed or packaged part: `git-<commit>`, `sha256-<hex>`, `deb-<ver>-<sha>`
    stable: str
    #: hash of uncommitted changes in a local tree ("" when clean or not a tree)
    dirty: str
    #: `make kernelversion` of the tree, e.g. `6.12.117`
    kernelversion: str
    #: one line for reports: "Debian linux-source-6.12 6.12.117-1~deb12u1"
    origin: str

    @property
    def full(self) -> str:
        return f"{self.stable}+dirty-{self.dirty}" if self.dirty else self.stable


@dataclass(frozen=True)
class SourceTree:
    """A kernel source tree ready for `make -C path O=...`."""

    path: Path
    identity: SourceIdentity


# --- helpers ----------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def makefile_version(tree: Path) -> str:
    """`VERSION.PATCHLEVEL.SUBLEVEL[EXTRAVERSION]` from the top Makefile."""
    try:
        text = (tree / "Makefile").read_text(errors="replace")[:4000]
    except OSError as exc:
        raise KernelSpecError(f"{tree}: no readable Makefile: not a kernel tree") from exc
    fields = {}
    for key in ("VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION"):
        m = re.search(rf"^{key}\s*=\s*(\S*)\s*$", text, re.M)
        fields[key] = m.group(1) if m else ""
    if not fields["VERSION"] or not fields["PATCHLEVEL"]:
        raise KernelSpecError(f"{tree}/Makefile has no VERSION/PATCHLEVEL: not a kernel tree")
    version = f"{fields['VERSION']}.{fields['PATCHLEVEL']}"
    if fields["SUBLEVEL"]:
        version += f".{fields['SUBLEVEL']}"
    return version + fields["EXTRAVERSION"]


@contextmanager
def staging_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A temporary folder in `parent` (same filesystem: results are renamed into place)."""
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def extract_tarball(tarball: Path, dest: Path) -> Path:
    """Unpack into `dest` (atomically); the kernel tree inside it is returned."""
    ready = dest / ".kmatrix-ready"
    if ready.is_file():
        return dest / ready.read_text().strip()
    with staging_dir(dest.parent, ".extract-") as tmp:
        run(["tar", "-xf", str(tarball), "-C", str(tmp)], timeout=1800)
        tops = [p for p in tmp.iterdir() if p.is_dir()]
        if len(tops) != 1 or not looks_like_kernel_tree(tops[0]):
            raise KernelSpecError(f"{tarball}: expected one kernel source folder inside, "
                                  f"found {sorted(p.name for p in tmp.iterdir())}")
        (tmp / ".kmatrix-ready").write_text(tops[0].name + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    return dest / ready.read_text().strip()


# --- local trees ------------------------------------------------------------------------


def tree_identity(tree: Path) -> SourceIdentity:
    """git commit + hash of uncommitted changes, or a path key + stat fingerprint."""
    version = makefile_version(tree)
    if (tree / ".git").exists():
        git = which("git")
        head = run([git, "-C", str(tree), "rev-parse", "HEAD"]).stdout.strip()
        diff = run([git, "-C", str(tree), "diff", "HEAD", "--binary", "--no-ext-diff"],
                   timeout=600).stdout
        untracked = run([git, "-C", str(tree), "ls-files", "--others", "--exclude-standard",
                         "-z"]).stdout
        h = hashlib.sha256(diff.encode())
        for rel in sorted(filter(None, untracked.split("\0"))):
            p = tree / rel
            h.update(rel.encode() + b"\0")
            if p.is_file():
                h.update(sha256_file(p).encode())
        dirty = h.hexdigest()[:16] if (diff or untracked) else ""
        return SourceIdentity("tree", f"git-{head[:16]}", dirty, version,
                              f"git tree {tree} at {head[:12]}" + (" (dirty)" if dirty else ""))
    # an unpacked tarball: the folder is the stable part, file stats are the changes
    h = hashlib.sha256()
    for root, dirs, files in os.walk(tree):
        dirs.sort()
        for name in sorted(files):
            p = Path(root, name)
            try:
                st = p.lstat()
            except OSError:
                continue
            h.update(f"{p.relative_to(tree)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    stable = "tree-" + hashlib.sha256(str(tree).encode()).hexdigest()[:16]
    return SourceIdentity("tree", stable, h.hexdigest()[:16], version, f"source folder {tree}")


def check_clean_srctree(tree: Path) -> None:
    """An O= build refuses a source tree that was configured in place: say so up front."""
    if (tree / ".config").exists() or (tree / "include" / "config").is_dir():
        raise ConfigError(
            f"{tree} has been configured or built in place (.config or include/config)",
            hint=f"kmatrix builds out of tree; run `make -C {tree} mrproper` first",
        )


# --- Debian linux-source-X --------------------------------------------------------------


#: what apt's candidate choice depends on: the package lists and the pins/suites
APT_STATE_PATHS = (
    Path("/var/lib/apt/lists"),
    Path("/etc/apt/preferences.d"),
    Path("/etc/apt/preferences"),
    Path("/etc/apt/sources.list.d"),
    Path("/etc/apt/sources.list"),
)


def apt_state() -> str:
    """Changes whenever `apt-get update` ran or pins/suites changed (mtimes of their files)."""
    h = hashlib.sha256()
    for path in APT_STATE_PATHS:
        try:
            h.update(f"{path}:{path.stat().st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{path}:-\n".encode())
    return h.hexdigest()[:16]


def debian_source_package(series: str, cache: Path | None = None) -> tuple[str, str, str]:
    """(package, candidate version, SHA256) for `linux-source-SERIES`, from apt's lists.

    apt-cache costs seconds on a loaded machine, so the answer is remembered until apt's
    lists or pins change (a cache hit then needs no apt call at all).
    """
    memo = kernels_dir(cache) / "src" / "debian-source" / "resolved.json"
    state = apt_state()
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    entry = known.get(series)
    if isinstance(entry, dict) and entry.get("apt_state") == state:
        return str(entry["package"]), str(entry["version"]), str(entry["sha256"])
    resolved = _apt_resolve(series)
    known[series] = {"apt_state": state, "package": resolved[0], "version": resolved[1],
                     "sha256": resolved[2]}
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
    tmp.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
    tmp.replace(memo)
    return resolved


def _apt_resolve(series: str) -> tuple[str, str, str]:
    pkg = f"linux-source-{series}"
    try:
        found = apt.candidate(pkg)
    except UserError:
        raise KernelSpecError(
            f"debian-source:{series}: no package {pkg} in the configured apt suites",
            hint="run scripts/bootstrap (adds bookworm-backports/trixie-backports), "
                 "then `apt-get update`; reachable here: 6.1, 6.12, 7.2, 7.3",
        ) from None
    return pkg, found.version, found.sha256


def debian_identity(series: str, cache: Path | None = None) -> SourceIdentity:
    pkg, version, sha = debian_source_package(series, cache)
    upstream = version.split("-", 1)[0]
    return SourceIdentity("debian-source", f"deb-{version}-{sha[:16]}", "", upstream,
                          f"Debian {pkg} {version}")


def fetch_debian_source(series: str, cache: Path) -> SourceTree:
    identity = debian_identity(series, cache)
    pkg = f"linux-source-{series}"
    version = identity.origin.rsplit(" ", 1)[1]
    dest = kernels_dir(cache) / "src" / "debian-source" / version.replace("~", "_")
    ready = dest / ".kmatrix-ready"
    if ready.is_file():
        return SourceTree(dest / ready.read_text().strip(), identity)
    with staging_dir(kernels_dir(cache) / "downloads", ".deb-") as tmp:
        print(f"[kbuild] fetching {pkg}={version} (apt-get download; not installed)",
              file=sys.stderr, flush=True)
        debs = apt.download([f"{pkg}={version}"], tmp, timeout=1800)
        if len(debs) != 1:
            raise InfraError(f"apt-get download {pkg}={version} left {len(debs)} .deb files")
        run([which("dpkg-deb"), "-x", str(debs[0]), str(tmp / "root")], timeout=600)
        tarballs = sorted((tmp / "root" / "usr" / "src").glob("linux-source-*.tar.*"))
        if not tarballs:
            raise InfraError(f"{debs[0].name} holds no /usr/src/linux-source-*.tar.*")
        print(f"[kbuild] unpacking {tarballs[0].name}", file=sys.stderr, flush=True)
        tree = extract_tarball(tarballs[0], dest)
    return SourceTree(tree, identity)


# --- tarballs: path or URL --------------------------------------------------------------


def tarball_identity(path: Path) -> SourceIdentity:
    if not path.is_file():
        raise KernelSpecError(f"tarball {path} does not exist")
    sha = sha256_file(path)
    m = re.search(r"linux-(\d+\.\d+(?:\.\d+)?(?:-rc\d+)?)", path.name)
    return SourceIdentity("tarball", f"sha256-{sha[:24]}", "", m.group(1) if m else "",
                          f"tarball {path.name} sha256 {sha[:12]}")


def download(url: str, cache: Path, timeout: float = 600) -> Path:
    """Fetch `url` once into the cache (keyed by URL); later calls return the file."""
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    dest_dir = kernels_dir(cache) / "downloads" / hashlib.sha256(url.encode()).hexdigest()[:16]
    dest = dest_dir / name
    if dest.is_file():
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    print(f"[kbuild] downloading {url}", file=sys.stderr, flush=True)
    part = dest.with_name(name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, part.open("wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise KernelSpecError(
            f"cannot download {url}: {exc}",
            hint=f"set ${MIRROR_ENV} (or --mirror) to a reachable kernel.org mirror base",
        ) from exc
    part.rename(dest)
    return dest


def identify(spec: SourceSpec, cache: Path | None = None) -> SourceIdentity:
    """The source identity, as cheaply as possible (no unpacking; URLs are fetched once)."""
    cache = cache or cache_root()
    if spec.kind == "debian-source":
        return debian_identity(spec.location, cache)
    if spec.kind == "tree":
        return tree_identity(Path(spec.location))
    if spec.kind == "tarball":
        return tarball_identity(Path(spec.location))
    return tarball_identity(download(spec.location, cache))


def prepare(spec: SourceSpec, cache: Path | None = None) -> SourceTree:
    """The source tree on disk (fetched and unpacked into the cache when needed)."""
    cache = cache or cache_root()
    if spec.kind == "debian-source":
        return fetch_debian_source(spec.location, cache)
    if spec.kind == "tree":
        tree = Path(spec.location)
        if not looks_like_kernel_tree(tree):
            raise KernelSpecError(f"{tree} is not a kernel source tree (no Makefile/Kconfig)")
        check_clean_srctree(tree)
        return SourceTree(tree, tree_identity(tree))
    path = Path(spec.location) if spec.kind == "tarball" else download(spec.location, cache)
    identity = tarball_identity(path)
    dest = kernels_dir(cache) / "src" / "tarball" / identity.stable
    tree = extract_tarball(path, dest)
    if not identity.kernelversion:
        identity = SourceIdentity(identity.kind, identity.stable, "", makefile_version(tree),
                                  identity.origin)
    return SourceTree(tree, identity)
