"""The first stage of a snapshotted guest (harness.guest.preload): what the root image must
hold for it, and its "attach" step (the checkout mounted, the agent's environment)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.guest import preload
from harness.paths import PROJECT_ROOT
from harness.targets.qemu import guestfs


def test_the_root_image_holds_every_module_of_the_checkout_it_imports() -> None:
    """Before the checkout is mounted only IMAGE_FILES are there: importing the first stage
    (as `python -m` does) may need no other file of it."""
    code = ("import json, sys, harness.guest.preload; print(json.dumps(sorted("
            "m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None)"
            f" and m.__file__.startswith({str(PROJECT_ROOT) + os.sep!r}))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True,
                         capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}).stdout
    env = Path(sys.prefix).resolve()  # a venv or .tox inside the checkout is in the image
    imported = {str(Path(f).relative_to(PROJECT_ROOT)) for f in json.loads(out)
                if not Path(f).resolve().is_relative_to(env)}
    assert imported == set(preload.IMAGE_FILES)


def test_attach_mounts_then_takes_the_environment_and_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KMX_TEST_ATTACH", raising=False)
    mounted: list[tuple[str, str, str | None, int, str | None]] = []
    monkeypatch.setattr(preload, "_mount", lambda *args: mounted.append(args))
    work = tmp_path / "work"
    export = tmp_path / "export"
    monkeypatch.setattr(preload, "KEPT", str(tmp_path / "kept"))
    spec = guestfs.mount_spec([work, tmp_path / "objects"], keep=[work / ".venv"])
    spec["at"] = str(export)
    preload.attach({"mount": spec, "cwd": str(tmp_path), "env": {"KMX_TEST_ATTACH": "1"}})
    assert mounted == [
        # the image's venv held aside, the export, the binds, the venv bound back
        (f"{work}/.venv", f"{tmp_path}/kept/0", None, preload.MS_BIND, None),
        (guestfs.MOUNT_TAG, str(export), "9p", preload.MS_RDONLY, guestfs.MOUNT_DATA),
        (f"{export}{work}", str(work), None, preload.MS_BIND, None),
        (f"{export}{tmp_path}/objects", f"{tmp_path}/objects", None, preload.MS_BIND, None),
        (f"{tmp_path}/kept/0", f"{work}/.venv", None, preload.MS_BIND, None)]
    # the mount points are made where they were missing
    assert export.is_dir() and work.is_dir() and (tmp_path / "objects").is_dir()
    assert Path.cwd() == tmp_path and os.environ["KMX_TEST_ATTACH"] == "1"


def test_a_failed_mount_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real mount(2) that fails (an unknown filesystem type; not allowed unprivileged)."""
    monkeypatch.chdir(tmp_path)
    spec = {**guestfs.mount_spec([]), "at": str(tmp_path / "export"),
            "fstype": "kmatrix-no-such-fs"}
    with pytest.raises(preload.AttachError, match=r"mount kmxcache on .*/export "
                       r"\(kmatrix-no-such-fs, trans=virtio.*\): (No such device|"
                       r"Operation not permitted)"):
        preload.attach({"mount": spec, "cwd": str(tmp_path / "elsewhere"), "env": {}})
    assert Path.cwd() == tmp_path


def test_a_mount_point_that_cannot_be_made_says_why(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    spec = {**guestfs.mount_spec([]), "at": str(tmp_path / "file" / "export")}
    with pytest.raises(preload.AttachError, match=r"mounting the checkout failed: .*Not a "
                       r"directory"):
        preload.mount(spec)
