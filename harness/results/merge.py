"""Shards' results folders -> one results folder, as the unsharded run would have written it.

Each shard's results.json carries its run record (`RunRecord`: run id, shard I/N, the
position in the full collection of every item it selected). The merge refuses shards of
different runs, a shard given twice, shards that share cases and a missing shard; checks
each shard's junit.xml against its results.json (junitparser); combines the kernels' facts
(probes, boots, expectations ...) and the cases, back in collection order; and writes every
report with the writers an unsharded run uses (`writers.write_all`), plus the console logs
of each kernel, shard after shard.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from junitparser import Error, Failure, JUnitXml, TestSuite

from ..errors import ExitCode, UserError
from ..nodeid import kernel_label_of
from .diff import probe_state
from .model import CaseResult, KernelInfo, RunRecord, RunResults, Status
from .writers import write_all

#: a console log's name: console-LABEL.log, or console-LABEL-gwN.log from an xdist worker
_CONSOLE = re.compile(r"console-(?P<label>.+?)(?:-(?P<worker>gw\d+))?\.log")


class MergeError(UserError):
    """Shards that cannot be merged; the message names the folder and what is wrong."""

    hint = ("merge the results folders of every shard (I/N for I = 1..N) of one run, each "
            "once, written by `kmatrix run --shard I/N` with the same cases, kernels and "
            "--durations-from")


@dataclass
class Shard:
    """One shard's results folder, read."""

    path: Path
    results: RunResults
    run: RunRecord

    @property
    def name(self) -> str:
        index, total = self.run.shard
        return f"shard {index}/{total} ({self.path})"


@dataclass
class Merged:
    """The merged results, and what the merge noticed without refusing."""

    results: RunResults
    warnings: list[str] = field(default_factory=list)


def load_shard(path: Path) -> Shard:
    """A shard's results folder: results.json with its run record, and a junit.xml that
    says the same."""
    data_path = path / "results.json"
    if not data_path.is_file():
        raise MergeError(f"{path}: no results.json: not a kmatrix results folder")
    try:
        results = RunResults.from_json(json.loads(data_path.read_text()))
    except (ValueError, TypeError, KeyError) as exc:
        raise MergeError(f"{data_path}: unreadable: {exc}") from exc
    if results.run is None:
        raise MergeError(f"{path}: results.json has no run record: written before "
                         "kmatrix knew shards, or not by `kmatrix run`")
    check_junit(path / "junit.xml", results)
    return Shard(path, results, results.run)


def junit_outcomes(path: Path) -> Counter[tuple[str, str, str]]:
    """(suite, testcase name, outcome) of every testcase of a junit.xml (outcome: pass,
    skip, fail, error)."""
    xml = JUnitXml.fromfile(str(path))
    suites = [xml] if isinstance(xml, TestSuite) else list(xml)
    out: Counter[tuple[str, str, str]] = Counter()
    for suite in suites:
        for case in suite:
            results = case.result
            if any(isinstance(r, Error) for r in results):
                outcome = "error"
            elif any(isinstance(r, Failure) for r in results):
                outcome = "fail"
            elif case.is_skipped:
                outcome = "skip"
            else:
                outcome = "pass"
            out[(str(suite.name), str(case.name), outcome)] += 1
    return out


def result_outcomes(results: RunResults) -> Counter[tuple[str, str, str]]:
    """The same as `junit_outcomes`, from the model (the junit writer's suites and names)."""
    return Counter((f"kmatrix.{c.kernel}", c.nodeid.rpartition("::")[2], _outcome(c.status))
                   for c in results.cases)


def _outcome(status: Status) -> str:
    if status is Status.SKIP:
        return "skip"
    if status is Status.ERROR:
        return "error"
    return "fail" if status >= Status.FAIL else "pass"


def check_junit(path: Path, results: RunResults) -> None:
    """A shard's junit.xml must hold the cases of its results.json, with the same
    outcomes: a folder whose reports disagree was not written by one run."""
    if not path.is_file():
        raise MergeError(f"{path.parent}: no junit.xml: an incomplete results folder")
    try:
        junit = junit_outcomes(path)
    except Exception as exc:  # junitparser raises lxml's or ElementTree's own errors
        raise MergeError(f"{path}: unreadable junit.xml: {exc}") from exc
    model = result_outcomes(results)
    if junit != model:
        extra, missing = junit - model, model - junit
        example = next(iter(missing or extra))
        raise MergeError(
            f"{path}: its testcases do not match results.json: {sum(missing.values())} "
            f"testcase(s) of results.json missing or different, {sum(extra.values())} "
            f"extra; e.g. {example[0]} {example[1]} ({example[2]})")


def check_shards(shards: Sequence[Shard]) -> list[str]:
    """Refuse shards that do not make one run (MergeError naming the shards); the
    warnings of shards that merge (a shard interrupted before all of its cases ran)."""
    if not shards:
        raise MergeError("no results folder given")
    first = shards[0]
    for other in shards[1:]:
        if other.run.id != first.run.id:
            raise MergeError(
                f"not shards of one run: {first.name} is of run {first.run.id}, "
                f"{other.name} of run {other.run.id} (the collected cases or the kernels "
                "differ)")
        if other.run.shard[1] != first.run.shard[1] or other.run.balance != first.run.balance:
            raise MergeError(
                f"one run split two ways: {first.name} balanced by "
                f"{first.run.balance or 'nothing'}, {other.name} by "
                f"{other.run.balance or 'nothing'} (give every shard the same N and the "
                "same --durations-from)")
    total = first.run.shard[1]
    seen: dict[int, Shard] = {}
    for shard in shards:
        index = shard.run.shard[0]
        if index in seen:
            raise MergeError(f"shard {index}/{total} given twice: {seen[index].path} and "
                             f"{shard.path}")
        seen[index] = shard
    missing = [f"{i}/{total}" for i in range(1, total + 1) if i not in seen]
    if missing:
        given = ", ".join(s.name for s in sorted(shards, key=lambda s: s.run.shard[0]))
        raise MergeError(f"shard {', '.join(missing)} of run {first.run.id} "
                         f"{'is' if len(missing) == 1 else 'are'} missing (given: {given})")
    owner: dict[str, Shard] = {}
    for shard in shards:
        both = [n for n in shard.run.index if n in owner]
        if both:
            raise MergeError(f"overlapping shards: {owner[both[0]].name} and {shard.name} "
                             f"both hold {len(both)} case(s), e.g. {both[0]}")
        owner.update(dict.fromkeys(shard.run.index, shard))
        outside = [c.nodeid for c in shard.results.cases if c.nodeid not in shard.run.index]
        if outside:
            raise MergeError(f"{shard.name}: results.json holds {len(outside)} case(s) its "
                             f"shard did not select, e.g. {outside[0]}")
    if len(owner) != first.run.nodeids:
        raise MergeError(f"the shards of run {first.run.id} select {len(owner)} of its "
                         f"{first.run.nodeids} collected items: they were not split alike")
    warnings = []
    for shard in shards:  # a case of a kernel is recorded once it ran
        labels = list(shard.results.kernels)
        cases = [n for n in shard.run.index if kernel_label_of(n, labels) is not None]
        ran = {c.nodeid for c in shard.results.cases}
        if len(ran) < len(cases):
            warnings.append(f"{shard.name}: {len(cases) - len(ran)} of its {len(cases)} "
                            "cases have no result (interrupted?)")
    return warnings


def merge_shards(shards: Sequence[Shard]) -> Merged:
    """One run's results from all of its shards (checked by `check_shards`)."""
    warnings = check_shards(shards)
    shards = sorted(shards, key=lambda s: s.run.shard[0])
    first = shards[0].run
    index = {n: p for s in shards for n, p in s.run.index.items()}
    merged = RunResults(run=RunRecord(
        id=first.id, shard=(1, 1), selection=first.selection, nodeids=first.nodeids,
        index=dict(sorted(index.items(), key=lambda kv: kv[1]))))
    labels = list(dict.fromkeys(label for s in shards for label in s.results.kernels))
    for label in labels:
        infos = [(s, s.results.kernels[label]) for s in shards if label in s.results.kernels]
        merged.kernels[label] = merge_kernel(label, infos, warnings)
    cases: list[CaseResult] = [c for s in shards for c in s.results.cases]
    merged.cases = sorted(cases, key=lambda c: index.get(c.nodeid, len(index)))
    return Merged(merged, warnings)


def merge_kernel(label: str, infos: Sequence[tuple[Shard, KernelInfo]],
                 warnings: list[str]) -> KernelInfo:
    """One kernel's facts from the shards that know it: the first shard's value of each
    field that one has (a different value elsewhere is a warning), probes and other
    tables united (a probe answered differently is a warning), every boot kept (named by
    shard when the kernel booted in several), kernel messages without repeats."""
    out = KernelInfo(label)
    booted = [(s, info) for s, info in infos if info.boots]
    for f in fields(KernelInfo):
        if f.name == "label":
            continue
        mine: Any = getattr(out, f.name)
        for shard, info in infos:
            value = getattr(info, f.name)
            if f.name == "boots":
                prefix = f"shard{shard.run.shard[0]}-" if len(booted) > 1 else ""
                mine.update({f"{prefix}{k}": v for k, v in value.items()})
            elif f.name == "probes":
                for feature, probe in value.items():
                    have = mine.setdefault(feature, probe)
                    if probe_state(have) != probe_state(probe):
                        warnings.append(f"{label}: probe {feature} disagrees: "
                                        f"{probe_state(have)} in {_first_with(infos, feature)}"
                                        f", {probe_state(probe)} in {shard.name}")
            elif isinstance(value, dict):
                for key, item in value.items():
                    mine.setdefault(key, item)
            elif isinstance(value, list):
                mine += [line for line in value if line not in mine]
            elif value and not mine:
                mine = value
            elif value and value != mine:
                warnings.append(f"{label}: {f.name} differs between shards: "
                                f"{str(mine).splitlines()[0]!r} and "
                                f"{str(value).splitlines()[0]!r} ({shard.name})")
        setattr(out, f.name, mine)
    return out


def _first_with(infos: Sequence[tuple[Shard, KernelInfo]], feature: str) -> str:
    return next(s.name for s, info in infos if feature in info.probes)


def merge_console_logs(shards: Sequence[Shard], labels: Sequence[str], out: Path
                       ) -> list[Path]:
    """console-LABEL.log per kernel: each shard's logs of it (xdist workers' included),
    shard after shard, each under a header line naming the shard and the file."""
    parts: dict[str, list[tuple[Shard, Path]]] = {}
    for shard in sorted(shards, key=lambda s: s.run.shard[0]):
        for log in sorted(shard.path.glob("console-*.log")):
            m = _CONSOLE.fullmatch(log.name)
            name = f"console-{m.group('label')}.log" if m and m.group("label") in labels \
                else log.name
            parts.setdefault(name, []).append((shard, log))
    written = []
    for name, logs in parts.items():
        with open(out / name, "wb") as fh:
            for shard, log in logs:
                fh.write(f"=== kmatrix merge: {shard.name}: {log.name} ===\n".encode())
                fh.write(log.read_bytes())
        written.append(out / name)
    return written


def exit_code(results: RunResults) -> ExitCode:
    """What the unsharded run would have exited with: 6 when a kernel did not boot, 1
    when a case failed, crashed or errored, 5 when nothing ran, else 0."""
    if any(info.boot_error for info in results.kernels.values()):
        return ExitCode.INFRA_ERROR
    if any(c.status >= Status.FAIL for c in results.cases):
        return ExitCode.TESTS_FAILED
    return ExitCode.OK if results.cases else ExitCode.NO_TESTS_COLLECTED


def merge(dirs: Sequence[Path], out: Path) -> tuple[Merged, dict[str, Path]]:
    """Read, check and merge the shards in `dirs`; write the merged folder `out`. Returns
    the merge and name -> path of what was written (MergeError when refused)."""
    shards = [load_shard(d) for d in dirs]
    merged = merge_shards(shards)
    if any(out.resolve() == d.resolve() for d in dirs):
        raise MergeError(f"{out}: the output folder is one of the shards")
    paths = write_all(merged.results, out)
    for log in merge_console_logs(shards, list(merged.results.kernels), out):
        paths[log.stem] = log
    return merged, paths
