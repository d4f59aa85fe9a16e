"""Kernel modules the guest loads on demand.

A kmatrix guest has no udev: a driver built as a module (Debian's virtio_net, tun,
netdevsim, vsock_loopback) is not loaded when its device appears or its node is opened.
`ensure` loads it with modprobe (the guest sees the kernel's own modules) when what it
provides is missing, and says why not otherwise.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable


def ensure(module: str, present: Callable[[], bool], *, wait: float = 5.0) -> str | None:
    """None once `present()` holds (loading `module` if it did not), else the evidence:
    what modprobe said, for a skip or failure message."""
    if present():
        return None
    try:
        proc = subprocess.run(["modprobe", module], capture_output=True, text=True,
                              timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`modprobe {module}` could not run: {exc}"
    deadline = time.monotonic() + wait  # devices and nodes appear shortly after the load
    while time.monotonic() < deadline:
        if present():
            return None
        time.sleep(0.05)
    said = (proc.stderr or proc.stdout).strip().splitlines()
    return (f"`modprobe {module}` exited {proc.returncode}: "
            f"{said[-1] if said else 'no output'} (kernel {os.uname().release})")
