"""KCIDB export: the JSON of a real (trimmed) three-kernel run validates against kcidb-io's
newest schema, statuses map as documented, and `kmatrix export kcidb` writes it."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.cli.export import load_results, run_identity
from harness.results.model import CaseResult, KernelInfo, RunResults, Status
from harness.results.writers.kcidb import (
    LOG_EXCERPT_MAX,
    SCHEMA_VERSION,
    excerpt,
    kcidb_path,
    kcidb_report,
    kcidb_status,
)

schema = pytest.importorskip("kcidb_io.schema",
                             reason="kcidb-io is not installed (pip install -e .[dev])")
DATA = Path(__file__).parent / "data" / "results-3kernels.json"
START = datetime(2026, 11, 30, 14, 5, tzinfo=UTC)


def report() -> dict[str, Any]:
    return kcidb_report(RunResults.from_json(json.loads(DATA.read_text())), run_id="r1",
                        start_time=START)


def test_written_version_is_kcidb_io_newest_and_validates() -> None:
    data = report()
    assert (SCHEMA_VERSION["major"], SCHEMA_VERSION["minor"]) == (
        schema.LATEST.major, schema.LATEST.minor)
    schema.LATEST.validate_exactly(data)
    schema.LATEST.validate(data)


def test_objects_and_links() -> None:
    data = report()
    checkouts = {c["id"]: c for c in data["checkouts"]}
    builds = {b["id"]: b for b in data["builds"]}
    tests = data["tests"]
    assert set(checkouts) == {"kmatrix:debian:linux:6.1.192-3", "kmatrix:debian:linux:6.12.117-1",
                              "kmatrix:debian:linux:7.3.4-1~bpo13+1"}
    build = builds["kmatrix:debian:linux-image-6.1.0-57-amd64:6.1.192-3"]
    assert build["checkout_id"] == "kmatrix:debian:linux:6.1.192-3"
    assert build["config_name"] == "debian amd64" and build["architecture"] == "x86_64"
    assert all(t["build_id"] in builds for t in tests)
    ids = [t["id"] for t in tests]
    assert len(ids) == len(set(ids)) == 78 + 3  # every case and kernel, one boot per kernel
    boot = next(t for t in tests if t["id"] == "kmatrix:r1:debian-6.12:boot")
    assert boot["status"] == "PASS" and "tcx" in boot["misc"]["probes"]


def test_statuses_paths_and_excerpts() -> None:
    by_node = {t["misc"]["nodeid"]: t for t in report()["tests"]
               if "nodeid" in t["misc"]}
    fail = by_node["cases/test_tcx.py::test_attach[egress-debian-6.12]"]
    assert fail["status"] == "FAIL" and fail["path"] == "kmatrix.tcx.test_attach.egress"
    assert "WARNING: CPU: 1 PID: 412" in fail["log_excerpt"]  # dmesg
    assert fail["start_time"] == START.isoformat() and fail["duration"] > 0
    crash = next(t for t in by_node.values() if t["misc"]["kmatrix_status"] == "crash")
    assert crash["status"] == "FAIL" and "crashed" in crash["comment"]
    skip = by_node["cases/test_tcx.py::test_attach[egress-debian-6.1]"]
    assert skip["status"] == "SKIP" and "probe tcx: unsupported" in skip["log_excerpt"]
    error = next(t for t in by_node.values() if t["misc"]["kmatrix_status"] == "error")
    assert error["status"] == "ERROR"
    passed = by_node["cases/test_tcx.py::test_attach[egress-debian-7.3]"]
    assert passed["status"] == "PASS" and "log_excerpt" not in passed


def test_a_kernel_that_did_not_boot_misses_its_cases() -> None:
    res = RunResults()
    res.kernels["k"] = KernelInfo("k", spec="/boot/vmlinuz", origin="image /boot/vmlinuz",
                                  boot_error="boot stalled at stage kernel\n  hint: ...")
    res.add(CaseResult("cases/test_x.py::test_a[k]", "k", "x", Status.ERROR,
                       message="[k] boot stalled at stage kernel", details="..."))
    res.add(CaseResult("cases/test_x.py::test_b[k]", "k", "x", Status.ERROR,
                       message="error in guest setup: fixture broke"))
    assert [kcidb_status(c, res.kernels["k"]) for c in res.cases] == ["MISS", "ERROR"]
    data = kcidb_report(res, run_id="r")
    schema.LATEST.validate_exactly(data)
    assert data["tests"][0]["status"] == "ERROR"  # the boot test


def test_paths_are_valid_kcidb_paths() -> None:
    c = CaseResult("cases/test_sockmap.py::TestX::test_y[a.b/c d-debian-6.12]", "debian-6.12",
                   "sockmap", Status.PASS)
    assert kcidb_path(c) == "kmatrix.sockmap.TestX.test_y.a_b_c_d"
    assert schema.LATEST.path_re.match(kcidb_path(c))


def test_excerpt_keeps_head_and_tail_within_the_limit() -> None:
    text = "assert 1 == 2\n" + "x" * 40_000 + "\nWARNING: at the end\0"
    cut = excerpt(text)
    assert len(cut) == LOG_EXCERPT_MAX and "\0" not in cut
    assert cut.startswith("assert 1 == 2") and cut.endswith("WARNING: at the end")


def test_export_command_on_an_old_format_results_folder(tmp_path: Path) -> None:
    run = tmp_path / "20261130-140500"
    run.mkdir()
    raw = json.loads(DATA.read_text())
    raw["kernels"]["debian-6.1"]["field_of_a_newer_kmatrix"] = 1  # tolerated
    raw["run"] = {"id": "abc", "shard": [2, 3], "field_of_a_newer_kmatrix": 1}
    (run / "results.json").write_text(json.dumps(raw))
    loaded = load_results(run)
    assert len(loaded.cases) == 78
    assert loaded.run is not None and loaded.run.shard == (2, 3)
    run_id, start = run_identity(run)
    assert run_id.startswith("20261130-140500-") and start.year == 2026
    assert main(["export", "kcidb", str(run)]) == 0
    data = json.loads((run / "kcidb.json").read_text())
    schema.LATEST.validate_exactly(data)
    out = tmp_path / "other.json"
    assert main(["export", "kcidb", str(run / "results.json"), "-o", str(out),
                 "--origin", "my_ci", "--run-id", "x"]) == 0
    assert json.loads(out.read_text())["tests"][0]["id"] == "my_ci:x:debian-6.1:boot"
    assert main(["export", "kcidb", str(run), "--origin", "Bad-Origin"]) == 4
    assert main(["export", "kcidb", str(tmp_path / "nothing")]) == 4


@pytest.mark.skipif(not Path("/work/runs/base-cmd1/results.json").exists(),
                    reason="the full three-kernel run is only on the development machine")
def test_full_real_run_validates(tmp_path: Path) -> None:
    shutil.copy("/work/runs/base-cmd1/results.json", tmp_path / "results.json")
    assert main(["export", "kcidb", str(tmp_path), "-o", str(tmp_path / "k.json")]) == 0
    data = json.loads((tmp_path / "k.json").read_text())
    schema.LATEST.validate_exactly(data)
    assert len(data["tests"]) == 2031 + 3
