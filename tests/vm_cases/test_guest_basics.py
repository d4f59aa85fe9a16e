"""Guest-side cases used by the harness's own tests (tests/test_vm_*.py), not by the suite.

Some of them kill or hang the guest on purpose; they only run when a harness test asks.
"""

import os
import time
from pathlib import Path

import pytest


def test_runs_in_guest() -> None:
    assert os.environ.get("KMATRIX_GUEST") == "1"
    assert Path("/proc/1/cmdline").read_bytes() != b""


def test_fails_in_guest() -> None:
    assert 1 + 1 == 3, "this case fails on purpose"


@pytest.mark.requires("no_such_feature")
def test_requires_unknown() -> None:
    raise AssertionError("must be skipped")


def test_panic() -> None:
    Path("/proc/sys/kernel/sysrq").write_text("1")
    Path("/proc/sysrq-trigger").write_text("c")
    time.sleep(60)


def test_hang_userspace() -> None:
    time.sleep(3600)


def test_hang_agent() -> None:
    """Stops the agent itself: only the host watchdog can notice."""
    import signal

    os.kill(os.getppid(), signal.SIGSTOP)
    time.sleep(3600)


def test_warn() -> None:
    """Makes the kernel print a WARNING through a BPF-free path: a fake one via /dev/kmsg
    would be cheating, so this uses the kernel's test module if present, else skips."""
    pytest.skip("no reliable in-kernel WARN trigger in stock kernels")


def test_noop() -> None:
    """Costs nothing: the benchmark times the harness around it."""
