"""A kernel history with a planted regression, for `kmatrix bisect` on a real kernel.

    .venv/bin/python -m benchmarks.bisect_demo [--source /tmp/ksrc/linux-source-6.12]
                                               [--dest ~/kmatrix-bisect-demo/linux-6.12]
                                               [--no-build-break]

Copies Debian's unpacked linux-source-6.12 into a new git repository (one initial commit,
fixed author and dates, so the commit ids are the same on every machine for the same
source), adds five small commits on top and prints the `kmatrix bisect` command that must
name the planted one:

1. netkit: a comment on the default mode           (drivers/net/netkit.c; harmless)
2. veth: a comment                                 (drivers/net/veth.c; harmless)
3. netkit: refuse L2 mode                          PLANTED: netkit_check_mode() returns
   -EOPNOTSUPP for NETKIT_L2, so creating an L2 pair fails and
   cases/test_netkit.py::test_l2_arp_between_namespaces (make_topo(mode=L2) ->
   RTM_NEWLINK with IFLA_NETKIT_MODE=L2) fails with NetlinkError EOPNOTSUPP; L3 pairs (the
   netkit probe, the default) still work, so the case is not skipped
4. net: core: a line that does not compile         (net/core/dev.c `#error`: a build
   failure, which the bisect must skip; with --no-build-break a comment instead)
5. net: core: fix the build                        (removes it again)

The tree is not built or booted here: `kmatrix bisect` does that, one step per commit git
picks (the first step builds the whole kernel, later ones only what the commits changed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.acquire.sources import looks_like_kernel_tree
from harness.command import format_argv, run, which

DEFAULT_SOURCE = Path("/tmp/ksrc/linux-source-6.12")
DEFAULT_DEST = Path("~/kmatrix-bisect-demo/linux-6.12")
#: the case the planted commit breaks
CASE = "cases/test_netkit.py::test_l2_arp_between_namespaces"
#: a file in .git marking a repository this script made (--force removes only those)
MARKER = "kmatrix-bisect-demo"
#: fixed identity and dates: the same source gives the same commit ids everywhere
GIT_ENV = {
    "GIT_AUTHOR_NAME": "kmatrix bisect demo", "GIT_AUTHOR_EMAIL": "demo@kmatrix.invalid",
    "GIT_COMMITTER_NAME": "kmatrix bisect demo", "GIT_COMMITTER_EMAIL": "demo@kmatrix.invalid",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
}


@dataclass(frozen=True)
class Edit:
    """Replace `old` (exactly once in `path`) by `new`."""

    path: str
    old: str
    new: str


@dataclass(frozen=True)
class DemoCommit:
    subject: str
    edits: tuple[Edit, ...]
    #: what the commit does to the bisect: "" (nothing), "case" (breaks the case),
    #: "build" (breaks the build), "fix-build"
    effect: str = ""


NETKIT = "drivers/net/netkit.c"
DEV = "net/core/dev.c"
NET_DEV_INIT = "static int __init net_dev_init(void)\n"
BUILD_BREAK = '#error "kmatrix bisect demo: this commit does not build"\n'
BUILD_COMMENT = "/* kmatrix bisect demo: a comment only */\n"


def demo_commits(build_break: bool = True) -> list[DemoCommit]:
    """The five commits on top of the initial one, oldest first."""
    inserted = BUILD_BREAK if build_break else BUILD_COMMENT
    return [
        DemoCommit("netkit: say which mode a device gets by default", (Edit(
            NETKIT, "\tenum netkit_mode mode = NETKIT_L3;\n",
            "\tenum netkit_mode mode = NETKIT_L3; /* without IFLA_NETKIT_MODE */\n"),)),
        DemoCommit("veth: a comment before the channel callbacks", (Edit(
            "drivers/net/veth.c", "static void veth_get_channels(struct net_device *dev,\n",
            "/* kmatrix bisect demo: channel counts come from the real queues */\n"
            "static void veth_get_channels(struct net_device *dev,\n"),)),
        DemoCommit("netkit: refuse L2 mode", (Edit(
            NETKIT, "\tcase NETKIT_L2:\n\tcase NETKIT_L3:\n\t\treturn 0;\n",
            "\tcase NETKIT_L2:\n\t\treturn -EOPNOTSUPP;\n\tcase NETKIT_L3:\n\t\treturn 0;\n"),),
            effect="case"),
        DemoCommit("net: core: a line before net_dev_init" + (" that does not compile"
                                                              if build_break else ""),
                   (Edit(DEV, NET_DEV_INIT, inserted + NET_DEV_INIT),),
                   effect="build" if build_break else ""),
        DemoCommit("net: core: " + ("fix the build" if build_break else "drop the comment"),
                   (Edit(DEV, inserted + NET_DEV_INIT, NET_DEV_INIT),),
                   effect="fix-build" if build_break else ""),
    ]


def states(commits: list[DemoCommit]) -> list[str]:
    """What each commit (the initial one first) should be to a bisect step: "ok",
    "broken" (the case fails), "... nobuild" (the build fails). tests/unit/test_bisect.py
    bisects this same history with a fake step."""
    out, broken, nobuild = ["ok"], False, False
    for c in commits:
        broken = broken or c.effect == "case"
        nobuild = (nobuild or c.effect == "build") and c.effect != "fix-build"
        out.append(("broken" if broken else "ok") + (" nobuild" if nobuild else ""))
    return out


def apply_edit(tree: Path, edit: Edit) -> None:
    path = tree / edit.path
    text = path.read_text()
    if text.count(edit.old) != 1:
        raise SystemExit(f"{path}: expected exactly one {edit.old!r} "
                         f"(found {text.count(edit.old)}): not the source this demo knows")
    path.write_text(text.replace(edit.old, edit.new))


def git(tree: Path, *args: str, date: int = 0) -> str:
    """git in `tree` with the demo's identity; commits dated 2026-01-01 + `date` minutes."""
    stamp = f"2026-01-01T{date // 60:02d}:{date % 60:02d}:00Z"
    env = {**GIT_ENV, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    return run([which("git"), "-C", str(tree), *args], env=env, timeout=3600).stdout.strip()


def check_source(source: Path, commits: list[DemoCommit]) -> None:
    if not looks_like_kernel_tree(source):
        raise SystemExit(f"{source} is not an unpacked kernel source tree")
    for c in commits[:3]:  # the others edit what an earlier one wrote
        for edit in c.edits:
            if (source / edit.path).read_text().count(edit.old) != 1:
                raise SystemExit(f"{source / edit.path}: {edit.old!r} not found once: "
                                 "this demo is written for linux-source-6.12")


def make_history(source: Path, dest: Path, commits: list[DemoCommit]) -> list[str]:
    """Copy `source` to `dest`, commit it, add `commits`; the ids, the initial one first."""
    print(f"copying {source} to {dest} ...", flush=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", "--reflink=auto", str(source), str(dest)], timeout=3600)
    git(dest, "init", "-q", "-b", "main")
    (dest / ".git" / MARKER).write_text("made by benchmarks/bisect_demo.py\n")
    git(dest, "config", "gc.auto", "0")
    print("initial commit (git add of the whole tree: a few minutes) ...", flush=True)
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", f"{source.name}: Debian's source as unpacked", date=0)
    ids = [git(dest, "rev-parse", "HEAD")]
    for n, c in enumerate(commits, 1):
        for edit in c.edits:
            apply_edit(dest, edit)
        git(dest, "commit", "-q", "-a", "-m", c.subject, date=n)
        ids.append(git(dest, "rev-parse", "HEAD"))
    if git(dest, "status", "--porcelain"):
        raise SystemExit(f"{dest}: files left uncommitted; kmatrix bisect would refuse it")
    return ids


def bisect_argv(dest: Path, ids: list[str], results: Path) -> list[str]:
    """The command that must name the planted commit."""
    return [".venv/bin/kmatrix", "bisect", "--good", ids[0], "--bad", ids[-1],
            "--tree", str(dest), "--results-dir", str(results), CASE]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help="an unpacked linux-source-6.12 (default %(default)s)")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST,
                        help="the repository to create (default %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="remove --dest first when an earlier run of this script made it")
    parser.add_argument("--no-build-break", action="store_true",
                        help="commit 4 adds a comment instead of a line that does not build")
    args = parser.parse_args(argv)
    dest = args.dest.expanduser().resolve()
    commits = demo_commits(build_break=not args.no_build_break)
    check_source(args.source, commits)
    if dest.exists():
        if not (args.force and (dest / ".git" / MARKER).is_file()):
            raise SystemExit(f"{dest} exists" + ("" if args.force else
                                                 " (--force removes an earlier demo)"))
        shutil.rmtree(dest)
    ids = make_history(args.source, dest, commits)
    planted = next(i for i, c in enumerate(commits, 1) if c.effect == "case")
    print(f"\n{dest}: {len(commits)} commits on {ids[0][:12]} (the unpacked source)")
    for n, (c, state) in enumerate(zip(commits, states(commits)[1:], strict=True), 1):
        mark = "  <- planted: breaks the case" if n == planted else ""
        print(f"  {ids[n][:12]} {c.subject}  [{state}]{mark}")
    results = Path("results") / "bisect-demo"
    print(f"\nexpected first bad commit: {ids[planted]}\n\nrun from the checkout "
          f"({Path(__file__).resolve().parent.parent}):\n\n  "
          f"{format_argv(bisect_argv(dest, ids, results))}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
