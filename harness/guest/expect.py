"""What this kernel is expected to support, as the host computed it from images/features.toml
(version, config, matrix overrides), and what a case does when the kernel refuses.

The agent puts the host's table into the pytest config (`install`); the guest plugin gates
`requires` markers with it (`gate`), and cases that observe a refusal themselves (a sockmap
pair the kernel will not redirect) call `refused(...)`: a FAILURE where the kernel is
expected to do it, a SKIP with the evidence where it is not. A case never passes on a
refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

from ..protocol import Expectation
from .probes.base import ERROR, SUPPORTED, ProbeResult

#: where the agent leaves the host's expectations in the guest session's config
EXPECT_KEY = pytest.StashKey[dict[str, dict[str, Any]]]()


def install(config: pytest.Config, table: dict[str, dict[str, Any]]) -> None:
    """The agent: make the host's expectations (feature -> Expectation fields) known."""
    config.stash[EXPECT_KEY] = dict(table)


def expectation(config: pytest.Config, feature: str) -> Expectation | None:
    """This kernel's expectation for `feature`; None when the host sent none (a session
    not started by kmatrix, or a feature the table does not know)."""
    entry = config.stash.get(EXPECT_KEY, {}).get(feature)
    if entry is None:
        return None
    return Expectation(feature, bool(entry["expected"]), str(entry["state"]),
                       str(entry["reason"]))


@dataclass(frozen=True)
class Gate:
    """What a case gated on a feature does: run, skip, fail (at its call) or error."""

    action: str
    text: str = ""


def gate(result: ProbeResult, exp: Expectation | None) -> Gate:
    """The rule for one required feature: the probe's answer against the expectation."""
    if result.status == SUPPORTED:
        return Gate("run")
    if result.status == ERROR:
        return Gate("error", f"probe {result.feature} could not run (a harness problem, not "
                             f"the kernel's answer):\n{result.detail}")
    said = f"probe {result.feature}: unsupported: {result.detail}"
    if exp is None:
        return Gate("skip", said)
    if exp.expected:
        return Gate("fail", f"{result.feature} is expected on this kernel ({exp.reason}), "
                            f"but {said}")
    return Gate("skip", f"{said} [{exp.state}: {exp.reason}]")


def refused(config: pytest.Config, feature: str | None, observed: str) -> NoReturn:
    """The kernel refused what the case is named for (`observed` says how, with the errno):
    a FAILURE where `feature` is expected on this kernel, a SKIP naming why not otherwise
    (`feature` None: no kernel is expected to do it, an unsupported combination)."""
    if feature is None:
        pytest.skip(f"{observed} [unsupported combination on every kernel]")
    exp = expectation(config, feature)
    if exp is not None and exp.expected:
        pytest.fail(f"{observed}; {feature} is expected on this kernel ({exp.reason})",
                    pytrace=False)
    why = f" [{exp.state}: {exp.reason}]" if exp is not None else " [no expectation known]"
    pytest.skip(f"{observed}{why}")
