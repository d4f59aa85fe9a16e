"""Shards of a run (`--shard I/N`): which of the collected items shard I of N runs.

Pure selection (no pytest; `selection` applies it to a session). Every shard of a run
computes the same plan from the same collection and the same recorded durations, so N CI
jobs split one run without talking to each other.

A shard boots each of its kernels once, so the plan keeps kernels whole: whole kernels are
shared out first (largest first, each to the shard it lengthens least). A kernel is cut
only when there are fewer kernels than shards, or when cutting it shortens the longest
shard even after paying for the extra boot. A cut kernel is cut between its modules where
it can (one module's items stay together), inside a module only when that module alone is
bigger than a piece.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise

from ..results.model import RunResults

#: what one boot costs, in cases of median duration: a boot under TCG takes as long as
#: ~100 cases (see scheduling.MIN_ITEMS_TO_CUT)
BOOT_COST_CASES = 100.0
#: a kernel is cut (beyond what the number of shards needs) only when that shortens the
#: longest shard by this fraction: a cut costs a boot and scatters a kernel's reports
CUT_GAIN = 0.1
#: a module is cut inside only when it is this much bigger than the piece it would fill
_MODULE_SLACK = 1.25


@dataclass(frozen=True)
class ShardItem:
    """What the plan knows of one collected item."""

    nodeid: str
    #: kernel label ("" for an item that runs on no kernel: no boot to share)
    kernel: str = ""

    @property
    def module(self) -> str:
        return self.nodeid.split("::", 1)[0]


def parse_shard(text: str) -> tuple[int, int]:
    """`"2/3"` -> (2, 3); ValueError saying what is wrong otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if m is None:
        raise ValueError(f"{text!r}: expected I/N, e.g. 2/3")
    index, total = int(m.group(1)), int(m.group(2))
    if not 1 <= index <= total:
        raise ValueError(f"{text!r}: shard I of N needs 1 <= I <= N")
    return index, total


def select(items: Sequence[ShardItem], weights: Sequence[float] | None, index: int,
           total: int, boot_cost: float | None = None) -> set[str]:
    """Node ids of shard `index` (1-based) of `total`; see `plan`."""
    if not 1 <= index <= total:
        raise ValueError(f"shard {index}/{total}: needs 1 <= I <= N")
    return {items[p].nodeid for p in plan(items, weights, total, boot_cost)[index - 1]}


def plan(items: Sequence[ShardItem], weights: Sequence[float] | None, total: int,
         boot_cost: float | None = None) -> list[list[int]]:
    """The positions (into `items`, in collection order) of each of `total` shards.

    `weights`: each item's expected seconds (None: every item weighs 1). `boot_cost`: what
    one more boot of a kernel costs in the same unit (default: BOOT_COST_CASES items of
    median weight). Every item is in exactly one shard; the result depends only on the
    arguments."""
    if total < 1:
        raise ValueError(f"{total} shards: needs at least one")
    w = [1.0] * len(items) if weights is None else [max(0.0, float(x)) for x in weights]
    if len(w) != len(items):
        raise ValueError(f"{len(w)} weights for {len(items)} items")
    if not items:
        return [[] for _ in range(total)]
    if sum(w) <= 0:
        w = [1.0] * len(items)
    boot = BOOT_COST_CASES * statistics.median(w) if boot_cost is None else boot_cost
    groups = _kernel_groups(items)
    cuts: dict[tuple[int, int], list[tuple[float, list[int]]]] = {}

    def evaluate(parts: list[int]) -> _Plan:
        for k, count in enumerate(parts):
            if (k, count) not in cuts:
                cuts[(k, count)] = [(sum(w[p] for p in piece), piece) for piece in
                                    _cut_kernel(items, w, groups[k][1], count)]
        booting = [bool(label) for label, _ in groups]  # items of no kernel boot nothing
        return _share(parts, [[weight for weight, _ in cuts[(k, count)]]
                              for k, count in enumerate(parts)], booting, total, boot)

    # more pieces for one kernel at a time, the cut that helps most; a cut that leaves the
    # longest shard as long but shortens the next ones is taken too (two kernels tied for
    # longest need a cut each); the plan kept is the first one that beats the last kept
    # by CUT_GAIN
    parts = [1] * len(groups)
    current = evaluate(parts)
    best = current
    enough = min(total, len(items))  # pieces needed so that no shard idles
    while True:
        trials = []
        for k, (_, positions) in enumerate(groups):
            for more in range(parts[k] + 1, min(parts[k] + total, len(positions)) + 1):
                tried = [*parts[:k], more, *parts[k + 1:]]
                trials.append((evaluate(tried), k, tried))
        if not trials:
            break
        trial, _, tried = min(trials, key=lambda t: (t[0].key, sum(t[2]), t[1]))
        if sum(parts) >= enough and trial.key >= current.key:
            break
        parts, current = tried, trial
        if sum(best.parts) < enough or current.span < best.span * (1 - CUT_GAIN):
            best = current
    shards: list[list[int]] = [[] for _ in range(total)]
    for (k, n), s in best.assignment.items():
        shards[s] += cuts[(k, best.parts[k])][n][1]
    return [sorted(shard) for shard in shards]


@dataclass
class _Plan:
    parts: list[int]
    #: (kernel group, piece) -> shard
    assignment: dict[tuple[int, int], int]
    #: each shard's expected time (its items and its boots)
    loads: list[float]

    @property
    def span(self) -> float:
        """The longest shard's expected time."""
        return max(self.loads)

    @property
    def key(self) -> tuple[float, ...]:
        """Better plans sort first: the shards' times, longest first."""
        return tuple(sorted(self.loads, reverse=True))


def _kernel_groups(items: Sequence[ShardItem]) -> list[tuple[str, list[int]]]:
    """Each kernel's item positions, kernels in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for pos, item in enumerate(items):
        groups.setdefault(item.kernel, []).append(pos)
    return list(groups.items())


def _share(parts: list[int], weights: list[list[float]], booting: list[bool], total: int,
           boot: float) -> _Plan:
    """Share the kernels' pieces (`weights[k][n]`: piece n of kernel k) out: largest first,
    each to the shard whose end it moves least (a shard not yet booting the piece's kernel
    pays a boot)."""
    loads = [0.0] * total
    booted: list[set[int]] = [set() for _ in range(total)]
    assignment: dict[tuple[int, int], int] = {}
    pieces = sorted(((weight, k, n) for k, ws in enumerate(weights)
                     for n, weight in enumerate(ws)), key=lambda p: (-p[0], p[1], p[2]))
    for weight, k, n in pieces:
        cost = boot if booting[k] else 0.0
        ends = [loads[s] + weight + (0.0 if k in booted[s] else cost) for s in range(total)]
        s = min(range(total), key=ends.__getitem__)  # the first of equals
        loads[s] = ends[s]
        booted[s].add(k)
        assignment[(k, n)] = s
    return _Plan(list(parts), assignment, loads)


def _cut_kernel(items: Sequence[ShardItem], w: Sequence[float], positions: list[int],
                parts: int) -> list[list[int]]:
    """`positions` (one kernel's items) in `parts` contiguous pieces of about equal weight,
    cut between modules where that is possible."""
    if parts <= 1:
        return [positions]
    target = sum(w[p] for p in positions) / parts
    atoms: list[list[int]] = []
    for module in _runs(items, positions):
        weight = sum(w[p] for p in module)
        pieces = math.ceil(weight / target) if weight > target * _MODULE_SLACK else 1
        atoms += _cut(module, [w[p] for p in module], pieces)
    while len(atoms) < parts:  # too few modules: cut the heaviest one that can be cut
        i = max((i for i, a in enumerate(atoms) if len(a) > 1),
                key=lambda i: sum(w[p] for p in atoms[i]))
        atoms[i:i + 1] = _cut(atoms[i], [w[p] for p in atoms[i]], 2)
    merged = _cut(list(range(len(atoms))), [sum(w[p] for p in a) for a in atoms], parts)
    return [[p for a in piece for p in atoms[a]] for piece in merged]


def _runs(items: Sequence[ShardItem], positions: list[int]) -> list[list[int]]:
    """`positions` in runs of the same module."""
    out: list[list[int]] = []
    for p in positions:
        if out and items[out[-1][-1]].module == items[p].module:
            out[-1].append(p)
        else:
            out.append([p])
    return out


def _cut(seq: list[int], weights: list[float], parts: int) -> list[list[int]]:
    """`seq` in `parts` contiguous non-empty pieces, each cut where the running weight is
    closest to its share."""
    n = len(seq)
    parts = max(1, min(parts, n))
    prefix = list(accumulate(weights, initial=0.0))
    bounds = [0]
    for j in range(1, parts):
        goal = prefix[-1] * j / parts
        lo, hi = bounds[-1] + 1, n - (parts - j)
        k = bisect_left(prefix, goal, lo, hi + 1)
        near = [c for c in (k - 1, k) if lo <= c <= hi]
        bounds.append(min(near, key=lambda c: (abs(prefix[c] - goal), c)))
    bounds.append(n)
    return [seq[a:b] for a, b in pairwise(bounds)]


# -- what defines a run, and the recorded durations a plan may be balanced by -----------------

def selection_hash(nodeids: Sequence[str]) -> str:
    """A short hash of the full collected node id list, in order."""
    return hashlib.sha256("\n".join(nodeids).encode()).hexdigest()[:16]


def run_id(nodeids: Sequence[str], kernels: Sequence[str]) -> str:
    """The run's id: the same for every shard of one run (same collection, same kernels;
    `kernels` should name exact versions, e.g. `debian:6.12=6.12.117-1`), different
    otherwise."""
    data = json.dumps([selection_hash(nodeids), list(kernels)])
    return hashlib.sha256(data.encode()).hexdigest()[:12]


def recorded_durations(results: RunResults) -> tuple[dict[str, float], float | None]:
    """Host seconds per node id from an earlier run, and its median boot seconds (None
    without boots). A kernel's first case there also waited for the boot: each boot's
    seconds are taken off the longest case of its kernel that outlasted it."""
    seconds = {c.nodeid: c.duration for c in results.cases}
    boots = [s for info in results.kernels.values() for s in info.boots.values() if s > 0]
    for label, info in results.kernels.items():
        mine = sorted((c for c in results.cases if c.kernel == label),
                      key=lambda c: -c.duration)
        for boot_s, case in zip(sorted(info.boots.values(), reverse=True), mine, strict=False):
            if case.duration > boot_s:
                seconds[case.nodeid] = case.duration - boot_s
    return seconds, statistics.median(boots) if boots else None


def weights_for(nodeids: Sequence[str], recorded: Mapping[str, float]) -> list[float]:
    """Each node id's recorded seconds; those without a record weigh the median."""
    if not recorded:
        return [1.0] * len(nodeids)
    median = statistics.median(recorded.values())
    return [recorded.get(n, median) for n in nodeids]


def balance_label(weights: Sequence[float] | None) -> str:
    """How a plan was balanced, recorded so that merge can tell shards split apart."""
    if weights is None:
        return "count"
    digest = hashlib.sha256(json.dumps([round(x, 6) for x in weights]).encode())
    return f"durations {digest.hexdigest()[:12]}"
