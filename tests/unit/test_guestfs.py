"""The guest's cached mount: which folders, and the shell line that mounts them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from harness.paths import PROJECT_ROOT
from harness.protocol import EXEC_AT_ENV
from harness.targets.qemu import guestfs


def test_outermost_keeps_only_top_folders(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "c").mkdir()
    got = guestfs.outermost([tmp_path / "a" / "b", tmp_path / "a", tmp_path / "c",
                             tmp_path / "missing"])
    assert got == [tmp_path / "a", tmp_path / "c"]


def test_cached_dirs_cover_the_checkout_and_this_python() -> None:
    dirs = guestfs.cached_dirs()
    for needed in (PROJECT_ROOT, Path(sys.prefix)):
        assert any(needed.resolve().is_relative_to(d) for d in dirs), needed
    assert Path("/usr") not in dirs  # virtme-ng's writable overlay stays


def test_bootstrap_mounts_then_execs_the_command_even_when_mounting_fails() -> None:
    line = guestfs.bootstrap([Path("/work/x y")], ["env", "A=1", "python", "-m", "agent"])
    assert f"mount -t 9p -o {guestfs.MOUNT_OPTIONS} {guestfs.MOUNT_TAG}" in line
    assert "mount --bind '/run/kmatrix-cache/work/x y' '/work/x y'" in line
    assert "cache=loose" in guestfs.MOUNT_OPTIONS and "ro," in guestfs.MOUNT_OPTIONS
    assert f"export TMPDIR={guestfs.GUEST_TMP}" in line
    # the command runs whatever the mounts did: after `||`-guarded groups, never `&&`
    assert line.endswith("exec env A=1 python -m agent")
    # when init ran the line, for the boot's breakdown: a shell builtin, no fork
    assert line.startswith(f"read -r {EXEC_AT_ENV} _ < /proc/uptime; export ")
    assert "} || echo" in line


def test_qemu_export_is_read_only() -> None:
    opts = guestfs.qemu_opts()
    assert any("readonly=on" in o and "path=/" in o for o in opts)
    assert any(f"mount_tag={guestfs.MOUNT_TAG}" in o for o in opts)


def test_boot_script_is_named_by_its_content(tmp_path: Path) -> None:
    """The guest's shell line goes in a file: on the kernel command line (virtme-ng's
    --exec, base64) a few long paths overflowed its 2048 bytes and the kernel panicked."""
    line = guestfs.bootstrap([Path("/work/" + "x" * 900)], ["env", "A=1", "python", "-m", "a"])
    assert len(line) > 1800
    script = guestfs.boot_script(line, tmp_path)
    assert script.read_text() == line + "\n"
    assert guestfs.boot_script(line, tmp_path) == script  # the same line, the same file
    assert guestfs.boot_script(line + " ", tmp_path) != script
    assert len(f"sh {script}") < 200


def test_cached_script_mode_and_prefix(tmp_path: Path) -> None:
    """The QEMU wrapper vng starts is an executable, named by its content as a boot script."""
    text = "#!/bin/sh\nexec true\n"
    path = guestfs.cached_script(text, tmp_path, prefix="qemu-", mode=0o755)
    assert path.parent == tmp_path / "boot" and path.name.startswith("qemu-")
    assert path.read_text() == text and os.access(path, os.X_OK)
    assert not os.access(guestfs.boot_script("true", tmp_path), os.X_OK)
