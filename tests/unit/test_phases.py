"""The verdict-model rules: one result per case from its phases."""

from __future__ import annotations

from harness.results.model import Status
from harness.results.phases import PhaseReport, combine

OK_SETUP = PhaseReport("setup", "passed")
OK_CALL = PhaseReport("call", "passed")
OK_TEARDOWN = PhaseReport("teardown", "passed")


def test_pass() -> None:
    v = combine([OK_SETUP, OK_CALL, OK_TEARDOWN])
    assert (v.status, v.message) == (Status.PASS, "")


def test_setup_error_is_an_error() -> None:
    v = combine([PhaseReport("setup", "failed", "fixture broke\nTraceback"), OK_TEARDOWN])
    assert (v.status, v.message) == (Status.ERROR, "fixture broke")


def test_setup_skip_is_a_skip_with_its_reason() -> None:
    v = combine([PhaseReport("setup", "skipped", "probe tcx: unsupported: EINVAL"),
                 OK_TEARDOWN])
    assert (v.status, v.message) == (Status.SKIP, "probe tcx: unsupported: EINVAL")


def test_setup_without_call_is_an_error() -> None:
    v = combine([OK_SETUP, OK_TEARDOWN])
    assert v.status is Status.ERROR
    assert "never ran" in v.message


def test_no_setup_report_is_an_error() -> None:
    assert combine([]).status is Status.ERROR


def test_call_failure_and_crash() -> None:
    assert combine([OK_SETUP, PhaseReport("call", "failed", "assert 1 == 2"),
                    OK_TEARDOWN]).status is Status.FAIL
    assert combine([OK_SETUP, PhaseReport("call", "failed", "panic", crash=True),
                    OK_TEARDOWN]).status is Status.CRASH


def test_xfail_keeps_its_reason() -> None:
    v = combine([OK_SETUP, PhaseReport("call", "skipped", "XFailed", xfail="kernel gap"),
                 OK_TEARDOWN])
    assert (v.status, v.message) == (Status.SKIP, "xfail: kernel gap")


def test_teardown_error_after_a_pass_is_one_error() -> None:
    v = combine([OK_SETUP, OK_CALL, PhaseReport("teardown", "failed", "link left")])
    assert v.status is Status.ERROR
    assert v.message == "error in teardown:"
    assert "link left" in v.details


def test_teardown_error_after_a_skip_is_an_error() -> None:
    v = combine([PhaseReport("setup", "skipped", "no"), PhaseReport("teardown", "failed", "x")])
    assert v.status is Status.ERROR


def test_teardown_error_after_a_failure_adds_its_text() -> None:
    v = combine([OK_SETUP, PhaseReport("call", "failed", "assert"),
                 PhaseReport("teardown", "failed", "also broken")])
    assert (v.status, v.message) == (Status.FAIL, "assert")
    assert "also broken" in v.details


def test_phase_order_does_not_matter() -> None:
    assert combine([OK_TEARDOWN, OK_CALL, OK_SETUP]).status is Status.PASS


def test_message_skips_the_xdist_worker_header() -> None:
    v = combine([PhaseReport("setup", "passed"),
                 PhaseReport("call", "failed", "[gw1] linux -- Python 3.11.7 /x/python3\n"
                                               "[debian-6.1] AssertionError: boom"),
                 PhaseReport("teardown", "passed")])
    assert v.message == "[debian-6.1] AssertionError: boom"
