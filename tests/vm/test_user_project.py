"""kmatrix in a contributor's own project (examples/user-project): its cases run inside
the kernel with node ids relative to its rootdir, its conftest and helpers importable in
the guest, its own BPF object compiled and found."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from vmrun import KERNEL, ROOT, outcomes

pytestmark = pytest.mark.vm

PROJECT = ROOT / "examples" / "user-project"


def test_project_cases_run_in_the_guest(tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--kernel", KERNEL, "-p", "no:cacheprovider",
         "--boot-timeout", "900", "--results-dir", str(results), "-rA"],
        cwd=PROJECT, capture_output=True, text=True, timeout=1800)
    print(proc.stdout[-5000:], proc.stderr[-2000:])
    assert proc.returncode == 0, proc.stdout[-3000:]
    label = KERNEL.replace(":", "-")
    assert f"PASSED mycases/test_count.py::test_counts_udp_at_tcx_ingress[{label}]" in \
        proc.stdout  # node ids relative to the project's rootdir
    got = outcomes(results / "junit.xml")
    assert got["test_counts_udp_at_tcx_ingress"][0] == "passed"
    assert got["test_sees_the_projects_helpers"][0] == "passed"
