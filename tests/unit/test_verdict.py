"""Mapping guest verdicts to host phases, on verdicts shaped as the agent sends them."""

import pytest

from harness.pytest_plugin.verdict import guest_properties, interpret

WARN = ["------------[ cut here ]------------",
        "WARNING: CPU: 0 PID: 77 at net/core/filter.c:1234 bpf_foo+0x1a/0x30",
        "Call Trace:", "---[ end trace 0000000000000000 ]---"]


def rep(when: str, outcome: str, longrepr: str = "") -> dict[str, object]:
    return {"when": when, "outcome": outcome, "longrepr": longrepr, "duration": 0.1,
            "sections": []}


def test_pass() -> None:
    v = {"reports": [rep("setup", "passed"), rep("call", "passed"), rep("teardown", "passed")]}
    p = interpret(v, "x", 10)
    assert (p.setup_error, p.setup_skip, p.call_error, p.call_skip, p.teardown_error) == (
        None, None, None, None, None)


def test_warn_fails_a_passing_case() -> None:
    v = {"reports": [rep("setup", "passed"), rep("call", "passed"), rep("teardown", "passed")],
         "dmesg": ["random: crng init done", *WARN]}
    p = interpret(v, "x", 10)
    assert p.call_error is not None and "WARNING: CPU: 0 PID: 77" in p.call_error


def test_warn_during_a_skipped_case_still_fails() -> None:
    v = {"reports": [rep("setup", "skipped", "probe tcx: unsupported"),
                     rep("teardown", "passed")], "dmesg": WARN}
    p = interpret(v, "x", 10)
    assert p.setup_skip is None and p.call_error is not None


def test_probe_skip() -> None:
    v = {"reports": [rep("setup", "skipped", "probe tcx: unsupported: EINVAL"),
                     rep("teardown", "passed")]}
    assert interpret(v, "x", 10).setup_skip == "probe tcx: unsupported: EINVAL"


def test_failure_and_teardown_error() -> None:
    v = {"reports": [rep("setup", "passed"), rep("call", "failed", "assert 1 == 2"),
                     rep("teardown", "failed", "ENODEV? no: EBUSY")]}
    p = interpret(v, "x", 10)
    assert p.call_error == "assert 1 == 2"
    assert p.teardown_error is not None and "EBUSY" in p.teardown_error


def test_setup_error() -> None:
    v = {"reports": [rep("setup", "failed", "ValueError: unknown feature"),
                     rep("teardown", "passed")]}
    p = interpret(v, "x", 10)
    assert p.setup_error is not None and "unknown feature" in p.setup_error


def test_timeout_carries_stacks() -> None:
    v = {"timed_out": True, "traceback": 'File "cases/test_x.py", line 3 in test_x'}
    p = interpret(v, "x", 20)
    assert p.call_error is not None
    assert "timed out after 20s" in p.call_error and "test_x.py" in p.call_error


def test_no_reports_is_an_error_with_output() -> None:
    v = {"exit": 4, "collect_errors": [], "output": "ERROR: not found: cases/test_x.py::nope"}
    p = interpret(v, "cases/test_x.py::nope", 10)
    assert p.setup_error is not None and "not found" in p.setup_error


def test_guest_properties_from_record_property() -> None:
    call = {**rep("call", "passed"), "user_properties": [["observed", "delivered"]]}
    v = {"reports": [rep("setup", "passed"), call, {**rep("teardown", "passed"),
                                                   "user_properties": [["observed",
                                                                        "delivered"]]}]}
    assert guest_properties(v) == {"observed": "delivered"}
    assert guest_properties({"reports": [rep("setup", "skipped")]}) == {}


def test_guest_skip_reason_without_pytest_prefix() -> None:
    """The guest sends the bare reason; the host's pytest.skip adds "Skipped: " once."""
    from harness.guest.case_process import serialize_report

    report = pytest.TestReport("cases/x.py::t", ("x.py", 1, "t"), {}, "skipped",
                        ("x.py", 3, "Skipped: probe netkit: unsupported: EOPNOTSUPP"), "setup")
    assert serialize_report(report)["longrepr"] == "probe netkit: unsupported: EOPNOTSUPP"


def test_guest_xfail_is_carried_with_its_reason() -> None:
    call = {**rep("call", "skipped", "Traceback ... XFailed"), "wasxfail": "kernel gap: X"}
    v = {"reports": [rep("setup", "passed"), call, rep("teardown", "passed")]}
    p = interpret(v, "x", 10)
    assert (p.xfail, p.call_skip, p.call_error) == ("kernel gap: X", None, None)


def test_guest_xfail_report_serialized_with_reason() -> None:
    from harness.guest.case_process import serialize_report

    report = pytest.TestReport("cases/x.py::t", ("x.py", 1, "t"), {}, "skipped", None, "call")
    report.wasxfail = "kernel gap: FIONREAD is 0"
    assert serialize_report(report)["wasxfail"] == "kernel gap: FIONREAD is 0"


EVIDENCE = {
    "namespaces": [{"label": "case", "cookie": 1, "inum": 2, "counters": {"Udp.NoPorts": 1},
                    "devices": [{"name": "nk0", "stats": {"tx_dropped": 3}, "driver": {}}]}],
    "drops": [{"netns": "case", "reason": "NO_SOCKET", "location": "", "count": 1}],
    "drops_mode": "reason",
}


def test_a_failure_carries_what_the_stack_saw() -> None:
    v = {"reports": [rep("setup", "passed"), rep("call", "failed", "AssertionError: nothing "
                     "arrived"), rep("teardown", "passed")], "evidence": EVIDENCE}
    text = interpret(v, "t", 10).call_error or ""
    assert "AssertionError: nothing arrived" in text
    assert "the stack saw" in text and "Udp.NoPorts +1" in text
    assert "NO_SOCKET" in text and "tx_dropped +3" in text


def test_a_pass_stays_a_pass_with_evidence() -> None:
    v = {"reports": [rep("setup", "passed"), rep("call", "passed"), rep("teardown", "passed")],
         "evidence": EVIDENCE}
    assert interpret(v, "t", 10).call_error is None


def test_junit_case_properties_carry_the_evidence() -> None:
    from harness.results.model import CaseResult, RunResults, Status
    from harness.results.writers.junit import junit_xml

    res = RunResults()
    res.kernel("k1")
    res.add(CaseResult("cases/test_x.py::test_a[k1]", "k1", "x", Status.PASS,
                       evidence=EVIDENCE))
    res.add(CaseResult("cases/test_x.py::test_b[k1]", "k1", "x", Status.PASS))
    xml = junit_xml(res)
    assert '<property name="evidence.case.Udp.NoPorts" value="+1"' in xml
    assert '<property name="evidence.case.dev.nk0.tx_dropped" value="+3"' in xml
    assert "1 x NO_SOCKET" in xml
    assert xml.count("<properties>") == 2  # the suite's and test_a's, none for test_b
