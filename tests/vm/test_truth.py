"""Verification truth on real kernels: a refusal where the kernel is expected to have the
feature fails; a probe that breaks is an error, not a skip; a case that leaves something
behind fails and the next one starts clean."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from vmrun import kmatrix_run, outcomes, suite_properties

from harness.bpf.compile import object_set

pytestmark = pytest.mark.vm

TCX_CASES = "test_attach or test_revision_estale or test_query_empty"


def test_expected_but_refused_fails(tmp_path: Path) -> None:
    """tcx declared expected on debian:6.1 (as a user who believes in a backport would):
    every TCX case fails with the expectation and the probe's errno; the run exits 1."""
    matrix = tmp_path / "matrix.toml"
    matrix.write_text('[[kernel]]\nspec = "debian:6.1"\n[kernel.expect]\n'
                      'tcx = { expected = true, why = "our distro backported tcx" }\n')
    results = tmp_path / "results"
    proc = kmatrix_run(results, "--matrix-file", str(matrix), "cases/test_tcx.py",
                       "-k", TCX_CASES, kernel="debian:6.1")
    assert proc.returncode == 1
    got = outcomes(results / "junit.xml")
    assert set(got) == {"test_attach", "test_revision_estale", "test_query_empty"}
    for name, (outcome, text) in got.items():
        assert outcome == "failure", (name, outcome, text)
        assert "tcx is expected on this kernel (expected by the matrix: our distro " \
               "backported tcx)" in text
        assert "EINVAL" in text
    props = suite_properties(results / "junit.xml")
    assert props["expect.tcx"].startswith("expected (override)")
    assert "**NO, expected**" in (results / "matrix.md").read_text()


def test_broken_probe_errors_and_leaks_fail(tmp_path: Path) -> None:
    """One boot, two rules: (1) the tcx probe pointed at a missing BPF object is an ERROR of
    every tcx case, with the traceback, never a skip; (2) a case that leaves a link in the
    root namespace or a pinned map fails naming it, and the next case does not see it."""
    objects = tmp_path / "objects"
    shutil.copytree(object_set(), objects)
    (objects / "probe_tc.bpf.o").unlink()
    (objects / ".complete").unlink(missing_ok=True)
    results = tmp_path / "results"
    proc = kmatrix_run(results, "--bpf-objects", str(objects), "cases/test_tcx.py",
                       "-k", f"{TCX_CASES} or test_isolation",
                       "tests/vm/cases/test_isolation.py")
    assert proc.returncode == 1
    got = outcomes(results / "junit.xml")
    for name in ("test_attach", "test_revision_estale", "test_query_empty"):
        outcome, text = got[name]
        assert outcome == "error", (name, outcome, text)
        assert "probe tcx could not run" in text and "probe_tc" in text
        assert "Traceback" in text
    assert got["test_starts_in_a_fresh_netns"][0] == "passed"
    outcome, text = got["test_leaks_a_link"]
    assert outcome == "failure" and "leaked: link kmxleak0" in text, text
    assert got["test_leaked_link_is_gone"][0] == "passed"
    outcome, text = got["test_leaks_a_pin"]
    assert outcome == "failure" and "pinned /sys/fs/bpf/kmx_leaked_map" in text, text
    assert got["test_leaked_pin_is_gone"][0] == "passed"
    assert "PROBE ERROR" in (results / "matrix.md").read_text()
