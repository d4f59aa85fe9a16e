"""What every bisect step needs, decided once by `kmatrix bisect` and saved as
RESULTS/bisect.json: `git bisect run` starts each step as a new process with that path."""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: the file in the results folder the steps read
CONFIG_FILE = "bisect.json"
#: per-commit step folders under the results folder
STEPS_DIR = "steps"


class BadIf(enum.StrEnum):
    """How the runs of a step (`--runs N`) decide that the commit is bad."""

    #: one failing run is enough (good needs N passes): a flaky failure is still found
    ANY = "any"
    #: at least half the runs fail (good needs more than half passing)
    MAJORITY = "majority"


class SkipAs(enum.StrEnum):
    """What a SKIP verdict of the case (the feature refused where it is not expected: too
    old, or configured out at that commit) makes of the commit."""

    #: the case does not pass there, as on the bad side (the default: a regression hunt)
    BAD = "bad"
    #: the case did not fail there
    GOOD = "good"
    #: nothing can be told: `git bisect skip`
    SKIP = "skip"


@dataclass(frozen=True)
class BisectConfig:
    """One bisect's settings; a step reads them back with `load`."""

    #: the kernel tree (a git work tree's top)
    tree: Path
    #: the case's node id relative to the project root, without the kernel label
    #: (`cases/test_netkit.py::test_x`, `cases/t.py::test_y[l2]`)
    case: str
    #: where bisect.json, steps/COMMIT/ and the summary go
    results_dir: Path
    #: the one O= folder every step builds in (incremental from commit to commit)
    objdir: Path
    #: runs of the case per step (each boots the kernel)
    runs: int = 1
    bad_if: BadIf = BadIf.ANY
    skip_as: SkipAs = SkipAs.BAD
    #: kconfigs/ fragments (None: all non-opt-in, as `kmatrix kernels build`)
    fragments: tuple[str, ...] | None = None
    #: make -j
    jobs: int = 3
    #: extra arguments of every `kmatrix run` (`--boot-timeout=600`, `--vm-memory=3G`)
    run_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def spec(self) -> str:
        """The kernel spec of the tree, with its fragments (`/src/linux@base,netkit`)."""
        return str(self.tree) + (f"@{','.join(self.fragments)}" if self.fragments else "")

    @property
    def path(self) -> Path:
        return self.results_dir / CONFIG_FILE

    def step_dir(self, commit: str) -> Path:
        return self.results_dir / STEPS_DIR / commit[:12]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("tree", "results_dir", "objdir"):
            data[key] = str(data[key])
        data["bad_if"], data["skip_as"] = str(self.bad_if), str(self.skip_as)
        data["fragments"] = list(self.fragments) if self.fragments is not None else None
        data["run_args"] = list(self.run_args)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BisectConfig:
        frags = data.get("fragments")
        return cls(
            tree=Path(data["tree"]), case=str(data["case"]),
            results_dir=Path(data["results_dir"]), objdir=Path(data["objdir"]),
            runs=int(data.get("runs", 1)), bad_if=BadIf(data.get("bad_if", "any")),
            skip_as=SkipAs(data.get("skip_as", "bad")),
            fragments=tuple(frags) if frags is not None else None,
            jobs=int(data.get("jobs", 3)), run_args=tuple(data.get("run_args", ())))

    def save(self) -> Path:
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return self.path

    @classmethod
    def load(cls, path: Path) -> BisectConfig:
        return cls.from_json(json.loads(path.read_text()))


def default_objdir(tree: Path, objs: Path) -> Path:
    """The kept O= folder of bisects over `tree`: under the cache's build folders (so
    `kmatrix kernels prune` cleans it), one per tree path (a later bisect of the same tree
    starts from the objects of the last one)."""
    digest = hashlib.sha256(str(tree.resolve()).encode()).hexdigest()[:16]
    return objs / f"bisect-{digest}"
