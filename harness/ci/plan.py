"""What a CI run of the kernel matrix does, whatever the engine: the shards, the commands
each job runs, the kernel cache and the result folders. github.py and gitlab.py only say
it in their engine's words.

The kernel cache (~/.cache/kmatrix/kernels) holds each Debian package under its exact
version and each built kernel under its build cache key (hash of source, fragments and
toolchain), so a stale cache can only miss, never serve a wrong kernel. The CI cache key is
therefore simple: the matrix's kernel specs, the shard (a shard always runs the same
kernels: the split is deterministic), and a hash of the files that decide which kernels
are fetched or built (images/matrix.toml, kconfigs/). A changed matrix or fragment starts
a new cache, restored from the newest older one of the same shard.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..matrix.kernels import MATRIX_FILE, default_kernels

#: what the cache key hashes: the files that decide which kernels a run fetches or builds
CACHE_KEY_FILES = ("images/matrix.toml", "kconfigs/**")
#: the kernel cache kmatrix keeps (harness.paths.cache_root() / "kernels")
KERNEL_CACHE = "~/.cache/kmatrix/kernels"

_SLUG_BAD = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class CiPlan:
    """One CI run of the matrix: `shards` jobs of `kmatrix run --shard I/N`, then a merge."""

    #: how many shard jobs
    shards: int
    #: the kernel specs of the matrix (for the cache key and the file's header)
    specs: tuple[str, ...]
    #: which matrix of images/matrix.toml `kmatrix run` uses ("default" or "ci")
    matrix: str = "default"
    #: the container image every job runs in (scripts/bootstrap sets up Debian 12)
    image: str = "debian:bookworm"
    #: where the shards' and the merged results go, relative to the checkout
    results: str = "results"
    #: the kmatrix command after set-up
    kmatrix: str = ".venv/bin/kmatrix"
    #: what a shard job runs first: every system package and the venv (idempotent)
    setup: tuple[str, ...] = ("scripts/bootstrap",)
    #: what the merge job runs first: only Python and kmatrix (no QEMU, no kernels)
    merge_setup: tuple[str, ...] = field(default=(
        "apt-get update -qq",
        "apt-get install -y -qq --no-install-recommends python3-venv",
        "python3 -m venv .venv",
        ".venv/bin/pip install -q -e .",
    ))
    #: minutes a shard job may take (a three-kernel shard is ~30 min under TCG on 2 cores)
    shard_timeout_min: int = 180

    @property
    def merged(self) -> str:
        return f"{self.results}/merged"

    def shard_dir(self, index: str) -> str:
        return f"{self.results}/shard-{index}"

    def run_command(self, index: str, total: str) -> str:
        """`kmatrix run` of one shard; `index`/`total` may be shell variables ("$SHARD")."""
        parts = [self.kmatrix, "run", "--shard", f'"{index}/{total}"',
                 "--results-dir", f'"{self.shard_dir(index)}"']
        if self.matrix != "default":
            parts += ["--matrix", shlex.quote(self.matrix)]
        return " ".join(parts)

    def merge_command(self) -> str:
        """`kmatrix merge` of every shard folder; it exits 1 on failing cases (the merged
        run's verdicts), 4 when a shard is missing or foreign, 6 when a kernel did not
        boot: the merge job's status is the matrix's."""
        return f"{self.kmatrix} merge {self.results}/shard-* -o {self.merged}"

    @property
    def cache_prefix(self) -> str:
        """The cache key up to the shard: kernels of the matrix, by spec."""
        return "kmatrix-kernels-" + "_".join(_SLUG_BAD.sub("-", s) for s in self.specs)

    def command_line(self, engine: str) -> str:
        """The `kmatrix ci` command that writes this plan (for the generated file's header)."""
        line = f"kmatrix ci {engine} --shards {self.shards}"
        return line + (f" --matrix {self.matrix}" if self.matrix != "default" else "")


def ci_plan(shards: int = 3, matrix: str = "default", path: Path = MATRIX_FILE) -> CiPlan:
    """The plan for the project's matrix (images/matrix.toml through harness.matrix)."""
    if shards < 1:
        raise UserError(f"--shards {shards}: at least one shard")
    if matrix not in ("default", "ci"):
        raise UserError(f"--matrix {matrix}: 'default' or 'ci'")
    return CiPlan(shards=shards, specs=tuple(default_kernels(matrix, path)), matrix=matrix)
