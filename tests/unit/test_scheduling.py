"""kmatrix's xdist scheduler, driven the way xdist's DSession drives it, with fake workers."""

from __future__ import annotations

from typing import Any

from harness.pytest_plugin.scheduling import MIN_ITEMS_TO_STEAL, KernelScheduling, plan_units


class FakeNode:
    def __init__(self, name: str) -> None:
        self.name = name
        self.shutting_down = False
        self.sent: list[int] = []
        #: the indices of the steal requests it got
        self.steals: list[list[int]] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent += indices

    def send_steal(self, indices: list[int]) -> None:
        self.steals.append(list(indices))

    def shutdown(self) -> None:
        self.shutting_down = True


def test_plan_units_cuts_the_left_over_kernel_between_workers() -> None:
    kernels = [list(range(0, 300)), list(range(300, 600)), list(range(600, 800))]
    units = plan_units(kernels, 2)
    assert sorted(len(u) for u in units) == [100, 100, 300, 300]
    assert sorted(i for u in units for i in u) == list(range(800))


def test_plan_units_halves_the_largest_kernels_for_more_workers() -> None:
    kernels = [list(range(0, 300)), list(range(300, 500)), list(range(500, 600))]
    assert [len(u) for u in plan_units(kernels, 4)] == [200, 150, 150, 100]
    assert [len(u) for u in plan_units([list(range(50))], 3)] == [50]  # too few to cut
    assert sorted(i for u in plan_units(kernels, 5) for i in u) == list(range(600))


def test_finished_when_the_workers_end_at_different_times() -> None:
    """A worker whose units ran out leaves (remove_node) while another still runs: the
    session must still end (tests_finished) once the last one is done."""
    collection = [f"t.py::c[{i}-{k}]" for k in ("k1", "k2", "k3") for i in range(120)]
    sched = KernelScheduling(config=Any, labels=["k1", "k2", "k3"], numnodes=2)  # type: ignore[arg-type]
    a, b = FakeNode("a"), FakeNode("b")
    for node in (a, b):
        sched.add_node(node)
        sched.add_node_collection(node, collection)
    sched.schedule()
    done: set[int] = set()
    # run b's items to the end first, a's afterwards (a keeps going after b left)
    for node in (b, a):
        while True:
            todo = [i for i in node.sent if i not in done]
            if not todo:
                break
            for i in todo:
                done.add(i)
                sched.mark_test_complete(node, i)
        assert node.shutting_down
        assert sched.remove_node(node) is None
    assert done == set(range(len(collection)))
    assert sched.tests_finished and not sched.has_pending


def _scheduler(sizes: dict[str, int], workers: int) -> tuple[KernelScheduling, list[str],
                                                              list[FakeNode]]:
    collection = [f"t.py::c[{i}-{k}]" for k, n in sizes.items() for i in range(n)]
    sched = KernelScheduling(config=Any, labels=list(sizes), numnodes=workers)  # type: ignore[arg-type]
    nodes = [FakeNode(f"w{i}") for i in range(workers)]
    for node in nodes:
        sched.add_node(node)
        sched.add_node_collection(node, collection)
    sched.schedule()
    return sched, collection, nodes


#: every item a fake worker finished, in order (each must be run once)
DONE: list[int] = []


def _run(sched: KernelScheduling, node: FakeNode, count: int) -> None:
    """`node` finishes its next `count` items."""
    for i in [i for i in node.sent if i in sched.assigned[node]][:count]:
        sched.mark_test_complete(node, i)
        DONE.append(i)


def _answer_steals(sched: KernelScheduling, nodes: list[FakeNode]) -> None:
    """Each worker gives up what it was asked for, as xdist's does when none has started."""
    for node in nodes:
        while node.steals:
            sched.remove_pending_tests_from_node(node, node.steals.pop(0))


def test_a_free_worker_takes_half_of_the_busiest_queue() -> None:
    """The short kernel's worker, done, gets the second half of the long kernel's queue
    (xdist's steal) instead of leaving: both finish about together."""
    DONE.clear()
    sched, collection, (a, b) = _scheduler({"k1": 600, "k2": 100}, 2)
    long_, short = (a, b) if len(a.sent) == 600 else (b, a)
    _run(sched, long_, 50)
    _run(sched, short, 99)  # its last item is held until it knows what comes next
    assert not short.shutting_down
    assert len(long_.steals) == 1
    asked = long_.steals[0]
    left = [i for i in long_.sent if i in sched.assigned[long_]]
    assert asked == left[len(left) // 2:] and len(asked) == 275
    assert not sched.tests_finished  # the answer is still out
    long_.steals.clear()
    sched.remove_pending_tests_from_node(long_, asked)
    assert short.sent[-275:] == asked
    assert set(sched.assigned[long_]).isdisjoint(asked)
    while not (a.shutting_down and b.shutting_down):
        for node in (short, long_):
            _run(sched, node, 100)
            _answer_steals(sched, [a, b])
    assert a.shutting_down and b.shutting_down
    assert sched.tests_finished and not sched.has_pending
    assert sorted(DONE) == list(range(len(collection)))


def test_a_queue_too_short_for_another_boot_is_not_shared() -> None:
    sched, _, (a, b) = _scheduler({"k1": MIN_ITEMS_TO_STEAL + 50, "k2": 100}, 2)
    long_, short = (a, b) if len(a.sent) > 100 else (b, a)
    _run(sched, long_, 60)  # fewer than MIN_ITEMS_TO_STEAL left
    _run(sched, short, 100)
    assert short.shutting_down and not long_.steals


def test_a_refused_steal_is_asked_again_and_a_lost_victim_frees_the_thief() -> None:
    sched, _, (a, b) = _scheduler({"k1": 900, "k2": 100}, 2)
    long_, short = (a, b) if len(a.sent) == 900 else (b, a)
    _run(sched, short, 100)
    # the items asked for started meanwhile: the worker gives none back; asked again
    sched.remove_pending_tests_from_node(long_, [])
    assert len(long_.steals) == 2 and not short.shutting_down
    # the busy worker dies before it answers: its items are queued for the free one
    crashed = sched.remove_node(long_)
    assert crashed is not None
    assert not short.shutting_down and len(short.sent) > 100
    _run(sched, short, 2000)
    assert short.shutting_down and sched.tests_finished
