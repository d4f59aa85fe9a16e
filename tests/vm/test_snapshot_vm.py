"""`kmatrix run --snapshot` on a real kernel: the first boot saves the ready guest, the
restart after a panic and the next run restore it, the cases' verdicts are those of a
booted guest, and a restored guest reads the checkout as it is now (a file changed between
the runs). Boots real VMs (builds the root image first: about a minute)."""

import os
import re
import shutil
from pathlib import Path

import pytest
from vmrun import ROOT, kmatrix_run, outcomes, suite_properties

pytestmark = pytest.mark.vm

CASES = ("tests/vm/cases/test_guest_basics.py", "tests/vm/cases/test_checkout.py", "-k",
         "test_runs_in_guest or test_panic or test_after_panic or test_reads_the_checkout")


def _starts(results: Path) -> list[str]:
    """How each VM of the run started, in order: "boot" or "restore"."""
    console = next(results.glob("console-*.log")).read_text(errors="replace")
    return re.findall(r"^=== kmatrix: (boot|restore) ", console, re.M)


def _check(results: Path) -> None:
    got = outcomes(results / "junit.xml")
    assert got["test_runs_in_guest"][0] == "passed"
    assert got["test_panic"][0] == "failure"
    assert "Kernel panic - not syncing" in got["test_panic"][1]
    assert got["test_after_panic"][0] == "passed", got["test_after_panic"][1]
    assert got["test_reads_the_checkout_as_it_is_now"][0] == "passed", \
        got["test_reads_the_checkout_as_it_is_now"][1]
    assert suite_properties(results / "junit.xml")["boots"] == "2"


#: the root image holds the host's system: ~10 GB here, with the snapshots beside it
NEEDED_FREE = 20 << 30


def test_snapshot_restores_after_a_panic_and_in_the_next_run(tmp_path: Path) -> None:
    from harness.paths import cache_root

    free = shutil.disk_usage(cache_root()).free
    if free < NEEDED_FREE:
        pytest.skip(f"{free >> 30} GB free in {cache_root()}: the root image and the "
                    f"snapshots need about {NEEDED_FREE >> 30} GB")
    # a file in the checkout (which the root image and the snapshot do not hold), changed
    # between the two runs; the second run's guests are restores of the first's save
    probe = ROOT / "results" / f"snapshot-probe-{os.getpid()}.txt"
    probe.parent.mkdir(exist_ok=True)
    try:
        first = tmp_path / "first"
        probe.write_text("first run")
        proc = kmatrix_run(first, "--snapshot", *_env(probe), *CASES)
        assert proc.returncode == 1, "the panic case fails the run"
        _check(first)
        # the first VM booted (or restored a snapshot an earlier run saved); the one after
        # the panic restored the ready guest
        assert _starts(first)[1] == "restore", _starts(first)
        second = tmp_path / "second"
        probe.write_text("the second run's content")
        proc = kmatrix_run(second, "--snapshot", *_env(probe), *CASES)
        assert proc.returncode == 1
        _check(second)
        assert _starts(second) == ["restore", "restore"]
    finally:
        probe.unlink(missing_ok=True)


def _env(probe: Path) -> tuple[str, ...]:
    return ("--guest-env", f"KMATRIX_TEST_FILE={probe}",
            "--guest-env", f"KMATRIX_TEST_CONTENT={probe.read_text()}")
