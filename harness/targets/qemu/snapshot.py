"""Snapshots of a ready guest (`--snapshot`): saved once, restored instead of booting.

A VM booted for snapshots (root on a disk image: harness.targets.qemu.rootdisk; no 9p
export mounted: harness.targets.qemu.wrapper) is saved right after its agent said hello,
before it collects anything: the kernel booted and the agent's imports done (its pytest
session starts after the restore: it needs the run's node ids). QEMU writes the guest's
memory and device state to a file over QMP (`migrate` to a `file:` URI, ~3 s for ~230 MB
under TCG here) and the guest goes on. The next boot of the same VM (a restart after a
crash, the next run) starts QEMU with `-incoming` on that file instead: the agent is where
it was, waiting to collect.

"The same VM" is the key: the root image file (its name says its content; its mtime which
build of that content), the kernel image, and the whole vng command line except the run's
temporary socket paths. A snapshot that fails to restore is
deleted and the VM boots afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: seconds a save may take (the guest's memory written to the cache folder)
SAVE_TIMEOUT = 300.0


class QmpError(Exception):
    """QEMU's monitor answered with an error, or not at all."""


class Qmp:
    """A QMP connection (QEMU's JSON monitor protocol) on a unix socket."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:  # QEMU creates the socket a moment after it starts
            try:
                self._sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    self._sock.close()
                    raise QmpError(f"no QMP socket at {path}") from None
                time.sleep(0.05)
        self._file = self._sock.makefile("rwb")
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise QmpError("QEMU closed its monitor")
        msg: dict[str, Any] = json.loads(line)
        return msg

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """The command's "return"; QmpError with QEMU's description on an error."""
        req: dict[str, Any] = {"execute": command}
        if arguments:
            req["arguments"] = arguments
        self._file.write(json.dumps(req).encode() + b"\n")
        self._file.flush()
        while True:
            msg = self._read()
            if "event" in msg:
                continue
            if "error" in msg:
                raise QmpError(f"{command}: {msg['error'].get('desc', msg['error'])}")
            return msg.get("return")

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> Qmp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def save(qmp_path: str, state: Path, timeout: float = SAVE_TIMEOUT) -> dict[str, Any]:
    """Save the running VM to `state` (written beside it, then renamed) and let it go on;
    QEMU's migration figures."""
    tmp = state.with_name(f"{state.name}.{os.getpid()}.tmp")
    try:
        with Qmp(qmp_path) as qmp:
            qmp.execute("migrate", {"uri": f"file:{tmp}"})
            deadline = time.monotonic() + timeout
            while True:
                info = qmp.execute("query-migrate") or {}
                status = info.get("status")
                if status == "completed":
                    break
                if status in ("failed", "cancelled"):
                    raise QmpError(f"migrate: {info.get('error-desc', status)}")
                if time.monotonic() > deadline:
                    qmp.execute("migrate_cancel")
                    raise QmpError(f"migrate: not done after {timeout:.0f}s")
                time.sleep(0.05)
            qmp.execute("cont")
        tmp.replace(state)
        return info
    finally:
        tmp.unlink(missing_ok=True)


def key(parts: Sequence[str]) -> str:
    """The snapshot key of a VM described by `parts` (root image, kernel, command line)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def kernel_identity(image: Path) -> str:
    """A file's identity for a snapshot key (a kernel image, a disk image): path, size,
    mtime; a file made again has another."""
    st = image.stat()
    return f"{image.resolve()}:{st.st_size}:{st.st_mtime_ns}"


@dataclass(frozen=True)
class Stored:
    """A saved ready guest: QEMU's state file and the agent's hello that came before it."""

    folder: Path

    @property
    def state(self) -> Path:
        return self.folder / "state"

    @property
    def meta(self) -> Path:
        return self.folder / "meta.json"

    def exists(self) -> bool:
        return self.state.is_file() and self.meta.is_file()

    def hello(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.meta.read_text())["hello"]
        return data

    def write_meta(self, hello: dict[str, Any], figures: dict[str, Any]) -> None:
        tmp = self.meta.with_name(f"meta.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"hello": hello, "saved": figures,
                                   "at": time.time()}, indent=1))
        tmp.replace(self.meta)

    def drop(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


#: snapshots kept (each is a guest's memory, 100-300 MB): the least recently used go
KEEP = 8


def stored(cache: Path, snapshot_key: str) -> Stored:
    """The snapshot folder of `snapshot_key` (created; marked used); the least recently
    used folders beyond KEEP are deleted."""
    root = cache / "snapshots"
    folder = root / snapshot_key
    folder.mkdir(parents=True, exist_ok=True)
    os.utime(folder)
    for tmp in folder.glob("*.tmp"):  # a save or a meta write whose process was killed
        if not _alive(tmp.name.rsplit(".", 2)[-2]):
            tmp.unlink(missing_ok=True)
    folders = sorted((p for p in root.iterdir() if p.is_dir()),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in folders[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
    return Stored(folder)


def _alive(pid: str) -> bool:
    """Whether process `pid` (a temporary file's writer) still runs."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's: alive
        return True
    return True
