"""Guest-side cases used by the harness's own tests (tests/test_vm_runner.py), not a suite.

Some of them kill or hang the guest on purpose; the order below is the order they run in,
so each "after" case checks that the harness recovered from the one before it.
"""

import os
import signal
import time
from pathlib import Path

import pytest


def test_runs_in_guest() -> None:
    assert os.environ.get("KMATRIX_GUEST") == "1"
    # the guest's PID 1 is virtme-ng-init, not the host's init
    assert b"virtme" in Path("/proc/1/cmdline").read_bytes()


def test_fails_in_guest() -> None:
    assert 1 + 1 == 3, "this case fails on purpose"


@pytest.mark.requires("no_such_feature")
def test_requires_unknown() -> None:
    raise AssertionError("never runs: the unknown feature name is a setup error")


def test_panic() -> None:
    Path("/proc/sys/kernel/sysrq").write_text("1")
    Path("/proc/sysrq-trigger").write_text("c")
    time.sleep(60)


def test_after_panic() -> None:
    assert Path("/proc/uptime").read_text()


@pytest.mark.case_timeout(20)
def test_hang_userspace() -> None:
    time.sleep(3600)


def test_after_hang() -> None:
    assert os.environ.get("KMATRIX_GUEST") == "1"


@pytest.mark.case_timeout(10)
def test_hang_agent() -> None:
    """Stops the agent itself: only the host watchdog can notice."""
    os.kill(os.getppid(), signal.SIGSTOP)
    time.sleep(3600)


def test_after_agent_hang() -> None:
    assert os.environ.get("KMATRIX_GUEST") == "1"


def test_kernel_warn() -> None:
    """Makes the kernel WARN through lkdtm (CONFIG_LKDTM, e.g. kconfigs' debug fragment).
    The body passes; the host must still fail the case because of the WARNING."""
    import subprocess

    trigger = Path("/sys/kernel/debug/provoke-crash/DIRECT")
    if not trigger.exists():
        probe = subprocess.run(["modprobe", "lkdtm"], capture_output=True, text=True)
        if not trigger.exists():
            pytest.skip(f"lkdtm not available in this kernel: {probe.stderr.strip()}")
    trigger.write_text("WARNING")


def test_noop() -> None:
    """Costs nothing: `kmatrix bench` times the harness around it."""
