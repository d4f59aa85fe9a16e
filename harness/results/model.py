"""One result model for a run; the JUnit, JSON and Markdown writers only read it."""

from __future__ import annotations

import bisect
import enum
import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..nodeid import case_id


class Status(enum.IntEnum):
    """Ranked: when several things happen to one case, the worst wins."""

    SKIP = 0
    PASS = 1
    FLAKY = 2  # failed, then passed on a fresh boot of the same kernel (--rerun-failed)
    FAIL = 3
    ERROR = 4  # infrastructure: the VM did not boot, the harness broke
    CRASH = 5  # the guest kernel died (panic/oops/hang) during the case

    @property
    def symbol(self) -> str:
        return {Status.SKIP: "skip", Status.PASS: "pass", Status.FLAKY: "flaky",
                Status.FAIL: "fail", Status.ERROR: "error", Status.CRASH: "crash"}[self]


@dataclass
class KernelInfo:
    """What we know of one kernel of the matrix after booting it."""

    label: str
    spec: str = ""
    origin: str = ""
    release: str = ""
    package_version: str = ""
    accel: str = ""
    accel_reason: str = ""
    #: guest CPUs and memory the VMs got
    vcpus: int = 0
    memory: str = ""
    #: feature -> {"supported": bool, "detail": str}, from the guest's probes
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: host seconds from vng start to agent ready, one entry per boot
    boots: dict[str, float] = field(default_factory=dict)
    boot_error: str = ""
    #: feature -> {"expected", "state", "reason"}: what this kernel should support
    expect: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: kernel messages while the probes ran (the first boot's)
    probe_dmesg: list[str] = field(default_factory=list)
    #: our probes against bpftool feature probe: {"ran", "detail", "disagreements"}
    crosscheck: dict[str, Any] = field(default_factory=dict)


@dataclass
class CaseResult:
    nodeid: str
    kernel: str
    #: the suite/feature column in the matrix (module name without test_, e.g. "tcx")
    feature: str
    status: Status
    message: str = ""
    details: str = ""
    duration: float = 0.0
    guest_duration: float = 0.0
    output: str = ""
    #: what the case saw the kernel do, recorded in the guest with
    #: record_property("observed", ...) (e.g. "delivered", "insert refused: EOPNOTSUPP")
    observed: str = ""
    #: where the guest agent's time went (case process, checks after it, netns creation)
    timing: dict[str, float] = field(default_factory=dict)
    #: what the stack counted and dropped while the case ran (harness.guest.evidence.model
    #: Evidence.as_dict(): counter deltas per namespace and device, drops by reason)
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRecord:
    """Which run a results folder belongs to and which shard of it (`--shard I/N`): what
    `kmatrix merge` checks, and the collection order it restores."""

    #: derived from the full collection and the kernels, so every shard of a run agrees
    id: str
    #: (index, total), 1-based; (1, 1) for an unsharded run
    shard: tuple[int, int] = (1, 1)
    #: hash of the full collected node id list (before the shard's selection)
    selection: str = ""
    #: how many items the full collection holds
    nodeids: int = 0
    #: how the shards were balanced ("count", "durations <hash>"); "" when unsharded
    balance: str = ""
    #: node id -> its position in the full collection, for this shard's items
    index: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        return cls(**{**data, "shard": tuple(data.get("shard", (1, 1)))})


@dataclass
class RunResults:
    kernels: dict[str, KernelInfo] = field(default_factory=dict)
    cases: list[CaseResult] = field(default_factory=list)
    #: which run and shard this is (None in folders written before shards existed)
    run: RunRecord | None = None

    def kernel(self, label: str) -> KernelInfo:
        if label not in self.kernels:
            self.kernels[label] = KernelInfo(label)
        return self.kernels[label]

    def add(self, case: CaseResult) -> None:
        """Record `case`, in collection order once the run record is known."""
        if (self.run is None or not self.cases
                or self._position(self.cases[-1]) <= self._position(case)):
            self.cases.append(case)
        else:
            bisect.insort_right(self.cases, case, key=self._position)

    def set_run(self, run: RunRecord) -> None:
        """The run record; the cases recorded so far go into collection order."""
        self.run = run
        self.cases.sort(key=self._position)

    def _position(self, case: CaseResult) -> int:
        """`case`'s place in the collection (cases outside it last, in arrival order)."""
        index = self.run.index if self.run is not None else {}
        return index.get(case.nodeid, len(index))

    def case(self, nodeid: str) -> CaseResult | None:
        """The recorded result of `nodeid` (the last one, should it run twice)."""
        return next((c for c in reversed(self.cases) if c.nodeid == nodeid), None)

    def counts(self) -> Counter[Status]:
        return Counter(c.status for c in self.cases)

    def matrix(self) -> dict[str, dict[str, Counter[Status]]]:
        """feature -> kernel -> status counts."""
        out: dict[str, dict[str, Counter[Status]]] = defaultdict(lambda: defaultdict(Counter))
        for c in self.cases:
            out[c.feature][c.kernel][c.status] += 1
        return out

    def observations(self) -> dict[str, dict[str, dict[str, str]]]:
        """feature -> case id without the kernel -> kernel -> what the case observed."""
        out: dict[str, dict[str, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
        for c in self.cases:
            if c.observed:
                out[c.feature][case_id(c.nodeid, c.kernel)][c.kernel] = c.observed
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.run is None else {"run": asdict(self.run)}
        return {
            **out,
            "kernels": {k: asdict(v) for k, v in self.kernels.items()},
            "cases": [{**asdict(c), "status": c.status.symbol} for c in self.cases],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResults:
        res = cls()
        if data.get("run"):
            res.run = RunRecord.from_json(data["run"])
        for label, info in data.get("kernels", {}).items():
            res.kernels[label] = KernelInfo(**info)
        by_name = {s.symbol: s for s in Status}
        for c in data.get("cases", []):
            res.cases.append(CaseResult(**{**c, "status": by_name[c["status"]]}))
        return res

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1))
