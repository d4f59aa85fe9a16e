"""The runner on a real kernel: verdicts, crash and hang recovery, evidence in reports.

Boots real VMs (tens of seconds each under TCG): kernels from $KMATRIX_TEST_KERNEL
(default debian:6.12). Marked `vm` so `-m "not vm"` gives the quick unit run.
"""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNEL = os.environ.get("KMATRIX_TEST_KERNEL", "debian:6.12")

pytestmark = pytest.mark.vm


def kmatrix_run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    results = tmp_path / "results"
    argv = [sys.executable, "-m", "harness", "run", "--no-cache", "--kernel", KERNEL,
            "--boot-timeout", "900",
            "--results-dir", str(results), *args]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    return proc, results


def outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """test name -> (outcome, text) from our JUnit file."""
    out: dict[str, tuple[str, str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "").split("[")[0]
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                out[name] = (tag, (el.get("message") or "") + "\n" + (el.text or ""))
                break
        else:
            out[name] = ("passed", "")
    return out


def test_crash_hang_recovery(tmp_path: Path) -> None:
    proc, results = kmatrix_run(
        tmp_path, "--watchdog-grace", "30", "tests/vm/cases/test_guest_basics.py",
        "-k", "not noop")
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
    suite = ET.parse(results / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["boots"] == "3", "one boot, one after the panic, one after the hang"
    assert props["kernel.release"]
    assert props["accelerator"] in ("kvm", "tcg")
    matrix = (results / "matrix.md").read_text()
    assert "guest_basics" in matrix
    console = next(results.glob("console-*.log")).read_text(errors="replace")
    assert console.count("=== kmatrix: boot") == 3
    assert "Kernel panic - not syncing" in console


@pytest.mark.parametrize("spec,expect", [
    ("/nonexistent", "no such file or directory"),
    ("debian:5.99", "no Debian amd64 kernel package for series 5.99"),
    (str(ROOT / "README.md"), "not a bootable x86 kernel image"),
])
def test_bad_kernel_fails_fast(spec: str, expect: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--kernel", spec],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert expect in proc.stderr + proc.stdout


def test_boot_that_stops_progressing(tmp_path: Path) -> None:
    """A boot that cannot finish in its window is an ERROR of the kernel's first case, with
    the stage reached and the console tail; the kernel's next case fails fast, unbooted."""
    results = tmp_path / "results"
    argv = [sys.executable, "-m", "harness", "run", "--no-cache", "--kernel", KERNEL,
            "--boot-timeout", "3", "--results-dir", str(results),
            "tests/vm/cases/test_guest_basics.py", "-k", "runs_in_guest or fails_in_guest"]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    print(proc.stdout[-4000:], proc.stderr[-2000:])
    assert proc.returncode == 1
    got = outcomes(results / "junit.xml")
    first, second = (got[name] for name in ("test_runs_in_guest", "test_fails_in_guest"))
    assert first[0] == second[0] == "error"
    assert "no sign of progress" in first[1] or "not ready after" in first[1]
    assert "last stage: " in first[1]
    assert "--- console tail ---" in first[1]
    assert "Traceback" not in first[1] and "harness/vm.py" not in first[1]
    assert "not retried: this kernel already failed to boot" in second[1]
    assert "did not boot" in (results / "matrix.md").read_text()
