"""Turn the guest agent's verdict for one case into the host item's phase outcomes.

Pure logic (unit-tested with saved verdicts): which phase fails, skips or errors, and with
what text. Kernel problems seen in /dev/kmsg during the case fail it even if its asserts
passed; a timeout fails it with the Python stacks the agent took.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .. import kernel_log


@dataclass(frozen=True)
class Phases:
    #: text of an error in the guest's setup (host: ERROR in setup)
    setup_error: str | None = None
    #: skip reason from the guest's setup (probe-gated skips land here)
    setup_skip: str | None = None
    #: text of a failure in the call phase (host: FAILED)
    call_error: str | None = None
    #: skip reason from the guest's call phase (pytest.skip inside the body)
    call_skip: str | None = None
    #: text of an error in the guest's teardown (host: ERROR in teardown)
    teardown_error: str | None = None
    #: reason of an expected failure in the guest (pytest.xfail, xfail marker): host XFAIL
    xfail: str | None = None


def guest_properties(verdict: dict[str, Any]) -> dict[str, str]:
    """What the case recorded with record_property in the guest (last phase wins)."""
    out: dict[str, str] = {}
    for report in verdict.get("reports", []):
        for key, value in report.get("user_properties", []):
            out[str(key)] = str(value)
    return out


def leak_text(verdict: dict[str, Any]) -> str:
    """What the case left behind (the agent compared before and after it), or ""."""
    leaked = verdict.get("leaks", [])
    if not leaked:
        return ""
    text = "leaked: " + ", ".join(leaked) + " (left behind by this case; the agent cleaned"
    left = verdict.get("not_cleaned", [])
    text += " it)" if not left else f" what it could; still there: {', '.join(left)})"
    return text


def evidence_text(verdict: dict[str, Any]) -> str:
    """What the stack counted and dropped during the case, for its failure report ("" when
    the agent collected none)."""
    if not verdict.get("evidence"):
        return ""
    from ..guest.evidence.model import render

    text = render(verdict["evidence"])
    return f"the stack saw (counters and drops during the case):\n{text}" if text else ""


def interpret(verdict: dict[str, Any], nodeid: str, timeout: float) -> Phases:
    phases = _interpret(verdict, nodeid, timeout)
    stack = evidence_text(verdict)
    if stack and phases.call_error is not None:
        return replace(phases, call_error=f"{phases.call_error}\n\n{stack}")
    return phases


def _interpret(verdict: dict[str, Any], nodeid: str, timeout: float) -> Phases:
    reports = {r["when"]: r for r in verdict.get("reports", [])}
    problems = kernel_log.find_problems(verdict.get("dmesg", []))
    extra = [("the kernel reported problems during this case:\n"
              + "\n\n".join(p.text for p in problems)) if problems else "",
             leak_text(verdict)]
    kernel_error = "\n\n".join(t for t in extra if t) or None
    if verdict.get("timed_out"):
        text = (f"case timed out after {timeout:.0f}s in the guest; the agent killed it.\n"
                f"Python stacks at the timeout:\n{verdict.get('traceback', '')}")
        return Phases(call_error=text + (f"\n{kernel_error}" if kernel_error else ""))
    if not reports:
        errors = "\n".join(verdict.get("collect_errors", [])) or "(nothing said)"
        output = str(verdict.get("output", "")).strip()
        return Phases(setup_error=(
            f"no verdict from the guest for {nodeid}: {errors}"
            + (f"\n--- the case's output ---\n{output}" if output else "")))
    setup = reports.get("setup", {})
    call = reports.get("call", {})
    teardown = reports.get("teardown", {})
    teardown_error = None
    if teardown.get("outcome") == "failed":
        teardown_error = "error in guest teardown:\n" + teardown.get("longrepr", "")
    if setup.get("outcome") == "failed":
        return Phases(setup_error="error in guest setup:\n" + setup.get("longrepr", ""),
                      call_error=kernel_error, teardown_error=teardown_error)
    if setup.get("outcome") == "skipped":
        if kernel_error:
            return Phases(call_error=kernel_error, teardown_error=teardown_error)
        if "wasxfail" in setup:
            return Phases(xfail=setup["wasxfail"], teardown_error=teardown_error)
        return Phases(setup_skip=setup.get("longrepr", ""), teardown_error=teardown_error)
    call_error = None
    call_skip = None
    xfail = None
    if call.get("outcome") == "failed":
        call_error = call.get("longrepr", "")
        if kernel_error:
            call_error += "\n\n" + kernel_error
    elif kernel_error:
        call_error = kernel_error
    elif call.get("outcome") == "skipped" and "wasxfail" in call:
        xfail = call["wasxfail"]
    elif call.get("outcome") == "skipped":
        call_skip = call.get("longrepr", "")
    return Phases(call_error=call_error, call_skip=call_skip, teardown_error=teardown_error,
                  xfail=xfail)
