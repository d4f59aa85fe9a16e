"""Nothing the guest imports is compiled in the guest.

Under TCG every instruction is emulated, and the guest reads the host's tree over 9p: a
module compiled in the guest costs seconds, one read from a .pyc costs little. The
interpreter's own library and the venv come with .pyc files (pip compiles at install);
kmatrix's own modules and the cases are compiled here, on the host, before a VM boots,
into the usual __pycache__ folders (whatever PYTHONDONTWRITEBYTECODE says: it only stops
Python from writing them as a side effect of importing). The cases' assertion-rewritten
modules are cached by the host's own collection (`allow_host_bytecode`).
"""

from __future__ import annotations

import compileall
import sys
from collections.abc import Iterable
from pathlib import Path

from ...paths import PROJECT_ROOT

#: what the guest imports from the checkout
GUEST_TREES = ("harness", "cases", "tests/vm/cases", "benchmarks")


def precompile(root: Path = PROJECT_ROOT, trees: Iterable[str] = GUEST_TREES) -> bool:
    """Compile (if stale) every module the guest may import from the checkout; False when
    some could not be written (a read-only checkout: the guest then compiles them)."""
    ok = True
    for tree in trees:
        path = root / tree
        if path.is_dir():
            ok = bool(compileall.compile_dir(str(path), quiet=2, workers=1)) and ok
    for top in ("conftest.py",):
        if (root / top).is_file():
            ok = bool(compileall.compile_file(str(root / top), quiet=2)) and ok
    return ok


def allow_host_bytecode() -> None:
    """Let this (host) process write .pyc files, the assertion-rewritten cases included,
    so the guest finds them compiled."""
    sys.dont_write_bytecode = False
