"""pytest-xdist scheduling by kernel: every item of one kernel goes to the same worker, so
each worker boots each of its kernels once (LoadScopeScheduling with the kernel as scope)."""

from __future__ import annotations

from typing import Any

import pytest


class KernelSchedulingPlugin:
    @pytest.hookimpl
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        from xdist.scheduler import LoadScopeScheduling

        from .session import kernel_label_of, state_key

        labels = [k.label for k in config.stash[state_key].kernels]

        class KernelScheduling(LoadScopeScheduling):  # type: ignore[misc]
            def _split_scope(self, nodeid: str) -> str:
                return kernel_label_of(nodeid, labels) or nodeid

        return KernelScheduling(config, log)
