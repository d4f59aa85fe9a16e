"""Report writers read the result model only; check their output on a made-up run."""

import xml.etree.ElementTree as ET
from pathlib import Path

from harness.nodeid import case_id
from harness.results.model import CaseResult, KernelInfo, RunResults, Status
from harness.results.writers import junit_xml, markdown_matrix, observed_markdown, write_all


def sample() -> RunResults:
    res = RunResults()
    res.kernels["debian-6.1"] = KernelInfo(
        "debian-6.1", release="6.1.0-56-amd64", accel="tcg", package_version="6.1.192-2",
        probes={"tcx": {"supported": False, "detail": "BPF_LINK_CREATE: EINVAL"}},
        boots={"main-1": 20.0})
    res.kernels["debian-6.12"] = KernelInfo(
        "debian-6.12", release="6.12.117", accel="tcg",
        probes={"tcx": {"supported": True, "detail": "ok"}}, boots={"main-1": 21.0})
    res.add(CaseResult("cases/test_tcx.py::test_a[debian-6.1]", "debian-6.1", "tcx",
                       Status.SKIP, message="probe tcx: unsupported: EINVAL"))
    res.add(CaseResult("cases/test_tcx.py::test_a[debian-6.12]", "debian-6.12", "tcx",
                       Status.PASS, duration=1.5))
    res.add(CaseResult("cases/test_tcx.py::test_b[debian-6.12]", "debian-6.12", "tcx",
                       Status.CRASH, message="the guest died", details="Kernel panic"))
    return res


def test_junit_properties_and_outcomes() -> None:
    root = ET.fromstring(junit_xml(sample()))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    s61 = suites["kmatrix.debian-6.1"]
    props = {p.get("name"): p.get("value") for p in s61.iter("property")}
    assert props["kernel.release"] == "6.1.0-56-amd64"
    assert props["kernel.package_version"] == "6.1.192-2"
    assert props["accelerator"] == "tcg"
    assert str(props["probe.tcx"]).startswith("unsupported: BPF_LINK_CREATE: EINVAL")
    s612 = suites["kmatrix.debian-6.12"]
    cases = {c.get("name"): c for c in s612.iter("testcase")}
    failure = cases["test_b[debian-6.12]"].find("failure")
    assert failure is not None and failure.get("type") == "kernel-crash"
    assert cases["test_a[debian-6.12]"].find("failure") is None
    first = s61.find("testcase")
    assert first is not None and first.find("skipped") is not None


def test_markdown_matrix() -> None:
    md = markdown_matrix(sample())
    assert "| tcx | 1 skip | 1 pass, 1 crash |" in md
    assert ("| tcx | 6.6 | BPF_SYSCALL, NET_XGRESS | 6.12.117 | "
            "no (BPF_LINK_CREATE: EINVAL) | yes |") in md
    assert "`cases/test_tcx.py::test_b[debian-6.12]` crash" in md


def test_json_round_trip() -> None:
    res = sample()
    again = RunResults.from_json(res.to_json())
    assert again.to_json() == res.to_json()


def test_kernel_rows_show_vcpus_and_boot_errors() -> None:
    res = sample()
    res.kernels["debian-6.12"].vcpus = 1
    res.kernels["debian-7.3"] = KernelInfo(
        "debian-7.3", release="7.3.4-amd64", accel="tcg", vcpus=1,
        boot_error="debian-7.3: no sign of progress for 301s\n  hint: see the console log")
    md = markdown_matrix(res)
    assert "| debian-6.12 | 6.12.117 | tcg | 1 | 1 | 21.0 |" in md
    assert ("| debian-7.3 | 7.3.4-amd64 - did not boot: debian-7.3: no sign of progress "
            "for 301s | tcg | 1 | 0 | - |") in md
    props = {p.get("name"): p.get("value")
             for s in ET.fromstring(junit_xml(res)).iter("testsuite")
             if s.get("name") == "kmatrix.debian-6.12" for p in s.iter("property")}
    assert props["vm.cpus"] == "1"


def test_observed_behaviour_tables(tmp_path: Path) -> None:
    assert case_id("t.py::f[a-b-debian-6.12]", "debian-6.12") == "t.py::f[a-b]"
    assert case_id("t.py::f[debian-6.12]", "debian-6.12") == "t.py::f"
    res = sample()
    for kernel, what_a, what_b in (("debian-6.1", "map insert refused: EOPNOTSUPP", "delivered"),
                                   ("debian-6.12", "delivered", "delivered")):
        for pair, what in (("x-udp4", what_a), ("x-tcp4", what_b)):
            res.add(CaseResult(f"cases/test_sockmap.py::test_redirect[{pair}-{kernel}]", kernel,
                               "sockmap", Status.PASS, observed=what))
    md = markdown_matrix(res)
    assert "| sockmap: delivered | 1 | 2 |" in md
    assert "| sockmap: map insert refused: EOPNOTSUPP | 1 | - |" in md
    obs = observed_markdown(res)
    differ, same = obs.split("## sockmap: differs between kernels (1)")[1].split(
        "## sockmap: the same on every kernel (1)")
    assert "| `test_redirect[x-udp4]` | map insert refused: EOPNOTSUPP | delivered |" in differ
    assert "| `test_redirect[x-tcp4]` | delivered | delivered |" in same
    root = ET.fromstring(junit_xml(res))
    outs = [tc.findtext("system-out") for tc in root.iter("testcase")
            if tc.get("name") == "test_redirect[x-udp4-debian-6.1]"]
    assert outs == ["observed: map insert refused: EOPNOTSUPP"]
    assert RunResults.from_json(res.to_json()).observations() == res.observations()
    assert write_all(res, tmp_path)["observed"].read_text() == obs


def test_probe_cells_hold_the_probe_to_its_expectation() -> None:
    from harness.results.writers.markdown import probe_cell

    no = {"status": "unsupported", "detail": "bpf_link_create: EINVAL (Invalid argument)"}
    yes = {"status": "supported", "detail": "link id 7"}
    err = {"status": "error", "detail": "probe could not run: FileNotFoundError(...)\nTrace"}
    assert probe_cell(no, {"expected": True, "state": "expected"}).startswith("**NO, expected**")
    assert probe_cell(no, {"expected": False, "state": "too-old"}) == (
        "no (bpf_link_create: EINVAL (Invalid argument); too-old)")
    assert probe_cell(yes, {"expected": False, "state": "too-old"}).startswith(
        "yes (not expected")
    assert probe_cell(err, None).startswith("**PROBE ERROR** (probe could not run")
    assert probe_cell(None, None) == "-"
