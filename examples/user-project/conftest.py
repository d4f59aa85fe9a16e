"""The project's own fixtures, next to kmatrix's (namespaces, BPF objects: the guest plugin
brings those)."""

from __future__ import annotations

import pytest
from helpers.traffic import free_udp_port


@pytest.fixture
def udp_port() -> int:
    """A UDP port nothing listens on in the case's namespace."""
    return free_udp_port()
