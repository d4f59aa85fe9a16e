"""`kmatrix shell` driven in tmux as a user would, and `kmatrix run --keep-failed`: attach,
look at what the failed case left, exit; no QEMU left either way."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from vmrun import KERNEL, ROOT, kmatrix_run

from harness.targets.qemu.attach import attach

pytestmark = pytest.mark.vm

SESSION = "kmatrix-shell-test"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True,
                          check=False).stdout


def pane() -> str:
    return tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", SESSION)


def wait_pane(text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = pane()
        if text in shown:
            return shown
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not shown within {timeout:.0f}s:\n{pane()}")


def qemus(tag: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", tag], capture_output=True, text=True,
                         check=False).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def wait_gone(tag: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while qemus(tag) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert qemus(tag) == [], f"left running: {qemus(tag)}"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_shell_in_tmux() -> None:
    tmux("kill-session", "-t", SESSION)
    command = f"{sys.executable} -m harness shell --kernel {KERNEL} --boot-timeout 900"
    tmux("new-session", "-d", "-s", SESSION, "-x", "200", "-y", "50", "-c", str(ROOT),
         command)
    tmux("set-option", "-t", SESSION, "remain-on-exit", "on")
    try:
        wait_pane("kmatrix-case NODEID", 600)
        tmux("send-keys", "-t", SESSION, "echo KMX_$((40+2)) $(uname -r)", "Enter")
        shown = wait_pane("KMX_42 ", 60)
        assert re.search(r"KMX_42 \d+\.\d+", shown), shown
        tmux("send-keys", "-t", SESSION,
             "kmatrix-case tests/vm/cases/test_guest_basics.py::test_runs_in_guest -q",
             "Enter")
        wait_pane("1 passed", 300)
        tmux("send-keys", "-t", SESSION, "exit", "Enter")
        wait_pane("shell exited; the VM is down", 120)
    finally:
        tmux("kill-session", "-t", SESSION)
    wait_gone("kmatrix-vm-shell-")


def test_keep_failed_keeps_the_vm_and_the_case(tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = kmatrix_run(results, "--keep-failed", "tests/vm/cases/test_keep.py")
    assert proc.returncode == 1
    kept = re.search(r"KEPT: .* \(leash pid (\d+)\).*kmatrix attach (\S+)", proc.stdout)
    assert kept, proc.stdout[-3000:]
    pid, sock = int(kept.group(1)), Path(kept.group(2))
    try:
        os.kill(pid, 0)  # the VM outlived the run
        assert "passed" in proc.stdout  # the next case ran, on a fresh VM
        r_in, w_in = os.pipe()
        r_out, w_out = os.pipe()
        held = re.search(r"pid (\d+), before its fixtures' teardown", _banner(sock))
        assert held, "no held case in the shell's banner"
        os.write(w_in, f"nsenter -t {held.group(1)} -n ip -o link show kmxheld0\n"
                       "exit\n".encode())
        assert attach(sock, stdin=r_in, stdout=w_out) == "exited"
        os.close(w_out)
        output = os.read(r_out, 1 << 20).decode(errors="replace")
        assert "kmxheld0" in output and "does not exist" not in output, output
    finally:
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    wait_gone(str(sock.parent))


def _banner(sock: Path) -> str:
    """What the kept shell printed so far (its banner): read once, detached with Ctrl-]."""
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    os.set_blocking(r_out, False)
    import threading

    def detach_later() -> None:
        time.sleep(15)  # bash reads its rc file and prints the banner (TCG: seconds)
        os.write(w_in, b"\x1d")

    threading.Thread(target=detach_later, daemon=True).start()
    assert attach(sock, stdin=r_in, stdout=w_out) == "detached"
    chunks = []
    while True:
        try:
            data = os.read(r_out, 65536)
        except BlockingIOError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")
