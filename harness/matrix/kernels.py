"""The kernel matrix: images/matrix.toml (or a file of the same form).

    [[kernel]]
    spec = "debian:6.1"
    why = "baseline without the new datapath features"
    [kernel.expect]                 # optional: overrides of images/features.toml
    tcx = { expected = true, why = "backported by our distro" }

    [ci]
    kernels = ["debian:6.1", "debian:6.12"]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..paths import PROJECT_ROOT

MATRIX_FILE = PROJECT_ROOT / "images" / "matrix.toml"


@dataclass(frozen=True)
class MatrixKernel:
    spec: str
    why: str = ""
    #: feature -> {"expected": bool, "why": str}: overrides of the feature table
    expect: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_matrix(path: Path = MATRIX_FILE) -> tuple[list[MatrixKernel], list[str]]:
    """(the kernels of the matrix, the CI matrix's specs)."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the kernel matrix {path}: {exc}") from exc
    kernels = []
    for entry in data.get("kernel", []):
        if not isinstance(entry.get("spec"), str):
            raise ConfigError(f"{path}: a [[kernel]] entry without spec = \"...\"")
        expect = entry.get("expect", {})
        for feature, rule in expect.items():
            if not isinstance(rule, dict) or not isinstance(rule.get("expected"), bool):
                raise ConfigError(f"{path}: {entry['spec']}: expect.{feature} needs "
                                  "{ expected = true|false, why = \"...\" }")
        kernels.append(MatrixKernel(entry["spec"], str(entry.get("why", "")), dict(expect)))
    ci = data.get("ci", {}).get("kernels", [])
    return kernels, [str(s) for s in ci]


def default_kernels(which: str = "default", path: Path = MATRIX_FILE) -> list[str]:
    """Kernel specs of the default matrix ("default"), the CI matrix ("ci"), or of the
    matrix file `which` names."""
    if which not in ("default", "ci"):
        path, which = Path(which), "default"
    kernels, ci = load_matrix(path)
    specs = ci if which == "ci" else [k.spec for k in kernels]
    if not specs:
        raise ConfigError(f"{path}: no kernel specs for the '{which}' matrix")
    return specs


def overrides(path: Path = MATRIX_FILE) -> dict[str, dict[str, dict[str, Any]]]:
    """spec -> its feature overrides, for the kernels of the matrix that have some."""
    kernels, _ = load_matrix(path)
    return {k.spec: k.expect for k in kernels if k.expect}
