"""Kernel build benchmark: prints the figures issue 3 asks for.

    .venv/bin/python benchmarks/kbuild_bench.py [--spec debian-source:6.12] [--boots 2]
                                                [--debian-image PATH] [--skip-incremental]

Figures (every command goes through harness.command and is printed so it can be re-run):

1. clean build: the `build_seconds` recorded when SPEC was first built into the cache
   (trimmed config: allnoconfig + kconfigs/), against the defconfig-based 19 minutes
   measured on these machines (ENVIRONMENT.md);
2. cached rebuild: the whole `kmatrix kernels build SPEC` command again (a cache hit);
3. incremental rebuild: one file of SPEC's unpacked source is touched and SPEC rebuilt
   (--force) in its kept O= folder; with --tree-incremental, the source is used as a local
   tree instead (new identity per change, same O= folder; costs a first build of the tree);
4. boot to a command under TCG: `vng --disable-kvm -r IMAGE --exec 'uname -r'`, the built
   kernel against Debian's packaged kernel of the same series.

Builds run at `nice -n 10`; the machine is shared, so the load average is printed with
each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.acquire import sources
from harness.acquire.build import cache as kcache
from harness.acquire.build import plan as build_plan
from harness.command import format_argv, run, which
from harness.errors import CommandError, KmatrixError

#: defconfig-based build of linux-source-6.12 on these machines (ENVIRONMENT.md)
DEFCONFIG_MINUTES = 19.0
#: the file touched for the incremental figure (exists in every kernel since 2.6)
TOUCHED = "net/core/dev.c"


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def timed(argv: list[str], env: dict[str, str] | None = None, timeout: float = 7200) -> float:
    print(f"  $ {format_argv(argv, env)}", flush=True)
    t0 = time.monotonic()
    run(argv, env=env, timeout=timeout, capture=False)
    return time.monotonic() - t0


def kmatrix_build(spec: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli_kernels", "build", spec, *extra]


def boot_seconds(image: Path, boots: int) -> list[float]:
    vng = which("vng")
    venv_bin = str(Path(sys.executable).parent)
    env = {"PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"}
    times = []
    for _ in range(boots):
        # -v: the console too. Without udev on the host, virtme-ng-init finds no
        # /dev/virtio-ports links, runs the command on the console and vng exits 255; the
        # command's output is then only on the console, so success is "uname -r printed".
        argv = [vng, "-v", "--disable-kvm", "-r", str(image), "--exec", "uname -r"]
        print(f"  $ {format_argv(argv)}", flush=True)
        t0 = time.monotonic()
        proc = run(argv, env=env, timeout=600, check=False)
        elapsed = time.monotonic() - t0
        releases = [ln.strip() for ln in proc.stdout.splitlines()
                    if re.fullmatch(r"\d+\.\d+\S*", ln.strip())]
        if not releases:
            raise CommandError(argv, proc.returncode, proc.stdout)
        times.append(elapsed)
        print(f"    -> {releases[-1]} in {elapsed:.1f}s (vng exit {proc.returncode})", flush=True)
    return times


def debian_image(series: str) -> Path | None:
    """Debian's packaged `amd64` kernel of `series`: in /boot or in kmatrix's package cache."""
    cands = sorted(Path("/boot").glob(f"vmlinuz-{series}.*-amd64"))
    cands += sorted((sources.kernels_dir() / "debian").glob(f"*{series}*/boot/vmlinuz-*-amd64"))
    readable = [c for c in cands if os.access(c, os.R_OK)]
    return readable[0] if readable else None  # /boot first: the host boots it already


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default="debian-source:6.12")
    ap.add_argument("--boots", type=int, default=2, help="boots per kernel (median)")
    ap.add_argument("--debian-image", type=Path, help="packaged kernel to compare boots with")
    ap.add_argument("--skip-incremental", action="store_true")
    ap.add_argument("--tree-incremental", action="store_true",
                    help="measure the incremental build through SPEC's source as a local "
                         "tree (costs a first build of that tree, ccache warm)")
    ap.add_argument("--skip-boot", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    figures: dict[str, object] = {"spec": args.spec}
    os.chdir(Path(__file__).resolve().parent.parent)

    try:
        print(f"[1] build {args.spec} (a cache hit if it was built before)", flush=True)
        t_first = timed(kmatrix_build(args.spec))
        plan = build_plan.plan_build(args.spec, None)
        entry = kcache.lookup(plan.key)
        if entry is None:
            raise SystemExit(f"{args.spec} is not in the cache after building it")
        history = entry.meta.get("builds") or [{"seconds": entry.meta.get("build_seconds")}]
        clean = float(history[0].get("seconds") or 0.0)  # the first build of this entry
        figures["clean_build_s"] = clean
        figures["defconfig_build_s"] = DEFCONFIG_MINUTES * 60
        figures["first_command_s"] = round(t_first, 1)

        print("[2] the same build command again (cache hit)", flush=True)
        figures["cached_rebuild_s"] = round(timed(kmatrix_build(args.spec)), 2)
        figures["load_at_cached"] = load()

        if not args.skip_incremental:
            tree = sources.prepare(plan.source).path
            if args.tree_incremental:
                # the spec flow of a local tree: a new identity (stat fingerprint), same O=
                print(f"[3] incremental: {tree} as a local tree, touch {TOUCHED}", flush=True)
                figures["tree_first_build_s"] = round(timed(kmatrix_build(str(tree))), 1)
                figures["load_at_tree_build"] = load()
                (tree / TOUCHED).touch()
                figures["incremental_rebuild_s"] = round(timed(kmatrix_build(str(tree))), 1)
            else:
                # the same O= folder SPEC was built in: make sees one changed file
                print(f"[3] incremental: touch {TOUCHED} in {tree}, rebuild with --force",
                      flush=True)
                (tree / TOUCHED).touch()
                figures["incremental_rebuild_s"] = round(
                    timed(kmatrix_build(args.spec, "--force")), 1)
            figures["load_at_incremental"] = load()

        if not args.skip_boot:
            print("[4] boot to `uname -r` under TCG", flush=True)
            built = boot_seconds(entry.image, args.boots)
            figures["boot_built_s"] = round(statistics.median(built), 1)
            deb = args.debian_image or debian_image(plan.source.location
                                                    if plan.source.kind == "debian-source"
                                                    else "6.12")
            if deb is not None:
                packaged = boot_seconds(deb, args.boots)
                figures["boot_debian_s"] = round(statistics.median(packaged), 1)
                figures["debian_image"] = str(deb)
            figures["load_at_boot"] = load()
    except KmatrixError as exc:
        print(f"error: {exc.describe()}", file=sys.stderr)
        return 1

    print("\nfigures")
    rows = [
        ("clean build, trimmed config", figures.get("clean_build_s"), "s"),
        ("clean build, defconfig-based (ENVIRONMENT.md)", figures["defconfig_build_s"], "s"),
        ("same build command again (cache hit)", figures.get("cached_rebuild_s"), "s"),
        ("local tree, first build (ccache warm)", figures.get("tree_first_build_s"), "s"),
        (f"incremental rebuild after touching {TOUCHED}",
         figures.get("incremental_rebuild_s"), "s"),
        ("boot to `uname -r`, built kernel (TCG)", figures.get("boot_built_s"), "s"),
        ("boot to `uname -r`, Debian package (TCG)", figures.get("boot_debian_s"), "s"),
    ]
    for name, value, unit in rows:
        if value is not None:
            print(f"  {name:<52} {value:>8} {unit}")
    print(f"  load average now: {load()} (2 cores, shared)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
