"""pytest-xdist scheduling by kernel: the cases of one kernel go to one worker in runs, so
each worker boots each of its kernels once for a run of its cases.

A scheduler of our own, implementing xdist's public `Scheduling` protocol (returned from the
public `pytest_xdist_make_scheduler` hook). Work units are whole kernels (or pieces of the
left-over ones, see `plan_units`), largest first, to whichever worker is free; items without
a kernel (the harness's own tests) form one unit of their own.

When no unit is left, a free worker takes work from the busiest one instead of idling: half
of its queue (the tail: xdist's `steal` command, as its worksteal scheduler uses it), when
that half is worth a boot of that kernel (`MIN_ITEMS_TO_STEAL`). Kernels differ in how long
their cases take (a newer kernel has more features, so fewer skips), and without this the
last kernel of a matrix ran alone on one core while the others idled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from ..nodeid import kernel_label_of

#: the work unit of items that belong to no kernel
NO_KERNEL = ""


#: a left-over kernel with fewer items than this stays whole: another boot would cost more
#: than sharing its cases saves (a boot is worth ~50-100 cases under TCG)
MIN_ITEMS_TO_CUT = 100


#: a worker with fewer unstarted items than this keeps them: half of them is about what a
#: boot of the kernel costs, in time, so sharing them would not finish sooner
MIN_ITEMS_TO_STEAL = 2 * MIN_ITEMS_TO_CUT


def plan_units(kernels: Sequence[list[int]], workers: int,
               min_cut: int = MIN_ITEMS_TO_CUT) -> list[list[int]]:
    """Work units from each kernel's items (in matrix order), for `workers` workers.

    A unit is a contiguous run of one kernel's items: a worker boots that kernel once for
    it. Whole kernels while they share out evenly; the kernels left over when their number
    is not a multiple of the workers' (the smallest ones) are each cut into `workers`
    pieces, so no worker idles while another runs a whole kernel alone: three kernels on
    two workers give the two largest whole and the smallest in halves. With more workers
    than kernels, the largest units are halved until there is one per worker. Units come
    largest first (free workers take the next one)."""
    if workers <= 1 or not kernels:
        return [list(k) for k in kernels]
    if len(kernels) < workers:
        # more workers than kernels: halve the largest unit until each worker has one
        units = [list(k) for k in kernels]
        while len(units) < workers:
            largest = max(units, key=len)
            if len(largest) < min_cut:
                break
            units.remove(largest)
            half = -(-len(largest) // 2)
            units += [largest[:half], largest[half:]]
        return sorted(units, key=len, reverse=True)
    order = sorted(range(len(kernels)), key=lambda i: -len(kernels[i]))
    left_over = len(kernels) % workers
    whole = order[: len(order) - left_over]
    cut = order[len(order) - left_over:]
    units = [list(kernels[i]) for i in whole]
    for i in cut:
        items = kernels[i]
        pieces = min(workers, len(items)) if len(items) >= min_cut else 1
        size = -(-len(items) // pieces)
        units += [list(items[j:j + size]) for j in range(0, len(items), size)]
    return sorted(units, key=len, reverse=True)


class KernelScheduling:
    """xdist `Scheduling` with the kernel label as the unit of work."""

    def __init__(self, config: pytest.Config, labels: Sequence[str], numnodes: int) -> None:
        self.config = config
        self.labels = list(labels)
        self.numnodes = numnodes
        self.collection: list[str] | None = None
        #: worker -> the indices it collected in order (all must collect the same)
        self.collections: dict[Any, list[str]] = {}
        #: worker -> indices sent to it and not reported complete yet
        self.assigned: dict[Any, list[int]] = {}
        #: work units not handed out yet: lists of indices, in matrix order
        self.queue: list[list[int]] = []
        #: busy worker -> the idle worker its stolen items go to, while a steal is out
        self.stealing: dict[Any, Any] = {}

    # -- the protocol's properties -----------------------------------------------------
    @property
    def nodes(self) -> list[Any]:
        return list(self.assigned)

    @property
    def collection_is_completed(self) -> bool:
        # stays complete once scheduled: workers that finished leave `collections`
        return self.collection is not None or len(self.collections) >= self.numnodes

    @property
    def tests_finished(self) -> bool:
        if not self.collection_is_completed or self.queue or self.stealing:
            return False
        # a worker keeps its last item until it knows there is no next one
        return all(len(pending) < 2 for pending in self.assigned.values())

    @property
    def has_pending(self) -> bool:
        return bool(self.queue) or any(self.assigned.values())

    # -- nodes -----------------------------------------------------------------------------
    def add_node(self, node: Any) -> None:
        assert node not in self.assigned
        self.assigned[node] = []

    def add_node_collection(self, node: Any, collection: Sequence[str]) -> None:
        assert node in self.assigned
        self.collections[node] = list(collection)

    def remove_node(self, node: Any) -> str | None:
        """A worker went away: its unfinished items go back to the queue; the one it was
        running (the first unfinished) is returned as the crashed item."""
        pending = self.assigned.pop(node)
        self.collections.pop(node, None)
        self.stealing.pop(node, None)  # no answer will come from a worker gone
        crashed = None
        if pending:
            assert self.collection is not None
            crashed = self.collection[pending[0]]
            if pending[1:]:
                self.queue.insert(0, pending[1:])
        for other in self.nodes:  # the items, or a steal from another, for the free
            self._feed(other)
        return crashed

    # -- progress --------------------------------------------------------------------------
    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        self.assigned[node].remove(item_index)
        self._feed(node)

    def mark_test_pending(self, item: str) -> None:
        raise NotImplementedError("kmatrix's kernel scheduler does not reschedule items")

    def remove_pending_tests_from_node(self, node: Any, indices: Sequence[int]) -> None:
        """The busy worker's answer to a steal: the items it gave up (none when some of
        those asked for had started meanwhile); they go to the worker they were asked for,
        or back to the queue if that one is gone."""
        thief = self.stealing.pop(node, None)
        taken = list(indices)
        if node in self.assigned:
            gone = set(taken)
            self.assigned[node] = [i for i in self.assigned[node] if i not in gone]
        alive = thief is not None and thief in self.assigned and not thief.shutting_down
        if taken and alive:
            self.assigned[thief].extend(taken)
            thief.send_runtest_some(taken)
        elif taken:
            self.queue.insert(0, taken)
        for other in self.nodes:
            self._feed(other)

    def schedule(self) -> None:
        assert self.collection_is_completed
        if self.collection is None:
            collections = list(self.collections.values())
            first = collections[0]
            if any(other != first for other in collections[1:]):
                self.config.hook.pytest_collectreport(report=pytest.CollectReport(
                    nodeid="", outcome="failed", result=[],
                    longrepr="kmatrix: xdist workers collected different cases"))
                return
            self.collection = first
            self.queue = self.units(first)
        for node in self.nodes:
            self._feed(node)

    def units(self, collection: Sequence[str]) -> list[list[int]]:
        """The work units of `collection` (see `plan_units`)."""
        by_label: dict[str, list[int]] = {}
        for index, nodeid in enumerate(collection):
            label = kernel_label_of(nodeid, self.labels) or NO_KERNEL
            by_label.setdefault(label, []).append(index)
        kernels = [by_label[label] for label in self.labels if label in by_label]
        rest = [by_label[NO_KERNEL]] if NO_KERNEL in by_label else []
        return plan_units(kernels, self.numnodes) + rest

    def _feed(self, node: Any) -> None:
        """Give an idle worker the next unit; shut it down when there is none left."""
        if node.shutting_down or self.collection is None:
            return
        if len(self.assigned[node]) > 1:  # still busy (the last item is held back)
            return
        if self.queue:
            unit = self.queue.pop(0)
            self.assigned[node].extend(unit)
            node.send_runtest_some(unit)
        elif node in self.stealing.values():  # its steal is out: wait for the answer
            return
        elif not self._steal_for(node):
            node.shutdown()

    def _steal_for(self, thief: Any) -> bool:
        """Ask the busiest worker for the second half of its queue, for `thief`; whether a
        steal went out. Its running item and the next (which xdist's worker holds already)
        always stay."""
        busy = [node for node, pending in self.assigned.items()
                if node is not thief and node not in self.stealing
                and not node.shutting_down and len(pending) >= MIN_ITEMS_TO_STEAL]
        if not busy:
            return False
        victim = max(busy, key=lambda node: len(self.assigned[node]))
        pending = self.assigned[victim]
        self.stealing[victim] = thief
        victim.send_steal(pending[len(pending) // 2:])
        return True


class KernelSchedulingPlugin:
    """Registered on the xdist controller when kernels are given."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)

    @pytest.hookimpl
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> KernelScheduling:
        from xdist.workermanage import parse_tx_spec_config

        return KernelScheduling(config, self.labels, len(parse_tx_spec_config(config)))
