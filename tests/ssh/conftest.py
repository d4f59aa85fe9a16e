"""Fixtures of the SSH-target tests: a private sshd on loopback (see loopback_sshd). The
tests are marked `ssh` and skip, saying why, where sshd is not installed or not root."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .loopback_sshd import Sshd, running, skip_reason


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = skip_reason()
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.ssh)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    with running(tmp_path / "sshd") as server:
        yield server


@pytest.fixture(scope="session")
def target_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder for the session's targets: the first test that starts an agent
    syncs everything (seconds), the others only check (what a second run does)."""
    return tmp_path_factory.mktemp("target") / "cache"
