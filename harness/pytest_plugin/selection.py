"""`--shard I/N` applied to a session, and the run record of results.json.

After every other selection (-k, -m, --lf, --deselect) and the grouping of items by kernel,
the items of other shards are deselected through pytest's public `pytest_deselected` hook
(`shards` decides which). Each results folder then records which run and which shard it is
and where each of its items stood in the full collection, so `kmatrix merge` can refuse
shards that do not belong together and put the cases back in collection order.

Under pytest-xdist only the workers collect: a worker sends the record to the controller
(which writes the reports) in its `workeroutput`, read back in `pytest_testnodedown`.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from ..results.model import RunRecord, RunResults
from .session import SessionState
from .shards import (
    ShardItem,
    balance_label,
    plan,
    recorded_durations,
    run_id,
    selection_hash,
    weights_for,
)

#: the key of the run record in an xdist worker's `workeroutput`
WORKER_OUTPUT_KEY = "kmatrix_run"


class ShardSelection:
    """Registered on the host side of every session (xdist controller and workers)."""

    def __init__(self, state: SessionState) -> None:
        self.state = state
        self.summary = ""

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> Generator[None, None, None]:
        result = yield  # after every other plugin's selection and ordering
        shard: tuple[int, int] = config.getoption("shard") or (1, 1)
        keys = [ShardItem(it.nodeid, str(getattr(it, "label", ""))) for it in items]
        weights, boot = durations_option(config, [k.nodeid for k in keys])
        index, total = shard
        chosen = set(plan(keys, weights, total, boot)[index - 1]) if total > 1 \
            else set(range(len(items)))
        record = RunRecord(
            id=run_id([k.nodeid for k in keys], kernel_identities(self.state)),
            shard=shard, selection=selection_hash([k.nodeid for k in keys]),
            nodeids=len(keys), balance=balance_label(weights) if total > 1 else "",
            index={keys[p].nodeid: p for p in sorted(chosen)})
        if total > 1:
            config.hook.pytest_deselected(
                items=[it for p, it in enumerate(items) if p not in chosen])
            items[:] = [it for p, it in enumerate(items) if p in chosen]
            self.summary = (f"kmatrix: shard {index}/{total} of run {record.id}: "
                            f"{len(items)} of {len(keys)} items, balanced by "
                            f"{record.balance.split()[0]}")
        if self.state.kernels:
            self.state.results.set_run(record)
            workeroutput = getattr(config, "workeroutput", None)
            if isinstance(workeroutput, dict):
                workeroutput[WORKER_OUTPUT_KEY] = json.dumps(asdict(record))
        return result

    def pytest_report_collectionfinish(self, config: pytest.Config) -> list[str]:
        return [self.summary] if self.summary else []

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        """xdist controller: the run record a worker collected (every worker collects the
        same items, so the first one is kept)."""
        data = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY)
        if data and self.state.kernels and self.state.results.run is None:
            self.state.results.set_run(RunRecord.from_json(json.loads(data)))


def kernel_identities(state: SessionState) -> list[str]:
    """What the run id takes from the kernels: each spec with its exact version."""
    return [f"{k.spec}={k.version or ''}" for k in state.kernels]


def durations_option(config: pytest.Config, nodeids: Sequence[str]
                     ) -> tuple[list[float] | None, float | None]:
    """--durations-from DIR: each item's weight and the boot cost (None, None without)."""
    value = config.getoption("durations_from")
    if value is None:
        return None, None
    path = Path(value)
    path = path / "results.json" if path.is_dir() else path
    try:
        results = RunResults.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise pytest.UsageError(f"kmatrix: --durations-from {value}: cannot read {path}: "
                                f"{exc}") from exc
    recorded, boot = recorded_durations(results)
    return weights_for(nodeids, recorded), boot
