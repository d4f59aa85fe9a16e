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


def test_attach_runs_the_mount_line_then_takes_the_environment_and_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KMX_TEST_ATTACH", raising=False)
    marker = tmp_path / "mounted"
    work = tmp_path / "work"
    work.mkdir()
    preload.attach({"mount": f"touch {marker}", "cwd": str(work),
                    "env": {"KMX_TEST_ATTACH": "1"}})
    assert marker.exists() and Path.cwd() == work
    assert os.environ["KMX_TEST_ATTACH"] == "1"


def test_a_failed_mount_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(preload.AttachError, match="no such export"):
        preload.attach({"mount": "echo 'no such export' >&2; exit 32", "cwd": str(tmp_path),
                        "env": {}})
    assert Path.cwd() == tmp_path
