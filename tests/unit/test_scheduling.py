"""kmatrix's xdist scheduler, driven the way xdist's DSession drives it, with fake workers."""

from __future__ import annotations

from typing import Any

from harness.pytest_plugin.scheduling import KernelScheduling, plan_units


class FakeNode:
    def __init__(self, name: str) -> None:
        self.name = name
        self.shutting_down = False
        self.sent: list[int] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent += indices

    def shutdown(self) -> None:
        self.shutting_down = True


def test_plan_units_cuts_the_left_over_kernel_between_workers() -> None:
    kernels = [list(range(0, 300)), list(range(300, 600)), list(range(600, 800))]
    units = plan_units(kernels, 2)
    assert sorted(len(u) for u in units) == [100, 100, 300, 300]
    assert sorted(i for u in units for i in u) == list(range(800))


def test_finished_when_the_workers_end_at_different_times() -> None:
    """A worker whose units ran out leaves (remove_node) while another still runs: the
    session must still end (tests_finished) once the last one is done."""
    collection = [f"t.py::c[{k}-{i}]" for k in ("k1", "k2", "k3") for i in range(120)]
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
