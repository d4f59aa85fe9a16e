"""GuestVM.start's second tries (no VM booted: its boot is a fake): a VM started on the last
run's root image that turns out stale boots again on a rebuilt one; a failed boot on a
confirmed image is not blamed on the image."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.acquire.kernel import Kernel
from harness.errors import BootError
from harness.targets.qemu.accel import Accel
from harness.targets.qemu.vm import GuestVM, VMOptions


class FakeCandidate:
    """A root image candidate whose walk says `fresh`."""

    def __init__(self, fresh: bool, kind: str = "root") -> None:
        self.fresh = fresh
        self.confirmed = False
        self.waited = 0.25
        self.image = Path(f"/cache/{kind}-old.img")
        self.kind = kind
        self.rebuilt = 0

    def confirm(self) -> bool:
        self.confirmed = self.fresh
        return self.fresh

    def rebuild(self) -> Path:
        self.rebuilt += 1
        self.confirmed = True
        self.image = Path(f"/cache/{self.kind}-new.img")
        return self.image


def _vm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, boots: list[str],
        candidate: FakeCandidate, images: list[Path]) -> GuestVM:
    """A VM whose boots go as `boots` says, one word each: "check" (the boot reaches the
    image check), "fail" (a boot error before it); the image of each boot goes
    to `images`."""
    kernel = Kernel(spec="debian:6.12", label="debian-6.12", image=tmp_path / "vmlinuz")
    vm = GuestVM(kernel, Accel("tcg", "test"), tmp_path / "console.log", [],
                 VMOptions(snapshot="on"))
    monkeypatch.setattr(vm, "_snapshot_wanted", lambda: True)

    def fake_start() -> None:
        vm._images.setdefault("root", candidate)  # type: ignore[arg-type]
        images.append(vm._images["root"].image)
        if boots.pop(0) == "fail":
            raise BootError("the guest agent failed before it was ready")
        vm._confirm_image()

    monkeypatch.setattr(vm, "_start", fake_start)
    return vm


def test_a_stale_image_boots_again_on_a_new_one(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cand = FakeCandidate(fresh=False)
    images: list[Path] = []
    _vm(tmp_path, monkeypatch, ["check", "check"], cand, images).start()
    assert images == [Path("/cache/root-old.img"), Path("/cache/root-new.img")]
    assert cand.rebuilt == 1


def test_a_boot_that_failed_on_a_stale_image_boots_again(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    cand = FakeCandidate(fresh=False)
    images: list[Path] = []
    _vm(tmp_path, monkeypatch, ["fail", "check"], cand, images).start()
    assert cand.rebuilt == 1
    assert images == [Path("/cache/root-old.img"), Path("/cache/root-new.img")]


def test_a_boot_that_failed_on_a_good_image_is_an_error(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    cand = FakeCandidate(fresh=True)
    vm = _vm(tmp_path, monkeypatch, ["fail", "check"], cand, [])
    with pytest.raises(BootError, match="failed before it was ready"):
        vm.start()
    assert cand.rebuilt == 0


def test_the_wait_for_the_walk_is_a_mark(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cand = FakeCandidate(fresh=True)
    vm = _vm(tmp_path, monkeypatch, ["check"], cand, [])
    vm.start()
    assert vm.marks["image_wait"] == 0.25 and cand.rebuilt == 0


def test_only_the_stale_image_is_made_again(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A Debian kernel's boot has two: the root image and its modules' image."""
    root, modules = FakeCandidate(fresh=True), FakeCandidate(fresh=False, kind="modules")
    images: list[Path] = []
    vm = _vm(tmp_path, monkeypatch, ["check", "check"], root, images)
    vm._images["modules"] = modules  # type: ignore[assignment]
    vm.start()
    assert (root.rebuilt, modules.rebuilt) == (0, 1)
    assert vm._images["modules"].image == Path("/cache/modules-new.img")
    assert images == [Path("/cache/root-old.img")] * 2


def test_the_9p_root_does_not_wait_for_the_images_it_does_not_use(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The root image was started on (its walk unconfirmed) when the modules image could
    not be made: the VM boots on the 9p root, which no stale root image can stop."""
    from harness.targets.qemu import rootdisk

    root = FakeCandidate(fresh=False)
    kernel = Kernel(spec="debian:6.12", label="debian-6.12", image=tmp_path / "vmlinuz")
    vm = GuestVM(kernel, Accel("tcg", "test"), tmp_path / "console.log", [], VMOptions())
    monkeypatch.setattr(vm, "_snapshot_wanted", lambda: True)
    boots: list[bool] = []

    def fake_start() -> None:
        boots.append(vm.snapshotted)
        if vm.snapshotted:
            vm._images["root"] = root  # type: ignore[assignment]
            raise rootdisk.ImageError("not enough free space for the guest's modules image")
        vm._confirm_image()

    monkeypatch.setattr(vm, "_start", fake_start)
    vm.start()
    assert boots == [True, False] and root.rebuilt == 0 and not vm._images
