"""A guest-side case of the snapshot test (tests/vm/test_snapshot_vm.py), not a suite."""

import os
from pathlib import Path

import pytest


def test_reads_the_checkout_as_it_is_now() -> None:
    """The file the host names (KMATRIX_TEST_FILE, in the checkout) holds what the host
    says it holds now (KMATRIX_TEST_CONTENT): a guest restored from a snapshot saved in an
    earlier run reads today's checkout, not what it held at the save."""
    path = os.environ.get("KMATRIX_TEST_FILE")
    if not path:
        pytest.skip("run by tests/vm/test_snapshot_vm.py, which names the file")
    assert Path(path).read_text() == os.environ["KMATRIX_TEST_CONTENT"]
