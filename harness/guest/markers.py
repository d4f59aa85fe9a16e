"""Guest-side pytest behaviour: `requires` markers become skips carrying the probe's evidence."""

from __future__ import annotations

import pytest

REQUIRES_HELP = (
    "requires(*features): skip unless each feature probe succeeds in the booted kernel; "
    "the skip reason carries the probe's errno/message"
)


def skip_unsupported(item: pytest.Item) -> None:
    """Skip `item` if a feature named by its `requires` markers is unsupported here."""
    from . import probes

    for mark in item.iter_markers("requires"):
        for feature in mark.args:
            result = probes.probe(feature)
            if not result.supported:
                pytest.skip(f"probe {feature}: unsupported: {result.detail}")
