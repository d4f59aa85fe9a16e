"""background.start: work in a thread now, its result (or its exception) later."""

from __future__ import annotations

import threading

import pytest

from harness.guest.background import start


def test_result_comes_back_from_the_thread() -> None:
    main = threading.get_ident()
    wait = start(lambda: threading.get_ident(), "test-bg")
    assert wait() != main


def test_exception_is_raised_in_the_waiting_thread() -> None:
    def fail() -> None:
        raise OSError(1, "refused")

    wait = start(fail, "test-bg")
    with pytest.raises(OSError, match="refused"):
        wait()
