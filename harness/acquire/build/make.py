"""Running make in a kept O= folder: argv, ccache environment, progress, configure."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ...command import format_argv, run, which
from ...errors import CommandError, ConfigError
from ...progress import active, report_acquire
from .. import kconfig, sources
from .cache import ccache_dir
from .plan import BuildPlan
from .toolchain import ARCH, Toolchain


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
        "CCACHE_DIR": os.environ.get("CCACHE_DIR", str(ccache_dir(cache))),
        # paths are rewritten relative to the O= folder: the same source at the same depth
        # under kernels/ hits in every O= folder
        "CCACHE_BASEDIR": str(sources.kernels_dir(cache)),
        # -g puts the cwd (the O= folder) into the hash; debug info paths do not matter here
        "CCACHE_NOHASHDIR": "true",
        "CCACHE_MAXSIZE": os.environ.get("CCACHE_MAXSIZE", "10G"),
    }


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
        while not stop.wait(2.0 if tty or active() else interval):
            n = count()
            total = f"/~{expected}" if expected else ""
            elapsed = time.time() - start
            if active() is not None:  # the run's live view shows it
                report_acquire(f"build {what}", f"{n}{total} objects, {elapsed:.0f}s")
                continue
            line = f"[kbuild] {what}: {n}{total} objects, {elapsed:.0f}s"
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
        report_acquire(f"build {what}", "")
        if tty and active() is None:
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
