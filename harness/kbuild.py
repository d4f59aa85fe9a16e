"""Build kernels from source: configure from fragments, verify, make bzImage, cache.

One build is:

1. resolve the source spec and its identity (`harness.sources`), cheaply;
2. merge `kconfigs/` fragments for the tree's version (`harness.kconfig`);
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

import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import kcache, kconfig, sources
from .errors import (
    CommandError,
    ConfigError,
    InfraError,
    KernelSpecError,
    MissingToolError,
)
from .kernel import Kernel, make_label
from .runner import format_argv, run, which

#: kbuild ARCH for the host; only x86_64 guests are built today
ARCH = "x86_64"
#: default parallelism: the machines have 2 cores shared with VMs
DEFAULT_JOBS = 3
#: headers the build needs, with the Debian package that provides them
HEADERS = {
    "libelf.h": ("libelf-dev", "objtool and resolve_btfids read ELF with libelf"),
    "openssl/opensslv.h": ("libssl-dev", "module signing and certificate tools"),
}


_FRAGMENT_SUFFIX = re.compile(r"[A-Za-z0-9_.+-]+(?:,[A-Za-z0-9_.+-]+)*")


def split_spec(spec: str) -> tuple[str, list[str] | None]:
    """`debian-source:6.12@-netkit` -> (`debian-source:6.12`, [`-netkit`]).

    The `@FRAGMENTS` suffix picks config fragments where only a spec can be given
    (`kmatrix run --kernel`): comma-separated names, `-NAME` leaves one out of `all`.
    """
    base, sep, tail = spec.rpartition("@")
    if sep and base and _FRAGMENT_SUFFIX.fullmatch(tail) and sources.is_source_spec(base):
        return base, tail.split(",")
    return spec, None


def is_source_spec(spec: str) -> bool:
    """True when `spec` names kernel sources (a tree, debian-source:X, a tarball or URL)."""
    return sources.is_source_spec(split_spec(spec)[0])


@dataclass(frozen=True)
class Toolchain:
    """The compiler identity that goes into the cache key."""

    #: first line of `gcc --version`
    gcc: str
    #: `pahole --version` ("" when pahole is absent)
    pahole: str
    #: the kbuild ARCH
    arch: str
    #: whether ccache wraps the compiler (not part of the key: same output either way)
    ccache: str | None

    def key_text(self) -> str:
        return f"gcc={self.gcc}\npahole={self.pahole}\narch={self.arch}\n"


def detect_toolchain() -> Toolchain:
    gcc = run([which("gcc"), "--version"]).stdout.splitlines()[0].strip()
    try:
        pahole = run([which("pahole"), "--version"]).stdout.strip()
    except MissingToolError:
        pahole = ""
    try:
        ccache: str | None = which("ccache")
    except MissingToolError:
        ccache = None
    return Toolchain(gcc, pahole, ARCH, ccache)


def _pahole_number(text: str) -> int:
    m = re.search(r"(\d+)\.(\d+)", text)
    return int(m.group(1)) * 100 + int(m.group(2)) if m else 0


def check_build_tools(merged: kconfig.MergedConfig, toolchain: Toolchain) -> None:
    """MissingToolError naming the package for anything the build will need."""
    for tool in ("gcc", "make", "flex", "bison", "bc", "tar"):
        which(tool)
    btf = merged.options.get("CONFIG_DEBUG_INFO_BTF")
    if btf is not None and btf.value == "y":
        if not toolchain.pahole:
            raise MissingToolError(
                "CONFIG_DEBUG_INFO_BTF=y needs pahole, which is not installed",
                hint="install dwarves (pahole >= 1.16)",
            )
        if _pahole_number(toolchain.pahole) < 116:
            raise MissingToolError(f"pahole {toolchain.pahole} is too old for BTF (>= 1.16)",
                                   hint="install a newer dwarves")
    for header, (pkg, why) in HEADERS.items():
        if not any(Path(d, header).is_file() for d in ("/usr/include", "/usr/local/include")):
            raise MissingToolError(f"header {header} not found ({why})", hint=f"install {pkg}")


@dataclass(frozen=True)
class BuildPlan:
    """Everything decided before any compiler runs."""

    spec: str
    source: sources.SourceSpec
    identity: sources.SourceIdentity
    merged: kconfig.MergedConfig
    toolchain: Toolchain
    #: cache entry key: identity with uncommitted changes + config + toolchain + arch
    key: str
    #: O= folder key: source without uncommitted changes + toolchain + arch. The config is
    #: not part of it: Kbuild tracks each CONFIG_ symbol, so a config change rebuilds only
    #: what depends on the changed symbols (a lock keeps two builds out of one folder)
    dirkey: str

    @property
    def label(self) -> str:
        s = self.source
        if s.kind == "debian-source":
            base = f"debian-source-{s.location}"
        elif s.kind == "tree":
            base = f"src-{Path(s.location).name}-{self.identity.kernelversion}"
        else:
            base = Path(s.location).name
            for suffix in sources.TARBALL_SUFFIXES:
                base = base.removesuffix(suffix)
        extra = [f for f in kconfig.resolve_fragments(None) if f.name not in
                 self.merged.fragments and f.applies_to(self.merged.version)]
        tag = "" if not extra else "-no-" + "-".join(f.name for f in extra)
        return make_label(base + tag)


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() + b"\0")
    return h.hexdigest()[:20]


def plan_build(
    spec: str,
    fragments: Sequence[str] | None,
    *,
    cache: Path | None = None,
    mirror: str | None = None,
) -> BuildPlan:
    """Resolve the spec, merge fragments, compute the keys; nothing is built or unpacked.

    An `@FRAGMENTS` suffix on the spec is used when `fragments` is None.
    """
    base, suffix = split_spec(spec)
    if fragments is None:
        fragments = suffix
    source = sources.parse_source_spec(base, mirror)
    if source is None:
        raise KernelSpecError(f"{spec!r} is not a kernel source spec",
                              hint="use a kernel tree, debian-source:X, a tarball or its URL")
    identity = sources.identify(source, cache)
    if not identity.kernelversion:
        identity = sources.prepare(source, cache).identity
    version = kconfig.parse_version(identity.kernelversion)
    merged = kconfig.merge(kconfig.resolve_fragments(list(fragments) if fragments else None),
                           version)
    toolchain = detect_toolchain()
    key = _digest(identity.full, merged.digest(), toolchain.key_text())
    dirkey = _digest(identity.stable, toolchain.key_text())
    return BuildPlan(spec, source, identity, merged, toolchain, key, dirkey)


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
        )


# --- make -----------------------------------------------------------------------------


def make_argv(
    tree: Path, obj: Path, toolchain: Toolchain, jobs: int, *targets: str, nice: bool = True
) -> list[str]:
    """`nice -n 10 make -C TREE O=OBJ ARCH=x86_64 -jN CC='ccache gcc' ... TARGETS`."""
    cc = "ccache gcc" if toolchain.ccache else "gcc"
    return [
        *(["nice", "-n", "10"] if nice else []),
        which("make"), "-C", str(tree), f"O={obj}", f"ARCH={ARCH}",
        f"-j{jobs}", f"CC={cc}", f"HOSTCC={cc}",
        "KBUILD_BUILD_USER=kmatrix", "KBUILD_BUILD_HOST=kmatrix", *targets,
    ]


def make_env(cache: Path) -> dict[str, str]:
    """ccache settings: one cache for all builds, hits across O= folders."""
    return {
        "CCACHE_DIR": os.environ.get("CCACHE_DIR", str(kcache.ccache_dir(cache))),
        # paths are rewritten relative to the O= folder: the same source at the same depth
        # under kernels/ hits in every O= folder
        "CCACHE_BASEDIR": str(sources.kernels_dir(cache)),
        # -g puts the cwd (the O= folder) into the hash; debug info paths do not matter here
        "CCACHE_NOHASHDIR": "true",
        "CCACHE_MAXSIZE": os.environ.get("CCACHE_MAXSIZE", "10G"),
    }


@contextmanager
def locked(obj: Path, timeout: float = 4 * 3600) -> Iterator[None]:
    """Hold the O= folder's lock: one configure/build at a time per folder."""
    import fcntl

    obj.mkdir(parents=True, exist_ok=True)
    with (obj / ".kmatrix-lock").open("w") as f:
        deadline = time.monotonic() + timeout
        said = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise InfraError(f"{obj} stayed locked by another build for "
                                     f"{timeout:.0f}s") from None
                if not said:
                    print(f"[kbuild] waiting for another build in {obj}", file=sys.stderr,
                          flush=True)
                    said = True
                time.sleep(2.0)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def progress(obj: Path, what: str, expected: int, interval: float = 15.0) -> Iterator[None]:
    """A thread printing objects compiled so far while `make` runs (its output is captured)."""
    stop = threading.Event()
    start = time.time()
    tty = sys.stderr.isatty()

    def count() -> int:
        n = 0
        for root, _dirs, files in os.walk(obj):
            for name in files:
                if name.endswith(".o"):
                    try:
                        if os.stat(os.path.join(root, name)).st_mtime >= start:
                            n += 1
                    except OSError:
                        pass
        return n

    def loop() -> None:
        while not stop.wait(2.0 if tty else interval):
            n = count()
            total = f"/~{expected}" if expected else ""
            line = f"[kbuild] {what}: {n}{total} objects, {time.time() - start:.0f}s"
            if tty:
                sys.stderr.write("\r" + line + "   ")
            else:
                sys.stderr.write(line + "\n")
            sys.stderr.flush()

    thread = threading.Thread(target=loop, name="kbuild-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if tty:
            sys.stderr.write("\n")


def run_make(
    argv: list[str], env: dict[str, str], log: Path, what: str, obj: Path, expected: int = 0,
    timeout: float = 4 * 3600,
) -> str:
    """Run one make step; the whole output goes to `log` (also on failure)."""
    header = f"$ {format_argv(argv, env)}\n"
    print(f"[kbuild] {what}: {format_argv(argv)}", file=sys.stderr, flush=True)
    try:
        with progress(obj, what, expected):
            proc = run(argv, env=env, timeout=timeout)
    except CommandError as exc:
        with log.open("a") as f:
            f.write(header + exc.output)
        raise CommandError(argv, exc.returncode, exc.output + f"\n(full log: {log})") from None
    with log.open("a") as f:
        f.write(header + proc.stdout)
    return proc.stdout


# --- configure + verify ---------------------------------------------------------------


def configure(
    tree: Path, obj: Path, plan: BuildPlan, cache: Path, log: Path
) -> kconfig.ConfigCheck:
    """allnoconfig + merged fragment + olddefconfig in `obj`, then verify the result.

    Skipped when `obj` already holds a config made from the same merged request (the
    incremental rebuild path: re-running allnoconfig would rewrite .config).
    """
    stamp = obj / "kmatrix-merged.config"
    dotconfig = obj / ".config"
    wanted = plan.merged.render()
    env = make_env(cache)
    if not (dotconfig.is_file() and stamp.is_file() and stamp.read_text() == wanted):
        obj.mkdir(parents=True, exist_ok=True)
        stamp.unlink(missing_ok=True)
        base = make_argv(tree, obj, plan.toolchain, 1, "allnoconfig")
        run_make(base, env, log, "allnoconfig", obj)
        dotconfig.write_text(kconfig.apply_to_dotconfig(dotconfig.read_text(), plan.merged))
        run_make(make_argv(tree, obj, plan.toolchain, 1, "olddefconfig"), env, log,
                 "olddefconfig", obj)
        stamp.write_text(wanted)
    final = kconfig.parse_dotconfig(dotconfig.read_text())
    check = kconfig.check_config(plan.merged, final)
    if check.misses:  # explain them: reading the Kconfig tree costs about a second
        check = kconfig.check_config(plan.merged, final, kconfig.KconfigDb.scan(tree))
    (obj / "kmatrix-config-check.json").write_text(json.dumps(check.as_dict(), indent=2))
    return check


def config_error(check: kconfig.ConfigCheck, where: Path) -> ConfigError:
    names = ", ".join(m.option.name for m in check.failures)
    return ConfigError(
        f"requested config options did not survive olddefconfig: {names}\n"
        + "\n".join("  " + m.describe() for m in check.failures),
        hint=f"fix the fragment, or mark the option `# kmatrix: optional`; config in {where}",
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
) -> BuildResult:
    """Build `spec` with `fragments` (None: all non-opt-in), or return the cached kernel."""
    t0 = time.time()
    cache = cache or sources.cache_root()
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
    obj = kcache.objs_dir(cache) / plan.dirkey
    with locked(obj):
        hit = None if force else kcache.lookup(plan.key, cache)
        if hit is not None:  # built by whoever held the lock
            return BuildResult(plan, hit, True, time.time() - t0, hit.meta.get("check", {}))
        return _build_locked(plan, tree, obj, cache, jobs, t0)


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
    run_make(make_argv(tree, obj, plan.toolchain, jobs, *targets), env, log,
             "make " + " ".join(targets), obj, expected)
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
            "dirkey": plan.dirkey,
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
                                     "at": meta["created"], "objects_dir": plan.dirkey}]
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
    cache = cache or sources.cache_root()
    plan = plan_build(spec, fragments, cache=cache, mirror=mirror)
    for tool in ("make", "flex", "bison", "gcc"):
        which(tool)
    tree = sources.prepare(plan.source, cache).path
    obj = kcache.objs_dir(cache) / plan.dirkey
    with locked(obj):
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
