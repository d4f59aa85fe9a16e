"""Build kernels from source: configure from fragments, verify, make bzImage, cache.

One build is:

1. resolve the source spec and its identity (`acquire.sources`), cheaply;
2. merge `kconfigs/` fragments for the tree's version (`acquire.kconfig`);
3. compute the cache key (source identity, merged config, toolchain, arch): a hit returns
   the cached image without touching the tree;
4. otherwise fetch/unpack the source, `make allnoconfig`, append the merged fragment,
   `make olddefconfig`, and check every requested symbol survived (ConfigError if not);
5. `nice make -jN bzImage` (and `modules` when the config has any `=m` option) through
   ccache in a kept O= folder (keyed without uncommitted changes: edits build
   incrementally), with progress on the terminal and the full log kept;
6. copy bzImage, .config, log and meta.json into the content-addressed cache entry.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...command import run, which
from ...errors import ConfigError, InfraError
from ...paths import cache_root, locked
from .. import kconfig, sources
from ..kernel import Kernel
from . import cache as kcache
from .make import config_error, configure, make_argv, make_env, run_make
from .plan import BuildPlan, is_source_spec, plan_build
from .toolchain import DEFAULT_JOBS, check_build_tools


@dataclass(frozen=True)
class BuildResult:
    """A built (or cached) kernel."""

    plan: BuildPlan
    entry: kcache.CachedKernel
    #: True when no compiler ran
    cached: bool
    #: wall-clock seconds this call took
    seconds: float
    check: dict[str, Any] = field(default_factory=dict)

    def kernel(self) -> Kernel:
        meta = self.entry.meta
        props = {
            "build.key": self.entry.key,
            "build.source": str(meta.get("origin", "")),
            "build.fragments": ",".join(self.entry.fragments),
            "build.cached": "yes" if self.cached else "no",
            "config.check": "ok" if meta.get("check", {}).get("ok") else "failed",
        }
        skipped = meta.get("check", {}).get("skipped", [])
        if skipped:
            props["config.skipped"] = "; ".join(skipped)
        missing = [m["symbol"] for m in meta.get("check", {}).get("misses", [])]
        if missing:
            props["config.missing_optional"] = ",".join(missing)
        return Kernel(
            spec=self.plan.spec,
            label=self.plan.label,
            image=self.entry.image,
            release=self.entry.release or None,
            origin=f"built from {meta.get('origin', '')} "
                   f"(fragments: {','.join(self.entry.fragments)})",
            version=self.entry.key,
            properties=props,
            config=self.entry.path / "config",
        )


# --- the build --------------------------------------------------------------------------


def build(
    spec: str,
    fragments: Sequence[str] | None = None,
    *,
    jobs: int = DEFAULT_JOBS,
    cache: Path | None = None,
    mirror: str | None = None,
    force: bool = False,
    objdir: Path | None = None,
) -> BuildResult:
    """Build `spec` with `fragments` (None: all non-opt-in), or return the cached kernel.

    `objdir` pins the O= folder (default: the one keyed by the source without uncommitted
    changes): `kmatrix bisect` builds every commit in one folder, so each step is an
    incremental build. A pinned folder is configured again at each build (allnoconfig +
    fragments + olddefconfig), as a fresh build of the tree as it is now would be."""
    t0 = time.time()
    cache = cache or cache_root()
    plan = plan_build(spec, fragments, cache=cache, mirror=mirror)
    if not force:
        hit = kcache.lookup(plan.key, cache)
        if hit is not None:
            return BuildResult(plan, hit, True, time.time() - t0, hit.meta.get("check", {}))
    check_build_tools(plan.merged, plan.toolchain)
    if plan.toolchain.ccache is None:
        print("[kbuild] ccache not found (install ccache): building without a compiler cache",
              file=sys.stderr, flush=True)
    tree = sources.prepare(plan.source, cache).path
    obj = objdir or kcache.objs_dir(cache) / plan.dirkey
    with _build_lock(obj):
        hit = None if force else kcache.lookup(plan.key, cache)
        if hit is not None:  # built by whoever held the lock
            return BuildResult(plan, hit, True, time.time() - t0, hit.meta.get("check", {}))
        if objdir is not None:  # configured for another commit's Kconfig: configure again
            (obj / ".config").unlink(missing_ok=True)
        return _build_locked(plan, tree, obj, cache, jobs, t0)


#: present in an O= folder while make runs in it: a build killed outright leaves it behind
BUILDING_MARKER = ".kmatrix-building"


def forget_interrupted_build(obj: Path) -> list[Path]:
    """After a build that was killed (SIGKILL, OOM, a cancelled CI job), an object file
    may be half written yet newer than its source, and make would keep it. Remove every
    build product written since that build started, so make redoes exactly those (ccache
    makes it cheap). Returns what was removed."""
    marker = obj / BUILDING_MARKER
    if not marker.is_file():
        return []
    since = marker.stat().st_mtime
    removed = []
    for path in obj.rglob("*"):
        if path.suffix in (".o", ".ko", ".a", ".mod") or path.name in ("vmlinux", "bzImage"):
            try:
                if path.is_file() and path.stat().st_mtime >= since:
                    path.unlink()
                    removed.append(path)
            except OSError:
                continue
    print(f"[kbuild] {obj}: the previous build there was interrupted; removed the "
          f"{len(removed)} build products it wrote, make redoes them", file=sys.stderr,
          flush=True)
    marker.unlink()
    return removed


@contextmanager
def _build_lock(obj: Path, timeout: float = 4 * 3600) -> Iterator[None]:
    """One configure/build at a time per O= folder (across processes)."""
    try:
        with locked(obj / ".kmatrix-lock", timeout=timeout,
                    waiting=f"waiting for another build in {obj}"):
            yield
    except TimeoutError as exc:
        raise InfraError(f"{obj} stayed locked by another build for {timeout:.0f}s") from exc


def _build_locked(
    plan: BuildPlan, tree: Path, obj: Path, cache: Path, jobs: int, t0: float
) -> BuildResult:
    spec = plan.spec
    log = obj / "kmatrix-build.log"
    log.write_text(f"# kmatrix build of {spec} ({plan.identity.origin}) key {plan.key}\n")
    for line in plan.merged.skipped:
        print(f"[kbuild] {line}", file=sys.stderr, flush=True)
    check = configure(tree, obj, plan, cache, log)
    if not check.ok:
        raise config_error(check, obj / ".config")
    if check.misses:
        print(check.format(), file=sys.stderr, flush=True)
    final = kconfig.parse_dotconfig((obj / ".config").read_text())
    # modules only when the config has some: MODULES=y alone (the BPF JIT needs it before
    # 6.10) with everything built in leaves nothing to build or ship
    modules = final.get("CONFIG_MODULES") == "y" and "m" in final.values()
    targets = ["bzImage", "modules"] if modules else ["bzImage"]
    expected_file = obj / "kmatrix-objects"
    expected = int(expected_file.read_text()) if expected_file.is_file() else 0
    t_build = time.time()
    env = make_env(cache)
    forget_interrupted_build(obj)
    marker = obj / BUILDING_MARKER
    marker.write_text(f"{os.getpid()}\n")
    run_make(make_argv(tree, obj, plan.toolchain, jobs, *targets), env, log,
             "make " + " ".join(targets), obj, expected)
    marker.unlink()
    build_seconds = time.time() - t_build
    expected_file.write_text(str(sum(1 for _ in obj.rglob("*.o"))))
    release = run(make_argv(tree, obj, plan.toolchain, 1, "-s", "kernelrelease", nice=False),
                  env=env).stdout.strip().splitlines()[-1]
    images = kcache.images_dir(cache)
    images.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".stage-", dir=images) as tmp:
        stage = Path(tmp) / "entry"
        stage.mkdir()
        shutil.copy2(obj / "arch" / "x86" / "boot" / "bzImage", stage / "bzImage")
        shutil.copy2(obj / ".config", stage / "config")
        if modules:
            # KEY/lib/modules/RELEASE next to KEY/bzImage: virtme-ng looks for the modules
            # of an image in lib/modules of the folders above it, so the guest gets them
            run(make_argv(tree, obj, plan.toolchain, jobs, "modules_install",
                          f"INSTALL_MOD_PATH={stage}"), env=env)
        meta: dict[str, Any] = {
            "key": plan.key,
            "dirkey": obj.name,  # plan.dirkey unless the O= folder was pinned
            "spec": spec,
            "kind": plan.source.kind,
            "origin": plan.identity.origin,
            "source_id": plan.identity.full,
            "kernelversion": plan.identity.kernelversion,
            "release": release,
            "fragments": list(plan.merged.fragments),
            "config_digest": plan.merged.digest(),
            "toolchain": {"gcc": plan.toolchain.gcc, "pahole": plan.toolchain.pahole,
                          "arch": plan.toolchain.arch,
                          "ccache": bool(plan.toolchain.ccache)},
            "modules": modules,
            "build_seconds": round(build_seconds, 1),
            "created": time.time(),
            "host": platform.node(),
            "check": check.as_dict(),
        }
        # keep the history of --force rebuilds: the first one is the clean-build figure
        previous = kcache.lookup(plan.key, cache)
        history = list(previous.meta.get("builds", [])) if previous else []
        meta["builds"] = [*history, {"seconds": meta["build_seconds"],
                                     "at": meta["created"], "objects_dir": obj.name}]
        shutil.copy2(log, stage / "build.log")
        dest = kcache.store(stage, plan.key, meta, cache)
    entry = kcache.read_entry(dest, with_size=False)
    assert entry is not None
    print(f"[kbuild] built {release} in {build_seconds:.0f}s: {dest / 'bzImage'}",
          file=sys.stderr, flush=True)
    return BuildResult(plan, entry, False, time.time() - t0, meta["check"])


def configure_spec(
    spec: str,
    fragments: Sequence[str] | None = None,
    *,
    cache: Path | None = None,
    mirror: str | None = None,
) -> tuple[BuildPlan, kconfig.ConfigCheck, Path]:
    """Only configure and verify (no compiler): (plan, check, the .config path)."""
    cache = cache or cache_root()
    plan = plan_build(spec, fragments, cache=cache, mirror=mirror)
    for tool in ("make", "flex", "bison", "gcc"):
        which(tool)
    tree = sources.prepare(plan.source, cache).path
    obj = kcache.objs_dir(cache) / plan.dirkey
    with _build_lock(obj):
        check = configure(tree, obj, plan, cache, obj / "kmatrix-config.log")
    return plan, check, obj / ".config"


def resolve_built_kernel(spec: str, fragments: list[str] | None = None) -> Kernel | None:
    """The built (or cached) Kernel for a source spec; None when `spec` is not one."""
    if not is_source_spec(spec):
        return None
    return build(spec, fragments).kernel()


# --- config check of any .config (a cached build, a file, /proc/config.gz) ------------------


def load_dotconfig(path: Path) -> str:
    import gzip

    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode(errors="replace")


def check_dotconfig(
    text: str,
    fragments: Sequence[str] | None,
    version: str | None = None,
    tree: Path | None = None,
) -> kconfig.ConfigCheck:
    """Check a .config (text) against fragments, for the version in its header or `version`."""
    kv = kconfig.parse_version(version) if version else kconfig.dotconfig_version(text)
    if kv is None:
        raise ConfigError("cannot tell the kernel version of this config",
                          hint="pass --kernel-version MAJOR.MINOR")
    merged = kconfig.merge(kconfig.resolve_fragments(list(fragments) if fragments else None),
                           kv)
    final = kconfig.parse_dotconfig(text)
    db = kconfig.KconfigDb.scan(tree) if tree else None
    return kconfig.check_config(merged, final, db)
