"""The guest's pytest plugin (registered by the agent; ``-p harness.guest.plugin`` elsewhere):
`requires` markers gate cases on feature probes, held to the host's expectations
(harness/guest/expect.py):

- the probe says yes: the case runs;
- the probe could not run: the case is an ERROR (setup) with the probe's traceback;
- the kernel said no where it is expected to have the feature: the case FAILS (at its call,
  so it counts as a failure of the kernel, not of the harness);
- the kernel said no where it is not expected to: a SKIP with the errno and why.

The host's plugin (`harness.pytest_plugin`, the pytest11 entry point) is not loaded in the
guest: the agent runs pytest with PYTEST_DISABLE_PLUGIN_AUTOLOAD=1.
"""

from __future__ import annotations

from typing import Literal

import pytest

from .expect import Gate, expectation, gate

#: the guest's fixtures (namespaces, veth pairs, BPF objects, the stack's counters): a
#: project's cases get them through this plugin, with or without kmatrix's conftest.py
pytest_plugins = ["harness.guest.fixtures", "harness.guest.evidence.fixture"]

REQUIRES_HELP = (
    "requires(*features): run only where each feature probe succeeds in the booted kernel; "
    "a refusal skips (errno and reason) or fails (where the kernel is expected to have it)"
)
BPF_SHARED_HELP = ("bpf_shared(*objects): the agent loads these bpf/ objects once a boot; "
                   "the cases take them with harness.guest.bpf.shared_object(name) and "
                   "reset what they use (see harness/guest/bpf/shared.py)")
CASE_TIMEOUT_HELP = "case_timeout(seconds): per-case guest timeout"
NICS_HELP = ("nics(kind='loop'): the VM of this case's kernel gets NICs (vng --network KIND; "
             "loop: two virtio-net devices joined by a QEMU hub), see the vm_nics fixture")


def pytest_addoption(parser: pytest.Parser) -> None:
    # read by the host plugin; declared here too so the guest's pytest knows the keys
    parser.addini("kmatrix_case_dirs", type="paths", default=[],
                  help="folders whose tests run inside the guest (default: cases)")
    parser.addini("kmatrix_default_cases", type="paths", default=[],
                  help="what `kmatrix run` runs when given no test path (host side)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", REQUIRES_HELP)
    config.addinivalue_line("markers", CASE_TIMEOUT_HELP)
    config.addinivalue_line("markers", BPF_SHARED_HELP)
    config.addinivalue_line("markers", NICS_HELP)


def gates(item: pytest.Item) -> list[Gate]:
    """The gate of every feature the item's `requires` markers name."""
    from . import probes

    out = []
    for mark in item.iter_markers("requires"):
        for feature in mark.args:
            out.append(gate(probes.probe(feature), expectation(item.config, feature)))
    return out


def _fail_text(item: pytest.Item) -> str | None:
    """The failure text when every gate of `item` lets it run but one or more features it
    needs were refused where the kernel is expected to have them; None otherwise."""
    found = gates(item)
    if any(g.action in ("error", "skip") for g in found):
        return None  # pytest_runtest_setup reports those
    failures = [g.text for g in found if g.action == "fail"]
    return "\n".join(failures) if failures else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """An expected feature the kernel refused: the case FAILS at its call, without setting
    up its fixtures (they would trip over the missing feature and turn the kernel's failure
    into a harness error)."""
    failure = _fail_text(item)
    if failure is None:
        return None
    hook = item.ihook
    hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    phases: tuple[tuple[Literal["setup", "call", "teardown"], Literal["passed", "failed"],
                        str | None], ...] = (
        ("setup", "passed", None), ("call", "failed", failure), ("teardown", "passed", None))
    for when, outcome, longrepr in phases:
        hook.pytest_runtest_logreport(report=pytest.TestReport(
            item.nodeid, item.location, {k: 1 for k in item.keywords}, outcome, longrepr,
            when, user_properties=list(item.user_properties)))
    hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for g in gates(item):
        if g.action == "error":
            raise RuntimeError(g.text)
        if g.action == "skip":
            pytest.skip(g.text)
