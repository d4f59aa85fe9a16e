"""Guest case for tests/vm/test_interrupt.py: says on the console that it runs, then sleeps
until the harness is interrupted."""

from __future__ import annotations

import time

import pytest

MARKER = "kmatrix-test: case running"


@pytest.mark.case_timeout(900)
def test_sleeps_until_interrupted() -> None:
    with open("/dev/kmsg", "w") as kmsg:  # level 3: on the console at loglevel 5
        kmsg.write(f"<3>{MARKER}\n")
    time.sleep(600)
