"""The vng command line GuestVM builds (no VM booted): --vm-cpu-model goes to QEMU after
virtme-ng's own -cpu, so it is the one QEMU takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.acquire.kernel import Kernel
from harness.targets.qemu.accel import Accel
from harness.targets.qemu.vm import GuestVM, VMOptions


def _argv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: VMOptions) -> list[str]:
    monkeypatch.setenv("KMATRIX_CACHE", str(tmp_path / "cache"))
    kernel = Kernel(spec="debian:6.12", label="debian-6.12", image=tmp_path / "vmlinuz")
    vm = GuestVM(kernel, Accel("tcg", "test"), tmp_path / "console.log", [], options)
    return vm.argv(str(tmp_path / "ctl.sock"))


def test_cpu_model_is_the_last_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = _argv(tmp_path, monkeypatch, VMOptions(cpu_model="max,erms=off,fsrm=off"))
    at = argv.index("--qemu-opts=-cpu")
    assert argv[at + 1] == "--qemu-opts=max,erms=off,fsrm=off"
    assert "--disable-kvm" in argv


def test_no_cpu_model_keeps_virtme_ngs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = _argv(tmp_path, monkeypatch, VMOptions())
    assert "--qemu-opts=-cpu" not in argv
