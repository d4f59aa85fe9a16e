"""Where kmatrix keeps things (the project checkout, the cache) and the one cache lock.

Host side only: the guest is told where the host's cache is (KMATRIX_CACHE) and reads it
read-only over 9p.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: environment variable naming the cache folder (default ~/.cache/kmatrix)
CACHE_ENV = "KMATRIX_CACHE"


def cache_root(*, create: bool = True) -> Path:
    """$KMATRIX_CACHE (with ~ expanded), else ~/.cache/kmatrix; absolute, created unless
    `create` is False. Shared by concurrent runs: writers take `locked()` first."""
    env = os.environ.get(CACHE_ENV)
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "kmatrix"
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


@contextlib.contextmanager
def locked(path: Path, *, timeout: float | None = None, waiting: str = "") -> Iterator[None]:
    """Exclusive flock on `path` (created if needed) for the block: one fetch or build per
    cache entry at a time, across processes and pytest-xdist workers.

    Blocks until the lock is free, or `timeout` seconds (TimeoutError naming the path);
    `waiting`, when given, is printed once if the lock is busy ("waiting for ...")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        deadline = None if timeout is None else time.monotonic() + timeout
        said = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{path} stayed locked for {timeout:.0f}s") from None
                if waiting and not said:
                    print(f"kmatrix: {waiting}", file=sys.stderr, flush=True)
                    said = True
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
