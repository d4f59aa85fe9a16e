"""kmatrix bench's breakdown of the seconds to the first verdict: the host's own work before
QEMU's spawn is its own part, not the first case's."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.cli.bench import breakdown
from harness.targets.session import BootInfo


@dataclass
class FakeVM:
    """What breakdown reads of a GuestVM (host monotonic marks, the agent's hello)."""

    info: BootInfo
    marks: dict[str, float] = field(default_factory=dict)
    restored: bool = False


def _info(boot_s: float, collect_s: float) -> BootInfo:
    return BootInfo(release="7.3.4-kmatrix", probes={}, probe_dmesg=[], boot_s=boot_s,
                    guest={"import_s": 1.3, "collect_s": collect_s, "init_at": -1.0,
                           "agent_at": -1.0, "exec_at": -1.0})


def test_a_restored_boot_splits_the_host_prepare_from_the_first_case() -> None:
    # start at 100.0: the host hashes and compiles for 1.0 s, spawns QEMU at 101.0, the
    # guest is restored (attach at 101.3), says hello at 102.8 and is ready 3.1 s after the
    # spawn; the first request collects for 0.5 s; the verdict comes 4.8 s after the start
    vm = FakeVM(_info(boot_s=3.1, collect_s=1.2),
                {"start": 100.0, "spawn": 101.0, "attach": 101.3, "hello": 102.8},
                restored=True)
    first: dict[str, Any] = {"timing": {"collect_s": 0.5}}
    parts = breakdown(vm, 4.8, first)  # type: ignore[arg-type]
    assert math.isclose(parts["host_prepare_s"], 1.0)
    assert math.isclose(parts["restore_s"], 0.3) and math.isclose(parts["attach_s"], 1.5)
    assert math.isclose(parts["collection_s"], 0.5)
    assert math.isclose(parts["first_case_s"], 4.8 - 1.0 - 3.1 - 0.5)
    assert math.isnan(parts["kernel_to_init_s"])


def test_without_a_start_mark_the_host_prepare_is_zero() -> None:
    vm = FakeVM(_info(boot_s=10.0, collect_s=1.0), {"spawn": 5.0, "hello": 12.0})
    parts = breakdown(vm, 11.0, {"timing": {"collect_s": 0.4}})  # type: ignore[arg-type]
    assert parts["host_prepare_s"] == 0.0
    assert math.isclose(parts["first_case_s"], 11.0 - 10.0 - 0.4)


def test_the_wait_for_the_root_images_walk_is_not_the_session_start() -> None:
    # the hello at 102.8; the walk that confirms the root image ends 0.4 s later; the
    # pytest session is ready 1.2 s after the hello
    vm = FakeVM(_info(boot_s=3.1, collect_s=1.2),
                {"start": 100.0, "spawn": 100.2, "attach": 100.5, "hello": 102.8,
                 "image_wait": 0.4}, restored=True)
    parts = breakdown(vm, 4.8, {"timing": {"collect_s": 0.5}})  # type: ignore[arg-type]
    assert math.isclose(parts["image_check_s"], 0.4)
    assert math.isclose(parts["session_start_s"], 0.8)


def test_a_restored_guests_attach_splits_the_mount_from_the_imports() -> None:
    info = _info(boot_s=3.1, collect_s=1.2)
    info.guest["mount_s"] = 0.2  # of the guest's 1.3 s from "attach" to its hello
    vm = FakeVM(info, {"start": 100.0, "spawn": 100.2, "attach": 100.5, "hello": 102.0},
                restored=True)
    parts = breakdown(vm, 4.8, {"timing": {"collect_s": 0.5}})  # type: ignore[arg-type]
    assert math.isclose(parts["mount_s"], 0.2)
    assert math.isclose(parts["agent_imports_s"], 1.1)
    fresh = FakeVM(_info(boot_s=9.0, collect_s=1.0), {"spawn": 0.0, "hello": 8.0})
    booted = breakdown(fresh, 10.0, {})  # type: ignore[arg-type]
    assert math.isnan(booted["mount_s"]) and math.isclose(booted["agent_imports_s"], 1.3)
