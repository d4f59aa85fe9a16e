"""The VM's leash on real processes: nothing below it outlives kmatrix, even a SIGKILLed one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.targets.qemu import leash

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _tree(tmp_path: Path) -> str:
    """A stand-in for vng -> sh -> virtme-run -> qemu: a shell whose grandchildren sleep,
    one of them in a process group of its own (as a daemon would be)."""
    script = tmp_path / "tree.sh"
    script.write_text("#!/bin/sh\nsleep 300 &\nsetsid sleep 301 &\nwait\n")
    script.chmod(0o755)
    return str(script)


def test_killed_parent_takes_the_whole_tree_down(tmp_path: Path) -> None:
    """kmatrix (here: a parent process) is SIGKILLed: the leash kills what it started."""
    code = (f"import subprocess, sys; p = subprocess.Popen({leash.argv([_tree(tmp_path)])!r},"
            " start_new_session=True); print(p.pid, flush=True); p.wait()")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    assert parent.stdout is not None
    leash_pid = int(parent.stdout.readline())
    deadline = time.monotonic() + 10
    while len(leash.descendants(leash_pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    below = leash.descendants(leash_pid)
    assert len(below) >= 3, below
    parent.kill()
    parent.wait()
    assert _wait_gone([leash_pid, *below]) == []


def test_sigterm_to_the_leash_stops_everything(tmp_path: Path) -> None:
    proc = subprocess.Popen(leash.argv([_tree(tmp_path)]), cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 10
    while len(leash.descendants(proc.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    below = leash.descendants(proc.pid)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=15) == 128 + signal.SIGTERM
    assert _wait_gone(below) == []


def test_exit_status_is_the_commands(tmp_path: Path) -> None:
    assert subprocess.run(leash.argv(["sh", "-c", "exit 7"]), cwd=ROOT).returncode == 7
