"""A case that fails on the first boot of its kernel and passes on the next: what
`--rerun-failed` must report as flaky (tests/vm/test_vm_runner.py)."""

import os


def test_fails_on_first_boot() -> None:
    boot = os.environ.get("KMATRIX_BOOT")
    assert boot is not None, "the agent's environment names the boot (KMATRIX_BOOT)"
    assert boot != "1", "fails on the first boot of this kernel, on purpose"
