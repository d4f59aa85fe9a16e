"""Where kmatrix keeps things: the cache (kernels, BPF objects) and run results."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """$KMATRIX_CACHE, else ~/.cache/kmatrix. Shared by concurrent runs (see `locked`)."""
    env = os.environ.get("KMATRIX_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "kmatrix"
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive flock on `path` (created if needed): one fetch/build per cache entry at a time,
    also across pytest-xdist workers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
