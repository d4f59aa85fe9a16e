"""The run's progress model, its plain lines, the live table, and when kmatrix run asks
for the live view."""

from __future__ import annotations

import argparse

from harness.cli.run import options_help, wants_live
from harness.progress import RunProgress, expected_durations, format_seconds, render_table


def test_counts_stages_and_eta_from_recorded_durations() -> None:
    p = RunProgress(workers=2, expected={"a[k1]": 10.0, "b[k1]": 30.0, "c[k2]": 5.0})
    p.collected("k1", ["a[k1]", "b[k1]"])
    p.collected("k2", ["c[k2]", "d[k2]"])
    p.collected("k3", ["e[k3]"])
    p.stage("k1", "booting: agent started")
    assert p.eta() is None  # nothing is known of k3's case, and nothing ran there
    p.case_done("k3", "e[k3]", "pass", 0.0)
    assert p.eta() == (40.0 + 5.0 + 5.0) / 2  # k2's d as k2's recorded mean
    p.case_done("k2", "c[k2]", "pass", 30.0)  # the first case of k2: its boot's time too
    assert p.eta() == (40.0 + 5.0) / 2  # d still as k2's recorded mean
    p.collected("k2", ["c[k2]", "d[k2]", "f[k2]"])
    p.kernel("k2").counts.clear()
    p.case_done("k2", "c[k2]", "pass", 30.0)
    p.case_done("k2", "d[k2]", "pass", 4.0)
    assert p.kernel("k2").stage == "running"
    # k1: 40 s recorded; k2: f estimated from d (4 s: c's 30 s carried the boot)
    assert p.eta() == (40.0 + 4.0) / 2
    p.case_done("k1", "a[k1]", "fail", 12.0)
    p.case_done("k1", "b[k1]", "skip", 1.0)
    assert p.kernel("k1").stage == "done"
    assert p.kernel("k1").counts == {"fail": 1, "skip": 1}
    lines = p.lines()
    assert "kmatrix: [k1] done: 2/2 cases (1 fail, 1 skip)" in lines
    assert "kmatrix: [k2] running: 2/3 cases (2 pass)" in lines
    assert "kmatrix: [k3] done: 1/1 cases (1 pass)" in lines
    assert lines[-1].endswith("about 2s left")


def test_acquisition_shows_until_ready() -> None:
    p = RunProgress()
    p.acquire("debian linux-image-6.12", "downloading 6.12.117-1: 45% (3s)")
    assert p.lines()[0] == "kmatrix: debian linux-image-6.12: downloading 6.12.117-1: 45% (3s)"
    p.acquire("debian linux-image-6.12", "")
    assert not p.acquiring


def test_expected_durations_cap_a_boot_on_a_first_case() -> None:
    data = {"cases": [{"nodeid": f"t{i}", "duration": 0.5} for i in range(10)]
            + [{"nodeid": "first", "duration": 120.0}]}
    got = expected_durations(data)
    assert got["t3"] == 0.5 and got["first"] == 10.0  # 20 x the median


def test_render_table_has_a_row_per_kernel() -> None:
    from rich.console import Console

    p = RunProgress()
    p.collected("debian-6.12", ["x"])
    p.case_done("debian-6.12", "x", "pass", 1.0)
    console = Console(width=120, record=True)
    console.print(render_table(p))
    text = console.export_text()
    assert "debian-6.12" in text and "1/1" in text and "done" in text


def test_format_seconds() -> None:
    assert [format_seconds(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]


def test_live_only_on_a_terminal_without_verbosity_or_ci(monkeypatch: object) -> None:
    import pytest

    mp = pytest.MonkeyPatch()
    mp.delenv("CI", raising=False)
    args = argparse.Namespace(no_live=False)
    assert wants_live(args, [], isatty=True)
    assert not wants_live(args, [], isatty=False)
    assert not wants_live(args, ["-v"], isatty=True)
    assert not wants_live(args, ["-x", "-q"], isatty=True)
    assert not wants_live(argparse.Namespace(no_live=True), [], isatty=True)
    mp.setenv("CI", "true")
    assert not wants_live(args, [], isatty=True)
    mp.undo()


def test_run_help_lists_kmatrix_options() -> None:
    text = options_help()
    for flag in ("--boot-timeout", "--case-timeout", "--accel", "--results-dir",
                 "--vm-cpus", "--vm-memory", "--shard", "--live"):
        assert flag in text
