"""`kmatrix kernels build|list|prune|config-check`: kernels built from source.

`add_kernels_parser(subparsers)` adds the command; each subcommand's `func(args)` returns
the exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..acquire import kconfig, sources
from ..acquire.build import builder as kbuild
from ..acquire.build import cache as kcache
from ..acquire.build.make import config_error
from ..acquire.build.plan import is_source_spec
from ..acquire.build.toolchain import DEFAULT_JOBS
from ..errors import ConfigError, ExitCode, KmatrixError


def _add_fragment_args(p: argparse.ArgumentParser) -> None:
    names = ", ".join(sorted(kconfig.available_fragments()))
    p.add_argument(
        "-f", "--fragment", action="append", dest="fragments", metavar="NAME",
        help=f"config fragment to merge (repeatable; default: all). Known: {names}; "
             "`all` = every non-opt-in fragment; a path works too; `--fragment=-NAME` (or "
             "SPEC@-NAME) leaves one out. base is always merged",
    )


def add_kernels_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `kernels` with its subcommands to the main CLI's subparsers."""
    kp: argparse.ArgumentParser = subparsers.add_parser(
        "kernels", help="build, list and prune kernels built from source",
        description="Kernels built from source (a tree, debian-source:X, a tarball or URL).",
    )

    def usage(_args: argparse.Namespace) -> int:
        kp.print_help()
        return ExitCode.USAGE_ERROR

    kp.set_defaults(func=usage)
    sub = kp.add_subparsers(dest="kernels_cmd", metavar="COMMAND")

    b = sub.add_parser("build", help="configure, verify and build (or reuse the cached build)")
    b.add_argument("specs", nargs="+", metavar="SPEC",
                   help="./linux, debian-source:6.12, linux-6.6.tar.xz, URL, kernel.org:6.6.30")
    _add_fragment_args(b)
    b.add_argument("-j", "--jobs", type=int, default=DEFAULT_JOBS,
                   help="make -j (default %(default)s)")
    b.add_argument("--force", action="store_true", help="rebuild even on a cache hit")
    b.add_argument("--config-only", action="store_true",
                   help="only configure and verify the config (no compiler runs)")
    b.add_argument("--mirror", help=f"kernel.org mirror base (default ${sources.MIRROR_ENV})")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.set_defaults(func=cmd_build)

    ls = sub.add_parser("list", help="cached kernels with size and key")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    pr = sub.add_parser("prune", help="remove cached kernels (all unless narrowed)")
    pr.add_argument("keys", nargs="*", metavar="KEY", help="keys or key prefixes to remove")
    pr.add_argument("--older-than", type=float, metavar="DAYS",
                    help="only kernels built more than DAYS ago")
    pr.add_argument("--keep-objs", action="store_true",
                    help="keep O= build folders (incremental rebuilds stay fast)")
    pr.add_argument("--sources", action="store_true",
                    help="also remove unpacked sources and downloaded tarballs")
    pr.add_argument("-n", "--dry-run", action="store_true", help="only say what would go")
    pr.set_defaults(func=cmd_prune)

    cc = sub.add_parser(
        "config-check",
        help="check a config against fragments (a cached build, a .config, /proc/config.gz)",
    )
    cc.add_argument("target", nargs="?", default="/proc/config.gz",
                    help="cache key (prefix), source spec, or a .config/config.gz file "
                         "(default /proc/config.gz: the running kernel)")
    _add_fragment_args(cc)
    cc.add_argument("--kernel-version", help="MAJOR.MINOR when the config header lacks it")
    cc.add_argument("--tree", type=Path, help="kernel source tree, to explain misses")
    cc.add_argument("--symbols", nargs="*", default=[], metavar="CONFIG_X",
                    help="also print these symbols' values")
    cc.add_argument("-v", "--verbose", action="store_true", help="list every satisfied option")
    cc.set_defaults(func=cmd_config_check)
    return kp


def _fail(exc: KmatrixError) -> int:
    print(f"error: {exc.describe()}", file=sys.stderr)
    return int(exc.exit_code)


def cmd_build(args: argparse.Namespace) -> int:
    results = []
    if args.config_only:
        return _config_only(args)
    for spec in args.specs:
        try:
            res = kbuild.build(spec, args.fragments, jobs=args.jobs, mirror=args.mirror,
                               force=args.force)
        except KmatrixError as exc:
            return _fail(exc)
        k = res.kernel()
        how = "cache hit" if res.cached else "built"
        print(f"{spec}: {how} in {res.seconds:.1f}s  key {res.entry.key}  release {k.release}")
        print(f"  image {k.image}")
        for line in res.plan.merged.skipped:
            print(f"  skip  {line}")
        check = res.check
        print(f"  config check: {'ok' if check.get('ok') else 'FAILED'}, "
              f"{len(check.get('satisfied', []))} requested options present"
              + (f", optional missing: {', '.join(m['symbol'] for m in check['misses'])}"
                 if check.get("misses") else ""))
        results.append({"spec": spec, "cached": res.cached, "seconds": round(res.seconds, 2),
                        "key": res.entry.key, "image": str(k.image), "release": k.release,
                        "label": k.label, "skipped": list(res.plan.merged.skipped)})
    if args.json:
        print(json.dumps(results, indent=2))
    return ExitCode.OK


def _config_only(args: argparse.Namespace) -> int:
    worst = ExitCode.OK
    for spec in args.specs:
        try:
            plan, check, path = kbuild.configure_spec(spec, args.fragments, mirror=args.mirror)
        except KmatrixError as exc:
            return _fail(exc)
        print(f"{spec}: {plan.identity.origin}, config {path}")
        print(check.format())
        if not check.ok:
            print(f"error: {config_error(check, path).describe()}", file=sys.stderr)
            worst = ExitCode.TESTS_FAILED
    return worst


def cmd_list(args: argparse.Namespace) -> int:
    items = list(kcache.entries())
    if args.json:
        print(json.dumps([{"key": e.key, "spec": e.spec, "release": e.release,
                           "size": e.size, "image": str(e.image),
                           "fragments": list(e.fragments), "created": e.created}
                          for e in items], indent=2))
    else:
        print(kcache.format_list(items))
    return ExitCode.OK


def cmd_prune(args: argparse.Namespace) -> int:
    res = kcache.prune(keys=args.keys or None, older_than_days=args.older_than,
                       objs=not args.keep_objs, sources=args.sources, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in res.removed:
        print(f"{verb} {path}")
    print(f"{verb} {len(res.removed)} folders, {kcache.human_size(res.freed)}")
    return ExitCode.OK


def _resolve_check_target(target: str) -> tuple[str, Path | None]:
    """(.config text, source tree or None) for a file, a cache key or a source spec."""
    path = Path(target)
    if path.is_file():
        return kbuild.load_dotconfig(path), None
    matches = [e for e in kcache.entries() if e.key.startswith(target)]
    if len(matches) == 1:
        return (matches[0].path / "config").read_text(), None
    if is_source_spec(target):
        res = kbuild.build(target, None)  # a cache hit when it was built with the same inputs
        return (res.entry.path / "config").read_text(), None
    raise ConfigError(f"{target!r} is not a config file, a cache key or a source spec",
                      hint="see `kmatrix kernels list` for keys")


def cmd_config_check(args: argparse.Namespace) -> int:
    try:
        text, _ = _resolve_check_target(args.target)
        check = kbuild.check_dotconfig(text, args.fragments, args.kernel_version, args.tree)
    except KmatrixError as exc:
        return _fail(exc)
    print(check.format(verbose=args.verbose))
    final = kconfig.parse_dotconfig(text)
    for sym in args.symbols:
        name = sym if sym.startswith("CONFIG_") else f"CONFIG_{sym}"
        print(f"  {name}={final.get(name, 'n (absent)')}")
    return ExitCode.OK if check.ok else ExitCode.TESTS_FAILED
