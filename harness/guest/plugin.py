"""The guest's pytest plugin (loaded by the agent with ``-p harness.guest.plugin``):
`requires` markers become skips carrying the probe's evidence.

The host's plugin (`harness.pytest_plugin`, the pytest11 entry point) is not loaded in the
guest: the agent runs pytest with PYTEST_DISABLE_PLUGIN_AUTOLOAD=1.
"""

from __future__ import annotations

import pytest

REQUIRES_HELP = (
    "requires(*features): skip unless each feature probe succeeds in the booted kernel; "
    "the skip reason carries the probe's errno/message"
)
CASE_TIMEOUT_HELP = "case_timeout(seconds): per-case guest timeout"


def pytest_addoption(parser: pytest.Parser) -> None:
    # read by the host plugin; declared here too so the guest's pytest knows the key
    parser.addini("kmatrix_case_dirs", type="paths", default=[],
                  help="folders whose tests run inside the guest (default: cases)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", REQUIRES_HELP)
    config.addinivalue_line("markers", CASE_TIMEOUT_HELP)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    skip_unsupported(item)


def skip_unsupported(item: pytest.Item) -> None:
    """Skip `item` if a feature named by its `requires` markers is unsupported here."""
    from . import probes

    for mark in item.iter_markers("requires"):
        for feature in mark.args:
            result = probes.probe(feature)
            if not result.supported:
                pytest.skip(f"probe {feature}: unsupported: {result.detail}")
