"""--shard I/N: the pure plan (every item in exactly one shard, the same plan every time,
balanced, kernels kept whole) and the plugin applying it (deselection, the run record)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from harness.pytest_plugin.shards import (
    ShardItem,
    balance_label,
    parse_shard,
    plan,
    recorded_durations,
    run_id,
    select,
    selection_hash,
    weights_for,
)
from harness.results.model import CaseResult, KernelInfo, RunResults, Status

pytest_plugins = ["pytester"]


def collection(kernels: dict[str, int], modules: int = 4) -> list[ShardItem]:
    """`count` items per kernel, spread over `modules` modules, kernel by kernel (the
    plugin's collection order)."""
    return [ShardItem(f"cases/test_m{i * modules // count}.py::test_{i}[{label}]", label)
            for label, count in kernels.items() for i in range(count)]


def kernels_of(items: list[ShardItem], shard: list[int]) -> set[str]:
    return {items[p].kernel for p in shard}


def loads(items: list[ShardItem], shards: list[list[int]],
          weights: list[float] | None = None) -> list[float]:
    w = weights or [1.0] * len(items)
    return [sum(w[p] for p in shard) for shard in shards]


def assert_partition(items: list[ShardItem], shards: list[list[int]]) -> None:
    every = [p for shard in shards for p in shard]
    assert sorted(every) == list(range(len(items))), "each item in exactly one shard"
    assert all(shard == sorted(shard) for shard in shards), "collection order kept"


def test_parse_shard() -> None:
    assert parse_shard("2/3") == (2, 3)
    assert parse_shard(" 1 / 1 ") == (1, 1)
    for bad in ("0/3", "4/3", "3", "a/b", "1/0", "-1/2"):
        with pytest.raises(ValueError, match=r"I/N|1 <= I <= N"):
            parse_shard(bad)


@pytest.mark.parametrize("total", [1, 2, 3, 4, 5, 7, 13])
@pytest.mark.parametrize("sizes", [(60, 60, 60), (300, 40, 25, 25, 10), (7,), (1, 1)])
def test_every_item_in_exactly_one_shard(sizes: tuple[int, ...], total: int) -> None:
    items = collection({f"k{i}": n for i, n in enumerate(sizes)})
    shards = plan(items, None, total)
    assert len(shards) == total
    assert_partition(items, shards)
    chosen = [select(items, None, i, total) for i in range(1, total + 1)]
    assert sum(len(c) for c in chosen) == len(items)
    assert set().union(*chosen) == {it.nodeid for it in items}
    if total <= len(items):
        assert all(shards), "no shard idles while there are items for it"


def test_deterministic() -> None:
    items = collection({"a": 120, "b": 80, "c": 45, "d": 30})
    weights = [1.0 + (i * 7919 % 13) / 4 for i in range(len(items))]
    first = plan(items, weights, 3)
    assert all(plan(list(items), list(weights), 3) == first for _ in range(3))
    assert select(items, weights, 2, 3) == {items[p].nodeid for p in first[1]}


def test_kernels_kept_whole_when_they_share_out() -> None:
    items = collection({"a": 60, "b": 60, "c": 60})
    shards = plan(items, None, 3)
    assert sorted(tuple(sorted(kernels_of(items, s))) for s in shards) == [
        ("a",), ("b",), ("c",)]
    items = collection({f"k{i}": 50 for i in range(6)})
    shards = plan(items, None, 3)
    assert [len(kernels_of(items, s)) for s in shards] == [2, 2, 2]
    assert sum(len(kernels_of(items, s)) for s in shards) == 6, "no kernel cut"


def test_fewer_kernels_than_shards_cut_by_module() -> None:
    items = collection({"a": 120}, modules=6)
    shards = plan(items, None, 3)
    assert loads(items, shards) == [40, 40, 40]
    modules = Counter(items[p].module for s in shards for p in s)
    per_shard = [{items[p].module for p in s} for s in shards]
    assert sum(len(m) for m in per_shard) == len(modules), "no module in two shards"


def test_a_module_bigger_than_a_piece_is_cut() -> None:
    items = collection({"a": 90}, modules=1)
    assert loads(items, plan(items, None, 3)) == [30, 30, 30]


def test_a_kernel_much_bigger_than_its_share_is_cut() -> None:
    items = collection({"big": 900, "s1": 50, "s2": 50})
    shards = plan(items, None, 3)
    assert_partition(items, shards)
    assert sum("big" in kernels_of(items, s) for s in shards) >= 2
    assert sum("s1" in kernels_of(items, s) for s in shards) == 1
    assert max(loads(items, shards)) < 500


def test_balance_by_count() -> None:
    items = collection({"a": 300, "b": 250, "c": 200, "d": 150, "e": 100})
    for total in (2, 3, 4):
        got = loads(items, plan(items, None, total))
        ideal = len(items) / total
        # whole kernels share out within a kernel's size of the ideal
        assert max(got) <= ideal + 150, (total, got)


def test_balance_by_durations() -> None:
    """A kernel with few slow cases weighs more than one with many quick ones."""
    items = collection({"slow": 50, "quick": 200, "mid": 100})
    weights = [4.0 if it.kernel == "slow" else 1.0 if it.kernel == "mid" else 0.5
               for it in items]
    by_count = plan(items, None, 2)
    by_time = plan(items, weights, 2, boot_cost=20.0)
    assert_partition(items, by_time)
    assert max(loads(items, by_time, weights)) < max(loads(items, by_count, weights))
    slow = [s for s in by_time if "slow" in kernels_of(items, s)]
    assert slow and kernels_of(items, slow[0]) == {"slow"}, "the slow kernel alone"


def test_boot_cost_keeps_kernels_whole() -> None:
    """Cutting a kernel costs a boot (default: 100 cases' time): done only when it
    shortens the longest shard by CUT_GAIN (10%)."""
    items = collection({"a": 20, "b": 20, "c": 20, "d": 20})
    shards = plan(items, None, 3)  # whole: 240 at most; cutting d: 230
    assert sum(len(kernels_of(items, s)) for s in shards) == 4
    items = collection({"a": 300, "b": 150, "c": 150})
    assert [len(kernels_of(items, s)) for s in plan(items, None, 3)] == [1, 1, 1]
    cut = plan(items, None, 3, boot_cost=0.0)  # boots for free: a in three pieces
    assert sum("a" in kernels_of(items, s) for s in cut) == 3
    assert max(loads(items, cut)) == 200


def test_items_without_kernel_boot_nothing() -> None:
    """Host items (no kernel) are cut freely; the kernel stays whole."""
    items = [ShardItem(f"tests/test_h{i // 100}.py::test_{i}") for i in range(400)]
    items += collection({"a": 20})
    shards = plan(items, None, 2)
    assert_partition(items, shards)
    assert sum("a" in kernels_of(items, s) for s in shards) == 1
    assert all("" in kernels_of(items, s) for s in shards)
    ends = [len(s) + (100 if "a" in kernels_of(items, s) else 0) for s in shards]
    assert max(ends) < 400, ends  # better than the host items whole


def test_recorded_durations_take_the_boot_off_the_first_case() -> None:
    res = RunResults()
    res.kernels["k"] = KernelInfo("k", boots={"main-1": 80.0})
    res.cases = [CaseResult("t.py::a[k]", "k", "t", Status.PASS, duration=81.0),
                 CaseResult("t.py::b[k]", "k", "t", Status.PASS, duration=2.0),
                 CaseResult("t.py::c[k]", "k", "t", Status.PASS, duration=4.0)]
    seconds, boot = recorded_durations(res)
    assert seconds == {"t.py::a[k]": pytest.approx(1.0), "t.py::b[k]": 2.0,
                       "t.py::c[k]": 4.0}
    assert boot == 80.0
    assert weights_for(["t.py::b[k]", "t.py::new[k]"], seconds) == [2.0, 2.0]  # median
    assert weights_for(["x"], {}) == [1.0]


def test_run_identity() -> None:
    ids = ["a[k1]", "b[k1]"]
    assert run_id(ids, ["debian:6.1=1"]) == run_id(list(ids), ["debian:6.1=1"])
    assert run_id(ids, ["debian:6.1=1"]) != run_id(ids, ["debian:6.1=2"])
    assert run_id(ids, ["k"]) != run_id(ids[:1], ["k"])
    assert selection_hash(ids) != selection_hash(ids[::-1])
    assert balance_label(None) == "count"
    assert balance_label([1.0, 2.0]).startswith("durations ")


# -- the plugin ------------------------------------------------------------------------------

def _fake_kernel(path: Path) -> str:
    data = bytearray(0x400)
    data[0x202:0x206] = b"HdrS"
    path.write_bytes(bytes(data))
    return str(path)


@pytest.fixture
def project(pytester: pytest.Pytester) -> list[str]:
    """Two case modules, a host test, three fake kernels (nothing boots: collect only)."""
    pytester.makeini("[pytest]\nkmatrix_case_dirs = cases\n")
    cases = pytester.mkdir("cases")
    (cases / "test_demo.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('hook', ['ingress', 'egress'])\n"
        "def test_attach(hook):\n    pass\n"
        "def test_plain():\n    pass\n")
    (cases / "test_other.py").write_text("def test_o1():\n    pass\n")
    (pytester.path / "test_host.py").write_text("def test_host_only():\n    pass\n")
    kernels = []
    for name in ("kA", "kB", "kC"):
        kernels += ["--kernel", _fake_kernel(pytester.path / name)]
    return kernels


def _collect(pytester: pytest.Pytester, kernels: list[str], *args: str
             ) -> tuple[pytest.RunResult, list[str]]:
    result = pytester.runpytest(*kernels, "--collect-only", "-q", "-p", "no:cacheprovider",
                                *args)
    return result, [line for line in result.outlines if "::" in line]


def test_plugin_shards_and_records_the_run(pytester: pytest.Pytester,
                                           project: list[str]) -> None:
    _, full = _collect(pytester, project, "--results-dir", "full")
    assert len(full) == 13
    shards = []
    for i in (1, 2, 3):
        result, ids = _collect(pytester, project, "--shard", f"{i}/3",
                               "--results-dir", f"s{i}")
        result.stdout.fnmatch_lines([f"kmatrix: shard {i}/3 of run *: {len(ids)} of 13 items*",
                                     f"*{len(ids)}/13 tests collected ({13 - len(ids)} "
                                     "deselected)*"])
        shards.append(ids)
    assert sorted(n for ids in shards for n in ids) == sorted(full)
    for ids in shards:  # one kernel per shard: each boots once
        assert len({i.rsplit("-", 1)[-1].rsplit("[", 1)[-1] for i in ids
                    if "cases/" in i}) == 1
    runs = [json.loads((pytester.path / f"s{i}" / "results.json").read_text())["run"]
            for i in (1, 2, 3)]
    whole = json.loads((pytester.path / "full" / "results.json").read_text())["run"]
    assert {r["id"] for r in runs} == {whole["id"]}
    assert [r["shard"] for r in runs] == [[1, 3], [2, 3], [3, 3]]
    assert whole["shard"] == [1, 1] and whole["balance"] == ""
    assert whole["index"] == {n: i for i, n in enumerate(full)}
    for r, ids in zip(runs, shards, strict=True):
        assert r["nodeids"] == 13 and r["balance"] == "count"
        assert r["index"] == {n: whole["index"][n] for n in ids}


def test_plugin_durations_from(pytester: pytest.Pytester, project: list[str]) -> None:
    _collect(pytester, project, "--results-dir", "before")
    _, ids = _collect(pytester, project, "--shard", "1/2", "--durations-from", "before",
                      "--results-dir", "after")
    run = json.loads((pytester.path / "after" / "results.json").read_text())["run"]
    assert run["balance"].startswith("durations ") and len(run["index"]) == len(ids)


def test_plugin_refuses_a_bad_shard(pytester: pytest.Pytester, project: list[str]) -> None:
    result, _ = _collect(pytester, project, "--shard", "4/3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--shard*1 <= I <= N*"])
    result, _ = _collect(pytester, project, "--shard", "1/2", "--durations-from", "nowhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--durations-from nowhere: cannot read*"])
