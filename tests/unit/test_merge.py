"""kmatrix merge: a run split into shards (by the shard planner), each shard's folder
written as `kmatrix run --shard` writes it, merged, gives the unsharded run's reports byte
for byte; the merge refuses shards that do not make one run, naming them.

Fixture: 60 cases of a real three-kernel run (tests/unit/data/shard-run-60.json, trimmed
from a run of the default matrix), two of them turned into a failure and a crash here.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ExitCode
from harness.pytest_plugin.shards import ShardItem, plan, run_id, selection_hash
from harness.results.merge import (
    MergeError,
    exit_code,
    junit_outcomes,
    load_shard,
    merge,
    merge_shards,
)
from harness.results.model import KernelInfo, RunRecord, RunResults, Status
from harness.results.writers import write_all

DATA = Path(__file__).parent / "data" / "shard-run-60.json"
#: KernelInfo fields a shard knows only of the kernels it booted
BOOTED = ("accel", "accel_reason", "vcpus", "memory", "probes", "boots", "probe_dmesg",
          "crosscheck")


def unsharded() -> RunResults:
    """The fixture as one run writes it: cases in collection order (kernel by kernel),
    with its run record."""
    res = RunResults.from_json(json.loads(DATA.read_text()))
    order = list(res.kernels)
    res.cases.sort(key=lambda c: order.index(c.kernel))
    res.cases[25] = replace(res.cases[25], status=Status.FAIL, message="AssertionError: "
                            "bytes went to the original peer", details="assert 0 == 64")
    res.cases[50] = replace(res.cases[50], status=Status.CRASH, message="kernel panic")
    res.kernels["debian-7.3"].probe_dmesg = ["[ 1.0] WARNING: CPU: 0 PID: 1 at x"]
    nodeids = [c.nodeid for c in res.cases]
    specs = [f"{k.spec}={k.package_version}" for k in res.kernels.values()]
    res.set_run(RunRecord(run_id(nodeids, specs), selection=selection_hash(nodeids),
                          nodeids=len(nodeids), index={n: i for i, n in enumerate(nodeids)}))
    return res


def shard_results(full: RunResults, total: int) -> list[RunResults]:
    """What each of `total` shards of `full` records: every kernel's static facts, the
    facts of the kernels it booted, its cases (in completion order: reversed here)."""
    assert full.run is not None
    items = [ShardItem(c.nodeid, c.kernel) for c in full.cases]
    out = []
    for i, positions in enumerate(plan(items, None, total), start=1):
        mine = [full.cases[p] for p in positions]
        res = RunResults(run=replace(full.run, shard=(i, total), balance="count",
                                     index={full.cases[p].nodeid: p for p in positions}))
        for label, info in full.kernels.items():
            booted = any(c.kernel == label for c in mine)
            res.kernels[label] = copy.deepcopy(info) if booted else KernelInfo(
                **{k: v for k, v in vars(info).items() if k not in BOOTED})
        res.cases = list(reversed(mine))
        out.append(res)
    return out


def write_shards(tmp: Path, shards: list[RunResults]) -> list[Path]:
    dirs = []
    for res in shards:
        assert res.run is not None
        d = tmp / f"shard{res.run.shard[0]}"
        write_all(res, d)
        for label in {c.kernel for c in res.cases}:
            (d / f"console-{label}.log").write_text(f"boot of {label} in {d.name}\n")
        dirs.append(d)
    return dirs


@pytest.fixture
def full() -> RunResults:
    return unsharded()


@pytest.fixture
def three(tmp_path: Path, full: RunResults) -> list[Path]:
    return write_shards(tmp_path, shard_results(full, 3))


def test_merged_equals_unsharded(tmp_path: Path, full: RunResults, three: list[Path]) -> None:
    reference = write_all(full, tmp_path / "unsharded")
    merged, paths = merge(three, tmp_path / "merged")
    assert merged.warnings == []
    assert {"junit", "matrix", "observed", "json"} <= set(reference)
    for name, path in reference.items():  # every report write_all writes
        assert paths[name].read_bytes() == path.read_bytes(), name
    assert [c.status for c in merged.results.cases] == [c.status for c in full.cases]
    # junitparser: the merged junit.xml holds the union of the shards' testcases
    shards = sum((junit_outcomes(d / "junit.xml") for d in three), Counter())
    assert junit_outcomes(paths["junit"]) == shards
    assert sum(shards.values()) == 60 and shards[("kmatrix.debian-7.3", full.cases[50]
                                                  .nodeid.rpartition("::")[2], "fail")] == 1
    assert exit_code(merged.results) == ExitCode.TESTS_FAILED


def test_console_logs_concatenated_per_kernel(tmp_path: Path, three: list[Path]) -> None:
    (three[0] / "console-debian-6.1-gw1.log").write_text("second worker\n")
    _, paths = merge(three, tmp_path / "merged")
    text = paths["console-debian-6.1"].read_text().splitlines()
    assert text[0].startswith("=== kmatrix merge: shard ") and text[0].endswith(
        "console-debian-6.1-gw1.log ===")
    assert text[1] == "second worker"
    assert text[2].endswith("console-debian-6.1.log ===")
    assert sorted(p.name for p in (tmp_path / "merged").glob("console-*")) == [
        "console-debian-6.1.log", "console-debian-6.12.log", "console-debian-7.3.log"]


def test_a_kernel_cut_across_shards(tmp_path: Path, full: RunResults) -> None:
    """Four shards of three kernels: one kernel runs in two shards; its boots are both
    kept (named by shard), the verdicts are the unsharded run's, case for case."""
    shards = shard_results(full, 4)
    for res in shards:
        assert res.run is not None
        for label in {c.kernel for c in res.cases}:
            res.kernels[label].boots = {"main-1": 80.0 + res.run.shard[0]}
    merged = merge_shards([load_shard(d) for d in write_shards(tmp_path, shards)])
    assert [(c.nodeid, c.status) for c in merged.results.cases] == [
        (c.nodeid, c.status) for c in full.cases]
    cut = [label for label, info in merged.results.kernels.items() if len(info.boots) > 1]
    assert len(cut) == 1
    assert all(key.startswith("shard") for key in merged.results.kernels[cut[0]].boots)
    assert merged.results.run == full.run


def test_probe_disagreement_is_reported(tmp_path: Path, full: RunResults) -> None:
    shards = shard_results(full, 4)
    cut = next(label for label in full.kernels
               if sum(any(c.kernel == label for c in s.cases) for s in shards) > 1)
    owners = [s for s in shards if any(c.kernel == cut for c in s.cases)]
    tcx = owners[1].kernels[cut].probes["tcx"]
    was = "supported" if tcx["supported"] else "unsupported"
    tcx["supported"] = not tcx["supported"]
    owners[1].kernels[cut].accel = "kvm"
    merged = merge_shards([load_shard(d) for d in write_shards(tmp_path, shards)])
    text = "\n".join(merged.warnings)
    assert f"{cut}: probe tcx disagrees: {was} in shard" in text
    assert f"{cut}: accel differs between shards: 'tcg' and 'kvm'" in text


# -- refusals ----------------------------------------------------------------------------------

def _edit(folder: Path, change: dict[str, object]) -> None:
    path = folder / "results.json"
    data = json.loads(path.read_text())
    data["run"].update(change)
    path.write_text(json.dumps(data))


def test_refuses_shards_of_different_runs(tmp_path: Path, three: list[Path]) -> None:
    _edit(three[1], {"id": "0123456789ab"})
    with pytest.raises(MergeError, match=r"not shards of one run: shard 1/3 \(.*shard1\) "
                       r"is of run \w+, shard 2/3 \(.*shard2\) of run 0123456789ab"):
        merge(three, tmp_path / "out")


def test_refuses_a_shard_given_twice(tmp_path: Path, three: list[Path]) -> None:
    copy_dir = tmp_path / "copy"
    shutil.copytree(three[1], copy_dir)
    with pytest.raises(MergeError, match=r"shard 2/3 given twice: .*shard2 and .*copy"):
        merge([*three, copy_dir], tmp_path / "out")


def test_refuses_overlapping_shards(tmp_path: Path, three: list[Path]) -> None:
    first = json.loads((three[0] / "results.json").read_text())["run"]["index"]
    nodeid, pos = next(iter(first.items()))
    second = json.loads((three[1] / "results.json").read_text())["run"]["index"]
    _edit(three[1], {"index": {**second, nodeid: pos}})
    with pytest.raises(MergeError, match=r"overlapping shards: shard 1/3 .* and shard 2/3 "
                       rf".* both hold 1 case\(s\), e.g. {nodeid.replace('[', '.')}"):
        merge(three, tmp_path / "out")


def test_refuses_a_missing_shard(tmp_path: Path, three: list[Path]) -> None:
    with pytest.raises(MergeError, match=r"shard 2/3 of run \w+ is missing \(given: "
                       r"shard 1/3 .*shard1\), shard 3/3"):
        merge([three[0], three[2]], tmp_path / "out")


def test_refuses_shards_split_differently(tmp_path: Path, three: list[Path]) -> None:
    _edit(three[2], {"balance": "durations 0123"})
    with pytest.raises(MergeError, match=r"one run split two ways: .* balanced by count, "
                       r"shard 3/3 .* by durations 0123"):
        merge(three, tmp_path / "out")


def test_refuses_a_junit_that_disagrees(tmp_path: Path, three: list[Path]) -> None:
    junit = three[0] / "junit.xml"
    junit.write_text(junit.read_text().replace('<skipped type="skipped"', '<error '
                                               'type="error"', 1))
    with pytest.raises(MergeError, match=r"shard1/junit.xml: its testcases do not match "
                       r"results.json: 1 testcase\(s\) .* 1 extra"):
        merge(three, tmp_path / "out")


def test_refuses_a_folder_without_run_record(tmp_path: Path, three: list[Path]) -> None:
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(DATA, old / "results.json")
    with pytest.raises(MergeError, match=r"old: results\.json has no run record"):
        merge([*three, old], tmp_path / "out")
    with pytest.raises(MergeError, match=r"no results\.json"):
        merge([tmp_path / "nothing"], tmp_path / "out")


def test_cli(tmp_path: Path, three: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "merged"
    assert main(["merge", *map(str, three), "-o", str(out)]) == ExitCode.TESTS_FAILED
    assert "merged 3 shard(s) of run" in capsys.readouterr().out
    assert (out / "matrix.md").is_file()
    assert main(["merge", str(three[0]), "-o", str(out)]) == ExitCode.USAGE_ERROR
    err = capsys.readouterr().err
    assert "kmatrix: error: shard 2/3, 3/3 of run" in err and "are missing" in err
