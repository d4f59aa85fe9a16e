"""The kernel tree's git during a bisect: refuse what cannot be bisected safely, start,
mark, reset, and read the outcome. Every call is an argv list through harness.command."""

from __future__ import annotations

import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..command import run, which
from ..errors import CommandError, UserError

#: the line `git bisect log` ends with once git has named the first bad commit
_FIRST_BAD = re.compile(r"^# first bad commit: \[([0-9a-f]{40,64})\]", re.M)
#: its lines when only skipped commits are left: each one may be the first bad commit
_POSSIBLE = re.compile(r"^# possible first bad commit: \[([0-9a-f]{40,64})\]", re.M)


@dataclass(frozen=True)
class Checkout:
    """What the tree had checked out before the bisect, restored at the end."""

    #: the commit HEAD pointed to
    head: str
    #: `refs/heads/NAME`, or None for a detached HEAD
    branch: str | None

    def describe(self) -> str:
        return (self.branch.removeprefix("refs/heads/") if self.branch
                else f"detached {self.head[:12]}")


class Repo:
    """One work tree, through `git -C TREE ...`."""

    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self.git = which("git")

    def argv(self, *args: str) -> list[str]:
        return [self.git, "-C", str(self.tree), *args]

    def out(self, *args: str) -> str:
        return run(self.argv(*args), timeout=600).stdout.strip()

    def ok(self, *args: str) -> bool:
        return run(self.argv(*args), check=False, timeout=600).returncode == 0

    # --- what is checked out ------------------------------------------------------------

    def toplevel(self) -> Path | None:
        proc = run(self.argv("rev-parse", "--show-toplevel"), check=False)
        return Path(proc.stdout.strip()).resolve() if proc.returncode == 0 else None

    def head(self) -> str:
        return self.out("rev-parse", "HEAD")

    def checkout(self) -> Checkout:
        proc = run(self.argv("symbolic-ref", "-q", "HEAD"), check=False)
        branch = proc.stdout.strip() if proc.returncode == 0 else None
        return Checkout(self.head(), branch or None)

    def commit(self, rev: str) -> str:
        """The full id of the commit `rev` names; UserError when it names none."""
        proc = run(self.argv("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"),
                   check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise UserError(f"{rev!r} is not a commit of {self.tree}",
                            hint=f"see `git -C {self.tree} log --oneline`")
        return proc.stdout.strip().splitlines()[-1]

    def subject(self, commit: str) -> str:
        return self.out("log", "-1", "--format=%s", commit)

    def parents(self, commit: str) -> list[str]:
        return self.out("rev-list", "--parents", "-n", "1", commit).split()[1:]

    def changes(self) -> list[str]:
        """`git status --porcelain` lines: uncommitted or untracked (not ignored) files."""
        text = run(self.argv("status", "--porcelain", "--untracked-files=normal"),
                   timeout=600).stdout
        return [line for line in text.splitlines() if line.strip()]

    def switch_to(self, commit: str) -> None:
        """Check out `commit` detached (a confirmation step, inside the bisect)."""
        run(self.argv("checkout", "-q", "--detach", commit), timeout=600)

    # --- bisect ---------------------------------------------------------------------------

    def bisecting(self) -> bool:
        return self.ok("bisect", "log")

    def bisect(self, *args: str) -> str:
        return run(self.argv("bisect", *args), timeout=600).stdout

    def bisect_log(self) -> str:
        proc = run(self.argv("bisect", "log"), check=False)
        return proc.stdout if proc.returncode == 0 else ""

    def reset(self, to: Checkout) -> None:
        """End any bisect and put `to` back (its branch, or its commit detached)."""
        run(self.argv("bisect", "reset"), check=False, timeout=600)
        now = self.checkout()
        if now != to:
            target = to.branch.removeprefix("refs/heads/") if to.branch else to.head
            detach = [] if to.branch else ["--detach"]
            run(self.argv("checkout", "-q", *detach, target), timeout=600)


def first_bad(log: str) -> str | None:
    """The commit `git bisect log` names as the first bad one, if it does."""
    found = _FIRST_BAD.findall(log)
    return found[-1] if found else None


def possible_first_bad(log: str) -> list[str]:
    """The commits `git bisect log` says may be the first bad one (only skipped ones were
    left to test), in its order."""
    return list(dict.fromkeys(_POSSIBLE.findall(log)))


def check_bisectable(repo: Repo) -> Checkout:
    """Refuse a tree kmatrix must not bisect (not a git top, uncommitted changes, a bisect
    already going on); what is checked out now, to restore at the end."""
    top = repo.toplevel()
    if top is None or top != repo.tree.resolve():
        raise UserError(f"{repo.tree} is not the top of a git work tree",
                        hint="give --tree the kernel checkout's top folder")
    if repo.bisecting():
        raise UserError(f"{repo.tree}: a bisect is already in progress",
                        hint=f"finish it, or end it with `git -C {repo.tree} bisect reset`")
    changes = repo.changes()
    if changes:
        shown = "\n".join(f"  {line}" for line in changes[:10])
        more = f"\n  ... and {len(changes) - 10} more" if len(changes) > 10 else ""
        raise UserError(
            f"{repo.tree} has uncommitted changes; bisect checks out other commits and "
            f"would build them with these changes (or lose them):\n{shown}{more}",
            hint="commit or stash them (`git stash -u`), then run kmatrix bisect again")
    return repo.checkout()


@contextmanager
def bisect_session(repo: Repo, good: Sequence[str], bad: str) -> Iterator[Checkout]:
    """`git bisect start`, `bad`, `good`..., and always `git bisect reset` back to what was
    checked out before: after success, an error, Ctrl-C or SIGTERM."""
    before = check_bisectable(repo)
    try:
        repo.bisect("start")
        repo.bisect("bad", bad)
        for rev in good:
            repo.bisect("good", rev)
        yield before
    finally:
        unwinding = sys.exc_info()[1] is not None
        try:
            with _uninterrupted():
                repo.reset(before)
        except CommandError as exc:
            print(f"kmatrix: could not restore {repo.tree} to {before.describe()}: {exc}\n"
                  f"  run `git -C {repo.tree} bisect reset` and check it out yourself",
                  file=sys.stderr)
            if not unwinding:
                raise


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """A second Ctrl-C (or SIGTERM) must not cut `git bisect reset` short and leave the
    tree half checked out: both wait until the block is done, then act."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    saved = {sig: signal.signal(sig, lambda signum, _frame: pending.append(signum))
             for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        if pending:
            raise KeyboardInterrupt(f"signal {signal.Signals(pending[0]).name}")
