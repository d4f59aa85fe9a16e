"""The runner on a real kernel: verdicts, crash and hang recovery, evidence in reports.

Boots real VMs (tens of seconds each under TCG): kernels from $KMATRIX_TEST_KERNEL
(default debian:6.12). Marked `vm` so `-m "not vm"` gives the quick unit run.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from vmrun import ROOT, kmatrix_run, outcomes, suite_properties

pytestmark = pytest.mark.vm


def test_crash_hang_recovery(tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = kmatrix_run(results, "--watchdog-grace", "30",
                       "tests/vm/cases/test_guest_basics.py", "-k", "not noop")
    assert proc.returncode == 1, "failing cases must make the run fail"
    got = outcomes(results / "junit.xml")
    assert got["test_runs_in_guest"][0] == "passed"
    assert got["test_fails_in_guest"][0] == "failure"
    assert "this case fails on purpose" in got["test_fails_in_guest"][1]
    assert got["test_requires_unknown"][0] == "error"
    assert "unknown feature 'no_such_feature'" in got["test_requires_unknown"][1]
    # a panic fails the case that caused it, with the panic text, and the run goes on
    assert got["test_panic"][0] == "failure"
    assert "Kernel panic - not syncing" in got["test_panic"][1]
    assert "sysrq" in got["test_panic"][1].lower()
    assert got["test_after_panic"][0] == "passed"
    # a user-space hang is killed by the agent at the case timeout, with Python stacks
    assert got["test_hang_userspace"][0] == "failure"
    assert "timed out after 20s" in got["test_hang_userspace"][1]
    assert "test_hang_userspace" in got["test_hang_userspace"][1]
    assert got["test_after_hang"][0] == "passed"
    # a guest that stops answering is caught by the host watchdog; the VM is restarted
    assert got["test_hang_agent"][0] == "failure"
    assert "stopped answering" in got["test_hang_agent"][1]
    assert got["test_after_agent_hang"][0] == "passed"
    # a WARN during a case fails it although its body passed (where lkdtm can make one)
    warn_outcome, warn_text = got["test_kernel_warn"]
    if warn_outcome == "skipped":
        assert "lkdtm not available" in warn_text
    else:
        assert warn_outcome == "failure"
        assert "the kernel reported problems during this case" in warn_text
        assert "WARNING:" in warn_text
    props = suite_properties(results / "junit.xml")
    assert props["boots"] == "3", "one boot, one after the panic, one after the hang"
    assert props["kernel.release"]
    assert props["accelerator"] in ("kvm", "tcg")
    matrix = (results / "matrix.md").read_text()
    assert "guest_basics" in matrix
    console = next(results.glob("console-*.log")).read_text(errors="replace")
    # booted, or restored from a snapshot (the default where the kernel can be)
    assert console.count("=== kmatrix: boot") + console.count("=== kmatrix: restore") == 3
    assert "Kernel panic - not syncing" in console


@pytest.mark.parametrize("spec,expect", [
    ("/nonexistent", "no such file or directory"),
    ("debian:5.99", "no Debian amd64 kernel package for series 5.99"),
    (str(ROOT / "README.md"), "not a bootable x86 kernel image"),
])
def test_bad_kernel_fails_fast(spec: str, expect: str) -> None:
    """Bad input: a clear message and exit status 4 (usage error), within seconds."""
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--kernel", spec],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert expect in proc.stderr + proc.stdout


def test_boot_that_stops_progressing(tmp_path: Path) -> None:
    """A boot that cannot finish in its window is an ERROR of the kernel's first case, with
    the stage reached and the console tail; the kernel's next case fails fast, unbooted."""
    results = tmp_path / "results"
    # on the 9p root: a restored snapshot can be ready within 3 s windows
    proc = kmatrix_run(results, "--boot-timeout", "3", "--no-snapshot",
                       "tests/vm/cases/test_guest_basics.py",
                       "-k", "runs_in_guest or fails_in_guest", timeout=300)
    # a kernel that could not be booted is an infrastructure failure: exit status 6
    assert proc.returncode == 6
    got = outcomes(results / "junit.xml")
    first, second = (got[name] for name in ("test_runs_in_guest", "test_fails_in_guest"))
    assert first[0] == second[0] == "error"
    assert "no sign of progress" in first[1] or "not ready after" in first[1]
    assert "last stage: " in first[1]
    assert "--- console tail ---" in first[1]
    assert "Traceback" not in first[1] and "harness/vm.py" not in first[1]
    assert "not retried: this kernel already failed to boot" in second[1]
    assert "did not boot" in (results / "matrix.md").read_text()


def test_rerun_failed_reports_flaky(tmp_path: Path) -> None:
    """A case that fails, then passes on a fresh boot, is flaky: never a plain pass, and
    not a failure of the run; without --rerun-failed it is a failure."""
    case = "tests/vm/cases/test_flaky.py"
    results = tmp_path / "rerun"
    proc = kmatrix_run(results, "--rerun-failed", "2", case)
    assert proc.returncode == 0, proc.stdout[-2000:]
    data = json.loads((results / "results.json").read_text())
    (only,) = data["cases"]
    assert only["status"] == "flaky", only
    assert "then passed on a fresh boot" in only["message"]
    assert "fails on the first boot" in only["details"]
    assert "flaky" in (results / "matrix.md").read_text()
    assert suite_properties(results / "junit.xml")["boots"] == "2"
    plain = kmatrix_run(tmp_path / "plain", case)
    assert plain.returncode == 1
    assert outcomes(tmp_path / "plain" / "junit.xml")["test_fails_on_first_boot"][0] == \
        "failure"
