"""Ctrl-C, SIGTERM and a killed harness, tried as a user (or a CI runner) would: the run
ends within seconds, nothing of it keeps running, the partial reports are written."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from vmrun import ROOT, kmatrix_argv

pytestmark = pytest.mark.vm

CASE = "tests/vm/cases/test_interrupts.py"
MARKER = "kmatrix-test: case running"
#: how long the run may take to end after the signal (the acceptance asks for 10 s)
END_WITHIN = 10.0


def leftovers(tag: str) -> list[str]:
    """Command lines of processes of this run still alive (vng, virtme-run, QEMU, leash):
    they all carry the run's temporary folder, named after the results folder."""
    out = subprocess.run(["pgrep", "-af", f"kmatrix-vm-{tag}-"], capture_output=True,
                         text=True, check=False).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"no {what} within {timeout:.0f}s")


def _sigint_by_default() -> None:
    """In the child before exec: a test run started in the background (nohup, `&` in a
    script) ignores SIGINT, and an ignored signal stays ignored across exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(results: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(kmatrix_argv(results, CASE), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=_sigint_by_default)


def console_text(results: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in results.glob("console-*.log"))


def stop_and_check(proc: subprocess.Popen[str], results: Path, sig: int) -> None:
    """Send `sig`; the run must end within END_WITHIN with status 2, leave nothing running
    and have written its (partial) JUnit."""
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=END_WITHIN)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"kmatrix still running {END_WITHIN:.0f}s after "
                             f"{signal.Signals(sig).name}:\n{out[-3000:]}") from None
    print(out[-3000:])
    took = time.monotonic() - t0
    assert proc.returncode == 2, (proc.returncode, out[-2000:])
    assert leftovers(results.name) == [], "processes left after the run"
    assert (results / "junit.xml").is_file(), "no partial JUnit written"
    print(f"ended {took:.1f}s after {signal.Signals(sig).name}")


def test_ctrl_c_during_boot(tmp_path: Path) -> None:
    results = tmp_path / "results-boot"
    proc = start(results)
    wait_for(lambda: "Linux version" in console_text(results), 300, "kernel banner")
    time.sleep(2)  # the kernel is booting; its agent is seconds away from its first case
    assert MARKER not in console_text(results), "the case started: not a boot-time signal"
    stop_and_check(proc, results, signal.SIGINT)


def test_sigterm_during_a_case(tmp_path: Path) -> None:
    results = tmp_path / "results-case"
    proc = start(results)
    wait_for(lambda: MARKER in console_text(results), 900, "running case")
    time.sleep(30)  # 30 s into the case
    stop_and_check(proc, results, signal.SIGTERM)


def test_killed_harness_takes_its_vm_down(tmp_path: Path) -> None:
    """SIGKILL (OOM, a cancelled CI job): nothing can run in kmatrix, yet its VM dies with
    it (the leash) within seconds."""
    results = tmp_path / "results-kill"
    proc = start(results)
    wait_for(lambda: MARKER in console_text(results), 900, "running case")
    assert leftovers(results.name), "the VM should be running now"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    wait_for(lambda: not leftovers(results.name), 15, "VM gone")
