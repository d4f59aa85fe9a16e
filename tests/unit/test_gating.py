"""The guest's gating rule: a probe's answer against this kernel's expectation."""

from __future__ import annotations

import pytest

from harness.guest.expect import gate
from harness.guest.probes import run_probe
from harness.guest.probes.base import ProbeResult, Unsupported
from harness.protocol import Expectation

pytest_plugins = ["pytester"]

NO = ProbeResult("tcx", "unsupported", "bpf_link_create(BPF_TCX_INGRESS, lo): EINVAL")


def test_supported_runs() -> None:
    assert gate(ProbeResult("tcx", "supported", "ok"), None).action == "run"


def test_refusal_where_expected_fails_with_the_expectation_and_the_errno() -> None:
    g = gate(NO, Expectation("tcx", True, "expected", "tcx since 6.6, kernel 6.12"))
    assert g.action == "fail"
    assert "expected on this kernel (tcx since 6.6, kernel 6.12)" in g.text
    assert "EINVAL" in g.text


def test_refusal_where_not_expected_skips_with_why() -> None:
    g = gate(NO, Expectation("tcx", False, "too-old", "tcx arrived in 6.6, this kernel is 6.1"))
    assert g.action == "skip"
    assert "EINVAL" in g.text and "too-old" in g.text


def test_configured_out_skip_names_the_symbol() -> None:
    g = gate(NO, Expectation("tcx", False, "configured-out",
                             "configured out: CONFIG_NET_XGRESS not set"))
    assert g.action == "skip" and "CONFIG_NET_XGRESS" in g.text


def test_broken_probe_is_an_error_never_a_skip() -> None:
    g = gate(ProbeResult("tcx", "error", "probe could not run: FileNotFoundError"), None)
    assert g.action == "error"
    assert "harness problem" in g.text


def test_run_probe_tells_refusal_from_breakage() -> None:
    def refused() -> str:
        raise Unsupported("EOPNOTSUPP")

    def broken() -> str:
        raise FileNotFoundError(2, "no BPF object probe_tc")

    assert run_probe("x", lambda: "fine").status == "supported"
    assert run_probe("x", refused).status == "unsupported"
    err = run_probe("x", broken)
    assert err.status == "error"
    assert "FileNotFoundError" in err.detail and "Traceback" in err.detail


GATED_CASE = '''
import pytest
from harness.guest import probes
from harness.guest.expect import install
from harness.guest.probes.base import ProbeResult

def pytest_configure(config):
    probes.remember(ProbeResult("tcx", "unsupported", "bpf_link_create(...): EINVAL"))
    probes.remember(ProbeResult("netkit", "unsupported", "RTM_NEWLINK netkit: EOPNOTSUPP"))
    install(config, {
        "tcx": {"expected": True, "state": "expected", "reason": "6.6+"},
        "netkit": {"expected": False, "state": "too-old", "reason": "netkit is 6.7+"}})
'''


def test_expected_refusal_fails_at_the_call_without_setting_up_fixtures(
        pytester: pytest.Pytester) -> None:
    pytester.makeconftest(GATED_CASE)
    pytester.makepyfile(test_gated='''
import pytest

@pytest.fixture
def uses_tcx():
    raise AssertionError("the fixture ran")

@pytest.mark.requires("tcx")
def test_tcx(uses_tcx):
    pass

@pytest.mark.requires("netkit")
def test_netkit(uses_tcx):
    pass
''')
    result = pytester.runpytest("-p", "harness.guest.plugin", "-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*tcx is expected on this kernel (6.6+)*EINVAL*"])
    result.stdout.no_fnmatch_line("*the fixture ran*")
