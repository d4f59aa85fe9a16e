"""Shared helpers of the VM tests (imported as `vmrun`: pytest puts tests/vm on sys.path):
run `kmatrix run` as a user would, read its JUnit."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the kernel the VM tests boot (KMATRIX_TEST_KERNEL, default debian:6.12)
KERNEL = os.environ.get("KMATRIX_TEST_KERNEL", "debian:6.12")


def kmatrix_argv(results: Path, *args: str, kernel: str = KERNEL) -> list[str]:
    return [sys.executable, "-m", "harness", "run", "--no-cache", "--kernel", kernel,
            "--boot-timeout", "900", "--results-dir", str(results), *args]


def kmatrix_run(results: Path, *args: str, kernel: str = KERNEL,
                timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(kmatrix_argv(results, *args, kernel=kernel), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    return proc


def outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """test name (without parameters) -> (outcome, text) from our JUnit file."""
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


def suite_properties(junit: Path) -> dict[str, str]:
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    return {str(p.get("name")): str(p.get("value")) for p in suite.iter("property")}
