"""Boot progress clock and the automatic vCPU count: pure logic, fake time."""

from __future__ import annotations

import pytest

from harness.pytest_plugin.session import auto_vm_cpus
from harness.targets.qemu import boot_clock as vm


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr("harness.targets.qemu.boot_clock.time.monotonic", fake)
    return fake


def test_silence_beyond_stall_window_expires(clock_time: FakeTime) -> None:
    clock = vm.BootClock(100)
    clock_time.now += 99
    assert clock.expired() == ""
    clock_time.now += 2
    assert "no sign of progress for 101s" in clock.expired()
    assert "last stage: kernel boot" in clock.where()


def test_progress_extends_but_cap_holds(clock_time: FakeTime) -> None:
    clock = vm.BootClock(100)
    for step in range(5):
        clock_time.now += 60
        clock.progress(f"probe {step}")
        assert clock.expired() == "", step
    assert "probe 4" in clock.where()
    clock_time.now += 61  # 361 s in all > 3 x 100
    assert "not ready after 361s" in clock.expired()


def test_console_growth_is_progress_first_size_is_not(clock_time: FakeTime) -> None:
    clock = vm.BootClock(100)
    clock_time.now += 90
    clock.console(500)  # first observation: a baseline, not progress
    clock_time.now += 20
    assert clock.expired()
    clock = vm.BootClock(100)
    clock.console(500)
    clock_time.now += 90
    clock.console(600)
    clock_time.now += 20
    assert clock.expired() == ""
    clock_time.now += 50
    clock.console(600)  # unchanged
    clock_time.now += 50
    assert clock.expired()


@pytest.mark.parametrize(("parallel", "cores", "want"), [
    (1, 2, 2), (2, 2, 1), (3, 2, 1), (1, 1, 1), (2, 8, 2), (4, 8, 2), (8, 8, 1), (0, 4, 2),
])
def test_auto_vm_cpus(parallel: int, cores: int, want: int) -> None:
    assert auto_vm_cpus(parallel, cores) == want
