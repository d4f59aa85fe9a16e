"""kmatrix diff: what changed between two runs, per kernel label (fixture: 60 cases of a real
three-kernel run, tests/unit/data/shard-run-60.json, changed here into a second run)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.matrix_bench import compare
from harness.cli import main
from harness.errors import ExitCode
from harness.results.diff import diff_markdown, diff_runs
from harness.results.model import CaseResult, RunResults, Status
from harness.results.writers import write_all

DATA = Path(__file__).parent / "data" / "shard-run-60.json"


def run_a() -> RunResults:
    res = RunResults.from_json(json.loads(DATA.read_text()))
    # one case failing in A (fixed in B below)
    i = _at(res, "debian-6.12", "sockmap_semantics")
    res.cases[i] = replace(res.cases[i], status=Status.FAIL, message="assert 1 == 2")
    return res


def _at(res: RunResults, kernel: str, feature: str, nth: int = 0) -> int:
    return [i for i, c in enumerate(res.cases)
            if c.kernel == kernel and c.feature == feature][nth]


def run_b(a: RunResults) -> tuple[RunResults, dict[str, CaseResult]]:
    """A, with one change of each kind; returns B and the changed cases by kind."""
    b = copy.deepcopy(a)
    changed: dict[str, CaseResult] = {}
    for kind, kernel, feature, status, message in (
            ("fail", "debian-7.3", "sockmap", Status.FAIL,
             "AssertionError: nothing delivered\nmore"),
            ("fixed", "debian-6.12", "sockmap_semantics", Status.PASS, ""),
            ("skip", "debian-6.12", "tcx", Status.SKIP, "Skipped: x")):
        i = _at(b, kernel, feature)
        b.cases[i] = changed[kind] = replace(b.cases[i], status=status, message=message)
    removed = b.cases.pop(_at(b, "debian-6.1", "netkit"))
    added = replace(b.cases[_at(b, "debian-6.1", "tcx")],
                    nodeid="cases/test_tcx.py::test_new_case[debian-6.1]",
                    status=Status.ERROR, message="probe tcx: error")
    b.cases.append(added)
    b.kernels["debian-6.1"].probes["tcx"] = {"supported": True, "detail": ""}
    b.kernels["debian-7.3"].probes["netkit"] = {"supported": False, "detail": "EOPNOTSUPP"}
    b.kernels["debian-7.3"].package_version = "7.3.5-1"
    return b, {**changed, "removed": removed, "added": added}


def test_no_differences() -> None:
    a = run_a()
    d = diff_runs(a, copy.deepcopy(a))
    assert d.new_failures == [] and list(d.changes()) == []
    assert all(k.unchanged == 20 for k in d.kernels)
    assert "No differences." in diff_markdown(d)


def test_each_kind_of_change() -> None:
    a = run_a()
    b, changed = run_b(a)
    d = diff_runs(a, b, "runA", "runB")
    k = {kd.label: kd for kd in d.kernels}
    assert [c.nodeid for c in d.new_failures] == [changed["added"].nodeid,
                                                   changed["fail"].nodeid]
    assert k["debian-7.3"].new_failures[0].transition == "pass -> fail"
    assert k["debian-7.3"].new_failures[0].message == "AssertionError: nothing delivered"
    assert [c.nodeid for c in k["debian-6.12"].fixed] == [changed["fixed"].nodeid]
    assert [(c.nodeid, c.transition) for c in k["debian-6.12"].changed] == [
        (changed["skip"].nodeid, "pass -> skip")]
    assert [c.nodeid for c in k["debian-6.1"].removed] == [changed["removed"].nodeid]
    assert [(c.nodeid, c.before, c.after) for c in k["debian-6.1"].added] == [
        (changed["added"].nodeid, None, Status.ERROR)]
    assert [(p.feature, p.before, p.after) for p in k["debian-6.1"].newly_supported] == [
        ("tcx", "unsupported", "supported")]
    assert [(p.feature, p.detail) for p in k["debian-7.3"].newly_unsupported] == [
        ("netkit", "EOPNOTSUPP")]
    assert (k["debian-7.3"].version_before, k["debian-7.3"].version_after) == (
        "7.3.4-1~bpo13+1", "7.3.5-1")
    assert k["debian-6.1"].unchanged == 19 and k["debian-7.3"].unchanged == 19
    text = diff_markdown(d)
    assert "| debian-7.3 | 1 | 0 | 0 | 0 | 0 | 0 | 1 | 19 |" in text
    assert "## debian-7.3 (7.3.4-1~bpo13+1 -> 7.3.5-1)" in text
    assert ("- `cases/test_tcx.py::test_new_case` - -> error: probe tcx: error"
            in text)
    assert "### Newly unsupported (1)\n\n- netkit: supported -> unsupported (EOPNOTSUPP)" \
        in text


def test_kernel_labels_that_differ() -> None:
    a = run_a()
    b = copy.deepcopy(a)
    b.kernels["debian-7.4"] = b.kernels.pop("debian-7.3")
    b.cases = [c for c in b.cases if c.kernel != "debian-7.3"]
    b.cases.append(CaseResult("cases/t.py::test_x[debian-7.4]", "debian-7.4", "t",
                              Status.FAIL, message="boom"))
    d = diff_runs(a, b)
    assert (d.only_a, d.only_b) == (["debian-7.3"], ["debian-7.4"])
    assert [c.nodeid for c in d.new_failures] == ["cases/t.py::test_x[debian-7.4]"]
    assert len(next(k for k in d.kernels if k.label == "debian-7.3").removed) == 20
    assert ("kernel labels differ (kernels are matched by label): only in A: debian-7.3; "
            "only in B: debian-7.4") in diff_markdown(d)


def test_long_lists_are_cut_in_markdown() -> None:
    a = run_a()
    b = RunResults(kernels=copy.deepcopy(a.kernels))
    d = diff_runs(a, b)
    text = diff_markdown(d, limit=5)
    assert "### Cases removed (20)" in text and "- ... and 15 more" in text


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = run_a()
    b, _ = run_b(a)
    write_all(a, tmp_path / "a")
    write_all(b, tmp_path / "b")
    assert main(["diff", str(tmp_path / "a"), str(tmp_path / "a")]) == ExitCode.OK
    assert "No differences." in capsys.readouterr().out
    assert main(["diff", str(tmp_path / "a"), str(tmp_path / "b")]) == ExitCode.TESTS_FAILED
    assert "### New failures (1)" in capsys.readouterr().out
    # b -> a: the case B fixed fails again, B's new failure is fixed
    assert main(["diff", str(tmp_path / "b"), str(tmp_path / "a")]) == ExitCode.TESTS_FAILED
    out = capsys.readouterr().out
    assert "### Fixed (1)" in out
    assert main(["diff", str(tmp_path / "a"), str(tmp_path / "nowhere")]) == \
        ExitCode.USAGE_ERROR
    assert "not a readable results folder" in capsys.readouterr().err


def test_matrix_bench_compare_uses_the_diff() -> None:
    a = run_a()
    b, changed = run_b(a)
    text = compare(a.to_json(), b.to_json())
    assert "cases in both runs: 59; same verdict: 56; changed: 3" in text
    assert f"  {changed['fail'].nodeid}: pass -> fail" in text
    assert "only in the first run: 1" in text and "only in the second run: 1" in text


def test_matrix_bench_sums_the_guest_cpu_per_suite() -> None:
    from benchmarks.matrix_bench import per_kernel_and_suite, report

    a = run_a().to_json()
    for case in a["cases"]:
        case["timing"] = {"case_cpu_s": 0.25, "agent_cpu_s": 0.05}
    rows = per_kernel_and_suite(a)
    assert all(abs(r["cpu_s"] - 0.3 * r["cases"]) < 1e-9 for r in rows.values())
    assert "CPU s" in report(a)
    text = compare(a, a)
    assert "CPU before" in text and text.splitlines()[-1].split()[-2:] == [
        f"{0.3 * len(a['cases']):.0f}"] * 2
