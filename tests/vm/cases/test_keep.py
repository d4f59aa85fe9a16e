"""A case that fails with something of its own in its namespace: what `--keep-failed` must
keep as it was (tests/vm/test_shell_tmux.py attaches and looks)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.guest.net.links import delete_link, ipr

HELD_LINK = "kmxheld0"


@pytest.fixture
def held_link() -> Iterator[str]:
    """A dummy link in the case's own namespace, deleted at teardown."""
    with ipr() as sock:
        sock.link("add", ifname=HELD_LINK, kind="dummy")
    yield HELD_LINK
    delete_link(HELD_LINK)


def test_fails_with_a_link(held_link: str) -> None:
    raise AssertionError(f"fails on purpose, with {held_link} in its namespace")


def test_after_the_kept_one() -> None:
    """Runs on a fresh VM (the kept one takes no more cases)."""
