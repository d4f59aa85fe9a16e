"""What the host tells the guest through environment variables (set on the agent's command
line by harness.targets.qemu.vm):

- KMATRIX_GUEST=1          this process runs inside a kmatrix guest
- KMATRIX_CACHE            the host's cache folder (read-only over 9p)
- KMATRIX_BPF_OBJECTS      the folder holding this run's compiled BPF objects, by name
"""

from __future__ import annotations

import os
from pathlib import Path

GUEST_ENV = "KMATRIX_GUEST"
CACHE_ENV = "KMATRIX_CACHE"
OBJECTS_ENV = "KMATRIX_BPF_OBJECTS"


def in_guest() -> bool:
    return os.environ.get(GUEST_ENV) == "1"


def _required(name: str, what: str) -> Path:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"${name} is not set: {what} is only known when the host started "
                           "this process (kmatrix run, kmatrix bench, the benchmark drivers)")
    return Path(value)


def host_cache() -> Path:
    """The host's kmatrix cache, as the guest sees it."""
    return _required(CACHE_ENV, "the host's cache folder")


def bpf_objects_dir() -> Path:
    """The folder of this run's compiled BPF objects (NAME.bpf.o)."""
    return _required(OBJECTS_ENV, "the folder of compiled BPF objects")
