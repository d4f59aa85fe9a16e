"""Pure logic of the arena benchmark: the ratios, the report, the SVG, and the exactness
check of the guest side (with stand-in readers, no kernel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.arena_bench import ratios, table_lines, write_svg
from harness.guest.bench import arena as bench


def result(kernel: str = "debian-6.12", **over: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kernel": kernel, "repeat": 1000, "reads": 10, "rounds": 3,
        "update_ns": {"arena": 30.0, "array": 40.0, "hash": 80.0, "none": 20.0},
        "read_ns": {"arena-mmap": 2000.0, "array-mmap": 1000.0, "array-lookup": 1e6,
                    "hash-lookup": 1.5e6},
        "skipped": {}, "checks": {}}
    out.update(over)
    return out


def test_ratios_against_the_array_map() -> None:
    rat = ratios(result())
    assert rat["update"] == {"arena": 0.75, "hash": 2.0}
    assert rat["update_net"] == {"arena": 0.5, "hash": 3.0}
    assert rat["read"] == {"arena-mmap": 0.002, "array-mmap": 0.001, "hash-lookup": 1.5}


def test_ratios_missing_or_below_noise_are_none() -> None:
    skipped = result(update_ns={"array": 40.0, "hash": 80.0, "none": 20.0},
                     read_ns={"array-mmap": 1000.0, "array-lookup": 1e6, "hash-lookup": 1e6},
                     skipped={"arena": "probe arena: unsupported: EINVAL",
                              "arena-mmap": "probe arena: unsupported: EINVAL"})
    rat = ratios(skipped)
    assert rat["update"]["arena"] is None and rat["update_net"]["arena"] is None
    assert rat["read"]["arena-mmap"] is None
    # an update that costs no more than the bare test run has no net ratio
    flat = result(update_ns={"arena": 20.0, "array": 20.0, "hash": 25.0, "none": 20.0})
    assert ratios(flat)["update_net"] == {"arena": None, "hash": None}


def test_table_reports_skips_and_failed_checks() -> None:
    lines = table_lines([
        result(),
        result("debian-6.1", update_ns={"array": 40.0, "hash": 80.0, "none": 20.0},
               skipped={"arena": "probe arena: unsupported: bpf_map_create: EINVAL"},
               checks={"hash-lookup": "want 4000 in slot 7 and 0 elsewhere, got {7: 3999}"})])
    text = "\n".join(lines)
    assert "debian-6.12" in text and "0.75" in text and "0.002" in text
    assert "debian-6.1   arena skipped: probe arena: unsupported" in text
    assert "CHECK FAILED hash-lookup" in text


def test_svg_written(tmp_path: Path) -> None:
    path = tmp_path / "arena_bench.svg"
    write_svg([result(), result("debian-6.1", skipped={"arena": "no"})], path)
    text = path.read_text()
    assert text.startswith("<svg") and "debian-6.1" in text and "arena-mmap" in text


def test_expected_table_and_check() -> None:
    runs = 4000
    want = bench.expected_table(runs)
    assert len(want) == bench.NSLOTS and want[bench.SLOT] == runs and sum(want) == runs
    tables = bench.Tables(readers={"good": lambda: want,
                                   "short": lambda: tuple(v - (v > 0) for v in want)})
    problems = bench.check_tables(tables, runs)
    assert list(problems) == ["short"]
    assert f"want {runs} in slot {bench.SLOT}" in problems["short"]


def test_frame_selects_the_slot() -> None:
    assert len(bench.FRAME) == 64 and bench.FRAME[14] == bench.SLOT


@pytest.mark.parametrize("values,want", [([], None), ([3.0], 3.0), ([5.0, 1.0, 3.0], 3.0)])
def test_median(values: list[float], want: float | None) -> None:
    assert bench.median(values) == want
